"""A short fault soak (the long one is `make soak`), and the simulator controls it relies on."""

from __future__ import annotations

import requests

from bench.soak import run_soak
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, FakeClock


def test_short_fault_soak_passes_every_check() -> None:
    """A short soak of every area (each fault kind once on every area's endpoints, at random, then all at
    once) and recovery against real processes; about 100 s with start-up and the final --once run.

    run_soak raises SoakFailure listing every failed check: crash or hang, an incomplete or unparsable
    exposition, an area half there or with families that disagree, a decreasing counter, a fault missing
    from a collector's self-metrics under its reason (or a reason no fault causes), a refresh crash in the
    log, runs, pull requests or audit entries double-counted or missed, memory growth, or numbers of any
    area that do not converge to a fresh run's once the faults stop.
    """
    report = run_soak(45, interval=3.0, speed=30.0, log=lambda line: None)
    assert not report.failures
    assert report.scrapes > 10 and report.health_checks > 50
    assert set(report.converged) == {"builds", "pull_requests", "policies", "deployments", "agent_pools", "audit"}


def test_simulator_controls_projects_and_clock(clock: FakeClock) -> None:
    org = Organization.empty(now_fn=clock, anchor=clock.now)
    with SimulatorServer(org, pat=PAT) as sim:
        base = f"http://127.0.0.1:{sim.port}/_simulator"
        answer = requests.post(f"{base}/projects", json={"add": ["Alpha", "Beta"]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["projects"] == ["Alpha", "Beta"]
        alpha = org.project("Alpha")
        assert alpha is not None and len(alpha.pipelines) == 1
        assert requests.post(f"{base}/projects", json={"remove": ["Alpha"]}, timeout=10).json()["projects"] == ["Beta"]
        assert requests.post(f"{base}/projects", json={"add": "Gamma"}, timeout=10).status_code == 400

        before = org.now()
        answer = requests.post(f"{base}/clock", json={"advance": 7200}, timeout=10)
        assert answer.status_code == 200 and org.now() == before + 7200
        requests.post(f"{base}/clock", json={"speed": 60}, timeout=10)
        clock.advance(10)
        assert org.now() == before + 7200 + 600
        assert requests.post(f"{base}/clock", json={"advance": -1}, timeout=10).status_code == 400
        assert requests.post(f"{base}/clock", json={"speed": 0}, timeout=10).status_code == 400

"""The agent pools area over HTTP: agents by status and enabled, queued and running job requests."""

from __future__ import annotations

from exporter.metrics import catalogue as m
from exporter.simulator import pools_model as pm
from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from tests.conftest import ExporterFactory, FakeClock, sample

ONLY = {"intervals": {"builds": 0, "tests": 0, "pull_requests": 0, "policies": 0, "audit": 0, "deployments": 0,
                      "agent_pools": "30s"}}


def test_saturated_pool_and_agent_states(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                         make_exporter: ExporterFactory) -> None:
    pm.add_pool(empty_org, "linux")
    agents = [pm.add_agent(empty_org, "linux", f"linux-{i}") for i in range(3)]
    pm.add_agent(empty_org, "linux", "linux-off", online=False)
    pm.add_agent(empty_org, "linux", "linux-disabled", enabled=False)
    for a in agents:  # every usable agent busy
        pm.add_job_request(empty_org, "linux", clock.now - 600, agent_id=a.id)
    for i in range(12):
        pm.add_job_request(empty_org, "linux", clock.now - 300 + i)
    pm.add_job_request(empty_org, "linux", clock.now - 900, agent_id=agents[0].id, finish_time=clock.now - 700,
                       result="succeeded")
    pm.add_pool(empty_org, "windows")
    exporter = make_exporter(sim, **ONLY)
    assert exporter.refresh_all_once() == {"agent_pools": None}
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="linux", state="queued") == 12
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="linux", state="running") == 3
    assert sample(exporter, m.AGENT_POOL_AGENTS.name, pool="linux", status="online", enabled="true") == 3
    assert sample(exporter, m.AGENT_POOL_AGENTS.name, pool="linux", status="offline", enabled="true") == 1
    assert sample(exporter, m.AGENT_POOL_AGENTS.name, pool="linux", status="online", enabled="false") == 1
    assert sample(exporter, m.AGENT_POOL_AGENTS.name, pool="windows", status="online", enabled="true") == 0
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="windows", state="queued") == 0
    jobs = [r for r in sim.requests if r.path.endswith("/jobrequests")]
    assert len(jobs) == 2 and all(r.params == {"completedRequestCount": "0", "api-version": "7.1-preview.1"}
                                  for r in jobs)


def test_failed_pool_keeps_its_last_numbers_and_deleted_pool_leaves(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    linux = pm.add_pool(empty_org, "linux")
    pm.add_agent(empty_org, "linux", "a1")
    pm.add_job_request(empty_org, "linux", clock.now - 60)
    pm.add_pool(empty_org, "mac")
    exporter = make_exporter(sim, **ONLY)
    exporter.refresh_all_once()
    pm.add_job_request(empty_org, "linux", clock.now - 30)
    sim.faults.add(Fault(kind="status", status=500, path=rf"/pools/{linux.id}/jobrequests"))
    errors = exporter.refresh_all_once()
    assert errors["agent_pools"] is not None and "pool linux" in errors["agent_pools"]
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="linux", state="queued") == 1
    assert sample(exporter, m.EXPORTER_REFRESH_SUCCESS.name, collector="agent_pools") == 0
    sim.faults.clear()
    with empty_org.lock:
        del pm.data(empty_org).pools[pm.pool(empty_org, "mac").id]
    assert exporter.refresh_all_once() == {"agent_pools": None}
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="linux", state="queued") == 2
    assert sample(exporter, m.AGENT_POOL_JOBS.name, pool="mac", state="queued") is None


def test_generated_organization_has_a_saturated_pool(clock: FakeClock) -> None:
    org = Organization.generate(seed=1, scale="small", now_fn=clock, anchor=clock.now)
    linux = pm.pool(org, "linux-build")
    requests = pm.job_requests(org, linux, org.now())
    unfinished = [r for r in requests if r.result is None]
    assert len(pm.busy_agents(org, linux, org.now())) == len(linux.agents) == 8
    assert sum(1 for r in unfinished if r.agent_id is None) >= 18
    large = Organization.generate(seed=1, scale="large", now_fn=clock, anchor=clock.now)
    assert sum(len(p.agents) for p in pm.data(large).pools.values()) == 500

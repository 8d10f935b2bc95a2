"""SIGINT and SIGTERM during `--once` and `digest`: one line on stderr, no traceback, 128 + signal."""

from __future__ import annotations

import signal

import pytest

from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from tests.conftest import PAT
from tests.support import cli_process, wait_until


@pytest.mark.parametrize("command", [["--once"], ["digest", "--to", "stdout"]], ids=["once", "digest"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_refresh_exits_cleanly_with_the_conventional_code(sim: SimulatorServer,
                                                                       empty_org: Organization,
                                                                       command: list[str], signum: int) -> None:
    empty_org.add_project("Payments")
    stuck = sim.faults.add(Fault(kind="delay", delay=60, path=r"/_apis/projects$"))  # the refresh hangs here
    env = {"AZDO_ORG_URL": sim.base_url, "AZDO_PAT": PAT, "AZDO_REQUEST_TIMEOUT": "120s"}
    with cli_process(*command, env=env) as process:
        wait_until(lambda: stuck.hits >= 1 or process.poll() is not None, 60, "the command to reach Azure DevOps",
                   interval=0.05)
        assert stuck.hits >= 1, "the command never reached Azure DevOps"
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"azdo-exporter: {'--once' if command == ['--once'] else 'digest'} stopped by {name}; "
        f"exiting with {128 + signum}")
    assert out == ""  # nothing half-made was printed

"""The command line as a user runs it: separate processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import gzip
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.metrics import catalogue as m
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, FakeClock
from tests.support import cli_process, free_port, run_cli, wait_http


def test_check_config_lists_every_mistake_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "organization_url: not-a-url\n"
        "lookback: forever\n"
        "intervals:\n"
        "  builds: 1 minute\n"
        "  pullrequests: 5m\n"
        "broken_results: [failed, exploded]\n"
        "production_environments: ['(unclosed']\n",
        encoding="utf-8",
    )
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    err = result.stderr
    for line_no, word in ((1, "organization_url"), (2, "lookback"), (4, "builds"), (5, "pullrequests"),
                          (6, "exploded"), (7, "production_environments")):
        assert any(f"config.yaml:{line_no}:" in line and word in line for line in err.splitlines()), (word, err)
    assert "pull_requests" in err  # the suggestion for the misspelt key


def test_check_config_accepts_a_valid_file(tmp_path: Path) -> None:
    secret = tmp_path / "pat"
    secret.write_text("abc\n", encoding="utf-8")
    config = tmp_path / "ok.yaml"
    config.write_text(f"organization_url: https://dev.azure.com/contoso\npat_file: {secret}\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_bad_config_stops_the_exporter_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("organization_url: https://dev.azure.com/contoso\nlookback: -3d\n", encoding="utf-8")
    result = run_cli("--config", str(config), env={"AZDO_PAT": "x"})
    assert result.returncode == 2
    assert "lookback" in result.stderr


@pytest.fixture
def live_sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    org = Organization.generate(seed=1, scale="small")
    with SimulatorServer(org, pat=PAT) as server:
        yield server


@pytest.mark.slow  # a subprocess exporter, a whole refresh: make test runs it, make test-fast does not
def test_once_prints_the_exposition_and_exits_0(live_sim: SimulatorServer) -> None:
    result = run_cli("--once", env={"AZDO_ORG_URL": live_sim.base_url, "AZDO_PAT": PAT})
    assert result.returncode == 0, result.stderr
    assert f'{m.PIPELINE_BROKEN}{{branch="main",pipeline="infra/deploy-api",project="Payments"}} 1.0' in result.stdout
    assert f'{m.EXPORTER_REFRESH_SUCCESS}{{collector="builds"}} 1.0' in result.stdout


def test_once_exits_1_with_the_reason_when_a_collector_fails(live_sim: SimulatorServer) -> None:
    result = run_cli("--once", env={"AZDO_ORG_URL": live_sim.base_url, "AZDO_PAT": "wrong"})
    assert result.returncode == 1
    assert "collector builds failed" in result.stderr and "access denied" in result.stderr
    assert f'{m.EXPORTER_REFRESH_SUCCESS}{{collector="builds"}} 0.0' in result.stdout


@pytest.mark.slow  # a subprocess exporter in demo mode: make test runs it, make test-fast does not
def test_demo_serves_metrics_and_stops_on_sigterm_within_5_seconds() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with cli_process("--demo", "--listen", f"127.0.0.1:{port}") as process:
        ready = wait_http(f"{base}/readyz", process=process)
        assert ready is not None and ready.status_code == 200
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        raw = requests.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
        assert raw.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(raw.raw.read()).decode()
        assert f'{m.PIPELINE_BROKEN}{{branch="main",pipeline="infra/deploy-api",project="Payments"}} 1.0' in text
        broken_for = [line for line in text.splitlines() if line.startswith(
            f'{m.PIPELINE_BROKEN_DURATION_SECONDS}{{branch="main",pipeline="infra/deploy-api"')]
        assert broken_for and float(broken_for[0].split()[-1]) > 4 * 3600
        landing = requests.get(base + "/", timeout=5).text
        assert "builds" in landing and "/metrics" in landing
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 5
        assert process.returncode == 0
    _, err = process.communicate()
    assert "SIMULATED" in err  # the banner says the data is simulated

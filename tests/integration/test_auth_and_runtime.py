"""Credentials from files, log formats, and the refresh loop's readiness and backoff."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from exporter.areas.base import RefreshError
from exporter.azdo.auth import BearerCredential, CredentialError, PatCredential
from exporter.azdo.client import ApiError, AzureDevOpsClient
from exporter.logging_setup import JsonFormatter
from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve.scheduler import Scheduler
from exporter.simulator.server import SimulatorServer
from tests.support import wait_until


def test_bearer_token_file_is_reread_when_it_changes(tmp_path: Path, sim: SimulatorServer) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n", encoding="utf-8")
    credential = BearerCredential(path=str(token_file))
    assert credential.authorization_header() == "Bearer first-token"
    sim.bearer_tokens.add("second-token")
    client = AzureDevOpsClient(credential, SelfMetrics(CollectorRegistry()), max_retries=0)
    with pytest.raises(ApiError) as caught:  # the simulator does not know the first token
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "auth"
    token_file.write_text("second-token\n", encoding="utf-8")
    os.utime(token_file, (time.time() + 5, time.time() + 5))  # make the change visible to a coarse mtime
    assert credential.authorization_header() == "Bearer second-token"
    assert client.get("projects", f"{sim.base_url}/_apis/projects").body["count"] == 0


def test_pat_file_keeps_the_last_good_token_when_the_file_vanishes(tmp_path: Path) -> None:
    pat_file = tmp_path / "pat"
    pat_file.write_text("abc", encoding="utf-8")
    credential = PatCredential(path=str(pat_file))
    header = credential.authorization_header()
    pat_file.unlink()
    assert credential.authorization_header() == header  # a rotation in progress is not an outage


def test_missing_token_file_is_a_clear_error_without_the_secret(tmp_path: Path) -> None:
    credential = PatCredential(path=str(tmp_path / "absent"))
    with pytest.raises(CredentialError) as caught:
        credential.authorization_header()
    assert "cannot read token file" in str(caught.value)


def test_json_log_lines_are_single_json_objects() -> None:
    record = logging.LogRecord("exporter.serve.scheduler", logging.WARNING, __file__, 1, "refresh of %s failed:\n%s",
                               ("builds", "HTTP 503"), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "warning" and entry["logger"] == "exporter.serve.scheduler"
    assert entry["message"] == "refresh of builds failed:\nHTTP 503"


class FlakyArea:
    """An area that fails a given number of times, then succeeds."""

    def __init__(self, failures: int, interval: float = 60.0) -> None:
        self.name = "flaky"
        self.interval = interval
        self.failures = failures
        self.calls: list[float] = []

    def refresh(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise RefreshError("upstream down", ["http_5xx"])

    def families(self) -> list[Metric]:
        return []


def test_scheduler_reports_readiness_and_counts_failures() -> None:
    registry = CollectorRegistry()
    area = FlakyArea(failures=1)
    scheduler = Scheduler([area], SelfMetrics(registry), clock=lambda: 1000.0)
    assert scheduler.ready() is False
    assert scheduler.run_once(area) is False
    assert scheduler.ready() is False
    assert registry.get_sample_value(m.EXPORTER_REFRESH_SUCCESS.name, {"collector": "flaky"}) == 0
    assert registry.get_sample_value(m.EXPORTER_REFRESH_ERRORS.total,
                                     {"collector": "flaky", "reason": "http_5xx"}) == 1
    assert registry.get_sample_value(m.EXPORTER_REFRESH_ERRORS.total,
                                     {"collector": "flaky", "reason": "auth"}) == 0
    assert scheduler.run_once(area) is True
    assert scheduler.ready() is True
    assert registry.get_sample_value(m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name,
                                     {"collector": "flaky"}) == 1000.0


def test_scheduler_backs_off_after_failures_and_stops_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exporter.serve.scheduler.BACKOFF_START", 0.1)
    area = FlakyArea(failures=3, interval=30.0)
    scheduler = Scheduler([area], SelfMetrics(CollectorRegistry()), rng=random.Random(1))
    scheduler.start()
    wait_until(lambda: len(area.calls) >= 4, 5, "four refreshes", interval=0.02)
    assert len(area.calls) == 4  # three failures retried quickly, then success
    gaps = [b - a for a, b in zip(area.calls, area.calls[1:], strict=False)]
    assert 0.05 <= gaps[0] <= 0.2 and 0.1 <= gaps[1] <= 0.4 and 0.2 <= gaps[2] <= 0.8  # growing backoff
    started = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - started < 1.0  # the 30 s wait after the success is interrupted
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "refresh-flaky")

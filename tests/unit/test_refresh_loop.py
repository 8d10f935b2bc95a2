"""The guarded refresh loop: crashes are counted as `internal` and survived, failures back off from a
floor whatever the interval, huge intervals do not kill the thread, and a dead thread is visible."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from exporter.areas.base import RefreshError
from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve.scheduler import Scheduler
from tests.support import wait_until


class ScriptedArea:
    """An area whose n-th refresh does what `script(n)` says (raise, or return)."""

    def __init__(self, script: Callable[[int], None], interval: float = 60.0, name: str = "scripted") -> None:
        self.name = name
        self.interval = interval
        self.calls = 0
        self._script = script

    def refresh(self) -> None:
        self.calls += 1
        self._script(self.calls)

    def families(self) -> list[Metric]:
        return []


class Fatal(BaseException):
    """Something not even `except Exception` catches (what kills a thread)."""


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_crashing_area_is_counted_internal_logged_once_and_the_loop_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("exporter.serve.scheduler.BACKOFF_START", 0.02)

    def script(n: int) -> None:
        if n <= 3:
            raise KeyError("value")  # a bug in an area: the same one three times

    area = ScriptedArea(script)
    registry = CollectorRegistry()
    scheduler = Scheduler([area], SelfMetrics(registry), rng=random.Random(3))
    assert sample(registry, m.EXPORTER_REFRESH_ERRORS.total, collector="scripted", reason="internal") == 0
    with caplog.at_level(logging.INFO, logger="exporter.serve.scheduler"):
        scheduler.start()
        try:
            wait_until(lambda: scheduler.status["scripted"]["last_success"] is not None, 10, "a successful refresh",
                       interval=0.01)
            assert scheduler.ready() is True
            assert all(t.is_alive() for t in threading.enumerate() if t.name == "refresh-scripted")
        finally:
            scheduler.stop()
    assert area.calls == 4  # three crashes, then the refresh after them ran and succeeded
    assert sample(registry, m.EXPORTER_REFRESH_ERRORS.total, collector="scripted", reason="internal") == 3
    assert sample(registry, m.EXPORTER_REFRESH_ERRORS.total, collector="scripted", reason="bad_response") == 0
    assert sample(registry, m.EXPORTER_REFRESH_SUCCESS.name, collector="scripted") == 1
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 3
    assert [r.exc_info is not None for r in crashes] == [True, False, False]  # the traceback once
    assert "internal error KeyError: 'value'" in crashes[0].getMessage()
    assert all(r.levelno == logging.ERROR for r in crashes)
    assert not any("failed after" in r.getMessage() for r in caplog.records)  # no second line per crash


def test_failures_never_retry_faster_than_every_5_seconds_whatever_the_interval() -> None:
    """A wrong PAT with `intervals: 1ms` used to be retried every 50 ms."""

    def refused(_n: int) -> None:
        raise RefreshError("access denied (HTTP 401)", ["auth"])

    area = ScriptedArea(refused, interval=0.001)
    scheduler = Scheduler([area], SelfMetrics(CollectorRegistry()))
    scheduler.start()
    try:
        time.sleep(0.5)
        assert area.calls == 1  # the next try waits at least 5 s
    finally:
        scheduler.stop()
    for failures in range(1, 40):
        assert 5.0 <= scheduler.failure_delay(failures, 0.001) <= 10.0


def test_backoff_grows_from_5_seconds_to_minutes() -> None:
    scheduler = Scheduler([], SelfMetrics(CollectorRegistry()), rng=random.Random(7))
    for failures, (low, high) in {1: (5, 10), 2: (10, 20), 3: (20, 40), 5: (80, 160), 6: (150, 300),
                                  40: (150, 300), 10_000: (150, 300)}.items():
        delay = scheduler.failure_delay(failures, 60.0)
        assert low <= delay <= high, (failures, delay)
    assert 1800 <= scheduler.failure_delay(50, 3600.0) <= 3600  # a long interval caps the backoff itself
    assert 15 <= scheduler.failure_delay(50, 3.0) <= 30  # ten intervals of a short one


def test_a_huge_interval_does_not_kill_the_refresh_thread() -> None:
    area = ScriptedArea(lambda n: None, interval=1e12)  # ~31,700 years: Event.wait(1e12) overflows
    registry = CollectorRegistry()
    scheduler = Scheduler([area], SelfMetrics(registry))
    scheduler.start()
    try:
        wait_until(lambda: area.calls == 1, 10, "the first refresh", interval=0.01)
        time.sleep(0.2)
        assert [t.is_alive() for t in scheduler._threads] == [True]
        assert scheduler.ready() is True
    finally:
        started = time.monotonic()
        scheduler.stop()
    assert time.monotonic() - started < 2.0  # the long wait is interrupted
    assert not any(t.is_alive() for t in scheduler._threads)


def test_a_dead_refresh_thread_makes_readiness_fail_and_success_zero(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def script(n: int) -> None:
        if n == 2:
            raise Fatal("the thread dies")

    area = ScriptedArea(script, interval=0.01)
    registry = CollectorRegistry()
    scheduler = Scheduler([area], SelfMetrics(registry), jitter=0.0)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the death itself is expected
    with caplog.at_level(logging.CRITICAL, logger="exporter.serve.scheduler"):
        scheduler.start()
        try:
            wait_until(lambda: not scheduler._threads[0].is_alive(), 10, "the refresh thread to die", interval=0.01)
            assert area.calls == 2
            assert scheduler.status["scripted"]["last_success"] is not None  # it did succeed once
            assert scheduler.ready() is False
            assert sample(registry, m.EXPORTER_REFRESH_SUCCESS.name, collector="scripted") == 0
        finally:
            scheduler.stop()
    assert any("refresh thread of scripted stopped" in r.getMessage() for r in caplog.records)

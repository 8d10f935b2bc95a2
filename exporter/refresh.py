"""Background refreshes: one thread per area, each on its interval with jitter, backing off on failure.

An area refreshes its own state from Azure DevOps and then publishes a new list of metric families
in one assignment; `SnapshotCollector` hands the published lists to the registry, so a scrape always
sees whole refreshes and never calls Azure DevOps.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.client import ApiError
from exporter.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

BACKOFF_START = 5.0


class RefreshError(Exception):
    """A refresh failed in whole or in part; `reasons` has one entry per failure (self-metric reasons)."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class Area(Protocol):
    """A unit of refresh: builds, pull requests, deployments, ..."""

    name: str
    interval: float

    def refresh(self) -> None:
        """Update state from Azure DevOps and publish new families; raise RefreshError or ApiError."""
        ...

    def families(self) -> list[Metric]:
        """The families of the last published refresh (never mutated after publication)."""
        ...


class SnapshotCollector(Collector):
    """Registry collector that yields each area's published families."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self._areas = list(areas)

    def collect(self) -> Iterable[Metric]:
        for area in self._areas:
            yield from area.families()


class Scheduler:
    """Runs the refresh loops and tracks readiness."""

    def __init__(self, areas: Iterable[Area], metrics: SelfMetrics, *, clock: Callable[[], float] = time.time,
                 jitter: float = 0.1, rng: random.Random | None = None) -> None:
        self.areas = list(areas)
        self._metrics = metrics
        self._clock = clock
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.status: dict[str, dict[str, object]] = {
            area.name: {"last_success": None, "last_error": None, "last_attempt": None, "refreshes": 0}
            for area in self.areas
        }
        for area in self.areas:
            metrics.register_collector(area.name)

    def run_once(self, area: Area) -> bool:
        """Refresh one area now; record self-metrics and status; True on complete success."""
        started = time.monotonic()
        error_text: str | None = None
        reasons: list[str] = []
        try:
            area.refresh()
        except RefreshError as error:
            error_text, reasons = str(error), error.reasons or ["bad_response"]
        except ApiError as error:
            error_text, reasons = str(error), [error.reason]
        except Exception as error:  # a bug or an unexpected answer must not kill the loop
            log.exception("refresh of %s crashed", area.name)
            error_text, reasons = f"unexpected {type(error).__name__}: {error}", ["bad_response"]
        duration = time.monotonic() - started
        self._metrics.refresh_duration.labels(area.name).observe(duration)
        now = self._clock()
        with self._lock:
            status = self.status[area.name]
            status["last_attempt"] = now
            status["refreshes"] = int(status["refreshes"] or 0) + 1  # type: ignore[call-overload]
            if error_text is None:
                status["last_success"] = now
                status["last_error"] = None
            else:
                status["last_error"] = error_text
        if error_text is None:
            self._metrics.refresh_success.labels(area.name).set(1)
            self._metrics.last_refresh_success.labels(area.name).set(now)
            log.info("refreshed %s in %.2fs", area.name, duration)
            return True
        self._metrics.refresh_success.labels(area.name).set(0)
        for reason in reasons:
            self._metrics.refresh_errors.labels(area.name, reason).inc()
        log.warning("refresh of %s failed after %.2fs: %s", area.name, duration, error_text)
        return False

    def ready(self) -> bool:
        """True once every area has completed a successful refresh."""
        with self._lock:
            return all(s["last_success"] is not None for s in self.status.values())

    def _loop(self, area: Area) -> None:
        failures = 0
        while not self._stop.is_set():
            ok = self.run_once(area)
            if ok:
                failures = 0
                delay = area.interval * (1 + self._rng.uniform(-self._jitter, self._jitter))
            else:
                # Exponential backoff with full jitter, never waiting longer than the normal interval.
                failures += 1
                ceiling = min(area.interval, BACKOFF_START * 2 ** (failures - 1))
                delay = self._rng.uniform(ceiling / 2, ceiling)
            self._stop.wait(max(0.05, delay))

    def start(self) -> None:
        for area in self.areas:
            thread = threading.Thread(target=self._loop, args=(area,), name=f"refresh-{area.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

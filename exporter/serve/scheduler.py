"""Background refreshes: one thread per area, each on its interval with jitter, backing off on failure.

The loop is guarded: an unexpected exception in an area is logged with its traceback (once while it
repeats), counted as reason `internal`, and the loop goes on. Should a refresh thread die anyway,
`ready()` turns False (`/readyz` 503) and the area's `refresh_success` goes to 0.

An area refreshes its own state from Azure DevOps and then publishes a new list of metric families
in one assignment; `SnapshotCollector` hands the published lists to the registry, so a scrape always
sees whole refreshes and never calls Azure DevOps.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter.areas.base import Area, RefreshError
from exporter.azdo.client import ApiError
from exporter.azdo.scrub import scrub
from exporter.metrics import catalogue
from exporter.metrics.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

# After the n-th failure in a row an area waits a random time in [c/2, c], c = BACKOFF_START * 2**(n-1),
# capped at BACKOFF_INTERVALS intervals but never above max(interval, BACKOFF_MAX) (at most 5 min unless
# the interval is longer), and never below BACKOFF_START / 2. So a wrong PAT retries at most every 5 s,
# whatever the interval, then every 10, 20, 40 s ... (an area with a 1 ms interval cannot hammer Azure
# DevOps), and an area with a 3 s interval still recovers within 30 s of the upstream's return.
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_INTERVALS = 10
MAX_WAIT = 86_400.0  # Event.wait overflows on huge timeouts; waits are taken a day at a time at most
GZIP_LEVEL = 3  # the cached snapshot is compressed once per refresh; 3 is ~3x faster than 9, ~10% larger


class _View:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render_parts(families: Iterable[Metric]) -> list[bytes]:
    """The text exposition of some metric families, one part per family (together: what generate_latest
    makes of them). Family by family, so rendering never holds the whole text twice, only one family's
    lines plus the parts made so far."""
    return [generate_latest(_View([family])) for family in families]  # type: ignore[arg-type]


def render_families(families: Iterable[Metric]) -> bytes:
    """The text exposition of some metric families, in one piece."""
    return b"".join(render_parts(families))


class RenderedSnapshot:
    """One published snapshot of an area, rendered once: its text exposition and a gzip member of it.

    `families` is the very list the area published; the bytes are made from it alone, so serving them
    can never mix two snapshots.
    """

    __slots__ = ("families", "parts", "_gzipped", "_lock")

    def __init__(self, families: list[Metric]) -> None:
        self.families = families
        self.parts = render_parts(families)  # the text, one part per family
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        """A complete gzip member of the text (members concatenate into one valid gzip stream, RFC 1952)."""
        if self._gzipped is None:
            with self._lock:
                if self._gzipped is None:
                    self._gzipped = _gzip_member(self.parts)
        return self._gzipped


def _gzip_member(parts: Iterable[bytes]) -> bytes:
    """One gzip member (header, deflate stream, trailer) of the concatenation of `parts`, made piecewise."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip framing
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


class ExpositionCache:
    """Rendered snapshots by area, so a scrape sends bytes instead of re-rendering every series.

    The first request for an area renders in the scraping thread. After that, `Scheduler.run_once`
    re-renders (text and, once asked for, gzip) in the refresh thread right after each refresh, and a
    scrape that finds a snapshot newer than its rendering (an area published outside the scheduler)
    keeps serving the previous complete rendering while one background thread renders the new one.
    """

    def __init__(self) -> None:
        # By id(area), with a weak reference to the area: an area that goes away takes its entry along.
        self._entries: dict[int, tuple[Callable[[], object], RenderedSnapshot]] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._gzip_wanted: set[int] = set()
        self._guard = threading.Lock()

    def _lock_for(self, area: Area) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(id(area), threading.Lock())

    def _current(self, area: Area) -> RenderedSnapshot | None:
        entry = self._entries.get(id(area))
        return entry[1] if entry is not None and entry[0]() is area else None

    def _forget(self, key: int) -> None:
        with self._guard:
            self._entries.pop(key, None)
            self._locks.pop(key, None)
            self._gzip_wanted.discard(key)

    def _store(self, area: Area, rendered: RenderedSnapshot) -> None:
        key = id(area)
        ref: Callable[[], object]
        try:
            ref = weakref.ref(area, lambda _ref: self._forget(key))
        except TypeError:  # an area that cannot be weakly referenced is held for the process lifetime
            ref = lambda: area  # noqa: E731
        self._entries[key] = (ref, rendered)

    def _render(self, area: Area, families: list[Metric]) -> RenderedSnapshot:
        """Render `families` (under the area's lock) unless they are rendered already."""
        with self._lock_for(area):
            held = self._current(area)
            if held is not None and held.families is families:
                return held
            rendered = RenderedSnapshot(families)
            if id(area) in self._gzip_wanted:
                rendered.gzipped()
            self._store(area, rendered)
            return rendered

    def get(self, area: Area, want_gzip: bool = False) -> RenderedSnapshot:
        """The rendering to serve for `area`: its newest snapshot, or the previous one while that renders."""
        if want_gzip:
            self._gzip_wanted.add(id(area))
        families = area.families()
        held = self._current(area)
        if held is None:
            return self._render(area, families)
        if held.families is not families and not self._lock_for(area).locked():
            threading.Thread(target=self._render_quietly, args=(area,), name=f"render-{area.name}",
                             daemon=True).start()
        return held

    def _render_quietly(self, area: Area) -> None:
        try:
            self._render(area, area.families())
        except Exception:  # a rendering bug must not kill anything; the previous rendering stays
            log.exception("rendering the %s snapshot failed", area.name)

    def refresh(self, area: Area) -> None:
        """Called after a refresh: re-render now if this area is served from the cache."""
        if self._current(area) is not None:
            self._render_quietly(area)


EXPOSITION_CACHE = ExpositionCache()

_serving = threading.local()


class SnapshotCollector(Collector):
    """Registry collector that yields each area's published families.

    `generate_latest(registry)` renders every series on each call. The HTTP server instead calls
    `exposition_parts(registry)`, which renders only the live (self-metrics) collectors and adds each
    area's cached rendering.
    """

    def __init__(self, areas: Iterable[Area], cache: ExpositionCache | None = None) -> None:
        self._areas = list(areas)
        self._cache = cache or EXPOSITION_CACHE

    def collect(self) -> Iterable[Metric]:
        found = getattr(_serving, "found", None)
        if found is not None:  # exposition_parts is asking: the cached renderings stand for us
            found.append(self)
            return
        for area in self._areas:
            yield from area.families()

    def describe(self) -> Iterable[Metric]:
        """The families the areas may publish, from the catalogue (prometheus_client's collector contract:
        the registry learns the names without a collect, and rejects a name that two collectors claim)."""
        for area in self._areas:
            for family in catalogue.of_area(area.name):
                yield family.described()

    def rendered(self, want_gzip: bool = False) -> list[RenderedSnapshot]:
        return [self._cache.get(area, want_gzip) for area in self._areas]


def exposition_parts(registry: Any, want_gzip: bool = False) -> list[bytes]:
    """The exposition of `registry` as parts to send one after the other (text, or gzip members).

    Live collectors are rendered now; each area's families come from its cached rendering.
    """
    found: list[SnapshotCollector] = []
    _serving.found = found
    try:
        live = generate_latest(registry)
    finally:
        _serving.found = None
    snapshots = [rendered for collector in found for rendered in collector.rendered(want_gzip)]
    if want_gzip:
        return [_gzip_member([live]), *(s.gzipped() for s in snapshots)]
    return [live, *(part for s in snapshots for part in s.parts)]


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
        self._last_crash: dict[str, str] = {}
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
            error_text, reasons = f"internal error {type(error).__name__}: {error}", ["internal"]
            self._log_crash(area, scrub(error_text))
        duration = time.monotonic() - started
        if error_text is not None:  # it goes to the log, `/` and the digest: no secret may ride along
            error_text = scrub(error_text)
        EXPOSITION_CACHE.refresh(area)  # render the new snapshot here, not in a scrape
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
            self._last_crash.pop(area.name, None)
            self._metrics.refresh_success.labels(area.name).set(1)
            self._metrics.last_refresh_success.labels(area.name).set(now)
            log.info("refreshed %s in %.2fs", area.name, duration)
            return True
        self._metrics.refresh_success.labels(area.name).set(0)
        for reason in reasons:
            self._metrics.refresh_errors.labels(area.name, reason).inc()
        if reasons != ["internal"]:  # an internal error has had its own (one) log record
            log.warning("refresh of %s failed after %.2fs: %s", area.name, duration, error_text)
        return False

    def _log_crash(self, area: Area, text: str) -> None:
        """The traceback once; while the same error repeats, one line each time."""
        if self._last_crash.get(area.name) == text:
            log.error("refresh of %s crashed again: %s (traceback logged before)", area.name, text)
        else:
            self._last_crash[area.name] = text
            log.exception("refresh of %s crashed (counted as reason internal; the loop goes on): %s",
                          area.name, text)

    def ready(self) -> bool:
        """True once every area has completed a successful refresh, and while every started refresh
        thread is alive (a dead one means that area's numbers no longer move)."""
        if self._threads and not self._stop.is_set() and not all(t.is_alive() for t in self._threads):
            return False
        with self._lock:
            return all(s["last_success"] is not None for s in self.status.values())

    def failure_delay(self, failures: int, interval: float) -> float:
        """How long to wait after the `failures`-th failure in a row (see BACKOFF_START)."""
        cap = max(interval, min(BACKOFF_MAX, BACKOFF_INTERVALS * interval))
        ceiling = min(cap, BACKOFF_START * 2.0 ** min(failures - 1, 64))
        return max(BACKOFF_START / 2, self._rng.uniform(ceiling / 2, ceiling))

    def _loop(self, area: Area) -> None:
        try:
            self._refresh_forever(area)
        finally:
            if not self._stop.is_set():  # only a bug gets here; say so everywhere it can be seen
                log.critical("the refresh thread of %s stopped; its numbers no longer refresh", area.name)
                self._metrics.refresh_success.labels(area.name).set(0)

    def _refresh_forever(self, area: Area) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                ok = self.run_once(area)
            except Exception:  # run_once guards the refresh; this guards the bookkeeping around it
                log.exception("refresh bookkeeping of %s failed", area.name)
                ok = False
            if ok:
                failures = 0
                delay = area.interval * (1 + self._rng.uniform(-self._jitter, self._jitter))
            else:
                failures += 1
                delay = self.failure_delay(failures, area.interval)
            self._wait(max(0.05, delay))

    def _wait(self, seconds: float) -> None:
        """Sleep `seconds` or until stopped, in pieces Event.wait can take."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.wait(min(left, MAX_WAIT)):
                return

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

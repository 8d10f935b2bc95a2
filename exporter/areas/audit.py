"""The audit area: audit log entries of the organization by area, category and action (SPEC §4).

Per cycle: the audit log (endpoint `auditlog`, see AzureDevOpsApi.audit_log) between a start time and
the cycle's "now". The first cycle reads the lookback window; later cycles
read from the previous cycle's end minus an overlap, and skip entries already seen (by id), so an entry
is counted exactly once however the pages or cycles cut through equal timestamps. The initial window
load is history: it fills the window gauges, not the counters.

The audit log is readable only when the organization is backed by Microsoft Entra ID, auditing is
turned on and the token may read it ("View audit log", scope `vso.auditlog`); otherwise the refresh
fails with one message saying so (reason `auth` or `http_4xx`), and the last numbers stay.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric

from exporter.areas.base import AreaBase, RefreshError, read_since
from exporter.azdo.api import AUDIT_BATCH_SIZE, AzureDevOpsApi
from exporter.azdo.client import ApiError
from exporter.config.settings import Config
from exporter.metrics import catalogue as m

BATCH_SIZE = AUDIT_BATCH_SIZE  # entries per page (a test pages with fewer)
# Entries may be indexed a little after their timestamp; re-read a margin and dedupe by id.
WATERMARK_OVERLAP = 900.0
# Known from start-up so that rate() sees the first one (SPEC: every known label set starts at 0).
ALWAYS_KNOWN = (("Git", "modify", "Git.RefUpdatePoliciesBypassed"),)
UNAVAILABLE_HINT = ("the audit log is readable only when the organization is backed by Microsoft Entra ID, "
                    "auditing is turned on (Organization settings > Policies > Log Audit Events) and the token "
                    "has the vso.auditlog scope and the 'View audit log' permission; set intervals.audit: 0 to "
                    "disable this collector")

Key = tuple[str, str, str]  # area, category, action id


def _label(value: object, lower: bool = False) -> str:
    text = value.strip() if isinstance(value, str) else ""
    return (text.lower() if lower else text) or "unknown"


class AuditArea(AreaBase):
    """Reads the organization's audit log incrementally and publishes its metric families."""

    name = m.AREA_AUDIT

    def __init__(self, config: Config, api: AzureDevOpsApi, clock: Callable[[], float]) -> None:
        super().__init__(config, api, clock)
        self._loaded = False
        self._watermark: float | None = None
        self._window: list[tuple[float, Key]] = []  # entries in the window, sorted by timestamp
        self._recent: dict[str, float] = {}  # ids of entries that a later overlap may read again
        self._totals: dict[Key, int] = {}

    def refresh(self) -> None:
        now = self._clock()
        since = read_since(self._window_start(now), self._watermark if self._loaded else None, WATERMARK_OVERLAP)
        try:
            new = self._fetch(since, now)
        except ApiError as error:
            if error.reason in ("auth", "http_4xx"):
                raise RefreshError(f"audit log unavailable ({error}); {UNAVAILABLE_HINT}", [error.reason]) from None
            raise RefreshError(f"audit log: {error}", [error.reason]) from None
        self._apply(new, now)
        self._families = list(self._build_families(now))

    def _fetch(self, since: float, now: float) -> list[tuple[str, float, Key]]:
        found: dict[str, tuple[str, float, Key]] = {}
        for entry in self._api.audit_log(since, now, batch_size=BATCH_SIZE):
            if entry.id in self._recent:
                continue
            key = (_label(entry.area), _label(entry.category, lower=True), _label(entry.action_id))
            found[entry.id] = (entry.id, entry.timestamp, key)
        return list(found.values())

    def _apply(self, new: list[tuple[str, float, Key]], now: float) -> None:
        steady = self._loaded
        window_start = now - self._config.lookback
        for key in ALWAYS_KNOWN:
            self._totals.setdefault(key, 0)
        for entry_id, timestamp, key in new:
            self._recent[entry_id] = timestamp
            self._totals.setdefault(key, 0)
            if steady:  # the initial window load is history, not events
                self._totals[key] += 1
            if timestamp >= window_start:
                bisect.insort(self._window, (timestamp, key))
        del self._window[: bisect.bisect_left(self._window, (window_start,))]
        horizon = now - 2 * WATERMARK_OVERLAP
        self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        self._watermark = now
        self._loaded = True

    def _build_families(self, now: float) -> Iterable[Metric]:
        total = m.AUDIT_EVENTS.counter()
        window = m.AUDIT_WINDOW_EVENTS.gauge()
        counts: dict[Key, int] = {}
        for _, key in self._window:
            counts[key] = counts.get(key, 0) + 1
        for key in sorted(self._totals):
            total.add_metric(list(key), self._totals[key])
            window.add_metric(list(key), counts.get(key, 0))
        yield from (total, window)

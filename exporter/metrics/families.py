"""Building blocks for snapshots: histogram accumulators and bucket layouts.

Proxied Azure DevOps data is exported through metric families built once per refresh (SPEC: a scrape
never calls Azure DevOps); this keeps the bucket layouts in one place (the families themselves come from catalogue.py).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

RUN_DURATION_BUCKETS = (30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 20 * MINUTE,
                        30 * MINUTE, 45 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR)
QUEUE_DURATION_BUCKETS = (1, 5, 15, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR)
TIME_TO_FIX_BUCKETS = (5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY,
                       2 * DAY, 7 * DAY)


class HistogramData:
    """Bucket counts and a sum for one label set (not thread-safe: owned by one refresh thread)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # last slot: above the largest bound
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def copy(self) -> HistogramData:
        other = HistogramData(self.bounds)
        other.counts = list(self.counts)
        other.total, other.count = self.total, self.count
        return other

    def cumulative_buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_bound_text(bound), running))
        out.append(("+Inf", self.count))
        return out


def _bound_text(bound: float) -> str:
    return repr(float(bound)) if not math.isinf(bound) else "+Inf"


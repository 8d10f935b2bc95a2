"""The digest's content: what is broken, what was fixed since the last digest, and the team's numbers
against the previous digest's, plus the state file that carries them from one digest to the next.

"Fixed since the last digest" is the previous digest's broken set minus the current one. How fast:
when the previous digest was sent by this same exporter process, the growth of
`azdo_pipeline_time_to_fix_seconds` gives the exact length of the broken period (the mean when the
branch broke and was fixed more than once); otherwise (after a restart, or for `azdo-exporter digest`)
the length is bounded from above by the latest successful run, and the digest says "within".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from exporter.team.digest_snapshot import BranchState, ProductionDeployment, TeamSnapshot

log = logging.getLogger(__name__)

__all__ = ["BrokenItem", "Digest", "DigestState", "Figure", "FixedItem", "compose", "load_state", "next_state",
           "save_state"]

STATE_VERSION = 1
BranchKey = tuple[str, str, str]


# ---------------------------------------------------------------------------------------------- state

@dataclass
class DigestState:
    """What the last digest sent; persisted as JSON in `digest.state_file`."""

    last_slot: str | None = None  # the scheduled slot of the last digest sent (no slot: sent by hand)
    sent_at: float | None = None
    instance: str | None = None  # the exporter process that sent it
    broken: dict[BranchKey, float | None] = field(default_factory=dict)  # key -> broken since
    fixes: dict[BranchKey, tuple[float, float]] = field(default_factory=dict)  # key -> time-to-fix count, sum
    figures: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "last_slot": self.last_slot,
            "sent_at": self.sent_at,
            "instance": self.instance,
            "broken": [{"project": k[0], "pipeline": k[1], "branch": k[2], "since": v}
                       for k, v in sorted(self.broken.items())],
            "fixes": [{"project": k[0], "pipeline": k[1], "branch": k[2], "count": v[0], "sum": v[1]}
                      for k, v in sorted(self.fixes.items())],
            "figures": dict(sorted(self.figures.items())),
        }

    @classmethod
    def from_json(cls, data: Any) -> DigestState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("not a digest state file of version 1")

        def number(value: Any) -> float | None:
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        def key(item: dict[str, Any]) -> BranchKey:
            return str(item["project"]), str(item["pipeline"]), str(item["branch"])

        return cls(
            last_slot=str(data["last_slot"]) if data.get("last_slot") else None,
            sent_at=number(data.get("sent_at")),
            instance=str(data["instance"]) if data.get("instance") else None,
            broken={key(i): number(i.get("since")) for i in data.get("broken") or []},
            fixes={key(i): (number(i.get("count")) or 0.0, number(i.get("sum")) or 0.0)
                   for i in data.get("fixes") or []},
            figures={str(k): number(v) for k, v in (data.get("figures") or {}).items()},
        )


def load_state(path: str | None) -> DigestState:
    """The state in `path`; an empty state when there is no file yet (or no path).

    A file that cannot be parsed is logged and treated as empty (the digest must not stop for good);
    the next digest sent overwrites it.
    """
    if not path:
        return DigestState()
    try:
        with open(path, encoding="utf-8") as fh:
            return DigestState.from_json(json.load(fh))
    except FileNotFoundError:
        return DigestState()
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.error("digest state file %s is unreadable (%s); starting from an empty state", path,
                  type(error).__name__)
        return DigestState()


def save_state(path: str, state: DigestState) -> None:
    """Write the state atomically: a temporary file in the same directory, fsync, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".digest-state-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state.to_json(), fh, indent=1, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------------------- content

@dataclass(frozen=True)
class BrokenItem:
    project: str
    pipeline: str
    branch: str
    broken_for: float | None
    since: float | None
    failures: int
    url: str | None


@dataclass(frozen=True)
class FixedItem:
    project: str
    pipeline: str
    branch: str
    took: float | None  # length of the broken period (a mean when `periods` > 1)
    exact: bool  # False: `took` is an upper bound
    periods: int
    url: str | None


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    kind: str  # ratio | duration | per_day
    now: float | None
    previous: float | None
    detail: str
    higher_is_better: bool

    def trend(self) -> str:
        """`better`, `worse`, `unchanged` or `` (nothing to compare)."""
        if self.now is None or self.previous is None:
            return ""
        delta = self.now - self.previous
        tolerance = {"ratio": 0.0005, "duration": 30.0, "per_day": 0.005}.get(self.kind, 0.0)
        if abs(delta) <= tolerance:
            return "unchanged"
        return "better" if (delta > 0) == self.higher_is_better else "worse"


@dataclass
class Digest:
    organization: str
    organization_url: str
    generated_at: float
    time_zone: str
    previous_at: float | None
    broken: list[BrokenItem]
    fixed: list[FixedItem]
    healthy: int
    figures: list[Figure]
    dora: list[Figure] | None
    deployments: list[ProductionDeployment] | None
    lookback: float | None
    stale: list[str]
    has_builds: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local(self, timestamp: float) -> datetime:
        return datetime.fromtimestamp(timestamp, tz=UTC).astimezone(self.zone)

    def to_json(self) -> dict[str, Any]:
        """The plain-JSON form (generic webhook)."""
        def iso(timestamp: float | None) -> str | None:
            return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")

        def figure(f: Figure) -> dict[str, Any]:
            return {"key": f.key, "label": f.label, "unit": {"ratio": "ratio", "duration": "seconds",
                                                             "per_day": "per_day"}[f.kind],
                    "value": f.now, "previous": f.previous, "trend": f.trend() or None, "detail": f.detail}

        return {
            "schema": "azdo-exporter/digest/v1",
            "organization": self.organization,
            "organization_url": self.organization_url,
            "generated_at": iso(self.generated_at),
            "previous_digest_at": iso(self.previous_at),
            "lookback_seconds": self.lookback,
            "stale_collectors": self.stale,
            "has_build_data": self.has_builds,
            "summary": {"broken": len(self.broken), "healthy": self.healthy, "fixed": len(self.fixed)},
            "broken": [{**asdict(b), "since": iso(b.since), "broken_for_seconds": b.broken_for}
                       for b in self.broken],
            "fixed": [{"project": f.project, "pipeline": f.pipeline, "branch": f.branch,
                       "time_to_fix_seconds": f.took, "exact": f.exact, "periods": f.periods, "url": f.url}
                      for f in self.fixed],
            "figures": [figure(f) for f in self.figures],
            "dora": None if self.dora is None else [figure(f) for f in self.dora],
            "production_deployments": None if self.deployments is None else [
                {"project": d.project, "pipeline": d.pipeline, "environment": d.environment, "kind": d.kind,
                 "last_success": iso(d.last_success)} for d in self.deployments],
        }


def _fixed(snapshot: TeamSnapshot, previous: DigestState, instance: str | None) -> list[FixedItem]:
    current = {b.key: b for b in snapshot.branches}
    same_process = instance is not None and previous.instance == instance
    out: list[FixedItem] = []
    for key, state in current.items():
        was_broken = key in previous.broken
        delta_count = delta_sum = 0.0
        if same_process:
            before = previous.fixes.get(key, (0.0, 0.0))
            delta_count = state.fixes_since_start[0] - before[0]
            delta_sum = state.fixes_since_start[1] - before[1]
        if state.broken and not (delta_count > 0 and not was_broken):
            continue  # still broken (a fix-and-break-again is reported when it was not broken before)
        if was_broken and not state.broken:
            out.append(_fixed_item(state, previous.broken[key], delta_count, delta_sum))
        elif delta_count > 0:  # broke and was fixed between two digests
            out.append(FixedItem(*key, took=delta_sum / delta_count, exact=delta_count == 1,
                                 periods=int(delta_count), url=state.url))
    return sorted(out, key=lambda f: (f.project.lower(), f.pipeline.lower(), f.branch))


def _fixed_item(state: BranchState, since: float | None, delta_count: float, delta_sum: float) -> FixedItem:
    if delta_count > 0:
        return FixedItem(*state.key, took=delta_sum / delta_count, exact=delta_count == 1,
                         periods=int(delta_count), url=state.url)
    took = None
    if since is not None and state.last_result == "succeeded" and state.last_finished is not None:
        took = max(0.0, state.last_finished - since)  # the fix came at or before the latest success
    return FixedItem(*state.key, took=took, exact=False, periods=1, url=state.url)


def _figures(snapshot: TeamSnapshot, previous: DigestState) -> tuple[list[Figure], list[Figure] | None]:
    prev = previous.figures
    succeeded, decided = snapshot.runs()
    figures = [Figure("success_ratio", "Success ratio", "ratio", snapshot.success_ratio, prev.get("success_ratio"),
                      f"{succeeded} of {decided} runs succeeded, canceled not counted", True)]
    if snapshot.reviews is not None:
        reviewed, total = snapshot.pull_requests()
        figures.append(Figure("review_coverage", "Review coverage", "ratio", snapshot.review_coverage,
                              prev.get("review_coverage"), f"{reviewed} of {total} completed pull requests reviewed",
                              True))
    fixes, _ = snapshot.window_fixes()
    figures.append(Figure("mean_time_to_fix", "Mean time to fix", "duration", snapshot.mean_time_to_fix,
                          prev.get("mean_time_to_fix"), f"{fixes} fixes in the window", False))
    dora = None
    if snapshot.dora is not None:
        d = snapshot.dora
        dora = [
            Figure("deployment_frequency", "Deployment frequency", "per_day", d.deployments_per_day,
                   prev.get("deployment_frequency"), f"{d.succeeded} successful production deployments", True),
            Figure("lead_time", "Lead time for changes (mean)", "duration", d.mean_lead_time, prev.get("lead_time"),
                   f"{int(d.lead_time[0]) if d.lead_time else 0} deployments measured", False),
            Figure("change_failure_rate", "Change failure rate", "ratio", d.change_failure_rate,
                   prev.get("change_failure_rate"), f"{d.failed} of {d.succeeded + d.failed} deployments failed",
                   False),
            Figure("time_to_restore", "Time to restore (mean)", "duration", d.mean_time_to_restore,
                   prev.get("time_to_restore"),
                   f"{int(d.time_to_restore[0]) if d.time_to_restore else 0} restores", False),
        ]
    return figures, dora


def compose(snapshot: TeamSnapshot, previous: DigestState, *, time_zone: str = "UTC",
            instance: str | None = None) -> Digest:
    """The digest for a snapshot, compared with the previous digest's state."""
    broken = [BrokenItem(b.project, b.pipeline, b.branch, b.broken_for, b.broken_since, b.consecutive_failures,
                         b.url) for b in snapshot.broken]
    figures, dora = _figures(snapshot, previous)
    return Digest(
        organization=snapshot.organization,
        organization_url=snapshot.organization_url,
        generated_at=snapshot.taken_at,
        time_zone=time_zone,
        previous_at=previous.sent_at,
        broken=broken,
        fixed=_fixed(snapshot, previous, instance) if previous.sent_at is not None else [],
        healthy=len(snapshot.healthy),
        figures=figures,
        dora=dora,
        deployments=snapshot.deployments,
        lookback=snapshot.lookback,
        stale=snapshot.stale_collectors,
        has_builds=snapshot.has_builds,
    )


def next_state(snapshot: TeamSnapshot, digest: Digest, *, slot: str | None, instance: str | None,
               previous: DigestState) -> DigestState:
    """The state to record once `digest` was delivered (a digest sent by hand keeps the last slot)."""
    figures = {f.key: f.now for f in [*digest.figures, *(digest.dora or [])]}
    return DigestState(
        last_slot=slot if slot is not None else previous.last_slot,
        sent_at=snapshot.taken_at,
        instance=instance,
        broken={b.key: b.broken_since for b in snapshot.branches if b.broken},
        fixes={b.key: b.fixes_since_start for b in snapshot.branches if b.fixes_since_start[0] > 0},
        figures=figures,
    )

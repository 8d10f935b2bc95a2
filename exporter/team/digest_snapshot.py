"""The team's view of the exporter's current snapshot, for the radiator (`/status`) and the digest.

Everything here is read from the metric families the exporter publishes (`registry.collect()`), so
neither the radiator nor the digest ever calls Azure DevOps: they show exactly what `/metrics` shows.
Families that an area does not publish (pull requests, deployments) simply leave their part empty.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from prometheus_client.registry import Collector

from exporter.metrics import catalogue as m
from exporter.metrics import monitoring

__all__ = [
    "BranchState",
    "Dora",
    "ProductionDeployment",
    "RepositoryReviews",
    "TeamSnapshot",
    "human_duration",
    "pipeline_url",
    "read_snapshot",
]

DEFAULT_PRODUCTION = (re.compile(monitoring.PRODUCTION_ENVIRONMENT_REGEX),)
# Results that count for the success ratio; canceled runs neither pass nor fail.
DECIDED_RESULTS = ("succeeded", "partially_succeeded", "failed")


def human_duration(seconds: float | None) -> str:
    """A duration in the two largest units that matter: `45s`, `12m`, `4h 38m`, `3d 2h`."""
    if seconds is None:
        return "unknown"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 3600:
        return f"{minutes}m"
    if s < 86400:
        rest = minutes % 60
        return f"{hours}h {rest}m" if rest else f"{hours}h"
    rest = hours % 24
    return f"{days}d {rest}h" if rest else f"{days}d"


def pipeline_url(organization_url: str, project: str, pipeline_id: str) -> str:
    """The pipeline's runs page in Azure DevOps."""
    return f"{organization_url}/{quote(project, safe='')}/_build?definitionId={quote(pipeline_id, safe='')}"


@dataclass
class BranchState:
    """One tracked branch of one pipeline, as published by the builds area."""

    project: str
    pipeline: str
    branch: str
    broken: bool = False
    broken_since: float | None = None
    broken_for: float | None = None
    consecutive_failures: int = 0
    last_result: str | None = None
    last_finished: float | None = None
    url: str | None = None
    window_runs: dict[str, float] = field(default_factory=dict)
    fixes_since_start: tuple[float, float] = (0.0, 0.0)  # count, sum of the since-start time-to-fix histogram
    window_fixes: tuple[float, float] = (0.0, 0.0)  # count, sum of the window gauge histogram

    @property
    def key(self) -> tuple[str, str, str]:
        return self.project, self.pipeline, self.branch


@dataclass(frozen=True)
class RepositoryReviews:
    project: str
    repository: str
    reviewed: int
    unreviewed: int

    @property
    def total(self) -> int:
        return self.reviewed + self.unreviewed

    @property
    def coverage(self) -> float | None:
        return self.reviewed / self.total if self.total else None


@dataclass(frozen=True)
class ProductionDeployment:
    project: str
    pipeline: str
    environment: str
    kind: str
    last_success: float


@dataclass(frozen=True)
class Dora:
    """The four keys for production over the lookback window (means, since the exporter keeps buckets)."""

    lookback: float
    succeeded: int
    failed: int
    lead_time: tuple[float, float] | None  # count, sum
    time_to_restore: tuple[float, float] | None

    @property
    def deployments_per_day(self) -> float | None:
        return self.succeeded / (self.lookback / 86400.0) if self.lookback > 0 else None

    @property
    def change_failure_rate(self) -> float | None:
        total = self.succeeded + self.failed
        return self.failed / total if total else None

    @property
    def mean_lead_time(self) -> float | None:
        return self.lead_time[1] / self.lead_time[0] if self.lead_time and self.lead_time[0] else None

    @property
    def mean_time_to_restore(self) -> float | None:
        if self.time_to_restore and self.time_to_restore[0]:
            return self.time_to_restore[1] / self.time_to_restore[0]
        return None


@dataclass
class TeamSnapshot:
    """What the team sees: broken branches, healthy ones, reviews and production deployments."""

    organization: str
    organization_url: str
    taken_at: float
    lookback: float | None = None
    branches: list[BranchState] = field(default_factory=list)
    has_builds: bool = False
    reviews: list[RepositoryReviews] | None = None  # None: the pull-request area publishes nothing
    deployments: list[ProductionDeployment] | None = None  # None: the deployments area publishes nothing
    dora: Dora | None = None
    collectors: dict[str, tuple[bool, float | None]] = field(default_factory=dict)  # ok, last success

    @property
    def broken(self) -> list[BranchState]:
        """Broken branches, longest broken first."""
        return sorted((b for b in self.branches if b.broken),
                      key=lambda b: (-(b.broken_for or 0.0), b.project.lower(), b.pipeline.lower(), b.branch))

    @property
    def healthy(self) -> list[BranchState]:
        return [b for b in self.branches if not b.broken]

    def runs(self) -> tuple[int, int]:
        """(succeeded, decided) runs over the window on tracked branches; decided excludes canceled runs."""
        succeeded = sum(int(b.window_runs.get("succeeded", 0)) for b in self.branches)
        decided = sum(int(b.window_runs.get(r, 0)) for b in self.branches for r in DECIDED_RESULTS)
        return succeeded, decided

    @property
    def success_ratio(self) -> float | None:
        succeeded, decided = self.runs()
        return succeeded / decided if decided else None

    def pull_requests(self) -> tuple[int, int]:
        reviews = self.reviews or []
        return sum(r.reviewed for r in reviews), sum(r.total for r in reviews)

    @property
    def review_coverage(self) -> float | None:
        reviewed, total = self.pull_requests()
        return reviewed / total if total else None

    def window_fixes(self) -> tuple[int, float]:
        return (int(sum(b.window_fixes[0] for b in self.branches)), sum(b.window_fixes[1] for b in self.branches))

    @property
    def mean_time_to_fix(self) -> float | None:
        count, total = self.window_fixes()
        return total / count if count else None

    @property
    def stale_collectors(self) -> list[str]:
        return sorted(name for name, (ok, _) in self.collectors.items() if not ok)


class _Acc:
    """What the readers gather while the samples are walked once."""

    def __init__(self, production: Callable[[str], bool]) -> None:
        self.production = production
        self.lookback: float | None = None
        self.has_builds = False
        self.branches: dict[tuple[str, str, str], BranchState] = {}
        self.ids: dict[tuple[str, str], str] = {}
        self.reviews: dict[tuple[str, str], list[int]] | None = None
        self.last_success: dict[tuple[str, str, str, str], float] | None = None
        self.deploy_results: dict[str, int] | None = None
        self.lead: list[float] | None = None
        self.restore: list[float] | None = None
        self.ok: dict[str, bool] = {}
        self.last_ok: dict[str, float] = {}

    def branch(self, labels: dict[str, str]) -> BranchState:
        key = (labels.get("project", ""), labels.get("pipeline", ""), labels.get("branch", ""))
        state = self.branches.get(key)
        if state is None:
            state = self.branches[key] = BranchState(*key)
        return state


def read_snapshot(registry: Collector, *, organization: str, organization_url: str, now: float,
                  is_production: Callable[[str], bool] | None = None) -> TeamSnapshot:
    """Walk the registry's published families once and build the team's view of them.

    Only the families some reader needs are walked (the catalogue names them; see _READERS)."""
    acc = _Acc(is_production or (lambda env: any(p.search(env) for p in DEFAULT_PRODUCTION)))
    snapshot = TeamSnapshot(organization=organization, organization_url=organization_url.rstrip("/"), taken_at=now)
    for family in registry.collect():
        if family.name not in _READ_FAMILIES:
            continue
        for sample in family.samples:
            reader = _READERS.get(sample.name)
            if reader is not None:
                reader(acc, dict(sample.labels), float(sample.value))
    snapshot.lookback, snapshot.has_builds = acc.lookback, acc.has_builds
    for state in acc.branches.values():
        if state.broken and state.broken_since is not None:
            state.broken_for = max(0.0, now - state.broken_since)
        pipeline_id = acc.ids.get((state.project, state.pipeline))
        if pipeline_id:
            state.url = pipeline_url(snapshot.organization_url, state.project, pipeline_id)
    snapshot.branches = sorted(acc.branches.values(), key=lambda b: (b.project.lower(), b.pipeline.lower(), b.branch))
    if acc.reviews is not None:
        reviews = (RepositoryReviews(p, r, counts[0], counts[1]) for (p, r), counts in acc.reviews.items())
        snapshot.reviews = sorted(reviews, key=lambda r: (r.project.lower(), r.repository.lower()))
    if acc.last_success is not None:
        snapshot.deployments = sorted((ProductionDeployment(*key, when) for key, when in acc.last_success.items()),
                                      key=lambda d: -d.last_success)
    if acc.deploy_results is not None:
        snapshot.dora = Dora(
            lookback=snapshot.lookback or 0.0,
            succeeded=acc.deploy_results.get("succeeded", 0),
            failed=acc.deploy_results.get("failed", 0),
            lead_time=(acc.lead[0], acc.lead[1]) if acc.lead else None,
            time_to_restore=(acc.restore[0], acc.restore[1]) if acc.restore else None,
        )
    snapshot.collectors = {name: (ok, acc.last_ok.get(name)) for name, ok in acc.ok.items()}
    return snapshot


def _add_pair(target: list[float] | None, index: int, value: float) -> list[float]:
    pair = target if target is not None else [0.0, 0.0]
    pair[index] += value
    return pair



# -- readers: one per series the team views use, keyed by the catalogue's series names ---------------
Reader = Callable[[_Acc, dict[str, str], float], None]


def _pipeline_id(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.ids[(labels.get("project", ""), labels.get("pipeline", ""))] = labels.get("pipeline_id", "")


def _broken(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.has_builds = True
    acc.branch(labels).broken = value >= 1


def _broken_since(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.branch(labels).broken_since = value


def _broken_for(acc: _Acc, labels: dict[str, str], value: float) -> None:
    state = acc.branch(labels)
    state.broken_for = state.broken_for if state.broken_for is not None else value


def _consecutive_failures(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.branch(labels).consecutive_failures = int(value)


def _last_result(acc: _Acc, labels: dict[str, str], value: float) -> None:
    if value >= 1:
        acc.branch(labels).last_result = labels.get("result")


def _last_finished(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.branch(labels).last_finished = value


def _window_runs(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.branch(labels).window_runs[labels.get("result", "")] = value


def _branch_pair(attribute: str, index: int) -> Reader:
    """Sets a branch's <attribute>[index] (a (count, sum) pair of a histogram) to the series' value."""
    def read(acc: _Acc, labels: dict[str, str], value: float) -> None:
        state = acc.branch(labels)
        pair = list(getattr(state, attribute))
        pair[index] = value
        setattr(state, attribute, (pair[0], pair[1]))
    return read


def _reviews(acc: _Acc, labels: dict[str, str], value: float) -> None:
    reviews = acc.reviews if acc.reviews is not None else {}
    acc.reviews = reviews
    counts = reviews.setdefault((labels.get("project", ""), labels.get("repository", "")), [0, 0])
    counts[0 if labels.get("reviewed") == "true" else 1] += int(value)


def _last_deployment(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.last_success = acc.last_success if acc.last_success is not None else {}
    environment = labels.get("environment", "")
    if acc.production(environment) and value > 0:
        key = (labels.get("project", ""), labels.get("pipeline", ""), environment, labels.get("kind", ""))
        acc.last_success[key] = max(value, acc.last_success.get(key, 0.0))


def _deployments(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.deploy_results = acc.deploy_results if acc.deploy_results is not None else {}
    if acc.production(labels.get("environment", "")):
        result = labels.get("result", "")
        acc.deploy_results[result] = acc.deploy_results.get(result, 0) + int(value)


def _production_pair(attribute: str, index: int) -> Reader:
    """Adds a production series' value to acc.<attribute>[index] (a [count, sum] pair)."""
    def read(acc: _Acc, labels: dict[str, str], value: float) -> None:
        if acc.production(labels.get("environment", "")):
            setattr(acc, attribute, _add_pair(getattr(acc, attribute), index, value))
    return read


def _refresh_ok(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.ok[labels.get("collector", "")] = value >= 1


def _last_refresh_ok(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.last_ok[labels.get("collector", "")] = value


def _lookback(acc: _Acc, labels: dict[str, str], value: float) -> None:
    acc.lookback = value


_READERS: dict[str, Reader] = {
    m.PIPELINE_INFO.name: _pipeline_id,
    m.PIPELINE_BROKEN.name: _broken,
    m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name: _broken_since,
    m.PIPELINE_BROKEN_DURATION_SECONDS.name: _broken_for,
    m.PIPELINE_CONSECUTIVE_FAILURES.name: _consecutive_failures,
    m.PIPELINE_LAST_RUN_RESULT.name: _last_result,
    m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS.name: _last_finished,
    m.PIPELINE_WINDOW_RUNS.name: _window_runs,
    m.PIPELINE_TIME_TO_FIX_SECONDS.count: _branch_pair("fixes_since_start", 0),
    m.PIPELINE_TIME_TO_FIX_SECONDS.sum: _branch_pair("fixes_since_start", 1),
    m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gcount: _branch_pair("window_fixes", 0),
    m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gsum: _branch_pair("window_fixes", 1),
    m.PULL_REQUESTS_WINDOW_COMPLETED.name: _reviews,
    m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS.name: _last_deployment,
    m.DEPLOYMENTS_WINDOW.name: _deployments,
    m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gcount: _production_pair("lead", 0),
    m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gsum: _production_pair("lead", 1),
    m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gcount: _production_pair("restore", 0),
    m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gsum: _production_pair("restore", 1),
    m.EXPORTER_REFRESH_SUCCESS.name: _refresh_ok,
    m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name: _last_refresh_ok,
    m.EXPORTER_LOOKBACK_SECONDS.name: _lookback,
}
# The families those series belong to: the samples of every other family are never looked at.
_READ_FAMILIES = frozenset(family.name for family in map(m.family_of, _READERS) if family is not None)

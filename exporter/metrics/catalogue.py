"""The metric catalogue: every `azdo_*` family the exporter exposes, declared once.

Each declaration holds what Prometheus shows (name, type, help, label names) and what the docs need
(unit, the area that publishes it). The areas build their families from these declarations
(`PIPELINE_BROKEN.gauge()`), the self-metrics are created from them (`EXPORTER_THROTTLED.live_counter()`),
and the README table, the alert and dashboard generators, the team views and the tests take names
from here: a metric name is written nowhere else (tests/unit/test_catalogue.py greps for strays).

Names follow prometheus_client: a counter is declared without `_total`, which the exposition adds; a
histogram's series are `name_bucket`, `name_sum`, `name_count`, a gauge histogram's `name_bucket`,
`name_gsum`, `name_gcount` (the properties below give them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from exporter.metrics.families import HistogramData


class Kind(Enum):
    """The family's type. INFO is a gauge that is always 1 and carries its facts in labels (the text
    format has no info type, so it is exposed as a gauge); GAUGE_HISTOGRAM is exposed as a histogram
    with `_gsum`/`_gcount` series."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE_HISTOGRAM = "gauge histogram"
    INFO = "info"


# The areas (and the exporter's own parts) that publish families; also the `collector` label values
# of the self-metrics for the first six.
AREA_BUILDS, AREA_DEPLOYMENTS, AREA_AGENT_POOLS = "builds", "deployments", "agent_pools"
AREA_PULL_REQUESTS, AREA_POLICIES, AREA_AUDIT = "pull_requests", "policies", "audit"
AREA_EXPORTER, AREA_DIGEST = "exporter", "digest"


@dataclass(frozen=True)
class Family:
    """One metric family's declaration. `str(family)` is its name, for PromQL f-strings."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    unit: str  # "" for counts and ratios
    area: str

    def __str__(self) -> str:
        return self.name

    # -- series names -----------------------------------------------------------------------------
    @property
    def total(self) -> str:
        return self._series("_total", Kind.COUNTER)

    @property
    def bucket(self) -> str:
        return self._series("_bucket", Kind.HISTOGRAM, Kind.GAUGE_HISTOGRAM)

    @property
    def sum(self) -> str:
        return self._series("_sum", Kind.HISTOGRAM)

    @property
    def count(self) -> str:
        return self._series("_count", Kind.HISTOGRAM)

    @property
    def gsum(self) -> str:
        return self._series("_gsum", Kind.GAUGE_HISTOGRAM)

    @property
    def gcount(self) -> str:
        return self._series("_gcount", Kind.GAUGE_HISTOGRAM)

    @property
    def exposed_name(self) -> str:
        """The name as the text exposition's `# TYPE` line shows it (counters end in `_total`)."""
        return self.total if self.kind is Kind.COUNTER else self.name

    def _series(self, suffix: str, *kinds: Kind) -> str:
        if self.kind not in kinds:
            raise AttributeError(f"{self.name} is a {self.kind.value}: it has no {suffix} series")
        return self.name + suffix

    # -- snapshot families (built per refresh by the areas) ---------------------------------------
    def gauge(self) -> GaugeMetricFamily:
        self._expect(Kind.GAUGE, Kind.INFO)
        return GaugeMetricFamily(self.name, self.help, labels=list(self.labels))

    def counter(self) -> CounterMetricFamily:
        self._expect(Kind.COUNTER)
        return CounterMetricFamily(self.name, self.help, labels=list(self.labels))

    def histogram(self, data: Iterable[tuple[Sequence[str], HistogramData]]) -> Metric:
        """A histogram (or gauge histogram) family holding one HistogramData per label set."""
        self._expect(Kind.HISTOGRAM, Kind.GAUGE_HISTOGRAM)
        family: HistogramMetricFamily | GaugeHistogramMetricFamily
        if self.kind is Kind.HISTOGRAM:
            family = HistogramMetricFamily(self.name, self.help, labels=list(self.labels))
        else:
            family = GaugeHistogramMetricFamily(self.name, self.help, labels=list(self.labels))
        for labels, hist in data:
            family.add_metric(list(labels), hist.cumulative_buckets(), hist.total)
        return family

    def described(self) -> Metric:
        """An empty family of the right type, for a collector's `describe()`."""
        if self.kind in (Kind.GAUGE, Kind.INFO):
            return self.gauge()
        if self.kind is Kind.COUNTER:
            return self.counter()
        return self.histogram(())

    # -- live metrics (the exporter's own, on its registry) ---------------------------------------
    def live_gauge(self, registry: CollectorRegistry | None) -> Gauge:
        self._expect(Kind.GAUGE, Kind.INFO)
        return Gauge(self.name, self.help, list(self.labels), registry=registry)

    def live_counter(self, registry: CollectorRegistry) -> Counter:
        self._expect(Kind.COUNTER)
        return Counter(self.name, self.help, list(self.labels), registry=registry)

    def live_histogram(self, registry: CollectorRegistry, buckets: Sequence[float]) -> Histogram:
        self._expect(Kind.HISTOGRAM)
        return Histogram(self.name, self.help, list(self.labels), buckets=buckets, registry=registry)

    def _expect(self, *kinds: Kind) -> None:
        if self.kind not in kinds:
            raise TypeError(f"{self.name} is declared as a {self.kind.value}")


def _f(name: str, kind: Kind, help: str, labels: Sequence[str], unit: str, area: str) -> Family:
    return Family(name, kind, help, tuple(labels), unit, area)


G, C, H, GH = Kind.GAUGE, Kind.COUNTER, Kind.HISTOGRAM, Kind.GAUGE_HISTOGRAM
_PL = ("project", "pipeline")
_BR = ("project", "pipeline", "branch")
_DEP = ("project", "pipeline", "environment", "kind")
_DORA = ("project", "pipeline", "environment")
_PR = ("project", "repository", "target_branch")
_POL = ("project", "repository", "branch")
_AUD = ("area", "category", "action")

# -- the exporter itself (live metrics, exporter/metrics/selfmetrics.py) --------------------------
EXPORTER_BUILD_INFO = _f(
    "azdo_exporter_build_info", Kind.INFO, "Version of azdo-exporter and of the Python running it (always 1).",
    ["version", "python_version"], "", AREA_EXPORTER)
EXPORTER_LOOKBACK_SECONDS = _f(
    "azdo_exporter_lookback_seconds", G, "Length of the history window that the *_window_* metrics cover.",
    [], "seconds", AREA_EXPORTER)
EXPORTER_REFRESH_SUCCESS = _f(
    "azdo_exporter_refresh_success", G,
    "1 if the last refresh of the collector succeeded completely, 0 if any part failed.", ["collector"], "",
    AREA_EXPORTER)
EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS = _f(
    "azdo_exporter_last_refresh_success_timestamp_seconds", G,
    "Unix time of the last refresh of the collector that succeeded completely.", ["collector"], "seconds",
    AREA_EXPORTER)
EXPORTER_REFRESH_DURATION_SECONDS = _f(
    "azdo_exporter_refresh_duration_seconds", H, "Wall time of collector refreshes.", ["collector"], "seconds",
    AREA_EXPORTER)
EXPORTER_REFRESH_ERRORS = _f(
    "azdo_exporter_refresh_errors", C, "Refresh failures by collector and reason.", ["collector", "reason"], "",
    AREA_EXPORTER)
EXPORTER_API_REQUESTS = _f(
    "azdo_exporter_api_requests", C,
    "HTTP requests sent to Azure DevOps by fixed endpoint name and status code "
    "(code is 'timeout' or 'connection' when no answer came).", ["endpoint", "code"], "", AREA_EXPORTER)
EXPORTER_API_REQUEST_DURATION_SECONDS = _f(
    "azdo_exporter_api_request_duration_seconds", H, "Duration of HTTP requests to Azure DevOps.", ["endpoint"],
    "seconds", AREA_EXPORTER)
EXPORTER_RATE_LIMIT_REMAINING = _f(
    "azdo_exporter_rate_limit_remaining", G,
    "X-RateLimit-Remaining of the last answer: throughput units left before Azure DevOps delays requests.",
    ["resource"], "", AREA_EXPORTER)
EXPORTER_THROTTLED = _f(
    "azdo_exporter_throttled", C, "Answers with HTTP 429 (request blocked by Azure DevOps rate limiting).", [], "",
    AREA_EXPORTER)
EXPORTER_RATE_LIMIT_DELAY_SECONDS = _f(
    "azdo_exporter_rate_limit_delay_seconds", C,
    "Seconds of delay from rate limiting: X-RateLimit-Delay reported by Azure DevOps plus the "
    "time the exporter waited as told by Retry-After.", [], "seconds", AREA_EXPORTER)
EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL = _f(
    "azdo_exporter_web_config_last_reload_successful", G,
    "1 if the last load of the web config (--web.config.file) succeeded, 0 if it failed and the previous "
    "settings are still in force.", [], "", AREA_EXPORTER)
EXPORTER_DIGEST_DELIVERIES = _f(
    "azdo_exporter_digest_deliveries", C, "Digest deliveries by result (success or failure, after retries).",
    ["result"], "", AREA_DIGEST)

# -- builds (exporter/areas/builds.py) -------------------------------------------------------------
PIPELINE_INFO = _f(
    "azdo_pipeline_info", Kind.INFO, "One series per pipeline, with its id, repository and default branch (always 1).",
    ["project", "pipeline", "pipeline_id", "repository", "default_branch"], "", AREA_BUILDS)
PIPELINE_LAST_RUN_RESULT = _f(
    "azdo_pipeline_last_run_result", G,
    "1 for the result of the latest completed run of the branch, 0 for the other results.", [*_BR, "result"], "",
    AREA_BUILDS)
PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS = _f(
    "azdo_pipeline_last_run_finished_timestamp_seconds", G, "Finish time of the latest completed run.", _BR,
    "seconds", AREA_BUILDS)
PIPELINE_LAST_RUN_DURATION_SECONDS = _f(
    "azdo_pipeline_last_run_duration_seconds", G, "Start-to-finish time of the latest completed run.", _BR,
    "seconds", AREA_BUILDS)
PIPELINE_BROKEN = _f(
    "azdo_pipeline_broken", G, "1 while the branch is broken (its latest breaking-or-fixing run is breaking).",
    _BR, "", AREA_BUILDS)
PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS = _f(
    "azdo_pipeline_broken_since_timestamp_seconds", G,
    "Only while broken: finish time of the first breaking run after the last successful one.", _BR, "seconds",
    AREA_BUILDS)
PIPELINE_BROKEN_DURATION_SECONDS = _f(
    "azdo_pipeline_broken_duration_seconds", G,
    "Only while broken: seconds since broken-since, as of the last refresh.", _BR, "seconds", AREA_BUILDS)
PIPELINE_CONSECUTIVE_FAILURES = _f(
    "azdo_pipeline_consecutive_failures", G, "Breaking runs since the last successful run (0 when healthy).", _BR,
    "", AREA_BUILDS)
PIPELINE_RUNS_IN_PROGRESS = _f(
    "azdo_pipeline_runs_in_progress", G, "Runs of the pipeline in progress now (all branches).", _PL, "", AREA_BUILDS)
PIPELINE_RUNS_QUEUED = _f(
    "azdo_pipeline_runs_queued", G, "Runs of the pipeline queued and not started now (all branches).", _PL, "",
    AREA_BUILDS)
PIPELINE_RUNS = _f(
    "azdo_pipeline_runs", C, "Completed runs seen since the exporter started.", [*_BR, "result"], "", AREA_BUILDS)
PIPELINE_WINDOW_RUNS = _f(
    "azdo_pipeline_window_runs", G, "Completed runs in the lookback window.", [*_BR, "result"], "", AREA_BUILDS)
PIPELINE_RUN_DURATION_SECONDS = _f(
    "azdo_pipeline_run_duration_seconds", H,
    "Start-to-finish time of runs on tracked branches seen since the exporter started.", _PL, "seconds", AREA_BUILDS)
PIPELINE_QUEUE_DURATION_SECONDS = _f(
    "azdo_pipeline_queue_duration_seconds", H,
    "Queued-to-started time of runs on tracked branches seen since the exporter started.", _PL, "seconds", AREA_BUILDS)
PIPELINE_TIME_TO_FIX_SECONDS = _f(
    "azdo_pipeline_time_to_fix_seconds", H, "Length of each broken period that ended since the exporter started.",
    _BR, "seconds", AREA_BUILDS)
PIPELINE_WINDOW_TIME_TO_FIX_SECONDS = _f(
    "azdo_pipeline_window_time_to_fix_seconds", GH, "Broken periods that ended in the lookback window, by length.",
    _BR, "seconds", AREA_BUILDS)
PIPELINE_LAST_RUN_TESTS = _f(
    "azdo_pipeline_last_run_tests", G,
    "Test results of the latest completed run by outcome (passed, failed, other).", [*_BR, "outcome"], "", AREA_BUILDS)
PIPELINE_HAS_TESTS = _f(
    "azdo_pipeline_has_tests", G, "1 if the latest completed run published test results.", _BR, "", AREA_BUILDS)
PIPELINE_TESTS = _f(
    "azdo_pipeline_tests", C, "Test results of runs seen since the exporter started, by outcome.",
    [*_BR, "outcome"], "", AREA_BUILDS)

# -- deployments (exporter/areas/deployments.py) ---------------------------------------------------
DEPLOYMENTS = _f(
    "azdo_deployments", C, "Deployments (stage attempts) finished since the exporter started, by result.",
    [*_DEP, "result"], "", AREA_DEPLOYMENTS)
DEPLOYMENTS_WINDOW = _f(
    "azdo_deployments_window", G, "Deployments (stage attempts) finished in the lookback window, by result.",
    [*_DEP, "result"], "", AREA_DEPLOYMENTS)
DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS = _f(
    "azdo_deployment_last_success_timestamp_seconds", G, "Finish time of the latest successful deployment seen.",
    _DEP, "seconds", AREA_DEPLOYMENTS)
DEPLOYMENT_LEAD_TIME_SECONDS = _f(
    "azdo_deployment_lead_time_seconds", H,
    "Lead time for changes of successful production deployments since the exporter started: finish minus the "
    "commit time of the oldest change the previous successful deployment did not have.", _DORA, "seconds",
    AREA_DEPLOYMENTS)
DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS = _f(
    "azdo_deployment_window_lead_time_seconds", GH,
    "Lead time for changes of successful production deployments in the lookback window.", _DORA, "seconds",
    AREA_DEPLOYMENTS)
DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS = _f(
    "azdo_deployment_window_time_to_restore_seconds", GH,
    "Time from a failed production deployment to the next successful one, for restores in the lookback window.",
    _DORA, "seconds", AREA_DEPLOYMENTS)

# -- agent pools (exporter/areas/agent_pools.py) ---------------------------------------------------
AGENT_POOL_AGENTS = _f(
    "azdo_agent_pool_agents", G, "Agents of the pool by status (online, offline) and whether they are enabled.",
    ["pool", "status", "enabled"], "", AREA_AGENT_POOLS)
AGENT_POOL_JOBS = _f(
    "azdo_agent_pool_jobs", G, "Job requests of the pool now: queued (no agent assigned yet) and running.",
    ["pool", "state"], "", AREA_AGENT_POOLS)

# -- pull requests (exporter/areas/pull_requests.py) -----------------------------------------------
PULL_REQUESTS_OPEN = _f(
    "azdo_pull_requests_open", G, "Active pull requests now, drafts included.", _PR, "", AREA_PULL_REQUESTS)
PULL_REQUESTS_OPEN_DRAFT = _f(
    "azdo_pull_requests_open_draft", G, "Active draft pull requests now.", _PR, "", AREA_PULL_REQUESTS)
PULL_REQUESTS_COMPLETED = _f(
    "azdo_pull_requests_completed", C, "Pull requests completed since the exporter started; reviewed: an "
    "individual other than the author approved.", [*_PR, "reviewed"], "", AREA_PULL_REQUESTS)
PULL_REQUESTS_WINDOW_COMPLETED = _f(
    "azdo_pull_requests_window_completed", G, "Pull requests completed in the lookback window; reviewed: an "
    "individual other than the author approved.", [*_PR, "reviewed"], "", AREA_PULL_REQUESTS)
PULL_REQUESTS_BYPASSED = _f(
    "azdo_pull_requests_bypassed", C, "Completed pull requests whose completion bypassed branch policies, since "
    "the exporter started.", _PR, "", AREA_PULL_REQUESTS)
PULL_REQUESTS_WINDOW_BYPASSED = _f(
    "azdo_pull_requests_window_bypassed", G, "Completed pull requests whose completion bypassed branch policies, "
    "in the lookback window.", _PR, "", AREA_PULL_REQUESTS)
PULL_REQUEST_TIME_TO_MERGE_SECONDS = _f(
    "azdo_pull_request_time_to_merge_seconds", H,
    "Created-to-completed time of pull requests completed since the exporter started.", ["project", "repository"],
    "seconds", AREA_PULL_REQUESTS)

# -- branch policies (exporter/areas/policies.py) --------------------------------------------------
BRANCH_POLICY_MIN_REVIEWERS = _f(
    "azdo_branch_policy_min_reviewers", G, "Minimum approvers enforced on the branch by an enabled, blocking "
    "minimum-reviewers policy (0 if none).", _POL, "", AREA_POLICIES)
BRANCH_POLICY_ENABLED = _f(
    "azdo_branch_policy_enabled", G, "1 if an enabled, blocking policy of the type applies to the branch, else 0.",
    [*_POL, "policy"], "", AREA_POLICIES)

# -- audit (exporter/areas/audit.py) ---------------------------------------------------------------
AUDIT_EVENTS = _f(
    "azdo_audit_events", C, "Audit log entries seen since the exporter started, by area, category and action id.",
    _AUD, "", AREA_AUDIT)
AUDIT_WINDOW_EVENTS = _f(
    "azdo_audit_window_events", G, "Audit log entries in the lookback window, by area, category and action id.",
    _AUD, "", AREA_AUDIT)

# Every family, in exposition order (self-metrics first, then the areas as exporter/app.py adds them).
ALL: tuple[Family, ...] = tuple(value for value in list(globals().values()) if isinstance(value, Family))
BY_NAME: dict[str, Family] = {family.name: family for family in ALL}
assert len(BY_NAME) == len(ALL), "a metric name is declared twice"


def of_area(area: str) -> tuple[Family, ...]:
    """The families an area publishes, in exposition order."""
    return tuple(family for family in ALL if family.area == area)


_SERIES_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_created")


def family_of(series: str) -> Family | None:
    """The family a series name (`azdo_pipeline_runs_total`, `..._gsum`) belongs to, or None."""
    if series in BY_NAME:
        return BY_NAME[series]
    for suffix in _SERIES_SUFFIXES:
        if series.endswith(suffix) and series[: -len(suffix)] in BY_NAME:
            return BY_NAME[series[: -len(suffix)]]
    return None


def names_of(*areas: str) -> tuple[str, ...]:
    """The family names of the areas, e.g. to tell an exposition line's area by `startswith`."""
    return tuple(family.name for family in ALL if family.area in areas)


# The exporter's own families (its self-metrics and the digest's counter), as opposed to proxied data.
SELF_METRICS: tuple[str, ...] = names_of(AREA_EXPORTER, AREA_DIGEST)

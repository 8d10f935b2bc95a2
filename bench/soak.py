"""The fault soak: the exporter (a subprocess, real HTTP) against the simulator (a subprocess, medium
scale, accelerated time) while the simulator misbehaves, first one fault at a time at random, then all
at once; then faults stop and every number must converge to the fault-free values. Every area runs:
builds (with tests), pull requests, policies, deployments, agent pools and audit.

`make soak` runs it for 10+ minutes, then the hostile-client phase (bench/hostile.py: 1,000 hostile
connections for 2 minutes); `tests/test_soak.py` runs a short version under `make test`.
`run_soak` returns a report and raises `SoakFailure` listing every failed check.

Checked, all the time: the process is alive; `/healthz` answers within a deadline; `/metrics` answers
with a complete exposition (ends with a newline, parses with prometheus_client's parser, every area is
all there or not at all and its families agree on their label sets); counters never decrease while their
series exists. At the end: each fault showed up under its reason in
`azdo_exporter_refresh_errors_total` for every collector whose endpoints it hit (and 429s in
`azdo_exporter_throttled_total`), and no collector failed with a reason no fault causes; no refresh
crashed; projects that appeared and disappeared came and went; builds runs, completed pull requests and
audit entries counted since the soak began match what the simulator produced in that period (never
double-counted, none missed); RSS stayed flat; with the simulator's clock frozen, every gauge of every
area equals that of a fresh `--once` run.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.harness import (
    PAT,
    Proc,
    http_get,
    http_post_json,
    processes,
    run_once,
    start_exporter,
    start_simulator,
    wait_ready,
)
from bench.hostile import run_hostile
from exporter.metrics import catalogue as m
from exporter.serve.scheduler import BACKOFF_INTERVALS, BACKOFF_MAX

REQUEST_TIMEOUT = 2.0  # the exporter's AZDO_REQUEST_TIMEOUT during the soak
HEALTH_DEADLINE = 5.0
METRICS_DEADLINE = 30.0
ALL_REASONS = ("auth", "throttled", "http_5xx", "http_4xx", "timeout", "connection", "bad_response", "internal")
# No fault of the program answers 4xx (other than 429) or drops connections, and none may raise anything
# but an API error: a refresh failing with one of these is a finding (e.g. a project deleted between the
# shared listing and its refresh, or a bug).
UNEXPECTED_REASONS = ("http_4xx", "connection", "internal")
# The exporter's AZDO_MAX_RESPONSE_BYTES: above any real page here (a medium-scale builds page is over
# 4 MiB), and an endless body sent at loopback speed passes it well within the request deadline.
MAX_RESPONSE_BYTES = 16 * 2**20
SOAK_PROJECTS = ("Soak-Appearing-1", "Soak-Appearing-2")


@dataclass(frozen=True)
class AreaSpec:
    """One area (collector) as the soak sees it."""

    collector: str
    prefixes: tuple[str, ...]  # its metric families' names (a sample or _gsum family name starts with one)
    # regex on the URL path: listings only this area requests (each fault step targets every area)
    path: str
    # listings paged with the x-ms-continuationtoken header (the never-ending token applies to them)
    token_paged: bool
    # pairs of families whose label sets (projected on `labels`) must be equal within one scrape
    agree: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


PR_LABELS = ("project", "repository", "target_branch")
AREAS: tuple[AreaSpec, ...] = (
    AreaSpec("builds", m.names_of(m.AREA_BUILDS), r"/_apis/build/builds/?$", True,
             ((m.PIPELINE_INFO.name, m.PIPELINE_RUNS_IN_PROGRESS.name, ("project", "pipeline")),
              (m.PIPELINE_BROKEN.name, m.PIPELINE_RUNS.total, ("project", "pipeline", "branch")))),
    AreaSpec("pull_requests", m.names_of(m.AREA_PULL_REQUESTS), r"/_apis/git/pullrequests/?$", False,
             ((m.PULL_REQUESTS_OPEN.name, m.PULL_REQUESTS_BYPASSED.total, PR_LABELS),
              (m.PULL_REQUESTS_OPEN.name, m.PULL_REQUESTS_WINDOW_BYPASSED.name, PR_LABELS),
              (m.PULL_REQUESTS_COMPLETED.total, m.PULL_REQUESTS_WINDOW_COMPLETED.name,
               (*PR_LABELS, "reviewed")))),
    AreaSpec("policies", m.names_of(m.AREA_POLICIES), r"/_apis/policy/configurations/?$", True,
             ((m.BRANCH_POLICY_MIN_REVIEWERS.name, m.BRANCH_POLICY_ENABLED.name,
               ("project", "repository", "branch")),)),
    AreaSpec("deployments", m.names_of(m.AREA_DEPLOYMENTS),
             r"/_apis/(release/deployments|distributedtask/environments(/\d+/environmentdeploymentrecords)?)/?$", True,
             ((m.DEPLOYMENTS.total, m.DEPLOYMENTS_WINDOW.name,
               ("project", "pipeline", "environment", "kind", "result")),)),
    AreaSpec("agent_pools", m.names_of(m.AREA_AGENT_POOLS),
             r"/_apis/distributedtask/pools(/\d+/(agents|jobrequests))?/?$", True,
             ((m.AGENT_POOL_AGENTS.name, m.AGENT_POOL_JOBS.name, ("pool",)),)),
    AreaSpec("audit", m.names_of(m.AREA_AUDIT), r"/_apis/audit/auditlog/?$", False,
             ((m.AUDIT_EVENTS.total, m.AUDIT_WINDOW_EVENTS.name, ("area", "category", "action")),)),
)
COLLECTORS = tuple(a.collector for a in AREAS)

# Since-start families: never decrease while their series exists. Every `_total` counter, and these
# histograms (their _bucket/_count/_sum).
SINCE_START_HISTOGRAMS = (m.PIPELINE_RUN_DURATION_SECONDS.name, m.PIPELINE_QUEUE_DURATION_SECONDS.name,
                          m.PIPELINE_TIME_TO_FIX_SECONDS.name, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.name,
                          m.DEPLOYMENT_LEAD_TIME_SECONDS.name, m.EXPORTER_REFRESH_DURATION_SECONDS.name,
                          m.EXPORTER_API_REQUEST_DURATION_SECONDS.name)
MONOTONIC_SUFFIXES = ("_total", "_count", "_sum", "_bucket")

# Families left out of the comparison with a fresh `--once` run, by name, and why:
NOT_COMPARED = {
    # since the exporter started: a fresh process starts them at 0 (checked against the simulator's
    # truth instead, where it can be: runs, completed pull requests, audit entries)
    m.PIPELINE_RUNS.total: "since-start counter",
    m.PIPELINE_TESTS.total: "since-start counter",
    m.PULL_REQUESTS_COMPLETED.total: "since-start counter",
    m.PULL_REQUESTS_BYPASSED.total: "since-start counter",
    m.DEPLOYMENTS.total: "since-start counter",
    m.AUDIT_EVENTS.total: "since-start counter",
    m.PIPELINE_RUN_DURATION_SECONDS.name: "since-start histogram",
    m.PIPELINE_QUEUE_DURATION_SECONDS.name: "since-start histogram",
    m.PIPELINE_TIME_TO_FIX_SECONDS.name: "since-start histogram",
    m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.name: "since-start histogram",
    m.DEPLOYMENT_LEAD_TIME_SECONDS.name: "since-start histogram",
    # now minus broken-since, on the reader's own clock: the two processes read it seconds apart
    m.PIPELINE_BROKEN_DURATION_SECONDS.name: "depends on the exporter's clock",
}
# Window gauges: the window's start is the exporter's own clock minus the lookback (and the audit
# log is read up to the exporter's own now); the two runs read their clocks seconds apart, so a
# handful of series at the window's edges may differ. Tolerated per area: max(5, 0.5 %).
WINDOW_MARKERS = ("_window_", "_window")


def retry_wait(interval: float) -> float:
    """The longest an area can wait before its next try after failures in a row: the scheduler's back-off
    ceiling (BACKOFF_INTERVALS intervals, at most BACKOFF_MAX), plus two intervals for the refresh itself.
    Every wait for the exporter to see a change or meet a fault allows this much, since the fault program
    makes the areas fail several times in a row."""
    return max(interval, min(BACKOFF_MAX, BACKOFF_INTERVALS * interval)) + 2 * interval


def _per_area(kind: str, count: int, *, only_token_paged: bool = False, **extra: Any) -> list[dict[str, Any]]:
    """One fault object per area, each on that area's own endpoints with its own count."""
    return [{"kind": kind, "path": a.path, "count": count, **extra} for a in AREAS
            if a.token_paged or not only_token_paged]


# One fault at a time: (what, fault objects, the refresh-error reason it must cause or None). Each step
# hits every area's endpoints (org-level ones included: pools, audit); counts are set so that a request
# and its retry (AZDO_MAX_RETRIES=1) both meet the fault.
SINGLE_FAULTS: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("5xx answers", _per_area("status", 2, status=503), "http_5xx"),
    ("500 on the projects listing", [{"kind": "status", "path": r"/_apis/projects/?$", "status": 500, "count": 2}],
     "http_5xx"),
    ("timeouts", _per_area("delay", 2, delay=REQUEST_TIMEOUT + 1.5), "timeout"),
    ("truncated JSON", _per_area("truncated", 2), "bad_response"),
    ("malformed JSON", _per_area("malformed", 2), "bad_response"),
    ("203 sign-in page", _per_area("signin", 1), "auth"),
    ("429 storm with Retry-After", _per_area("throttle", 2, retry_after=1), "throttled"),
    ("slow answers", _per_area("delay", 6, delay=REQUEST_TIMEOUT / 3), None),
    # pull requests page with $top/$skip and the audit log with a token in the body: the simulator's
    # never-ending header token does not apply to them, so this step leaves them out
    ("never-ending continuation token", _per_area("repeat_token", 2, only_token_paged=True), "bad_response"),
    ("Retry-After on a 200", _per_area("retry_after_ok", 2, retry_after=1), None),
    # Hostile upstreams (issue 12): the answer trickles a byte at a time (the total deadline ends it), the
    # body never ends (the size cap ends it), error answers echo the request's Authorization header (the
    # PAT must appear in no output: _check_secrets), a redirect to another host (never followed).
    ("trickling answers", _per_area("trickle", 2, delay=0.2), "timeout"),
    ("endless body", _per_area("endless", 2, delay=0.0), "bad_response"),
    ("credentials echoed in 401 answers", _per_area("echo_headers", 1, status=401), "auth"),
    ("credentials echoed in 500 answers", _per_area("echo_headers", 2, status=500), "http_5xx"),
    ("redirect to another host", _per_area("redirect", 2, status=302, location="http://127.0.0.1:9/elsewhere"),
     "auth"),
]


def expected_reasons() -> dict[str, set[str]]:
    """Collector -> the reasons the single-fault program must make it report."""
    out: dict[str, set[str]] = {c: set() for c in COLLECTORS}
    for _, faults, reason in SINGLE_FAULTS:
        if reason is None:
            continue
        for fault in faults:
            for area in AREAS:
                if fault["path"] == area.path:
                    out[area.collector].add(reason)
    return out


ALL_AT_ONCE = [
    {"kind": "status", "path": "", "status": 502, "probability": 0.04},
    {"kind": "delay", "path": "", "delay": REQUEST_TIMEOUT + 1.0, "probability": 0.01},
    {"kind": "truncated", "path": "", "probability": 0.03},
    {"kind": "malformed", "path": "", "probability": 0.03},
    {"kind": "signin", "path": "", "probability": 0.01},
    {"kind": "throttle", "path": "", "retry_after": 1, "probability": 0.03},
    {"kind": "delay", "path": "", "delay": 0.3, "probability": 0.05},
]
# The never-ending continuation token is left out here: one probabilistic hit announces a token ("1")
# that the next, unfaulted request carries, and the simulator's builds listing rejects it with a 400 (a
# simulator artifact, counted as http_4xx). The single-fault steps hit both requests of a listing.


class SoakFailure(AssertionError):
    pass


Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[Key, float]


@dataclass
class Converged:
    compared: int = 0
    window_edge: int = 0
    differ: int = 0


@dataclass
class Truth:
    """A counter's increase during the soak against what the simulator produced meanwhile."""

    what: str
    counted: float = 0.0
    lower: int = 0
    upper: int = 0


@dataclass
class Report:
    duration: float = 0.0
    scrapes: int = 0
    health_checks: int = 0
    max_health_latency: float = 0.0
    max_scrape_latency: float = 0.0
    faults_injected: list[str] = field(default_factory=list)
    reasons: dict[str, dict[str, float]] = field(default_factory=dict)  # collector -> reason -> errors
    throttled: float = 0.0
    rss_mib: list[float] = field(default_factory=list)
    truths: dict[str, Truth] = field(default_factory=dict)
    converged: dict[str, Converged] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rss = self.rss_mib
        kinds = Counter(self.faults_injected)
        out = [
            f"soak ran {self.duration:.0f} s: {self.scrapes} /metrics scrapes (max {self.max_scrape_latency:.2f} s), "
            f"{self.health_checks} /healthz checks (max {self.max_health_latency:.2f} s)",
            f"faults injected ({len(self.faults_injected)} steps): "
            + ", ".join(f"{what} x{n}" for what, n in sorted(kinds.items())),
            "refresh errors by collector and reason:",
            *[f"  {c:<14} " + ", ".join(f"{r}={v:.0f}" for r, v in sorted(by.items()))
              for c, by in sorted(self.reasons.items())],
            f"azdo_exporter_throttled_total: {self.throttled:.0f}",
            f"RSS MiB: first {rss[0] if rss else 0:.0f}, median {statistics.median(rss) if rss else 0:.0f}, "
            f"max {max(rss) if rss else 0:.0f}, last {rss[-1] if rss else 0:.0f} ({len(rss)} samples)",
            "counted during the soak vs the simulator (bounds from scrape timing):",
            *[f"  {name:<14} {t.what}: counted {t.counted:.0f}, simulator between {t.lower} and {t.upper}"
              for name, t in self.truths.items()],
            "converged with a fresh --once run (series compared, window-edge differences, other differences):",
            *[f"  {c:<14} {v.compared} series, {v.window_edge} window-edge, {v.differ} other"
              for c, v in self.converged.items()],
            "checks: " + ("ALL PASSED" if not self.failures else f"{len(self.failures)} FAILED"),
            *[f"  FAILED: {f}" for f in self.failures[:40]],
        ]
        return out


def parse_exposition(text: str) -> tuple[Samples, set[str]]:
    """The samples, and the names of the families (with or without samples)."""
    samples: Samples = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, families


def area_of(name: str) -> str | None:
    for area in AREAS:
        if name.startswith(area.prefixes):
            return area.collector
    return None


class Watcher:
    """Background checks while the soak runs: health, scrapes, counters, memory."""

    def __init__(self, exporter: Proc, report: Report) -> None:
        self.exporter = exporter
        self.report = report
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latest: Samples = {}
        self.area_families: dict[str, set[str]] = {}  # collector -> its families, as first published
        self._previous: Samples = {}
        self._threads = [threading.Thread(target=self._health, daemon=True),
                         threading.Thread(target=self._scrape, daemon=True),
                         threading.Thread(target=self._memory, daemon=True)]

    def fail(self, message: str) -> None:
        with self.lock:
            if message not in self.report.failures:
                self.report.failures.append(message)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(METRICS_DEADLINE + 10)

    def _health(self) -> None:
        while not self.stop.wait(0.5):
            if not self.exporter.alive():
                self.fail(f"exporter exited with {self.exporter.popen.returncode}")
                return
            started = time.monotonic()
            try:
                status, body, _ = http_get(f"http://127.0.0.1:{self.exporter.port}/healthz", timeout=HEALTH_DEADLINE)
                if status != 200 or body != b"ok\n":
                    self.fail(f"/healthz answered {status}")
            except OSError as error:
                self.fail(f"/healthz did not answer within {HEALTH_DEADLINE:g}s: {error}")
            latency = time.monotonic() - started
            with self.lock:
                self.report.health_checks += 1
                self.report.max_health_latency = max(self.report.max_health_latency, latency)

    def _memory(self) -> None:
        while not self.stop.wait(2.0):
            try:
                rss = self.exporter.rss_bytes() / 2**20
            except OSError:
                return
            with self.lock:
                self.report.rss_mib.append(rss)

    def scrape_once(self, gzip: bool) -> Samples | None:
        started = time.monotonic()
        try:
            status, body, _ = http_get(f"http://127.0.0.1:{self.exporter.port}/metrics", timeout=METRICS_DEADLINE,
                                       headers={"Accept-Encoding": "gzip"} if gzip else None)
        except OSError as error:
            self.fail(f"/metrics did not answer within {METRICS_DEADLINE:g}s: {error}")
            return None
        latency = time.monotonic() - started
        with self.lock:
            self.report.scrapes += 1
            self.report.max_scrape_latency = max(self.report.max_scrape_latency, latency)
        text = body.decode("utf-8", errors="replace")
        if status != 200 or not text.endswith("\n"):
            self.fail(f"/metrics answered {status} with an incomplete exposition ({len(body)} bytes)")
            return None
        try:
            samples, families = parse_exposition(text)
        except Exception as error:  # the parser raises ValueError and friends on broken text
            self.fail(f"/metrics does not parse: {type(error).__name__}: {error}")
            return None
        self._check_areas(samples, families)
        self._check_monotonic(samples)
        with self.lock:
            self.latest = samples
        return samples

    def _check_areas(self, samples: Samples, families: set[str]) -> None:
        """Each area all there or not at all (its set of families never changes once published), and its
        families agree on their label sets within one scrape (never a mix of two snapshots)."""
        by_area: dict[str, set[str]] = defaultdict(set)
        for name in families:
            area = area_of(name)
            if area is not None:
                by_area[area].add(name)
            elif not name.startswith(m.SELF_METRICS):
                self.fail(f"family {name} belongs to no area the soak knows")
        for area, names in by_area.items():
            first = self.area_families.setdefault(area, names)
            if names != first:
                self.fail(f"{area} area half there: families {sorted(names ^ first)[:5]} differ")
        for spec in AREAS:
            for one, other, labels in spec.agree:
                a = {_labels(lb, *labels) for n, lb in samples if n == one}
                b = {_labels(lb, *labels) for n, lb in samples if n == other}
                if a != b:
                    self.fail(f"{spec.collector}: {one} and {other} disagree on their {'/'.join(labels)} within "
                              f"one scrape (a mixed or half-applied snapshot): {sorted(a ^ b)[:3]}")
        pipelines = {_labels(lb, "project", "pipeline") for n, lb in samples if n == m.PIPELINE_INFO.name}
        branches = {_labels(lb, "project", "pipeline") for n, lb in samples if n == m.PIPELINE_BROKEN.name}
        if not branches <= pipelines:
            self.fail(f"builds: branches of pipelines without {m.PIPELINE_INFO} within one scrape")

    def _check_monotonic(self, samples: Samples) -> None:
        previous = self._previous
        for key, value in samples.items():
            name = key[0]
            if not _monotonic(name):
                continue
            before = previous.get(key)
            if before is not None and value < before - 1e-9:
                self.fail(f"counter decreased: {name}{dict(key[1])} {before} -> {value}")
        self._previous = samples

    def _scrape(self) -> None:
        gzip = False
        while not self.stop.wait(1.5):
            if not self.exporter.alive():
                return
            self.scrape_once(gzip)
            gzip = not gzip


def _family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_gcount", "_gsum", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _monotonic(name: str) -> bool:
    if name.endswith("_total"):
        return True
    return name.endswith(MONOTONIC_SUFFIXES) and _family(name) in SINCE_START_HISTOGRAMS


def _labels(labels: tuple[tuple[str, str], ...], *names: str) -> tuple[str, ...]:
    d = dict(labels)
    return tuple(d.get(n, "") for n in names)


def _sum(samples: Samples, name: str, **match: str) -> float:
    return sum(v for (n, lb), v in samples.items() if n == name and all((k, x) in lb for k, x in match.items()))


def _wait(condition: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Simulator:
    """The simulator's control endpoint and a small API reader."""

    def __init__(self, proc: Proc) -> None:
        self.base = f"http://127.0.0.1:{proc.port}"
        self.org_url = proc.extra["url"]
        self.auth = {"Authorization": "Basic " + base64.b64encode(f":{PAT}".encode()).decode()}

    def faults(self, faults: list[dict[str, Any]]) -> None:
        http_post_json(f"{self.base}/_simulator/faults", faults)

    def clear(self) -> None:
        http_get(f"{self.base}/_simulator/faults", timeout=10)  # a GET first: the endpoint is up
        import urllib.request
        with urllib.request.urlopen(urllib.request.Request(f"{self.base}/_simulator/faults", method="DELETE"),
                                    timeout=10):
            pass

    def consumed(self) -> bool:
        _, body, _ = http_get(f"{self.base}/_simulator/faults", timeout=10)
        return all(f["count"] is None or f["hits"] >= f["count"] for f in json.loads(body))

    def clock(self, **change: float) -> float:
        return float(http_post_json(f"{self.base}/_simulator/clock", change)["now"])

    def projects(self, add: list[str] | None = None, remove: list[str] | None = None) -> list[str]:
        return list(http_post_json(f"{self.base}/_simulator/projects", {"add": add or [], "remove": remove or []})
                    ["projects"])

    def completed_between(self, project: str, t_from: float, t_to: float) -> dict[tuple[int, str], int]:
        """Completed runs per (pipeline id, branch) with finish time in [t_from, t_to)."""
        from exporter.simulator.model import format_time

        counts: dict[tuple[int, str], int] = defaultdict(int)
        seen: set[int] = set()
        params = (f"api-version=7.1&statusFilter=completed&queryOrder=finishTimeAscending&$top=1000"
                  f"&minTime={format_time(t_from)}&maxTime={format_time(t_to)}")
        token = None
        for _ in range(200):
            url = f"{self.org_url}/{project}/_apis/build/builds?{params}"
            if token:
                url += f"&continuationToken={token}"
            status, body, headers = http_get(url, timeout=60, headers=self.auth)
            if status != 200:
                raise SoakFailure(f"simulator answered {status} while checking runs")
            for build in json.loads(body)["value"]:
                if build["id"] in seen:
                    continue
                seen.add(build["id"])
                branch = str(build.get("sourceBranch", "")).removeprefix("refs/heads/")
                counts[(int(build["definition"]["id"]), branch)] += 1
            token = headers.get("x-ms-continuationtoken") or headers.get("X-Ms-Continuationtoken")
            if not token:
                break
        return counts

    def get(self, url: str) -> tuple[Any, dict[str, str]]:
        status, body, headers = http_get(url, timeout=60, headers=self.auth)
        if status != 200:
            raise SoakFailure(f"simulator answered {status} to the soak's own check {url}")
        return json.loads(body), headers

    def pull_requests_completed_between(self, project: str, t_from: float, t_to: float) \
            -> dict[tuple[str, str, str], int]:
        """Completed pull requests per (repository, target branch, reviewed) closed in [t_from, t_to)."""
        from exporter.areas.pull_requests import is_reviewed
        from exporter.azdo.records import parse_pull_request
        from exporter.simulator.model import format_time

        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        seen: set[int] = set()
        params = (f"api-version=7.1&searchCriteria.status=completed&searchCriteria.queryTimeRangeType=closed"
                  f"&searchCriteria.minTime={format_time(t_from)}&searchCriteria.maxTime={format_time(t_to)}")
        for page in range(1000):
            body, _ = self.get(f"{self.org_url}/{project}/_apis/git/pullrequests?{params}&$top=100&$skip={page * 100}")
            for pr in body["value"]:
                if pr["pullRequestId"] in seen:
                    continue
                seen.add(pr["pullRequestId"])
                branch = str(pr.get("targetRefName", "")).removeprefix("refs/heads/")
                parsed = parse_pull_request(pr)
                reviewed = parsed is not None and is_reviewed(parsed)
                counts[(pr["repository"]["name"], branch, "true" if reviewed else "false")] += 1
            if len(body["value"]) < 100:
                break
        return counts

    def audit_entries_between(self, t_from: float, t_to: float) -> dict[tuple[str, str, str], int]:
        """Audit entries per (area, category, action) with a timestamp in [t_from, t_to]."""
        from exporter.simulator.model import format_time

        def label(value: object, lower: bool = False) -> str:
            text = value.strip() if isinstance(value, str) else ""
            return (text.lower() if lower else text) or "unknown"

        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        seen: set[str] = set()
        params = (f"api-version=7.1-preview.1&batchSize=1000&startTime={format_time(t_from)}"
                  f"&endTime={format_time(t_to)}")
        token = ""
        for _ in range(1000):
            body, _ = self.get(f"{self.org_url}/_apis/audit/auditlog?{params}{token}")
            for entry in body["decoratedAuditLogEntries"]:
                if entry["id"] in seen:
                    continue
                seen.add(entry["id"])
                counts[(label(entry.get("area")), label(entry.get("category"), lower=True),
                        label(entry.get("actionId")))] += 1
            if not body.get("hasMore"):
                break
            token = f"&continuationToken={body['continuationToken']}"
        return counts


def run_soak(duration: float, *, interval: float = 5.0, speed: float = 30.0, scale: str = "medium",
             seed: int = 7, log: Callable[[str], None] = print) -> Report:
    """Run the soak for about `duration` seconds of faults and recovery; raise SoakFailure on failed checks."""
    report = Report()
    rng = random.Random(seed)
    log_dir = Path(tempfile.mkdtemp(prefix="azdo-soak-"))
    env = {"AZDO_REQUEST_TIMEOUT": f"{REQUEST_TIMEOUT:g}s", "AZDO_MAX_RETRIES": "1", "AZDO_LOG_LEVEL": "WARNING",
           "AZDO_MAX_RESPONSE_BYTES": str(MAX_RESPONSE_BYTES)}
    for area in (*COLLECTORS, "tests"):
        env[f"AZDO_INTERVAL_{area.upper()}"] = f"{interval:g}s"  # every area, at the soak's interval
    began = time.monotonic()
    with processes() as started:
        sim_proc = start_simulator(log_dir, scale=scale, speed=speed, seed=seed)
        started.append(sim_proc)
        sim = Simulator(sim_proc)
        exporter = start_exporter(log_dir, sim.org_url, env)
        started.append(exporter)
        wait_ready(exporter, timeout=300)
        log(f"soak: exporter ready after {time.monotonic() - began:.0f}s; logs in {log_dir}")
        watcher = Watcher(exporter, report)
        first = watcher.scrape_once(gzip=True) or {}
        t_first, wall_first = sim.clock(), time.time()
        watcher.start()
        soak_began = time.monotonic()
        random_until = soak_began + duration * 0.5
        together_until = soak_began + duration * 0.75

        # -- 1. one fault at a time, at random, each waited for until the simulator has served it ------
        program: list[tuple[str, Callable[[], None], str | None]] = []

        def fault_step(faults: list[dict[str, Any]]) -> Callable[[], None]:
            def step() -> None:
                sim.faults(faults)
                if not _wait(sim.consumed, timeout=retry_wait(interval) + 15):
                    watcher.fail(f"fault {faults} was not consumed by the exporter within the wait")
                sim.clear()
            return step

        def appear() -> None:
            sim.projects(add=list(SOAK_PROJECTS))
            if not _wait(lambda: _has_project(watcher.latest, SOAK_PROJECTS[0]), timeout=retry_wait(interval) + 15):
                watcher.fail(f"project {SOAK_PROJECTS[0]} appeared in Azure DevOps but not in /metrics")

        def disappear() -> None:
            sim.projects(remove=list(SOAK_PROJECTS))
            if not _wait(lambda: not _has_project(watcher.latest, SOAK_PROJECTS[0]), timeout=retry_wait(interval) + 15):
                watcher.fail(f"project {SOAK_PROJECTS[0]} was deleted but stays in /metrics")

        def jump() -> None:
            sim.clock(advance=2 * 3600.0)
            time.sleep(interval)

        for what, faults, reason in SINGLE_FAULTS:
            program.append((what, fault_step(faults), reason))
        rng.shuffle(program)
        program.insert(rng.randrange(len(program)), ("projects appearing", appear, None))
        program.append(("projects disappearing", disappear, None))
        program.insert(rng.randrange(len(program)), ("clock jump (+2 h simulated)", jump, None))
        done = 0
        while time.monotonic() < random_until or done < len(program):
            if done < len(program):
                what, step, _ = program[done]
            else:  # the whole program ran once: keep drawing single faults at random
                what, faults, _ = rng.choice(SINGLE_FAULTS)
                step = fault_step(faults)
            log(f"  fault: {what}")
            report.faults_injected.append(what)
            step()
            done += 1
            if not exporter.alive():
                break

        # -- 2. everything at once -------------------------------------------------------------------------
        log("  fault: everything at once")
        report.faults_injected.append("everything at once")
        sim.faults(ALL_AT_ONCE)
        sim.projects(add=[SOAK_PROJECTS[1]])
        together_until = max(together_until, time.monotonic() + 3 * interval)  # even when the program ran long
        while time.monotonic() < together_until and exporter.alive():
            time.sleep(1.0)
        sim.projects(remove=[SOAK_PROJECTS[1]])
        sim.clear()

        # -- 3. recovery: faults stop; numbers must converge -----------------------------------------------
        log("  recovery")
        recovery_deadline = max(time.monotonic() + retry_wait(interval) + 30, soak_began + duration)

        def cycles() -> dict[str, float]:
            return {c: _sum(watcher.latest, m.EXPORTER_REFRESH_DURATION_SECONDS.count, collector=c)
                    for c in COLLECTORS}

        def refreshed_ok(after: dict[str, float]) -> Callable[[], bool]:
            """Every collector succeeded in its latest refresh and refreshed twice more since `after`."""
            def check() -> bool:
                latest = watcher.latest
                return all(_sum(latest, m.EXPORTER_REFRESH_SUCCESS.name, collector=c) == 1 and
                           _sum(latest, m.EXPORTER_REFRESH_DURATION_SECONDS.count, collector=c) >= n + 2
                           for c, n in after.items())
            return check

        def not_recovered(after: dict[str, float]) -> list[str]:
            latest = watcher.latest
            return [c for c, n in after.items()
                    if not (_sum(latest, m.EXPORTER_REFRESH_SUCCESS.name, collector=c) == 1 and
                            _sum(latest, m.EXPORTER_REFRESH_DURATION_SECONDS.count, collector=c) >= n + 2)]

        before = cycles()
        if not _wait(refreshed_ok(before), timeout=max(10.0, recovery_deadline - time.monotonic())):
            watcher.fail(f"collectors did not recover after the faults stopped: {not_recovered(before)}")
        while time.monotonic() < soak_began + duration:
            time.sleep(1.0)
        # freeze simulated time, wait for two complete refreshes of every area, then compare with --once
        t_frozen = sim.clock(speed=1e-9)
        before = cycles()
        if not _wait(refreshed_ok(before), timeout=retry_wait(interval) + 30):
            watcher.fail(f"no successful refresh after the clock was frozen: {not_recovered(before)}")
        watcher.finish()
        final = watcher.scrape_once(gzip=False) or {}
        wall_last = time.time()
        report.duration = time.monotonic() - soak_began
        code, once_text, once_err = run_once(sim.org_url, env)
        if code != 0:
            watcher.fail(f"--once failed with {code}: {once_err.strip()[-300:]}")
        else:
            _compare(final, parse_exposition(once_text)[0], report, watcher)
        _check_reasons(final, report, watcher)
        lag = interval * 2 + 10  # how far behind the clock a scrape's numbers can be, in wall seconds
        _check_runs(sim, first, final, t_first, t_frozen, lag * speed, report, watcher)
        _check_pull_requests(sim, first, final, t_first, t_frozen, lag * speed, report, watcher)
        _check_audit(sim, first, final, wall_first, wall_last, lag, report, watcher)
        _check_memory(report, watcher)
        _check_secrets_live(exporter, watcher)
        if not exporter.alive():
            watcher.fail(f"exporter exited with {exporter.popen.returncode}")
        exit_code = exporter.stop()
        if exit_code != 0:
            watcher.fail(f"exporter exited with {exit_code} on SIGTERM:\n{exporter.log_tail()}")
        _check_log(exporter, watcher)
        _check_secret_text("the exporter's log", exporter.log_path.read_bytes(), watcher)
    for line in report.lines():
        log(line)
    if report.failures:
        raise SoakFailure("\n".join(report.failures))
    return report


def _has_project(samples: Samples, project: str) -> bool:
    return any(n == m.PIPELINE_INFO.name and ("project", project) in lb for n, lb in samples)


def _is_window(name: str) -> bool:
    family = _family(name)
    return any(marker in family for marker in WINDOW_MARKERS)


def _compare(final: Samples, fresh: Samples, report: Report, watcher: Watcher) -> None:
    """Every non-self series of the long-running exporter equals a fresh --once run at the same (frozen)
    simulated time, except the families in NOT_COMPARED; window gauges within an edge tolerance."""
    def gauges(samples: Samples) -> dict[str, dict[Key, float]]:
        out: dict[str, dict[Key, float]] = defaultdict(dict)
        for key, value in samples.items():
            area = area_of(key[0])
            if area is not None and _family(key[0]) not in NOT_COMPARED and key[0] not in NOT_COMPARED:
                out[area][key] = value
        return out

    ours, theirs = gauges(final), gauges(fresh)
    for area in COLLECTORS:
        mine, fresh_area = ours.get(area, {}), theirs.get(area, {})
        result = report.converged.setdefault(area, Converged())
        result.compared = len(fresh_area)
        if not fresh_area:
            watcher.fail(f"{area}: the fresh --once run exported no series to compare")
            continue
        differ = [k for k in mine.keys() | fresh_area.keys() if mine.get(k) != fresh_area.get(k)]
        window = [k for k in differ if _is_window(k[0])]
        others = [k for k in differ if not _is_window(k[0])]
        result.window_edge, result.differ = len(window), len(others)
        for key in sorted(others)[:10]:
            watcher.fail(f"{area} did not converge: {key[0]}{dict(key[1])}: ours {mine.get(key)}, "
                         f"fresh {fresh_area.get(key)}")
        if len(window) > max(5, len(fresh_area) // 200):
            watcher.fail(f"{area}: {len(window)} window series differ from a fresh run (first: {sorted(window)[0]})")


def _check_reasons(final: Samples, report: Report, watcher: Watcher) -> None:
    """Each collector reports every fault that hit its endpoints, under the right reason, and nothing else."""
    report.reasons = {c: {r: _sum(final, m.EXPORTER_REFRESH_ERRORS.total, collector=c, reason=r)
                          for r in ALL_REASONS} for c in COLLECTORS}
    report.throttled = _sum(final, m.EXPORTER_THROTTLED.total)
    for collector, reasons in expected_reasons().items():
        for reason in sorted(reasons):
            if report.reasons[collector][reason] <= 0:
                watcher.fail(f'{m.EXPORTER_REFRESH_ERRORS.total}{{collector="{collector}",reason="{reason}"}} '
                             "never increased")
        for reason in UNEXPECTED_REASONS:
            if report.reasons[collector][reason] > 0:
                watcher.fail(f"{collector} failed {report.reasons[collector][reason]:.0f} refreshes with reason "
                             f"{reason}, which no fault causes")
    if report.throttled <= 0:
        watcher.fail(f"{m.EXPORTER_THROTTLED.total} never increased")
    if _sum(final, m.EXPORTER_API_REQUESTS.total, code="timeout") <= 0:
        watcher.fail(f'{m.EXPORTER_API_REQUESTS.total}{{code="timeout"}} never increased')


def _increase(first: Samples, final: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Per label tuple: the counter's increase from `first` to `final` (the soak's projects left out)."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, lb), value in final.items():
        if n == name and dict(lb).get("project") not in SOAK_PROJECTS:
            out[_labels(lb, *labels)] += value - first.get((n, lb), 0.0)
    return out


def _bounded(what: str, counted: dict[Any, float], lower: dict[Any, int], upper: dict[Any, int],
             watcher: Watcher) -> Truth:
    """Per key: lower <= counted <= upper. More than upper is a double count, fewer than lower a miss."""
    truth = Truth(what, counted=sum(counted.values()))
    for key, value in sorted(counted.items()):
        hi, lo = upper.get(key, 0), lower.get(key, 0)
        truth.upper += hi
        truth.lower += lo
        if value > hi:
            watcher.fail(f"double-counted {what}: {key} counted {value:.0f}, the simulator has at most {hi}")
        if value < lo:
            watcher.fail(f"missed {what}: {key} counted {value:.0f}, the simulator has at least {lo}")
    for key in sorted(set(lower) - set(counted)):
        truth.lower += lower[key]
        watcher.fail(f"missed {what}: {key} has no series, the simulator has at least {lower[key]}")
    return truth


def _check_runs(sim: Simulator, first: Samples, final: Samples, t_first: float, t_last: float, lag: float,
                report: Report, watcher: Watcher) -> None:
    """Runs counted since the first scrape against the runs the simulator completed meanwhile."""
    ids = {(_labels(lb, "project")[0], _labels(lb, "pipeline")[0]): int(dict(lb)["pipeline_id"])
           for n, lb in final if n == m.PIPELINE_INFO.name}
    increase = _increase(first, final, m.PIPELINE_RUNS.total, "project", "pipeline", "branch")
    counted = {(p, ids[(p, name)], b): v for (p, name, b), v in increase.items()}
    upper: dict[tuple[str, int, str], int] = {}
    lower: dict[tuple[str, int, str], int] = {}
    for project in sorted({k[0] for k in counted}):
        for (pipeline_id, branch), n in sim.completed_between(project, t_first - lag, t_last + 1).items():
            upper[(project, pipeline_id, branch)] = n
        for (pipeline_id, branch), n in sim.completed_between(project, t_first, t_last - lag).items():
            if (project, pipeline_id, branch) in counted:  # untracked branches have no series
                lower[(project, pipeline_id, branch)] = n
    report.truths["builds"] = _bounded("runs", counted, lower, upper, watcher)
    if report.truths["builds"].counted <= 0:
        watcher.fail("no run was counted during the soak")


def _check_pull_requests(sim: Simulator, first: Samples, final: Samples, t_first: float, t_last: float, lag: float,
                         report: Report, watcher: Watcher) -> None:
    """Pull requests counted as completed since the first scrape against those the simulator closed."""
    counted = _increase(first, final, m.PULL_REQUESTS_COMPLETED.total, *PR_LABELS, "reviewed")
    upper: dict[tuple[str, ...], int] = {}
    lower: dict[tuple[str, ...], int] = {}
    for project in sorted({k[0] for k in counted}):
        for key, n in sim.pull_requests_completed_between(project, t_first - lag, t_last + 1).items():
            upper[(project, *key)] = n
        for key, n in sim.pull_requests_completed_between(project, t_first, t_last - lag).items():
            if (project, *key) in counted:  # pull requests into untracked branches have no series
                lower[(project, *key)] = n
    report.truths["pull_requests"] = _bounded("completed pull requests", counted, lower, upper, watcher)
    if report.truths["pull_requests"].counted <= 0:
        watcher.fail("no completed pull request was counted during the soak")


def _check_audit(sim: Simulator, first: Samples, final: Samples, wall_first: float, wall_last: float, lag: float,
                 report: Report, watcher: Watcher) -> None:
    """Audit entries counted since the first scrape against the entries logged meanwhile. The audit area
    reads the log up to its own clock's now (not the simulator's), so the bounds are in wall time."""
    counted = _increase(first, final, m.AUDIT_EVENTS.total, "area", "category", "action")
    upper = dict(sim.audit_entries_between(wall_first - lag, wall_last + 1))
    lower = {k: n for k, n in sim.audit_entries_between(wall_first, wall_last - lag).items()}
    report.truths["audit"] = _bounded("audit entries", counted, lower, upper, watcher)


def secret_forms(secret: str = PAT) -> list[bytes]:
    """The PAT as a leak could show it: raw, base64 of itself and of `:PAT` (the Basic form), unpadded too."""
    forms = {secret.encode(), base64.b64encode(secret.encode()), base64.b64encode(f":{secret}".encode())}
    return sorted(forms | {f.rstrip(b"=") for f in forms})


def _check_secret_text(where: str, text: bytes, watcher: Watcher) -> None:
    for form in secret_forms():
        if form in text:
            watcher.fail(f"{where} shows the PAT ({'raw' if form == PAT.encode() else 'encoded'}) after the "
                         "credential-echo faults")


def _check_secrets_live(exporter: Proc, watcher: Watcher) -> None:
    """After upstreams echoed the Authorization header into error answers, no page shows the PAT."""
    for path in ("/", "/metrics", "/status"):
        try:
            _, body, _ = http_get(f"http://127.0.0.1:{exporter.port}{path}", timeout=METRICS_DEADLINE)
        except OSError as error:
            watcher.fail(f"GET {path} failed: {error}")
            continue
        _check_secret_text(f"GET {path}", body, watcher)


def _check_log(exporter: Proc, watcher: Watcher) -> None:
    """A refresh that raised something other than an API error is a bug, even though the loop survives it."""
    try:
        text = exporter.log_path.read_text(errors="replace")
    except OSError:
        return
    crashed = [line for line in text.splitlines() if re.search(r"refresh of \w+ crashed|Traceback", line)]
    if crashed:
        watcher.fail(f"{len(crashed)} refresh crashes in the exporter's log (first: {crashed[0][:200]}); "
                     f"log: {exporter.log_path}")


def _check_memory(report: Report, watcher: Watcher) -> None:
    rss = report.rss_mib
    if len(rss) < 8:
        return
    warm = rss[len(rss) // 4:]  # after the first quarter
    half = len(warm) // 2
    early, late = statistics.median(warm[:half]), statistics.median(warm[half:])
    if late > early * 1.25 + 20:
        watcher.fail(f"memory grew: median RSS {early:.0f} MiB -> {late:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fault soak of the exporter against the simulator.")
    parser.add_argument("--minutes", type=float, default=10.5)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--phase", choices=("all", "faults", "hostile"), default="all",
                        help="the fault soak, the hostile-client phase (bench/hostile.py), or both")
    parser.add_argument("--hostile-seconds", type=float, default=120.0)
    parser.add_argument("--hostile-connections", type=int, default=1000)
    args = parser.parse_args(argv)
    failed = False
    if args.phase in ("all", "faults"):
        try:
            run_soak(args.minutes * 60, interval=args.interval, speed=args.speed, seed=args.seed,
                     log=lambda line: print(line, flush=True))
        except SoakFailure:
            failed = True
    if args.phase in ("all", "hostile"):
        report = run_hostile(args.hostile_seconds, connections=args.hostile_connections,
                             log=lambda line: print(line, flush=True))
        failed = failed or bool(report.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

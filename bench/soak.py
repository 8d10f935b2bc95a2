"""The fault soak: the exporter (a subprocess, real HTTP) against the simulator (a subprocess, medium
scale, accelerated time) while the simulator misbehaves, first one fault at a time at random, then all
at once; then faults stop and every number must converge to the fault-free values.

`make soak` runs it for 10+ minutes; `tests/test_soak.py` runs a short version under `make test`.
`run_soak` returns a report and raises `SoakFailure` listing every failed check.

Checked, all the time: the process is alive; `/healthz` answers within a deadline; `/metrics` answers
with a complete exposition (ends with a newline, parses with prometheus_client's parser, the builds
area is all there or not at all and internally consistent); counters never decrease while their
series exists. At the end: each fault showed up under its reason in
`azdo_exporter_refresh_errors_total` (and 429s in `azdo_exporter_throttled_total`); projects that
appeared and disappeared came and went; runs counted since the soak began match what the simulator
completed in that period (never double-counted); RSS stayed flat; with the simulator's clock frozen,
the builds gauges equal those of a fresh `--once` run.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
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

REQUEST_TIMEOUT = 2.0  # the exporter's AZDO_REQUEST_TIMEOUT during the soak
HEALTH_DEADLINE = 5.0
METRICS_DEADLINE = 30.0
EXPECTED_REASONS = ("http_5xx", "timeout", "bad_response", "auth", "throttled")
# since-start families: never decrease while their series exists
MONOTONIC_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
SINCE_START_HISTOGRAMS = ("azdo_pipeline_run_duration_seconds", "azdo_pipeline_queue_duration_seconds",
                          "azdo_pipeline_time_to_fix_seconds", "azdo_exporter_refresh_duration_seconds",
                          "azdo_exporter_api_request_duration_seconds")
# gauges that depend on the exporter's own clock or on the lookback edge (compared with a tolerance)
CLOCK_DEPENDENT = ("azdo_pipeline_broken_duration_seconds",)
WINDOW_PREFIX = "azdo_pipeline_window_"
SOAK_PROJECTS = ("Soak-Appearing-1", "Soak-Appearing-2")

# One fault at a time: (what, fault objects, the refresh-error reason it must cause or None).
# Counts are set so that a request and its retry (AZDO_MAX_RETRIES=1) both meet the fault.
SINGLE_FAULTS: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("5xx answers", [{"kind": "status", "path": "/build/builds", "status": 503, "count": 2}], "http_5xx"),
    ("500 on the projects listing", [{"kind": "status", "path": "/_apis/projects", "status": 500, "count": 2}],
     "http_5xx"),
    ("timeouts", [{"kind": "delay", "path": "/build/builds", "delay": REQUEST_TIMEOUT + 1.5, "count": 2}],
     "timeout"),
    ("truncated JSON", [{"kind": "truncated", "path": "/build/definitions", "count": 2}], "bad_response"),
    ("malformed JSON", [{"kind": "malformed", "path": "/build/builds", "count": 2}], "bad_response"),
    ("203 sign-in page", [{"kind": "signin", "path": "/build/builds", "count": 1}], "auth"),
    ("429 storm with Retry-After", [{"kind": "throttle", "path": "", "retry_after": 1, "count": 4}], "throttled"),
    ("slow answers", [{"kind": "delay", "path": "/build/", "delay": REQUEST_TIMEOUT / 3, "count": 6}], None),
    ("never-ending continuation token", [{"kind": "repeat_token", "path": "/build/builds", "count": 2}],
     "bad_response"),
    ("Retry-After on a 200", [{"kind": "retry_after_ok", "path": "/build/builds", "retry_after": 1, "count": 2}],
     None),
]
ALL_AT_ONCE = [
    {"kind": "status", "path": "", "status": 502, "probability": 0.05},
    {"kind": "delay", "path": "/build/builds", "delay": REQUEST_TIMEOUT + 1.0, "probability": 0.03},
    {"kind": "truncated", "path": "", "probability": 0.04},
    {"kind": "malformed", "path": "", "probability": 0.04},
    {"kind": "signin", "path": "/build/", "probability": 0.02},
    {"kind": "throttle", "path": "", "retry_after": 1, "probability": 0.04},
    {"kind": "delay", "path": "", "delay": 0.3, "probability": 0.05},
    {"kind": "repeat_token", "path": "/build/builds", "probability": 0.03},
]


class SoakFailure(AssertionError):
    pass


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Report:
    duration: float = 0.0
    scrapes: int = 0
    health_checks: int = 0
    max_health_latency: float = 0.0
    max_scrape_latency: float = 0.0
    faults_injected: list[str] = field(default_factory=list)
    reasons: dict[str, float] = field(default_factory=dict)
    throttled: float = 0.0
    rss_mib: list[float] = field(default_factory=list)
    runs_counted: float = 0.0
    runs_truth: tuple[int, int] = (0, 0)
    compared_series: int = 0
    window_mismatches: int = 0
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rss = self.rss_mib
        return [
            f"soak ran {self.duration:.0f} s: {self.scrapes} /metrics scrapes (max {self.max_scrape_latency:.2f} s), "
            f"{self.health_checks} /healthz checks (max {self.max_health_latency:.2f} s)",
            f"faults injected: {', '.join(self.faults_injected)}",
            "refresh errors by reason: " + ", ".join(f"{k}={v:.0f}" for k, v in sorted(self.reasons.items())),
            f"azdo_exporter_throttled_total: {self.throttled:.0f}",
            f"RSS MiB: first {rss[0] if rss else 0:.0f}, median {statistics.median(rss) if rss else 0:.0f}, "
            f"max {max(rss) if rss else 0:.0f}, last {rss[-1] if rss else 0:.0f} ({len(rss)} samples)",
            f"runs counted during the soak: {self.runs_counted:.0f}; simulator completed between "
            f"{self.runs_truth[0]} and {self.runs_truth[1]} (bounds from scrape timing)",
            f"converged: {self.compared_series} builds gauge series equal to a fresh --once run"
            f" ({self.window_mismatches} lookback-edge differences in window gauges)",
            "checks: " + ("ALL PASSED" if not self.failures else f"{len(self.failures)} FAILED"),
            *[f"  FAILED: {f}" for f in self.failures[:30]],
        ]


def parse_exposition(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


class Watcher:
    """Background checks while the soak runs: health, scrapes, counters, memory."""

    def __init__(self, exporter: Proc, report: Report) -> None:
        self.exporter = exporter
        self.report = report
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latest: Samples = {}
        self.builds_families: set[str] | None = None
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
            samples = parse_exposition(text)
        except Exception as error:  # the parser raises ValueError and friends on broken text
            self.fail(f"/metrics does not parse: {type(error).__name__}: {error}")
            return None
        self._check_area(samples)
        self._check_monotonic(samples)
        with self.lock:
            self.latest = samples
        return samples

    def _check_area(self, samples: Samples) -> None:
        names = {name for name, _ in samples if name.startswith("azdo_pipeline_")}
        families = {_family(name) for name in names}
        if self.builds_families is None:
            self.builds_families = families
        elif families and families != self.builds_families:
            self.fail(f"builds area half there: families {sorted(families ^ self.builds_families)[:5]} differ")
        pipelines = {_labels(lb, "project", "pipeline") for n, lb in samples if n == "azdo_pipeline_info"}
        running = {_labels(lb, "project", "pipeline") for n, lb in samples if n == "azdo_pipeline_runs_in_progress"}
        branches = {_labels(lb, "project", "pipeline", "branch") for n, lb in samples if n == "azdo_pipeline_broken"}
        counted = {_labels(lb, "project", "pipeline", "branch") for n, lb in samples
                   if n == "azdo_pipeline_runs_total"}
        if pipelines != running or branches != counted or not {b[:2] for b in branches} <= pipelines:
            self.fail("builds families disagree on their pipelines/branches within one scrape (a mixed snapshot)")

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


def _wait(condition: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
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


def run_soak(duration: float, *, interval: float = 5.0, speed: float = 30.0, scale: str = "medium",
             seed: int = 7, log: Callable[[str], None] = print) -> Report:
    """Run the soak for about `duration` seconds of faults and recovery; raise SoakFailure on failed checks."""
    report = Report()
    rng = random.Random(seed)
    log_dir = Path(tempfile.mkdtemp(prefix="azdo-soak-"))
    env = {"AZDO_REQUEST_TIMEOUT": f"{REQUEST_TIMEOUT:g}s", "AZDO_MAX_RETRIES": "1",
           "AZDO_INTERVAL_BUILDS": f"{interval:g}s", "AZDO_INTERVAL_TESTS": f"{interval:g}s",
           "AZDO_LOG_LEVEL": "WARNING"}
    for area in ("PULL_REQUESTS", "POLICIES", "DEPLOYMENTS", "AGENT_POOLS", "AUDIT"):
        env[f"AZDO_INTERVAL_{area}"] = "0"  # the soak covers the builds area; others join as they land
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
        t_first = sim.clock()
        watcher.start()
        soak_began = time.monotonic()
        random_until = soak_began + duration * 0.5
        together_until = soak_began + duration * 0.75

        # -- 1. one fault at a time, at random, each waited for until the simulator has served it ------
        program: list[tuple[str, Callable[[], None], str | None]] = []

        def fault_step(faults: list[dict[str, Any]]) -> Callable[[], None]:
            def step() -> None:
                sim.faults(faults)
                if not _wait(sim.consumed, timeout=interval * 6 + 10):
                    watcher.fail(f"fault {faults} was not consumed by the exporter within the wait")
                sim.clear()
            return step

        def appear() -> None:
            sim.projects(add=list(SOAK_PROJECTS))
            if not _wait(lambda: _has_project(watcher.latest, SOAK_PROJECTS[0]), timeout=interval * 4 + 15):
                watcher.fail(f"project {SOAK_PROJECTS[0]} appeared in Azure DevOps but not in /metrics")

        def disappear() -> None:
            sim.projects(remove=list(SOAK_PROJECTS))
            if not _wait(lambda: not _has_project(watcher.latest, SOAK_PROJECTS[0]), timeout=interval * 4 + 15):
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
        while time.monotonic() < together_until and exporter.alive():
            time.sleep(1.0)
        sim.projects(remove=[SOAK_PROJECTS[1]])
        sim.clear()

        # -- 3. recovery: faults stop; numbers must converge -----------------------------------------------
        log("  recovery")
        recovery_deadline = max(time.monotonic() + interval * 6 + 30, soak_began + duration)

        def refreshed_ok(after: float) -> Callable[[], bool]:
            def check() -> bool:
                latest = watcher.latest
                cycles = _sum(latest, "azdo_exporter_refresh_duration_seconds_count", collector="builds")
                return _sum(latest, "azdo_exporter_refresh_success", collector="builds") == 1 and cycles >= after + 2
            return check

        cycles_now = _sum(watcher.latest, "azdo_exporter_refresh_duration_seconds_count", collector="builds")
        if not _wait(refreshed_ok(cycles_now), timeout=max(10.0, recovery_deadline - time.monotonic())):
            watcher.fail("the builds collector did not recover after the faults stopped")
        while time.monotonic() < soak_began + duration:
            time.sleep(1.0)
        # freeze simulated time, wait for two complete refreshes, then compare with a fresh --once run
        t_frozen = sim.clock(speed=1e-9)
        cycles_now = _sum(watcher.latest, "azdo_exporter_refresh_duration_seconds_count", collector="builds")
        if not _wait(refreshed_ok(cycles_now), timeout=interval * 6 + 30):
            watcher.fail("no successful refresh after the clock was frozen")
        watcher.finish()
        final = watcher.scrape_once(gzip=False) or {}
        report.duration = time.monotonic() - soak_began
        code, once_text, once_err = run_once(sim.org_url, env)
        if code != 0:
            watcher.fail(f"--once failed with {code}: {once_err.strip()[-300:]}")
        else:
            _compare(final, parse_exposition(once_text), report, watcher)
        _check_reasons(final, report, watcher)
        _check_runs(sim, first, final, t_first, t_frozen, speed, interval, report, watcher)
        _check_memory(report, watcher)
        if not exporter.alive():
            watcher.fail(f"exporter exited with {exporter.popen.returncode}")
        code = exporter.stop()
        if code != 0:
            watcher.fail(f"exporter exited with {code} on SIGTERM:\n{exporter.log_tail()}")
    for line in report.lines():
        log(line)
    if report.failures:
        raise SoakFailure("\n".join(report.failures))
    return report


def _has_project(samples: Samples, project: str) -> bool:
    return any(n == "azdo_pipeline_info" and ("project", project) in lb for n, lb in samples)


def _compare(final: Samples, fresh: Samples, report: Report, watcher: Watcher) -> None:
    """Builds gauges of the long-running exporter equal a fresh --once run at the same (frozen) time."""
    def gauges(samples: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {k: v for k, v in samples.items() if k[0].startswith("azdo_pipeline_") and not _monotonic(k[0])
                and _family(k[0]) not in SINCE_START_HISTOGRAMS and k[0] not in CLOCK_DEPENDENT}
    ours, theirs = gauges(final), gauges(fresh)
    if not theirs:
        watcher.fail("the fresh --once run exported no builds gauges")
        return
    differ = [k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)]
    window = [k for k in differ if k[0].startswith(WINDOW_PREFIX)]
    others = [k for k in differ if not k[0].startswith(WINDOW_PREFIX)]
    report.compared_series = len(theirs)
    report.window_mismatches = len(window)
    for key in others[:10]:
        watcher.fail(f"did not converge: {key[0]}{dict(key[1])}: ours {ours.get(key)}, fresh {theirs.get(key)}")
    # the window's start is the exporter's own clock minus the lookback; the two runs read it seconds apart
    if len(window) > max(5, len(theirs) // 200):
        watcher.fail(f"{len(window)} window gauges differ from a fresh run (first: {window[0]})")


def _check_reasons(final: Samples, report: Report, watcher: Watcher) -> None:
    report.reasons = {reason: _sum(final, "azdo_exporter_refresh_errors_total", reason=reason)
                      for reason in ("auth", "throttled", "http_5xx", "http_4xx", "timeout", "connection",
                                     "bad_response")}
    report.throttled = _sum(final, "azdo_exporter_throttled_total")
    for reason in EXPECTED_REASONS:
        if report.reasons.get(reason, 0) <= 0:
            watcher.fail(f"azdo_exporter_refresh_errors_total{{reason=\"{reason}\"}} never increased")
    if report.throttled <= 0:
        watcher.fail("azdo_exporter_throttled_total never increased")
    if _sum(final, "azdo_exporter_api_requests_total", code="timeout") <= 0:
        watcher.fail('azdo_exporter_api_requests_total{code="timeout"} never increased')


def _check_runs(sim: Simulator, first: Samples, final: Samples, t_first: float, t_last: float, speed: float,
                interval: float, report: Report, watcher: Watcher) -> None:
    """Runs counted since the first scrape against the runs the simulator completed meanwhile."""
    ids = {(_labels(lb, "project")[0], _labels(lb, "pipeline")[0]): int(dict(lb)["pipeline_id"])
           for n, lb in final if n == "azdo_pipeline_info"}
    increase: dict[tuple[str, int, str], float] = defaultdict(float)
    for (name, lb), value in final.items():
        if name != "azdo_pipeline_runs_total":
            continue
        project, pipeline, branch = _labels(lb, "project", "pipeline", "branch")
        if project in SOAK_PROJECTS:
            continue
        before = first.get((name, lb), 0.0)
        increase[(project, ids[(project, pipeline)], branch)] += value - before
    lag = (interval * 2 + 10) * speed  # how far behind simulated time a scrape can be
    projects = {key[0] for key in increase}
    upper_total = lower_total = 0
    for project in sorted(projects):
        upper = sim.completed_between(project, t_first - lag, t_last + 1)
        lower = sim.completed_between(project, t_first, t_last - lag)
        for key, counted in increase.items():
            if key[0] != project:
                continue
            hi, lo = upper.get(key[1:], 0), lower.get(key[1:], 0)
            upper_total += hi
            lower_total += lo
            if counted > hi:
                watcher.fail(f"double-counted: {key} counted {counted:.0f} runs, the simulator completed at most {hi}")
            if counted < lo:
                watcher.fail(f"missed runs: {key} counted {counted:.0f} runs, the simulator completed at least {lo}")
    report.runs_counted = sum(increase.values())
    report.runs_truth = (lower_total, upper_total)
    if report.runs_counted <= 0:
        watcher.fail("no run was counted during the soak")


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
    args = parser.parse_args(argv)
    try:
        run_soak(args.minutes * 60, interval=args.interval, speed=args.speed, seed=args.seed,
                 log=lambda line: print(line, flush=True))
    except SoakFailure:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

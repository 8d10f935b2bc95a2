"""`make bench`: the exporter against the simulated organization at `--scale large`, over real HTTP.

Prints one table of medians with min–max over repeated runs. It never fails on a time: the machine
is shared and noisy, so figures are reported, not asserted. Phases:

1. initial load, repeated while the time budget allows (a fresh exporter process each time): wall
   time to /readyz, CPU seconds and API requests of the process, peak RSS;
2. steady state in the last process: requests and CPU seconds per refresh cycle, against the
   theoretical minimum (projects × areas + pages of new items);
3. /metrics latency with 8 concurrent scrapers for a window spanning several refreshes, interleaved
   with the same scrapers against a plain static HTTP server serving the captured exposition bytes
   (the physical floor).
"""

from __future__ import annotations

import argparse
import http.client
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import (
    Proc,
    _python,
    free_port,
    http_get,
    parse_sample_line,
    processes,
    self_metrics,
    start_exporter,
    start_simulator,
    total,
    wait_ready,
)
from exporter.metrics import catalogue as m

INTERVAL = 10  # seconds, every area: refreshes run most of the time, so scrapes overlap them
ORG_AREAS = ("agent_pools", "audit")
# Exposition lines of the self-metrics, and of the builds area's run counter (bytes: the scrape is read raw).
SELF_METRICS = tuple(name.encode() for name in m.SELF_METRICS)
RUNS_TOTAL = (m.PIPELINE_RUNS.total + "{").encode()
# The fixed endpoint names of azdo_exporter_api_requests_total, by the area that sends them (`definitions`,
# the build definitions listing, is also read by deployments; counted with builds).
ENDPOINT_AREA = {
    "projects": "builds", "definitions": "builds", "builds": "builds", "test_summary": "builds",
    "repositories": "pull_requests", "pullrequests": "pull_requests",
    "policies": "policies",
    "release_definitions": "deployments", "release_deployments": "deployments", "environments": "deployments",
    "environment_records": "deployments", "build_changes": "deployments",
    "pools": "agent_pools", "agents": "agent_pools", "jobrequests": "agent_pools",
    "auditlog": "audit",
}
AREAS_ENV = ("BUILDS", "TESTS", "PULL_REQUESTS", "POLICIES", "DEPLOYMENTS", "AGENT_POOLS", "AUDIT")


def fmt(values: list[float], unit: str = "", digits: int = 1) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    text = f"{med:.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}–{max(values):.{digits}f}, n={len(values)})"
    return text


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def scrape_latencies(port: int, path: str, clients: int, seconds: float, max_per_client: int) -> list[float]:
    """`clients` threads each GET `path` back to back (identity encoding) for `seconds` or
    `max_per_client` requests; returns every latency (request sent to last byte read)."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    failures: list[str] = []

    def worker() -> None:
        mine: list[float] = []
        for _ in range(max_per_client):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("GET", path)
                answer = connection.getresponse()
                body = answer.read()
                if answer.status != 200 or not body:
                    failures.append(f"HTTP {answer.status}")
            except OSError as error:
                failures.append(str(error))
                continue
            finally:
                connection.close()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    if failures:
        print(f"  note: {len(failures)} failed scrapes on {path} (first: {failures[0]})", file=sys.stderr)
    return latencies


def sample_lines(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


def series_breakdown(body: bytes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in body.split(b"\n"):
        if line and not line.startswith(b"#"):
            name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode()
            counts[name] = counts.get(name, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="large", choices=["small", "medium", "large"])
    parser.add_argument("--speed", type=float, default=10.0, help="simulated time speed (new runs per cycle)")
    parser.add_argument("--budget", type=float, default=13 * 60, help="seconds for the whole benchmark")
    parser.add_argument("--max-initial-runs", type=int, default=3)
    parser.add_argument("--latency-rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--steady-windows", type=int, default=4, help="windows of 3 intervals each")
    args = parser.parse_args(argv)
    began = time.monotonic()
    env = {f"AZDO_INTERVAL_{a}": f"{INTERVAL}s" for a in AREAS_ENV}
    env["AZDO_LOG_LEVEL"] = "WARNING"

    initial_wall: list[float] = []
    initial_cpu: list[float] = []
    initial_requests: list[float] = []
    peak_rss: list[float] = []
    steady_requests: list[float] = []
    steady_cpu: list[float] = []
    minimum: list[float] = []
    latency_p50: list[float] = []
    latency_p99: list[float] = []
    static_p50: list[float] = []
    static_p99: list[float] = []
    series = 0
    projects = 0
    body = b""
    log_dir = Path(tempfile.mkdtemp(prefix="azdo-bench-"))
    print(f"bench: scale {args.scale}, speed {args.speed:g}x, interval {INTERVAL}s; logs in {log_dir}", flush=True)

    with processes() as started:
        simulator = start_simulator(log_dir, scale=args.scale, speed=args.speed)
        started.append(simulator)
        org_url = simulator.extra["url"]
        exporter: Proc | None = None
        # -- 1. initial loads --------------------------------------------------------------------------
        for run in range(args.max_initial_runs):
            if exporter is not None:
                exporter.stop()
                started.remove(exporter)
            exporter = start_exporter(log_dir, org_url, env)
            started.append(exporter)
            wall = wait_ready(exporter, timeout=max(60.0, args.budget - (time.monotonic() - began)))
            cpu = exporter.cpu_seconds()
            samples = self_metrics(exporter.port)
            requests = total(samples, m.EXPORTER_API_REQUESTS.total)
            initial_wall.append(wall)
            initial_cpu.append(cpu)
            initial_requests.append(requests)
            peak_rss.append(exporter.peak_rss_bytes() / 2**20)
            by_endpoint: dict[str, float] = {}
            for (name, labels), value in samples.items():
                if name == m.EXPORTER_API_REQUESTS.total:
                    endpoint = dict(labels)["endpoint"]
                    by_endpoint[endpoint] = by_endpoint.get(endpoint, 0.0) + value
            print(f"  initial load {run + 1}: {wall:.1f}s wall, {cpu:.1f}s CPU, {requests:.0f} requests ("
                  + ", ".join(f"{e} {v:.0f}" for e, v in sorted(by_endpoint.items(), key=lambda kv: -kv[1]))
                  + f"), peak RSS {peak_rss[-1]:.0f} MiB", flush=True)
            elapsed = time.monotonic() - began
            # keep room for the steady state and latency phases (~5 minutes)
            if elapsed + wall * 1.2 + 300 > args.budget:
                break
        assert exporter is not None
        _, projects_body, _ = http_get(f"{org_url}/_apis/projects?api-version=7.1&$top=1000", timeout=30,
                                       headers={"Authorization": _basic()})
        import json
        projects = len(json.loads(projects_body)["value"])

        # -- 2. steady state ---------------------------------------------------------------------------
        # Areas refresh on their own threads, so requests are attributed to areas by endpoint and divided
        # by that area's own cycles; a "round" is one cycle of every area.
        def marker() -> tuple[float, float, dict[str, float], dict[str, float], float, bytes]:
            _, full, _ = http_get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=120,
                                  headers={"Accept-Encoding": "gzip"})
            own = {}
            for line in full.split(b"\n"):
                if line.startswith(SELF_METRICS):
                    name, labels, value = parse_sample_line(line.decode())
                    own[(name, labels)] = value
            cycles = {dict(lb)["collector"]: v for (n, lb), v in own.items()
                      if n == m.EXPORTER_REFRESH_DURATION_SECONDS.count}
            by_area: dict[str, float] = {}
            for (n, lb), v in own.items():
                if n == m.EXPORTER_API_REQUESTS.total:
                    area = ENDPOINT_AREA.get(dict(lb)["endpoint"], "builds")
                    by_area[area] = by_area.get(area, 0.0) + v
            runs = sum(float(line.rsplit(b" ", 1)[1]) for line in full.split(b"\n")
                       if line.startswith(RUNS_TOTAL))
            return time.monotonic(), exporter.cpu_seconds(), cycles, by_area, runs, full

        previous = marker()
        body = previous[5]
        per_area_rounds: dict[str, list[float]] = {}
        for _ in range(args.steady_windows):
            time.sleep(INTERVAL * 3)
            current = marker()
            per_area: dict[str, float] = {}
            for area, cycles in current[2].items():
                done_cycles = cycles - previous[2].get(area, 0.0)
                if done_cycles > 0:
                    per_area[area] = (current[3].get(area, 0.0) - previous[3].get(area, 0.0)) / done_cycles
                    per_area_rounds.setdefault(area, []).append(per_area[area])
            builds_cycles = current[2].get("builds", 0.0) - previous[2].get("builds", 0.0)
            if per_area and builds_cycles > 0:
                new_runs = (current[4] - previous[4]) / builds_cycles
                steady_requests.append(sum(per_area.values()))
                steady_cpu.append((current[1] - previous[1]) / (current[0] - previous[0]) * INTERVAL)
                project_areas = sum(1 for a in per_area if a not in ORG_AREAS)
                org_areas = sum(1 for a in per_area if a in ORG_AREAS)
                # one listing per project and project-level area, one per organization-level area, plus one
                # request per new tracked run (its test summary: the API answers one build per request) and
                # one more page per 1,000 new runs
                minimum.append(projects * project_areas + org_areas + new_runs
                               + max(0.0, math.ceil(new_runs / 1000) - 1))
                body = current[5]
                print(f"  steady window: {steady_requests[-1]:.0f} requests per round (minimum {minimum[-1]:.0f}), "
                      f"{steady_cpu[-1]:.2f} CPU s per {INTERVAL}s, {new_runs:.0f} new tracked runs per builds cycle; "
                      + ", ".join(f"{a} {v:.0f}" for a, v in sorted(per_area.items())), flush=True)
            previous = current
        series = sample_lines(body)

        # -- 3. latency against the static floor -------------------------------------------------------
        _, plain, _ = http_get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=60)
        static_dir = log_dir / "static"
        static_dir.mkdir()
        (static_dir / "metrics").write_bytes(plain)
        static_port = free_port()
        static = Proc("static", subprocess.Popen(
            [_python(), "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(static_dir), str(static_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), log_dir / "static.log", static_port)
        started.append(static)
        for _ in range(100):
            try:
                if http_get(f"http://127.0.0.1:{static_port}/metrics", timeout=10)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        for round_number in range(args.latency_rounds):
            ours = scrape_latencies(exporter.port, "/metrics", 8, args.latency_seconds, 400)
            floor = scrape_latencies(static_port, "/metrics", 8, args.latency_seconds, 400)
            if ours and floor:
                latency_p50.append(percentile(ours, 0.5) * 1000)
                latency_p99.append(percentile(ours, 0.99) * 1000)
                static_p50.append(percentile(floor, 0.5) * 1000)
                static_p99.append(percentile(floor, 0.99) * 1000)
                print(f"  latency round {round_number + 1}: ours p50 {latency_p50[-1]:.1f} ms p99 "
                      f"{latency_p99[-1]:.1f} ms ({len(ours)} scrapes); static p50 {static_p50[-1]:.1f} ms p99 "
                      f"{static_p99[-1]:.1f} ms ({len(floor)})", flush=True)
        peak_rss.append(exporter.peak_rss_bytes() / 2**20)
        final_peak = peak_rss[-1]

    ratios = [r / low for r, low in zip(steady_requests, minimum, strict=True) if low]
    p99_ratio = [a / b for a, b in zip(latency_p99, static_p99, strict=True) if b]
    p50_ratio = [a / b for a, b in zip(latency_p50, static_p50, strict=True) if b]
    rows = [
        ("scale", f"{args.scale}: {projects} projects, speed {args.speed:g}x, every area every {INTERVAL}s"),
        ("initial load wall time", fmt(initial_wall, " s")),
        ("initial load CPU seconds", fmt(initial_cpu, " s")),
        ("initial load requests", fmt(initial_requests, "", 0)),
        ("steady requests per round (every area once)", fmt(steady_requests, "", 0)),
        *[(f"  of which {area} per cycle", fmt(values, "", 0)) for area, values in sorted(per_area_rounds.items())],
        (f"steady CPU seconds per {INTERVAL} s round", fmt(steady_cpu, " s", 2)),
        ("theoretical minimum requests/round", fmt(minimum, "", 0) + f"  (= {projects} projects × project areas"
                                                                      " + org areas + pages of new items)"),
        ("ratio to the minimum", fmt(ratios, "×", 2) + "  (target ≤ 1.1×)"),
        ("series exported", f"{series:,}"),
        ("peak RSS (exporter)", fmt(peak_rss, " MiB", 0) + f"  (whole run {final_peak:.0f} MiB; target < 300 MB)"),
        ("/metrics p50, 8 scrapers, refreshing", fmt(latency_p50, " ms")),
        ("/metrics p99, 8 scrapers, refreshing", fmt(latency_p99, " ms")),
        ("static file p50 (same bytes)", fmt(static_p50, " ms")),
        ("static file p99 (same bytes)", fmt(static_p99, " ms")),
        ("p50 ratio to static", fmt(p50_ratio, "×", 2)),
        ("p99 ratio to static", fmt(p99_ratio, "×", 2) + "  (target ≤ 2×)"),
        ("benchmark wall time", f"{time.monotonic() - began:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print("| " + "figure".ljust(width) + " | median (min–max, n) |")
    print("|" + "-" * (width + 2) + "|---|")
    for key, shown in rows:
        print(f"| {key.ljust(width)} | {shown} |")
    print("\nTop series by metric name:")
    for name, count in sorted(series_breakdown(body).items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {count:>8,}  {name}")
    return 0


def _basic() -> str:
    import base64

    from bench.harness import PAT

    return "Basic " + base64.b64encode(f":{PAT}".encode()).decode()


if __name__ == "__main__":
    sys.exit(main())

"""End to end: exporter (demo) -> Prometheus (our rules) -> Alertmanager (our example config) -> webhook.

Everything runs on 127.0.0.1 with free ports and temporary directories:
1. the exporter in demo mode, whose simulated organization has `Payments / infra/deploy-api` broken on
   `main` for more than 4 hours;
2. a webhook receiver (http.server in a thread) that records every POSTed JSON by path;
3. a real Alertmanager on a copy of alerts/alertmanager.yml whose receivers point at that webhook;
4. a real Prometheus scraping the exporter every second with the rule files of alerts/.

Asserted: the page for the long-broken default branch reaches /page with its runbook_url; no alert for
the healthy `payments-ci`; every rule evaluates without error; every dashboard query is valid PromQL,
and returns data on every dashboard (MUST_HAVE_DATA). "Data" means at least one value that is not NaN:
histogram_quantile() over a histogram without observations answers NaN series, which a panel shows as
nothing. Queries of areas not implemented yet (tests/unit/test_dashboards.py PENDING_AREAS_METRICS) and those
listed with a reason in NO_DATA_IN_SHORT_RUN may be empty (there are none today).

Changes made to the temporary copies only, to keep the test near one minute:
- AzdoDefaultBranchBrokenTooLong `for: 5m` becomes `for: 10s` (PAGE_FOR below). The threshold (4h)
  and the expression are the real ones; the promtool rule tests in alerts/tests pin the 5m boundary.
- Alertmanager's port 9095 in the receivers' URLs becomes the webhook's port. group_wait (30s for
  pages) is kept as configured.
- The demo's simulated organization runs SIM_SPEED (60) times faster than real time, set through the
  simulator's control API (POST /_simulator/clock) as soon as the exporter prints its URL. At real speed
  a minute sees ~0.2 completed runs and no merged pull request or production deployment, so the
  since-start counters' rates are 0 and the since-start histograms (run and queue duration, time to
  merge, production lead time) have no observation: their quantile panels would be empty. Speeded up,
  the test sees about an hour of activity. Simulated finish times then run ahead of the wall clock (by up
  to the test's length times 59), which no assertion depends on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import free_port, wait_until
from tests.system_tools import require_binary
from tests.unit.test_dashboards import (
    ALERTS,
    data_panels,
    load_dashboards,
    metric_names,
    pending_family,
    recording_rule_dependencies,
    rule_files,
)

pytestmark = pytest.mark.slow

PAGE_ALERT = "AzdoDefaultBranchBrokenTooLong"
PAGE_FOR = "10s"  # instead of the configured 5m, in the temporary rule copy only
BROKEN = {"project": "Payments", "pipeline": "infra/deploy-api", "branch": "main"}
HEALTHY = {"project": "Payments", "pipeline": "payments-ci", "branch": "main"}
# Dashboards whose every query must return data against the demo organization.
MUST_HAVE_DATA = {"pipeline-health.json", "pipeline-detail.json", "code-review.json", "delivery.json",
                  "exporter.json"}
# What Grafana would put in place of its interval variables.
INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
DEADLINE = 150.0  # seconds for the page to arrive
# The demo's simulated organization runs this many times faster than real time during the test (see the
# module docstring): at 1x, a minute sees ~0.2 completed runs and the since-start histograms stay empty.
SIM_SPEED = 60.0
# Until when (seconds after the stack started) a dashboard query may still be waiting for its data. At
# SIM_SPEED, the first successful production deployment (production lead time since start) completes
# about 70 s after the start.
DATA_DEADLINE = 120.0
# Dashboard queries ("file: 'panel title' (refId)") that cannot return data in a run this short, with the
# reason. The test fails if one of them has data (remove it then) or does not exist.
NO_DATA_IN_SHORT_RUN: dict[str, str] = {}


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class WebhookReceiver:
    """Records the JSON bodies POSTed to it, by path."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"unparsable": body.decode("utf-8", "replace")}
                with receiver.lock:
                    receiver.received.setdefault(self.path, []).append(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received.get(path, []))


@dataclass
class Stack:
    exporter_url: str
    prometheus_url: str
    alertmanager_url: str
    webhook: WebhookReceiver
    log_files: dict[str, Path] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def logs(self) -> str:
        out = []
        for name, path in self.log_files.items():
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            out.append(f"--- {name} log (last 3000 chars) ---\n{text[-3000:]}")
        out.append(f"--- webhook received --- {json.dumps(self.webhook.received)[-3000:]}")
        return "\n".join(out)

    def prom(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.prometheus_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        payload = json.loads(body)
        if status != 200 and payload.get("status") != "error":
            raise ValueError(f"{url}: HTTP {status}")
        return payload


def write_rule_copies(directory: Path) -> list[Path]:
    """Copies of alerts/*.yml rule files; only the page alert's `for:` is shortened (see module doc)."""
    copies = []
    found = False
    for path in rule_files():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            for rule in group.get("rules", []):
                if rule.get("alert") == PAGE_ALERT:
                    rule["for"] = PAGE_FOR
                    found = True
        copy = directory / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        copies.append(copy)
    assert found, f"{PAGE_ALERT} not found in {[p.name for p in rule_files()]}"
    return copies


def start(name: str, argv: list[str], log_dir: Path, processes: list[tuple[str, subprocess.Popen]],
          log_files: dict[str, Path]) -> None:
    log = log_dir / f"{name}.log"
    log_files[name] = log
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=log_dir)
    processes.append((name, process))


def stop_all(processes: list[tuple[str, subprocess.Popen]]) -> None:
    """Terminate every process this test started, in reverse order; kill what does not stop."""
    for _, process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for _, process in reversed(processes):
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def simulator_root(exporter_log: Path) -> str | None:
    """http://127.0.0.1:PORT of the demo's simulator, from the banner the exporter prints on start."""
    text = exporter_log.read_text(encoding="utf-8", errors="replace") if exporter_log.exists() else ""
    match = re.search(r"organization served on (http://127\.0\.0\.1:\d+)/", text)
    return match.group(1) if match else None


def set_simulator_speed(root: str, speed: float) -> None:
    """Make the simulated organization's time run `speed` times faster from now on (its control API)."""
    request = urllib.request.Request(f"{root}/_simulator/clock", data=json.dumps({"speed": speed}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    assert answer.get("speed") == speed, answer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_binary("prometheus")
    alertmanager_bin = require_binary("prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("e2e")
    exporter_port, prometheus_port, alertmanager_port = free_port(), free_port(), free_port()
    webhook = WebhookReceiver()
    processes: list[tuple[str, subprocess.Popen]] = []
    log_files: dict[str, Path] = {}
    stack = Stack(f"http://127.0.0.1:{exporter_port}", f"http://127.0.0.1:{prometheus_port}",
                  f"http://127.0.0.1:{alertmanager_port}", webhook, log_files)
    try:
        webhook.start()

        # 1. The exporter against its simulated organization.
        start("exporter", [sys.executable, "-m", "exporter", "--demo", "--listen", f"127.0.0.1:{exporter_port}"],
              tmp, processes, log_files)
        # 3. Alertmanager on a copy of the example config, receivers pointed at the webhook.
        am_config = (ALERTS / "alertmanager.yml").read_text(encoding="utf-8")
        assert "127.0.0.1:9095" in am_config, "alerts/alertmanager.yml no longer sends to 127.0.0.1:9095"
        (tmp / "alertmanager.yml").write_text(am_config.replace("127.0.0.1:9095", f"127.0.0.1:{webhook.port}"),
                                              encoding="utf-8")
        (tmp / "am-data").mkdir()
        start("alertmanager", [alertmanager_bin, f"--config.file={tmp / 'alertmanager.yml'}",
                               f"--storage.path={tmp / 'am-data'}",
                               f"--web.listen-address=127.0.0.1:{alertmanager_port}", "--cluster.listen-address="],
              tmp, processes, log_files)
        # 4. Prometheus with our rules.
        rules_dir = tmp / "rules"
        rules_dir.mkdir()
        prometheus_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in write_rule_copies(rules_dir)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
            "scrape_configs": [{"job_name": "azdo-exporter",
                                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config), encoding="utf-8")
        (tmp / "prom-data").mkdir()
        start("prometheus", [prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
              tmp, processes, log_files)

        def all_alive() -> bool:
            for name, process in processes:
                if process.poll() is not None:
                    pytest.fail(f"{name} exited with {process.returncode}\n{stack.logs()}")
            return True

        # 2. Speed up the simulated organization as soon as the exporter prints where it is.
        simulator_url = wait_until(lambda: all_alive() and simulator_root(log_files["exporter"]), 60,
                                   "the demo banner with the simulator's URL", interval=0.5, details=stack.logs)
        assert isinstance(simulator_url, str)
        set_simulator_speed(simulator_url, SIM_SPEED)
        wait_until(lambda: all_alive() and http_get(f"{stack.exporter_url}/readyz")[0] == 200, 60,
                   "the exporter's /readyz", interval=0.5, details=stack.logs)
        wait_until(lambda: all_alive() and http_get(f"{stack.alertmanager_url}/-/ready")[0] == 200, 30,
                   "Alertmanager ready", interval=0.5, details=stack.logs)
        wait_until(lambda: all_alive() and http_get(f"{stack.prometheus_url}/-/ready")[0] == 200, 30,
                   "Prometheus ready", interval=0.5, details=stack.logs)
        wait_until(lambda: stack.prom("/api/v1/query", query='up{job="azdo-exporter"} == 1')["data"]["result"], 30,
                   "a successful scrape of the exporter", interval=0.5, details=stack.logs)
        yield stack
    finally:
        stop_all(processes)
        webhook.stop()


def page_alerts(stack: Stack) -> list[dict[str, Any]]:
    """The firing page alerts for the broken branch that reached the /page webhook."""
    found = []
    for payload in stack.webhook.posts("/page"):
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            if (labels.get("alertname") == PAGE_ALERT and alert.get("status") == "firing"
                    and all(labels.get(k) == v for k, v in BROKEN.items())):
                found.append({**alert, "_receiver": payload.get("receiver")})
    return found


def wait_for_page(stack: Stack) -> list[dict[str, Any]]:
    return wait_until(lambda: page_alerts(stack), DEADLINE, f"{PAGE_ALERT} at the /page webhook", interval=0.5,
                      details=stack.logs)


def test_page_for_long_broken_default_branch_reaches_the_pager(stack: Stack) -> None:
    alerts = wait_for_page(stack)
    alert = alerts[0]
    assert alert["_receiver"] == "pager"
    assert alert["labels"]["severity"] == "critical"
    annotations = alert["annotations"]
    assert annotations.get("runbook_url", "").endswith("#azdodefaultbranchbrokentoolong"), annotations
    assert "/d/azdo-pipeline-detail/" in annotations.get("dashboard_url", ""), annotations
    assert "infra/deploy-api" in annotations.get("summary", ""), annotations
    # Pages go to the pager only.
    chat = [a for p in stack.webhook.posts("/chat") for a in p.get("alerts", [])]
    assert not [a for a in chat if a["labels"].get("alertname") == PAGE_ALERT]
    print(f"page arrived {time.monotonic() - stack.started:.1f}s after the stack started")


def test_no_alert_for_a_healthy_pipeline_and_every_rule_evaluates(stack: Stack) -> None:
    wait_for_page(stack)  # rules have been evaluated for a while by then
    alerts = stack.prom("/api/v1/alerts")["data"]["alerts"]
    healthy = [a for a in alerts if all(a["labels"].get(k) == v for k, v in HEALTHY.items())]
    assert not healthy, f"alerts for healthy {HEALTHY}: {healthy}"
    broken = [a for a in alerts if a["labels"].get("alertname") == PAGE_ALERT]
    assert {a["labels"]["pipeline"] for a in broken} >= {"infra/deploy-api"}
    assert all(a["labels"].get("branch") in ("main", "master") for a in broken)

    groups = stack.prom("/api/v1/rules")["data"]["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    expected = sum(len(g.get("rules", [])) for p in rule_files() for g in yaml.safe_load(p.read_text())["groups"])
    assert len(loaded) == expected, f"Prometheus loaded {len(loaded)} rules, alerts/ has {expected}"
    bad = [(rule["name"], rule.get("lastError")) for rule in loaded if rule.get("health") != "ok"]
    assert not bad, f"rules failing to evaluate: {bad}"


def substitute_variables(expr: str, model: dict[str, Any]) -> str:
    """Replace dashboard variables as Grafana would with All selected, intervals with fixed durations."""
    defined = {v["name"] for v in model.get("templating", {}).get("list", [])}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in INTERVALS:
            return INTERVALS[name]
        if name in defined:
            return ".*"
        raise AssertionError(f"undefined variable ${name} in {expr}")

    return re.sub(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)", replace, expr)


def is_pending(expr: str, dependencies: dict[str, set[str]]) -> bool:
    """True if the query reads a metric of an area not implemented yet, directly or through a rule."""
    names: set[str] = set()
    for name in metric_names(expr):
        names |= dependencies.get(name, {name})
    return any(pending_family(name) for name in names)


def has_data(data: dict[str, Any]) -> bool:
    """A query result that a panel would show: at least one value that is not NaN.

    histogram_quantile() over a histogram without observations, or 0/0, answers series whose values are
    all NaN: Prometheus returns a result, but the panel shows nothing (or "NaN"). That is no data.
    """
    result = data["result"]
    if data.get("resultType") == "scalar":
        return result[1] != "NaN"
    values = [sample[1] for series in result for sample in ([series["value"]] if "value" in series
                                                             else series.get("values", []))]
    return any(value != "NaN" for value in values)


def test_every_dashboard_query_runs_against_prometheus(stack: Stack) -> None:
    wait_for_page(stack)  # the recording rules and the rate() windows have samples by then
    dependencies = recording_rule_dependencies()
    invalid, pending_empty = [], []
    waiting: dict[str, str] = {}  # where -> expr, for the queries without data yet
    seen: set[str] = set()
    count = 0
    for file_name, model in load_dashboards().items():
        for panel in data_panels(model):
            for target in panel["targets"]:
                count += 1
                expr = substitute_variables(target["expr"], model)
                where = f"{file_name}: {panel['title']!r} ({target['refId']})"
                seen.add(where)
                answer = stack.prom("/api/v1/query", query=expr)
                if answer.get("status") != "success":
                    invalid.append(f"{where}: {answer.get('error')}\n    {expr}")
                elif has_data(answer["data"]):
                    continue
                elif is_pending(target["expr"], dependencies):
                    pending_empty.append(where)
                elif file_name in MUST_HAVE_DATA:
                    waiting[where] = expr
    assert count > 50, f"only {count} queries found"
    assert not invalid, "invalid dashboard queries:\n" + "\n".join(invalid)
    unknown = set(NO_DATA_IN_SHORT_RUN) - seen
    assert not unknown, f"NO_DATA_IN_SHORT_RUN names queries that do not exist: {sorted(unknown)}"
    # Since-start histograms get their first observations as simulated runs, pull requests and
    # deployments complete: poll what is still empty until DATA_DEADLINE after the stack started.
    while waiting and time.monotonic() - stack.started < DATA_DEADLINE:
        time.sleep(2)
        waiting = {where: expr for where, expr in waiting.items()
                   if not has_data(stack.prom("/api/v1/query", query=expr)["data"])}
    empty = {where: expr for where, expr in waiting.items() if where not in NO_DATA_IN_SHORT_RUN}
    assert not empty, (f"dashboard queries without data {time.monotonic() - stack.started:.0f}s after the stack "
                       "started:\n" + "\n".join(f"{where}\n    {expr}" for where, expr in empty.items()))
    now_with_data = sorted(set(NO_DATA_IN_SHORT_RUN) - set(waiting))
    assert not now_with_data, f"these have data now, remove them from NO_DATA_IN_SHORT_RUN: {now_with_data}"
    if pending_empty:
        warnings.warn(f"{len(pending_empty)} dashboard queries are empty because their areas are pending "
                      f"(PENDING_AREAS_METRICS): " + "; ".join(pending_empty), stacklevel=1)


def test_rules_copy_changes_only_the_page_for(tmp_path: Path) -> None:
    """The temporary rules differ from alerts/ by the page alert's `for:` alone."""
    copies = {path.name: yaml.safe_load(path.read_text()) for path in write_rule_copies(tmp_path)}
    for path in rule_files():
        original = yaml.safe_load(path.read_text())
        for group_copy, group in zip(copies[path.name]["groups"], original["groups"], strict=True):
            for rule_copy, rule in zip(group_copy["rules"], group["rules"], strict=True):
                if rule.get("alert") == PAGE_ALERT:
                    assert rule_copy.pop("for") == PAGE_FOR
                    rule = {k: v for k, v in rule.items() if k != "for"}
                assert rule_copy == rule

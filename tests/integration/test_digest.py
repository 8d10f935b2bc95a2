"""The team digest: schedule across time zones and DST, content, formats, delivery, state, command line."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from datetime import time as clock_time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.config.settings import ConfigError, load_config
from exporter.metrics import catalogue as m
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from exporter.team.digest import DeliveryError, DigestService, deliver
from exporter.team.digest_formats import TEAMS_CARD_VERSION, render, render_markdown, render_slack, render_teams
from exporter.team.digest_model import DigestState, compose, load_state, next_state, save_state
from exporter.team.digest_schedule import latest_slot, next_slot, slot_id
from exporter.team.digest_snapshot import human_duration, read_snapshot
from tests.conftest import PAT
from tests.support import run_cli

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = ROOT / "tests" / "golden" / "digest"
ORG_URL = "https://dev.azure.com/contoso"
NOW = 1774861200.0  # 2026-03-30T09:00:00Z, a Monday (11:00 in Berlin, the day after DST started)
HOUR, DAY = 3600.0, 86400.0
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WEEKDAYS = (0, 1, 2, 3, 4)
DAILY = (0, 1, 2, 3, 4, 5, 6)


# ------------------------------------------------------------------------------------- a tiny registry

class FakeSnapshot(Collector):
    """Publishes fixed families, shaped like the exporter's, for a known snapshot."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


def snapshot_collector(*, now: float = NOW, pipelines: list[dict[str, Any]] | None = None, reviews: bool = True,
                       deployments: bool = True, builds_ok: bool = True) -> FakeSnapshot:
    """Branches: each dict has project, pipeline, id, branch, broken (hours or None), failures, runs
    (succeeded, failed, canceled), fixes (count, sum) since start and in the window, last (result, finish)."""
    if pipelines is None:
        pipelines = [
            {"project": "Payments", "pipeline": "infra/deploy-api", "id": 1, "branch": "main", "broken": 4.5,
             "failures": 10, "runs": (40, 12, 2), "fixes": (0, 0.0), "window_fixes": (3, 3 * 1800.0),
             "last": ("failed", now - 600)},
            {"project": "Platform", "pipeline": "core-ci", "id": 5, "branch": "main", "broken": 30.0,
             "failures": 25, "runs": (10, 25, 0), "fixes": (0, 0.0), "window_fixes": (1, 7200.0),
             "last": ("failed", now - 1200)},
            {"project": "Platform", "pipeline": "mobile/app-ci", "id": 7, "branch": "main", "broken": None,
             "failures": 0, "runs": (50, 3, 1), "fixes": (1, 5400.0), "window_fixes": (2, 9000.0),
             "last": ("succeeded", now - 3 * HOUR)},
            {"project": "Platform", "pipeline": "docs-build", "id": 8, "branch": "main", "broken": None,
             "failures": 0, "runs": (20, 0, 0), "fixes": (0, 0.0), "window_fixes": (0, 0.0),
             "last": ("succeeded", now - 5 * HOUR)},
            {"project": "Billing", "pipeline": "web/indexer-ci", "id": 13, "branch": "release/2026.03",
             "broken": None, "failures": 0, "runs": (30, 2, 0), "fixes": (0, 0.0), "window_fixes": (2, 1200.0),
             "last": ("succeeded", now - 2 * DAY)},
        ]
    br = ["project", "pipeline", "branch"]
    info = GaugeMetricFamily(m.PIPELINE_INFO.name, "", labels=["project", "pipeline", "pipeline_id", "repository",
                                                               "default_branch"])
    broken = GaugeMetricFamily(m.PIPELINE_BROKEN.name, "", labels=br)
    since = GaugeMetricFamily(m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, "", labels=br)
    duration = GaugeMetricFamily(m.PIPELINE_BROKEN_DURATION_SECONDS.name, "", labels=br)
    consecutive = GaugeMetricFamily(m.PIPELINE_CONSECUTIVE_FAILURES.name, "", labels=br)
    last_result = GaugeMetricFamily(m.PIPELINE_LAST_RUN_RESULT.name, "", labels=[*br, "result"])
    last_finished = GaugeMetricFamily(m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS.name, "", labels=br)
    window_runs = GaugeMetricFamily(m.PIPELINE_WINDOW_RUNS.name, "", labels=[*br, "result"])
    runs_total = CounterMetricFamily(m.PIPELINE_RUNS.name, "", labels=[*br, "result"])
    ttf = GaugeMetricFamily(m.PIPELINE_TIME_TO_FIX_SECONDS.name, "", labels=br)  # only _count/_sum are read
    window_ttf = GaugeHistogramMetricFamily(m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.name, "", labels=br)
    ttf_samples: list[tuple[str, dict[str, str], float]] = []
    for p in pipelines:
        labels = [p["project"], p["pipeline"], p["branch"]]
        info.add_metric([p["project"], p["pipeline"], str(p["id"]), "repo", "main"], 1)
        broken.add_metric(labels, 1 if p["broken"] is not None else 0)
        if p["broken"] is not None:
            since.add_metric(labels, now - p["broken"] * HOUR)
            duration.add_metric(labels, p["broken"] * HOUR - 60)
        consecutive.add_metric(labels, p["failures"])
        for result in ("succeeded", "partially_succeeded", "failed", "canceled"):
            last_result.add_metric([*labels, result], 1 if result == p["last"][0] else 0)
        last_finished.add_metric(labels, p["last"][1])
        succeeded, failed, canceled = p["runs"]
        for result, count in (("succeeded", succeeded), ("partially_succeeded", 0), ("failed", failed),
                              ("canceled", canceled)):
            window_runs.add_metric([*labels, result], count)
            runs_total.add_metric([*labels, result], 0)
        names = dict(zip(br, labels, strict=True))
        ttf_samples += [(m.PIPELINE_TIME_TO_FIX_SECONDS.count, names, p["fixes"][0]),
                        (m.PIPELINE_TIME_TO_FIX_SECONDS.sum, names, p["fixes"][1])]
        window_ttf.add_metric(labels, [("+Inf", p["window_fixes"][0])], p["window_fixes"][1])
    ttf.samples = [Sample(n, labels, v) for n, labels, v in ttf_samples]
    families: list[Metric] = [info, broken, since, duration, consecutive, last_result, last_finished, window_runs,
                              runs_total, ttf, window_ttf]
    if reviews:
        prs = GaugeMetricFamily(m.PULL_REQUESTS_WINDOW_COMPLETED.name, "",
                                labels=["project", "repository", "target_branch", "reviewed"])
        for project, repository, reviewed, unreviewed in (("Payments", "payments", 18, 2), ("Platform", "core", 9, 0),
                                                          ("Platform", "mobile", 4, 4)):
            prs.add_metric([project, repository, "main", "true"], reviewed)
            prs.add_metric([project, repository, "main", "false"], unreviewed)
        families.append(prs)
    if deployments:
        env_labels = ["project", "pipeline", "environment", "kind"]
        last = GaugeMetricFamily(m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS.name, "", labels=env_labels)
        last.add_metric(["Payments", "payments-release", "Production", "classic"], now - 2 * HOUR)
        last.add_metric(["Payments", "payments-release", "Staging", "classic"], now - HOUR)
        last.add_metric(["Platform", "core-deploy", "prod-eu", "yaml"], now - 3 * DAY)
        window = GaugeMetricFamily(m.DEPLOYMENTS_WINDOW.name, "", labels=[*env_labels, "result"])
        window.add_metric(["Payments", "payments-release", "Production", "classic", "succeeded"], 24)
        window.add_metric(["Payments", "payments-release", "Production", "classic", "failed"], 3)
        window.add_metric(["Payments", "payments-release", "Staging", "classic", "failed"], 9)
        window.add_metric(["Platform", "core-deploy", "prod-eu", "yaml", "succeeded"], 6)
        lead = GaugeHistogramMetricFamily(m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.name, "",
                                          labels=["project", "pipeline", "environment"])
        lead.add_metric(["Payments", "payments-release", "Production"], [("+Inf", 24)], 24 * 6 * HOUR)
        restore = GaugeHistogramMetricFamily(m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.name, "",
                                             labels=["project", "pipeline", "environment"])
        restore.add_metric(["Payments", "payments-release", "Production"], [("+Inf", 3)], 3 * 40 * 60.0)
        families += [last, window, lead, restore]
    lookback = GaugeMetricFamily(m.EXPORTER_LOOKBACK_SECONDS.name, "", value=30 * DAY)
    ok = GaugeMetricFamily(m.EXPORTER_REFRESH_SUCCESS.name, "", labels=["collector"])
    ok.add_metric(["builds"], 1 if builds_ok else 0)
    last_ok = GaugeMetricFamily(m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.name, "", labels=["collector"])
    last_ok.add_metric(["builds"], now - 120)
    families += [lookback, ok, last_ok]
    return FakeSnapshot(families)


def previous_state() -> DigestState:
    """A digest sent a week before NOW: mobile/app-ci and docs-build were broken then, now fixed."""
    return DigestState(
        last_slot="2026-03-23T08:00:00Z", sent_at=NOW - 7 * DAY, instance="earlier-process",
        broken={("Platform", "mobile/app-ci", "main"): NOW - 8 * DAY,
                ("Platform", "core-ci", "main"): NOW - 30 * HOUR,
                ("Platform", "docs-build", "main"): None},
        fixes={}, figures={"success_ratio": 0.70, "review_coverage": 0.85, "mean_time_to_fix": 5000.0,
                           "deployment_frequency": 0.5, "change_failure_rate": 0.2, "lead_time": 30000.0,
                           "time_to_restore": 2400.0})


def known_digest(zone: str = "Europe/Berlin") -> Any:
    snapshot = read_snapshot(snapshot_collector(), organization="contoso", organization_url=ORG_URL, now=NOW)
    return compose(snapshot, previous_state(), time_zone=zone, instance="this-process")


# ------------------------------------------------------------------------------------------- schedule

def test_weekday_schedule_in_berlin_crosses_the_march_dst_change() -> None:
    # Friday 27 March 2026, 10:00 UTC (11:00 CET). The next weekday is Monday 30 March, after the change.
    with freeze_time("2026-03-27 10:00:00"):
        now = datetime.now(UTC)
        assert latest_slot(now, WEEKDAYS, clock_time(9, 0), BERLIN) == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)
        assert next_slot(now, WEEKDAYS, clock_time(9, 0), BERLIN) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_weekday_schedule_in_berlin_crosses_the_october_dst_change() -> None:
    with freeze_time("2026-10-23 12:00:00"):  # Friday; clocks go back on Sunday 25 October
        nxt = next_slot(datetime.now(UTC), WEEKDAYS, clock_time(9, 0), BERLIN)
    assert nxt == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert nxt.astimezone(BERLIN).hour == 9


def test_a_time_skipped_by_the_spring_change_is_sent_once_just_after_it() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: it is sent at 03:30 CEST (01:30 UTC).
    with freeze_time("2026-03-28 23:00:00"):
        slot = next_slot(datetime.now(UTC), DAILY, clock_time(2, 30), BERLIN)
    assert slot == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert slot.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    assert next_slot(slot, DAILY, clock_time(2, 30), BERLIN) == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_a_time_repeated_by_the_autumn_change_is_sent_once() -> None:
    # 02:30 happens twice in Berlin on 25 October 2026 (CEST, then CET): only the first counts.
    with freeze_time("2026-10-24 22:00:00"):
        first = next_slot(datetime.now(UTC), DAILY, clock_time(2, 30), BERLIN)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = next_slot(first, DAILY, clock_time(2, 30), BERLIN)
    assert second == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # the next day, not 01:30 UTC the same day


@pytest.mark.parametrize(("frozen", "expected"), [
    ("2026-03-07 15:00:00", datetime(2026, 3, 9, 13, 0, tzinfo=UTC)),   # Sat -> Mon after DST started (EDT)
    ("2026-03-06 13:59:59", datetime(2026, 3, 6, 14, 0, tzinfo=UTC)),   # Fri, EST
    ("2026-10-30 14:00:00", datetime(2026, 11, 2, 14, 0, tzinfo=UTC)),  # Fri -> Mon after DST ended (EST)
])
def test_new_york_schedule_follows_its_own_dst_dates(frozen: str, expected: datetime) -> None:
    with freeze_time(frozen):
        slot = next_slot(datetime.now(UTC), WEEKDAYS, clock_time(9, 0), NEW_YORK)
    assert slot == expected
    assert slot.astimezone(NEW_YORK).strftime("%a %H:%M") in ("Mon 09:00", "Fri 09:00")


def test_half_hour_zone_and_single_day() -> None:
    with freeze_time("2026-06-01 04:00:00"):  # Monday 09:30 in Kolkata (UTC+5:30): Monday's slot has passed
        slot = next_slot(datetime.now(UTC), (0,), clock_time(9, 0), ZoneInfo("Asia/Kolkata"))
    assert slot == datetime(2026, 6, 8, 3, 30, tzinfo=UTC)
    assert slot_id(slot) == "2026-06-08T03:30:00Z"


def test_the_service_finds_the_due_slot_with_freezegun(tmp_path: Path) -> None:
    config = digest_config(tmp_path, "http://127.0.0.1:9/hook", days="weekdays", at="09:00", zone="America/New_York")
    service = DigestService(config, snapshot_collector(), CollectorRegistry(), lambda: True)
    with freeze_time("2026-03-09 13:20:00"):  # Monday 09:20 EDT
        assert service.due_slot(service.clock()) == "2026-03-09T13:00:00Z"
    with freeze_time("2026-03-09 14:30:00"):  # 90 minutes late: skipped, not sent late
        assert service.due_slot(service.clock()) is None
    with freeze_time("2026-03-08 13:20:00"):  # Sunday
        assert service.due_slot(service.clock()) is None


# --------------------------------------------------------------------------------------------- config

def digest_config(tmp_path: Path, url: str, *, days: str = "daily", at: str = "09:00", zone: str = "Europe/Berlin",
                  to: str = "slack") -> Any:
    env = {"AZDO_ORG_URL": ORG_URL, "AZDO_PAT": PAT, "AZDO_DIGEST_TO": to, "AZDO_DIGEST_WEBHOOK_URL": url,
           "AZDO_DIGEST_STATE_FILE": str(tmp_path / "digest-state.json"), "AZDO_DIGEST_DAYS": days,
           "AZDO_DIGEST_TIME": at, "AZDO_DIGEST_TIME_ZONE": zone}
    return load_config(None, env)


def test_digest_config_from_file_and_secret_file(tmp_path: Path) -> None:
    url_file = tmp_path / "hook"
    url_file.write_text("https://hooks.slack.com/services/T0/B0/secretpart\n", encoding="utf-8")
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"""organization_url: {ORG_URL}
digest:
  to: teams
  days: [mon, wednesday, fri]
  time: "08:15"
  time_zone: America/New_York
  webhook_url_file: {url_file}
  state_file: {tmp_path / 'state.json'}
""", encoding="utf-8")
    config = load_config(str(config_file), {"AZDO_PAT": PAT})
    d = config.digest
    assert (d.to, d.days, d.time, d.time_zone) == ("teams", (0, 2, 4), clock_time(8, 15), "America/New_York")
    assert d.webhook_url is not None and d.webhook_url.reveal().endswith("secretpart")
    assert "secretpart" not in repr(config)


def test_digest_config_errors_have_locations_and_hide_the_url(tmp_path: Path) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"""organization_url: {ORG_URL}
digest:
  to: slak
  days: []
  time: "9am"
  time_zone: Mars/Olympus
  webhook_url: https://hooks.slack.com/services/T0/B0/secretpart
""", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(str(config_file), {"AZDO_PAT": PAT, "AZDO_DIGEST_WEBHOOK_URL": "ftp://secret-host/x"})
    errors = raised.value.errors
    text = "\n".join(errors)
    for line_no, word in ((3, "digest.to"), (4, "digest.days"), (5, "digest.time"), (6, "digest.time_zone"),
                          (7, "digest.webhook_url")):
        assert any(e.startswith(f"{config_file}:{line_no}:") and word in e for e in errors), (word, text)
    assert "did you mean 'slack'" in text
    assert any(e.startswith("env AZDO_DIGEST_WEBHOOK_URL") for e in errors)
    assert "secretpart" not in text and "secret-host" not in text


def test_a_scheduled_digest_needs_a_url_and_a_state_file() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(None, {"AZDO_ORG_URL": ORG_URL, "AZDO_PAT": PAT, "AZDO_DIGEST_TO": "slack"})
    text = str(raised.value)
    assert "env AZDO_DIGEST_TO" in text and "webhook URL" in text and "state_file" in text


# -------------------------------------------------------------------------------------------- content

def test_snapshot_and_digest_content() -> None:
    digest = known_digest()
    assert [b.pipeline for b in digest.broken] == ["core-ci", "infra/deploy-api"]  # longest broken first
    assert digest.broken[1].url == f"{ORG_URL}/Payments/_build?definitionId=1"
    assert digest.healthy == 3
    fixed = {f.pipeline: f for f in digest.fixed}
    assert set(fixed) == {"mobile/app-ci", "docs-build"}
    assert fixed["docs-build"].took is None  # no broken-since recorded: fixed, time unknown
    assert fixed["mobile/app-ci"].took == pytest.approx(8 * DAY - 3 * HOUR) and not fixed["mobile/app-ci"].exact
    figures = {f.key: f for f in digest.figures}
    assert figures["success_ratio"].now == pytest.approx(150 / 192)
    assert figures["success_ratio"].trend() == "better"
    assert figures["review_coverage"].now == pytest.approx(31 / 37)
    assert figures["review_coverage"].trend() == "worse"
    assert figures["mean_time_to_fix"].now == pytest.approx((5400 + 7200 + 9000 + 1200) / 8)
    dora = {f.key: f for f in digest.dora or []}
    assert dora["deployment_frequency"].now == pytest.approx(30 / 30)  # Staging is not production
    assert dora["change_failure_rate"].now == pytest.approx(3 / 33)
    assert dora["lead_time"].now == pytest.approx(6 * HOUR)
    assert [d.environment for d in digest.deployments or []] == ["Production", "prod-eu"]


def test_fixed_in_the_same_process_uses_the_time_to_fix_histogram() -> None:
    snapshot = read_snapshot(snapshot_collector(), organization="contoso", organization_url=ORG_URL, now=NOW)
    previous = previous_state()
    previous.instance = "this-process"
    digest = compose(snapshot, previous, instance="this-process")
    fixed = {f.pipeline: f for f in digest.fixed}
    assert fixed["mobile/app-ci"].took == 5400.0 and fixed["mobile/app-ci"].exact


def test_first_digest_compares_with_nothing() -> None:
    snapshot = read_snapshot(snapshot_collector(), organization="contoso", organization_url=ORG_URL, now=NOW)
    digest = compose(snapshot, DigestState())
    assert digest.fixed == [] and all(f.previous is None for f in digest.figures)
    assert "First digest" in render_markdown(digest)


def test_human_duration() -> None:
    assert [human_duration(s) for s in (5, 60, 3599, 3600, 4 * HOUR + 38 * 60, DAY, 3 * DAY + 2 * HOUR)] == \
        ["5s", "1m", "59m", "1h", "4h 38m", "1d", "3d 2h"]


# -------------------------------------------------------------------------------------------- golden

def _check_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest tests/integration/test_digest.py"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed: review, then UPDATE_GOLDEN=1 pytest"


@pytest.mark.parametrize("target", ["slack", "teams", "webhook"])
def test_golden_payloads(target: str) -> None:
    payload = render(known_digest(), target)
    _check_golden(f"{target}.json", json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def test_golden_markdown() -> None:
    _check_golden("digest.md", render_markdown(known_digest()))


# ---------------------------------------------------------------------------------------- structures

SLACK_BLOCK_TYPES = {"header", "section", "divider", "context", "actions", "image", "rich_text"}


def assert_valid_block_kit(message: dict[str, Any]) -> None:
    assert isinstance(message.get("text"), str) and message["text"]  # notification fallback
    blocks = message["blocks"]
    assert 0 < len(blocks) <= 50
    for block in blocks:
        assert block["type"] in SLACK_BLOCK_TYPES
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] in ("mrkdwn", "plain_text")
                assert 0 < len(block["text"]["text"]) <= 3000
            for field in block.get("fields", []):
                assert field["type"] in ("mrkdwn", "plain_text") and 0 < len(field["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        elif block["type"] == "context":
            assert 0 < len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] in ("mrkdwn", "plain_text", "image") and element.get("text")
    json.dumps(message)


CARD_ELEMENT_TYPES = {"TextBlock", "FactSet", "Container", "ColumnSet", "Image", "ActionSet", "RichTextBlock"}


def assert_valid_adaptive_card_message(message: dict[str, Any]) -> None:
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] in ("1.4", "1.5")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"]
    for element in card["body"]:
        assert element["type"] in CARD_ELEMENT_TYPES
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        if element["type"] == "FactSet":
            assert all(isinstance(f["title"], str) and isinstance(f["value"], str) for f in element["facts"])
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("https://")


def test_block_kit_and_adaptive_card_are_structurally_valid() -> None:
    digest = known_digest()
    assert_valid_block_kit(render_slack(digest))
    assert_valid_adaptive_card_message(render_teams(digest))
    assert TEAMS_CARD_VERSION == "1.4"


def test_limits_hold_for_a_large_organization_and_names_are_escaped() -> None:
    many = [{"project": "Big", "pipeline": f"team-{i:03d}/<b>svc</b> & `co` *x*_{'y' * 200}", "id": i,
             "branch": "main", "broken": float(i), "failures": i, "runs": (1, 1, 0), "fixes": (0, 0.0),
             "window_fixes": (0, 0.0), "last": ("failed", NOW)} for i in range(1, 200)]
    snapshot = read_snapshot(snapshot_collector(pipelines=many), organization="big", organization_url=ORG_URL,
                             now=NOW)
    digest = compose(snapshot, DigestState())
    slack = render_slack(digest)
    assert_valid_block_kit(slack)
    text = json.dumps(slack)
    assert "<b>" not in text and "&lt;b&gt;svc&lt;/b&gt; &amp;" in text
    assert "and 179 more" in text
    teams = render_teams(digest)
    assert_valid_adaptive_card_message(teams)
    assert "\\\\*x\\\\*\\\\_" in json.dumps(teams)  # Markdown punctuation escaped in the card


# ------------------------------------------------------------------------------------------ receiver

class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with the given status codes, then 200."""

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.statuses = list(statuses)
        self.bodies: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.bodies.append((status, body, self.headers.get("Content-Type")))
                answer = b"ok" if status == 200 else b"internal_error"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_delivery_retries_a_500_then_succeeds(receiver: Receiver) -> None:
    receiver.statuses = [500]
    waits: list[float] = []
    attempts = deliver(receiver.url, {"text": "hello"}, backoff=0.01, sleep=waits.append)
    assert attempts == 2 and len(waits) == 1
    assert [s for s, _, _ in receiver.bodies] == [500, 200]
    assert receiver.bodies[-1][1] == {"text": "hello"} and receiver.bodies[-1][2] == "application/json"


def test_delivery_backs_off_exponentially_and_gives_up_without_showing_the_url(receiver: Receiver) -> None:
    receiver.statuses = [503] * 4
    waits: list[float] = []
    with pytest.raises(DeliveryError) as raised:
        deliver(receiver.url, {"text": "x"}, attempts=4, backoff=1.0, sleep=waits.append)
    assert len(receiver.bodies) == 4 and len(waits) == 3
    assert [0.5 <= w <= 1.0 for w in waits[:1]] == [True] and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 4.0
    assert "secret-token" not in str(raised.value) and "HTTP 503" in str(raised.value)


def test_a_4xx_answer_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    with pytest.raises(DeliveryError, match="not retried"):
        deliver(receiver.url, {"text": "x"}, backoff=0.01, sleep=lambda _: None)
    assert len(receiver.bodies) == 1


def test_connection_errors_do_not_leak_the_url() -> None:
    with pytest.raises(DeliveryError) as raised:
        deliver("http://127.0.0.1:9/hooks/secret-token", {}, attempts=2, backoff=0.01, sleep=lambda _: None)
    assert "secret-token" not in str(raised.value) and "connection error" in str(raised.value)


# ----------------------------------------------------------------------------------- the scheduled one

class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_scheduled_delivery_retries_and_is_not_sent_twice_after_a_restart(tmp_path: Path, receiver: Receiver,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    config = digest_config(tmp_path, receiver.url, days="daily", at="09:00", zone="Europe/Berlin")
    slot = datetime(2026, 3, 30, 7, 0, tzinfo=UTC).timestamp()  # 09:00 CEST
    clock = Clock(slot - 60)
    source = snapshot_collector(now=slot)
    registry = CollectorRegistry()
    service = DigestService(config, source, registry, lambda: True, clock=clock, backoff=0.01,
                            sleep=lambda _: None)
    for result in ("success", "failure"):
        assert registry.get_sample_value(m.EXPORTER_DIGEST_DELIVERIES.total, {"result": result}) == 0
    assert service.tick() == "not_due" and receiver.bodies == []  # yesterday's slot is past the grace
    clock.now = slot + 60
    receiver.statuses = [500]
    assert service.tick() == "sent"
    assert [s for s, _, _ in receiver.bodies] == [500, 200]
    assert_valid_block_kit(receiver.bodies[-1][1])
    assert registry.get_sample_value(m.EXPORTER_DIGEST_DELIVERIES.total, {"result": "success"}) == 1
    assert registry.get_sample_value(m.EXPORTER_DIGEST_DELIVERIES.total, {"result": "failure"}) == 0
    state = json.loads((tmp_path / "digest-state.json").read_text(encoding="utf-8"))
    assert state["last_slot"] == "2026-03-30T07:00:00Z"
    assert {(b["pipeline"]) for b in state["broken"]} == {"infra/deploy-api", "core-ci"}
    assert service.tick() == "already_sent"

    # A restart: a new process, a new registry, the same state file. The same slot is not sent again.
    clock.now = slot + 300
    restarted = DigestService(config, source, CollectorRegistry(), lambda: True, clock=clock, backoff=0.01,
                              sleep=lambda _: None)
    assert restarted.tick() == "already_sent"
    assert len(receiver.bodies) == 2
    # The next day's slot is sent, and compares with the first digest.
    clock.now = slot + DAY + 10
    restarted.source = snapshot_collector(now=clock.now)
    assert restarted.tick() == "sent"
    assert len(receiver.bodies) == 3
    assert "compared with the digest of" in json.dumps(receiver.bodies[-1][1], ensure_ascii=False)
    assert "secret-token" not in caplog.text


def test_a_failed_delivery_is_counted_logged_and_retried_later(tmp_path: Path, receiver: Receiver,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    config = digest_config(tmp_path, receiver.url, to="teams")
    slot = datetime(2026, 3, 30, 7, 0, tzinfo=UTC).timestamp()
    clock = Clock(slot + 30)
    registry = CollectorRegistry()
    service = DigestService(config, snapshot_collector(now=slot), registry, lambda: True, clock=clock,
                            attempts=3, backoff=0.01, sleep=lambda _: None)
    receiver.statuses = [500] * 3
    assert service.tick() == "failed"
    assert registry.get_sample_value(m.EXPORTER_DIGEST_DELIVERIES.total, {"result": "failure"}) == 1
    assert "not delivered to teams" in caplog.text and "secret-token" not in caplog.text
    assert not (tmp_path / "digest-state.json").exists()
    assert service.tick() == "retry_later"
    clock.now += 301
    assert service.tick() == "sent"
    assert_valid_adaptive_card_message(receiver.bodies[-1][1])
    assert registry.get_sample_value(m.EXPORTER_DIGEST_DELIVERIES.total, {"result": "success"}) == 1


def test_waits_for_the_first_refresh(tmp_path: Path, receiver: Receiver) -> None:
    config = digest_config(tmp_path, receiver.url)
    slot = datetime(2026, 3, 30, 7, 0, tzinfo=UTC).timestamp()
    ready = {"value": False}
    service = DigestService(config, snapshot_collector(now=slot), CollectorRegistry(), lambda: ready["value"],
                            clock=Clock(slot + 5), backoff=0.01, sleep=lambda _: None)
    assert service.tick() == "waiting"
    ready["value"] = True
    assert service.tick() == "sent"


def test_state_file_round_trip_and_corruption(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    state = previous_state()
    save_state(str(path), state)
    assert load_state(str(path)) == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind
    path.write_text("{not json", encoding="utf-8")
    assert load_state(str(path)) == DigestState()
    assert "unreadable" in caplog.text
    snapshot = read_snapshot(snapshot_collector(), organization="contoso", organization_url=ORG_URL, now=NOW)
    digest = compose(snapshot, state)
    manual = next_state(snapshot, digest, slot=None, instance=None, previous=state)
    assert manual.last_slot == state.last_slot  # a digest sent by hand does not take a scheduled slot


# -------------------------------------------------------------------------------------- command line

@pytest.fixture
def seeded_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Organization.generate(seed=1, scale="small"), pat=PAT) as server:
        yield server


@pytest.mark.slow  # a subprocess exporter, a whole refresh: make test runs it, make test-fast does not
def test_digest_to_stdout_against_the_simulator(seeded_sim: SimulatorServer, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"organization_url: {seeded_sim.base_url}\ndigest:\n  time_zone: Europe/Berlin\n",
                      encoding="utf-8")
    result = run_cli("digest", "--to", "stdout", "--config", str(config), env={"AZDO_PAT": PAT})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("# Delivery pipeline digest")
    broken_line = next(line for line in out.splitlines() if "infra/deploy-api" in line)
    assert "broken for 4h" in broken_line and "_build?definitionId=" in broken_line


@pytest.mark.slow  # a subprocess exporter, a whole refresh: make test runs it, make test-fast does not
def test_digest_to_slack_from_the_command_line(seeded_sim: SimulatorServer, receiver: Receiver,
                                              tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    env = {"AZDO_ORG_URL": seeded_sim.base_url, "AZDO_PAT": PAT, "AZDO_DIGEST_WEBHOOK_URL": receiver.url,
           "AZDO_DIGEST_STATE_FILE": str(state)}
    result = run_cli("digest", "--to", "slack", env=env)
    assert result.returncode == 0, result.stderr
    assert len(receiver.bodies) == 1
    message = receiver.bodies[0][1]
    assert_valid_block_kit(message)
    assert "infra/deploy-api" in json.dumps(message)
    saved = json.loads(state.read_text(encoding="utf-8"))
    assert saved["last_slot"] is None and saved["sent_at"]
    assert "secret-token" not in result.stderr


def test_digest_needs_a_url_for_a_chat_target(tmp_path: Path) -> None:
    result = run_cli("digest", "--to", "teams", env={"AZDO_ORG_URL": ORG_URL, "AZDO_PAT": PAT})
    assert result.returncode == 2 and "AZDO_DIGEST_WEBHOOK_URL" in result.stderr

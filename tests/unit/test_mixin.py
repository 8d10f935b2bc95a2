"""The mixin config (exporter/metrics/mixin.py): a user's override file reaches both the rules and the
dashboards; bad override files are refused with the key named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.metrics import catalogue as m
from exporter.metrics import mixin

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE = """\
selectors:
  job: job="azdo"
grafana_url: https://grafana.example.com
runbook_base_url: https://wiki.example.com/azdo-runbooks
alerts:
  AzdoBuildBroken:
    threshold: 30m
  AzdoDefaultBranchBrokenTooLong:
    severity: warning
"""


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _panel(model: dict[str, Any], title: str) -> dict[str, Any]:
    (panel,) = [p for p in model["panels"] if p.get("title") == title]
    return panel


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict[str, dict]]:
    """(alert name -> rule, dashboard file -> model) generated with the override file."""
    tmp = tmp_path_factory.mktemp("mixin")
    (tmp / "my-mixin.yaml").write_text(OVERRIDE)
    for script in ("alerts/generate.py", "grafana/generate.py"):
        proc = _run(script, "--config", str(tmp / "my-mixin.yaml"), "--out", str(tmp / "out"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = {r["alert"]: r for g in yaml.safe_load((tmp / "out" / "azdo-exporter.rules.yml").read_text())["groups"]
             for r in g["rules"]}
    dashboards = {p.name: json.loads(p.read_text()) for p in (tmp / "out").glob("*.json")}
    return rules, dashboards


def test_changed_threshold_lands_in_rules_and_dashboards(generated: tuple[dict, dict]) -> None:
    rules, dashboards = generated
    assert rules["AzdoBuildBroken"]["expr"].strip() == f"{m.PIPELINE_BROKEN_DURATION_SECONDS} > 1800"
    # The broken-for panels draw their bands at the alerts' thresholds, coloured by their severities.
    health = _panel(dashboards["pipeline-health.json"], "Longest broken")
    detail = _panel(dashboards["pipeline-detail.json"], "Broken for")
    assert _steps(health) == _steps(detail) == [(None, "green"), (1800, "yellow"), (14400, "yellow")]


def test_changed_severity_lands_in_rules_and_dashboards(generated: tuple[dict, dict]) -> None:
    rules, dashboards = generated
    assert rules["AzdoDefaultBranchBrokenTooLong"]["labels"]["severity"] == "warning"
    assert rules["AzdoBuildBroken"]["labels"]["severity"] == "warning"
    # With the defaults the 4h band is red (critical); here it is the warning colour.
    default_steps = _steps(_panel(json.loads((ROOT / "grafana/dashboards/pipeline-health.json").read_text()),
                                  "Longest broken"))
    assert default_steps == [(None, "green"), (900, "yellow"), (14400, "red")]
    assert (14400, "yellow") in _steps(_panel(dashboards["pipeline-health.json"], "Longest broken"))


def test_job_selector_and_base_urls_land_everywhere(generated: tuple[dict, dict]) -> None:
    rules, dashboards = generated
    assert rules["AzdoExporterDown"]["expr"].strip() == 'up{job="azdo"} == 0'
    for name, rule in rules.items():
        assert rule["annotations"]["dashboard_url"].startswith("https://grafana.example.com/d/"), name
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/azdo-runbooks#{name.lower()}"
    up = _panel(dashboards["exporter.json"], "Up")
    assert up["targets"][0]["expr"].startswith('up{job="azdo", ')
    assert sorted(dashboards) == sorted(p.name for p in (ROOT / "grafana/dashboards").glob("*.json"))


def test_the_rest_stays_at_the_defaults(generated: tuple[dict, dict]) -> None:
    rules, _ = generated
    assert rules["AzdoBuildBroken"]["labels"]["severity"] == mixin.DEFAULTS["alerts"]["AzdoBuildBroken"]["severity"]
    assert rules["AzdoAgentPoolBacklog"]["expr"].strip().endswith("> 10")
    assert set(rules) == set(mixin.DEFAULTS["alerts"])


@pytest.mark.parametrize("text,message", [
    ("alerts:\n  AzdoBuildBrokn:\n    threshold: 1h\n",
     "unknown key alerts.AzdoBuildBrokn (did you mean alerts.AzdoBuildBroken?)"),
    ("selector:\n  job: job=\"x\"\n", "unknown key selector (did you mean selectors?)"),
    ("alerts:\n  AzdoBuildBroken:\n    treshold: 1h\n",
     "unknown key alerts.AzdoBuildBroken.treshold (did you mean alerts.AzdoBuildBroken.threshold?)"),
    ("alerts:\n  AzdoBuildBroken:\n    severity: page\n",
     "alerts.AzdoBuildBroken.severity: 'page' is not one of critical, warning, info"),
    ("alerts:\n  AzdoBuildBroken:\n    threshold: 30 minutes\n",
     "alerts.AzdoBuildBroken.threshold: '30 minutes' is not a Prometheus duration"),
    ("alerts:\n  AzdoBuildBroken:\n    for: 5\n", "alerts.AzdoBuildBroken.for: expected a string, got int 5"),
    ("alerts:\n  AzdoReviewCoverageLow:\n    threshold: high\n",
     "alerts.AzdoReviewCoverageLow.threshold: expected a number, got str 'high'"),
    ("alerts:\n  AzdoAgentPoolBacklog:\n    threshold: 2.5\n",
     "alerts.AzdoAgentPoolBacklog.threshold: expected a whole number, got 2.5"),
    ("include_pipeline_default_branch: 'no'\n", "include_pipeline_default_branch: expected true or false"),
    ("alerts: [AzdoBuildBroken]\n", "alerts must be a mapping, not list"),
    ("- 1\n", "the file must be a mapping"),
    ("alerts: {AzdoBuildBroken: {threshold: [}\n", "not valid YAML"),
])
def test_bad_override_files_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(mixin.MixinError, match="^" + str(path)) as caught:
        mixin.load(path)
    assert message in str(caught.value)


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("grafana_uri: x\nalerts:\n  AzdoBuildBroken:\n    severity: loud\n")
    with pytest.raises(mixin.MixinError) as caught:
        mixin.load(path)
    assert "did you mean grafana_url?" in str(caught.value) and "'loud'" in str(caught.value)


@pytest.mark.parametrize("script", ["alerts/generate.py", "grafana/generate.py"])
def test_generators_exit_2_on_a_bad_override_and_write_nothing(tmp_path: Path, script: str) -> None:
    (tmp_path / "bad.yaml").write_text("alerts:\n  AzdoBuildBrokn: {threshold: 1h}\n")
    proc = _run(script, "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "did you mean alerts.AzdoBuildBroken?" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_empty_override_file_gives_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("# nothing to change\n")
    assert mixin.load(tmp_path / "empty.yaml") == mixin.DEFAULTS
    assert mixin.load(None) == mixin.DEFAULTS and mixin.load(None) is not mixin.DEFAULTS


def test_seconds_reads_prometheus_durations() -> None:
    assert mixin.seconds("1h30m") == 5400 and mixin.seconds("0s") == 0 and mixin.seconds("7d") == 604800
    for bad in ("", "5", "1h 30m", "m5"):
        with pytest.raises(ValueError):
            mixin.seconds(bad)

"""exporter/metrics/monitoring.py: what the alerts, the dashboards and their tests share."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.config.settings import load_config
from exporter.metrics import monitoring
from exporter.team.digest_snapshot import DEFAULT_PRODUCTION

ROOT = Path(__file__).resolve().parents[2]


def test_the_production_rule_is_the_exporters_default_in_promql() -> None:
    config = load_config(None, {"AZDO_ORG_URL": "https://dev.azure.com/contoso", "AZDO_PAT": "x"})
    assert [p.pattern for p in config.production_environments] == [monitoring.PRODUCTION_ENVIRONMENT_REGEX]
    assert [p.pattern for p in DEFAULT_PRODUCTION] == [monitoring.PRODUCTION_ENVIRONMENT_REGEX]
    assert monitoring.PRODUCTION_SELECTOR == 'environment=~"(?i).*prod.*"'
    # PromQL's =~ is anchored: the matcher accepts exactly the names re.search accepts.
    matcher = re.compile(monitoring.PRODUCTION_SELECTOR.split("=~", 1)[1].strip('"'))
    for name in ("Production", "prod-eu", "preprod", "Staging", "dev", "PROD"):
        assert bool(matcher.fullmatch(name)) == bool(re.search(monitoring.PRODUCTION_ENVIRONMENT_REGEX, name)), name


def test_search_matcher_keeps_inline_flags_in_front() -> None:
    assert monitoring.search_matcher("environment", "live") == 'environment=~".*live.*"'
    assert monitoring.search_matcher("env", "(?i)prd|prod") == 'env=~"(?i).*prd|prod.*"'


def test_dashboard_paths_are_uid_and_title_slug() -> None:
    assert monitoring.CODE_REVIEW.path == "/d/azdo-code-review/code-review-and-compliance"
    assert len({board.uid for board in monitoring.DASHBOARDS}) == len(monitoring.DASHBOARDS)


def test_the_generated_rules_use_the_shared_selectors_and_collectors() -> None:
    rules = (ROOT / "alerts" / "azdo-exporter.rules.yml").read_text(encoding="utf-8")
    assert monitoring.JOB_SELECTOR in rules and monitoring.PRODUCTION_SELECTOR in rules
    collectors = set(re.findall(r"^      collector: (\S+)$", rules, re.MULTILINE))
    assert collectors and collectors <= set(monitoring.COLLECTORS)
    for board in monitoring.DASHBOARDS:
        assert board.path in rules, board

"""The golden exposition and the README metric table match what the code produces."""

from __future__ import annotations

from exporter.metrics import catalogue as m
from tests.golden import GOLDEN, README, TABLE_BEGIN, TABLE_END, metric_table, produce_exposition


def test_exposition_matches_the_golden_file() -> None:
    produced = produce_exposition()
    expected = GOLDEN.read_text(encoding="utf-8")
    assert produced == expected, "the exposition changed: review it, then run `make golden`"




def test_golden_file_holds_the_scenarios() -> None:
    text = GOLDEN.read_text(encoding="utf-8")
    assert f'{m.PIPELINE_BROKEN}{{branch="main",pipeline="infra/deploy-api",project="Payments"}} 1.0' in text
    assert f'{m.PIPELINE_BROKEN}{{branch="main",pipeline="data/etl",project="Platform"}} 1.0' in text
    assert f'{m.PIPELINE_BROKEN}{{branch="main",pipeline="mobile/app-ci",project="Platform"}} 0.0' in text
    assert f'{m.PIPELINE_HAS_TESTS}{{branch="main",pipeline="docs-build",project="Platform"}} 0.0' in text
    assert "refs/pull" not in text and 'branch="feature' not in text


def test_readme_metric_table_is_generated_from_the_code() -> None:
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    # The table lists the catalogue; tests/unit/test_catalogue.py checks the catalogue against the golden file.
    assert readme[start:end].strip() == metric_table().strip(), "README metric table drifted: run `make golden`"

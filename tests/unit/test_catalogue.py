"""The metric catalogue (exporter/metrics/catalogue.py) is the one place that names the metrics.

- Every family of the golden exposition is declared there with the same type, help and label names,
  and every declaration is in the golden exposition (except those of parts the demo does not run).
- The snapshot collector's `describe()` gives the registry the catalogue's names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import catalogue as m
from exporter.serve.scheduler import SnapshotCollector
from exporter.team import digest_snapshot
from tests.golden import GOLDEN

# Declared but absent from the golden exposition: the demo configuration schedules no digest and has no
# web config.
NOT_IN_GOLDEN = {m.EXPORTER_DIGEST_DELIVERIES, m.EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL}

_EXPOSED_TYPE = {m.Kind.GAUGE: "gauge", m.Kind.INFO: "gauge", m.Kind.COUNTER: "counter",
                 m.Kind.HISTOGRAM: "histogram", m.Kind.GAUGE_HISTOGRAM: "histogram"}


def _golden_families() -> dict[str, tuple[str, str, set[str]]]:
    """name -> (type, help, label names) of the golden exposition, gauge histograms' _gsum/_gcount left out."""
    families = list(text_string_to_metric_families(GOLDEN.read_text(encoding="utf-8")))
    names = {f.name for f in families}
    out: dict[str, tuple[str, str, set[str]]] = {}
    for family in families:
        if family.name.endswith(("_gsum", "_gcount")) and family.name.rsplit("_", 1)[0] in names:
            continue
        labels = {k for sample in family.samples for k in sample.labels if k != "le"}
        out[family.name] = (family.type, family.documentation, labels)
    return out


def test_the_golden_exposition_is_what_the_catalogue_declares() -> None:
    golden = _golden_families()
    declared = {f.name: f for f in m.ALL if f not in NOT_IN_GOLDEN}
    assert sorted(golden) == sorted(declared)
    for name, (kind, documentation, labels) in golden.items():
        family = declared[name]
        assert (kind, documentation) == (_EXPOSED_TYPE[family.kind], family.help), name
        assert labels == set(family.labels), name


def test_catalogue_order_is_the_exposition_order() -> None:
    golden = list(_golden_families())
    assert [f.name for f in m.ALL if f not in NOT_IN_GOLDEN] == golden


def test_series_names_follow_the_family_type() -> None:
    assert m.PIPELINE_RUNS.total == m.PIPELINE_RUNS.name + "_total"
    assert m.PIPELINE_TIME_TO_FIX_SECONDS.count == m.PIPELINE_TIME_TO_FIX_SECONDS.name + "_count"
    assert m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gsum == m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.name + "_gsum"
    assert m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.bucket == m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.name + "_bucket"
    assert f"{m.PIPELINE_BROKEN}{{branch='main'}}" == m.PIPELINE_BROKEN.name + "{branch='main'}"
    with pytest.raises(AttributeError, match=f"{m.PIPELINE_BROKEN} is a gauge: it has no _total series"):
        _ = m.PIPELINE_BROKEN.total
    with pytest.raises(AttributeError):
        _ = m.PIPELINE_RUNS.bucket
    with pytest.raises(AttributeError):
        _ = m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.sum


def test_a_family_is_built_only_as_its_declared_type() -> None:
    assert m.PIPELINE_BROKEN.gauge().type == "gauge"
    assert m.PIPELINE_RUNS.counter().type == "counter"
    assert m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.histogram(()).type == "gaugehistogram"
    with pytest.raises(TypeError, match=f"{m.PIPELINE_RUNS} is declared as a counter"):
        m.PIPELINE_RUNS.gauge()


class _FakeArea:
    interval = 60.0

    def __init__(self, name: str) -> None:
        self.name = name

    def refresh(self) -> None:
        pass

    def families(self) -> list:  # type: ignore[type-arg]
        return []


def test_snapshot_collector_describes_its_areas_families_from_the_catalogue() -> None:
    collector = SnapshotCollector([_FakeArea(m.AREA_PULL_REQUESTS), _FakeArea(m.AREA_AUDIT)])
    described = [(f.name, f.type) for f in collector.describe()]
    assert described == [(f.name, f.described().type) for f in (*m.of_area(m.AREA_PULL_REQUESTS),
                                                                  *m.of_area(m.AREA_AUDIT))]
    registry = CollectorRegistry()
    registry.register(collector)
    # The registry learnt the names from describe(): a second collector claiming them is refused.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(SnapshotCollector([_FakeArea(m.AREA_AUDIT)]))


def test_team_views_read_only_catalogue_series_of_the_families_they_need() -> None:
    assert all(m.family_of(series) is not None for series in digest_snapshot._READERS)

    class Untouchable(list):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("the samples of a family no view reads were walked")

    unread = m.PIPELINE_RUNS_QUEUED.gauge()
    unread.samples = Untouchable()
    broken = m.PIPELINE_BROKEN.gauge()
    broken.add_metric(["P", "ci", "main"], 1)

    class Source:
        def collect(self) -> list[Metric]:
            return [unread, broken]

    snapshot = digest_snapshot.read_snapshot(Source(), organization="o", organization_url="https://x", now=0.0)
    assert [(b.key, b.broken) for b in snapshot.branches] == [(("P", "ci", "main"), True)]
    assert snapshot.has_builds


# -- no metric name outside the catalogue ----------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("exporter", "tests", "bench", "alerts", "grafana", "deploy", "scripts")
# The catalogue declares the names; the simulator is Azure DevOps' side and knows no metric.
EXEMPT = (ROOT / "exporter" / "metrics" / "catalogue.py", ROOT / "exporter" / "simulator")
# `azdo_...` not followed by `:`: recording-rule names (`azdo_project:pipeline_success:ratio_window`) are
# the alert generator's own output, named level:metric:operation, not exporter metrics.
METRIC_LITERAL = re.compile(r"\bazdo_[a-z_]+\b(?!:)")
# Words of that shape that are not metrics: the Python distribution (azdo_exporter-1.0-py3-none-any.whl).
NOT_METRICS = {"azdo_exporter"}


def metric_literals(source: str) -> list[tuple[int, str]]:
    """(line, name) of every metric-like name in the string and bytes literals of `source`, docstrings
    excepted (prose may name a metric; code may not)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes) and id(node) not in docstrings:
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            found += [(node.lineno, name) for name in METRIC_LITERAL.findall(text) if name not in NOT_METRICS]
    return found


def _scanned_files() -> list[Path]:
    files = [path for top in SCANNED for path in sorted((ROOT / top).rglob("*.py"))]
    return [path for path in files if not any(path == e or e in path.parents for e in EXEMPT)]


def test_no_metric_name_is_written_outside_the_catalogue() -> None:
    files = _scanned_files()
    assert len(files) > 50 and ROOT / "grafana" / "generate.py" in files
    strays = [f"{path.relative_to(ROOT)}:{line}: {name}" for path in files
              for line, name in metric_literals(path.read_text(encoding="utf-8"))]
    assert not strays, "metric names written as literals (use exporter.metrics.catalogue):\n" + "\n".join(strays)


def test_the_literal_check_catches_a_name_and_spares_prose() -> None:
    name = "azdo" + "_pipeline_broken"  # split, so that this file passes its own check
    caught = (f'"""A docstring may say {name}."""\nx = "{name}"\ny = f"sum({name}_total{{{{a}}}})"\n'
              f'z = b"{name} 1.0"\n')
    assert sorted(metric_literals(caught)) == [(2, name), (3, name + "_total"), (4, name)]
    assert metric_literals('q = "' + "azdo" + '_project:pipeline_success:ratio_window"\n') == []

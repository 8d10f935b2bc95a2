"""The dashboards are valid Grafana 11.6 dashboard models: they type-check against @grafana/schema.

Grafana itself cannot run here, so grafana/schema-check/ type-checks each dashboard JSON, as an object
literal, against the dashboard types Grafana publishes (npm @grafana/schema 11.6.x, pinned with its
lock file), with the panel plugins' own option types for the panel kinds we use (kinds.ts):
`npm ci` there, then `node check.mjs`, which runs `tsc --noEmit --strict`. See docs/dashboards.md.

Needs node and npm (Debian packages nodejs and npm, `make system-deps`): skipped locally when they are
missing, failed under CI=true (tests/system_tools.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.system_tools import require_binary

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_CHECK = ROOT / "grafana" / "schema-check"
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
SCHEMA_PACKAGE = "@grafana/schema"
SCHEMA_MAJOR_MINOR = "11.6."


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=SCHEMA_CHECK, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def schema_check() -> list[str]:
    """`npm ci` in grafana/schema-check (from the lock file, into its git-ignored node_modules)."""
    node = require_binary("node")
    npm = require_binary("npm")
    result = run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=300)
    assert result.returncode == 0, f"npm ci in {SCHEMA_CHECK} failed:\n{result.stdout}{result.stderr}"
    return [node, str(SCHEMA_CHECK / "check.mjs")]


def test_pinned_to_the_grafana_11_6_schema() -> None:
    """package.json pins exact versions, and the lock file holds what it pins."""
    package = json.loads((SCHEMA_CHECK / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((SCHEMA_CHECK / "package-lock.json").read_text(encoding="utf-8"))
    pinned = package["devDependencies"]
    assert pinned[SCHEMA_PACKAGE].startswith(SCHEMA_MAJOR_MINOR), pinned
    for name, version in pinned.items():
        assert version[0].isdigit(), f"{name}: pin an exact version, not {version!r}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version, f"{name}: lock file out of date"
    ignored = (SCHEMA_CHECK / ".gitignore").read_text(encoding="utf-8").split()
    assert {"node_modules/", "build/"} <= set(ignored)


def test_dashboards_type_check_against_grafana_schema(schema_check: list[str]) -> None:
    result = run(schema_check, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "error TS" not in output, f"schema errors:\n{output[-20000:]}"
    assert f"ok, {len(list(DASHBOARDS_DIR.glob('*.json')))} dashboards" in output, output


def test_the_check_catches_schema_errors(schema_check: list[str], tmp_path: Path) -> None:
    """The check is not vacuous: one mistake per copy of a dashboard, each reported."""
    model = json.loads((DASHBOARDS_DIR / "exporter.json").read_text(encoding="utf-8"))

    def broken(name: str, change) -> None:
        copy = json.loads(json.dumps(model))
        change(copy)
        (tmp_path / f"{name}.json").write_text(json.dumps(copy), encoding="utf-8")

    def panel(m, kind):
        return next(p for p in m["panels"] if p["type"] == kind)

    broken("unknown-dashboard-key", lambda m: m.update(refreshIntervals=["1m"]))
    broken("stat-option", lambda m: panel(m, "stat")["options"].update(colorMode="colour"))
    broken("override-id", lambda m: panel(m, "table")["fieldConfig"]["overrides"][0]["properties"].append(
        {"id": "custom", "value": {"cellOptions": {"type": "color-text"}}}))
    broken("target-key", lambda m: panel(m, "timeseries")["targets"][0].update(query="up"))
    broken("panel-kind", lambda m: panel(m, "timeseries").update(type="graph"))

    result = run([*schema_check, str(tmp_path)], timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for name in ("unknown-dashboard-key", "stat-option", "override-id", "target-key", "panel-kind"):
        assert f"build/{name}.ts(" in output, f"{name}: not reported\n{output}"
    assert """'"refreshIntervals"' does not exist""" in output
    assert '"colour"' in output

"""Sharding: `--shard INDEX/COUNT` splits the projects between replicas by a stable hash of their id.

Three shards against the simulator together export exactly what one unsharded exporter exports: every
project on exactly one shard, and the organization-wide areas (agent pools, audit) on shard 0 only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import Exporter, area_enabled
from exporter.cli import demo_config
from exporter.config.settings import ConfigError, load_config
from exporter.config.sharding import ORG_LEVEL_AREAS, Shard, parse_shard, shard_of
from exporter.metrics import catalogue as m
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, FakeClock
from tests.support import T0, run_cli

COUNT = 3

Series = tuple[str, tuple[tuple[str, str], ...]]


def test_parse_shard() -> None:
    assert parse_shard("0/3") == Shard(0, 3)
    assert parse_shard(" 2 / 3 ") == Shard(2, 3)
    assert str(parse_shard("1/2")) == "1/2"
    for bad, hint in [("3/3", "INDEX must be 0-2"), ("1/0", "COUNT must be"), ("a/3", "INDEX/COUNT"),
                      ("1", "INDEX/COUNT"), ("-1/3", "INDEX/COUNT")]:
        with pytest.raises(ValueError, match=hint):
            parse_shard(bad)


def test_assignment_is_stable_and_spread() -> None:
    # Fixed values: a change of the hash would move every project to another replica on upgrade.
    assert shard_of("a99cb98b-a616-5999-ad88-a91c19de6475", 3) == shard_of("A99CB98B-A616-5999-AD88-A91C19DE6475", 3)
    assert [shard_of(f"00000000-0000-0000-0000-{i:012d}", 3) for i in range(6)] == \
        [shard_of(f"00000000-0000-0000-0000-{i:012d}", 3) for i in range(6)]
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(f"project-{i}", 4)] += 1
    assert all(850 < c < 1150 for c in counts), counts
    assert all(Shard(0, 1).owns(f"p{i}") for i in range(10))


def test_shard_from_file_env_and_flag(tmp_path) -> None:
    env = {"AZDO_ORG_URL": "https://dev.azure.com/contoso", "AZDO_PAT": "x"}
    assert load_config(None, env).shard == Shard(0, 1)
    assert load_config(None, {**env, "AZDO_SHARD": "1/3"}).shard == Shard(1, 3)
    path = tmp_path / "c.yaml"
    path.write_text('shard: "2/4"\n')
    assert load_config(str(path), env).shard == Shard(2, 4)
    assert load_config(str(path), {**env, "AZDO_SHARD": "0/2"}, {"shard": "1/2"}).shard == Shard(1, 2)
    path.write_text('shard: "4/4"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env)
    assert info.value.errors == [f"{path}:1:8: shard: invalid shard '4/4': INDEX must be 0-3 (the index is 0-based; "
                                 "a StatefulSet's first pod is 0)"]


def test_org_level_areas_only_on_shard_zero() -> None:
    env = {"AZDO_ORG_URL": "https://dev.azure.com/contoso", "AZDO_PAT": "x"}
    for area in ORG_LEVEL_AREAS:
        assert area_enabled(load_config(None, {**env, "AZDO_SHARD": "0/3"}), area)
        assert not area_enabled(load_config(None, {**env, "AZDO_SHARD": "1/3"}), area)
        assert not area_enabled(load_config(None, {**env, "AZDO_SHARD": "0/3", f"AZDO_INTERVAL_{area.upper()}": "0"}),
                                area)
    assert area_enabled(load_config(None, {**env, "AZDO_SHARD": "2/3"}), "builds")


@pytest.fixture(scope="module")
def medium_sim() -> Iterator[SimulatorServer]:
    clock = FakeClock(T0)
    server = SimulatorServer(Organization.generate(seed=1, scale="medium", now_fn=clock, anchor=T0), pat=PAT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run_once(server: SimulatorServer, shard: str | None) -> str:
    overrides = {"request_timeout": "10s", "max_retries": 1, "lookback": "7d"}
    if shard:
        overrides["shard"] = shard
    exporter = Exporter(demo_config(server.base_url, overrides, pat=PAT), clock=FakeClock(T0))
    try:
        errors = exporter.refresh_all_once()
        assert not any(errors.values()), errors
        return generate_latest(exporter.registry).decode()
    finally:
        exporter.close()


def _series(text: str) -> dict[str, set[Series]]:
    """Per metric family (self-metrics left out): its series as (sample name, sorted labels)."""
    out: dict[str, set[Series]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(m.SELF_METRICS):
            continue
        for s in family.samples:
            out.setdefault(family.name, set()).add((s.name, tuple(sorted(s.labels.items()))))
    return out


@pytest.mark.slow  # four whole refreshes of a medium organization: make test runs it, make test-fast does not
def test_three_shards_together_equal_one_unsharded_exporter(medium_sim: SimulatorServer) -> None:
    whole = _series(_run_once(medium_sim, None))
    shards = [_series(_run_once(medium_sim, f"{i}/{COUNT}")) for i in range(COUNT)]

    def projects(series: dict[str, set[Series]]) -> set[str]:
        return {dict(labels)["project"] for name, labels in series.get(m.PIPELINE_INFO.name, set())}

    # Every project on exactly one shard, and every shard has some.
    owned = [projects(s) for s in shards]
    assert all(owned), owned
    assert sum(len(p) for p in owned) == len(projects(whole)) == len(set().union(*owned)) == 10

    # azdo_pipeline_info: the union equals the single exporter's, with no overlap.
    info = [s.get(m.PIPELINE_INFO.name, set()) for s in shards]
    assert set().union(*info) == whole[m.PIPELINE_INFO.name]
    assert sum(len(i) for i in info) == len(whole[m.PIPELINE_INFO.name])

    # Every other family too: project series split without overlap; organization-wide ones on shard 0 only.
    for family, series in whole.items():
        parts = [s.get(family, set()) for s in shards]
        assert set().union(*parts) == series, family
        if any("project" in dict(labels) for _, labels in series):
            assert sum(len(p) for p in parts) == len(series), family
        else:
            assert parts[0] == series and not parts[1] and not parts[2], family
    org_level = {f for f, series in whole.items() if not any("project" in dict(lbl) for _, lbl in series)}
    assert {m.AGENT_POOL_AGENTS.name, m.AUDIT_EVENTS.name} <= org_level


@pytest.mark.slow  # three subprocess exporters: make test runs it, make test-fast does not
def test_once_with_shard_on_the_command_line() -> None:
    results = []
    for index in range(2):
        proc = run_cli("--demo", "--once", "--shard", f"{index}/3", timeout=120)
        assert proc.returncode == 0, proc.stderr
        results.append(_series(proc.stdout))
    assert results[0].get(m.AGENT_POOL_AGENTS.name) and not results[1].get(m.AGENT_POOL_AGENTS.name)
    p0 = {dict(lbl)["project"] for _, lbl in results[0].get(m.PIPELINE_INFO.name, set())}
    p1 = {dict(lbl)["project"] for _, lbl in results[1].get(m.PIPELINE_INFO.name, set())}
    assert p0 and p1 and not p0 & p1

    bad = run_cli("--demo", "--once", "--shard", "3/3", timeout=60)
    assert bad.returncode == 2
    assert "--shard: invalid shard '3/3'" in bad.stderr

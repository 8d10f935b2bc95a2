"""A steady-state refresh costs a fixed number of builds listings per project, whatever the pipelines."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.metrics import catalogue as m
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, ExporterFactory, FakeClock
from tests.support import H

PROJECTS = ("Alpha", "Beta", "Gamma")


def build_org(clock: FakeClock, pipelines_per_project: int) -> tuple[Organization, dict[str, list[int]]]:
    org = Organization.empty(now_fn=clock, anchor=clock.now)
    ids: dict[str, list[int]] = {}
    for project in PROJECTS:
        org.add_project(project)
        for n in range(pipelines_per_project):
            p = org.add_pipeline(project, f"svc-{n}", folder="apps", default_branch="main", repository=f"repo-{n}",
                                 has_tests=True)
            for i, result in enumerate(["succeeded", "failed", "succeeded"]):
                finish = clock.now - (10 - i) * H + n
                org.add_run(project, p.id, branch="main", result=result, queue_time=finish - 400,
                            start_time=finish - 300, finish_time=finish, tests=(3, 0, 0))
            ids.setdefault(project, []).append(p.id)
    return org, ids


def steady_cycle_builds_requests(clock: FakeClock, make_exporter: ExporterFactory, pipelines: int,
                                 new_runs_per_project: int) -> tuple[Counter[str], int]:
    org, ids = build_org(clock, pipelines)
    with SimulatorServer(org, pat=PAT) as server:
        # Builds only: the other areas' requests are counted by their own tests.
        exporter = make_exporter(server, intervals={"builds": "60s", "tests": "60s", "pull_requests": 0, "policies": 0,
                                                    "deployments": 0, "agent_pools": 0, "audit": 0})
        assert exporter.refresh_all_once() == {"builds": None}
        clock.advance(60)
        for project in PROJECTS:
            for n in range(new_runs_per_project):
                org.add_run(project, ids[project][n], branch="main", result="succeeded", queue_time=clock.now - 50,
                            start_time=clock.now - 40, finish_time=clock.now - 5, tests=(3, 0, 0))
        server.clear_requests()
        assert exporter.refresh_all_once() == {"builds": None}
        per_project: Counter[str] = Counter()
        for request in server.requests:
            if request.path.endswith("/_apis/build/builds"):
                per_project[request.path.split("/")[2]] += 1
        total = len(server.requests)
        assert sum(1 for fam in exporter.registry.collect() if fam.name == m.PIPELINE_RUNS.name
                   for s in fam.samples if s.labels["result"] == "succeeded" and s.value == 1) \
            == new_runs_per_project * len(PROJECTS)
    return per_project, total


@pytest.mark.parametrize("new_runs", [0, 3])
def test_steady_state_builds_requests_do_not_grow_with_pipelines(clock: FakeClock, make_exporter: ExporterFactory,
                                                                 new_runs: int) -> None:
    small, small_total = steady_cycle_builds_requests(clock, make_exporter, pipelines=5, new_runs_per_project=new_runs)
    large, large_total = steady_cycle_builds_requests(clock, make_exporter, pipelines=60,
                                                      new_runs_per_project=new_runs)
    assert len(small) == len(large) == len(PROJECTS)
    # Two builds listings per project (completed since the watermark, in progress or queued), one page each.
    assert set(small.values()) == {2}
    assert set(large.values()) == {2}
    # Everything else: one projects listing, one definitions listing per project, one test summary per new run.
    assert small_total == large_total == 1 + len(PROJECTS) * (1 + 2 + new_runs)

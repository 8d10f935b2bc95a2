"""The API layer against the simulator over real HTTP: its requests, its records, and lazy paging."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.auth import PatCredential
from exporter.azdo.client import AzureDevOpsClient
from exporter.azdo.fields import format_time
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, FakeClock

RUNS = 130  # more than one page of 100


def make_api(sim: SimulatorServer) -> AzureDevOpsApi:
    client = AzureDevOpsClient(PatCredential(token=PAT), SelfMetrics(CollectorRegistry()))
    return AzureDevOpsApi(client, sim.base_url, sim.base_url, sim.base_url)


def setup(org: Organization, clock: FakeClock) -> tuple[str, int]:
    org.add_project("Payments")
    pipeline = org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                                repository="payments")
    for i in range(RUNS):
        finish = clock.now - 86400 + i * 60
        org.add_run("Payments", pipeline.id, branch="main", result="failed", queue_time=finish - 300,
                    start_time=finish - 240, finish_time=finish)
    project = org.project("Payments")
    assert project is not None
    return project.id, pipeline.id


def builds_requests(sim: SimulatorServer) -> list[dict[str, str]]:
    return [r.params for r in sim.requests if r.path.endswith("/_apis/build/builds")]


def test_a_branch_history_reads_every_page_newest_first(sim: SimulatorServer, empty_org: Organization,
                                                         clock: FakeClock) -> None:
    project_id, pipeline_id = setup(empty_org, clock)
    api = make_api(sim)
    runs = list(api.completed_builds_before(project_id, pipeline_id, "main", clock.now))
    assert len(runs) == RUNS and len({r.id for r in runs}) == RUNS
    assert [r.finish for r in runs] == sorted((r.finish for r in runs if r.finish is not None), reverse=True)
    assert {(r.definition_id, r.branch, r.status, r.result) for r in runs} == {(pipeline_id, "main", "completed",
                                                                                "failed")}
    first, second = builds_requests(sim)
    assert first == {"definitions": str(pipeline_id), "branchName": "refs/heads/main", "statusFilter": "completed",
                     "queryOrder": "finishTimeDescending", "maxTime": format_time(clock.now), "$top": "100",
                     "api-version": "7.1"}
    assert {k: v for k, v in second.items() if k != "continuationToken"} == first and second["continuationToken"]


def test_a_caller_that_stops_reading_requests_no_further_page(sim: SimulatorServer, empty_org: Organization,
                                                              clock: FakeClock) -> None:
    project_id, pipeline_id = setup(empty_org, clock)
    api = make_api(sim)
    for run in api.completed_builds_before(project_id, pipeline_id, "main", clock.now):
        assert run.result == "failed"
        break  # the area stops at the last success; here, at the first run
    assert len(builds_requests(sim)) == 1

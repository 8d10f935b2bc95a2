"""The deployments area end to end over HTTP: classic releases and YAML environments, exact values."""

from __future__ import annotations

import requests

from exporter.areas.deployments_classic import classic_result as classic_result_of
from exporter.azdo.records import parse_release_deployment
from exporter.metrics import catalogue as m
from exporter.simulator import environments_model as em
from exporter.simulator import release_model as rm
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, ExporterFactory, FakeClock, sample
from tests.support import H

ONLY = {"intervals": {"builds": 0, "tests": 0, "pull_requests": 0, "policies": 0, "audit": 0, "agent_pools": 0,
                      "deployments": "2m"}}


def setup(org: Organization) -> tuple[int, em.Environment, em.Environment]:
    org.add_project("Shop")
    pipeline = org.add_pipeline("Shop", "web", folder="app", default_branch="main")
    return pipeline.id, em.add_environment(org, "Shop", "production"), em.add_environment(org, "Shop", "staging")


def run(org: Organization, pipeline_id: int, finish: float) -> int:
    return org.add_run("Shop", pipeline_id, result="succeeded", queue_time=finish - 900, start_time=finish - 800,
                       finish_time=finish).id


def yaml_labels(environment: str = "production", result: str = "succeeded") -> dict[str, str]:
    return {"project": "Shop", "pipeline": "app/web", "environment": environment, "kind": "yaml", "result": result}


def dora(environment: str = "production") -> dict[str, str]:
    return {"project": "Shop", "pipeline": "app/web", "environment": environment}


def changes(server: SimulatorServer, run_id: int) -> list[float]:
    from exporter.azdo.fields import parse_time

    r = requests.get(f"{server.base_url}/Shop/_apis/build/builds/{run_id}/changes",
                     params={"api-version": "7.1"}, auth=("", PAT), timeout=5)
    return [t for t in (parse_time(c["timestamp"]) for c in r.json()["value"]) if t is not None]


def test_several_jobs_of_a_stage_are_one_deployment_and_any_failed_job_fails_it(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    pid, prod, staging = setup(empty_org)
    t = clock.now - 10 * H
    r1, r2 = run(empty_org, pid, t), run(empty_org, pid, t + H)
    for job in ("DeployWeb", "DeployApi", "Smoke"):
        em.add_record(empty_org, prod.id, r1, "Deploy_Prod", job, t + 60, finish=t + 300, result="succeeded")
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "DeployWeb", t + H + 60, finish=t + H + 300,
                  result="succeeded")
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "DeployApi", t + H + 60, finish=t + H + 200,
                  result="failed")
    em.add_record(empty_org, staging.id, r2, "Deploy_Staging", "DeployWeb", t + H + 10, finish=t + H + 50,
                  result="succeededWithIssues")
    exporter = make_exporter(sim, **ONLY)
    assert exporter.refresh_all_once() == {"deployments": None}
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels()) == 1
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels(result="failed")) == 1
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels("staging", "partially_succeeded")) == 1
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels("staging", "succeeded")) == 0
    # History loaded at start is not counted as events, but every label set exists at 0.
    assert sample(exporter, m.DEPLOYMENTS.total, **yaml_labels()) == 0
    assert sample(exporter, m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS.name,
                  **{k: v for k, v in yaml_labels().items() if k != "result"}) == t + 300


def test_retried_stage_counts_two_attempts_and_time_to_restore(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    pid, prod, _ = setup(empty_org)
    t = clock.now - 20 * H
    r1 = run(empty_org, pid, t)
    em.add_record(empty_org, prod.id, r1, "Deploy_Prod", "DeployWeb", t + 60, finish=t + 600, result="failed")
    # a second failure before the restore: the restore time runs from the first failure
    r2 = run(empty_org, pid, t + H)
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "DeployWeb", t + H + 60, finish=t + H + 600,
                  result="failed")
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "DeployWeb", t + 2 * H, finish=t + 2 * H + 900,
                  result="succeeded", stage_attempt=2)
    exporter = make_exporter(sim, **ONLY)
    assert exporter.refresh_all_once() == {"deployments": None}
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels(result="failed")) == 2
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels()) == 1
    assert sample(exporter, m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gcount, **dora()) == 1
    assert sample(exporter, m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gsum, **dora()) == \
        (t + 2 * H + 900) - (t + 600)


def test_classic_attempts_partially_succeeded_and_in_progress_counted_once_when_finished(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Shop")
    rd = rm.add_release_definition(empty_org, "Shop", "web-release", ("QA", "Prod-EU"), folder="apps")
    t = clock.now - 5 * H
    rm.add_deployment(empty_org, rd.id, "QA", t, status="partiallySucceeded", completed=t + 100, release_id=7)
    rm.add_deployment(empty_org, rd.id, "Prod-EU", t + 200, status="failed", completed=t + 300, release_id=7)
    rm.add_deployment(empty_org, rd.id, "Prod-EU", t + H, status="succeeded", completed=t + H + 400, release_id=7,
                      attempt=2)
    running = rm.add_deployment(empty_org, rd.id, "Prod-EU", clock.now - 120, release_id=8)
    exporter = make_exporter(sim, **ONLY)
    assert exporter.refresh_all_once() == {"deployments": None}

    def labels(env: str, result: str) -> dict[str, str]:
        return {"project": "Shop", "pipeline": "apps/web-release", "environment": env, "kind": "classic",
                "result": result}

    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **labels("QA", "partially_succeeded")) == 1
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **labels("Prod-EU", "failed")) == 1
    assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **labels("Prod-EU", "succeeded")) == 1
    assert sample(exporter, m.DEPLOYMENTS.total, **labels("Prod-EU", "succeeded")) == 0
    restore = {"project": "Shop", "pipeline": "apps/web-release", "environment": "Prod-EU"}
    assert sample(exporter, m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gsum, **restore) == H + 100
    # QA is not production: no DORA series for it.
    assert sample(exporter, m.DEPLOYMENT_LEAD_TIME_SECONDS.count, **{**restore, "environment": "QA"}) is None
    assert sample(exporter, m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.gcount,
                  **{**restore, "environment": "QA"}) is None

    clock.advance(60)
    assert exporter.refresh_all_once() == {"deployments": None}
    assert sample(exporter, m.DEPLOYMENTS.total, **labels("Prod-EU", "succeeded")) == 0  # still running
    rm.complete_deployment(empty_org, running.id, "succeeded", clock.now - 10)
    clock.advance(60)
    for _ in range(2):  # re-reading the watermark's overlap must not count it twice
        assert exporter.refresh_all_once() == {"deployments": None}
        assert sample(exporter, m.DEPLOYMENTS.total, **labels("Prod-EU", "succeeded")) == 1
        assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **labels("Prod-EU", "succeeded")) == 2
    queries = [r.params for r in sim.requests if r.path.endswith("/_apis/release/deployments")]
    assert {q["queryOrder"] for q in queries} == {"ascending"} and {q["$top"] for q in queries} == {"100"}


def test_yaml_in_progress_deployment_counted_once_when_every_job_finished(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    pid, prod, _ = setup(empty_org)
    exporter = make_exporter(sim, **ONLY)
    assert exporter.refresh_all_once() == {"deployments": None}
    r1 = run(empty_org, pid, clock.now - 600)
    web = em.add_record(empty_org, prod.id, r1, "Deploy_Prod", "DeployWeb", clock.now - 300)
    api = em.add_record(empty_org, prod.id, r1, "Deploy_Prod", "DeployApi", clock.now - 300)
    clock.advance(60)
    exporter.refresh_all_once()
    assert sample(exporter, m.DEPLOYMENTS.total, **yaml_labels()) == 0
    em.finish_record(empty_org, web.id, "succeeded", clock.now - 30)
    clock.advance(60)
    exporter.refresh_all_once()
    assert sample(exporter, m.DEPLOYMENTS.total, **yaml_labels()) == 0  # one job still runs
    em.finish_record(empty_org, api.id, "succeeded", clock.now - 20)
    clock.advance(60)
    for _ in range(2):
        exporter.refresh_all_once()
        assert sample(exporter, m.DEPLOYMENTS.total, **yaml_labels()) == 1
        assert sample(exporter, m.DEPLOYMENTS_WINDOW.name, **yaml_labels()) == 1
    records = [r.params for r in sim.requests if r.path.endswith("/environmentdeploymentrecords")]
    assert all("top" in q and "$top" not in q for q in records)


def test_lead_time_from_known_commit_times_and_only_for_production(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory) -> None:
    pid, prod, staging = setup(empty_org)
    t = clock.now - 30 * H
    r1, r2 = run(empty_org, pid, t), run(empty_org, pid, t + 5 * H)
    em.add_record(empty_org, prod.id, r1, "Deploy_Prod", "Deploy", t + 60, finish=t + 600, result="succeeded")
    em.add_record(empty_org, staging.id, r2, "Deploy_Staging", "Deploy", t + 5 * H + 10, finish=t + 5 * H + 50,
                  result="succeeded")
    exporter = make_exporter(sim, **ONLY)
    exporter.refresh_all_once()
    first = (t + 600) - min(changes(sim, r1))
    assert sample(exporter, m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gcount, **dora()) == 1
    assert sample(exporter, m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gsum, **dora()) == first
    assert sample(exporter, m.DEPLOYMENT_LEAD_TIME_SECONDS.count, **dora()) == 0  # history, not events
    assert sample(exporter, m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gcount, **dora("staging")) is None
    assert sample(exporter, m.DEPLOYMENT_LEAD_TIME_SECONDS.count, **dora("staging")) is None

    # Run 2 reaches production; then run 2 is deployed again (no new change: no lead time).
    clock.advance(60)
    finish = clock.now - 50
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "Deploy", finish - 300, finish=finish, result="succeeded")
    em.add_record(empty_org, prod.id, r2, "Deploy_Prod", "Deploy", finish - 20, finish=finish + 40,
                  result="succeeded", stage_attempt=2)
    sim.clear_requests()
    exporter.refresh_all_once()
    second = finish - min(changes(sim, r2))
    assert sample(exporter, m.DEPLOYMENT_LEAD_TIME_SECONDS.count, **dora()) == 1
    assert sample(exporter, m.DEPLOYMENT_LEAD_TIME_SECONDS.sum, **dora()) == second
    assert sample(exporter, m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.gsum, **dora()) == first + second
    assert sample(exporter, m.DEPLOYMENTS.total, **yaml_labels()) == 2
    # One build-changes call per run (run 1's answer is cached).
    calls = [r.path.rsplit("/_apis/", 1)[1] for r in sim.requests if r.path.endswith("/changes")]
    assert calls == [f"build/builds/{r2}/changes"] * 2  # the exporter's, then the test's own


def test_steady_state_reads_only_new_items(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                           make_exporter: ExporterFactory) -> None:
    pid, prod, staging = setup(empty_org)
    rd = rm.add_release_definition(empty_org, "Shop", "web-release", ("Prod",))
    t = clock.now - 3 * H
    for i in range(5):
        r = run(empty_org, pid, t + i * 600)
        em.add_record(empty_org, prod.id, r, "Deploy_Prod", "Deploy", t + i * 600 + 60, finish=t + i * 600 + 120,
                      result="succeeded")
        rm.add_deployment(empty_org, rd.id, "Prod", t + i * 600, status="succeeded", completed=t + i * 600 + 60,
                          build_id=r)
    exporter = make_exporter(sim, **ONLY)
    exporter.refresh_all_once()
    clock.advance(120)
    sim.clear_requests()
    assert exporter.refresh_all_once() == {"deployments": None}
    paths = sorted(r.path.split("/_apis/")[1] for r in sim.requests)
    # Release definitions, release deployments, environments, build definitions, one records page per
    # environment; no build changes (their runs are cached).
    assert paths == ["build/definitions", "distributedtask/environments",
                     f"distributedtask/environments/{prod.id}/environmentdeploymentrecords",
                     f"distributedtask/environments/{staging.id}/environmentdeploymentrecords",
                     "projects", "release/definitions", "release/deployments"]
    deployments = next(r for r in sim.requests if r.path.endswith("release/deployments"))
    assert deployments.params["minStartedTime"].startswith("2026-11-26T09:30")  # latest start minus 10 minutes


def classic_result(item: dict[str, str]) -> tuple[str | None, float | None, bool]:
    """classic_result of one release/deployments item, as the API layer parses it."""
    deployment = parse_release_deployment({"id": 1, "startedOn": "2024-03-12T10:00:00Z", **item})
    assert deployment is not None
    return classic_result_of(deployment)


def test_classic_result_reads_pascal_case_and_no_date_sentinels() -> None:
    item = {"deploymentStatus": "partiallySucceeded", "operationStatus": "PhasePartiallySucceeded",
            "queuedOn": "0001-01-01T00:00:00", "completedOn": "0001-01-01T00:00:00",
            "lastModifiedOn": "2024-03-12T10:06:40.337Z"}
    result, finish, pending = classic_result(item)
    assert (result, pending) == ("partially_succeeded", False) and finish == 1710237999.337 + 1
    assert classic_result({"deploymentStatus": "inProgress", "operationStatus": "PhaseInProgress"}) == \
        (None, None, True)
    assert classic_result({"deploymentStatus": "notDeployed", "operationStatus": "Canceled",
                           "completedOn": "2024-03-12T10:06:40Z"})[0] == "canceled"
    assert classic_result({"deploymentStatus": "notDeployed", "operationStatus": "Rejected",
                           "completedOn": "2024-03-12T10:06:40Z"}) == (None, None, False)
    assert classic_result({"deploymentStatus": "failed", "operationStatus": "PhaseFailed",
                           "completedOn": "2024-03-12T10:06:40Z"})[0] == "failed"

"""The builds area end to end over HTTP: exact metric values for hand-made histories."""

from __future__ import annotations

from exporter.metrics import catalogue as m
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import ExporterFactory, FakeClock, sample
from tests.support import DAY, H


def add_runs(org: Organization, project: str, pipeline_id: int, branch: str, results: list[str],
             first_finish: float, spacing: float = H, tests: tuple[int, int, int] | None = None) -> list[int]:
    ids = []
    for i, result in enumerate(results):
        finish = first_finish + i * spacing
        run = org.add_run(project, pipeline_id, branch=branch, result=result, queue_time=finish - 700,
                          start_time=finish - 600, finish_time=finish, tests=tests)
        ids.append(run.id)
    return ids


def labels(branch: str = "main", pipeline: str = "infra/deploy-api") -> dict[str, str]:
    return {"project": "Payments", "pipeline": pipeline, "branch": branch}


def test_broken_branch_and_its_metrics(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                       make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                               repository="payments", has_tests=True)
    start = clock.now - 10 * H
    add_runs(empty_org, "Payments", p.id, "main", ["succeeded", "failed", "canceled", "failed"], start,
             tests=(10, 2, 1))
    exporter = make_exporter(sim)
    assert exporter.refresh_all_once()["builds"] is None
    main = labels()
    assert sample(exporter, m.PIPELINE_INFO.name, project="Payments", pipeline="infra/deploy-api",
                  pipeline_id=str(p.id), repository="payments", default_branch="main") == 1
    assert sample(exporter, m.PIPELINE_BROKEN.name, **main) == 1
    assert sample(exporter, m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, **main) == start + H
    assert sample(exporter, m.PIPELINE_BROKEN_DURATION_SECONDS.name, **main) == clock.now - (start + H)
    assert sample(exporter, m.PIPELINE_CONSECUTIVE_FAILURES.name, **main) == 2
    assert sample(exporter, m.PIPELINE_LAST_RUN_RESULT.name, **main, result="failed") == 1
    assert sample(exporter, m.PIPELINE_LAST_RUN_RESULT.name, **main, result="succeeded") == 0
    assert sample(exporter, m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS.name, **main) == start + 3 * H
    assert sample(exporter, m.PIPELINE_LAST_RUN_DURATION_SECONDS.name, **main) == 600
    assert sample(exporter, m.PIPELINE_WINDOW_RUNS.name, **main, result="failed") == 2
    assert sample(exporter, m.PIPELINE_WINDOW_RUNS.name, **main, result="canceled") == 1
    assert sample(exporter, m.PIPELINE_WINDOW_RUNS.name, **main, result="succeeded") == 1
    # Counters count runs seen since start: the initial window load is history, not events.
    assert sample(exporter, m.PIPELINE_RUNS.total, **main, result="failed") == 0
    assert sample(exporter, m.PIPELINE_HAS_TESTS.name, **main) == 1
    assert sample(exporter, m.PIPELINE_LAST_RUN_TESTS.name, **main, outcome="failed") == 2
    assert sample(exporter, m.PIPELINE_LAST_RUN_TESTS.name, **main, outcome="passed") == 10


def test_fix_after_start_counts_runs_and_time_to_fix_once(sim: SimulatorServer, empty_org: Organization,
                                                          clock: FakeClock, make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                               repository="payments", has_tests=True)
    start = clock.now - 5 * H
    add_runs(empty_org, "Payments", p.id, "main", ["succeeded", "failed"], start, tests=(5, 1, 0))
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    main = labels()
    clock.advance(2 * H)
    add_runs(empty_org, "Payments", p.id, "main", ["succeeded"], clock.now - 60, tests=(6, 0, 0))
    exporter.refresh_all_once()
    exporter.refresh_all_once()  # the watermark overlap re-reads the run: it must not count twice
    assert sample(exporter, m.PIPELINE_BROKEN.name, **main) == 0
    assert sample(exporter, m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, **main) is None
    assert sample(exporter, m.PIPELINE_CONSECUTIVE_FAILURES.name, **main) == 0
    assert sample(exporter, m.PIPELINE_RUNS.total, **main, result="succeeded") == 1
    assert sample(exporter, m.PIPELINE_RUNS.total, **main, result="failed") == 0
    assert sample(exporter, m.PIPELINE_TESTS.total, **main, outcome="passed") == 6
    broken_for = (clock.now - 60) - (start + H)
    assert sample(exporter, m.PIPELINE_TIME_TO_FIX_SECONDS.count, **main) == 1
    assert sample(exporter, m.PIPELINE_TIME_TO_FIX_SECONDS.sum, **main) == broken_for
    assert sample(exporter, m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.gcount, **main) == 1
    assert sample(exporter, m.PIPELINE_RUN_DURATION_SECONDS.count, project="Payments",
                  pipeline="infra/deploy-api") == 1
    assert sample(exporter, m.PIPELINE_QUEUE_DURATION_SECONDS.sum, project="Payments",
                  pipeline="infra/deploy-api") == 100


def test_last_success_before_the_window_is_asked_for_once(sim: SimulatorServer, empty_org: Organization,
                                                          clock: FakeClock, make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Platform")
    p = empty_org.add_pipeline("Platform", "core-ci", default_branch="main", repository="core", has_tests=False)
    last_success = clock.now - 40 * DAY
    add_runs(empty_org, "Platform", p.id, "main", ["succeeded"], last_success)
    add_runs(empty_org, "Platform", p.id, "main", ["failed"] * 6, clock.now - 35 * DAY, spacing=2 * DAY)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    main = {"project": "Platform", "pipeline": "core-ci", "branch": "main"}
    assert sample(exporter, m.PIPELINE_BROKEN.name, **main) == 1
    # Broken since the first failure after the last success, which lies before the 30-day window.
    assert sample(exporter, m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, **main) == clock.now - 35 * DAY
    assert sample(exporter, m.PIPELINE_CONSECUTIVE_FAILURES.name, **main) == 6
    assert sample(exporter, m.PIPELINE_WINDOW_RUNS.name, **main, result="failed") == 3
    lookups = [r.params for r in sim.requests if r.path.endswith("/build/builds") and "maxTime" in r.params]
    assert len(lookups) == 1
    lookup = lookups[0]
    assert lookup["definitions"] == str(p.id)
    assert lookup["branchName"] == "refs/heads/main"
    assert lookup["statusFilter"] == "completed"
    assert lookup["queryOrder"] == "finishTimeDescending"
    # A second cycle does not ask again.
    sim.clear_requests()
    exporter.refresh_all_once()
    assert not [r for r in sim.requests if "maxTime" in r.params]


def test_never_succeeded_branch(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Platform")
    p = empty_org.add_pipeline("Platform", "legacy-nightly", folder="tools", default_branch="main",
                               repository="legacy", has_tests=False)
    first = clock.now - 40 * DAY
    add_runs(empty_org, "Platform", p.id, "main", ["failed"] * 20, first, spacing=2 * DAY)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    main = {"project": "Platform", "pipeline": "tools/legacy-nightly", "branch": "main"}
    assert sample(exporter, m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, **main) == first
    assert sample(exporter, m.PIPELINE_CONSECUTIVE_FAILURES.name, **main) == 20
    assert sample(exporter, m.PIPELINE_HAS_TESTS.name, **main) == 0


def test_partially_succeeded_default_and_configured(sim: SimulatorServer, empty_org: Organization,
                                                    clock: FakeClock, make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "app-ci", folder="mobile", default_branch="main",
                               repository="app", has_tests=False)
    add_runs(empty_org, "Payments", p.id, "main", ["succeeded", "partiallySucceeded"], clock.now - 3 * H)
    main = labels(pipeline="mobile/app-ci")
    default = make_exporter(sim)
    default.refresh_all_once()
    assert sample(default, m.PIPELINE_BROKEN.name, **main) == 0
    assert sample(default, m.PIPELINE_LAST_RUN_RESULT.name, **main, result="partially_succeeded") == 1
    strict = make_exporter(sim, broken_results=["failed", "partiallySucceeded"])
    strict.refresh_all_once()
    assert sample(strict, m.PIPELINE_BROKEN.name, **main) == 1
    assert sample(strict, m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.name, **main) == clock.now - 2 * H


def test_in_progress_and_queued_runs(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                     make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                               repository="payments", has_tests=False)
    add_runs(empty_org, "Payments", p.id, "main", ["succeeded"], clock.now - H)
    running = empty_org.add_run("Payments", p.id, branch="main", result=None, queue_time=clock.now - 300,
                                start_time=clock.now - 200, finish_time=None)
    empty_org.add_run("Payments", p.id, branch="refs/pull/7/merge", result=None, queue_time=clock.now - 100,
                      start_time=None, finish_time=None)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    pl = {"project": "Payments", "pipeline": "infra/deploy-api"}
    assert sample(exporter, m.PIPELINE_RUNS_IN_PROGRESS.name, **pl) == 1
    assert sample(exporter, m.PIPELINE_RUNS_QUEUED.name, **pl) == 1
    # The in-progress run is not a completed run: the latest result is still the success.
    assert sample(exporter, m.PIPELINE_LAST_RUN_RESULT.name, **labels(), result="succeeded") == 1
    empty_org.complete_run(running.id, "failed", clock.now - 10)
    clock.advance(30)
    exporter.refresh_all_once()
    assert sample(exporter, m.PIPELINE_RUNS_IN_PROGRESS.name, **pl) == 0
    assert sample(exporter, m.PIPELINE_BROKEN.name, **labels()) == 1
    assert sample(exporter, m.PIPELINE_RUNS.total, **labels(), result="failed") == 1


def test_pull_request_and_untracked_branches_never_become_series(sim: SimulatorServer, empty_org: Organization,
                                                                 clock: FakeClock,
                                                                 make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "payments-ci", default_branch="main", repository="payments",
                               has_tests=False)
    for branch in ("main", "release/2026.11", "refs/pull/42/merge", "feature/x", "refs/tags/v1"):
        add_runs(empty_org, "Payments", p.id, branch, ["failed"], clock.now - H)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    branches = {s.labels["branch"] for fam in exporter.registry.collect() if fam.name == m.PIPELINE_BROKEN.name
                for s in fam.samples}
    assert branches == {"main", "release/2026.11"}


def test_deleted_pipeline_and_removed_project_leave_at_next_refresh(sim: SimulatorServer, empty_org: Organization,
                                                                    clock: FakeClock,
                                                                    make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    empty_org.add_project("Platform")
    a = empty_org.add_pipeline("Payments", "a", default_branch="main", repository="r", has_tests=False)
    b = empty_org.add_pipeline("Payments", "b", default_branch="main", repository="r", has_tests=False)
    c = empty_org.add_pipeline("Platform", "c", default_branch="main", repository="r", has_tests=False)
    for project, pipeline in (("Payments", a), ("Payments", b), ("Platform", c)):
        add_runs(empty_org, project, pipeline.id, "main", ["succeeded"], clock.now - H)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    assert sample(exporter, m.PIPELINE_BROKEN.name, project="Payments", pipeline="b", branch="main") == 0
    empty_org.delete_pipeline("Payments", b.id)
    empty_org.remove_project("Platform")
    clock.advance(60)
    exporter.refresh_all_once()
    text = "\n".join(f"{s.name}{s.labels}" for fam in exporter.registry.collect() for s in fam.samples)
    assert "'pipeline': 'b'" not in text
    assert "Platform" not in text
    assert sample(exporter, m.PIPELINE_BROKEN.name, project="Payments", pipeline="a", branch="main") == 0


def test_filtered_pipelines_are_not_exported(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                             make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    keep = empty_org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                                  repository="r", has_tests=False)
    drop = empty_org.add_pipeline("Payments", "sandbox", folder="experiments", default_branch="main",
                                  repository="r", has_tests=False)
    for pipeline in (keep, drop):
        add_runs(empty_org, "Payments", pipeline.id, "main", ["failed"], clock.now - H)
    exporter = make_exporter(sim, pipelines={"include": ["*"], "exclude": ["experiments/*"]})
    exporter.refresh_all_once()
    assert sample(exporter, m.PIPELINE_BROKEN.name, **labels()) == 1
    assert sample(exporter, m.PIPELINE_BROKEN.name, **labels(pipeline="experiments/sandbox")) is None


def test_one_failing_project_keeps_its_last_numbers_and_others_refresh(sim: SimulatorServer,
                                                                       empty_org: Organization, clock: FakeClock,
                                                                       make_exporter: ExporterFactory) -> None:
    from exporter.simulator.server import Fault

    empty_org.add_project("Payments")
    platform = empty_org.add_project("Platform")
    a = empty_org.add_pipeline("Payments", "a", default_branch="main", repository="r", has_tests=False)
    c = empty_org.add_pipeline("Platform", "c", default_branch="main", repository="r", has_tests=False)
    add_runs(empty_org, "Payments", a.id, "main", ["succeeded"], clock.now - H)
    add_runs(empty_org, "Platform", c.id, "main", ["succeeded"], clock.now - H)
    exporter = make_exporter(sim)
    exporter.refresh_all_once()
    sim.faults.add(Fault(kind="status", status=500, path=rf"/{platform.id}/_apis/build/"))
    add_runs(empty_org, "Payments", a.id, "main", ["failed"], clock.now + 10)
    add_runs(empty_org, "Platform", c.id, "main", ["failed"], clock.now + 10)
    clock.advance(60)
    errors = exporter.refresh_all_once()
    assert errors["builds"] and "Platform" in str(errors["builds"])
    assert sample(exporter, m.PIPELINE_BROKEN.name, project="Payments", pipeline="a", branch="main") == 1
    assert sample(exporter, m.PIPELINE_BROKEN.name, project="Platform", pipeline="c", branch="main") == 0
    assert sample(exporter, m.EXPORTER_REFRESH_SUCCESS.name, collector="builds") == 0
    assert sample(exporter, m.EXPORTER_REFRESH_ERRORS.total, collector="builds", reason="http_5xx") == 1
    sim.faults.clear()
    clock.advance(60)
    assert exporter.refresh_all_once()["builds"] is None
    assert sample(exporter, m.PIPELINE_BROKEN.name, project="Platform", pipeline="c", branch="main") == 1
    assert sample(exporter, m.PIPELINE_RUNS.total, project="Platform", pipeline="c", branch="main",
                  result="failed") == 1


def test_a_project_deleted_during_its_refresh_leaves_without_failing_it(
        sim: SimulatorServer, empty_org: Organization, make_exporter: ExporterFactory, monkeypatch: object) -> None:
    """The fault soak found this: a project deleted after its definitions were read answers 404 (TF200016)
    on its builds listing; that means "gone", not a failed refresh."""
    import pytest

    from exporter.azdo.client import AzureDevOpsClient

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    for name in ("Alpha", "Beta"):
        empty_org.add_project(name)
        empty_org.add_pipeline(name, "ci", repository=name)
    exporter = make_exporter(sim, intervals={"builds": "60s", "tests": 0, "pull_requests": 0, "policies": 0,
                                             "deployments": 0, "agent_pools": 0, "audit": 0})
    assert exporter.refresh_all_once() == {"builds": None}
    beta = empty_org.project("Beta")
    assert beta is not None
    original = AzureDevOpsClient.pages_by_token

    def pages(self: AzureDevOpsClient, endpoint: str, url: str, *args: object, **kwargs: object) -> object:
        yield from original(self, endpoint, url, *args, **kwargs)  # type: ignore[arg-type]
        if endpoint == "definitions" and beta.id in url and empty_org.project("Beta") is not None:
            empty_org.remove_project("Beta")  # deleted between its definitions and its builds listing

    monkeypatch.setattr(AzureDevOpsClient, "pages_by_token", pages)
    assert exporter.refresh_all_once() == {"builds": None}
    assert sample(exporter, m.EXPORTER_REFRESH_ERRORS.total, collector="builds", reason="http_4xx") == 0
    assert not [s for fam in exporter.registry.collect() for s in fam.samples if s.labels.get("project") == "Beta"]

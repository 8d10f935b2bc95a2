"""The pull-requests area end to end over HTTP: every review case, window vs since-start, steady-state cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.areas import pull_requests
from exporter.azdo.fields import format_time
from exporter.azdo.records import parse_pull_request
from exporter.metrics import catalogue as m
from exporter.simulator.git_model import (
    APPROVED,
    APPROVED_WITH_SUGGESTIONS,
    NO_VOTE,
    REJECTED,
    WAITING,
    Reviewer,
    add_pull_request,
    add_repository,
    team_of,
)
from exporter.simulator.model import PEOPLE, Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, ExporterFactory, FakeClock, sample
from tests.support import DAY, H

ALICE, BOB, CAROL, DAN = PEOPLE[0], PEOPLE[1], PEOPLE[2], PEOPLE[3]
AREAS = ("builds", "tests", "pull_requests", "policies", "deployments", "agent_pools", "audit")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPOSITORIES = ("peer-approval", "suggestions", "self-approval", "group-only", "voted-for-group", "reject-and-approve",
                "waiting-only", "no-reviewers", "abandoned", "bypass")


def only(area: str, interval: str = "30s") -> dict[str, Any]:
    """Settings that enable one area alone, so request counts and results are that area's."""
    return {"intervals": {a: (interval if a == area else 0) for a in AREAS}}


def labels(repository: str, branch: str = "main", project: str = "Payments") -> dict[str, str]:
    return {"project": project, "repository": repository, "target_branch": branch}


def completed(exporter: Any, repository: str, reviewed: str, name: str = m.PULL_REQUESTS_COMPLETED.total,
              branch: str = "main") -> float | None:
    return sample(exporter, name, **labels(repository, branch), reviewed=reviewed)


# (repository, reviewers, expected reviewed flag or None when it counts nowhere, status)
def review_cases(org: Organization) -> list[Case]:
    team = team_of(org, org._require_project("Payments"))
    return [
        ("peer-approval", (Reviewer(BOB, APPROVED),), "true", "completed"),
        ("suggestions", (Reviewer(BOB, APPROVED_WITH_SUGGESTIONS),), "true", "completed"),
        ("self-approval", (Reviewer(ALICE, APPROVED),), "false", "completed"),
        ("group-only", (Reviewer(team, APPROVED, is_container=True, is_required=True), Reviewer(BOB, NO_VOTE)),
         "false", "completed"),
        ("voted-for-group", (Reviewer(team, APPROVED, is_container=True), Reviewer(CAROL, APPROVED, voted_for=(team,))),
         "true", "completed"),
        ("reject-and-approve", (Reviewer(CAROL, REJECTED), Reviewer(DAN, APPROVED)), "true", "completed"),
        ("waiting-only", (Reviewer(BOB, WAITING), Reviewer(ALICE, APPROVED)), "false", "completed"),
        ("no-reviewers", (), "false", "completed"),
        ("abandoned", (Reviewer(BOB, APPROVED),), None, "abandoned"),
    ]


Case = tuple[str, tuple[Reviewer, ...], str | None, str]


def setup_cases(org: Organization, created: float, closed: float) -> list[Case]:
    cases = review_cases(org)
    for repo, reviewers, _, status in cases:
        add_pull_request(org, "Payments", repo, created_by=ALICE, creation=created, status=status, closed=closed,
                         reviewers=reviewers)
    return cases


@pytest.fixture
def payments(empty_org: Organization) -> Organization:
    empty_org.add_project("Payments")
    for repo in REPOSITORIES:
        add_repository(empty_org, "Payments", repo)
    return empty_org


def test_each_review_case_after_start_counts_once(sim: SimulatorServer, payments: Organization, clock: FakeClock,
                                                  make_exporter: ExporterFactory) -> None:
    exporter = make_exporter(sim, **only("pull_requests"))
    assert exporter.refresh_all_once() == {"pull_requests": None}
    clock.advance(300)
    cases = setup_cases(payments, clock.now - 2 * H, clock.now - 60)
    add_pull_request(payments, "Payments", "bypass", created_by=ALICE, creation=clock.now - H, status="completed",
                     closed=clock.now - 30, reviewers=(Reviewer(ALICE, APPROVED),), bypass=True,
                     bypass_reason="hotfix")
    assert exporter.refresh_all_once() == {"pull_requests": None}
    clock.advance(300)
    assert exporter.refresh_all_once() == {"pull_requests": None}  # the overlap re-reads them: no double count
    for repo, _, flag, _ in cases:
        for value in ("true", "false"):
            expected = 1 if value == flag else 0
            assert completed(exporter, repo, value) == expected, (repo, value)
            assert completed(exporter, repo, value, m.PULL_REQUESTS_WINDOW_COMPLETED.name) == expected, (repo, value)
    # Abandoned pull requests count nowhere, not even as unreviewed.
    assert completed(exporter, "abandoned", "true") == 0 and completed(exporter, "abandoned", "false") == 0
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.count, project="Payments",
                  repository="abandoned") == 0
    # Bypassed: completed (self-approved, so not reviewed) and counted as a bypass.
    assert completed(exporter, "bypass", "false") == 1
    assert sample(exporter, m.PULL_REQUESTS_BYPASSED.total, **labels("bypass")) == 1
    assert sample(exporter, m.PULL_REQUESTS_WINDOW_BYPASSED.name, **labels("bypass")) == 1
    assert sample(exporter, m.PULL_REQUESTS_BYPASSED.total, **labels("peer-approval")) == 0
    # Time to merge: created 2 h before the first refresh + 300 s, closed 60 s before it.
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.count, project="Payments",
                  repository="peer-approval") == 1
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.sum, project="Payments",
                  repository="peer-approval") == 2 * H - 60
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.bucket, project="Payments",
                  repository="peer-approval", le="7200.0") == 1


def test_history_fills_the_window_not_the_counters(sim: SimulatorServer, payments: Organization, clock: FakeClock,
                                                   make_exporter: ExporterFactory) -> None:
    cases = setup_cases(payments, clock.now - 3 * DAY, clock.now - 2 * DAY)
    # Completed outside the 30-day window: counts nowhere.
    add_pull_request(payments, "Payments", "peer-approval", created_by=ALICE, creation=clock.now - 41 * DAY,
                     status="completed", closed=clock.now - 40 * DAY, reviewers=(Reviewer(BOB, APPROVED),))
    exporter = make_exporter(sim, **only("pull_requests"))
    assert exporter.refresh_all_once() == {"pull_requests": None}
    for repo, _, flag, _ in cases:
        for value in ("true", "false"):
            assert completed(exporter, repo, value, m.PULL_REQUESTS_WINDOW_COMPLETED.name) == \
                (1 if value == flag else 0), (repo, value)
            assert completed(exporter, repo, value) == 0  # history is not an event
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.count, project="Payments",
                  repository="peer-approval") == 0
    # The window moves on: 29 days later those pull requests have left it.
    clock.advance(29 * DAY)
    assert exporter.refresh_all_once() == {"pull_requests": None}
    assert completed(exporter, "peer-approval", "true", m.PULL_REQUESTS_WINDOW_COMPLETED.name) == 0
    assert completed(exporter, "peer-approval", "true") == 0


def test_open_and_draft_pull_requests_and_untracked_targets(sim: SimulatorServer, payments: Organization,
                                                            clock: FakeClock, make_exporter: ExporterFactory) -> None:
    add_repository(payments, "Payments", "legacy", default_branch="master")
    add_pull_request(payments, "Payments", "legacy", created_by=ALICE, creation=clock.now - H, target="master")
    add_pull_request(payments, "Payments", "legacy", created_by=BOB, creation=clock.now - H, target="master",
                     is_draft=True)
    add_pull_request(payments, "Payments", "legacy", created_by=BOB, creation=clock.now - H, target="release/1.0")
    add_pull_request(payments, "Payments", "legacy", created_by=BOB, creation=clock.now - H, target="feature/x")
    add_pull_request(payments, "Payments", "legacy", created_by=BOB, creation=clock.now - 2 * H, target="master",
                     status="abandoned", closed=clock.now - H)
    exporter = make_exporter(sim, **only("pull_requests"))
    assert exporter.refresh_all_once() == {"pull_requests": None}
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("legacy", "master")) == 2
    assert sample(exporter, m.PULL_REQUESTS_OPEN_DRAFT.name, **labels("legacy", "master")) == 1
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("legacy", "release/1.0")) == 1
    # feature/x is not a tracked branch (default branch + `branches` patterns): no series.
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("legacy", "feature/x")) is None
    # A repository without pull requests still has its default branch at 0.
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("suggestions")) == 0
    assert completed(exporter, "suggestions", "false") == 0


def test_repository_filter_and_deleted_repository(sim: SimulatorServer, payments: Organization, clock: FakeClock,
                                                  make_exporter: ExporterFactory) -> None:
    add_pull_request(payments, "Payments", "bypass", created_by=ALICE, creation=clock.now - H)
    exporter = make_exporter(sim, repositories={"include": ["*"], "exclude": ["peer-*"]}, **only("pull_requests"))
    assert exporter.refresh_all_once() == {"pull_requests": None}
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("peer-approval")) is None
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("bypass")) == 1
    from exporter.simulator.git_model import remove_repository

    remove_repository(payments, "Payments", "bypass")
    assert exporter.refresh_all_once() == {"pull_requests": None}
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("bypass")) is None
    assert sample(exporter, m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.count, project="Payments",
                  repository="bypass") is None


def test_steady_state_reads_only_newly_closed_pull_requests(clock: FakeClock, make_exporter: ExporterFactory) -> None:
    org = Organization.empty(now_fn=clock, anchor=clock.now)
    for project in ("Alpha", "Beta"):
        org.add_project(project)
        for n in range(5):
            add_repository(org, project, f"repo-{n}")
            for i in range(30):  # lots of history: a steady cycle must not read it again
                add_pull_request(org, project, f"repo-{n}", created_by=ALICE, creation=clock.now - (i + 2) * DAY,
                                 status="completed", closed=clock.now - (i + 1) * DAY,
                                 reviewers=(Reviewer(BOB, APPROVED),))
            add_pull_request(org, project, f"repo-{n}", created_by=ALICE, creation=clock.now - H)
    with SimulatorServer(org, pat=PAT) as server:
        exporter = make_exporter(server, **only("pull_requests", "5m"))
        assert exporter.refresh_all_once() == {"pull_requests": None}
        first = clock.now
        clock.advance(300)
        for project in ("Alpha", "Beta"):
            add_pull_request(org, project, "repo-0", created_by=ALICE, creation=clock.now - H, status="completed",
                             closed=clock.now - 10, reviewers=())
        server.clear_requests()
        assert exporter.refresh_all_once() == {"pull_requests": None}
        prs = [r for r in server.requests if r.path.endswith("/_apis/git/pullrequests")]
        repos = [r for r in server.requests if r.path.endswith("/_apis/git/repositories")]
        assert len(repos) == 2 and len(prs) == 4  # per project: one completed-since page, one active page
        closed_queries = [r.params for r in prs if r.params.get("searchCriteria.status") == "completed"]
        assert len(closed_queries) == 2
        for params in closed_queries:
            assert params == {"searchCriteria.status": "completed", "searchCriteria.queryTimeRangeType": "closed",
                              "searchCriteria.minTime": format_time(first - 600), "$top": "100", "$skip": "0",
                              "api-version": "7.1"}
        active = [r.params for r in prs if r.params.get("searchCriteria.status") == "active"]
        assert active == [{"searchCriteria.status": "active", "$top": "100", "$skip": "0", "api-version": "7.1"}] * 2
        # Everything else: one projects listing.
        assert len(server.requests) == 1 + 2 * 3
        for project in ("Alpha", "Beta"):
            assert sample(exporter, m.PULL_REQUESTS_COMPLETED.total, project=project, repository="repo-0",
                          target_branch="main", reviewed="false") == 1
            assert sample(exporter, m.PULL_REQUESTS_WINDOW_COMPLETED.name, project=project, repository="repo-1",
                          target_branch="main", reviewed="true") == 29  # closed 1..29 days ago (30 is outside)
            assert sample(exporter, m.PULL_REQUESTS_OPEN.name, project=project, repository="repo-3",
                          target_branch="main") == 1


def test_a_failed_project_keeps_its_numbers(sim: SimulatorServer, payments: Organization, clock: FakeClock,
                                            make_exporter: ExporterFactory) -> None:
    from exporter.simulator.server import Fault

    payments.add_project("Other")
    add_repository(payments, "Other", "tools")
    add_pull_request(payments, "Payments", "suggestions", created_by=ALICE, creation=clock.now - H)
    exporter = make_exporter(sim, **only("pull_requests"))
    assert exporter.refresh_all_once() == {"pull_requests": None}
    add_pull_request(payments, "Other", "tools", created_by=ALICE, creation=clock.now - H)
    project_id = payments.project("Payments").id  # type: ignore[union-attr]
    sim.faults.add(Fault(kind="status", status=500, path=rf"/{project_id}/_apis/git/pullrequests"))
    errors = exporter.refresh_all_once()
    assert errors["pull_requests"] is not None and "Payments" in errors["pull_requests"]
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("suggestions")) == 1  # last good number
    assert sample(exporter, m.PULL_REQUESTS_OPEN.name, **labels("tools", project="Other")) == 1
    assert sample(exporter, m.EXPORTER_REFRESH_ERRORS.total, collector="pull_requests", reason="http_5xx") == 1


def is_reviewed(item: dict[str, Any]) -> bool:
    pull_request = parse_pull_request(item)
    assert pull_request is not None
    return pull_requests.is_reviewed(pull_request)


def is_bypassed(item: dict[str, Any]) -> bool:
    pull_request = parse_pull_request(item)
    assert pull_request is not None
    return pull_requests.is_bypassed(pull_request)


def _payload_values(name: str) -> list[dict[str, Any]]:
    data = json.loads((EXAMPLES / name).read_text(encoding="utf-8-sig"))
    return list(data["responses"]["200"]["body"]["value"])


def test_official_example_is_a_self_approval() -> None:
    (pr,) = _payload_values("official_pullrequests_status_completed.json")
    assert not is_reviewed(pr) and not is_bypassed(pr)


def test_reconstructed_example_group_vote_and_bypass() -> None:
    peer_and_group, self_bypass = _payload_values("reconstructed_pullrequests_closed.json")
    assert is_reviewed(peer_and_group) and not is_bypassed(peer_and_group)
    assert not is_reviewed(self_bypass) and is_bypassed(self_bypass)

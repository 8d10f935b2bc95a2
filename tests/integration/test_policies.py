"""The policies area: scope matching the way Azure DevOps applies policies, exact gauge values over HTTP."""

from __future__ import annotations

import pytest

from exporter.areas.policies import Policy, parse_policy
from exporter.azdo.records import PolicyScope as Scope
from exporter.azdo.records import Repository
from exporter.metrics import catalogue as m
from exporter.simulator.git_model import add_repository
from exporter.simulator.model import Organization
from exporter.simulator.policy_model import (
    BUILD,
    COMMENT_REQUIREMENTS,
    MERGE_STRATEGY,
    MINIMUM_REVIEWERS,
    REQUIRED_REVIEWERS,
    WORK_ITEM_LINKING,
    add_policy,
    scope,
)
from exporter.simulator.server import SimulatorServer
from tests.conftest import ExporterFactory, sample
from tests.integration.test_pull_requests import only

API = Repository("aaaa", "api", "main")
WEB = Repository("bbbb", "web", "develop")


@pytest.mark.parametrize(("entry", "repository", "branch", "applies"), [
    # repository-wide: one repository, every branch
    (Scope("aaaa", None, "exact"), API, "main", True),
    (Scope("aaaa", None, "exact"), API, "feature/x", True),
    (Scope("aaaa", None, "exact"), WEB, "develop", False),
    # all repositories of the project
    (Scope(None, "refs/heads/main", "exact"), API, "main", True),
    (Scope(None, "refs/heads/main", "exact"), WEB, "main", True),
    # exact ref (case-insensitive, as Azure DevOps branch names are)
    (Scope("aaaa", "refs/heads/main", "exact"), API, "main", True),
    (Scope("aaaa", "refs/heads/Main", "exact"), API, "main", True),
    (Scope("aaaa", "refs/heads/main", "exact"), API, "main-old", False),
    # prefix
    (Scope(None, "refs/heads/release/", "prefix"), API, "release/1.0", True),
    (Scope(None, "refs/heads/release/", "prefix"), API, "main", False),
    (Scope(None, "refs/heads/ma", "prefix"), API, "main", True),
    # the repository's default branch, whatever its name
    (Scope(None, None, "defaultbranch"), WEB, "develop", True),
    (Scope(None, None, "defaultbranch"), WEB, "main", False),
    (Scope(None, None, "defaultbranch"), Repository("cccc", "empty", None), "main", False),
])
def test_scope_matching(entry: Scope, repository: Repository, branch: str, applies: bool) -> None:
    assert entry.applies(repository, branch) is applies


def test_only_enabled_blocking_live_policies_count() -> None:
    base = {"type": {"id": MINIMUM_REVIEWERS}, "settings": {"minimumApproverCount": 2, "scope": [
        {"repositoryId": None, "refName": "refs/heads/main", "matchKind": "Exact"}]}}
    assert parse_policy({**base, "isEnabled": True, "isBlocking": True}).counts
    assert not parse_policy({**base, "isEnabled": False, "isBlocking": True}).counts
    assert not parse_policy({**base, "isEnabled": True, "isBlocking": False}).counts
    assert not parse_policy({**base, "isEnabled": True, "isBlocking": True, "isDeleted": True}).counts
    by_name = parse_policy({"type": {"id": "0000", "displayName": "Minimum approval count"}, "isEnabled": True,
                            "isBlocking": True, "settings": {"minimumApproverCount": 3}})
    assert by_name == Policy("minimum_reviewers", True, 3, ())


def policy_labels(repository: str, branch: str) -> dict[str, str]:
    return {"project": "Payments", "repository": repository, "branch": branch}


def enabled(exporter: object, repository: str, branch: str, policy: str) -> float | None:
    return sample(exporter, m.BRANCH_POLICY_ENABLED.name, **policy_labels(repository, branch), policy=policy)  # type: ignore[arg-type]


def test_policies_per_repository_and_branch(sim: SimulatorServer, empty_org: Organization,
                                            make_exporter: ExporterFactory) -> None:
    org = empty_org
    org.add_project("Payments")
    for name, default in (("api", "main"), ("web", "develop"), ("legacy", "master"), ("docs", "main")):
        add_repository(org, "Payments", name, default_branch=default)
    add_repository(org, "Payments", "empty", default_branch=None)
    add_repository(org, "Payments", "old", is_disabled=True)
    # web and docs, their default branch: 1 reviewer
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "web", None, "DefaultBranch"),
                                                    scope(org, "Payments", "docs", None, "DefaultBranch")],
               settings={"minimumApproverCount": 1})
    # api main: 2 (the largest applying count wins); master of api is named exactly, so it is tracked
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "api", "main"),
                                                    scope(org, "Payments", "api", "master")],
               settings={"minimumApproverCount": 2})
    # disabled, non-blocking and deleted ones count nowhere
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "api", "main")], is_enabled=False,
               settings={"minimumApproverCount": 5})
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "api", "main")], is_blocking=False,
               settings={"minimumApproverCount": 6})
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "api", "main")], is_deleted=True,
               settings={"minimumApproverCount": 7})
    # legacy: only a disabled reviewer policy -> a repository without a reviewer policy
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "legacy", "master")], is_enabled=False,
               settings={"minimumApproverCount": 2})
    add_policy(org, "Payments", BUILD, [scope(org, "Payments", "api", "ma", "Prefix")],
               settings={"buildDefinitionId": 1})
    add_policy(org, "Payments", COMMENT_REQUIREMENTS, [scope(org, "Payments", "web")])  # repository-wide
    add_policy(org, "Payments", WORK_ITEM_LINKING, [scope(org, "Payments", None, "main")], is_blocking=False)
    add_policy(org, "Payments", REQUIRED_REVIEWERS, [scope(org, "Payments", None, "main")],
               settings={"requiredReviewerIds": ["x"], "minimumApproverCount": 1})
    add_policy(org, "Payments", MERGE_STRATEGY, [scope(org, "Payments", "docs", "main")],
               settings={"useSquashMerge": True})
    exporter = make_exporter(sim, **only("policies"))
    assert exporter.refresh_all_once() == {"policies": None}

    def min_reviewers(repository: str, branch: str) -> float | None:
        return sample(exporter, m.BRANCH_POLICY_MIN_REVIEWERS.name, **policy_labels(repository, branch))

    assert min_reviewers("api", "main") == 2
    assert min_reviewers("api", "master") == 2
    assert min_reviewers("web", "develop") == 1
    assert min_reviewers("legacy", "master") == 0
    assert min_reviewers("docs", "main") == 1
    # Not tracked: an empty repository has no default branch; a disabled repository is skipped; `master`
    # is configured but no policy names it for web, so it may not exist.
    assert min_reviewers("empty", "main") is None
    assert min_reviewers("old", "main") is None
    assert min_reviewers("web", "master") is None
    assert enabled(exporter, "api", "main", "build_validation") == 1  # prefix refs/heads/ma
    assert enabled(exporter, "api", "master", "build_validation") == 1
    assert enabled(exporter, "web", "develop", "comment_resolution") == 1
    assert enabled(exporter, "api", "main", "comment_resolution") == 0
    assert enabled(exporter, "api", "main", "work_item_linking") == 0  # not blocking
    assert enabled(exporter, "api", "main", "required_reviewers") == 1
    assert enabled(exporter, "web", "develop", "required_reviewers") == 0
    assert enabled(exporter, "docs", "main", "merge_strategy") == 1
    assert enabled(exporter, "legacy", "master", "minimum_reviewers") == 0
    for policy in ("minimum_reviewers", "build_validation", "comment_resolution", "work_item_linking",
                   "merge_strategy"):
        assert enabled(exporter, "legacy", "master", policy) == 0
    assert enabled(exporter, "legacy", "master", "required_reviewers") == 0  # all repositories, but main only
    requests = [r for r in sim.requests if r.path.endswith("/_apis/policy/configurations")]
    assert len(requests) == 1 and requests[0].params["api-version"] == "7.1"


def test_policy_paging_follows_the_continuation_header(sim: SimulatorServer, empty_org: Organization,
                                                       make_exporter: ExporterFactory) -> None:
    empty_org.add_project("Payments")
    add_repository(empty_org, "Payments", "api")
    for n in range(150):
        add_policy(empty_org, "Payments", BUILD, [scope(empty_org, "Payments", "api", f"topic/{n}")])
    add_policy(empty_org, "Payments", MINIMUM_REVIEWERS, [scope(empty_org, "Payments", "api", "main")],
               settings={"minimumApproverCount": 3})
    exporter = make_exporter(sim, **only("policies"))
    assert exporter.refresh_all_once() == {"policies": None}
    assert sample(exporter, m.BRANCH_POLICY_MIN_REVIEWERS.name, **policy_labels("api", "main")) == 3
    pages = [r.params for r in sim.requests if r.path.endswith("/_apis/policy/configurations")]
    assert [p.get("continuationToken") for p in pages] == [None, "101"]

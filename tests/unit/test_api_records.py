"""The API layer's parsing: Microsoft's example payloads (and reconstructed ones) into typed records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter.azdo import records as r
from exporter.azdo.client import ApiError
from exporter.azdo.fields import parse_time

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"  # see its NOTICE


def body(name: str) -> Any:
    """The answer body of an example: `core/x.json` is official_core_x.json, `reconstructed/a/x.json`
    is reconstructed_a_x.json."""
    kind, _, rest = name.partition("/")
    file = f"reconstructed_{rest}" if kind == "reconstructed" else f"official_{name}"
    return json.loads((EXAMPLES / file.replace("/", "_")).read_text(encoding="utf-8-sig"))["responses"]["200"]["body"]


def items(name: str) -> list[Any]:
    return r.values_of("example", body(name))


def test_projects() -> None:
    projects = [r.parse_project(i) for i in items("core/GET__projects.json")]
    assert [p.name for p in projects if p] == ["Fabrikam-Fiber-TFVC", "Fabrikam-Fiber-Git", "TestGit"]
    assert projects[1] == r.TeamProject("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "Fabrikam-Fiber-Git")


def test_repositories_lower_case_ids_and_an_empty_repository() -> None:
    repos = [r.parse_repository(i) for i in items("git/GET__git_repositories.json")]
    assert repos[0] == r.Repository("5febef5a-833d-4e14-b9c0-14cb638f91e6", "AnotherRepository", None)
    assert repos[1] == r.Repository("278d5cd2-584d-4b63-824a-2ba458937249", "Fabrikam-Fiber-Git", "master")
    assert r.parse_repository({"id": "ABC", "name": "x", "isDisabled": True}) == r.Repository("abc", "x", None, True)
    assert r.parse_repository({"name": "no id"}) is None


def test_pull_requests_with_a_team_reviewer() -> None:
    prs = [r.parse_pull_request(i) for i in items("git/GET__git_pullRequests.json")]
    assert [(p.id, p.status, p.target_branch) for p in prs if p] == \
        [(22, "active", "new_feature"), (21, "active", "new_feature"), (1, "active", "master")]
    last = prs[2]
    assert last is not None and last.repository_id == "3411ebc1-d5aa-464f-9615-0b527bc66719"
    assert last.author_id == "d6245f20-2af8-44f4-9451-8107cb2767db"
    assert last.reviewers == (r.Reviewer("98d08d98-a075-46e7-a81e-21bc6f12cae7", True, False),)
    assert last.closed is None and not last.is_draft and not last.bypassed


def test_local_pull_request_examples_votes_and_bypass() -> None:
    data = json.loads((EXAMPLES / "reconstructed_pullrequests_closed.json").read_text(encoding="utf-8-sig"))
    peer_and_group, self_bypass = (r.parse_pull_request(i) for i in data["responses"]["200"]["body"]["value"])
    assert peer_and_group is not None and self_bypass is not None
    assert any(v.approved and not v.is_container for v in peer_and_group.reviewers)
    assert self_bypass.bypassed and not peer_and_group.bypassed
    assert self_bypass.closed is not None and self_bypass.status == "completed"


def test_policy_configurations_scopes() -> None:
    answer = items("policy/GET__policy_configurations.json")
    required, minimum, build = (r.parse_policy_configuration(i) for i in answer)
    assert (required.type_id, required.type_name, required.enabled, required.blocking, required.deleted) == \
        ("fd2167ab-b0be-447a-8ec8-39368250530e", "required reviewers", True, True, False)
    assert required.scopes == (
        r.PolicyScope(None, "refs/heads/master", "exact"), r.PolicyScope(None, "refs/heads/releases/", "prefix"),
        r.PolicyScope("49c1d4d0-be28-4f20-9e0a-4ecfafc39257", "refs/heads/adventureworks", "exact"))
    assert (minimum.type_name, minimum.minimum_approvers, minimum.blocking) == ("minimum approval count", 1, False)
    assert build.scopes == (r.PolicyScope(None, "refs/heads/features/", "prefix"),)
    repo = r.Repository("49c1d4d0-be28-4f20-9e0a-4ecfafc39257", "aw", "main")
    assert required.scopes[1].applies(repo, "releases/1.0") and not required.scopes[1].applies(repo, "main")
    assert required.scopes[2].applies(repo, "AdventureWorks")


def test_release_definitions_and_deployments() -> None:
    (definition,) = (r.parse_release_definition(i)
                     for i in items("release/GET__ListAllReleaseDefinitionsWithEnvironmentsExpanded.json"))
    assert definition == r.ReleaseDefinition("MyShuttle.CD", "\\", False, ("Dev", "QA", "PPE", "PROD"))
    assert definition.label == "MyShuttle.CD"
    deployments = {d.id: d for d in (r.parse_release_deployment(i) for i in items("release/GET__ListDeployments.json"))
                   if d is not None}
    assert len(deployments) == 17
    shipped = deployments[64]
    assert (shipped.label, shipped.stage, shipped.deployment_status, shipped.operation_status) == \
        ("MyShuttle.CD", "PROD", "succeeded", "approved")
    assert shipped.started == parse_time("2017-06-16T01:55:56.857Z")
    assert shipped.completed is None and shipped.last_modified == parse_time("2017-06-16T01:56:43.06Z")
    assert shipped.artifact_build == ("d07908bc-118f-47d2-8a13-ff75601a6b1a", 2)  # version id sent as "2"
    assert deployments[79].artifact_build is None  # no artifacts


def test_builds_and_definitions() -> None:
    running, failed, pr_build = (r.parse_build(i) for i in items("reconstructed/build/GET__build_builds.json"))
    assert running == r.Build(1203, 12, "main", "inprogress", None, parse_time("2024-03-12T14:02:11.5310293Z"),
                              parse_time("2024-03-12T14:02:15.8874123Z"), None)
    assert failed is not None and (failed.status, failed.result, failed.branch) == ("completed", "failed", "main")
    assert pr_build is not None and pr_build.branch is None and pr_build.result == "succeeded"  # refs/pull/42/merge
    definitions = [r.parse_build_definition(i) for i in
                   items("reconstructed/build/GET__build_definitions_includeLatestBuilds.json")]
    assert [(d.id, d.label) for d in definitions if d] == [(12, "fabrikam-ci"), (13, "qa/fabrikam-nightly-acceptance")]


def test_test_summary() -> None:
    summary = r.parse_test_summary(body("reconstructed/testResults/GET__testresults_resultsummarybybuild.json"))
    assert summary == r.TestCounts(117, 3, 0)
    assert r.parse_test_summary({"aggregatedResultsAnalysis": {"totalTests": 5, "resultsByOutcome": {
        "Passed": {"count": 2}}}}) == (2, 0, 3)  # outcomes not broken down count as other
    assert r.parse_test_summary({}) is None
    with pytest.raises(ApiError, match="answer is not an object"):
        r.parse_test_summary([])


def test_environments_and_deployment_records() -> None:
    environments = items("reconstructed/distributedTask/GET__distributedtask_environments.json")
    assert [r.parse_environment(i) for i in environments] == \
        [r.Environment(3, "production"), r.Environment(4, "staging")]
    running, succeeded, failed = (
        r.parse_environment_deployment_record(i) for i in
        items("reconstructed/distributedTask/GET__distributedtask_environments__environmentId__environmentdeploymentrecords.json"))
    assert running == r.EnvironmentDeploymentRecord(88, parse_time("2024-03-12T14:20:00.1Z"), 1203, 12, "Deploy_Prod",
                                                     1, None, None)
    assert succeeded is not None and (succeeded.run_id, succeeded.result) == (1199, "succeeded")
    assert failed is not None and failed.result == "failed" and failed.finish is not None


def test_pools_agents_and_job_requests() -> None:
    assert [r.parse_pool(i) for i in items("reconstructed/distributedTask/GET__distributedtask_pools.json")] == \
        [r.Pool(9, "Azure Pipelines"), r.Pool(12, "self-hosted-linux")]
    agents = [r.parse_agent(i) for i in
              items("reconstructed/distributedTask/GET__distributedtask_pools__poolId__agents.json")]
    assert agents == [r.Agent("online", True), r.Agent("online", True), r.Agent("offline", True)]
    requests = [r.parse_job_request(i) for i in
                items("reconstructed/distributedTask/GET__distributedtask_pools__poolId__jobrequests.json")]
    assert requests == [r.JobRequest(5003, False, False), r.JobRequest(5002, False, True),
                        r.JobRequest(5001, True, True)]


def test_audit_entries() -> None:
    answer = body("reconstructed/audit/GET__audit_auditlog_unwrapped.json")
    (entry,) = (r.parse_audit_entry(i) for i in answer["decoratedAuditLogEntries"])
    assert entry is not None
    assert (entry.area, entry.category, entry.action_id) == ("Policy", "modify", "Policy.PolicyConfigModified")
    assert entry.timestamp == parse_time("2024-03-12T09:30:02.1460838Z")
    assert r.parse_audit_entry({"id": "x"}) is None  # no timestamp


def test_a_list_answer_without_value_is_a_bad_response() -> None:
    with pytest.raises(ApiError) as caught:
        r.values_of("repositories", {"count": 0})
    assert caught.value.reason == "bad_response" and str(caught.value) == \
        "repositories: expected a list answer with 'value'"
    assert r.values_of("x", {"value": [{"id": 1}, "junk", None]}) == [{"id": 1}]

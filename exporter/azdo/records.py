"""The small typed records the areas consume, and the parsing of Azure DevOps JSON into them.

With exporter/azdo/api.py (URLs, api-versions, paging), this is the only place outside the simulator
that knows Azure DevOps' JSON field names. Parsers are lenient, the way the areas always were: an item
without the fields a record cannot do without is dropped (`None`), other missing or ill-typed fields
get a neutral value. An answer whose shape is wrong as a whole raises ApiError(bad_response).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.azdo.client import ApiError
from exporter.azdo.fields import HEADS, branch_name, parse_time, pipeline_label, result_name

Json = Mapping[str, Any]

# Pull-request reviewer votes that approve: approved (10) and approved with suggestions (5).
APPROVING_VOTES = (10, 5)


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    """An integer id, also when sent as digits in a string; None otherwise (booleans included)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _lower(value: Any) -> str:
    return str(value or "").lower()


def values_of(endpoint: str, body: Any) -> list[Json]:
    """The items of a `{"count": N, "value": [...]}` answer; ApiError(bad_response) for another shape."""
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise ApiError("bad_response", f"{endpoint}: expected a list answer with 'value'", endpoint=endpoint)
    return [item for item in body["value"] if isinstance(item, dict)]


# -- core ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TeamProject:
    id: str
    name: str


def parse_project(item: Json) -> TeamProject | None:
    project_id, name = _str(item.get("id")), _str(item.get("name"))
    return TeamProject(project_id, name) if project_id is not None and name is not None else None


# -- builds ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildDefinition:
    id: int
    name: str
    path: str | None  # folder, `\infra\apis`
    repository: str  # repository name, "" if unknown
    default_branch: str | None  # of the repository, without refs/heads/

    @property
    def label(self) -> str:
        """`folder/name`, the pipeline label value."""
        return pipeline_label(self.path, self.name)


def parse_build_definition(item: Json) -> BuildDefinition | None:
    definition_id, name = _int(item.get("id")), item.get("name")
    if definition_id is None or not isinstance(name, str):
        return None
    repository = _obj(item.get("repository"))
    return BuildDefinition(definition_id, name, _str(item.get("path")), str(repository.get("name") or ""),
                           branch_name(repository.get("defaultBranch")))


@dataclass(frozen=True)
class Build:
    """One run of a pipeline, as a builds listing reports it."""

    id: int
    definition_id: int | None
    branch: str | None  # source branch without refs/heads/; None for pull-request refs and tags
    status: str  # lower case: inprogress, notstarted, completed, ...
    result: str | None  # camelCase result name (fields.result_name); None while running or unknown
    queue: float | None
    start: float | None
    finish: float | None


def parse_build(item: Json) -> Build | None:
    build_id = _int(item.get("id"))
    if build_id is None:
        return None
    return Build(build_id, _int(_obj(item.get("definition")).get("id")), branch_name(item.get("sourceBranch")),
                 _lower(item.get("status")), result_name(item.get("result")), parse_time(item.get("queueTime")),
                 parse_time(item.get("startTime")), parse_time(item.get("finishTime")))


class TestCounts(NamedTuple):
    """Test results of one run by outcome."""

    passed: int
    failed: int
    other: int


def parse_test_summary(body: Any) -> TestCounts | None:
    """Passed/failed/other from a ResultSummaryByBuild answer; None when the run published no tests."""
    if not isinstance(body, dict):
        raise ApiError("bad_response", "test_summary: answer is not an object", endpoint="test_summary")
    analysis = body.get("aggregatedResultsAnalysis")
    if not isinstance(analysis, dict):
        return None
    by_outcome = analysis.get("resultsByOutcome") or {}
    if not isinstance(by_outcome, dict):
        raise ApiError("bad_response", "test_summary: resultsByOutcome is not an object", endpoint="test_summary")
    passed = failed = other = 0
    for key, entry in by_outcome.items():
        count = entry.get("count", 0) if isinstance(entry, dict) else 0
        count = count if isinstance(count, int) and count > 0 else 0
        if key.lower() == "passed":
            passed += count
        elif key.lower() == "failed":
            failed += count
        else:
            other += count
    total = analysis.get("totalTests")
    if isinstance(total, int) and total > passed + failed + other:
        other += total - (passed + failed + other)  # outcomes the summary did not break down
    if passed + failed + other == 0:
        return None
    return TestCounts(passed, failed, other)


@dataclass(frozen=True)
class Change:
    """A commit that a build brought."""

    id: str
    timestamp: float


def parse_change(item: Json) -> Change | None:
    sha, when = item.get("id"), parse_time(item.get("timestamp"))
    return Change(sha, when) if isinstance(sha, str) and when is not None else None


# -- git -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Repository:
    id: str  # lower case
    name: str
    default_branch: str | None  # without refs/heads/; None for an empty repository
    disabled: bool = False


def parse_repository(item: Json) -> Repository | None:
    repo_id, name = item.get("id"), item.get("name")
    if not isinstance(repo_id, str) or not isinstance(name, str):
        return None
    return Repository(repo_id.lower(), name, branch_name(item.get("defaultBranch")), item.get("isDisabled") is True)


@dataclass(frozen=True)
class Reviewer:
    id: str  # lower case, "" if unknown
    is_container: bool  # a group or team, not a person
    approved: bool  # voted approve or approve with suggestions


@dataclass(frozen=True)
class PullRequest:
    id: int
    status: str  # lower case: active, completed, abandoned
    repository_id: str | None  # lower case
    target_branch: str | None  # without refs/heads/
    created: float | None
    closed: float | None
    is_draft: bool
    author_id: str  # lower case, "" if unknown
    reviewers: tuple[Reviewer, ...]
    bypassed: bool  # completed with "bypass policy"


def parse_pull_request(item: Json) -> PullRequest | None:
    pr_id = item.get("pullRequestId")
    if not isinstance(pr_id, int):
        return None
    repo_id = _obj(item.get("repository")).get("id")
    reviewers = item.get("reviewers")
    return PullRequest(
        pr_id, _lower(item.get("status")), repo_id.lower() if isinstance(repo_id, str) else None,
        branch_name(item.get("targetRefName")), parse_time(item.get("creationDate")),
        parse_time(item.get("closedDate")), item.get("isDraft") is True, _lower(_obj(item.get("createdBy")).get("id")),
        tuple(Reviewer(_lower(r.get("id")), r.get("isContainer") is True, r.get("vote") in APPROVING_VOTES)
              for r in (reviewers if isinstance(reviewers, list) else []) if isinstance(r, dict)),
        _obj(item.get("completionOptions")).get("bypassPolicy") is True)


# -- policy ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyScope:
    """One entry of a policy configuration's `settings.scope`, matched the way Azure DevOps applies it:
    `repositoryId` null means every repository of the project; `matchKind` `Exact`: the branch whose ref
    equals `refName`, `Prefix`: every branch whose ref starts with it, `DefaultBranch`: the repository's
    default branch; no `refName` (and not `DefaultBranch`): every branch of the repository."""

    repository_id: str | None  # lower case; None: every repository of the project
    ref_name: str | None
    match_kind: str  # exact, prefix, defaultbranch (lower case)

    def applies(self, repository: Repository, branch: str) -> bool:
        if self.repository_id is not None and self.repository_id != repository.id:
            return False
        if self.match_kind == "defaultbranch":
            return repository.default_branch is not None and \
                branch.casefold() == repository.default_branch.casefold()
        if not self.ref_name:
            return True
        ref = (HEADS + branch).casefold()
        if self.match_kind == "prefix":
            return ref.startswith(self.ref_name.casefold())
        return ref == self.ref_name.casefold()


@dataclass(frozen=True)
class PolicyConfiguration:
    type_id: str  # lower case
    type_name: str  # display name, lower case
    enabled: bool
    blocking: bool
    deleted: bool
    minimum_approvers: int  # settings.minimumApproverCount; 0 when absent
    scopes: tuple[PolicyScope, ...]


def parse_policy_configuration(item: Json) -> PolicyConfiguration:
    kind = _obj(item.get("type"))
    settings = _obj(item.get("settings"))
    count = settings.get("minimumApproverCount")
    scopes: list[PolicyScope] = []
    for entry in settings.get("scope") or []:
        if not isinstance(entry, dict):
            continue
        repo_id, ref = entry.get("repositoryId"), entry.get("refName")
        scopes.append(PolicyScope(repo_id.lower() if isinstance(repo_id, str) and repo_id else None,
                                  ref if isinstance(ref, str) and ref else None,
                                  str(entry.get("matchKind") or "exact").lower()))
    return PolicyConfiguration(
        _lower(kind.get("id")), _lower(kind.get("displayName")), item.get("isEnabled") is True,
        item.get("isBlocking") is True, item.get("isDeleted") is True,
        count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0, tuple(scopes))


# -- release (classic) -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseDefinition:
    name: str
    path: str | None
    deleted: bool
    stages: tuple[str, ...]  # environment (stage) names

    @property
    def label(self) -> str:
        return pipeline_label(self.path, self.name)


def parse_release_definition(item: Json) -> ReleaseDefinition | None:
    name = item.get("name")
    if not isinstance(name, str):
        return None
    stages = tuple(env["name"] for env in item.get("environments") or []
                   if isinstance(env, dict) and isinstance(env.get("name"), str))
    return ReleaseDefinition(name, _str(item.get("path")), item.get("isDeleted") is True, stages)


@dataclass(frozen=True)
class ReleaseDeployment:
    """One attempt of a classic release stage (an item of `release/deployments`)."""

    id: int
    started: float
    definition_name: str | None
    definition_path: str | None
    stage: str | None
    deployment_status: str  # lower case
    operation_status: str  # lower case
    completed: float | None
    last_modified: float | None
    # (project id or None for the release's own project, build id) of the primary Build artifact
    artifact_build: tuple[str | None, int] | None

    @property
    def label(self) -> str | None:
        name = self.definition_name
        return pipeline_label(self.definition_path, name) if name is not None else None


def _artifact_build(item: Json) -> tuple[str | None, int] | None:
    """The build of the release's primary Build artifact (the first Build artifact otherwise)."""
    artifacts = _obj(item.get("release")).get("artifacts")
    if not isinstance(artifacts, list):
        return None
    builds = [a for a in artifacts if isinstance(a, dict) and str(a.get("type", "")).lower() == "build"]
    builds.sort(key=lambda a: a.get("isPrimary") is not True)
    for artifact in builds:
        ref = artifact.get("definitionReference")
        if not isinstance(ref, dict):
            continue
        build_id = _int(_obj(ref.get("version")).get("id"))
        project_id = _obj(ref.get("project")).get("id")
        if build_id is not None:
            return _str(project_id), build_id
    return None


def parse_release_deployment(item: Json) -> ReleaseDeployment | None:
    dep_id, started = _int(item.get("id")), parse_time(item.get("startedOn"))
    if dep_id is None or started is None:
        return None
    definition = _obj(item.get("releaseDefinition"))
    return ReleaseDeployment(
        dep_id, started, _str(definition.get("name")), _str(definition.get("path")),
        _str(_obj(item.get("releaseEnvironment")).get("name")), _lower(item.get("deploymentStatus")),
        _lower(item.get("operationStatus")), parse_time(item.get("completedOn")),
        parse_time(item.get("lastModifiedOn")), _artifact_build(item))


# -- distributed task: environments, pools ---------------------------------------------------------

@dataclass(frozen=True)
class Environment:
    id: int
    name: str


def parse_environment(item: Json) -> Environment | None:
    env_id, name = _int(item.get("id")), item.get("name")
    return Environment(env_id, name) if env_id is not None and isinstance(name, str) else None


@dataclass(frozen=True)
class EnvironmentDeploymentRecord:
    """One deployment job of a YAML pipeline run in an environment."""

    id: int
    queued: float | None  # queue time, or start time when there is none
    run_id: int | None  # the build (run) that deployed
    definition_id: int | None  # its pipeline
    stage: str | None
    stage_attempt: int  # 1 when absent
    result: str | None  # camelCase job result; None while running
    finish: float | None


def parse_environment_deployment_record(item: Json) -> EnvironmentDeploymentRecord | None:
    rec_id = _int(item.get("id"))
    if rec_id is None:
        return None
    return EnvironmentDeploymentRecord(
        rec_id, parse_time(item.get("queueTime")) or parse_time(item.get("startTime")),
        _int(_obj(item.get("owner")).get("id")), _int(_obj(item.get("definition")).get("id")),
        _str(item.get("stageName")), _int(item.get("stageAttempt")) or 1, _str(item.get("result")),
        parse_time(item.get("finishTime")))


@dataclass(frozen=True)
class Pool:
    id: int
    name: str


def parse_pool(item: Json) -> Pool | None:
    pool_id, name = item.get("id"), item.get("name")
    return Pool(pool_id, name) if isinstance(pool_id, int) and isinstance(name, str) else None


@dataclass(frozen=True)
class Agent:
    status: str  # lower case: online, offline, ...
    enabled: bool


def parse_agent(item: Json) -> Agent:
    return Agent(str(item.get("status", "")).lower(), item.get("enabled") is True)


@dataclass(frozen=True)
class JobRequest:
    request_id: object  # as sent; used only to recognise a request listed twice
    finished: bool  # has a result or a finish time
    assigned: bool  # an agent took it


def parse_job_request(item: Json) -> JobRequest:
    return JobRequest(item.get("requestId"), bool(item.get("result") or item.get("finishTime")),
                      bool(item.get("assignTime")))


# -- audit -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditEntry:
    id: str
    timestamp: float
    area: str | None
    category: str | None
    action_id: str | None


def parse_audit_entry(item: Json) -> AuditEntry | None:
    entry_id, timestamp = item.get("id"), parse_time(item.get("timestamp"))
    if not isinstance(entry_id, str) or timestamp is None:
        return None
    return AuditEntry(entry_id, timestamp, _str(item.get("area")), _str(item.get("category")),
                      _str(item.get("actionId")))

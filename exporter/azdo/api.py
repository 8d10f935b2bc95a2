"""The Azure DevOps REST endpoints the areas use: one typed method per endpoint.

Each method owns its URL, api-version, query parameters, paging style and self-metric endpoint name,
and yields the typed records of exporter/azdo/records.py. Lists are read lazily, page by page: a caller
that stops iterating stops the paging, so no page is requested that is not needed. Together with
records.py this is the only place outside the simulator that knows Azure DevOps URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from exporter.azdo.client import API_VERSION, API_VERSION_PREVIEW, MAX_PAGES, ApiError, AzureDevOpsClient, next_token
from exporter.azdo.fields import HEADS, format_time
from exporter.azdo.records import (
    Agent,
    AuditEntry,
    Build,
    BuildDefinition,
    Change,
    Environment,
    EnvironmentDeploymentRecord,
    JobRequest,
    Json,
    PolicyConfiguration,
    Pool,
    PullRequest,
    ReleaseDefinition,
    ReleaseDeployment,
    Repository,
    TeamProject,
    TestCounts,
    parse_agent,
    parse_audit_entry,
    parse_build,
    parse_build_definition,
    parse_change,
    parse_environment,
    parse_environment_deployment_record,
    parse_job_request,
    parse_policy_configuration,
    parse_pool,
    parse_project,
    parse_pull_request,
    parse_release_definition,
    parse_release_deployment,
    parse_repository,
    parse_test_summary,
    values_of,
)

Record = TypeVar("Record")

BUILD_PAGE_SIZE = 1000
BUILD_LOOKUP_PAGE_SIZE = 100  # the runs before a branch's first held run: usually a few
PROJECT_PAGE_SIZE = 500
PULL_REQUEST_PAGE_SIZE = 100  # below the service's default page (101), so a short page really is the last one
POLICY_PAGE_SIZE = 100
RELEASE_PAGE_SIZE = 100  # release/deployments caps $top at 100
ENVIRONMENT_PAGE_SIZE = 100
RECORD_PAGE_SIZE = 200
CHANGES_TOP = 1000
AUDIT_BATCH_SIZE = 1000


def _records(pages: Iterable[Sequence[Json]], parse: Callable[[Json], Record | None]) -> Iterator[Record]:
    """The parsed items of each page, in order, without the items the parser drops."""
    for page in pages:
        for item in page:
            record = parse(item)
            if record is not None:
                yield record


class AzureDevOpsApi:
    """The endpoints of one organization, read through one client.

    `release_url` and `audit_url` are the hosts of the release and audit services
    (vsrm.dev.azure.com, auditservice.dev.azure.com; the collection URL on Azure DevOps Server).
    """

    def __init__(self, client: AzureDevOpsClient, organization_url: str, release_url: str, audit_url: str) -> None:
        self.client = client
        self._organization = organization_url
        self._release = release_url
        self._audit = audit_url

    def _project_url(self, project_id: str, path: str) -> str:
        return f"{self._organization}/{project_id}/_apis/{path}"

    def _org_url(self, path: str) -> str:
        return f"{self._organization}/_apis/{path}"

    def _by_token(self, endpoint: str, url: str, params: Mapping[str, Any] | None,
                  parse: Callable[[Json], Record | None], api_version: str = API_VERSION) -> Iterator[Record]:
        return _records(self.client.pages_by_token(endpoint, url, params, api_version), parse)

    # -- core ------------------------------------------------------------------------------------

    def projects(self) -> Iterator[TeamProject]:
        """The organization's well-formed projects (header continuation paging)."""
        return self._by_token("projects", self._org_url("projects"),
                              {"$top": PROJECT_PAGE_SIZE, "stateFilter": "wellFormed"}, parse_project)

    # -- builds ----------------------------------------------------------------------------------

    def build_definitions(self, project_id: str, *, all_properties: bool) -> Iterator[BuildDefinition]:
        """The project's pipelines by name; `all_properties` also reads their repository."""
        params: dict[str, Any] = {"includeAllProperties": "true"} if all_properties else {}
        params |= {"queryOrder": "definitionNameAscending", "$top": BUILD_PAGE_SIZE}
        return self._by_token("definitions", self._project_url(project_id, "build/definitions"), params,
                              parse_build_definition)

    def completed_builds_since(self, project_id: str, since: float) -> Iterator[Build]:
        """Runs completed from `since` on, oldest first."""
        params = {"statusFilter": "completed", "queryOrder": "finishTimeAscending", "minTime": format_time(since),
                  "$top": BUILD_PAGE_SIZE}
        return self._by_token("builds", self._project_url(project_id, "build/builds"), params, parse_build)

    def open_builds(self, project_id: str) -> Iterator[Build]:
        """Runs in progress or queued, newest first."""
        params = {"statusFilter": "inProgress,notStarted", "queryOrder": "queueTimeDescending",
                  "$top": BUILD_PAGE_SIZE}
        return self._by_token("builds", self._project_url(project_id, "build/builds"), params, parse_build)

    def completed_builds_before(self, project_id: str, definition_id: int, branch: str,
                                before: float) -> Iterator[Build]:
        """One branch's runs completed up to `before`, newest first."""
        params = {"definitions": definition_id, "branchName": f"{HEADS}{branch}", "statusFilter": "completed",
                  "queryOrder": "finishTimeDescending", "maxTime": format_time(before),
                  "$top": BUILD_LOOKUP_PAGE_SIZE}
        return self._by_token("builds", self._project_url(project_id, "build/builds"), params, parse_build)

    def test_summary(self, project_id: str, build_id: int) -> TestCounts | None:
        """Test results of one run; None when it published none. NotFoundError when the run is gone."""
        body = self.client.get("test_summary", self._project_url(project_id, "test/ResultSummaryByBuild"),
                               {"buildId": build_id}, API_VERSION_PREVIEW).body
        return parse_test_summary(body)

    def build_changes(self, project_id: str, build_id: int) -> list[Change]:
        """The commits a run brought (one answer). NotFoundError when the run is gone."""
        body = self.client.get("build_changes", self._project_url(project_id, f"build/builds/{build_id}/changes"),
                               {"$top": CHANGES_TOP}).body
        return list(_records([values_of("build_changes", body)], parse_change))

    # -- git -------------------------------------------------------------------------------------

    def repositories(self, project_id: str) -> list[Repository]:
        """The project's repositories, disabled ones included (one answer, not paged)."""
        body = self.client.get("repositories", self._project_url(project_id, "git/repositories")).body
        return list(_records([values_of("repositories", body)], parse_repository))

    def _pull_requests(self, project_id: str, params: Mapping[str, Any]) -> Iterator[PullRequest]:
        pages = self.client.pages_by_skip("pullrequests", self._project_url(project_id, "git/pullrequests"), params,
                                          page_size=PULL_REQUEST_PAGE_SIZE)
        return _records(pages, parse_pull_request)

    def completed_pull_requests(self, project_id: str, closed_since: float) -> Iterator[PullRequest]:
        """The project's pull requests completed (closed) from `closed_since` on ($top/$skip paging)."""
        return self._pull_requests(project_id, {
            "searchCriteria.status": "completed", "searchCriteria.queryTimeRangeType": "closed",
            "searchCriteria.minTime": format_time(closed_since)})

    def active_pull_requests(self, project_id: str) -> Iterator[PullRequest]:
        """The project's open pull requests, drafts included ($top/$skip paging)."""
        return self._pull_requests(project_id, {"searchCriteria.status": "active"})

    # -- policy ----------------------------------------------------------------------------------

    def policy_configurations(self, project_id: str) -> Iterator[PolicyConfiguration]:
        return self._by_token("policies", self._project_url(project_id, "policy/configurations"),
                              {"$top": POLICY_PAGE_SIZE}, parse_policy_configuration)

    # -- release (classic) -----------------------------------------------------------------------

    def release_definitions(self, project_id: str) -> Iterator[ReleaseDefinition]:
        """Release pipelines with their stages. NotFoundError when the project has no release management."""
        params = {"$expand": "environments", "queryOrder": "idAscending", "$top": RELEASE_PAGE_SIZE}
        return self._by_token("release_definitions", f"{self._release}/{project_id}/_apis/release/definitions",
                              params, parse_release_definition)

    def release_deployments(self, project_id: str, started_since: float) -> Iterator[ReleaseDeployment]:
        """Stage attempts started from `started_since` on, oldest first."""
        params = {"minStartedTime": format_time(started_since), "queryOrder": "ascending", "$top": RELEASE_PAGE_SIZE}
        return self._by_token("release_deployments", f"{self._release}/{project_id}/_apis/release/deployments",
                              params, parse_release_deployment)

    # -- environments ----------------------------------------------------------------------------

    def environments(self, project_id: str) -> Iterator[Environment]:
        return self._by_token("environments", self._project_url(project_id, "distributedtask/environments"),
                              {"$top": ENVIRONMENT_PAGE_SIZE}, parse_environment)

    def environment_deployment_records(self, project_id: str, environment_id: int) \
            -> Iterator[EnvironmentDeploymentRecord]:
        """An environment's deployment job records, newest first (this endpoint pages with `top`)."""
        url = self._project_url(project_id, f"distributedtask/environments/{environment_id}/"
                                            "environmentdeploymentrecords")
        return self._by_token("environment_records", url, {"top": RECORD_PAGE_SIZE},
                              parse_environment_deployment_record)

    # -- agent pools -----------------------------------------------------------------------------

    def pools(self) -> Iterator[Pool]:
        return self._by_token("pools", self._org_url("distributedtask/pools"), None, parse_pool)

    def agents(self, pool_id: int) -> Iterator[Agent]:
        return self._by_token("agents", self._org_url(f"distributedtask/pools/{pool_id}/agents"), None, parse_agent)

    def unfinished_job_requests(self, pool_id: int) -> Iterator[JobRequest]:
        """A pool's job requests not finished yet, in one answer (NOTES §2.12: `completedRequestCount=0` is
        undocumented, preview api-version, not combinable with `$top`)."""
        return self._by_token("jobrequests", self._org_url(f"distributedtask/pools/{pool_id}/jobrequests"),
                              {"completedRequestCount": 0}, parse_job_request, API_VERSION_PREVIEW)

    # -- audit -----------------------------------------------------------------------------------

    def audit_log(self, start: float, end: float, batch_size: int = AUDIT_BATCH_SIZE) -> Iterator[AuditEntry]:
        """Audit log entries between `start` and `end`; paged with the body's `continuationToken` while
        `hasMore` is true (the audit service does not use the continuation header)."""
        url = f"{self._audit}/_apis/audit/auditlog"
        params: dict[str, Any] = {"startTime": format_time(start), "endTime": format_time(end),
                                  "batchSize": batch_size}
        return _records(self._pages_by_body_token("auditlog", url, params, "decoratedAuditLogEntries",
                                                  API_VERSION_PREVIEW), parse_audit_entry)

    def _pages_by_body_token(self, endpoint: str, url: str, params: dict[str, Any], items: str,
                             api_version: str) -> Iterator[list[Json]]:
        """Pages of a list whose answer is an object with the list under `items`, `hasMore` and
        `continuationToken`. A token seen before raises ApiError(bad_response) instead of looping."""
        query = dict(params)
        tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            body = self.client.get(endpoint, url, query, api_version).body
            if not isinstance(body, dict) or not isinstance(body.get(items), list):
                raise ApiError("bad_response", f"{endpoint}: expected an object with '{items}'", endpoint=endpoint)
            yield [item for item in body[items] if isinstance(item, dict)]
            if body.get("hasMore") is not True:
                return
            token = body.get("continuationToken")
            if not isinstance(token, str) or not token:
                raise ApiError("bad_response", f"{endpoint}: hasMore without a continuation token", endpoint=endpoint)
            query["continuationToken"] = next_token(endpoint, token, tokens)
        raise ApiError("bad_response", f"{endpoint}: more than {MAX_PAGES} pages", endpoint=endpoint)

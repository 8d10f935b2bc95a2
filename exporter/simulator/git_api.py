"""Git area of the simulated REST API: repositories and pull requests.

Shapes follow ``azdo-api/examples/git`` and ``reconstructed/git``; query semantics follow NOTES §2.5–2.6:
``searchCriteria.status`` (default ``active``), ``searchCriteria.queryTimeRangeType`` (``created``,
default, or ``closed``), ``searchCriteria.minTime`` (inclusive) / ``maxTime`` (exclusive) — honoured from
api-version 7.1 only, as in Azure DevOps — ``$top`` (default 101) and ``$skip``, newest first (by the
time the range type names, then id). No continuation header.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator.git_model import (
    PullRequest,
    Repository,
    Reviewer,
    active_pull_requests,
    git_data,
    pull_requests,
    repositories,
)
from exporter.simulator.model import Project, format_time, sha_for, stable_uuid, to_ticks
from exporter.simulator.server import (
    ApiContext,
    ApiError,
    ApiResponse,
    Route,
    identity_json,
    list_response,
    project_json,
)

DEFAULT_TOP = 101
MAX_TOP = 1000
_STATUSES = ("notset", "active", "abandoned", "completed", "all")
_RANGE_TYPES = ("created", "closed")


def repository_json(ctx: ApiContext, repo: Repository, p: Project) -> dict[str, Any]:
    """GitRepository (``defaultBranch`` absent for an empty repository)."""
    base = f"{ctx.base_url}/{p.id}"
    j: dict[str, Any] = {
        "id": repo.id,
        "name": repo.name,
        "url": f"{base}/_apis/git/repositories/{repo.id}",
        "project": project_json(ctx, p),
    }
    if repo.default_branch is not None:
        j["defaultBranch"] = repo.default_branch
    j.update({
        "size": repo.size,
        "remoteUrl": f"{ctx.base_url}/{p.name}/_git/{repo.name}",
        "sshUrl": f"git@ssh.simulated.example:v3/{ctx.org.name}/{p.name}/{repo.name}",
        "webUrl": f"{ctx.base_url}/{p.name}/_git/{repo.name}",
        "isDisabled": repo.is_disabled,
        "isInMaintenance": False,
    })
    return j


def _reviewer_json(ctx: ApiContext, pr_url: str, r: Reviewer, nested: bool = False) -> dict[str, Any]:
    ident = identity_json(ctx, r.identity)
    j: dict[str, Any] = {"reviewerUrl": f"{pr_url}/reviewers/{r.identity.id}", "vote": 0 if nested else r.vote}
    if not nested:
        j.update({"hasDeclined": False, "isFlagged": False})
    j.update({k: ident[k] for k in ("displayName", "url", "_links", "id", "uniqueName", "imageUrl")})
    if r.is_required and not nested:
        j["isRequired"] = True
    if r.is_container:
        j["isContainer"] = True
    if r.voted_for and not nested:
        j["votedFor"] = [_reviewer_json(ctx, pr_url, Reviewer(g, is_container=True), nested=True)
                         for g in r.voted_for]
    return j


def pull_request_json(ctx: ApiContext, pr: PullRequest, repo: Repository, p: Project) -> dict[str, Any]:
    """GitPullRequest as listed (as seen at ``ctx.now``: no closedDate while active)."""
    base = f"{ctx.base_url}/{p.id}/_apis/git/repositories/{repo.id}"
    url = f"{base}/pullRequests/{pr.id}"
    status = pr.status_at(ctx.now)
    j: dict[str, Any] = {
        "repository": {"id": repo.id, "name": repo.name, "url": f"{base}", "project": project_json(ctx, p)},
        "pullRequestId": pr.id,
        "codeReviewId": pr.id,
        "status": status,
        "createdBy": identity_json(ctx, pr.created_by),
        "creationDate": format_time(pr.creation),
    }
    if status != "active" and pr.closed is not None:
        j["closedDate"] = format_time(pr.closed)
    j.update({
        "title": pr.title,
        "description": f"{pr.title}.",
        "sourceRefName": pr.source_ref,
        "targetRefName": pr.target_ref,
        "mergeStatus": "succeeded",
        "isDraft": pr.is_draft and status == "active",
        "mergeId": stable_uuid("merge", str(pr.id)),
        "lastMergeSourceCommit": {"commitId": sha_for(pr.id, 1), "url": f"{base}/commits/{sha_for(pr.id, 1)}"},
        "lastMergeTargetCommit": {"commitId": sha_for(pr.id, 2), "url": f"{base}/commits/{sha_for(pr.id, 2)}"},
        "reviewers": [_reviewer_json(ctx, url, r) for r in pr.reviewers],
        "url": url,
        "supportsIterations": True,
        "artifactId": f"vstfs:///Git/PullRequestId/{p.id}%2f{repo.id}%2f{pr.id}",
    })
    if status == "completed":
        j["lastMergeCommit"] = {"commitId": sha_for(pr.id, 3), "url": f"{base}/commits/{sha_for(pr.id, 3)}"}
        options: dict[str, Any] = {"mergeCommitMessage": f"Merged PR {pr.id}: {pr.title}",
                                   "mergeStrategy": pr.merge_strategy, "deleteSourceBranch": True,
                                   "transitionWorkItems": True, "autoCompleteIgnoreConfigIds": []}
        if pr.bypass:
            options["bypassPolicy"] = True
            options["bypassReason"] = pr.bypass_reason or ""
        j["completionOptions"] = options
        j["completionQueueTime"] = format_time(max(pr.creation, (pr.closed or pr.creation) - 1.5))
    if status != "active" and pr.closed_by is not None:
        j["closedBy"] = identity_json(ctx, pr.closed_by)
    return j


def _repositories(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/git/repositories (no paging)."""
    assert ctx.project is not None
    return list_response([repository_json(ctx, r, ctx.project) for r in repositories(ctx.org, ctx.project)])


def _version_at_least_71(version: str) -> bool:
    try:
        major, minor = (int(x) for x in version.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (7, 1)


def _list(ctx: ApiContext, repository_id: str | None) -> ApiResponse:
    assert ctx.project is not None
    p, org, now = ctx.project, ctx.org, ctx.now
    status = (ctx.param("searchCriteria.status") or "active").lower()
    if status not in _STATUSES:
        raise ApiError(400, f"The value '{ctx.param('searchCriteria.status')}' is not valid for status.",
                       "ArgumentException")
    if status == "notset":
        status = "active"
    range_type = (ctx.param("searchCriteria.queryTimeRangeType") or "created").lower()
    if range_type not in _RANGE_TYPES:
        raise ApiError(400, "The value is not valid for queryTimeRangeType.", "ArgumentException")
    lo = hi = None
    if _version_at_least_71(ctx.api_version):  # the time filters exist from 7.1 on
        lo, hi = ctx.time_param("searchCriteria.minTime"), ctx.time_param("searchCriteria.maxTime")
    top = ctx.int_param("$top", DEFAULT_TOP) or DEFAULT_TOP
    top = min(top, MAX_TOP)
    skip = ctx.int_param("$skip", 0) or 0
    repo_filter = repository_id or ctx.param("searchCriteria.repositoryId")
    target = ctx.param("searchCriteria.targetRefName")
    data = git_data(org)
    repos = {r.id: r for r in data.repositories.values() if r.project_id == p.id and not r.is_disabled}
    if repository_id is not None and repository_id.lower() not in repos:
        raise ApiError(404, f"TF401019: The Git repository with name or identifier {repository_id} does not exist "
                       "or you do not have permissions for the operation you are attempting.",
                       "GitRepositoryNotFoundException")
    time_range = (-1e18 if lo is None else lo / 1e7, 1e18 if hi is None else (hi - 1) / 1e7)
    if status == "active":
        found = active_pull_requests(org, p, now)
        if lo is not None or hi is not None:
            found = [pr for pr in found if range_type == "created" and
                     time_range[0] <= pr.creation <= time_range[1]]
    elif range_type == "closed":
        found = pull_requests(org, p, closed=time_range, now=now)
    else:
        found = pull_requests(org, p, created=time_range if lo is not None or hi is not None else None, now=now)
    out: list[PullRequest] = []
    for pr in found:
        if pr.repository_id not in repos or (repo_filter and pr.repository_id != repo_filter.lower()):
            continue
        if target and pr.target_ref.lower() != target.lower():
            continue
        if status != "all" and pr.status_at(now) != status:
            continue
        if range_type == "closed" and (lo is not None or hi is not None):
            if pr.closed is None or pr.closed > now:
                continue
            ticks = to_ticks(pr.closed)
            if (lo is not None and ticks < lo) or (hi is not None and ticks >= hi):
                continue
        out.append(pr)

    def key(pr: PullRequest) -> tuple[float, int]:
        t = pr.closed if range_type == "closed" and pr.closed is not None else pr.creation
        return (t, pr.id)

    out.sort(key=key, reverse=True)
    page = out[skip: skip + top]
    return list_response([pull_request_json(ctx, pr, repos[pr.repository_id], p) for pr in page])


def _project_pull_requests(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/git/pullrequests."""
    return _list(ctx, None)


def _repository_pull_requests(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/git/repositories/{repositoryId}/pullrequests."""
    return _list(ctx, m.group(1).lower())


ROUTES = [
    Route("GET", r"/_apis/git/repositories/?", _repositories, name="repositories"),
    Route("GET", r"/_apis/git/pullrequests/?", _project_pull_requests, name="pullrequests"),
    Route("GET", r"/_apis/git/repositories/([0-9a-fA-F-]{36})/pullrequests/?", _repository_pull_requests,
          name="pullrequests"),
]

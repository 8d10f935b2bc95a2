"""Builds area of the simulated REST API: definitions, builds, changes, test result summaries.

Shapes follow ``azdo-api/examples/reconstructed/build`` and ``.../testResults``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from exporter.simulator.model import (
    MAX_SCHEDULED_SPAN,
    PEOPLE,
    SERVICE_IDENTITY,
    Organization,
    Pipeline,
    Project,
    Run,
    format_ticks,
    format_time,
    hash_ints,
    sha_for,
    to_ticks,
    unit,
)
from exporter.simulator.server import (
    ApiContext,
    ApiError,
    ApiResponse,
    Route,
    identity_json,
    list_response,
    project_json,
)

MAX_TOP = 1000
STATUSES = ("inprogress", "completed", "cancelling", "postponed", "notstarted", "none")
_QUEUE = {"id": 9, "name": "Azure Pipelines", "pool": {"id": 9, "name": "Azure Pipelines", "isHosted": True}}
_COMMIT_MESSAGES = (
    "Fix flaky retry test", "Bump dependencies", "Add metrics for checkout latency", "Refactor config loader",
    "Handle empty responses from upstream", "Update pipeline to use cached restore", "Improve error messages",
    "Remove dead feature flag", "Speed up integration tests", "Tighten input validation",
)

# queryOrder -> (time field, descending)
_BUILD_ORDERS: dict[str, tuple[str, bool]] = {
    "finishtimeascending": ("finish", False),
    "finishtimedescending": ("finish", True),
    "queuetimeascending": ("queue", False),
    "queuetimedescending": ("queue", True),
    "starttimeascending": ("start", False),
    "starttimedescending": ("start", True),
}


class _Cache:
    """Per-request memo of the JSON pieces shared by many builds (project and definition refs)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.projects: dict[str, dict[str, Any]] = {}
        self.definitions: dict[int, dict[str, Any]] = {}

    def project(self, p: Project) -> dict[str, Any]:
        j = self.projects.get(p.id)
        if j is None:
            j = self.projects[p.id] = project_json(self.ctx, p)
        return j

    def definition(self, pl: Pipeline, p: Project) -> dict[str, Any]:
        j = self.definitions.get(pl.id)
        if j is None:
            j = self.definitions[pl.id] = definition_ref(self.ctx, pl, p, self.project(p))
        return j


def definition_ref(ctx: ApiContext, pl: Pipeline, p: Project, project: dict[str, Any] | None = None) -> dict[str, Any]:
    """DefinitionReference as embedded in builds."""
    return {
        "drafts": [],
        "id": pl.id,
        "name": pl.name,
        "url": f"{ctx.base_url}/{p.id}/_apis/build/Definitions/{pl.id}?revision={pl.revision}",
        "uri": f"vstfs:///Build/Definition/{pl.id}",
        "path": pl.path,
        "type": "build",
        "queueStatus": "enabled",
        "revision": pl.revision,
        "project": project or project_json(ctx, p),
    }


def repository_json(ctx: ApiContext, pl: Pipeline, p: Project) -> dict[str, Any]:
    return {
        "id": ctx.org.repository_id(p, pl.repository),
        "type": "TfsGit",
        "name": pl.repository,
        "url": f"{ctx.base_url}/{p.id}/_git/{pl.repository}",
        "clean": None,
        "checkoutSubmodules": False,
    }


def build_json(ctx: ApiContext, run: Run, cache: _Cache) -> dict[str, Any]:
    """One Build, as seen at ``ctx.now``: no result/finishTime while running, no startTime queued."""
    org = ctx.org
    p = org._projects[run.project_id]
    pl = p.pipelines[run.pipeline_id]
    status = run.status_at(ctx.now)
    base = f"{ctx.base_url}/{p.id}"
    plan = f"{hash_ints(run.id, 0x91A):016x}{hash_ints(run.id, 0x91B):016x}"
    plan_id = f"{plan[:8]}-{plan[8:12]}-{plan[12:16]}-{plan[16:20]}-{plan[20:32]}"
    trigger: dict[str, str] = {}
    if run.branch.startswith("refs/pull/"):
        trigger = {
            "pr.number": run.branch.split("/")[2],
            "pr.isFork": "False",
            "pr.triggerRepository": org.repository_id(p, pl.repository),
            "pr.triggerRepository.Type": "TfsGit",
        }
    j: dict[str, Any] = {
        "_links": {
            "self": {"href": f"{base}/_apis/build/Builds/{run.id}"},
            "web": {"href": f"{base}/_build/results?buildId={run.id}"},
            "sourceVersionDisplayUri": {"href": f"{base}/_apis/build/builds/{run.id}/sources"},
            "timeline": {"href": f"{base}/_apis/build/builds/{run.id}/Timeline"},
            "badge": {"href": f"{base}/_apis/build/status/{pl.id}"},
        },
        "properties": {},
        "tags": [],
        "validationResults": [],
        "plans": [{"planId": plan_id}],
        "triggerInfo": trigger,
        "id": run.id,
        "buildNumber": run.build_number,
        "status": status,
    }
    if status == "completed":
        j["result"] = run.result
    j["queueTime"] = format_time(run.queue_time)
    if status != "notStarted" and run.start_time is not None:
        j["startTime"] = format_time(run.start_time)
    if status == "completed" and run.finish_time is not None:
        j["finishTime"] = format_time(run.finish_time)
    last_changed = run.queue_time
    if status == "completed" and run.finish_time is not None:
        last_changed = run.finish_time
    elif status == "inProgress" and run.start_time is not None:
        last_changed = run.start_time
    service = identity_json(ctx, SERVICE_IDENTITY)
    j.update({
        "url": f"{base}/_apis/build/Builds/{run.id}",
        "definition": cache.definition(pl, p),
        "buildNumberRevision": int(run.build_number.rsplit(".", 1)[-1] or 1),
        "project": cache.project(p),
        "uri": f"vstfs:///Build/Build/{run.id}",
        "sourceBranch": run.branch,
        "sourceVersion": run.source_version,
        "queue": _QUEUE if pl.pool == "Azure Pipelines" else
        {"id": 10, "name": pl.pool, "pool": {"id": 10, "name": pl.pool, "isHosted": False}},
        "priority": "normal",
        "reason": run.reason,
        "requestedFor": identity_json(ctx, run.requested_for),
        "requestedBy": service if run.reason != "manual" else identity_json(ctx, run.requested_for),
        "lastChangedDate": format_time(last_changed),
        "lastChangedBy": service,
        "orchestrationPlan": {"planId": plan_id},
        "logs": {"id": 0, "type": "Container", "url": f"{base}/_apis/build/builds/{run.id}/logs"},
        "repository": repository_json(ctx, pl, p),
        "retainedByRelease": False,
        "triggeredByBuild": None,
        "appendCommitMessageToRunName": True,
    })
    return j


# --------------------------------------------------------------------------------------------
# definitions
# --------------------------------------------------------------------------------------------


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$", re.IGNORECASE)


def definition_json(ctx: ApiContext, pl: Pipeline, p: Project, cache: _Cache,
                    latest: bool, all_props: bool) -> dict[str, Any]:
    """BuildDefinitionReference (with latest builds / repository and process on request)."""
    base = f"{ctx.base_url}/{p.id}"
    j = dict(cache.definition(pl, p))
    j["_links"] = {
        "self": {"href": j["url"]},
        "web": {"href": f"{base}/_build/definition?definitionId={pl.id}"},
        "editor": {"href": f"{base}/_build/designer?id={pl.id}&_a=edit-build-definition"},
        "badge": {"href": f"{base}/_apis/build/status/{pl.id}"},
    }
    j["quality"] = "definition"
    j["authoredBy"] = identity_json(ctx, PEOPLE[pl.id % len(PEOPLE)])
    j["queue"] = {
        "_links": {"self": {"href": f"{ctx.base_url}/_apis/build/Queues/9"}},
        **_QUEUE,
        "url": f"{ctx.base_url}/_apis/build/Queues/9",
    }
    j["createdDate"] = format_time(pl.modified)  # the date of this revision, as in Azure DevOps
    if latest:
        last, last_done = ctx.org.latest_runs(pl)
        if last is not None:
            j["latestBuild"] = build_json(ctx, last, cache)
        if last_done is not None:
            j["latestCompletedBuild"] = build_json(ctx, last_done, cache)
    if all_props:
        repo = repository_json(ctx, pl, p)
        j["repository"] = {
            "id": repo["id"], "name": repo["name"], "type": "TfsGit",
            "defaultBranch": pl.default_ref, "url": repo["url"],
            "clean": None, "checkoutSubmodules": False,
        }
        j["process"] = {"yamlFilename": "azure-pipelines.yml", "type": 2}
    return j


_DEF_ORDERS = ("none", "definitionnameascending", "definitionnamedescending",
               "lastmodifiedascending", "lastmodifieddescending")


def _definitions(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/build/definitions."""
    assert ctx.project is not None
    p = ctx.project
    order = (ctx.param("queryOrder") or "none").lower()
    if order not in _DEF_ORDERS:
        raise ApiError(400, f"The value '{ctx.param('queryOrder')}' is not valid for queryOrder.", "ArgumentException")
    token = ctx.param("continuationToken")
    if token is not None and order == "none":
        raise ApiError(
            400, "Continuation token timestamp without query order is ambiguous.",
            "InvalidDefinitionQueryException",
            "Microsoft.TeamFoundation.Build.WebApi.InvalidDefinitionQueryException, "
            "Microsoft.TeamFoundation.Build2.WebApi",
        )
    top = min(ctx.int_param("$top", MAX_TOP) or MAX_TOP, MAX_TOP)
    with ctx.org.lock:
        pipelines = list(p.pipelines.values())
    name = ctx.param("name")
    if name:
        rx = _wildcard(name)
        pipelines = [pl for pl in pipelines if rx.match(pl.name)]
    path = ctx.param("path")
    if path:
        folder = "\\" + path.replace("/", "\\").strip("\\").lower()
        pipelines = [pl for pl in pipelines if folder == "\\" or pl.path.lower() == folder
                     or pl.path.lower().startswith(folder + "\\")]
    ids = ctx.int_csv_param("definitionIds")
    if ids:
        wanted = set(ids)
        pipelines = [pl for pl in pipelines if pl.id in wanted]
    repo_id = ctx.param("repositoryId")
    if repo_id:
        pipelines = [pl for pl in pipelines if ctx.org.repository_id(p, pl.repository) == repo_id.lower()]

    key: Callable[[Pipeline], Any]
    if order.startswith("definitionname"):
        def key(pl: Pipeline) -> Any:
            return (pl.name.lower(), pl.id)

        def token_of(pl: Pipeline) -> str:
            return pl.name
    elif order.startswith("lastmodified"):
        def key(pl: Pipeline) -> Any:
            return (to_ticks(pl.modified), pl.id)

        def token_of(pl: Pipeline) -> str:
            return format_time(pl.modified)
    else:
        def key(pl: Pipeline) -> Any:
            return pl.id

        def token_of(pl: Pipeline) -> str:
            return pl.name
    desc = order.endswith("descending")
    pipelines.sort(key=key, reverse=desc)
    if token is not None:
        if order.startswith("definitionname"):
            t = token.lower()
            pipelines = [pl for pl in pipelines if (pl.name.lower() <= t if desc else pl.name.lower() >= t)]
        else:
            try:
                ticks = ctx.time_param("continuationToken")
            except ApiError:
                raise ApiError(400, "The continuation token is not valid.", "ArgumentException") from None
            assert ticks is not None
            pipelines = [pl for pl in pipelines
                         if (to_ticks(pl.modified) <= ticks if desc else to_ticks(pl.modified) >= ticks)]
    page, rest = pipelines[:top], pipelines[top:]
    cache = _Cache(ctx)
    latest = ctx.bool_param("includeLatestBuilds")
    all_props = ctx.bool_param("includeAllProperties")
    items = [definition_json(ctx, pl, p, cache, latest, all_props) for pl in page]
    return list_response(items, token_of(rest[0]) if rest else None)


def _definition(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/build/definitions/{id} (full definition)."""
    assert ctx.project is not None
    pl = ctx.project.pipelines.get(int(m.group(1)))
    if pl is None:
        raise ApiError(404, f"The definition with ID {m.group(1)} does not exist.", "DefinitionNotFoundException")
    return ApiResponse(definition_json(ctx, pl, ctx.project, _Cache(ctx), False, True))


# --------------------------------------------------------------------------------------------
# builds
# --------------------------------------------------------------------------------------------


def _key_ticks(run: Run, field: str, now: float) -> int | None:
    """The sort key of a run for a queryOrder field, or None when the run has no such time yet."""
    if field == "queue":
        return to_ticks(run.queue_time)
    if field == "start":
        return to_ticks(run.start_time) if run.start_time is not None and run.start_time <= now else None
    if run.status_at(now) == "completed" and run.finish_time is not None:
        return to_ticks(run.finish_time)
    return None


def query_builds(ctx: ApiContext) -> tuple[list[Run], str | None]:
    """Apply the builds query parameters; return one page of runs and the continuation token."""
    assert ctx.project is not None
    org: Organization = ctx.org
    now = ctx.now
    order = (ctx.param("queryOrder") or "").lower()
    if order and order not in _BUILD_ORDERS:
        raise ApiError(400, f"The value '{ctx.param('queryOrder')}' is not valid for queryOrder.", "ArgumentException")
    # without queryOrder: queue time, newest first (documented simulator choice)
    field, desc = _BUILD_ORDERS.get(order, ("queue", True))
    min_t = ctx.time_param("minTime")
    max_t = ctx.time_param("maxTime")
    token_raw = ctx.param("continuationToken")
    token: int | None = None
    if token_raw is not None:
        try:
            token = ctx.time_param("continuationToken")
        except ApiError:
            raise ApiError(400, "The continuation token is not valid.", "ArgumentException") from None

    if (ctx.param("deletedFilter") or "").lower() == "onlydeleted":
        return [], None

    # bounds on queue time that prune scheduled runs (queue <= start <= finish)
    lo_ticks = min_t
    if token is not None and not desc:
        lo_ticks = max(lo_ticks or token, token)
    queue_from = None if lo_ticks is None else lo_ticks / 1e7 - (0 if field == "queue" else MAX_SCHEDULED_SPAN)
    hi_ticks = max_t
    if token is not None and desc:
        hi_ticks = min(hi_ticks or token, token)
    queue_to = None if hi_ticks is None else hi_ticks / 1e7 + 1

    build_ids = ctx.int_csv_param("buildIds")
    definitions = ctx.int_csv_param("definitions") or None
    p = ctx.project
    if build_ids:
        runs = []
        for bid in dict.fromkeys(build_ids):
            r = org.get_run(bid)
            if r is not None and r.project_id == p.id and r.visible_at(now):
                runs.append(r)
        if definitions:
            wanted = set(definitions)
            runs = [r for r in runs if r.pipeline_id in wanted]
    else:
        runs = org.runs(p, definitions, queue_from=queue_from, queue_to=queue_to)

    branch = ctx.param("branchName")
    if branch:
        b = branch.lower()
        runs = [r for r in runs if r.branch.lower() == b]
    statuses = {s.lower() for s in ctx.csv_param("statusFilter")}
    if statuses and "all" not in statuses:
        unknown = statuses - set(STATUSES)
        if unknown:
            raise ApiError(400, f"The value '{ctx.param('statusFilter')}' is not valid for statusFilter.",
                           "ArgumentException")
        runs = [r for r in runs if r.status_at(now).lower() in statuses]
    results = {s.lower() for s in ctx.csv_param("resultFilter")}
    if results:
        runs = [r for r in runs if r.status_at(now) == "completed" and (r.result or "").lower() in results]
    reasons = {s.lower() for s in ctx.csv_param("reasonFilter")}
    if reasons and "all" not in reasons:
        runs = [r for r in runs if r.reason.lower() in reasons]

    keyed: list[tuple[int, int, Run]] = []
    for r in runs:
        k = _key_ticks(r, field, now)
        if k is None:
            continue  # e.g. no finishTime under a finish-time order
        if min_t is not None and k < min_t:
            continue
        if max_t is not None and k >= max_t:
            continue
        keyed.append((k, r.id, r))
    keyed.sort(key=lambda t: (t[0], t[1]), reverse=desc)

    per_def = ctx.int_param("maxBuildsPerDefinition", None, minimum=1)
    if per_def:
        seen: dict[int, int] = {}
        kept = []
        for item in keyed:
            n = seen.get(item[2].pipeline_id, 0)
            if n < per_def:
                seen[item[2].pipeline_id] = n + 1
                kept.append(item)
        keyed = kept
    if token is not None:
        # items with a timestamp equal to the token repeat across pages, as in Azure DevOps
        keyed = [t for t in keyed if (t[0] <= token if desc else t[0] >= token)]
    top = ctx.int_param("$top", MAX_TOP) or MAX_TOP
    top = min(top, MAX_TOP)
    page = keyed[:top]
    next_token = format_ticks(keyed[top][0]) if len(keyed) > top else None
    return [t[2] for t in page], next_token


def _builds(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/build/builds."""
    runs, token = query_builds(ctx)
    cache = _Cache(ctx)
    projects = ctx.org._projects
    # a pipeline deleted while this request ran: drop its builds rather than fail
    runs = [r for r in runs if r.project_id in projects and r.pipeline_id in projects[r.project_id].pipelines]
    return list_response([build_json(ctx, r, cache) for r in runs], token)


def _find_build(ctx: ApiContext, build_id: int) -> Run:
    assert ctx.project is not None
    run = ctx.org.get_run(build_id)
    if run is None or run.project_id != ctx.project.id or not run.visible_at(ctx.now):
        raise ApiError(404, f"The requested build {build_id} could not be found.", "BuildNotFoundException",
                       "Microsoft.TeamFoundation.Build.WebApi.BuildNotFoundException, "
                       "Microsoft.TeamFoundation.Build2.WebApi")
    return run


def _build(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/build/builds/{id}."""
    return ApiResponse(build_json(ctx, _find_build(ctx, int(m.group(1))), _Cache(ctx)))


def changes_of(ctx: ApiContext, run: Run) -> list[dict[str, Any]]:
    """The commits a build brought: 1-3, newest first, all strictly before its queue time."""
    p = ctx.org._projects[run.project_id]
    pl = p.pipelines[run.pipeline_id]
    repo_id = ctx.org.repository_id(p, pl.repository)
    h = hash_ints(run.id, 0xC4A)
    n = 1 + h % 3
    out = []
    t = run.queue_time
    for i in range(n):
        hi = hash_ints(run.id, 0xC4A, i)
        t -= 60 + unit(hi, 0) * 3600  # 1-61 minutes before the previous one
        sha = run.source_version if i == 0 and run.source_version else sha_for(run.id, 100 + i)
        author = run.requested_for if i == 0 and run.requested_for.unique_name else PEOPLE[hi % len(PEOPLE)]
        out.append({
            "id": sha,
            "message": _COMMIT_MESSAGES[(hi >> 16) % len(_COMMIT_MESSAGES)],
            "type": "TfsGit",
            "author": {"displayName": author.display_name, "id": author.id},
            "timestamp": format_time(t),
            "location": f"{ctx.base_url}/{p.id}/_apis/git/repositories/{repo_id}/commits/{sha}",
            "displayUri": f"{ctx.base_url}/{p.id}/_git/{pl.repository}/commit/{sha}",
        })
    return out


def _changes(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/build/builds/{id}/changes."""
    run = _find_build(ctx, int(m.group(1)))
    items = changes_of(ctx, run)
    top = ctx.int_param("$top", None, minimum=1)
    return list_response(items[:top] if top else items)


# --------------------------------------------------------------------------------------------
# test result summary
# --------------------------------------------------------------------------------------------


def _timespan(seconds: float) -> str:
    """.NET TimeSpan text: ``00:06:29.4340000``."""
    ticks = int(round(seconds * 10_000_000))
    secs, frac = divmod(ticks, 10_000_000)
    h, rem = divmod(secs, 3600)
    mnt, s = divmod(rem, 60)
    return f"{h:02d}:{mnt:02d}:{s:02d}.{frac:07d}"


def _summary(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/test/ResultSummaryByBuild?buildId= (preview only)."""
    assert ctx.project is not None
    build_id = ctx.int_param("buildId")
    if build_id is None:
        raise ApiError(400, "Value cannot be null.\r\nParameter name: buildId", "ArgumentNullException")
    run = ctx.org.get_run(build_id)
    if run is not None and (run.project_id != ctx.project.id or not run.visible_at(ctx.now)):
        run = None
    tests = run.tests if run is not None and run.status_at(ctx.now) == "completed" else None
    by_outcome: dict[str, Any] = {}
    total = 0
    duration = 0.0
    if tests is not None and sum(tests) > 0:
        passed, failed, other = tests
        total = passed + failed + other
        for name, count, per in (("Passed", passed, 0.5), ("Failed", failed, 2.0), ("NotExecuted", other, 0.0)):
            if count:  # outcomes with zero results are omitted, as in Azure DevOps
                by_outcome[name] = {"outcome": name[0].lower() + name[1:], "count": count,
                                    "duration": _timespan(count * per)}
                duration += count * per
    analysis: dict[str, Any] = {
        "duration": _timespan(duration),
        "notReportedResultsByOutcome": {},
        "resultsByOutcome": by_outcome,
        "resultsDifference": {
            "increaseInTotalTests": 0, "increaseInFailures": 0, "increaseInPassedTests": 0,
            "increaseInOtherTests": 0, "increaseInNonImpactedTests": 0, "increaseInDuration": "00:00:00",
        },
        "runSummaryByOutcome": {},
        "runSummaryByState": {},
        "totalTests": total,
    }
    if total:
        failed_runs = tests is not None and tests[1] > 0
        key = "Failed" if failed_runs else "Passed"
        analysis["runSummaryByOutcome"] = {key: {"outcome": key.lower(), "runsCount": 1}}
        analysis["runSummaryByState"] = {"Completed": {"state": "completed", "runsCount": 1, "resultsByOutcome": {}}}
    body: dict[str, Any] = {
        "aggregatedResultsAnalysis": analysis,
        "noConfigRunsCount": 0,
        "teamProject": {"id": ctx.project.id, "name": ctx.project.name},
        "testResultsContext": {"contextType": "build", "build": {"id": build_id}},
        "totalRunsCount": 1 if total else 0,
    }
    if run is not None:
        body["testResultsContext"]["build"] = {
            "id": run.id, "number": run.build_number, "uri": f"vstfs:///Build/Build/{run.id}",
            "definitionId": run.pipeline_id, "branchName": run.branch,
        }
    return ApiResponse(body)


ROUTES = [
    Route("GET", r"/_apis/build/definitions/?", _definitions, name="definitions"),
    Route("GET", r"/_apis/build/definitions/(\d+)/?", _definition, name="definition"),
    Route("GET", r"/_apis/build/builds/?", _builds, name="builds"),
    Route("GET", r"/_apis/build/builds/(\d+)/?", _build, name="build"),
    Route("GET", r"/_apis/build/builds/(\d+)/changes/?", _changes, name="changes"),
    Route("GET", r"/_apis/test/ResultSummaryByBuild/?", _summary, preview=True, name="testsummary"),
    Route("GET", r"/_apis/testresults/resultsummarybybuild/?", _summary, preview=True, name="testsummary"),
]

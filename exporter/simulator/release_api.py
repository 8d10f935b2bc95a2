"""Classic release management of the simulated REST API (the ``vsrm.`` host in Azure DevOps).

``release/definitions`` (``$expand=environments``, ``$top``, ``queryOrder`` by id or name, header
continuation) and ``release/deployments`` (``definitionId``, ``minStartedTime``/``maxStartedTime``,
``deploymentStatus``, ``latestAttemptsOnly``, ``queryOrder`` ascending/descending by id, ``$top``
default 50 and capped at 100, integer ``continuationToken`` header). Shapes follow
``azdo-api/examples/release`` and ``reconstructed/release``: PascalCase ``operationStatus``,
``0001-01-01T00:00:00`` for unset dates, no ``completedOn`` while a deployment runs.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator import release_model as rm
from exporter.simulator.model import PEOPLE, SERVICE_IDENTITY, format_time
from exporter.simulator.server import ApiContext, ApiError, ApiResponse, Route, identity_json, list_response

DEFAULT_TOP = 50
MAX_TOP = 100
NO_DATE = "0001-01-01T00:00:00"
_STATUSES = ("undefined", "notdeployed", "inprogress", "succeeded", "partiallysucceeded", "failed", "all")
_DEF_ORDERS = ("idascending", "iddescending", "nameascending", "namedescending")


def _definition_json(ctx: ApiContext, rd: rm.ReleaseDefinition, expand: bool) -> dict[str, Any]:
    assert ctx.project is not None
    base = f"{ctx.base_url}/{rd.project_id}"
    author = identity_json(ctx, PEOPLE[rd.id % len(PEOPLE)])
    j: dict[str, Any] = {
        "source": "userInterface",
        "id": rd.id,
        "revision": rd.revision,
        "name": rd.name,
        "description": None,
        "createdBy": author,
        "createdOn": format_time(rd.created),
        "modifiedBy": author,
        "modifiedOn": format_time(rd.created),
        "isDeleted": False,
        "path": rd.path,
        "variableGroups": None,
        "releaseNameFormat": "Release-$(rev:r)",
        "properties": {},
        "url": f"{base}/_apis/Release/definitions/{rd.id}",
        "_links": {"self": {"href": f"{base}/_apis/Release/definitions/{rd.id}"},
                   "web": {"href": f"{base}/_release?definitionId={rd.id}"}},
    }
    if expand:
        j["environments"] = [{"id": rd.stage_id(s), "name": s, "rank": i + 1, "owner": author,
                              "variables": {}, "variableGroups": [], "conditions": []}
                             for i, s in enumerate(rd.stages)]
    return j


def _definitions(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/release/definitions."""
    assert ctx.project is not None
    order = (ctx.param("queryOrder") or "idAscending").lower()
    if order not in _DEF_ORDERS:
        raise ApiError(400, f"The value '{ctx.param('queryOrder')}' is not valid for queryOrder.", "ArgumentException")
    top = ctx.int_param("$top", MAX_TOP, minimum=1) or MAX_TOP
    d = rm.data(ctx.org)
    with ctx.org.lock:
        defs = [rd for rd in d.definitions.values() if rd.project_id == ctx.project.id]
    search = (ctx.param("searchText") or "").lower()
    if search:
        defs = [rd for rd in defs if search in rd.name.lower()]
    ids = ctx.int_csv_param("definitionIdFilter")
    if ids:
        defs = [rd for rd in defs if rd.id in set(ids)]
    by_name = order.startswith("name")
    desc = order.endswith("descending")
    defs.sort(key=lambda rd: (rd.name.lower(), rd.id) if by_name else (rd.id,), reverse=desc)
    token = ctx.param("continuationToken")
    if token is not None:
        if by_name:
            t = token.lower()
            defs = [rd for rd in defs if (rd.name.lower() <= t if desc else rd.name.lower() >= t)]
        else:
            n = ctx.int_param("continuationToken")
            assert n is not None
            defs = [rd for rd in defs if (rd.id <= n if desc else rd.id >= n)]
    page, rest = defs[:top], defs[top:]
    expand = "environments" in (ctx.param("$expand") or "").lower()
    nxt = None if not rest else (rest[0].name if by_name else str(rest[0].id))
    return list_response([_definition_json(ctx, rd, expand) for rd in page], nxt)


def deployment_json(ctx: ApiContext, dep: rm.Deployment, rd: rm.ReleaseDefinition) -> dict[str, Any]:
    """Deployment, as seen at ``ctx.now``."""
    p = ctx.org._projects[dep.project_id]
    base = f"{ctx.base_url}/{p.id}"
    status, operation = dep.status_at(ctx.now)
    service = identity_json(ctx, SERVICE_IDENTITY)
    person = identity_json(ctx, PEOPLE[dep.release_id % len(PEOPLE)])
    artifacts: list[dict[str, Any]] = []
    if dep.build_id is not None and dep.build_pipeline_id is not None:
        pl = p.pipelines.get(dep.build_pipeline_id)
        name = pl.name if pl is not None else str(dep.build_pipeline_id)
        artifacts.append({
            "sourceId": f"{p.id}:{dep.build_pipeline_id}",
            "type": "Build",
            "alias": f"_{name}",
            "definitionReference": {
                "definition": {"id": str(dep.build_pipeline_id), "name": name},
                "project": {"id": p.id, "name": p.name},
                "version": {"id": str(dep.build_id), "name": dep.build_number or str(dep.build_id)},
                "branch": {"id": "refs/heads/main", "name": "refs/heads/main"},
            },
            "isPrimary": True,
        })
    rel_env = dep.release_id * 10 + rd.stages.index(dep.stage) + 1
    j: dict[str, Any] = {
        "id": dep.id,
        "release": {
            "id": dep.release_id,
            "name": dep.release_name,
            "url": f"{base}/_apis/Release/releases/{dep.release_id}",
            "artifacts": artifacts,
            "webAccessUri": f"{base}/_release?releaseId={dep.release_id}&_a=release-summary",
            "_links": {},
        },
        "releaseDefinition": {
            "id": rd.id,
            "name": rd.name,
            "path": rd.path,
            "projectReference": None,
            "url": f"{base}/_apis/Release/definitions/{rd.id}",
            "_links": {},
        },
        "releaseEnvironment": {
            "id": rel_env,
            "name": dep.stage,
            "url": f"{base}/_apis/Release/releases/{dep.release_id}/environments/{rel_env}",
            "_links": {},
        },
        "projectReference": {"id": p.id, "name": p.name},
        "definitionEnvironmentId": rd.stage_id(dep.stage),
        "attempt": dep.attempt,
        "reason": dep.reason,
        "deploymentStatus": status,
        "operationStatus": operation,
        "requestedBy": service if dep.reason == "automated" else person,
        "requestedFor": person,
        "queuedOn": NO_DATE,  # unset, as in Azure DevOps' own examples
        "startedOn": format_time(dep.started),
        "scheduledDeploymentTime": NO_DATE,
    }
    if status != "inProgress" and dep.completed is not None:
        j["completedOn"] = format_time(dep.completed)
        j["lastModifiedOn"] = format_time(dep.completed)
    else:
        j["lastModifiedOn"] = format_time(dep.started)
    j.update({"lastModifiedBy": service, "conditions": [], "preDeployApprovals": [], "postDeployApprovals": [],
              "_links": {}})
    return j


def _deployments(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/release/deployments."""
    assert ctx.project is not None
    order = (ctx.param("queryOrder") or "descending").lower()
    if order not in ("ascending", "descending"):
        raise ApiError(400, f"The value '{ctx.param('queryOrder')}' is not valid for queryOrder.", "ArgumentException")
    desc = order == "descending"
    top = min(ctx.int_param("$top", DEFAULT_TOP, minimum=1) or DEFAULT_TOP, MAX_TOP)
    status = (ctx.param("deploymentStatus") or "all").lower()
    if status not in _STATUSES:
        raise ApiError(400, f"The value '{ctx.param('deploymentStatus')}' is not valid for deploymentStatus.",
                       "ArgumentException")
    lo, hi = ctx.time_param("minStartedTime"), ctx.time_param("maxStartedTime")
    token = ctx.int_param("continuationToken")
    definition_id = ctx.int_param("definitionId")
    d = rm.data(ctx.org)
    lo_s = ctx.org.epoch - rm.MAX_RELEASE_SPAN if lo is None else lo / 1e7
    hi_s = ctx.now if hi is None else hi / 1e7
    deps = [dep for dep in rm.deployments(ctx.org, ctx.project.id, lo_s, hi_s, ctx.now)
            if definition_id is None or dep.definition_id == definition_id]
    if status not in ("all", "undefined"):
        deps = [dep for dep in deps if dep.status_at(ctx.now)[0].lower() == status]
    if ctx.bool_param("latestAttemptsOnly"):
        latest: dict[tuple[int, str], rm.Deployment] = {}
        for dep in deps:
            held = latest.get((dep.release_id, dep.stage))
            if held is None or dep.attempt > held.attempt:
                latest[(dep.release_id, dep.stage)] = dep
        deps = list(latest.values())
    deps.sort(key=lambda dep: dep.id, reverse=desc)
    if token is not None:
        deps = [dep for dep in deps if (dep.id <= token if desc else dep.id >= token)]
    page, rest = deps[:top], deps[top:]
    items = [deployment_json(ctx, dep, d.definitions[dep.definition_id]) for dep in page]
    return list_response(items, str(rest[0].id) if rest else None)


ROUTES = [
    Route("GET", r"/_apis/release/definitions/?", _definitions, name="release_definitions"),
    Route("GET", r"/_apis/release/deployments/?", _deployments, name="release_deployments"),
]

"""YAML pipeline environments of the simulated REST API.

``distributedtask/environments`` (``name``, ``$top``, header continuation) and
``distributedtask/environments/{id}/environmentdeploymentrecords`` (``top`` without ``$``: a
``$top`` is ignored like any unknown parameter; newest first by id; header continuation = the id of
the first record of the next page). Shapes follow ``reconstructed/distributedTask``: no
``finishTime``/``result`` while a job runs.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator import environments_model as em
from exporter.simulator.model import DAY, PEOPLE, format_time
from exporter.simulator.server import ApiContext, ApiError, ApiResponse, Route, identity_json, list_response

DEFAULT_TOP = 50
MAX_TOP = 1000
SERVICE_OWNER = "00025394-6065-48ca-87d9-7f5672854ef7"
_WALK = 2 * DAY  # records are generated for this much time at once, newest first


def _person(ctx: ApiContext, n: int) -> dict[str, Any]:
    full = identity_json(ctx, PEOPLE[n % len(PEOPLE)])
    return {"displayName": full["displayName"], "id": full["id"], "uniqueName": full["uniqueName"]}


def _environments(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/distributedtask/environments."""
    assert ctx.project is not None
    d = em.data(ctx.org)
    with ctx.org.lock:
        envs = sorted((e for e in d.environments.values() if e.project_id == ctx.project.id), key=lambda e: e.id)
    name = ctx.param("name")
    if name:
        envs = [e for e in envs if e.name.lower() == name.lower()]
    top = ctx.int_param("$top", DEFAULT_TOP, minimum=1) or DEFAULT_TOP
    token = ctx.int_param("continuationToken")
    if token is not None:
        envs = [e for e in envs if e.id >= token]
    page, rest = envs[:top], envs[top:]
    p = ctx.project
    items = [{"id": e.id, "name": e.name, "description": "", "createdBy": _person(ctx, e.id),
              "createdOn": format_time(e.created), "lastModifiedBy": _person(ctx, e.id),
              "lastModifiedOn": format_time(e.created), "project": {"id": p.id, "name": p.name}} for e in page]
    return list_response(items, str(rest[0].id) if rest else None)


def record_json(ctx: ApiContext, rec: em.Record) -> dict[str, Any]:
    base = f"{ctx.base_url}/{rec.project_id}"
    j: dict[str, Any] = {
        "id": rec.id,
        "requestIdentifier": f"{rec.id:016x}-0000-4000-8000-000000000000"[:36],
        "environmentId": rec.environment_id,
        "serviceOwner": SERVICE_OWNER,
        "scopeId": rec.project_id,
        "resourceId": 0,
        "planType": "Build",
        "planId": f"{rec.run_id:08x}-0000-4000-8000-{rec.run_id:012x}",
        "stageName": rec.stage,
        "jobName": rec.job,
        "stageAttempt": rec.stage_attempt,
        "jobAttempt": rec.job_attempt,
        "definition": {
            "_links": {"web": {"href": f"{base}/_build/definition?definitionId={rec.pipeline_id}"},
                       "self": {"href": f"{base}/_apis/build/Definitions/{rec.pipeline_id}"}},
            "id": rec.pipeline_id,
            "name": rec.pipeline_name,
        },
        "owner": {
            "_links": {"web": {"href": f"{base}/_build/results?buildId={rec.run_id}"},
                       "self": {"href": f"{base}/_apis/build/Builds/{rec.run_id}"}},
            "id": rec.run_id,
            "name": rec.run_name,
        },
        "queueTime": format_time(rec.queue_time),
    }
    if rec.start_time <= ctx.now:
        j["startTime"] = format_time(rec.start_time)
    if rec.result is not None and rec.finish_time is not None and rec.finish_time <= ctx.now:
        j["finishTime"] = format_time(rec.finish_time)
        j["result"] = rec.result
    return j


def _records(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET {project}/_apis/distributedtask/environments/{id}/environmentdeploymentrecords."""
    assert ctx.project is not None
    d = em.data(ctx.org)
    env = d.environments.get(int(m.group(1)))
    if env is None or env.project_id != ctx.project.id:
        raise ApiError(404, f"Environment with id {m.group(1)} does not exist.", "EnvironmentNotFoundException")
    top = min(ctx.int_param("top", DEFAULT_TOP, minimum=1) or DEFAULT_TOP, MAX_TOP)
    token = ctx.int_param("continuationToken")
    with ctx.org.lock:
        explicit_from = min((r.queue_time for r in d.explicit if r.environment_id == env.id), default=ctx.now)
    floor = min(ctx.org.epoch - em.MAX_SPAN, explicit_from) - 1
    hi = ctx.now
    if token is not None:
        hi = min(hi, (token // 64) / 1000 + 1)
    found: dict[int, em.Record] = {}
    while hi > floor:
        lo = hi - _WALK
        for rec in em.records(ctx.org, env.id, lo, hi):
            if rec.queue_time <= ctx.now and (token is None or rec.id <= token):
                found[rec.id] = rec
        hi = lo
        if len(found) > top:
            break
    ordered = sorted(found.values(), key=lambda r: r.id, reverse=True)
    page, rest = ordered[:top], ordered[top:]
    return list_response([record_json(ctx, r) for r in page], str(rest[0].id) if rest else None)


ROUTES = [
    Route("GET", r"/_apis/distributedtask/environments/?", _environments, name="environments"),
    Route("GET", r"/_apis/distributedtask/environments/(\d+)/environmentdeploymentrecords/?", _records,
          name="environment_records"),
]

"""Agent pools of the simulated REST API (organization level, no project in the path).

``distributedtask/pools`` and ``pools/{id}/agents`` are single calls without paging.
``pools/{id}/jobrequests`` is undocumented in Azure DevOps; its quirks (NOTES §2.12) are kept:
preview-only api-version; ``completedRequestCount=0`` returns only unfinished requests (queued and
running) in one answer; without it the finished history comes too, newest first, with ``$top`` capped
at 200 and header continuation (and ``$top`` wins over ``completedRequestCount``).
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator import pools_model as pm
from exporter.simulator.model import format_time
from exporter.simulator.server import ApiContext, ApiError, ApiResponse, Route, list_response

JOBREQUESTS_CAP = 200
SERVICE_OWNER = "00025394-6065-48ca-87d9-7f5672854ef7"


def _pool(ctx: ApiContext, pool_id: str) -> pm.Pool:
    p = pm.data(ctx.org).pools.get(int(pool_id))
    if p is None:
        raise ApiError(404, f"No agent pool found with identifier {pool_id}.", "TaskAgentPoolNotFoundException")
    return p


def _pools(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET /_apis/distributedtask/pools."""
    with ctx.org.lock:
        pools = sorted(pm.data(ctx.org).pools.values(), key=lambda p: p.id)
    name = ctx.param("poolName")
    if name:
        pools = [p for p in pools if p.name.lower() == name.lower()]
    pool_type = ctx.param("poolType")
    if pool_type:
        pools = [p for p in pools if p.pool_type.lower() == pool_type.lower()]
    items = [{"createdOn": format_time(p.created), "autoProvision": p.hosted, "autoUpdate": True, "autoSize": True,
              "targetSize": None, "agentCloudId": 1 if p.hosted else None, "createdBy": None, "owner": None,
              "id": p.id, "scope": "0ee4c3e6-73f2-4c3b-9b52-2a2a2a2a2a2a", "name": p.name, "isHosted": p.hosted,
              "poolType": p.pool_type, "size": len(p.agents), "isLegacy": False, "options": "none"}
             for p in pools]
    return list_response(items)


def _agent_ref(ctx: ApiContext, p: pm.Pool, a: pm.Agent) -> dict[str, Any]:
    return {
        "_links": {"self": {"href": f"{ctx.base_url}/_apis/distributedTask/pools/{p.id}/agents/{a.id}"},
                   "web": {"href": f"{ctx.base_url}/_settings/agentpools?agentId={a.id}&poolId={p.id}"}},
        "id": a.id, "name": a.name, "version": "3.236.1",
        "osDescription": "Microsoft Windows 10.0.20348" if "windows" in p.name.lower()
        else "Linux 5.15.0-1057-azure #65-Ubuntu SMP",
        "enabled": a.enabled, "status": "online" if a.online else "offline",
        "provisioningState": "Provisioned", "accessPoint": "CodexAccessMapping",
    }


def _request_json(ctx: ApiContext, p: pm.Pool, r: pm.JobRequest, agents: dict[int, pm.Agent]) -> dict[str, Any]:
    j: dict[str, Any] = {"requestId": r.id, "queueTime": format_time(r.queue_time)}
    if r.assign_time is not None and r.assign_time <= ctx.now:
        j["assignTime"] = format_time(r.assign_time)
        j["receiveTime"] = format_time(r.assign_time + 1.5)
        j["lockedUntil"] = format_time(ctx.now + 900)
    finished = r.result is not None and r.finish_time is not None and r.finish_time <= ctx.now
    if finished:
        assert r.finish_time is not None
        j["finishTime"] = format_time(r.finish_time)
        j["result"] = r.result
    j.update({
        "serviceOwner": SERVICE_OWNER, "hostId": "0ee4c3e6-73f2-4c3b-9b52-2a2a2a2a2a2a",
        "planType": "Build", "planId": f"{r.id:08x}-0000-4000-8000-{r.run_id:012x}",
        "jobId": f"{r.id:08x}-1111-4000-8000-{r.id:012x}", "jobName": r.job_name,
        "demands": ["Agent.Version -gtVersion 3.232.1"],
        "definition": {"id": r.pipeline_id, "name": r.pipeline_name, "_links": {}},
        "owner": {"id": r.run_id, "name": str(r.run_id), "_links": {}},
        "data": {"ParallelismTag": "Private", "IsScheduledKey": "False"},
        "poolId": p.id, "priority": 0,
    })
    agent = agents.get(r.agent_id) if r.agent_id is not None and "assignTime" in j else None
    if agent is not None:
        j["reservedAgent"] = _agent_ref(ctx, p, agent)
    elif not finished:
        j["matchedAgents"] = [_agent_ref(ctx, p, a) for a in p.agents[:3] if a.enabled]
    return j


def _agents(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET /_apis/distributedtask/pools/{id}/agents (includeAssignedRequest adds the running job)."""
    p = _pool(ctx, m.group(1))
    with ctx.org.lock:
        agents = list(p.agents)
    name = ctx.param("agentName")
    if name:
        agents = [a for a in agents if a.name.lower() == name.lower()]
    busy = pm.busy_agents(ctx.org, p, ctx.now) if ctx.bool_param("includeAssignedRequest") else {}
    by_id = {a.id: a for a in agents}
    items = []
    for a in agents:
        j = _agent_ref(ctx, p, a)
        j.update({"maxParallelism": 1, "createdOn": format_time(a.created),
                  "statusChangedOn": format_time(a.created), "authorization": {"clientId": f"{a.id:032x}"}})
        if a.id in busy:
            j["assignedRequest"] = _request_json(ctx, p, busy[a.id], by_id)
        items.append(j)
    return list_response(items)


def _jobrequests(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET /_apis/distributedtask/pools/{id}/jobrequests (undocumented; see the module docstring)."""
    p = _pool(ctx, m.group(1))
    agents = {a.id: a for a in p.agents}
    reqs = pm.job_requests(ctx.org, p, ctx.now)
    top = ctx.int_param("$top", None, minimum=1)
    if top is None and ctx.param("completedRequestCount") == "0":
        unfinished = [r for r in reqs if not (r.result is not None and r.finish_time is not None
                                              and r.finish_time <= ctx.now)]
        return list_response([_request_json(ctx, p, r, agents) for r in unfinished])
    top = min(top or JOBREQUESTS_CAP, JOBREQUESTS_CAP)
    token = ctx.int_param("continuationToken")
    if token is not None:
        reqs = [r for r in reqs if r.id <= token]
    page, rest = reqs[:top], reqs[top:]
    return list_response([_request_json(ctx, p, r, agents) for r in page], str(rest[0].id) if rest else None)


ROUTES = [
    Route("GET", r"/_apis/distributedtask/pools/?", _pools, scope="org", name="pools"),
    Route("GET", r"/_apis/distributedtask/pools/(\d+)/agents/?", _agents, scope="org", name="agents"),
    Route("GET", r"/_apis/distributedtask/pools/(\d+)/jobrequests/?", _jobrequests, scope="org", preview=True,
          name="jobrequests"),
]

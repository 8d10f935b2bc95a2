"""Audit area of the simulated REST API: ``/_apis/audit/auditlog`` on the organization (audit) base.

The answer is the ``AuditLogQueryResult`` object at top level (``decoratedAuditLogEntries``,
``continuationToken``, ``hasMore``; see ``azdo-api/examples/reconstructed/audit``), newest first.
``startTime`` is inclusive, ``endTime`` exclusive (default: now; ``startTime`` defaults to a week before
``endTime``), ``batchSize`` default 200, at most 1000. The continuation token is the id of the last
entry returned; it is set on every page, also the last one (as in Azure DevOps' own example), so a
client must loop on ``hasMore``. api-version must be ``…-preview``.

When the log cannot be read (``audit_model.set_mode``), the answers approximate Azure DevOps'
(unverified against a live organization; see docs/review-and-audit.md):
``forbidden`` 403 AccessCheckException, ``disabled`` 400, ``unavailable`` 404.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator.audit_model import AuditEntry, audit_data, entries
from exporter.simulator.model import DAY, format_ticks
from exporter.simulator.server import ApiContext, ApiError, ApiResponse, Route

DEFAULT_BATCH = 200
MAX_BATCH = 1000
_ORG_SCOPE_ID = "73638cd5-0dda-4128-9fd6-48c16d4e4de3"


def entry_json(ctx: ApiContext, e: AuditEntry) -> dict[str, Any]:
    activity = e.id.rsplit(";", 1)[-1]
    service = e.actor.unique_name is None
    j: dict[str, Any] = {
        "id": e.id,
        "correlationId": activity,
        "activityId": activity,
        "actorCUID": e.actor.id,
        "actorUserId": e.actor.id,
        "actorClientId": "00000000-0000-0000-0000-000000000000",
        "actorUPN": e.actor.unique_name,
        "authenticationMechanism": "" if service else "FedAuth",
        "timestamp": format_ticks(e.ticks),
        "scopeType": "organization",
        "scopeDisplayName": f"{ctx.org.name} (Organization)",
        "scopeId": _ORG_SCOPE_ID,
        "projectId": e.project_id,
        "projectName": e.project_name,
        "ipAddress": None if service else "203.0.113.10",
        "userAgent": "" if service else "Mozilla/5.0 (simulated)",
        "actionId": e.action_id,
        "data": dict(e.data),
        "details": e.details,
        "area": e.area,
        "category": e.category,
        "categoryDisplayName": e.category.capitalize(),
        "actorDisplayName": e.actor.display_name,
        "actorImageUrl": None,
    }
    return j


def _check_mode(ctx: ApiContext) -> None:
    mode = audit_data(ctx.org).mode
    if mode == "forbidden":
        raise ApiError(403, "Access Denied: the caller needs the following permission(s) on the resource "
                       "AuditLog to perform this action: View audit log",
                       "AccessCheckException",
                       "Microsoft.VisualStudio.Services.Security.AccessCheckException, "
                       "Microsoft.VisualStudio.Services.WebApi")
    if mode == "disabled":
        raise ApiError(400, "Auditing is not enabled for this organization. Turn on Log Audit Events in "
                       "Organization settings > Policies.", "AuditLogDisabledException")
    if mode == "unavailable":
        raise ApiError(404, "Auditing is only available for organizations backed by Microsoft Entra ID.",
                       "NotFoundException")


def _auditlog(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    _check_mode(ctx)
    end = ctx.time_param("endTime")
    hi = ctx.now if end is None else end / 1e7
    start = ctx.time_param("startTime")
    lo = hi - 7 * DAY if start is None else start / 1e7
    batch = min(ctx.int_param("batchSize", DEFAULT_BATCH, minimum=1) or DEFAULT_BATCH, MAX_BATCH)
    found = entries(ctx.org, lo, hi, ctx.now)
    token = ctx.param("continuationToken")
    if token is not None:
        if not re.fullmatch(r"\d{19};[^;]+;[^;]+", token):
            raise ApiError(400, "The continuation token is not valid.", "ArgumentException")
        found = [e for e in found if e.id > token]
    page = found[:batch]
    body = {
        "decoratedAuditLogEntries": [entry_json(ctx, e) for e in page],
        "continuationToken": page[-1].id if page else token,
        "hasMore": len(found) > batch,
    }
    return ApiResponse(body=body)


ROUTES = [Route("GET", r"/_apis/audit/auditlog/?", _auditlog, scope="org", preview=True, name="auditlog")]

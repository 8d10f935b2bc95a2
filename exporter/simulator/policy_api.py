"""Policy area of the simulated REST API: ``{project}/_apis/policy/configurations``.

Shape follows ``azdo-api/examples/policy``. Paged with the ``x-ms-continuationtoken`` header: the token
is the id of the first configuration of the next page; ``$top`` (default and maximum 100 here) and
``policyType`` are honoured. Deleted configurations are listed with ``isDeleted: true``.
"""

from __future__ import annotations

import re
from typing import Any

from exporter.simulator.model import PEOPLE, Project, format_time
from exporter.simulator.policy_model import TYPE_NAMES, PolicyConfiguration, configurations
from exporter.simulator.server import ApiContext, ApiResponse, Route, identity_json, list_response

DEFAULT_TOP = 100


def configuration_json(ctx: ApiContext, c: PolicyConfiguration, p: Project) -> dict[str, Any]:
    url = f"{ctx.base_url}/{p.id}/_apis/policy/configurations/{c.id}"
    type_url = f"{ctx.base_url}/{p.id}/_apis/policy/types/{c.type_id}"
    settings = dict(c.settings)
    settings["scope"] = [s.json() for s in c.scopes]
    return {
        "createdBy": identity_json(ctx, PEOPLE[c.id % len(PEOPLE)]),
        "createdDate": format_time(c.created),
        "isEnabled": c.is_enabled,
        "isBlocking": c.is_blocking,
        "isDeleted": c.is_deleted,
        "isEnterpriseManaged": False,
        "settings": settings,
        "_links": {"self": {"href": url}, "type": {"href": type_url}},
        "revision": c.revision,
        "id": c.id,
        "url": url,
        "type": {"id": c.type_id, "url": type_url, "displayName": TYPE_NAMES.get(c.type_id, "Policy")},
    }


def _configurations(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    assert ctx.project is not None
    p = ctx.project
    top = min(ctx.int_param("$top", DEFAULT_TOP, minimum=1) or DEFAULT_TOP, DEFAULT_TOP)
    start = ctx.int_token(0)
    wanted_type = (ctx.param("policyType") or "").lower()
    found = [c for c in configurations(ctx.org, p.id)
             if c.id >= start and (not wanted_type or c.type_id == wanted_type)]
    page, rest = found[:top], found[top:]
    return list_response([configuration_json(ctx, c, p) for c in page], str(rest[0].id) if rest else None)


ROUTES = [Route("GET", r"/_apis/policy/configurations/?", _configurations, name="policies")]

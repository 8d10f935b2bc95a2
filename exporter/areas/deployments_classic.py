"""Classic release deployments, one source of the deployments area (see deployments.py).

Per project and cycle: one release definitions listing (`$expand=environments`: every stage's series
exists from the start), and the stage attempts started since the watermark (ascending), reaching back
to the oldest one still in progress. One item of `release/deployments` is one deployment.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.areas.base import read_since
from exporter.areas.dora import Deployment, LabelKey
from exporter.areas.projects import Project
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import NotFoundError
from exporter.azdo.records import ReleaseDeployment
from exporter.config.settings import Config

# Deployments starting just before the watermark may be recorded late; re-read a margin, dedupe by id.
WATERMARK_OVERLAP = 600.0
_CANCELED_OPERATIONS = {"canceled", "phasecanceled", "cancelling"}
_FINAL_STATUSES = {"succeeded": "succeeded", "partiallysucceeded": "partially_succeeded", "failed": "failed"}


def classic_result(item: ReleaseDeployment) -> tuple[str | None, float | None, bool]:
    """(result label, finish time, pending) of a release deployment.

    Pending: still running (re-read later). A result of None with pending False: never deployed
    (approval rejected, gate failed, undefined) — not a deployment.
    """
    status, operation, finish = item.deployment_status, item.operation_status, item.completed
    if status == "inprogress":
        return None, None, True
    done = status in _FINAL_STATUSES or operation in _CANCELED_OPERATIONS
    if done and finish is None:
        finish = item.last_modified
        if finish is None:
            return None, None, True
    if operation in _CANCELED_OPERATIONS and status in ("notdeployed", "failed", "undefined", ""):
        return "canceled", finish, False
    if status in _FINAL_STATUSES:
        return _FINAL_STATUSES[status], finish, False
    return None, None, False


@dataclass
class ClassicFetched:
    labels: set[LabelKey]  # the stages of the listed definitions, and of new deployments
    pipelines: set[str]  # the listed definitions that the `pipelines` filter admits
    new: list[Deployment]
    watermark: float | None  # latest start seen
    pending: dict[int, float]  # deployment id -> started, of those still running


def fetch_classic(api: AzureDevOpsApi, config: Config, project: Project, *, loaded: bool, watermark: float | None,
                  pending: Mapping[int, float], known: Container[tuple[Any, ...]],
                  window_start: float) -> ClassicFetched:
    """Read one project's classic deployments; `known`: the keys of the deployments already counted."""
    labels: set[LabelKey] = set()
    pipelines: set[str] = set()
    try:
        for definition in api.release_definitions(project.id):
            label = definition.label
            if definition.deleted or not config.pipelines.matches(label):
                continue
            pipelines.add(label)
            labels.update(("classic", label, stage) for stage in definition.stages)
    except NotFoundError:
        return ClassicFetched(set(), set(), [], watermark, {})  # no release management in this project
    since = read_since(window_start, watermark if loaded else None, WATERMARK_OVERLAP, pending.values())
    new: list[Deployment] = []
    still_pending: dict[int, float] = {}
    seen: set[int] = set()
    for item in api.release_deployments(project.id, since):
        dep_id, started = item.id, item.started
        if dep_id in seen:
            continue
        seen.add(dep_id)
        watermark = started if watermark is None else max(watermark, started)
        if ("classic", dep_id) in known:
            continue
        pipeline, env = item.label, item.stage
        if pipeline is None or env is None or not config.pipelines.matches(pipeline):
            continue
        result, finish, is_pending = classic_result(item)
        if is_pending:
            still_pending[dep_id] = started
            continue
        if result is None or finish is None or finish < window_start:
            continue
        artifact = item.artifact_build  # its project is the release's own when not named
        run = (project.id if artifact[0] is None else artifact[0], artifact[1]) if artifact is not None else None
        new.append(Deployment(("classic", dep_id), "classic", pipeline, env, result, finish, run))
        labels.add(("classic", pipeline, env))
    return ClassicFetched(labels, pipelines, new, watermark, still_pending)

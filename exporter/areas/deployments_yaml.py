"""YAML environment deployments, one source of the deployments area (see deployments.py).

Per project and cycle: one environments listing, and per environment its deployment records newest
first, down to the highest record already read (or the oldest one still running); one build
definitions listing when the project has environments (pipeline labels and the `pipelines` filter).
One deployment is one (run, stage, stage attempt) of a pipeline in an environment, however many
deployment-job records it left there; it counts once all its jobs have finished.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.areas.dora import Deployment, LabelKey
from exporter.areas.projects import Project
from exporter.azdo.api import AzureDevOpsApi
from exporter.config.settings import Config
from exporter.metrics.families import DAY

# Records are read newest first; on the first load, stop this long before the window's start (a
# deployment that finished in the window may have started before it).
RECORD_MARGIN = DAY

Group = tuple[int, str, int]  # run id, stage, stage attempt
GroupKey = tuple[int, int, str, int]  # environment id, run id, stage, stage attempt
GroupMeta = tuple[str, str, float]  # pipeline label, environment name, queued


@dataclass
class PendingJob:
    finish: float | None
    result: str | None  # camelCase Azure DevOps job result; None while running


PendingGroups = dict[int, dict[Group, dict[int, PendingJob]]]  # environment id -> group -> record id -> job


def yaml_result(jobs: Iterable[PendingJob]) -> str | None:
    """The result of a YAML deployment from its jobs' results; None when every job was skipped."""
    results = {str(j.result).lower() for j in jobs}
    if results & {"failed", "abandoned"}:
        return "failed"
    if "canceled" in results:
        return "canceled"
    if "succeededwithissues" in results:
        return "partially_succeeded"
    if "succeeded" in results:
        return "succeeded"
    return None


@dataclass
class YamlFetched:
    environments: dict[int, str]
    pipelines: set[str]  # labels of the pipelines the `pipelines` filter admits
    new: list[Deployment]
    record_marks: dict[int, int]  # environment id -> highest record id read
    pending: PendingGroups  # groups with a job still running
    meta: dict[GroupKey, GroupMeta]  # of the pending groups
    labels: set[LabelKey]  # pipeline/environment pairs seen


def _pipeline_labels(api: AzureDevOpsApi, config: Config, project: Project) -> dict[int, str]:
    """Build definition id -> `folder/name`, for the pipelines the `pipelines` filter admits."""
    labels: dict[int, str] = {}
    for definition in api.build_definitions(project.id, all_properties=False):
        if config.pipelines.matches(definition.label):
            labels[definition.id] = definition.label
    return labels


def fetch_yaml(api: AzureDevOpsApi, config: Config, project: Project, *, loaded: bool,
               record_marks: Mapping[int, int], pending: PendingGroups, meta: Mapping[GroupKey, GroupMeta],
               known: Container[tuple[Any, ...]], window_start: float, now: float) -> YamlFetched:
    """Read one project's YAML deployments; `known`: the keys of the deployments already counted."""
    environments = {environment.id: environment.name for environment in api.environments(project.id)}
    if not environments:
        return YamlFetched({}, set(), [], {}, {}, {}, set())
    pipelines = _pipeline_labels(api, config, project)
    marks: dict[int, int] = {}
    pending_all: PendingGroups = {}
    new_meta: dict[GroupKey, GroupMeta] = {}
    new: list[Deployment] = []
    labels: set[LabelKey] = set()
    for env_id, env_name in environments.items():
        held = {g: dict(jobs) for g, jobs in pending.get(env_id, {}).items()} if loaded else {}
        mark = record_marks.get(env_id) if loaded else None
        stop = None
        if mark is not None:
            stop = min([mark, *(rid for jobs in held.values() for rid in jobs)])
        top_id = mark
        for record in api.environment_deployment_records(project.id, env_id):
            rec_id, queued = record.id, record.queued
            if stop is not None and rec_id < stop:
                break  # read down to what the last cycle read (no further page is requested)
            if stop is None and queued is not None and queued < window_start - RECORD_MARGIN:
                break
            top_id = rec_id if top_id is None else max(top_id, rec_id)
            run_id, pipeline_id, stage = record.run_id, record.definition_id, record.stage
            if run_id is None or pipeline_id is None or stage is None:
                continue
            label = pipelines.get(pipeline_id)
            if label is None:
                continue  # pipeline deleted or filtered out
            group = (run_id, stage, record.stage_attempt)
            if ("yaml", env_id, *group) in known:
                continue
            finish = record.finish if record.result is not None else None
            held.setdefault(group, {})[rec_id] = PendingJob(finish, record.result if finish is not None else None)
            new_meta[(env_id, *group)] = (label, env_name, queued or now)
            labels.add(("yaml", label, env_name))  # its series exist from now on
        if top_id is not None:
            marks[env_id] = top_id
        still_pending: dict[Group, dict[int, PendingJob]] = {}
        for group, jobs in held.items():
            key = (env_id, *group)
            label_env = new_meta.get(key) or meta.get(key)
            if label_env is None:
                continue
            new_meta[key] = label_env
            if any(j.result is None for j in jobs.values()):
                if label_env[2] >= window_start - RECORD_MARGIN:
                    still_pending[group] = jobs  # still running: re-read next cycle
                continue
            result = yaml_result(jobs.values())
            finish = max(j.finish for j in jobs.values() if j.finish is not None)
            if result is None or finish < window_start:
                continue
            new.append(Deployment(("yaml", *key), "yaml", label_env[0], env_name, result, finish,
                                  (project.id, group[0])))
            labels.add(("yaml", label_env[0], env_name))
        pending_all[env_id] = still_pending
        new_meta = {k: v for k, v in new_meta.items() if k[0] != env_id or k[1:] in still_pending}
    return YamlFetched(environments, set(pipelines.values()), new, marks, pending_all, new_meta, labels)

"""The deployments area: classic release deployments and YAML environment deployments, DORA inputs.

SPEC §4 "Delivery"; semantics in docs/delivery.md. One deployment is one attempt: a classic stage
attempt (one item of `release/deployments`), or one (run, stage, stage attempt) of a YAML pipeline,
however many deployment-job records it left in the environment. A deployment counts once, when it
has finished; in-progress ones are remembered and re-read until they finish.

Per project and cycle:
- one release definitions listing (`$expand=environments`: every stage's series exists from start),
- the release deployments started since the watermark (`minStartedTime`, ascending, continuation),
  reaching back to the oldest deployment still in progress,
- one environments listing, and per environment its deployment records newest first, down to the
  highest record already read (or the oldest one still running),
- one build definitions listing when the project has environments (pipeline labels and filter),
- one build-changes call per newly deployed run of a successful production deployment (cached).
The first cycle reads the lookback window. A project's cycle fetches everything first and applies it
only if every request succeeded, so a failed project keeps its last good numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.areas.projects import Project, ProjectDirectory, refresh_each_project
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import NotFoundError
from exporter.azdo.records import ReleaseDeployment
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.metrics.families import (
    DAY,
    HOUR,
    MINUTE,
    TIME_TO_FIX_BUCKETS,
    HistogramData,
)

log = logging.getLogger(__name__)

KINDS = ("classic", "yaml")
RESULT_LABEL_VALUES = ("succeeded", "partially_succeeded", "failed", "canceled")
LEAD_TIME_BUCKETS = (15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY, 2 * DAY, 7 * DAY,
                     14 * DAY, 30 * DAY)
TIME_TO_RESTORE_BUCKETS = TIME_TO_FIX_BUCKETS
# Deployments starting just before the watermark may be recorded late; re-read a margin, dedupe by id.
WATERMARK_OVERLAP = 600.0
# Records are read newest first; on the first load, stop this long before the window's start (a
# deployment that finished in the window may have started before it).
RECORD_MARGIN = DAY
_CANCELED_OPERATIONS = {"canceled", "phasecanceled", "cancelling"}
_FINAL_STATUSES = {"succeeded": "succeeded", "partiallysucceeded": "partially_succeeded", "failed": "failed"}

LabelKey = tuple[str, str, str]  # kind, pipeline, environment
RunRef = tuple[str, int]  # project id, build id


@dataclass(frozen=True)
class Deployment:
    key: tuple[Any, ...]  # ("classic", deployment id) or ("yaml", environment id, run id, stage, attempt)
    kind: str
    pipeline: str
    environment: str
    result: str  # label value
    finish: float
    run: RunRef | None  # the deployed build, for its changes

    @property
    def labels(self) -> LabelKey:
        return self.kind, self.pipeline, self.environment


@dataclass
class PendingJob:
    finish: float | None
    result: str | None  # camelCase Azure DevOps job result; None while running


@dataclass
class ProjectState:
    """What is known about one project's deployments; mutated only by the refresh thread."""

    project: Project
    loaded: bool = False
    classic_watermark: float | None = None
    classic_pending: dict[int, float] = field(default_factory=dict)  # deployment id -> started
    record_marks: dict[int, int] = field(default_factory=dict)  # environment id -> highest record id read
    # environment id -> (run, stage, attempt) -> record id -> job; groups with a job still running
    yaml_pending: dict[int, dict[tuple[int, str, int], dict[int, PendingJob]]] = field(default_factory=dict)
    yaml_meta: dict[tuple[int, int, str, int], tuple[str, str, float]] = field(default_factory=dict)
    environments: dict[int, str] = field(default_factory=dict)
    deployments: dict[tuple[Any, ...], Deployment] = field(default_factory=dict)  # finished, in the window
    lead_times: dict[tuple[Any, ...], float] = field(default_factory=dict)
    known: set[LabelKey] = field(default_factory=set)
    totals: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    lead_hist: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    last_success: dict[LabelKey, float] = field(default_factory=dict)


@dataclass
class _Fetched:
    classic_labels: set[LabelKey]
    classic_pipelines: set[str]
    yaml_pipelines: set[str]
    environments: dict[int, str]
    new: list[Deployment]
    classic_watermark: float | None
    classic_pending: dict[int, float]
    record_marks: dict[int, int]
    yaml_pending: dict[int, dict[tuple[int, str, int], dict[int, PendingJob]]]
    yaml_meta: dict[tuple[int, int, str, int], tuple[str, str, float]]
    yaml_labels: set[LabelKey]
    lead_times: dict[tuple[Any, ...], float]


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


class DeploymentsArea:
    """Refreshes deployments of every admitted project and publishes their metric families."""

    name = m.AREA_DEPLOYMENTS

    def __init__(self, config: Config, api: AzureDevOpsApi, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._api = api
        self._projects = projects
        self._clock = clock
        self.interval = config.intervals.deployments
        self._states: dict[str, ProjectState] = {}
        self._families: list[Metric] = []
        # (project id, build id) -> [(commit id, commit time)] of the build's changes; one call per run
        self._changes: dict[RunRef, list[tuple[str, float]]] = {}

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        now = self._clock()
        self._states, failures = refresh_each_project(
            self._projects.projects(), self._states, lambda project, state: self._refresh_project(project, state, now))
        used = {d.run for s in self._states.values() for d in s.deployments.values() if d.run is not None}
        for ref in [r for r in self._changes if r not in used]:
            del self._changes[ref]
        self._publish(now)
        failures.raise_if_any()

    def _refresh_project(self, project: Project, state: ProjectState | None, now: float) -> ProjectState:
        state = state or ProjectState(project)
        state.project = project
        fetched = self._fetch(state, now)
        self._apply(state, fetched, now)
        return state

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        classic_labels, classic_pipelines, new, watermark, pending = self._fetch_classic(state, now)
        environments, yaml_pipelines, yaml_new, marks, yaml_pending, yaml_meta, yaml_labels = \
            self._fetch_yaml(state, now)
        new += yaml_new
        lead_times = self._lead_times(state, new)
        return _Fetched(classic_labels, classic_pipelines, yaml_pipelines, environments, new, watermark, pending,
                        marks, yaml_pending, yaml_meta, yaml_labels, lead_times)

    # -- classic releases ------------------------------------------------------------------------

    def _fetch_classic(self, state: ProjectState, now: float) \
            -> tuple[set[LabelKey], set[str], list[Deployment], float | None, dict[int, float]]:
        project = state.project
        labels: set[LabelKey] = set()
        pipelines: set[str] = set()
        try:
            for definition in self._api.release_definitions(project.id):
                label = definition.label
                if definition.deleted or not self._config.pipelines.matches(label):
                    continue
                pipelines.add(label)
                labels.update(("classic", label, stage) for stage in definition.stages)
        except NotFoundError:
            return set(), set(), [], state.classic_watermark, {}  # no release management in this project
        window_start = now - self._config.lookback
        since = window_start
        if state.loaded and state.classic_watermark is not None:
            since = max(window_start, min([state.classic_watermark - WATERMARK_OVERLAP,
                                           *state.classic_pending.values()]))
        new: list[Deployment] = []
        pending: dict[int, float] = {}
        watermark = state.classic_watermark
        seen: set[int] = set()
        for item in self._api.release_deployments(project.id, since):
            dep_id, started = item.id, item.started
            if dep_id in seen:
                continue
            seen.add(dep_id)
            watermark = started if watermark is None else max(watermark, started)
            if ("classic", dep_id) in state.deployments:
                continue
            pipeline, env = item.label, item.stage
            if pipeline is None or env is None or not self._config.pipelines.matches(pipeline):
                continue
            result, finish, is_pending = classic_result(item)
            if is_pending:
                pending[dep_id] = started
                continue
            if result is None or finish is None or finish < window_start:
                continue
            artifact = item.artifact_build  # its project is the release's own when not named
            run = (project.id if artifact[0] is None else artifact[0], artifact[1]) if artifact is not None else None
            new.append(Deployment(("classic", dep_id), "classic", pipeline, env, result, finish, run))
            labels.add(("classic", pipeline, env))
        return labels, pipelines, new, watermark, pending

    # -- YAML environments -----------------------------------------------------------------------

    def _fetch_yaml(self, state: ProjectState, now: float) -> tuple[
            dict[int, str], set[str], list[Deployment], dict[int, int],
            dict[int, dict[tuple[int, str, int], dict[int, PendingJob]]],
            dict[tuple[int, int, str, int], tuple[str, str, float]], set[LabelKey]]:
        project = state.project
        environments: dict[int, str] = {}
        for environment in self._api.environments(project.id):
            environments[environment.id] = environment.name
        if not environments:
            return {}, set(), [], {}, {}, {}, set()
        pipelines = self._pipeline_labels(project)
        window_start = now - self._config.lookback
        marks: dict[int, int] = {}
        pending_all: dict[int, dict[tuple[int, str, int], dict[int, PendingJob]]] = {}
        meta: dict[tuple[int, int, str, int], tuple[str, str, float]] = {}
        new: list[Deployment] = []
        labels: set[LabelKey] = set()
        for env_id, env_name in environments.items():
            held = {g: dict(jobs) for g, jobs in state.yaml_pending.get(env_id, {}).items()} if state.loaded else {}
            mark = state.record_marks.get(env_id) if state.loaded else None
            stop = None
            if mark is not None:
                stop = min([mark, *(rid for jobs in held.values() for rid in jobs)])
            top_id = mark
            for record in self._api.environment_deployment_records(project.id, env_id):
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
                if ("yaml", env_id, *group) in state.deployments:
                    continue
                finish = record.finish if record.result is not None else None
                held.setdefault(group, {})[rec_id] = PendingJob(finish, record.result if finish is not None else None)
                meta[(env_id, *group)] = (label, env_name, queued or now)
                labels.add(("yaml", label, env_name))  # its series exist from now on
            if top_id is not None:
                marks[env_id] = top_id
            pending: dict[tuple[int, str, int], dict[int, PendingJob]] = {}
            for group, jobs in held.items():
                key = (env_id, *group)
                label_env = meta.get(key) or state.yaml_meta.get(key)
                if label_env is None:
                    continue
                meta[key] = label_env
                if any(j.result is None for j in jobs.values()):
                    if label_env[2] >= window_start - RECORD_MARGIN:
                        pending[group] = jobs  # still running: re-read next cycle
                    continue
                result = yaml_result(jobs.values())
                finish = max(j.finish for j in jobs.values() if j.finish is not None)
                if result is None or finish < window_start:
                    continue
                new.append(Deployment(("yaml", *key), "yaml", label_env[0], env_name, result, finish,
                                      (project.id, group[0])))
                labels.add(("yaml", label_env[0], env_name))
            pending_all[env_id] = pending
            meta = {k: v for k, v in meta.items() if k[0] != env_id or k[1:] in pending}
        return environments, set(pipelines.values()), new, marks, pending_all, meta, labels

    def _pipeline_labels(self, project: Project) -> dict[int, str]:
        """Build definition id -> `folder/name`, for the pipelines the `pipelines` filter admits."""
        labels: dict[int, str] = {}
        for definition in self._api.build_definitions(project.id, all_properties=False):
            if self._config.pipelines.matches(definition.label):
                labels[definition.id] = definition.label
        return labels

    # -- lead time -------------------------------------------------------------------------------

    def _lead_times(self, state: ProjectState, new: list[Deployment]) -> dict[tuple[Any, ...], float]:
        """Lead time of each new successful production deployment (see docs/delivery.md)."""
        production = self._config.production_environment
        wanted = [d for d in new if d.result == "succeeded" and d.run is not None and production(d.environment)]
        if not wanted:
            return {}
        successes: dict[tuple[str, str], list[Deployment]] = {}
        for d in [*state.deployments.values(), *new]:
            if d.result == "succeeded" and production(d.environment):
                successes.setdefault((d.pipeline, d.environment), []).append(d)
        for items in successes.values():
            items.sort(key=lambda d: (d.finish, d.key))
        out: dict[tuple[Any, ...], float] = {}
        for d in wanted:
            assert d.run is not None
            items = successes[(d.pipeline, d.environment)]
            index = items.index(d)
            previous = items[index - 1] if index > 0 else None
            commits = self._run_changes(d.run)
            known: set[str] = set()
            if previous is not None and previous.run is not None:
                if previous.run == d.run:
                    continue  # a redeployment of the same run brings no change
                known = {sha for sha, _ in self._run_changes(previous.run)}
            times = [t for sha, t in commits if sha not in known]
            if times:
                out[d.key] = max(0.0, d.finish - min(times))
        return out

    def _run_changes(self, run: RunRef) -> list[tuple[str, float]]:
        cached = self._changes.get(run)
        if cached is not None:
            return cached
        project_id, build_id = run
        try:
            changes = [(change.id, change.timestamp) for change in self._api.build_changes(project_id, build_id)]
        except NotFoundError:
            changes = []  # the run was deleted
        self._changes[run] = changes
        return changes

    # -- apply -------------------------------------------------------------------------------------

    def _apply(self, state: ProjectState, fetched: _Fetched, now: float) -> None:
        steady = state.loaded
        window_start = now - self._config.lookback
        state.classic_watermark = fetched.classic_watermark
        state.classic_pending = fetched.classic_pending
        state.record_marks = fetched.record_marks
        state.yaml_pending = fetched.yaml_pending
        state.yaml_meta = fetched.yaml_meta
        state.environments = fetched.environments
        for deployment in sorted(fetched.new, key=lambda d: (d.finish, d.key)):
            if deployment.key in state.deployments:
                continue
            state.deployments[deployment.key] = deployment
            labels = deployment.labels
            if deployment.result == "succeeded":
                state.last_success[labels] = max(state.last_success.get(labels, 0.0), deployment.finish)
            lead = fetched.lead_times.get(deployment.key)
            if lead is not None:
                state.lead_times[deployment.key] = lead
            if steady:
                self._init_series(state, labels)
                state.totals[(*labels, deployment.result)] += 1
                if lead is not None:
                    state.lead_hist[(deployment.pipeline, deployment.environment)].observe(lead)
        for key in [k for k, d in state.deployments.items() if d.finish < window_start]:
            del state.deployments[key]
            state.lead_times.pop(key, None)
        # Known label sets: classic stages of listed definitions, YAML pipeline/environment pairs seen
        # while both the pipeline and the environment exist. The others leave /metrics now.
        yaml_envs = set(fetched.environments.values())
        candidates = state.known | fetched.classic_labels | fetched.yaml_labels | \
            {d.labels for d in state.deployments.values()}
        known = {k for k in candidates
                 if k[0] == "classic" and k[1] in fetched.classic_pipelines
                 or k[0] == "yaml" and k[1] in fetched.yaml_pipelines and k[2] in yaml_envs}
        for key in [k for k, d in state.deployments.items() if d.labels not in known]:
            del state.deployments[key]
            state.lead_times.pop(key, None)
        state.known = known
        for labels in known:
            self._init_series(state, labels)
        production_pairs = {(k[1], k[2]) for k in known if self._config.production_environment(k[2])}
        for k4 in [k for k in state.totals if k[:3] not in known]:
            del state.totals[k4]
        for k3 in [k for k in state.last_success if k not in known]:
            del state.last_success[k3]
        for pair in [p for p in state.lead_hist if p not in production_pairs]:
            del state.lead_hist[pair]
        state.loaded = True

    def _init_series(self, state: ProjectState, labels: LabelKey) -> None:
        """Every known label set exists from start-up at 0 (SPEC: rate() loses no event)."""
        for result in RESULT_LABEL_VALUES:
            state.totals.setdefault((*labels, result), 0)
        if self._config.production_environment(labels[2]):
            state.lead_hist.setdefault((labels[1], labels[2]), HistogramData(LEAD_TIME_BUCKETS))

    # -- publish -----------------------------------------------------------------------------------

    def families(self) -> list[Metric]:
        return self._families

    def _publish(self, now: float) -> None:
        self._families = list(self._build_families(now))

    def _build_families(self, now: float) -> Iterable[Metric]:
        totals = m.DEPLOYMENTS.counter()
        window = m.DEPLOYMENTS_WINDOW.gauge()
        last_success = m.DEPLOYMENT_LAST_SUCCESS_TIMESTAMP_SECONDS.gauge()
        lead: list[tuple[list[str], HistogramData]] = []
        window_lead: list[tuple[list[str], HistogramData]] = []
        window_restore: list[tuple[list[str], HistogramData]] = []
        window_start = now - self._config.lookback
        for state in sorted(self._states.values(), key=lambda s: s.project.name.lower()):
            project = state.project.name
            counts: dict[tuple[str, str, str, str], int] = {}
            for d in state.deployments.values():
                if d.finish >= window_start:
                    counts[(*d.labels, d.result)] = counts.get((*d.labels, d.result), 0) + 1
            for kind, pipeline, environment in sorted(state.known, key=lambda k: (k[1], k[2], k[0])):
                labels = [project, pipeline, environment, kind]
                for result in RESULT_LABEL_VALUES:
                    totals.add_metric([*labels, result], state.totals.get((kind, pipeline, environment, result), 0))
                    window.add_metric([*labels, result], counts.get((kind, pipeline, environment, result), 0))
                success = state.last_success.get((kind, pipeline, environment))
                if success is not None:
                    last_success.add_metric(labels, success)
            by_pair: dict[tuple[str, str], list[Deployment]] = {}
            for d in state.deployments.values():
                by_pair.setdefault((d.pipeline, d.environment), []).append(d)
            for pair in sorted(state.lead_hist):
                labels = [project, *pair]
                lead.append((labels, state.lead_hist[pair]))
                lead_hist = HistogramData(LEAD_TIME_BUCKETS)
                restore_hist = HistogramData(TIME_TO_RESTORE_BUCKETS)
                failed_since: float | None = None
                for d in sorted(by_pair.get(pair, []), key=lambda x: (x.finish, x.key)):
                    if d.finish < window_start:
                        continue
                    if d.key in state.lead_times:
                        lead_hist.observe(state.lead_times[d.key])
                    if d.result == "failed" and failed_since is None:
                        failed_since = d.finish
                    elif d.result == "succeeded" and failed_since is not None:
                        restore_hist.observe(d.finish - failed_since)
                        failed_since = None
                window_lead.append((labels, lead_hist))
                window_restore.append((labels, restore_hist))
        yield from (totals, window, last_success)
        yield m.DEPLOYMENT_LEAD_TIME_SECONDS.histogram(lead)
        yield m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.histogram(window_lead)
        yield m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.histogram(window_restore)

"""The deployments area: classic release deployments and YAML environment deployments, DORA numbers.

SPEC §4 "Delivery"; semantics in docs/delivery.md. One deployment is one attempt: a classic stage
attempt (one item of `release/deployments`), or one (run, stage, stage attempt) of a YAML pipeline,
however many deployment-job records it left in the environment. A deployment counts once, when it
has finished; in-progress ones are remembered and re-read until they finish.

Per project and cycle, by source: classic releases (deployments_classic.py), YAML environments
(deployments_yaml.py), and for the DORA numbers (dora.py) one build-changes call per newly deployed
run of a successful production deployment (cached).
The first cycle reads the lookback window. A project's cycle fetches everything first and applies it
only if every request succeeded, so a failed project keeps its last good numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.areas import base
from exporter.areas.deployments_classic import ClassicFetched, fetch_classic
from exporter.areas.deployments_yaml import GroupKey, GroupMeta, PendingGroups, YamlFetched, fetch_yaml
from exporter.areas.dora import (
    LEAD_TIME_BUCKETS,
    TIME_TO_RESTORE_BUCKETS,
    Deployment,
    LabelKey,
    LeadTimes,
    window_observations,
)
from exporter.areas.projects import Project, ProjectDirectory
from exporter.azdo.api import AzureDevOpsApi
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.metrics.families import HistogramData

KINDS = ("classic", "yaml")
RESULT_LABEL_VALUES = ("succeeded", "partially_succeeded", "failed", "canceled")


@dataclass
class ProjectState(base.ProjectState):
    """What is known about one project's deployments; mutated only by the refresh thread."""

    classic_watermark: float | None = None
    classic_pending: dict[int, float] = field(default_factory=dict)  # deployment id -> started
    record_marks: dict[int, int] = field(default_factory=dict)  # environment id -> highest record id read
    yaml_pending: PendingGroups = field(default_factory=dict)  # groups with a job still running
    yaml_meta: dict[GroupKey, GroupMeta] = field(default_factory=dict)
    environments: dict[int, str] = field(default_factory=dict)
    deployments: dict[tuple[Any, ...], Deployment] = field(default_factory=dict)  # finished, in the window
    lead_times: dict[tuple[Any, ...], float] = field(default_factory=dict)
    known: set[LabelKey] = field(default_factory=set)
    totals: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    lead_hist: dict[tuple[str, str], HistogramData] = field(default_factory=dict)
    last_success: dict[LabelKey, float] = field(default_factory=dict)


@dataclass
class _Fetched:
    classic: ClassicFetched
    yaml: YamlFetched
    lead_times: dict[tuple[Any, ...], float]


class DeploymentsArea(base.ProjectArea[ProjectState, _Fetched]):
    """Refreshes deployments of every admitted project and publishes their metric families."""

    name = m.AREA_DEPLOYMENTS

    def __init__(self, config: Config, api: AzureDevOpsApi, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        super().__init__(config, api, projects, clock)
        self._lead_times = LeadTimes(api, config.production_environment)

    # -- refresh ---------------------------------------------------------------------------------

    def _new_state(self, project: Project) -> ProjectState:
        return ProjectState(project)

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        window_start = self._window_start(now)
        classic = fetch_classic(self._api, self._config, state.project, loaded=state.loaded,
                                watermark=state.classic_watermark, pending=state.classic_pending,
                                known=state.deployments, window_start=window_start)
        yaml = fetch_yaml(self._api, self._config, state.project, loaded=state.loaded,
                          record_marks=state.record_marks, pending=state.yaml_pending, meta=state.yaml_meta,
                          known=state.deployments, window_start=window_start, now=now)
        lead_times = self._lead_times.of(state.deployments.values(), [*classic.new, *yaml.new])
        return _Fetched(classic, yaml, lead_times)

    def _after_projects(self) -> None:
        self._lead_times.keep_only({d.run for s in self._states.values() for d in s.deployments.values()
                                    if d.run is not None})

    # -- apply -------------------------------------------------------------------------------------

    def _apply(self, state: ProjectState, fetched: _Fetched, now: float) -> None:
        steady = state.loaded
        window_start = self._window_start(now)
        classic, yaml = fetched.classic, fetched.yaml
        state.classic_watermark = classic.watermark
        state.classic_pending = classic.pending
        state.record_marks = yaml.record_marks
        state.yaml_pending = yaml.pending
        state.yaml_meta = yaml.meta
        state.environments = yaml.environments
        for deployment in sorted([*classic.new, *yaml.new], key=lambda d: (d.finish, d.key)):
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
        yaml_envs = set(yaml.environments.values())
        candidates = state.known | classic.labels | yaml.labels | {d.labels for d in state.deployments.values()}
        known = {k for k in candidates
                 if k[0] == "classic" and k[1] in classic.pipelines
                 or k[0] == "yaml" and k[1] in yaml.pipelines and k[2] in yaml_envs}
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

    def _init_series(self, state: ProjectState, labels: LabelKey) -> None:
        """Every known label set exists from start-up at 0 (SPEC: rate() loses no event)."""
        for result in RESULT_LABEL_VALUES:
            state.totals.setdefault((*labels, result), 0)
        if self._config.production_environment(labels[2]):
            state.lead_hist.setdefault((labels[1], labels[2]), HistogramData(LEAD_TIME_BUCKETS))

    # -- publish -----------------------------------------------------------------------------------

    def _publish(self, now: float) -> list[Metric]:
        return list(self._build_families(now))

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
                leads, restores = window_observations(by_pair.get(pair, []), state.lead_times, window_start)
                for value in leads:
                    lead_hist.observe(value)
                for value in restores:
                    restore_hist.observe(value)
                window_lead.append((labels, lead_hist))
                window_restore.append((labels, restore_hist))
        yield from (totals, window, last_success)
        yield m.DEPLOYMENT_LEAD_TIME_SECONDS.histogram(lead)
        yield m.DEPLOYMENT_WINDOW_LEAD_TIME_SECONDS.histogram(window_lead)
        yield m.DEPLOYMENT_WINDOW_TIME_TO_RESTORE_SECONDS.histogram(window_restore)

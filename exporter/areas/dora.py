"""DORA numbers of the deployments area: what one deployment is, lead time for changes, time to restore.

Semantics in docs/delivery.md. A deployment's lead time is the time from the oldest commit it brought
(its run's changes, less those the previous successful production deployment of the same pipeline
and environment already brought) to its finish. Time to restore is the time from the first failed
deployment after a success to the next successful one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import NotFoundError
from exporter.metrics.families import DAY, HOUR, MINUTE, TIME_TO_FIX_BUCKETS

LEAD_TIME_BUCKETS = (15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY, 2 * DAY, 7 * DAY,
                     14 * DAY, 30 * DAY)
TIME_TO_RESTORE_BUCKETS = TIME_TO_FIX_BUCKETS

LabelKey = tuple[str, str, str]  # kind, pipeline, environment
RunRef = tuple[str, int]  # project id, build id


@dataclass(frozen=True)
class Deployment:
    """One finished deployment attempt, classic or YAML."""

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


def _order(d: Deployment) -> tuple[float, tuple[Any, ...]]:
    return d.finish, d.key


class LeadTimes:
    """Lead times of new successful production deployments, with the changes of each deployed run
    cached (one build-changes call per run, kept while a deployment in the window refers to it)."""

    def __init__(self, api: AzureDevOpsApi, production: Callable[[str], bool]) -> None:
        self._api = api
        self._production = production
        # (project id, build id) -> [(commit id, commit time)] of the build's changes
        self._changes: dict[RunRef, list[tuple[str, float]]] = {}

    def of(self, held: Iterable[Deployment], new: list[Deployment]) -> dict[tuple[Any, ...], float]:
        """Lead time of each new successful production deployment; `held`: the deployments already known."""
        production = self._production
        wanted = [d for d in new if d.result == "succeeded" and d.run is not None and production(d.environment)]
        if not wanted:
            return {}
        successes: dict[tuple[str, str], list[Deployment]] = {}
        for d in [*held, *new]:
            if d.result == "succeeded" and production(d.environment):
                successes.setdefault((d.pipeline, d.environment), []).append(d)
        for items in successes.values():
            items.sort(key=_order)
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

    def keep_only(self, used: set[RunRef]) -> None:
        """Forget the changes of runs that no deployment refers to any more."""
        for ref in [r for r in self._changes if r not in used]:
            del self._changes[ref]

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


def window_observations(deployments: Iterable[Deployment], lead_times: dict[tuple[Any, ...], float],
                        window_start: float) -> tuple[list[float], list[float]]:
    """(lead times, times to restore) of one pipeline and environment's deployments in the window."""
    leads: list[float] = []
    restores: list[float] = []
    failed_since: float | None = None
    for d in sorted(deployments, key=_order):
        if d.finish < window_start:
            continue
        if d.key in lead_times:
            leads.append(lead_times[d.key])
        if d.result == "failed" and failed_since is None:
            failed_since = d.finish
        elif d.result == "succeeded" and failed_since is not None:
            restores.append(d.finish - failed_since)
            failed_since = None
    return leads, restores

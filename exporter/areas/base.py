"""What every area shares: the refresh contract the scheduler drives, the error a refresh raises, the
shared constructor (`AreaBase`), and for the per-project areas the fetch-then-apply template
(`ProjectArea`) with its project loop and the watermark rule of the incremental listings."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from prometheus_client.metrics_core import Metric

from exporter.areas.projects import Project, ProjectDirectory, project_gone
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import ApiError
from exporter.config.settings import Config

log = logging.getLogger(__name__)

State = TypeVar("State")


class RefreshError(Exception):
    """A refresh failed in whole or in part; `reasons` has one entry per failure (self-metric reasons)."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class Area(Protocol):
    """A unit of refresh: builds, pull requests, deployments, ..."""

    name: str
    interval: float

    def refresh(self) -> None:
        """Update state from Azure DevOps and publish new families; raise RefreshError or ApiError."""
        ...

    def families(self) -> list[Metric]:
        """The families of the last published refresh (never mutated after publication)."""
        ...


def read_since(window_start: float, watermark: float | None, overlap: float, pending: Iterable[float] = ()) -> float:
    """Where an incremental listing starts reading.

    The first load (no watermark) reads the lookback window. Later cycles read from the watermark minus
    an overlap, because items may be indexed a little after their time (they are deduplicated by id),
    or from the oldest item still pending if that is earlier, but never before the window.
    """
    if watermark is None:
        return window_start
    return max(window_start, min([watermark - overlap, *pending]))


class AreaBase:
    """The shared constructor: configuration, API, clock, interval (`intervals.<name>`), last families."""

    name: str

    def __init__(self, config: Config, api: AzureDevOpsApi, clock: Callable[[], float]) -> None:
        self._config = config
        self._api = api
        self._clock = clock
        self.interval: float = getattr(config.intervals, self.name)
        self._families: list[Metric] = []

    def families(self) -> list[Metric]:
        return self._families

    def _window_start(self, now: float) -> float:
        """The start of the lookback window at `now`."""
        return now - self._config.lookback


class ProjectFailures:
    """The projects whose refresh failed in one cycle, with the self-metric reason of each."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.messages: list[str] = []

    def add(self, project: Project, error: ApiError) -> None:
        self.reasons.append(error.reason)
        self.messages.append(f"project {project.name}: {error}")

    def raise_if_any(self) -> None:
        if self.reasons:
            raise RefreshError("; ".join(self.messages), self.reasons)


def refresh_each_project(
    projects: Iterable[Project],
    previous: Mapping[str, State],
    refresh_one: Callable[[Project, State | None], State],
    gone: Callable[[ApiError], bool] = project_gone,
) -> tuple[dict[str, State], ProjectFailures]:
    """Refresh the projects one by one; return the new state of each, keyed by project id.

    `refresh_one(project, previous_state)` fetches everything it needs before changing any state and
    returns the project's state. When it raises ApiError, the project keeps its previous state (its last
    good numbers) and the failure is recorded, while the other projects go on. A project that is gone,
    or missing from `projects` (deleted, renamed away or filtered out), leaves with every series it had.
    """
    current: dict[str, State] = {}
    failures = ProjectFailures()
    for project in projects:
        old = previous.get(project.id)
        try:
            current[project.id] = refresh_one(project, old)
        except ApiError as error:
            if gone(error):
                log.info("project %s is gone (%s); dropping its series", project.name, error)
                continue
            failures.add(project, error)
            if old is not None:
                current[project.id] = old
    return current, failures


@dataclass
class ProjectState:
    """What an area knows about one project; areas extend it. Mutated only by the refresh thread."""

    project: Project
    loaded: bool = False  # False until the first successful cycle (the initial window load is history)


S = TypeVar("S", bound=ProjectState)
F = TypeVar("F")


class ProjectArea(AreaBase, ABC, Generic[S, F]):
    """An area refreshed project by project: fetch everything a project needs, then apply it.

    A project's cycle applies what it fetched only when every request succeeded, so a failed cycle
    leaves that project's last good numbers while the other projects still refresh (see
    `refresh_each_project`). Subclasses say how to start a project's state, fetch and apply, and publish.
    """

    def __init__(self, config: Config, api: AzureDevOpsApi, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        super().__init__(config, api, clock)
        self._projects = projects
        self._states: dict[str, S] = {}

    def refresh(self) -> None:
        now = self._clock()
        self._states, failures = refresh_each_project(
            self._projects.projects(), self._states, lambda project, state: self._refresh_project(project, state, now),
            gone=self._gone)
        self._after_projects()
        self._families = self._publish(now)
        failures.raise_if_any()

    def _refresh_project(self, project: Project, state: S | None, now: float) -> S:
        state = state or self._new_state(project)
        state.project = project  # a renamed project keeps its state
        fetched = self._fetch(state, now)
        self._apply(state, fetched, now)
        state.loaded = True
        return state

    def _gone(self, error: ApiError) -> bool:
        """True when the error means that the project is gone: it leaves instead of failing the refresh."""
        return project_gone(error)

    def _after_projects(self) -> None:
        """Runs after every project refreshed, before publishing (for caches spanning projects)."""

    @abstractmethod
    def _new_state(self, project: Project) -> S:
        """The state of a project seen for the first time."""

    @abstractmethod
    def _fetch(self, state: S, now: float) -> F:
        """Everything one project's cycle reads; raises ApiError; changes no state."""

    @abstractmethod
    def _apply(self, state: S, fetched: F, now: float) -> None:
        """Apply what `_fetch` read to the project's state."""

    @abstractmethod
    def _publish(self, now: float) -> list[Metric]:
        """The metric families of every project's state."""

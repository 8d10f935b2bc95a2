"""The list of projects the exporter watches, shared by every area and cached briefly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import ApiError, NotFoundError
from exporter.config.settings import NameFilter
from exporter.config.sharding import Shard

# Azure DevOps' code for "the project does not exist" (TF200016) in a 404 answer's message.
PROJECT_GONE = "TF200016"


@dataclass(frozen=True)
class Project:
    id: str
    name: str


class ProjectDirectory:
    """Lists the organization's projects that the `projects` filter admits.

    Each area asks at the start of its refresh; one listing serves all areas for `ttl` seconds, so
    projects that appear or disappear are seen within one interval without one request per area.
    With a `shard`, only the projects that this replica owns are listed (see exporter/sharding.py).
    """

    def __init__(self, api: AzureDevOpsApi, project_filter: NameFilter, clock: Callable[[], float],
                 ttl: float = 30.0, shard: Shard | None = None) -> None:
        self._api = api
        self._shard = shard or Shard()
        self._filter = project_filter
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: list[Project] | None = None
        self._fetched_at = 0.0

    def projects(self) -> list[Project]:
        """The admitted projects, sorted by name; raises ApiError when the listing fails."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._fetched_at < self._ttl:
                return self._cached
            found: dict[str, Project] = {}
            for listed in self._api.projects():
                if self._filter.matches(listed.name) and self._shard.owns(listed.id):
                    found[listed.id] = Project(listed.id, listed.name)
            self._cached = sorted(found.values(), key=lambda p: p.name.lower())
            self._fetched_at = now
            return self._cached


def project_gone(error: ApiError) -> bool:
    """True for a 404 saying the project does not exist: it was deleted after the (briefly cached)
    projects listing was read."""
    return isinstance(error, NotFoundError) and PROJECT_GONE in str(error)

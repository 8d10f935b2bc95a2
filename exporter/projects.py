"""The list of projects the exporter watches, shared by every area and cached briefly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from exporter.client import AzureDevOpsClient
from exporter.config import NameFilter
from exporter.sharding import Shard


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

    def __init__(self, client: AzureDevOpsClient, organization_url: str, project_filter: NameFilter,
                 clock: Callable[[], float], ttl: float = 30.0, shard: Shard | None = None) -> None:
        self._client = client
        self._shard = shard or Shard()
        self._url = f"{organization_url}/_apis/projects"
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
            for page in self._client.pages_by_token("projects", self._url, {"$top": 500,
                                                                            "stateFilter": "wellFormed"}):
                for item in page:
                    project_id, name = item.get("id"), item.get("name")
                    if (isinstance(project_id, str) and isinstance(name, str) and self._filter.matches(name)
                            and self._shard.owns(project_id)):
                        found[project_id] = Project(project_id, name)
            self._cached = sorted(found.values(), key=lambda p: p.name.lower())
            self._fetched_at = now
            return self._cached

"""Sharding: several exporter replicas split an organization's projects between them.

`--shard INDEX/COUNT` (also `shard: "0/3"` or `AZDO_SHARD=0/3`) makes a replica own the projects whose
stable hash equals INDEX modulo COUNT. The hash is SHA-256 of the project id (a GUID, lower-cased),
so the assignment does not depend on the process, the Python version, the order of the listing or
the project's name (a renamed project stays where it is). Organization-wide areas (agent pools,
audit) have no project: they run on shard 0 only, so their series exist once across the replicas.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["ORG_LEVEL_AREAS", "Shard", "parse_shard", "shard_of"]

ORG_LEVEL_AREAS: frozenset[str] = frozenset({"agent_pools", "audit"})
"""Areas that read organization-wide data; only shard 0 refreshes them."""

MAX_SHARDS = 1000
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(project_id: str, count: int) -> int:
    """The shard (0 ≤ n < count) that owns a project, from a stable hash of its id."""
    digest = hashlib.sha256(project_id.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """This replica's part of the organization: shard `index` of `count` (0-based)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(f"invalid shard {self.index}/{self.count}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, project_id: str) -> bool:
        """True when this replica collects the project with this id."""
        return self.count == 1 or shard_of(project_id, self.count) == self.index

    def runs_org_level(self) -> bool:
        """True when this replica runs the organization-wide areas (shard 0)."""
        return self.index == 0

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | int) -> Shard:
    """`INDEX/COUNT` (0-based index, e.g. `0/3`, `2/3`) to a Shard; ValueError with a user message."""
    m = _SHARD.fullmatch(str(text))
    if not m:
        raise ValueError(f"invalid shard '{text}': use INDEX/COUNT with a 0-based index, e.g. 0/3")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or count > MAX_SHARDS:
        raise ValueError(f"invalid shard '{text}': COUNT must be 1-{MAX_SHARDS}")
    if index >= count:
        raise ValueError(f"invalid shard '{text}': INDEX must be 0-{count - 1} (the index is 0-based; "
                         "a StatefulSet's first pod is 0)")
    return Shard(index, count)

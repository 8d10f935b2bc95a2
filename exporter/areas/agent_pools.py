"""The agent pools area: agents by status and enabled, job requests queued and running (SPEC §4 "Agents").

Per cycle: one pools listing (organization level), and per pool one agents listing and one
job-requests listing with `completedRequestCount=0`, which returns only unfinished requests in one
answer (NOTES §2.12: undocumented, preview api-version, not combinable with `$top`). A request is
*queued* while it has no `assignTime` (no agent yet) and *running* once assigned, until it has a
result. A pool whose requests fail keeps its last good numbers; the others still refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from exporter.areas.base import AreaBase, RefreshError
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import ApiError, NotFoundError
from exporter.config.settings import Config
from exporter.metrics import catalogue as m

log = logging.getLogger(__name__)

STATUSES = ("online", "offline")
ENABLED = ("true", "false")
JOB_STATES = ("queued", "running")


@dataclass(frozen=True)
class PoolNumbers:
    name: str
    agents: dict[tuple[str, str], int]  # (status, enabled) -> agents
    jobs: dict[str, int]  # state -> job requests


class AgentPoolsArea(AreaBase):
    """Refreshes every agent pool of the organization and publishes its metric families."""

    name = m.AREA_AGENT_POOLS

    def __init__(self, config: Config, api: AzureDevOpsApi, clock: Callable[[], float]) -> None:
        super().__init__(config, api, clock)
        self._pools: dict[int, PoolNumbers] = {}

    def refresh(self) -> None:
        listed = {pool.id: pool.name for pool in self._api.pools()}
        reasons: list[str] = []
        messages: list[str] = []
        current: dict[int, PoolNumbers] = {}
        for pool_id, name in listed.items():
            try:
                current[pool_id] = self._fetch_pool(pool_id, name)
            except NotFoundError:
                continue  # deleted since the listing
            except ApiError as error:
                reasons.append(error.reason)
                messages.append(f"pool {name}: {error}")
                if pool_id in self._pools:  # keep its last good numbers
                    current[pool_id] = PoolNumbers(name, self._pools[pool_id].agents, self._pools[pool_id].jobs)
        self._pools = current  # pools deleted leave /metrics here
        self._publish()
        if reasons:
            raise RefreshError("; ".join(messages), reasons)

    def _fetch_pool(self, pool_id: int, name: str) -> PoolNumbers:
        agents = {(status, enabled): 0 for status in STATUSES for enabled in ENABLED}
        for agent in self._api.agents(pool_id):
            status = agent.status if agent.status in STATUSES else "offline"  # unknown states cannot run jobs
            agents[(status, "true" if agent.enabled else "false")] += 1
        jobs = dict.fromkeys(JOB_STATES, 0)
        seen: set[object] = set()
        for request in self._api.unfinished_job_requests(pool_id):
            if request.request_id in seen or request.finished:
                continue  # a finished request (the filter is undocumented: check anyway)
            seen.add(request.request_id)
            jobs["running" if request.assigned else "queued"] += 1
        return PoolNumbers(name, agents, jobs)

    def _publish(self) -> None:
        agents = m.AGENT_POOL_AGENTS.gauge()
        jobs = m.AGENT_POOL_JOBS.gauge()
        for numbers in sorted(self._pools.values(), key=lambda p: p.name.lower()):
            for (status, enabled), count in sorted(numbers.agents.items()):
                agents.add_metric([numbers.name, status, enabled], count)
            for state in JOB_STATES:
                jobs.add_metric([numbers.name, state], numbers.jobs.get(state, 0))
        self._families = [agents, jobs]

"""Wiring: from a Config to a registry, a client, the areas and their scheduler."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from exporter.areas.agent_pools import AgentPoolsArea
from exporter.areas.audit import AuditArea
from exporter.areas.base import Area
from exporter.areas.builds import BuildsArea
from exporter.areas.deployments import DeploymentsArea
from exporter.areas.policies import PoliciesArea
from exporter.areas.projects import ProjectDirectory
from exporter.areas.pull_requests import PullRequestsArea
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.auth import BearerCredential, Credential, PatCredential
from exporter.azdo.client import AzureDevOpsClient
from exporter.azdo.scrub import SCRUBBER
from exporter.config.settings import Config, Secret
from exporter.config.sharding import ORG_LEVEL_AREAS
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve.scheduler import Scheduler, SnapshotCollector


def area_enabled(config: Config, area: str) -> bool:
    """True when `area` runs in this process: its interval is above 0 and, for the organization-wide
    areas (agent pools, audit), this is shard 0 (see exporter/sharding.py)."""
    return config.intervals.enabled(area) and (area not in ORG_LEVEL_AREAS or config.shard.runs_org_level())


def make_credential(config: Config) -> Credential:
    if config.entra is not None:
        from exporter.azdo.entra import make_entra_credential

        return make_entra_credential(config.entra)
    if config.bearer_token_file:
        return BearerCredential(path=config.bearer_token_file)
    if config.bearer_token is not None:
        return BearerCredential(token=config.bearer_token.reveal())
    if config.pat_file:
        return PatCredential(path=config.pat_file)
    if config.pat is not None:
        return PatCredential(token=config.pat.reveal())
    raise ValueError("no credential configured")


def config_secrets(value: object, depth: int = 0) -> Iterator[str]:
    """Every `Secret` in a configuration (walked through its dataclasses, lists and dicts), and the
    password of the organization URL if it has one: what the scrubber must remove from any output."""
    if depth > 8:
        return
    if isinstance(value, Secret):
        yield value.reveal()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from config_secrets(getattr(value, item.name), depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from config_secrets(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from config_secrets(item, depth + 1)
    if depth == 0 and isinstance(value, Config):
        try:
            password = urlsplit(value.organization_url).password
        except ValueError:
            password = None
        if password:
            yield password


class Exporter:
    """Everything that runs in one exporter process, minus the HTTP server."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time,
                 credential: Credential | None = None) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.metrics = SelfMetrics(self.registry)
        self.metrics.lookback_seconds.set(config.lookback)
        self.credential = credential or make_credential(config)
        # Every text that leaves the process is scrubbed of these (see exporter/azdo/scrub.py).
        SCRUBBER.add_secret(*config_secrets(config))
        SCRUBBER.add_source(self.credential.secrets)
        self.client = AzureDevOpsClient(self.credential, self.metrics, timeout=config.request_timeout,
                                        max_retries=config.max_retries,
                                        max_response_bytes=config.max_response_bytes)
        enabled = [i for i in (config.intervals.builds, config.intervals.pull_requests,
                               config.intervals.deployments, config.intervals.policies) if i > 0]
        self.api = AzureDevOpsApi(self.client, config.organization_url, config.release_url, config.audit_url)
        self.projects = ProjectDirectory(self.api, config.projects, clock, ttl=min(enabled, default=60.0) / 2,
                                         shard=config.shard)
        # area name -> how to build it, in refresh order
        makers: dict[str, Callable[[], Area]] = {
            "builds": lambda: BuildsArea(config, self.api, self.projects, clock),
            "deployments": lambda: DeploymentsArea(config, self.api, self.projects, clock),
            "agent_pools": lambda: AgentPoolsArea(config, self.api, clock),
            "pull_requests": lambda: PullRequestsArea(config, self.api, self.projects, clock),
            "policies": lambda: PoliciesArea(config, self.api, self.projects, clock),
            "audit": lambda: AuditArea(config, self.api, clock),
        }
        self.areas: list[Area] = [make() for name, make in makers.items() if area_enabled(config, name)]
        self.registry.register(SnapshotCollector(self.areas))
        self.scheduler = Scheduler(self.areas, self.metrics, clock=clock)

    def refresh_all_once(self) -> dict[str, str | None]:
        """Refresh every area once, in order; map area name -> error text (None on success)."""
        errors: dict[str, str | None] = {}
        for area in self.areas:
            ok = self.scheduler.run_once(area)
            errors[area.name] = None if ok else str(self.scheduler.status[area.name]["last_error"])
        return errors

    def close(self) -> None:
        self.scheduler.stop()
        self.client.close()
        SCRUBBER.remove_source(self.credential.secrets)

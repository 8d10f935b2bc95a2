"""The validated configuration: `Config` and its parts. Every default comes from the settings table."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import time as clock_time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from exporter.config.sharding import Shard
from exporter.config.table import default
from exporter.config.values import AREAS, Secret, normalise_ref, suggest

__all__ = ["Config", "DigestConfig", "EntraConfig", "Intervals", "NameFilter"]

_LISTEN_HOST, _LISTEN_PORT = default("listen")


@dataclass(frozen=True)
class NameFilter:
    """Include/exclude glob lists (fnmatch, case-insensitive); an excluded name is never matched."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        """True when `name` matches an include pattern and no exclude pattern."""
        folded = name.casefold()
        if any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.exclude):
            return False
        return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.include)


@dataclass(frozen=True)
class Intervals:
    """Refresh interval per area, in seconds; 0 disables the area."""

    builds: float = default("intervals.builds")
    tests: float = default("intervals.tests")
    pull_requests: float = default("intervals.pull_requests")
    policies: float = default("intervals.policies")
    deployments: float = default("intervals.deployments")
    agent_pools: float = default("intervals.agent_pools")
    audit: float = default("intervals.audit")

    def enabled(self, area: str) -> bool:
        """True when the area's interval is above 0 (ValueError for an unknown area)."""
        if area not in AREAS:
            raise ValueError(f"unknown area '{area}'{suggest(area, AREAS)}; areas: {', '.join(AREAS)}")
        return float(getattr(self, area)) > 0


@dataclass(frozen=True)
class DigestConfig:
    """The scheduled team digest (`digest:`); it is sent on schedule only when `to` is set.

    `days` are weekday numbers (0 = Monday) in `time_zone`; `webhook_url` is a secret (the URL of a
    Slack or Teams webhook grants posting); `state_file` remembers the last digest sent.
    """

    to: str | None = None
    days: tuple[int, ...] = default("digest.days")
    time: clock_time = default("digest.time")
    time_zone: str = default("digest.time_zone")
    webhook_url: Secret | None = None
    webhook_url_file: str | None = None
    state_file: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class EntraConfig:
    """Sign-in with Microsoft Entra ID through azure-identity (`auth: {method: entra, ...}`).

    `credential` picks the azure-identity class (`default` = DefaultAzureCredential, which also reads
    AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, ...). Secrets come
    from files only (`client_secret_file`) or from azure-identity's own environment variables.
    """

    credential: str = default("auth.credential")
    client_id: str | None = None
    tenant_id: str | None = None
    client_secret_file: str | None = None
    client_certificate_file: str | None = None


def _derive_urls(organization_url: str) -> tuple[str, str, str]:
    """(organization, release_url, audit_url) derived from an organization or collection URL."""
    parts = urlsplit(organization_url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if segments:
        organization = segments[-1]
    elif host.endswith(".visualstudio.com"):
        organization = host.split(".")[0]
    else:
        organization = host
    if host == "dev.azure.com" and segments:
        org = segments[0]
        return organization, f"https://vsrm.dev.azure.com/{org}", f"https://auditservice.dev.azure.com/{org}"
    return organization, organization_url, organization_url


@dataclass(frozen=True)
class Config:
    """The exporter's settings, validated. Build it with `load_config`.

    Empty `organization`, `release_url` and `audit_url` are derived from `organization_url`.
    `warnings` are the problems that do not stop the exporter (each a line with its location).
    """

    organization_url: str
    organization: str = ""
    pat: Secret | None = None
    bearer_token: Secret | None = None
    pat_file: str | None = None
    bearer_token_file: str | None = None
    release_url: str = ""
    audit_url: str = ""
    projects: NameFilter = field(default_factory=NameFilter)
    pipelines: NameFilter = field(default_factory=NameFilter)
    repositories: NameFilter = field(default_factory=NameFilter)
    branches: tuple[str, ...] = default("branches")
    lookback: float = default("lookback")
    broken_results: frozenset[str] = default("broken_results")
    production_environments: tuple[re.Pattern[str], ...] = default("production_environments")
    intervals: Intervals = field(default_factory=Intervals)
    listen_host: str = _LISTEN_HOST
    listen_port: int = _LISTEN_PORT
    log_level: str = default("log_level")
    log_format: str = default("log_format")
    request_timeout: float = default("request_timeout")
    max_retries: int = default("max_retries")
    max_response_bytes: int = default("max_response_bytes")
    digest: DigestConfig = field(default_factory=DigestConfig)
    shard: Shard = field(default_factory=Shard)
    web_config_file: str | None = None
    web_config: Any = None  # exporter.config.web_config.WebConfig, parsed and checked at load time
    entra: EntraConfig | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        url = self.organization_url.rstrip("/")
        object.__setattr__(self, "organization_url", url)
        organization, release_url, audit_url = _derive_urls(url)
        if not self.organization:
            object.__setattr__(self, "organization", organization)
        if not self.release_url:
            object.__setattr__(self, "release_url", release_url)
        if not self.audit_url:
            object.__setattr__(self, "audit_url", audit_url)

    def branch_tracked(self, branch: str, default_branch: str | None) -> bool:
        """True for the pipeline's default branch or a branch matching `branches`.

        Names may be given with or without `refs/heads/`; other refs (`refs/pull/…`, tags) never match.
        """
        name = normalise_ref(branch or "")
        if not name or name.startswith("refs/"):
            return False
        folded = name.casefold()
        if default_branch and folded == normalise_ref(default_branch).casefold():
            return True
        return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.branches)

    def production_environment(self, environment: str) -> bool:
        """True when an environment name matches one of `production_environments` (re.search)."""
        return any(p.search(environment) for p in self.production_environments)

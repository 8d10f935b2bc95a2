"""Configuration: a YAML file, `AZDO_*` environment variables and command-line overrides.

Precedence per setting: overrides (command line) > environment > file > defaults. Every problem is
collected and reported at once in a `ConfigError`, each line starting with its location
(`config.yaml:12:3: intervals.builds: ...`, `env AZDO_LOOKBACK: ...` or `--listen: ...`).
Secrets (the PAT, bearer tokens) are wrapped in `Secret` and never appear in messages or reprs.
"""

from __future__ import annotations

import difflib
import fnmatch
import hmac
import ipaddress
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time as clock_time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from exporter.config.sharding import Shard, parse_shard

log = logging.getLogger(__name__)

__all__ = [
    "AREAS",
    "Config",
    "ConfigError",
    "DigestConfig",
    "EntraConfig",
    "Intervals",
    "NameFilter",
    "Secret",
    "check_config_file",
    "load_config",
    "parse_duration",
]

AREAS: tuple[str, ...] = (
    "builds",
    "tests",
    "pull_requests",
    "policies",
    "deployments",
    "agent_pools",
    "audit",
)
"""The collector areas that have a refresh interval."""

DEFAULT_BRANCHES: tuple[str, ...] = ("main", "master", "release/*")
DEFAULT_LOOKBACK = 30 * 86400.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """Invalid configuration; `errors` holds every problem, each a full line with its location."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class Secret:
    """A secret string that never shows itself in `repr`, `str`, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret() takes a str")
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it (the HTTP client)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


# --------------------------------------------------------------------------------------------- values

_DURATION_HINT = "(use e.g. 90s, 5m, 1h, 30d)"
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d|w)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as `90s`, `5m`, `1h30m`, `500ms`, `30d`, `1w`, `0` or a bare number.

    Raises ValueError with a message fit for a user (negative durations are not allowed).
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"invalid duration '{text}' {_DURATION_HINT}")
    if not isinstance(text, str):
        if not math.isfinite(text):
            raise ValueError(f"invalid duration '{text}' {_DURATION_HINT}")
        if text < 0:
            raise ValueError(f"invalid duration '{text}': must not be negative")
        return float(text)
    s = text.strip()
    if not s:
        raise ValueError(f"invalid duration '' {_DURATION_HINT}")
    if s.startswith("-"):
        try:
            parse_duration(s[1:])
        except ValueError:
            pass
        else:
            raise ValueError(f"invalid duration '{s}': must not be negative")
    if _BARE_NUMBER.fullmatch(s):
        return float(s)
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration '{s}' {_DURATION_HINT}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total


def _normalise_ref(branch: str) -> str:
    return branch[len("refs/heads/") :] if branch.startswith("refs/heads/") else branch


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

    builds: float = 60.0
    tests: float = 60.0
    pull_requests: float = 300.0
    policies: float = 1800.0
    deployments: float = 120.0
    agent_pools: float = 30.0
    audit: float = 600.0

    def enabled(self, area: str) -> bool:
        """True when the area's interval is above 0 (ValueError for an unknown area)."""
        if area not in AREAS:
            raise ValueError(f"unknown area '{area}'{_suggest(area, AREAS)}; areas: {', '.join(AREAS)}")
        return float(getattr(self, area)) > 0


DIGEST_TARGETS = ("slack", "teams", "webhook")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class DigestConfig:
    """The scheduled team digest (`digest:`); it is sent on schedule only when `to` is set.

    `days` are weekday numbers (0 = Monday) in `time_zone`; `webhook_url` is a secret (the URL of a
    Slack or Teams webhook grants posting); `state_file` remembers the last digest sent.
    """

    to: str | None = None
    days: tuple[int, ...] = (0,)
    time: clock_time = clock_time(9, 0)
    time_zone: str = "UTC"
    webhook_url: Secret | None = None
    webhook_url_file: str | None = None
    state_file: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


ENTRA_CREDENTIALS = ("default", "managed_identity", "workload_identity", "client_secret", "client_certificate",
                     "environment", "azure_cli")
_ENTRA_KEYS = ("method", "credential", "client_id", "tenant_id", "client_secret_file", "client_certificate_file")


@dataclass(frozen=True)
class EntraConfig:
    """Sign-in with Microsoft Entra ID through azure-identity (`auth: {method: entra, ...}`).

    `credential` picks the azure-identity class (`default` = DefaultAzureCredential, which also reads
    AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, ...). Secrets come
    from files only (`client_secret_file`) or from azure-identity's own environment variables.
    """

    credential: str = "default"
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
    branches: tuple[str, ...] = DEFAULT_BRANCHES
    lookback: float = DEFAULT_LOOKBACK
    broken_results: frozenset[str] = frozenset({"failed"})
    production_environments: tuple[re.Pattern[str], ...] = (re.compile("(?i)prod"),)
    intervals: Intervals = field(default_factory=Intervals)
    listen_host: str = "0.0.0.0"
    listen_port: int = 9862
    log_level: str = "INFO"
    log_format: str = "text"
    request_timeout: float = 30.0
    max_retries: int = 3
    digest: DigestConfig = field(default_factory=DigestConfig)
    shard: Shard = field(default_factory=Shard)
    web_config_file: str | None = None
    web_config: Any = None  # exporter.config.web_config.WebConfig, parsed and checked at load time
    entra: EntraConfig | None = None

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
        name = _normalise_ref(branch or "")
        if not name or name.startswith("refs/"):
            return False
        folded = name.casefold()
        if default_branch and folded == _normalise_ref(default_branch).casefold():
            return True
        return any(fnmatch.fnmatchcase(folded, p.casefold()) for p in self.branches)

    def production_environment(self, environment: str) -> bool:
        """True when an environment name matches one of `production_environments` (re.search)."""
        return any(p.search(environment) for p in self.production_environments)


# ------------------------------------------------------------------------------------------- sources

_FILTERS = ("projects", "pipelines", "repositories")

# Leaf settings and their environment variables. Dotted names are nested in the YAML file.
_SCALAR_ENV: dict[str, str] = {
    "organization_url": "AZDO_ORG_URL",
    "pat_file": "AZDO_PAT_FILE",
    "bearer_token_file": "AZDO_BEARER_TOKEN_FILE",
    "release_url": "AZDO_RELEASE_URL",
    "audit_url": "AZDO_AUDIT_URL",
    "lookback": "AZDO_LOOKBACK",
    "listen": "AZDO_LISTEN",
    "log_level": "AZDO_LOG_LEVEL",
    "log_format": "AZDO_LOG_FORMAT",
    "request_timeout": "AZDO_REQUEST_TIMEOUT",
    "max_retries": "AZDO_MAX_RETRIES",
    "shard": "AZDO_SHARD",
    "web_config_file": "AZDO_WEB_CONFIG_FILE",
    **{f"auth.{k}": f"AZDO_AUTH_{k.upper()}" if k != "method" else "AZDO_AUTH" for k in _ENTRA_KEYS},
    **{f"intervals.{a}": f"AZDO_INTERVAL_{a.upper()}" for a in AREAS},
    "digest.to": "AZDO_DIGEST_TO",
    "digest.time": "AZDO_DIGEST_TIME",
    "digest.time_zone": "AZDO_DIGEST_TIME_ZONE",
    "digest.webhook_url_file": "AZDO_DIGEST_WEBHOOK_URL_FILE",
    "digest.state_file": "AZDO_DIGEST_STATE_FILE",
}
_LIST_ENV: dict[str, str] = {
    **{f"{f}.{part}": f"AZDO_{f.upper()}_{part.upper()}" for f in _FILTERS for part in ("include", "exclude")},
    "branches": "AZDO_BRANCHES",
    "broken_results": "AZDO_BROKEN_RESULTS",
    "production_environments": "AZDO_PRODUCTION_ENVIRONMENTS",
    "digest.days": "AZDO_DIGEST_DAYS",
}
_SECRET_ENV: dict[str, str] = {"pat": "AZDO_PAT", "bearer_token": "AZDO_BEARER_TOKEN",
                               "digest.webhook_url": "AZDO_DIGEST_WEBHOOK_URL"}
_DIGEST_KEYS = ("to", "days", "time", "time_zone", "webhook_url_file", "state_file")
_KNOWN_ENV = frozenset([*_SCALAR_ENV.values(), *_LIST_ENV.values(), *_SECRET_ENV.values()])
# Reserved for later features; accepted and ignored.
_RESERVED_KEYS = ("shards",)
_RESERVED_ENV_PREFIXES = ("AZDO_SHARD", "AZDO_WEB_")
_TOP_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys([k.split(".")[0] for k in (*_SCALAR_ENV, *_LIST_ENV)] + list(_RESERVED_KEYS))
)


@dataclass
class _Raw:
    """One setting as given by one source; list settings hold (item, where) pairs."""

    value: Any
    where: str


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _FileReader:
    """Walks the composed YAML document, keeping each value's location."""

    def __init__(self, path: str, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        self.values: dict[str, _Raw] = {}

    def where(self, node: yaml.Node, label: str) -> str:
        return f"{self.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {label}"

    def error(self, node: yaml.Node, label: str, message: str) -> None:
        self.errors.append(f"{self.where(node, label)}: {message}")

    def mapping(self, node: yaml.Node, label: str) -> list[tuple[str, yaml.Node, yaml.Node]] | None:
        """(key, key node, value node) of a mapping, reporting duplicates and non-string keys."""
        if not isinstance(node, yaml.MappingNode):
            what = "a list" if isinstance(node, yaml.SequenceNode) else f"'{_scalar_text(node)}'"
            self.error(node, label or "top level", f"expected a mapping of keys to values, got {what}")
            return None
        seen: dict[str, yaml.Node] = {}
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, label or "top level", "keys must be plain names")
                continue
            key = str(key_node.value)
            full = f"{label}.{key}" if label else key
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.error(key_node, full, f"duplicate key (first given on line {first})")
                continue
            seen[key] = key_node
            out.append((key, key_node, value_node))
        return out

    def read(self, root: yaml.Node) -> bool:
        """Collect the settings; False when the top level is not a mapping."""
        entries = self.mapping(root, "")
        if entries is None:
            return False
        for key, key_node, value in entries:
            if key in _RESERVED_KEYS:
                continue
            if key in _SECRET_ENV:
                self.error(
                    key_node,
                    key,
                    f"secrets are not read from the configuration file; set the environment variable "
                    f"{_SECRET_ENV[key]} or use {key}_file",
                )
            elif key in _FILTERS:
                self.filter(key, value)
            elif key == "intervals":
                self.intervals(value)
            elif key == "digest":
                self.digest(value)
            elif key == "auth":
                self.auth(value)
            elif key in _SCALAR_ENV:
                self.scalar(key, value)
            elif key in _LIST_ENV:
                self.list(key, value)
            else:
                self.error(key_node, key, f"unknown key{_suggest(key, _TOP_KEYS)}")
        return True

    def filter(self, name: str, node: yaml.Node) -> None:
        entries = self.mapping(node, name)
        for key, key_node, value in entries or []:
            if key in ("include", "exclude"):
                self.list(f"{name}.{key}", value)
            else:
                self.error(key_node, f"{name}.{key}", f"unknown key{_suggest(key, ('include', 'exclude'))}")

    def intervals(self, node: yaml.Node) -> None:
        entries = self.mapping(node, "intervals")
        for key, key_node, value in entries or []:
            if key in AREAS:
                self.scalar(f"intervals.{key}", value)
            else:
                self.error(
                    key_node,
                    f"intervals.{key}",
                    f"unknown area{_suggest(key, AREAS)}; areas: {', '.join(AREAS)}",
                )

    def digest(self, node: yaml.Node) -> None:
        entries = self.mapping(node, "digest")
        for key, key_node, value in entries or []:
            if key == "webhook_url":
                self.error(key_node, "digest.webhook_url", "secrets are not read from the configuration file; "
                           "set the environment variable AZDO_DIGEST_WEBHOOK_URL or use digest.webhook_url_file")
            elif key == "days":
                self.list("digest.days", value)
            elif key in _DIGEST_KEYS:
                self.scalar(f"digest.{key}", value)
            else:
                self.error(key_node, f"digest.{key}", f"unknown key{_suggest(key, _DIGEST_KEYS)}")

    def auth(self, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):  # `auth: entra` is short for `auth: {method: entra}`
            self.scalar("auth.method", node)
            return
        entries = self.mapping(node, "auth")
        for key, key_node, value in entries or []:
            if key == "client_secret":
                self.error(key_node, "auth.client_secret", "secrets are not read from the configuration file; "
                           "use auth.client_secret_file or azure-identity's AZURE_CLIENT_SECRET")
            elif key in _ENTRA_KEYS:
                self.scalar(f"auth.{key}", value)
            else:
                self.error(key_node, f"auth.{key}", f"unknown key{_suggest(key, _ENTRA_KEYS)}")

    def scalar(self, name: str, node: yaml.Node) -> None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, name, "expected a single value, not a list or mapping")
        elif _is_null(node):
            self.error(node, name, "no value given")
        else:
            self.values[name] = _Raw(str(node.value), self.where(node, name))

    def list(self, name: str, node: yaml.Node) -> None:
        if isinstance(node, yaml.ScalarNode):
            items = [] if _is_null(node) else [(str(node.value), self.where(node, name))]
            self.values[name] = _Raw(items, self.where(node, name))
        elif isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                label = f"{name}[{i}]"
                if not isinstance(item, yaml.ScalarNode) or _is_null(item):
                    self.error(item, label, "expected a plain value")
                else:
                    items.append((str(item.value), self.where(item, label)))
            self.values[name] = _Raw(items, self.where(node, name))
        else:
            self.error(node, name, "expected a list")


def _is_null(node: yaml.Node) -> bool:
    return bool(node.tag == "tag:yaml.org,2002:null")


def _scalar_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "…"


def _read_file(path: str, errors: list[str]) -> dict[str, _Raw] | None:
    """Settings from the YAML file; None when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        errors.append(f"{path}: cannot read the configuration file: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError:
        errors.append(f"{path}: the configuration file is not UTF-8 text")
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        errors.append(_yaml_error(path, exc))
        return None
    except yaml.YAMLError as exc:
        errors.append(f"{path}: invalid YAML: {type(exc).__name__}")
        return None
    reader = _FileReader(path, errors)
    if root is not None and not reader.read(root):
        return None
    return reader.values


def _yaml_error(path: str, exc: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error with its line and column, without quoting the file's content."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
    message = f"{where}: invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context and exc.context_mark:
        cm = exc.context_mark
        message += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
    return message


def _split_list(text: str, where: str) -> list[tuple[str, str]]:
    return [(item, where) for item in (part.strip() for part in text.split(",")) if item]


def _read_env(env: Mapping[str, str]) -> dict[str, _Raw]:
    """Settings from `AZDO_*` variables; empty variables count as unset."""
    values: dict[str, _Raw] = {}
    for name, var in (*_SCALAR_ENV.items(), *_SECRET_ENV.items()):
        if env.get(var, "").strip():
            values[name] = _Raw(env[var] if name in _SECRET_ENV else env[var].strip(), f"env {var}")
    for name, var in _LIST_ENV.items():
        if env.get(var, "").strip():
            values[name] = _Raw(_split_list(env[var], f"env {var}"), f"env {var}")
    for var in env:
        if var.startswith("AZDO_") and var not in _KNOWN_ENV and not var.startswith(_RESERVED_ENV_PREFIXES):
            close = difflib.get_close_matches(var, list(_KNOWN_ENV), n=1, cutoff=0.85)
            if close:
                log.warning("ignoring unknown environment variable %s (did you mean %s?)", var, close[0])
    return values


# Command-line flags whose names do not follow from the setting's name (exporter-toolkit's spelling).
_FLAG_NAMES = {"web_config_file": "--web.config.file"}


def _read_overrides(overrides: Mapping[str, Any], errors: list[str]) -> dict[str, _Raw]:
    """Settings from command-line overrides: YAML keys (nested dicts or dotted names); None = not given."""
    values: dict[str, _Raw] = {}

    def add(name: str, value: Any) -> None:
        where = _FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
        if value is None:
            return
        if isinstance(value, Mapping) and (name in _FILTERS or name in ("intervals", "digest", "auth")):
            for key, sub in value.items():
                add(f"{name}.{key}", sub)
        elif name == "auth" and isinstance(value, str):
            add("auth.method", value)
        elif name in _FILTERS or name in ("intervals", "digest", "auth"):
            errors.append(f"{where}: expected a mapping")
        elif name in _SECRET_ENV:
            values[name] = _Raw(value.reveal() if isinstance(value, Secret) else str(value), where)
        elif name in _LIST_ENV:
            if isinstance(value, str):
                values[name] = _Raw(_split_list(value, where), where)
            elif isinstance(value, list | tuple | set | frozenset):
                values[name] = _Raw([(str(v), where) for v in value], where)
            else:
                errors.append(f"{where}: expected a list")
        elif name in _SCALAR_ENV:
            values[name] = _Raw(value.strip() if isinstance(value, str) else value, where)
        elif name in _RESERVED_KEYS:
            return
        else:
            known = [*_TOP_KEYS, *_SCALAR_ENV, *_LIST_ENV]
            errors.append(f"{where}: unknown setting{_suggest(name, known)}")

    for key, value in overrides.items():
        add(str(key).replace("-", "_"), value)
    return values


# ---------------------------------------------------------------------------------------- validation

_URL_HINT = "e.g. https://dev.azure.com/contoso or https://tfs.example.com/tfs/DefaultCollection"


def _show_url(text: str) -> str:
    """The URL for an error message, with any user:password@ part hidden."""
    return re.sub(r"(?<=//)[^/@]*@", "***@", text)


def _check_url(value: Any) -> str:
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        raise ValueError(f"invalid URL '{_show_url(text)}', {_URL_HINT}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"invalid URL '{_show_url(text)}': expected an http(s) URL, {_URL_HINT}")
    if "@" in parts.netloc:
        raise ValueError(f"'{_show_url(text)}': the URL must not contain credentials; use AZDO_PAT or pat_file")
    if parts.query or parts.fragment:
        raise ValueError(f"'{text}': the URL must not have a query string or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"invalid URL '{text}': bad port") from None
    return text.rstrip("/")


def _check_organization_url(value: Any) -> str:
    url = _check_url(value)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host == "dev.azure.com" and len(segments) != 1:
        raise ValueError(f"'{url}': expected https://dev.azure.com/ORGANIZATION (the organization only, no project)")
    if not segments and not host.endswith(".visualstudio.com"):
        raise ValueError(f"'{url}': expected an organization or collection URL, {_URL_HINT}")
    return url


def _check_duration(value: Any) -> float:
    return parse_duration(value)


def _check_positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"'{value}': must be greater than 0")
    return seconds


def _check_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"'{value}': expected a whole number (0 or more)")
    try:
        number = int(value) if isinstance(value, int) else int(str(value).strip(), 10)
    except ValueError:
        raise ValueError(f"'{value}': expected a whole number (0 or more)") from None
    if number < 0:
        raise ValueError(f"'{value}': expected a whole number (0 or more)")
    return number


def _check_log_level(value: Any) -> str:
    level = str(value).strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LOG_LEVELS:
        raise ValueError(f"invalid log level '{value}'; use one of {', '.join(LOG_LEVELS)}")
    return level


def _check_log_format(value: Any) -> str:
    fmt = str(value).strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"invalid log format '{value}'; use text or json")
    return fmt


_LISTEN_HINT = "use HOST:PORT, e.g. 0.0.0.0:9862, :9862 or [::]:9862"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def _check_listen(value: Any) -> tuple[str, int]:
    text = str(value).strip()
    bracketed = re.fullmatch(r"\[([^\]]*)\]:(\d+)", text)
    if bracketed:
        host, port_text = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid listen address '{text}': '{host}' is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid listen address '{text}' ({_LISTEN_HINT})")
        if ":" in host:
            raise ValueError(f"invalid listen address '{text}': put IPv6 addresses in brackets, e.g. [::]:9862")
        if host and not _HOSTNAME.fullmatch(host):
            raise ValueError(f"invalid listen address '{text}': bad host '{host}' ({_LISTEN_HINT})")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address '{text}': the port must be a number 0-65535")
    return host or "0.0.0.0", int(port_text)


_RESULTS = {"failed": "failed", "partiallysucceeded": "partiallySucceeded"}
_NOT_BREAKING = {"succeeded", "canceled", "cancelled", "none"}


def _check_result(item: str) -> str:
    key = re.sub(r"[\s_-]", "", item).lower()
    if key in _RESULTS:
        return _RESULTS[key]
    if key in _NOT_BREAKING:
        raise ValueError(f"'{item}' cannot count as broken; use failed and/or partiallySucceeded")
    raise ValueError(
        f"unknown result '{item}'{_suggest(key, ['failed', 'partiallySucceeded'])}; "
        "use failed and/or partiallySucceeded"
    )


def _check_regex(item: str) -> re.Pattern[str]:
    try:
        return re.compile(item)
    except re.error as exc:
        raise ValueError(f"invalid regular expression '{item}': {exc}") from None


def _check_pattern(item: str) -> str:
    if not item.strip():
        raise ValueError("empty pattern")
    return item.strip()


def _check_branch(item: str) -> str:
    name = _normalise_ref(item.strip())
    if not name:
        raise ValueError("empty branch pattern")
    if name.startswith("refs/"):
        raise ValueError(f"'{item}': only branches are tracked (refs/heads/…); pull requests and tags never are")
    return name


def _check_digest_to(value: Any) -> str:
    target = str(value).strip().lower()
    if target not in DIGEST_TARGETS:
        raise ValueError(f"unknown target '{value}'{_suggest(target, DIGEST_TARGETS)}; use slack, teams or webhook")
    return target


def _check_days(item: str) -> tuple[int, ...]:
    key = item.strip().lower()
    if key in ("daily", "every_day", "everyday", "all"):
        return tuple(range(7))
    if key == "weekdays":
        return tuple(range(5))
    if key == "weekends":
        return (5, 6)
    for number, name in enumerate(DAY_NAMES):
        if key == name or (len(key) > 3 and key.startswith(name) and key.endswith("day")):
            return (number,)
    raise ValueError(f"unknown day '{item}'{_suggest(key[:3], DAY_NAMES)}; use mon, tue, wed, thu, fri, sat, sun, "
                     "weekdays or daily")


def _check_clock_time(value: Any) -> clock_time:
    text = str(value).strip()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"invalid time '{text}': use HH:MM on a 24-hour clock, e.g. \"09:00\"")
    return clock_time(int(m.group(1)), int(m.group(2)))


def _check_time_zone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}': use an IANA name such as Europe/Berlin, "
                         "America/New_York or UTC") from None
    return name


def _check_state_file(value: Any) -> str:
    path = str(value).strip()
    directory = os.path.dirname(os.path.abspath(path))
    if not path or path.endswith(("/", os.sep)) or not os.path.isdir(directory):
        raise ValueError(f"'{path}': the directory for the digest state file does not exist")
    return path


def _check_webhook_url(text: str) -> str:
    """The webhook URL itself is a secret: messages never show it."""
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("not an http(s) URL (the value is not shown because it is a secret)")
    return text


class _Resolver:
    """Merges the sources by precedence and converts each setting, collecting errors."""

    def __init__(self, sources: list[dict[str, _Raw]], errors: list[str]) -> None:
        self.sources = sources  # highest precedence first
        self.errors = errors

    def raw(self, name: str) -> _Raw | None:
        for source in self.sources:
            if name in source:
                return source[name]
        return None

    def all_raw(self, name: str) -> list[_Raw]:
        return [source[name] for source in self.sources if name in source]

    def scalar(self, name: str, check: Callable[[Any], Any], default: Any) -> Any:
        """The converted value of the highest-precedence source; shadowed values are checked too."""
        result, found = default, False
        for raw in self.all_raw(name):
            try:
                value = check(raw.value)
            except ValueError as exc:
                self.errors.append(f"{raw.where}: {exc}")
                found = True
                continue
            if not found:
                result, found = value, True
        return result

    def items(self, name: str, check: Callable[[str], Any], default: tuple[Any, ...]) -> tuple[Any, ...]:
        """The converted items of the highest-precedence source; shadowed items are checked too."""
        results = []
        for raw in self.all_raw(name):
            out = []
            for item, where in raw.value:
                try:
                    out.append(check(item))
                except ValueError as exc:
                    self.errors.append(f"{where}: {exc}")
            results.append(tuple(out))
        return results[0] if results else default

    def name_filter(self, name: str) -> NameFilter:
        include = self.items(f"{name}.include", _check_pattern, ("*",))
        exclude = self.items(f"{name}.exclude", _check_pattern, ())
        raw = self.raw(f"{name}.include")
        if raw is not None and not raw.value:
            self.errors.append(
                f'{raw.where}: the include list is empty, so nothing would be collected (use ["*"] for everything)'
            )
        return NameFilter(include=tuple(dict.fromkeys(include)), exclude=tuple(dict.fromkeys(exclude)))


def _read_secret_file(path: str) -> str:
    """The stripped content of a secret file (ValueError when missing, unreadable or empty)."""
    try:
        with open(path, encoding="utf-8") as fh:
            content = fh.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read '{path}': {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"'{path}' is not UTF-8 text") from None
    if not content:
        raise ValueError(f"'{path}' is empty")
    return content


def _in_file_order(errors: list[str], path: str | None) -> list[str]:
    """File errors by line and column, then environment, overrides and the rest, each as found."""
    located = re.compile(rf"{re.escape(path)}:(\d+):(\d+): ") if path else None

    def key(indexed: tuple[int, str]) -> tuple[int, int, int, int]:
        index, line = indexed
        m = located.match(line) if located else None
        if m:
            return (0, int(m.group(1)), int(m.group(2)), index)
        return (1 if line.startswith("env ") else 2 if line.startswith("--") else 3, 0, 0, index)

    return [line for _, line in sorted(enumerate(errors), key=key)]


def load_config(
    path: str | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    *,
    require_credentials: bool = True,
) -> Config:
    """Build the configuration from a YAML file (optional), environment variables and overrides.

    Raises ConfigError listing every problem. Exactly one credential is required: AZDO_PAT, pat_file,
    AZDO_BEARER_TOKEN or bearer_token_file (none is required when `require_credentials` is False).
    """
    errors: list[str] = []
    file_values: dict[str, _Raw] = {}
    file_ok = True
    if path is not None:
        read = _read_file(path, errors)
        file_ok = read is not None
        file_values = read or {}
    r = _Resolver([_read_overrides(overrides or {}, errors), _read_env(env), file_values], errors)
    origin = path or "configuration"

    organization_url = r.scalar("organization_url", _check_organization_url, None)
    if r.raw("organization_url") is None and file_ok:
        errors.append(f"{origin}: organization_url: required (in the file or as AZDO_ORG_URL), {_URL_HINT}")
    release_url = r.scalar("release_url", _check_url, "")
    audit_url = r.scalar("audit_url", _check_url, "")

    # Credentials: exactly one source.
    pat = bearer_token = None
    pat_file = bearer_token_file = None
    entra = _entra_config(r, errors)
    given = [
        (name, raw)
        for name in ("pat", "pat_file", "bearer_token", "bearer_token_file")
        if (raw := r.raw(name)) is not None
    ]
    if entra is not None and (raw_auth := r.raw("auth.method")) is not None:
        given.append(("auth", raw_auth))
    if len(given) > 1:
        listed = ", ".join(raw.where for _, raw in given)
        errors.append(
            f"{origin}: credentials: more than one given ({listed}); "
            "set exactly one of AZDO_PAT, pat_file, AZDO_BEARER_TOKEN, bearer_token_file, auth: entra"
        )
    elif not given and require_credentials and file_ok:
        errors.append(
            f"{origin}: credentials: none given; set one of AZDO_PAT, pat_file (AZDO_PAT_FILE), "
            "AZDO_BEARER_TOKEN, bearer_token_file (AZDO_BEARER_TOKEN_FILE), auth: entra (AZDO_AUTH=entra)"
        )
    for name, raw in given:
        if name == "auth":
            continue
        if name == "pat":
            pat = Secret(str(raw.value).strip())
        elif name == "bearer_token":
            bearer_token = Secret(str(raw.value).strip())
        else:
            file_path = str(raw.value).strip()
            try:
                content = _read_secret_file(file_path)
            except ValueError as exc:
                errors.append(f"{raw.where}: {exc}")
                continue
            if name == "pat_file":
                pat_file, pat = file_path, Secret(content)
            else:
                bearer_token_file = file_path

    projects = r.name_filter("projects")
    pipelines = r.name_filter("pipelines")
    repositories = r.name_filter("repositories")
    branches = tuple(dict.fromkeys(r.items("branches", _check_branch, DEFAULT_BRANCHES)))
    lookback = r.scalar("lookback", _check_positive_duration, DEFAULT_LOOKBACK)
    broken = frozenset(r.items("broken_results", _check_result, ("failed",)))
    raw_broken = r.raw("broken_results")
    if raw_broken is not None and not raw_broken.value:
        errors.append(f"{raw_broken.where}: empty; at least one of failed, partiallySucceeded is needed")
    production = r.items("production_environments", _check_regex, (re.compile("(?i)prod"),))
    defaults = Intervals()
    intervals = Intervals(**{a: r.scalar(f"intervals.{a}", _check_duration, getattr(defaults, a)) for a in AREAS})
    listen_host, listen_port = r.scalar("listen", _check_listen, ("0.0.0.0", 9862))
    log_level = r.scalar("log_level", _check_log_level, "INFO")
    log_format = r.scalar("log_format", _check_log_format, "text")
    request_timeout = r.scalar("request_timeout", _check_positive_duration, 30.0)
    max_retries = r.scalar("max_retries", _check_int, 3)
    digest = _digest_config(r, errors, origin, require_credentials and file_ok)
    shard = r.scalar("shard", parse_shard, Shard())
    web_config_file, web_config = _web_config(r, errors)

    if errors or organization_url is None:
        raise ConfigError(_in_file_order(errors or [f"{origin}: organization_url: required"], path))
    return Config(
        organization_url=organization_url,
        pat=pat,
        bearer_token=bearer_token,
        pat_file=pat_file,
        bearer_token_file=bearer_token_file,
        release_url=release_url,
        audit_url=audit_url,
        projects=projects,
        pipelines=pipelines,
        repositories=repositories,
        branches=branches,
        lookback=lookback,
        broken_results=broken,
        production_environments=production,
        intervals=intervals,
        listen_host=listen_host,
        listen_port=listen_port,
        log_level=log_level,
        log_format=log_format,
        request_timeout=request_timeout,
        max_retries=max_retries,
        digest=digest,
        shard=shard,
        web_config_file=web_config_file,
        web_config=web_config,
        entra=entra,
    )


def _check_auth_method(value: Any) -> str:
    method = str(value).strip().lower()
    if method != "entra":
        raise ValueError(f"unknown auth method '{value}'{_suggest(method, ['entra'])}; use entra (a personal access "
                         "token or bearer token is given with AZDO_PAT, pat_file, AZDO_BEARER_TOKEN or "
                         "bearer_token_file instead)")
    return method


def _check_entra_credential(value: Any) -> str:
    name = str(value).strip().lower().replace("-", "_")
    if name not in ENTRA_CREDENTIALS:
        raise ValueError(f"unknown Entra ID credential '{value}'{_suggest(name, ENTRA_CREDENTIALS)}; use one of "
                         f"{', '.join(ENTRA_CREDENTIALS)}")
    return name


def _check_readable_file(value: Any) -> str:
    path = str(value).strip()
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read '{path}': {exc.strerror or type(exc).__name__}") from None
    return path


def _entra_config(r: _Resolver, errors: list[str]) -> EntraConfig | None:
    """The `auth:` section: None unless `auth.method` (AZDO_AUTH) is `entra`."""
    method = r.scalar("auth.method", _check_auth_method, None)
    credential = r.scalar("auth.credential", _check_entra_credential, "default")
    settings = {key: r.scalar(f"auth.{key}", _check_readable_file if key.endswith("_file") else
                              (lambda v: str(v).strip()), None)
                for key in ("client_id", "tenant_id", "client_secret_file", "client_certificate_file")}
    if method is None:
        for key in _ENTRA_KEYS[1:]:
            if (raw := r.raw(f"auth.{key}")) is not None:
                errors.append(f"{raw.where}: auth.{key} is set but auth.method is not entra (AZDO_AUTH=entra)")
        return None
    where = raw.where if (raw := r.raw("auth.method")) is not None else "auth"
    if credential == "client_secret" and not (settings["client_secret_file"] or os.environ.get("AZURE_CLIENT_SECRET")):
        errors.append(f"{where}: auth.credential client_secret needs auth.client_secret_file (or AZURE_CLIENT_SECRET)")
    if credential == "client_certificate" and not (settings["client_certificate_file"]
                                                   or os.environ.get("AZURE_CLIENT_CERTIFICATE_PATH")):
        errors.append(f"{where}: auth.credential client_certificate needs auth.client_certificate_file "
                      "(or AZURE_CLIENT_CERTIFICATE_PATH)")
    return EntraConfig(credential=credential, **settings)


def _web_config(r: _Resolver, errors: list[str]) -> tuple[str | None, Any]:
    """`web_config_file`: the path and the parsed exporter-toolkit web configuration."""
    raw = r.raw("web_config_file")
    path = r.scalar("web_config_file", _check_readable_file, None)
    if path is None or raw is None:
        return None, None
    from exporter.config.web_config import WebConfigError, load_web_config

    try:
        return path, load_web_config(path)
    except WebConfigError as exc:
        errors.extend(f"{raw.where}: {line}" for line in exc.errors)
        return path, None


def _digest_config(r: _Resolver, errors: list[str], origin: str, require_url: bool) -> DigestConfig:
    """The `digest:` section; a scheduled digest (`to` set) needs a webhook URL and a state file."""
    defaults = DigestConfig()
    to = r.scalar("digest.to", _check_digest_to, None)
    days = tuple(sorted({d for group in r.items("digest.days", _check_days, ((0,),)) for d in group}))
    raw_days = r.raw("digest.days")
    if raw_days is not None and not raw_days.value:
        errors.append(f"{raw_days.where}: empty; name at least one day, e.g. [mon] or [weekdays]")
    at = r.scalar("digest.time", _check_clock_time, defaults.time)
    time_zone = r.scalar("digest.time_zone", _check_time_zone, defaults.time_zone)
    state_file = r.scalar("digest.state_file", _check_state_file, None)
    webhook_url: Secret | None = None
    webhook_url_file: str | None = None
    given = [(name, raw) for name in ("digest.webhook_url", "digest.webhook_url_file")
             if (raw := r.raw(name)) is not None]
    if len(given) > 1:
        errors.append(f"{origin}: digest.webhook_url: given twice ({', '.join(raw.where for _, raw in given)}); "
                      "set either AZDO_DIGEST_WEBHOOK_URL or digest.webhook_url_file")
    for name, raw in given[:1]:
        try:
            if name == "digest.webhook_url":
                webhook_url = Secret(_check_webhook_url(str(raw.value).strip()))
            else:
                webhook_url_file = str(raw.value).strip()
                webhook_url = Secret(_check_webhook_url(_read_secret_file(webhook_url_file)))
        except ValueError as exc:
            errors.append(f"{raw.where}: {exc}")
    if to is not None:
        where = raw_to.where if (raw_to := r.raw("digest.to")) is not None else origin
        if not given and require_url:
            errors.append(f"{where}: digest.to is {to}, but no webhook URL is given; set AZDO_DIGEST_WEBHOOK_URL "
                          "or digest.webhook_url_file")
        if state_file is None:
            errors.append(f"{where}: digest.to is {to}, but digest.state_file is not set; the state file records "
                          "the last digest sent so that a restart never sends it twice")
    return DigestConfig(to=to, days=days, time=at, time_zone=time_zone, webhook_url=webhook_url,
                        webhook_url_file=webhook_url_file, state_file=state_file)


def check_config_file(path: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Every problem in a configuration file (with `env` applied, empty when None); [] when valid.

    A credential is not required, since it normally comes from the environment at run time, but a
    named `pat_file` / `bearer_token_file` must be readable.
    """
    try:
        load_config(path, env or {}, require_credentials=False)
    except ConfigError as exc:
        return list(exc.errors)
    return []

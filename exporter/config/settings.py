"""Configuration: a YAML file, `AZDO_*` environment variables and command-line overrides.

Precedence per setting: overrides (command line) > environment > file > defaults. Every problem is
collected and reported at once in a `ConfigError`, each line starting with its location
(`config.yaml:12:3: intervals.builds: ...`, `env AZDO_LOOKBACK: ...` or `--listen: ...`).
Secrets (the PAT, bearer tokens) are wrapped in `Secret` and never appear in messages or reprs.

The settings themselves are declared once, in `table.py`; this module merges the sources
(`sources.py`), converts each setting with its parser and checks the rules that join settings
(exactly one credential, a scheduled digest needs a webhook, …).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config.files import read_secret_file
from exporter.config.model import Config, DigestConfig, EntraConfig, Intervals, NameFilter
from exporter.config.sources import Raw, read_env, read_file, read_overrides
from exporter.config.table import BY_KEY, SECTIONS, Setting
from exporter.config.values import (
    AREAS,
    DAY_NAMES,
    DIGEST_TARGETS,
    ENTRA_CREDENTIALS,
    URL_HINT,
    Duration,
    Secret,
    check_webhook_url,
    is_local_url,
    parse_duration,
)

__all__ = [
    "AREAS",
    "DAY_NAMES",
    "DIGEST_TARGETS",
    "ENTRA_CREDENTIALS",
    "Config",
    "ConfigCheck",
    "ConfigError",
    "DigestConfig",
    "EntraConfig",
    "Intervals",
    "NameFilter",
    "Secret",
    "check_config",
    "check_config_file",
    "load_config",
    "parse_duration",
]


class ConfigError(Exception):
    """Invalid configuration; `errors` holds every problem, each a full line with its location."""

    def __init__(self, errors: list[str] | str, warnings: list[str] | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.warnings: list[str] = list(warnings or [])
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


class _Resolver:
    """Merges the sources by precedence and converts each setting with its parser, collecting errors.

    `local`: Azure DevOps is on this machine (a simulator), so shorter intervals are allowed.
    """

    def __init__(self, sources: list[dict[str, Raw]], errors: list[str]) -> None:
        self.sources = sources  # highest precedence first
        self.errors = errors
        self.local = False

    def raw(self, key: str) -> Raw | None:
        for source in self.sources:
            if key in source:
                return source[key]
        return None

    def all_raw(self, key: str) -> list[Raw]:
        return [source[key] for source in self.sources if key in source]

    def _parse(self, setting: Setting, value: Any) -> Any:
        if isinstance(setting.parse, Duration):
            return setting.parse(value, local=self.local)
        return setting.parse(value)

    def get(self, key: str) -> Any:
        """The setting's value from the highest-precedence source, else its default.

        Values in sources of lower precedence are checked too, so that a mistake never hides.
        """
        setting = BY_KEY[key]
        if setting.kind == "list":
            return self._items(setting)
        result, found = setting.typed_default(), False
        for raw in self.all_raw(key):
            try:
                value = self._parse(setting, raw.value)
            except ValueError as exc:
                self.errors.append(f"{raw.where}: {exc}")
                found = True
                continue
            if not found:
                result, found = value, True
        return result

    def _items(self, setting: Setting) -> Any:
        results = []
        for raw in self.all_raw(setting.key):
            out = []
            for item, where in raw.value:
                try:
                    out.append(self._parse(setting, item))
                except ValueError as exc:
                    self.errors.append(f"{where}: {exc}")
            results.append(setting.combine(tuple(out)))
        first = self.raw(setting.key)
        if first is not None and not first.value and setting.empty_error:
            self.errors.append(f"{first.where}: {setting.empty_error}")
        return results[0] if results else setting.typed_default()

    def name_filter(self, name: str) -> NameFilter:
        return NameFilter(include=self.get(f"{name}.include"), exclude=self.get(f"{name}.exclude"))


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


@dataclass(frozen=True)
class ConfigCheck:
    """What `check-config` found: errors stop the exporter, warnings do not."""

    errors: list[str]
    warnings: list[str]


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
    Problems that do not stop the exporter are in `Config.warnings`.
    """
    errors: list[str] = []
    warnings: list[str] = []
    file_values: dict[str, Raw] = {}
    file_ok = True
    if path is not None:
        read = read_file(path, errors)
        file_ok = read is not None
        file_values = read or {}
    r = _Resolver([read_overrides(overrides or {}, errors), read_env(env), file_values], errors)
    origin = path or "configuration"

    organization_url = r.get("organization_url")
    if r.raw("organization_url") is None and file_ok:
        errors.append(f"{origin}: organization_url: required (in the file or as AZDO_ORG_URL), {URL_HINT}")
    r.local = organization_url is not None and is_local_url(organization_url)
    release_url = r.get("release_url") or ""
    audit_url = r.get("audit_url") or ""

    # Credentials: exactly one source.
    pat = bearer_token = None
    pat_file = bearer_token_file = None
    entra = _entra_config(r, errors, env)
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
                content = read_secret_file(file_path)
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
    branches = r.get("branches")
    lookback = r.get("lookback")
    broken = r.get("broken_results")
    production = r.get("production_environments")
    intervals = Intervals(**{area: r.get(f"intervals.{area}") for area in SECTIONS["intervals"]})
    listen_host, listen_port = r.get("listen")
    log_level = r.get("log_level")
    log_format = r.get("log_format")
    request_timeout = r.get("request_timeout")
    max_retries = r.get("max_retries")
    max_response_bytes = r.get("max_response_bytes")
    digest = _digest_config(r, errors, origin, require_credentials and file_ok)
    shard = r.get("shard")
    web_config_file, web_config = _web_config(r, errors)

    warnings.extend(_plain_http_warnings(r, organization_url=organization_url, release_url=release_url,
                                         audit_url=audit_url))
    if not any(getattr(intervals, area) for area in AREAS):
        warnings.append(f"{origin}: intervals: every area is 0 (off), so nothing is collected; set at least one "
                        "interval, e.g. intervals.builds: 60s")

    if errors or organization_url is None:
        raise ConfigError(_in_file_order(errors or [f"{origin}: organization_url: required"], path),
                          _in_file_order(warnings, path))
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
        max_response_bytes=max_response_bytes,
        digest=digest,
        shard=shard,
        web_config_file=web_config_file,
        web_config=web_config,
        entra=entra,
        warnings=tuple(_in_file_order(warnings, path)),
    )


def _plain_http_warnings(r: _Resolver, **urls: str | None) -> list[str]:
    """A warning for each URL given that sends the credential unencrypted to another machine."""
    out = []
    for key, url in urls.items():
        raw = r.raw(key)
        if raw is not None and url and url.lower().startswith("http://") and not is_local_url(url):
            out.append(f"{raw.where}: '{url}' is plain http://, so the credential and the data cross the network "
                       "unencrypted; use https://")
    return out


def _entra_config(r: _Resolver, errors: list[str], env: Mapping[str, str]) -> EntraConfig | None:
    """The `auth:` section: None unless `auth.method` (AZDO_AUTH) is `entra`.

    `env` is where azure-identity's own variables (AZURE_CLIENT_SECRET, …) are looked up.
    """
    method = r.get("auth.method")
    credential = r.get("auth.credential")
    settings = {key: r.get(f"auth.{key}")
                for key in ("client_id", "tenant_id", "client_secret_file", "client_certificate_file")}
    if method is None:
        for key in SECTIONS["auth"][1:]:
            if (raw := r.raw(f"auth.{key}")) is not None:
                errors.append(f"{raw.where}: auth.{key} is set but auth.method is not entra (AZDO_AUTH=entra)")
        return None
    where = raw.where if (raw := r.raw("auth.method")) is not None else "auth"
    if credential == "client_secret" and not (settings["client_secret_file"] or env.get("AZURE_CLIENT_SECRET")):
        errors.append(f"{where}: auth.credential client_secret needs auth.client_secret_file (or AZURE_CLIENT_SECRET)")
    if credential == "client_certificate" and not (settings["client_certificate_file"]
                                                   or env.get("AZURE_CLIENT_CERTIFICATE_PATH")):
        errors.append(f"{where}: auth.credential client_certificate needs auth.client_certificate_file "
                      "(or AZURE_CLIENT_CERTIFICATE_PATH)")
    return EntraConfig(credential=credential, **settings)


def _web_config(r: _Resolver, errors: list[str]) -> tuple[str | None, Any]:
    """`web_config_file`: the path and the parsed exporter-toolkit web configuration."""
    raw = r.raw("web_config_file")
    path = r.get("web_config_file")
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
    to = r.get("digest.to")
    days = r.get("digest.days")
    at = r.get("digest.time")
    time_zone = r.get("digest.time_zone")
    state_file = r.get("digest.state_file")
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
                webhook_url = BY_KEY[name].parse(raw.value)
            else:
                webhook_url_file = str(raw.value).strip()
                webhook_url = Secret(check_webhook_url(read_secret_file(webhook_url_file)))
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


def check_config(path: str, env: Mapping[str, str] | None = None) -> ConfigCheck:
    """Every problem in a configuration file (with `env` applied, empty when None): errors and warnings.

    A credential is not required, since it normally comes from the environment at run time, but a
    named `pat_file` / `bearer_token_file` must be readable.
    """
    try:
        config = load_config(path, env or {}, require_credentials=False)
    except ConfigError as exc:
        return ConfigCheck(errors=list(exc.errors), warnings=list(exc.warnings))
    return ConfigCheck(errors=[], warnings=list(config.warnings))


def check_config_file(path: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Every error in a configuration file (with `env` applied, empty when None); [] when valid."""
    return check_config(path, env).errors


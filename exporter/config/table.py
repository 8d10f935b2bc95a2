"""The settings table: every setting declared once.

Each `Setting` names its key path in the YAML file, its environment variable, its command-line flag,
its parser (which also holds the allowed range), its default (written as a user would write it and
parsed by that parser) and a one-line doc. From this table come the environment map and the section
dispatch of the readers (`sources.py`), the defaults of `Config` (`model.py`), the checks of
`load_config` and `check-config` (`settings.py`) and the configuration tables in README.md
(`reference.py`; `tests/unit/test_config.py` fails when they drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from exporter.config import values as v
from exporter.config.sharding import parse_shard

__all__ = ["BY_ENV", "BY_KEY", "GROUPS", "SECTIONS", "SETTINGS", "TOP_KEYS", "Setting", "default"]

Kind = Literal["scalar", "list", "secret"]


def _unique(items: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def _days(groups: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    return tuple(sorted({day for group in groups for day in group}))


@dataclass(frozen=True)
class Setting:
    """One setting. List settings parse each item with `parse` and join the items with `combine`."""

    key: str
    """Path in the YAML file; a dot separates a section from its key (`intervals.builds`)."""
    env: str
    parse: Callable[..., Any]
    doc: str
    group: str
    """The README table the setting is listed in."""
    default: str | tuple[str, ...] | None = None
    """As a user would write it; None: not set (see `default_text`)."""
    default_text: str = "—"
    """README text for a setting without a default (`*required*`, `derived`, …)."""
    kind: Kind = "scalar"
    """`secret`: only from the environment (or an override), never from the file."""
    flag: str | None = None
    allowed_text: str = ""
    combine: Callable[[tuple[Any, ...]], Any] = tuple
    empty_error: str | None = None
    """For a list: the error when it is given but empty."""

    @property
    def section(self) -> str | None:
        return self.key.split(".")[0] if "." in self.key else None

    @property
    def name(self) -> str:
        return self.key.split(".")[-1]

    @property
    def allowed(self) -> str:
        """The allowed values or range, for messages and the README."""
        return self.allowed_text or str(getattr(self.parse, "allowed", ""))

    @property
    def where_flag(self) -> str:
        """How an override of this setting is named in messages."""
        return self.flag or f"--{self.key.replace('_', '-')}"

    def typed_default(self) -> Any:
        """The default as the loader returns it (None when there is none)."""
        if self.default is None:
            return None
        if self.kind == "list":
            return self.combine(tuple(self.parse(item) for item in self.default))
        return self.parse(self.default)


# Ranges: sane values only, so nothing overflows a datetime or a timeout at run time. A 0 interval
# turns an area off; otherwise a real organization is asked at most every 5 s (a simulator on this
# machine, as in the demo and the tests, every 100 ms). A week is the longest interval, 400 days the
# longest lookback (Azure DevOps keeps about a year of runs), 10 minutes the longest request.
_INTERVAL = v.Duration(minimum=5.0, maximum=7 * 86400.0, off=True, local_minimum=0.1)
_LOOKBACK = v.Duration(minimum=3600.0, maximum=400 * 86400.0)
_REQUEST_TIMEOUT = v.Duration(minimum=0.1, maximum=600.0)
_RETRIES = v.WholeNumber(0, 10)
_RESPONSE_BYTES = v.WholeNumber(1024, 1 << 40)  # at least 1 KiB: a smaller cap would refuse every answer

_AREA_DOCS = {
    "builds": ("60s", "Refresh of pipeline runs and build health."),
    "tests": ("60s", "Refresh of the test results of runs."),
    "pull_requests": ("5m", "Refresh of pull requests and reviews."),
    "policies": ("30m", "Refresh of branch policies."),
    "deployments": ("2m", "Refresh of classic releases and YAML environment deployments."),
    "agent_pools": ("30s", "Refresh of agents and job queues."),
    "audit": ("10m", "Refresh of the audit log."),
}
_FILTER_DOCS = {
    "projects": "Projects to {verb}: glob patterns of project names.",
    "pipelines": "Pipelines to {verb}: glob patterns matched against `folder/name`, e.g. `infra/*`.",
    "repositories": "Repositories to {verb}: glob patterns of repository names.",
}

SETTINGS: tuple[Setting, ...] = (
    # -- organization
    Setting("organization_url", "AZDO_ORG_URL", v.check_organization_url, group="organization",
            default_text="*required*", allowed_text="an `http(s)://` organization or collection URL",
            doc="Azure DevOps Services: `https://dev.azure.com/{organization}`, with no project in it. Azure DevOps "
                "Server: the collection URL, e.g. `https://tfs.example.com/tfs/DefaultCollection`. A trailing `/` is "
                "ignored."),
    Setting("release_url", "AZDO_RELEASE_URL", v.check_url, group="organization", default_text="derived",
            allowed_text="an `http(s)://` URL",
            doc="Base URL of the classic Release API. For `dev.azure.com/{org}` it is "
                "`https://vsrm.dev.azure.com/{org}`. For any other host it is `organization_url`."),
    Setting("audit_url", "AZDO_AUDIT_URL", v.check_url, group="organization", default_text="derived",
            allowed_text="an `http(s)://` URL",
            doc="Base URL of the Audit API. For `dev.azure.com/{org}` it is "
                "`https://auditservice.dev.azure.com/{org}`. For any other host it is `organization_url`."),
    # -- credentials
    Setting("pat", "AZDO_PAT", v.check_secret, group="credentials", kind="secret",
            doc="A personal access token, sent as HTTP Basic with an empty user name. Only from the environment: "
                "a `pat:` key in the file is an error."),
    Setting("pat_file", "AZDO_PAT_FILE", v.check_text, group="credentials",
            allowed_text="a regular file, at most 64 KiB",
            doc="A file that holds the personal access token, such as a Docker or Kubernetes secret. Surrounding "
                "whitespace is ignored."),
    Setting("bearer_token", "AZDO_BEARER_TOKEN", v.check_secret, group="credentials", kind="secret",
            doc="A Microsoft Entra ID access token, sent as `Authorization: Bearer`. Only from the environment."),
    Setting("bearer_token_file", "AZDO_BEARER_TOKEN_FILE", v.check_text, group="credentials",
            allowed_text="a regular file, at most 64 KiB",
            doc="A file that holds an Entra ID access token. The exporter reads it again whenever it changes, so a "
                "sidecar can refresh it."),
    Setting("auth.method", "AZDO_AUTH", v.check_auth_method, group="credentials", allowed_text="`entra`",
            doc="Microsoft Entra ID sign-in through azure-identity (`pip install 'azdo-exporter[entra]'`); the "
                "exporter fetches and refreshes the tokens itself. `auth: entra` is short for "
                "`auth: {method: entra}`."),
    Setting("auth.credential", "AZDO_AUTH_CREDENTIAL", v.check_entra_credential, group="credentials",
            default="default", allowed_text=", ".join(f"`{c}`" for c in v.ENTRA_CREDENTIALS),
            doc="The azure-identity credential; `default` is DefaultAzureCredential, which also reads AZURE_CLIENT_ID, "
                "AZURE_TENANT_ID, AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, …"),
    Setting("auth.client_id", "AZDO_AUTH_CLIENT_ID", v.check_text, group="credentials",
            doc="The application (client) id, for the credentials that take one."),
    Setting("auth.tenant_id", "AZDO_AUTH_TENANT_ID", v.check_text, group="credentials",
            doc="The directory (tenant) id, for the credentials that take one."),
    Setting("auth.client_secret_file", "AZDO_AUTH_CLIENT_SECRET_FILE", v.check_readable_file, group="credentials",
            allowed_text="a regular file",
            doc="A file that holds the client secret (`credential: client_secret`; or AZURE_CLIENT_SECRET)."),
    Setting("auth.client_certificate_file", "AZDO_AUTH_CLIENT_CERTIFICATE_FILE", v.check_readable_file,
            group="credentials", allowed_text="a regular file",
            doc="A PEM file with the client certificate and its key (`credential: client_certificate`; or "
                "AZURE_CLIENT_CERTIFICATE_PATH)."),
    # -- what is collected
    *(
        Setting(f"{name}.{part}", f"AZDO_{name.upper()}_{part.upper()}", v.check_pattern, group="collected",
                kind="list", default=("*",) if part == "include" else (), combine=_unique,
                allowed_text="glob patterns",
                empty_error='the include list is empty, so nothing would be collected (use ["*"] for everything)'
                if part == "include" else None,
                doc=what.format(verb="collect" if part == "include" else "leave out"))
        for name, what in _FILTER_DOCS.items()
        for part in ("include", "exclude")
    ),
    Setting("branches", "AZDO_BRANCHES", v.check_branch, group="collected", kind="list",
            default=("main", "master", "release/*"), combine=_unique, allowed_text="glob patterns of branch names",
            doc="Branches tracked for build health, written without `refs/heads/`. Each pipeline's default branch is "
                "always tracked as well. Pull-request runs (`refs/pull/…`) and tags are never tracked."),
    Setting("lookback", "AZDO_LOOKBACK", _LOOKBACK, group="collected", default="30d",
            doc="The history window, loaded when the exporter starts and kept in memory. All `…_window_…` metrics "
                "cover it."),
    Setting("broken_results", "AZDO_BROKEN_RESULTS", v.check_result, group="collected", kind="list",
            default=("failed",), combine=frozenset, allowed_text="`failed`, `partiallySucceeded`",
            empty_error="empty; at least one of failed, partiallySucceeded is needed",
            doc="Run results that break a branch: `failed`, and optionally `partiallySucceeded` (`partially_succeeded` "
                "is also accepted)."),
    Setting("production_environments", "AZDO_PRODUCTION_ENVIRONMENTS", v.check_regex, group="collected",
            kind="list", default=("(?i)prod",), allowed_text="regular expressions",
            doc="Environments or release stages that count for DORA (`re.search`, so `(?i)prod` also matches "
                "`preprod`; use `^prod$` for one name). In the environment variable a pattern cannot hold a comma."),
    # -- refresh intervals
    *(
        Setting(f"intervals.{area}", f"AZDO_INTERVAL_{area.upper()}", _INTERVAL, group="intervals",
                default=_AREA_DOCS[area][0], doc=_AREA_DOCS[area][1])
        for area in v.AREAS
    ),
    # -- server and behaviour
    Setting("listen", "AZDO_LISTEN", v.check_listen, group="server", default="0.0.0.0:9862", flag="--listen",
            allowed_text="`HOST:PORT`, port 0–65535",
            doc="Address to serve `/metrics` on. `:9862` means all interfaces. Put IPv6 addresses in brackets: "
                "`[::]:9862`."),
    Setting("log_level", "AZDO_LOG_LEVEL", v.check_log_level, group="server", default="INFO", flag="--log-level",
            allowed_text=", ".join(f"`{level}`" for level in v.LOG_LEVELS), doc="Log level; case does not matter."),
    Setting("log_format", "AZDO_LOG_FORMAT", v.check_log_format, group="server", default="text", flag="--log-format",
            allowed_text="`text`, `json`", doc="`json` writes one object per line."),
    Setting("request_timeout", "AZDO_REQUEST_TIMEOUT", _REQUEST_TIMEOUT, group="server", default="30s",
            doc="Deadline of each request to Azure DevOps: connect, headers and the whole body (an answer still "
                "arriving then counts as a `timeout`)."),
    Setting("max_retries", "AZDO_MAX_RETRIES", _RETRIES, group="server", default="3",
            doc="Retries of a failed request, with exponential backoff and jitter, before the refresh counts as "
                "failed."),
    Setting("max_response_bytes", "AZDO_MAX_RESPONSE_BYTES", _RESPONSE_BYTES, group="server", default="67108864",
            doc="Largest answer (decoded body, in bytes; the default is 64 MiB) read from Azure DevOps; a larger "
                "one is not read further and counts as `bad_response`."),
    Setting("shard", "AZDO_SHARD", parse_shard, group="server", default="0/1", flag="--shard",
            allowed_text="`INDEX/COUNT`, COUNT up to 1000",
            doc="Collect only the projects of this shard (0-based). Agent pools and audit run on shard 0 only. See "
                "[Deployment](#deployment)."),
    Setting("web_config_file", "AZDO_WEB_CONFIG_FILE", v.check_readable_file, group="server",
            flag="--web.config.file", allowed_text="a regular file",
            doc="Web configuration in the exporter-toolkit format: TLS, client certificates and basic auth "
                "([docs/deployment.md](docs/deployment.md#tls-and-basic-auth---webconfigfile))."),
    # -- digest
    Setting("digest.to", "AZDO_DIGEST_TO", v.check_digest_to, group="digest", default_text="— (no scheduled digest)",
            allowed_text=", ".join(f"`{t}`" for t in v.DIGEST_TARGETS),
            doc="Where the running exporter sends the digest on the schedule; needs a webhook URL and a state file."),
    Setting("digest.days", "AZDO_DIGEST_DAYS", v.check_days, group="digest", kind="list", default=("mon",),
            combine=_days, allowed_text="`mon` … `sun` or full names, `weekdays`, `weekends`, `daily`",
            empty_error="empty; name at least one day, e.g. [mon] or [weekdays]",
            doc="Days the digest is sent, in `time_zone`."),
    Setting("digest.time", "AZDO_DIGEST_TIME", v.check_clock_time, group="digest", default="09:00",
            allowed_text="`HH:MM`, 24-hour", doc="Wall-clock time the digest is sent."),
    Setting("digest.time_zone", "AZDO_DIGEST_TIME_ZONE", v.check_time_zone, group="digest", default="UTC",
            allowed_text="an IANA time zone", doc="Time zone of `days` and `time`, e.g. `Europe/Berlin`."),
    Setting("digest.webhook_url", "AZDO_DIGEST_WEBHOOK_URL", v.check_secret_webhook_url, group="digest",
            kind="secret", allowed_text="an `http(s)://` URL",
            doc="The Slack, Teams or other webhook URL (a secret: it grants posting)."),
    Setting("digest.webhook_url_file", "AZDO_DIGEST_WEBHOOK_URL_FILE", v.check_text, group="digest",
            allowed_text="a regular file, at most 64 KiB", doc="A file that holds the webhook URL."),
    Setting("digest.state_file", "AZDO_DIGEST_STATE_FILE", v.check_state_file, group="digest",
            allowed_text="a path in an existing directory",
            doc="JSON file with the last digest sent and the previous figures, so that a restart never sends it "
                "twice."),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(s.group for s in SETTINGS))
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(s.name for s in SETTINGS if s.section == section)
    for section in dict.fromkeys(s.section for s in SETTINGS if s.section)
}
"""Each section of the file and its keys (`intervals` → builds, tests, …)."""

RESERVED_KEYS: tuple[str, ...] = ("shards",)
"""Top-level keys reserved for later features; accepted and ignored."""
RESERVED_ENV_PREFIXES: tuple[str, ...] = ("AZDO_SHARD", "AZDO_WEB_")
SHORTHANDS: dict[str, str] = {"auth": "auth.method"}
"""A section given as a single value sets this key (`auth: entra`)."""
NOT_IN_FILE: dict[str, str] = {
    "auth.client_secret": "use auth.client_secret_file or azure-identity's AZURE_CLIENT_SECRET",
}
"""Keys that are secrets without a setting of their own: the file may not hold them."""
SECTION_ITEM: dict[str, str] = {"intervals": "area"}
"""What a key of a section is called in messages (default: key)."""

TOP_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys([s.key.split(".")[0] for s in SETTINGS if s.kind != "secret" or s.section] + list(RESERVED_KEYS))
)
"""The keys allowed at the top of the file (for did-you-mean)."""


def default(key: str) -> Any:
    """The typed default of a setting."""
    return BY_KEY[key].typed_default()


def secret_message(setting: Setting) -> str:
    """Why a secret in the file is refused, and where to put it instead."""
    return (f"secrets are not read from the configuration file; set the environment variable {setting.env} or use "
            f"{setting.key}_file")

"""Values of settings: `Secret`, durations with their allowed range, and one parser per kind of value.

Each parser takes what a user wrote (a string from the file or the environment, or a Python value
from an override) and returns the typed value, or raises ValueError with a message fit for a user.
Messages never quote a secret.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import time as clock_time
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter.config.files import check_regular_file

__all__ = ["Duration", "Secret", "WholeNumber", "format_duration", "parse_duration", "suggest"]

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

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
DIGEST_TARGETS = ("slack", "teams", "webhook")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENTRA_CREDENTIALS = ("default", "managed_identity", "workload_identity", "client_secret", "client_certificate",
                     "environment", "azure_cli")


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


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


# ------------------------------------------------------------------------------------------ durations

_DURATION_HINT = "(use e.g. 90s, 5m, 1h, 30d)"
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d|w)")
_BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as `90s`, `5m`, `1h30m`, `500ms`, `30d`, `1w`, `0` or a bare number.

    Raises ValueError with a message fit for a user (negative or endless durations are not allowed).
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
        total = float(s)
    else:
        total, pos = 0.0, 0
        while pos < len(s):
            m = _DURATION_PART.match(s, pos)
            if not m:
                raise ValueError(f"invalid duration '{s}' {_DURATION_HINT}")
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
    if not math.isfinite(total):  # hundreds of digits overflow a float
        raise ValueError(f"invalid duration '{_clip(s)}': too large")
    return total


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def format_duration(seconds: float) -> str:
    """The shortest exact way to write a duration: 100ms, 5s, 10m, 1w, 400d."""
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m", "s", "ms"):
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Duration:
    """A duration setting from `minimum` to `maximum` seconds; `off`: 0 is allowed and turns it off.

    `local_minimum` is a lower floor for when Azure DevOps is a simulator on this machine (its host is
    a loopback address): the demo and the tests refresh faster than a real organization should be asked.
    """

    minimum: float
    maximum: float
    off: bool = False
    local_minimum: float | None = None

    @property
    def allowed(self) -> str:
        if self.maximum == math.inf:
            return "0 (off) or more" if self.off else f"more than {format_duration(self.minimum)}"
        text = f"{format_duration(self.minimum)} to {format_duration(self.maximum)}"
        if self.local_minimum is not None:
            text += f" (from {format_duration(self.local_minimum)} when organization_url is on this machine)"
        return f"0 (off), or {text}" if self.off else text

    def __call__(self, value: Any, *, local: bool = False) -> float:
        seconds = parse_duration(value)
        if seconds == 0 and self.off:
            return 0.0
        if seconds == 0:
            raise ValueError(f"'{value}': must be greater than 0")
        floor = self.local_minimum if local and self.local_minimum is not None else self.minimum
        if not floor <= seconds <= self.maximum:
            raise ValueError(f"'{_clip(str(value).strip())}' is out of range; allowed: {self.allowed}")
        return seconds


@dataclass(frozen=True)
class WholeNumber:
    """A whole number from `minimum` to `maximum`."""

    minimum: int
    maximum: int

    @property
    def allowed(self) -> str:
        return f"{self.minimum} to {self.maximum}"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"'{value}': expected a whole number (0 or more)")
        try:
            number = int(value) if isinstance(value, int) else int(str(value).strip(), 10)
        except ValueError:
            raise ValueError(f"'{_clip(str(value))}': expected a whole number (0 or more)") from None
        if number < 0:
            raise ValueError(f"'{value}': expected a whole number (0 or more)")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(f"'{_clip(str(number))}' is out of range; allowed: {self.allowed}")
        return number


# ----------------------------------------------------------------------------------------------- URLs

URL_HINT = "e.g. https://dev.azure.com/contoso or https://tfs.example.com/tfs/DefaultCollection"


def show_url(text: str) -> str:
    """The URL for an error message, with any user:password@ part hidden."""
    return re.sub(r"(?<=//)[^/@]*@", "***@", text)


def check_url(value: Any) -> str:
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:
        raise ValueError(f"invalid URL '{show_url(text)}', {URL_HINT}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"invalid URL '{show_url(text)}': expected an http(s) URL, {URL_HINT}")
    if "@" in parts.netloc:
        raise ValueError(f"'{show_url(text)}': the URL must not contain credentials; use AZDO_PAT or pat_file")
    if parts.query or parts.fragment:
        raise ValueError(f"'{text}': the URL must not have a query string or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"invalid URL '{text}': bad port") from None
    return text.rstrip("/")


def check_organization_url(value: Any) -> str:
    url = check_url(value)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host == "dev.azure.com" and len(segments) != 1:
        raise ValueError(f"'{url}': expected https://dev.azure.com/ORGANIZATION (the organization only, no project)")
    if not segments and not host.endswith(".visualstudio.com"):
        raise ValueError(f"'{url}': expected an organization or collection URL, {URL_HINT}")
    return url


def is_local_url(url: str) -> bool:
    """True when the URL's host is this machine (localhost or a loopback address): a simulator."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(text: str) -> str:
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


def check_secret(value: Any) -> Secret:
    return Secret(value.reveal() if isinstance(value, Secret) else str(value).strip())


def check_secret_webhook_url(value: Any) -> Secret:
    return Secret(check_webhook_url(check_secret(value).reveal()))


# ---------------------------------------------------------------------------------------- the others


def check_text(value: Any) -> str:
    return str(value).strip()


def _one_of(key: str, choices: tuple[str, ...], problem: Callable[[], str]) -> str:
    """`key` (a value already normalised) if it is one of `choices`, else ValueError with `problem()`."""
    if key not in choices:
        raise ValueError(problem())
    return key


def check_log_level(value: Any) -> str:
    level = str(value).strip().upper()
    return _one_of("WARNING" if level == "WARN" else level, LOG_LEVELS,
                   lambda: f"invalid log level '{value}'; use one of {', '.join(LOG_LEVELS)}")


def check_log_format(value: Any) -> str:
    return _one_of(str(value).strip().lower(), LOG_FORMATS, lambda: f"invalid log format '{value}'; use text or json")


_LISTEN_HINT = "use HOST:PORT, e.g. 0.0.0.0:9862, :9862 or [::]:9862"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def check_listen(value: Any) -> tuple[str, int]:
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


def check_result(item: Any) -> str:
    key = re.sub(r"[\s_-]", "", str(item)).lower()
    if key in _RESULTS:
        return _RESULTS[key]
    if key in _NOT_BREAKING:
        raise ValueError(f"'{item}' cannot count as broken; use failed and/or partiallySucceeded")
    raise ValueError(
        f"unknown result '{item}'{suggest(key, ['failed', 'partiallySucceeded'])}; "
        "use failed and/or partiallySucceeded"
    )


def check_regex(item: Any) -> re.Pattern[str]:
    try:
        return re.compile(str(item))
    except re.error as exc:
        raise ValueError(f"invalid regular expression '{item}': {exc}") from None


def check_pattern(item: Any) -> str:
    if not str(item).strip():
        raise ValueError("empty pattern")
    return str(item).strip()


def normalise_ref(branch: str) -> str:
    return branch[len("refs/heads/") :] if branch.startswith("refs/heads/") else branch


def check_branch(item: Any) -> str:
    name = normalise_ref(str(item).strip())
    if not name:
        raise ValueError("empty branch pattern")
    if name.startswith("refs/"):
        raise ValueError(f"'{item}': only branches are tracked (refs/heads/…); pull requests and tags never are")
    return name


def check_digest_to(value: Any) -> str:
    target = str(value).strip().lower()
    return _one_of(target, DIGEST_TARGETS,
                   lambda: f"unknown target '{value}'{suggest(target, DIGEST_TARGETS)}; use slack, teams or webhook")


def check_days(item: Any) -> tuple[int, ...]:
    key = str(item).strip().lower()
    if key in ("daily", "every_day", "everyday", "all"):
        return tuple(range(7))
    if key == "weekdays":
        return tuple(range(5))
    if key == "weekends":
        return (5, 6)
    for number, name in enumerate(DAY_NAMES):
        if key == name or (len(key) > 3 and key.startswith(name) and key.endswith("day")):
            return (number,)
    raise ValueError(f"unknown day '{item}'{suggest(key[:3], DAY_NAMES)}; use mon, tue, wed, thu, fri, sat, sun, "
                     "weekdays or daily")


def check_clock_time(value: Any) -> clock_time:
    text = str(value).strip()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"invalid time '{text}': use HH:MM on a 24-hour clock, e.g. \"09:00\"")
    return clock_time(int(m.group(1)), int(m.group(2)))


def check_time_zone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}': use an IANA name such as Europe/Berlin, "
                         "America/New_York or UTC") from None
    return name


def check_state_file(value: Any) -> str:
    path = str(value).strip()
    directory = os.path.dirname(os.path.abspath(path))
    if not path or path.endswith(("/", os.sep)) or not os.path.isdir(directory):
        raise ValueError(f"'{path}': the directory for the digest state file does not exist")
    return path


def check_auth_method(value: Any) -> str:
    method = str(value).strip().lower()
    return _one_of(method, ("entra",),
                   lambda: f"unknown auth method '{value}'{suggest(method, ['entra'])}; use entra (a personal access "
                   "token or bearer token is given with AZDO_PAT, pat_file, AZDO_BEARER_TOKEN or "
                   "bearer_token_file instead)")


def check_entra_credential(value: Any) -> str:
    name = str(value).strip().lower().replace("-", "_")
    return _one_of(name, ENTRA_CREDENTIALS,
                   lambda: f"unknown Entra ID credential '{value}'{suggest(name, ENTRA_CREDENTIALS)}; use one of "
                   f"{', '.join(ENTRA_CREDENTIALS)}")


def check_readable_file(value: Any) -> str:
    """A path to a regular file that can be opened (FIFOs and devices are refused, never waited on)."""
    path = str(value).strip()
    check_regular_file(path)
    return path

"""The monitoring mixin's configuration: its defaults, and a user's YAML override file merged onto them.

alerts/generate.py (alerting and recording rules) and grafana/generate.py (dashboards) both read one
mixin config, so a threshold, a severity, the job selector or a base URL changed in one small file
changes rules and dashboards together:

    python alerts/generate.py --config my-mixin.yaml --out DIR
    python grafana/generate.py --config my-mixin.yaml --out DIR

The defaults live here, in the package, beside monitoring.py (the fixed facts they start from: the
job, the production rule, the dashboard uids), because both generators and their tests import the
package already and mypy checks it; a YAML file of defaults would need its own loader and checks. The
defaults produce exactly what ships in alerts/ and grafana/ (both generators' `--check` prove it).

An override file holds only the keys it changes, at the same place as in DEFAULTS. An unknown key, a
value of the wrong type, a bad duration or severity is an error naming the key (with a did-you-mean).
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from exporter.metrics import monitoring

# The severities of the Prometheus monitoring mixins (kubernetes-mixin, node-mixin, ...): critical pages
# someone, warning needs attention during working hours, info is for dashboards and tickets.
SEVERITIES = ("critical", "warning", "info")

# Keys whose values are Prometheus durations ('15m', '1h30m', '0s').
DURATION_KEYS = frozenset({"for", "window", "rate_window", "max_interval"})

DEFAULTS: dict[str, Any] = {
    "selectors": {
        # Prometheus job(s) scraping the exporter: used by `up` and the exporter's self-metrics.
        "job": monitoring.JOB_SELECTOR,
        # Branches whose long breakage is critical. Each pipeline's own default branch (from
        # azdo_pipeline_info{default_branch}) is added when include_pipeline_default_branch is true.
        "default_branch": 'branch=~"main|master"',
        # Environments that count as production for DORA (the exporter's default rule, in PromQL). The
        # exporter exports every environment.
        "production": monitoring.PRODUCTION_SELECTOR,
        # Branches that must have a minimum-reviewers policy ('' = every branch the exporter reports).
        "policy_branch": "",
    },
    "include_pipeline_default_branch": True,
    # runbook_url = this + '#' + the alert name in lower case (the headings of docs/alerts.md).
    "runbook_base_url": monitoring.RUNBOOK_BASE_URL,
    # Prefix of dashboard_url, e.g. "https://grafana.example.com"; '' gives paths such as /d/...
    "grafana_url": "",
    "alerts": {
        "AzdoDefaultBranchBrokenTooLong": {"severity": "critical", "threshold": "4h", "for": "5m"},
        "AzdoBuildBroken": {"severity": "warning", "threshold": "15m", "for": "5m"},
        "AzdoPipelineWithoutTests": {"severity": "info", "for": "1d"},
        "AzdoReviewCoverageLow": {"severity": "warning", "threshold": 0.9, "min_completed": 10, "for": "1h"},
        "AzdoBranchWithoutReviewerPolicy": {"severity": "warning", "for": "1h"},
        "AzdoBranchPolicyBypassed": {"severity": "warning", "window": "1h", "for": "0s"},
        "AzdoChangeFailureRateHigh": {"severity": "warning", "threshold": 0.3, "min_deployments": 5,
                                      "for": "1h"},
        "AzdoNoProductionDeployment": {"severity": "info", "threshold": "7d", "for": "1h"},
        "AzdoAgentPoolBacklog": {"severity": "warning", "threshold": 10, "for": "15m"},
        "AzdoExporterDown": {"severity": "warning", "for": "5m"},
        # No `up` series of the job at all: the exporter vanished from service discovery.
        "AzdoExporterAbsent": {"severity": "warning", "for": "15m"},
        "AzdoExporterRefreshFailing": {"severity": "warning", "for": "15m"},
        # Early warning: fewer throughput units (TSTUs) left than this before Azure DevOps starts delaying
        # (its global limit is 200 per identity per sliding 5 minutes).
        "AzdoExporterRateLimitLow": {"severity": "warning", "threshold": 50, "for": "10m"},
        "AzdoExporterThrottled": {"severity": "warning", "rate_window": "5m", "for": "15m"},
        "AzdoExporterAuthFailing": {"severity": "warning", "window": "15m", "for": "0s"},
        # Stale when the last successful refresh is older than factor x max_interval.
        "AzdoExporterStale": {"severity": "warning", "max_interval": "30m", "factor": 3, "for": "5m"},
    },
}


class MixinError(ValueError):
    """A mixin override file that cannot be used; the message names the file and every bad key."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(duration: str) -> int:
    """Seconds of a Prometheus duration such as '4h' or '1h30m'."""
    parts = re.findall(r"(\d+)([smhdw])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"bad duration {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def defaults() -> dict[str, Any]:
    """A fresh copy of the defaults (callers may not change DEFAULTS)."""
    return copy.deepcopy(DEFAULTS)


def load(path: str | Path | None) -> dict[str, Any]:
    """The defaults with the override file at `path` merged on (just the defaults for None)."""
    config = defaults()
    if path is None:
        return config
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MixinError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MixinError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return config
    errors: list[str] = []
    _merge(config, data, "", errors)
    if errors:
        raise MixinError(f"{path}: " + "; ".join(errors))
    return config


def _merge(base: dict[str, Any], override: object, where: str, errors: list[str]) -> None:
    if not isinstance(override, dict):
        errors.append(f"{where or 'the file'} must be a mapping, not {_kind(override)}")
        return
    for key, value in override.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=1, cutoff=0.6)
            hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
            errors.append(f"unknown key {path}{hint}")
        elif isinstance(base[key], dict):
            _merge(base[key], value, path, errors)
        else:
            problem = _check(str(key), base[key], value)
            if problem:
                errors.append(f"{path}: {problem}")
            else:
                base[key] = value


def _check(key: str, default: object, value: object) -> str:
    """What is wrong with `value` for a key whose default is `default` ('' when nothing)."""
    if key == "severity":
        return "" if value in SEVERITIES else f"{value!r} is not one of {', '.join(SEVERITIES)}"
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_kind(value)}"
        if isinstance(default, int) and not isinstance(value, int):
            return f"expected a whole number, got {value!r}"
        return "" if value >= 0 else f"expected a number >= 0, got {value!r}"
    if not isinstance(value, str):
        return f"expected a string, got {_kind(value)}"
    if key in DURATION_KEYS or (key == "threshold" and isinstance(default, str)):
        try:
            seconds(value)
        except ValueError:
            return f"{value!r} is not a Prometheus duration such as 15m, 4h or 1d"
    return ""


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"

"""Small conversions of Azure DevOps values: dates, refs, result names, pipeline labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: object) -> float | None:
    """ISO-8601 text (0–7 fractional digits, `Z` or an offset) to Unix seconds.

    None for missing values, the `0001-01-01T00:00:00` "no date" sentinel and unreadable text.
    """
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python parses at most 6 fractional digits; Azure DevOps sends up to 7.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6], text, count=1)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(timestamp: float) -> str:
    """Unix seconds to the UTC form Azure DevOps query parameters take (`2026-11-26T05:33:40.123456Z`)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


HEADS = "refs/heads/"


def branch_name(ref: object) -> str | None:
    """`refs/heads/main` -> `main`; None for pull-request refs, tags and anything else."""
    if isinstance(ref, str) and ref.startswith(HEADS) and len(ref) > len(HEADS):
        return ref[len(HEADS):]
    return None


RESULT_LABELS = {
    "succeeded": "succeeded",
    "partiallysucceeded": "partially_succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
RESULT_NAMES = {label: name for name, label in
                (("succeeded", "succeeded"), ("partiallySucceeded", "partially_succeeded"),
                 ("failed", "failed"), ("canceled", "canceled"))}


def result_name(value: object) -> str | None:
    """Normalise an Azure DevOps result (any casing) to its camelCase name, or None if unknown."""
    if not isinstance(value, str):
        return None
    label = RESULT_LABELS.get(value.lower())
    return RESULT_NAMES[label] if label else None


def result_label(name: str) -> str:
    """camelCase result name -> lower snake case label value."""
    return RESULT_LABELS[name.lower()]


def pipeline_label(path: object, name: str) -> str:
    """Definition folder path (`\\infra\\apis`) and name -> `infra/apis/name`."""
    folder = path.replace("\\", "/").strip("/") if isinstance(path, str) else ""
    return f"{folder}/{name}" if folder else name

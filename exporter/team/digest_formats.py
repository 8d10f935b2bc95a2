"""The digest as a Slack Block Kit message, a Teams Adaptive Card, plain JSON and Markdown.

Every name that comes from Azure DevOps is escaped for the format it lands in. Long lists are cut
(with "…and N more") so that a message stays within Slack's limits (50 blocks, 3000 characters per
section text, 150 per header) and a card stays readable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.team.digest_model import Digest, Figure, FixedItem
from exporter.team.digest_snapshot import human_duration

Item = TypeVar("Item")

__all__ = ["TEAMS_CARD_VERSION", "render", "render_markdown", "render_slack", "render_teams", "render_webhook"]

MAX_ITEMS = 20  # per list (broken, fixed, deployments)
SLACK_SECTION_LIMIT = 3000
SLACK_HEADER_LIMIT = 150
TEAMS_CARD_VERSION = "1.4"  # what Teams renders on desktop, web and mobile


# ------------------------------------------------------------------------------------------- words

def _value(figure: Figure, value: float | None) -> str:
    if value is None:
        return "n/a"
    if figure.kind == "ratio":
        return f"{value * 100:.1f}%"
    if figure.kind == "per_day":
        return f"{value:.2f}/day"
    return human_duration(value)


def _change(figure: Figure) -> str:
    """`▲ +2.1 pts, better`, `▼ 1h 5m, worse`, `= unchanged` or `` when there is nothing to compare."""
    trend = figure.trend()
    if not trend or figure.now is None or figure.previous is None:
        return ""
    if trend == "unchanged":
        return "= unchanged"
    delta = figure.now - figure.previous
    arrow = "▲" if delta > 0 else "▼"
    if figure.kind == "ratio":
        amount = f"{delta * 100:+.1f} pts"
    elif figure.kind == "per_day":
        amount = f"{delta:+.2f}/day"
    else:
        amount = ("+" if delta > 0 else "-") + human_duration(abs(delta))
    return f"{arrow} {amount}, {trend}"


def _title(digest: Digest) -> str:
    return f"Delivery pipeline digest · {digest.organization}"


def _dated(digest: Digest) -> str:
    when = digest.local(digest.generated_at).strftime("%A %d %B %Y, %H:%M %Z")
    if digest.previous_at is None:
        return f"{when} · first digest: nothing to compare with yet"
    return f"{when} · compared with the digest of {digest.local(digest.previous_at).strftime('%a %d %b %H:%M')}"


def _summary(digest: Digest) -> str:
    return f"✖ {len(digest.broken)} broken · ✔ {digest.healthy} healthy · {len(digest.fixed)} fixed since last digest"


def _window(digest: Digest) -> str:
    return f", last {human_duration(digest.lookback)}" if digest.lookback else ""


def _fixed_words(item: FixedItem) -> str:
    if item.took is None:
        return "fixed (time to fix unknown)"
    if item.periods > 1:
        return f"fixed {item.periods} times, {human_duration(item.took)} on average"
    return f"fixed in {human_duration(item.took)}" if item.exact else f"fixed within {human_duration(item.took)}"


def _broken_words(failures: int, broken_for: float | None) -> str:
    runs = "failure" if failures == 1 else "failures"
    return f"broken for {human_duration(broken_for)}, {failures} {runs} in a row"


NO_BUILDS = "No build health data yet: the builds collector has not completed a refresh."


def _nothing_broken(digest: Digest) -> str:
    return "✔ Nothing is broken." if digest.has_builds else NO_BUILDS


def _capped(items: list[Any]) -> tuple[list[Any], int]:
    return items[:MAX_ITEMS], max(0, len(items) - MAX_ITEMS)


FIRST_DIGEST = "First digest: nothing to compare with yet."
NO_DEPLOYMENT = "No successful production deployment in the window."


def _listing(items: list[Item], render: Callable[[Item], str], empty: str, bullet: str = "") -> list[str]:
    """Lines for at most MAX_ITEMS items, then "…and N more" for the rest; `empty` alone when there are none."""
    shown, more = _capped(items)
    lines = [bullet + render(item) for item in shown] + ([f"{bullet}…and {more} more"] if more else [])
    return lines or [empty]


def _fixed_listing(digest: Digest, render: Callable[[FixedItem], str], bullet: str = "") -> list[str]:
    if digest.previous_at is None:
        return [FIRST_DIGEST]
    return _listing(digest.fixed, render, "Nothing was fixed.", bullet)


# ----------------------------------------------------------------------------------------- markdown

def _md_code(text: str) -> str:
    """Inline code for a name: shown literally, whatever it holds."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def _md_figures(heading: str, figures: list[Figure]) -> list[str]:
    """A section with a table of figures: now, previous and the change."""
    lines = ["", f"## {heading}", "", "| figure | now | previous | change |", "|---|---|---|---|"]
    for fig in figures:
        lines.append(f"| {fig.label} | {_value(fig, fig.now)} · {fig.detail} | {_value(fig, fig.previous)} | "
                     f"{_change(fig) or '—'} |")
    return lines


def render_markdown(digest: Digest) -> str:
    lines = [f"# {_title(digest)}", "", _dated(digest), "", f"**{_summary(digest)}**", ""]
    if digest.stale:
        lines += [f"> ⚠ Stale data: the last refresh failed for {', '.join(digest.stale)}; "
                  "these are the last good numbers.", ""]
    lines += ["## Broken now", ""]
    lines += _listing(digest.broken, lambda b: f"✖ {_md_code(f'{b.project} / {b.pipeline}')} on "
                      f"{_md_code(b.branch)}: {_broken_words(b.failures, b.broken_for)}"
                      + (f" ([open]({b.url}))" if b.url else ""), _nothing_broken(digest), bullet="- ")
    lines += ["", "## Fixed since the last digest", ""]
    lines += _fixed_listing(digest, lambda f: f"✔ {_md_code(f'{f.project} / {f.pipeline}')} on "
                            f"{_md_code(f.branch)}: {_fixed_words(f)}", bullet="- ")
    lines += _md_figures(f"Team numbers{_window(digest)}", digest.figures)
    if digest.dora is not None:
        lines += _md_figures(f"Production (DORA){_window(digest)}", digest.dora)
    if digest.deployments is not None:
        lines += ["", "## Last production deployments", ""]
        lines += _listing(digest.deployments, lambda d: f"{_md_code(f'{d.project} / {d.pipeline}')} to "
                          f"{_md_code(d.environment)}: {human_duration(digest.generated_at - d.last_success)} ago",
                          NO_DEPLOYMENT, bullet="- ")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- slack

def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str | None, text: str) -> str:
    if not url:
        return f"*{_slack_escape(text)}*"
    return f"<{url}|{_slack_escape(text).replace('|', '¦')}>"


def _slack_sections(heading: str, lines: list[str]) -> list[dict[str, Any]]:
    """Sections of at most SLACK_SECTION_LIMIT characters: the heading, then the lines."""
    blocks: list[dict[str, Any]] = []
    text = f"*{heading}*"
    for line in lines:
        line = line[: SLACK_SECTION_LIMIT - 10]
        if len(text) + 1 + len(line) > SLACK_SECTION_LIMIT:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
            text = line
        else:
            text += "\n" + line
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return blocks


def _slack_figures(figures: list[Figure]) -> dict[str, Any]:
    fields = []
    for fig in figures[:10]:
        change = _change(fig)
        text = f"*{fig.label}*\n{_value(fig, fig.now)}" + (f"  {change}" if change else "") + f"\n_{fig.detail}_"
        fields.append({"type": "mrkdwn", "text": _slack_escape(text)[:2000]})
    return {"type": "section", "fields": fields}


def render_slack(digest: Digest) -> dict[str, Any]:
    """A Slack incoming-webhook message: Block Kit blocks plus a plain-text fallback."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(digest)[:SLACK_HEADER_LIMIT],
                                    "emoji": True}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(_dated(digest))}]},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(_summary(digest))}*"}},
    ]
    if digest.stale:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(
            f"⚠ Stale data: the last refresh failed for {', '.join(digest.stale)}; these are the last good numbers.")}})
    blocks.append({"type": "divider"})
    blocks += _slack_sections("Broken now", _listing(
        digest.broken, lambda b: f"✖ {_slack_link(b.url, f'{b.project} / {b.pipeline}')} "
        f"`{_slack_escape(b.branch)}`: {_broken_words(b.failures, b.broken_for)}",
        _slack_escape(_nothing_broken(digest))))
    blocks += _slack_sections("Fixed since the last digest", _fixed_listing(
        digest, lambda f: f"✔ {_slack_link(f.url, f'{f.project} / {f.pipeline}')} "
        f"`{_slack_escape(f.branch)}`: {_fixed_words(f)}"))
    blocks.append({"type": "divider"})
    blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                               "text": f"*Team numbers{_slack_escape(_window(digest))}*"}})
    blocks.append(_slack_figures(digest.figures))
    if digest.dora is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Production (DORA){_slack_escape(_window(digest))}*"}})
        blocks.append(_slack_figures(digest.dora))
    if digest.deployments is not None:
        blocks += _slack_sections("Last production deployments", _listing(
            digest.deployments, lambda d: f"{_slack_escape(f'{d.project} / {d.pipeline}')} → "
            f"`{_slack_escape(d.environment)}`: {human_duration(digest.generated_at - d.last_success)} ago",
            NO_DEPLOYMENT))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "Sent by azdo-exporter"}]})
    return {"text": f"{_title(digest)}: {_summary(digest)}", "blocks": blocks[:50]}


# -------------------------------------------------------------------------------------------- teams

_TEAMS_SPECIAL = re.compile(r"([\\`*_\[\]])")


def _teams_escape(text: str) -> str:
    """Adaptive Card TextBlocks render a Markdown subset: backslash-escape its punctuation in names."""
    return _TEAMS_SPECIAL.sub(r"\\\1", text)


def _text(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def _teams_list(heading: str, lines: list[str]) -> list[dict[str, Any]]:
    return [_text(heading, weight="Bolder", size="Medium", separator=True, spacing="Medium"),
            *(_text(line, spacing="Small") for line in lines)]


def _teams_figures(figures: list[Figure]) -> dict[str, Any]:
    facts = []
    for fig in figures:
        change = _change(fig)
        facts.append({"title": fig.label,
                      "value": f"{_value(fig, fig.now)}" + (f" ({change})" if change else "") + f" · {fig.detail}"})
    return {"type": "FactSet", "facts": facts}


def render_teams(digest: Digest) -> dict[str, Any]:
    """A message for a Teams Workflows webhook ("When a Teams webhook request is received"): one Adaptive Card."""
    body: list[dict[str, Any]] = [
        _text(_teams_escape(_title(digest)), size="Large", weight="Bolder"),
        _text(_teams_escape(_dated(digest)), isSubtle=True, spacing="None"),
        _text(_summary(digest), weight="Bolder", color="Attention" if digest.broken else "Good"),
    ]
    if digest.stale:
        body.append(_text(_teams_escape(f"⚠ Stale data: the last refresh failed for {', '.join(digest.stale)}."),
                          color="Warning"))

    def name(project: str, pipeline: str, url: str | None) -> str:
        label = _teams_escape(f"{project} / {pipeline}")
        return f"[{label}]({url})" if url else f"**{label}**"

    body += _teams_list("Broken now", _listing(
        digest.broken, lambda b: f"✖ {name(b.project, b.pipeline, b.url)} on {_teams_escape(b.branch)}: "
        f"{_broken_words(b.failures, b.broken_for)}", _teams_escape(_nothing_broken(digest))))
    body += _teams_list("Fixed since the last digest", _fixed_listing(
        digest, lambda f: f"✔ {name(f.project, f.pipeline, f.url)} on {_teams_escape(f.branch)}: "
        f"{_fixed_words(f)}"))
    body += [_text(f"Team numbers{_window(digest)}", weight="Bolder", size="Medium", separator=True),
             _teams_figures(digest.figures)]
    if digest.dora is not None:
        body += [_text(f"Production (DORA){_window(digest)}", weight="Bolder", size="Medium", separator=True),
                 _teams_figures(digest.dora)]
    if digest.deployments is not None:
        body += _teams_list("Last production deployments", _listing(
            digest.deployments, lambda d: f"{_teams_escape(f'{d.project} / {d.pipeline}')} → "
            f"{_teams_escape(d.environment)}: {human_duration(digest.generated_at - d.last_success)} ago",
            NO_DEPLOYMENT))
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": TEAMS_CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": "Open Azure DevOps", "url": digest.organization_url}],
    }
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


# ------------------------------------------------------------------------------------------ webhook

def render_webhook(digest: Digest) -> dict[str, Any]:
    """Plain JSON for any receiver (schema `azdo-exporter/digest/v1`)."""
    return digest.to_json()


RENDERERS: dict[str, Callable[[Digest], dict[str, Any]]] = {
    "slack": render_slack,
    "teams": render_teams,
    "webhook": render_webhook,
}


def render(digest: Digest, target: str) -> dict[str, Any]:
    """The JSON payload for `target` (slack, teams or webhook)."""
    return RENDERERS[target](digest)

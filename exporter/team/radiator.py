"""`/status`: the team radiator, an HTML page meant to be read across a room.

It is rendered from the exporter's current snapshot (the published metric families), never from
Azure DevOps. Broken pipelines come first, longest broken at the top; then healthy counts per project;
then review coverage per repository and the last production deployments when those areas publish
metrics. The page has no external assets and no script: one inline style sheet (allowed by its hash
in the Content-Security-Policy header) and a meta refresh every 30 seconds. Every value from Azure
DevOps is HTML-escaped. Broken and healthy differ by colour, but also by symbol and words, so the
page reads the same to colour-blind people and on monochrome screens.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from prometheus_client.registry import Collector

from exporter.config.settings import Config
from exporter.team.digest_snapshot import BranchState, TeamSnapshot, human_duration, read_snapshot

__all__ = ["CONTENT_SECURITY_POLICY", "REFRESH_SECONDS", "render_status", "status_page"]

REFRESH_SECONDS = 30
# Below this share of reviewed pull requests a repository is flagged (rule 4: every change is reviewed).
REVIEW_TARGET = 1.0

CSS = """\
:root{color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;padding:1.2vw 2vw;background:#0b0c0e;color:#f4f4f4;font:500 clamp(18px,1.9vw,52px)/1.3 \
"DejaVu Sans",Verdana,Arial,sans-serif}
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.5em}
h1{font-size:1.6em;margin:0}
h2{font-size:1.15em;margin:1.1em 0 .3em;border-bottom:.08em solid #555}
.meta{color:#cfcfcf;font-size:.8em}
.tiles{display:flex;flex-wrap:wrap;gap:.6em;margin:.6em 0}
.tile{padding:.35em .8em;border-radius:.25em;font-size:1.5em;font-weight:800;border:.12em solid}
.tile.bad{background:#b00020;border-color:#ff8a80;color:#fff}
.tile.ok{background:#0b5d1e;border-color:#7ee787;color:#fff}
.tile.warn{background:#3d2f00;border-color:#ffd33d;color:#fff}
table{border-collapse:collapse;width:100%}
th,td{padding:.25em .5em;text-align:left;vertical-align:top}
th{color:#cfcfcf;font-size:.75em;text-transform:uppercase;letter-spacing:.05em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.broken td{background:#3a0008;border-top:.12em solid #ff5c6c}
tr.broken td:first-child{border-left:.5em solid #ff5c6c}
.mark{display:inline-block;min-width:1.3em;font-weight:900}
.bad-word{color:#ffb3bb;font-weight:800}
.ok-word{color:#9dffb0;font-weight:800}
.warn-word{color:#ffe27a;font-weight:800}
a{color:#9ecbff}
.all-ok{font-size:1.6em;font-weight:800;color:#9dffb0;padding:.4em 0}
.stale{background:#3d2f00;border:.12em solid #ffd33d;padding:.3em .6em;margin:.5em 0}
footer{margin-top:1.5em;color:#bdbdbd;font-size:.7em}
"""

CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{CSS_HASH}'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(timestamp: float | None, zone: ZoneInfo) -> str:
    if timestamp is None:
        return "never"
    return datetime.fromtimestamp(timestamp, tz=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _pipeline_cell(branch: BranchState) -> str:
    name = f"{_e(branch.project)} / {_e(branch.pipeline)}"
    if branch.url:
        return f'<a href="{_e(branch.url)}">{name}</a>'
    return name


def _broken_section(snapshot: TeamSnapshot) -> str:
    broken = snapshot.broken
    if not broken:
        total = len(snapshot.branches)
        return (f'<p class="all-ok"><span class="mark" aria-hidden="true">✔</span> Nothing is broken: '
                f'all {total} tracked branches are healthy.</p>')
    rows = []
    for b in broken:
        rows.append(
            '<tr class="broken">'
            f'<td><span class="mark" aria-hidden="true">✖</span><span class="bad-word">BROKEN</span> '
            f'{_pipeline_cell(b)}</td>'
            f"<td>{_e(b.branch)}</td>"
            f'<td class="num">{_e(human_duration(b.broken_for))}</td>'
            f'<td class="num">{b.consecutive_failures}</td></tr>'
        )
    return ('<table class="broken-list"><thead><tr><th>Pipeline</th><th>Branch</th>'
            '<th class="num">Broken for</th><th class="num">Failures in a row</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _projects_section(snapshot: TeamSnapshot) -> str:
    per_project: dict[str, list[int]] = {}
    for b in snapshot.branches:
        per_project.setdefault(b.project, [0, 0])[1 if b.broken else 0] += 1
    rows = []
    for project, (healthy, broken) in sorted(per_project.items(), key=lambda kv: kv[0].lower()):
        state = (f'<span class="bad-word">✖ {broken} broken</span>' if broken
                 else '<span class="ok-word">✔ all healthy</span>')
        rows.append(f'<tr><td>{_e(project)}</td><td class="num">{healthy}</td><td>{state}</td></tr>')
    return ('<h2>Healthy branches by project</h2><table><thead><tr><th>Project</th>'
            '<th class="num">Healthy</th><th>Status</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _reviews_section(snapshot: TeamSnapshot) -> str:
    if snapshot.reviews is None:
        return ""
    rows = []
    for r in sorted(snapshot.reviews, key=lambda r: (r.coverage if r.coverage is not None else 2.0,
                                                      r.project.lower(), r.repository.lower())):
        if r.coverage is None:
            continue
        percent = f"{r.coverage * 100:.0f}%"
        mark = ('<span class="ok-word">✔</span>' if r.coverage >= REVIEW_TARGET
                else '<span class="warn-word">⚠ not all reviewed</span>')
        rows.append(f"<tr><td>{_e(r.project)} / {_e(r.repository)}</td>"
                    f'<td class="num">{r.reviewed} of {r.total}</td><td class="num">{percent}</td>'
                    f"<td>{mark}</td></tr>")
    if not rows:
        body = "<p>No pull request completed in the window.</p>"
    else:
        body = ('<table><thead><tr><th>Repository</th><th class="num">Reviewed</th><th class="num">Coverage</th>'
                f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f"<h2>Review coverage{_window(snapshot)}</h2>{body}"


def _deployments_section(snapshot: TeamSnapshot, zone: ZoneInfo) -> str:
    if snapshot.deployments is None:
        return ""
    rows = [
        f"<tr><td>{_e(d.project)} / {_e(d.pipeline)}</td><td>{_e(d.environment)}</td>"
        f'<td class="num">{_e(human_duration(snapshot.taken_at - d.last_success))} ago</td>'
        f"<td>{_e(_when(d.last_success, zone))}</td></tr>"
        for d in snapshot.deployments[:10]
    ]
    if not rows:
        return "<h2>Last production deployments</h2><p>No successful production deployment in the window.</p>"
    return ('<h2>Last production deployments</h2><table><thead><tr><th>Pipeline</th><th>Environment</th>'
            f'<th class="num">When</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _window(snapshot: TeamSnapshot) -> str:
    return f" (last {human_duration(snapshot.lookback)})" if snapshot.lookback else ""


def render_status(snapshot: TeamSnapshot, zone: ZoneInfo | None = None) -> str:
    """The radiator page for a snapshot, as HTML text."""
    zone = zone or ZoneInfo("UTC")
    broken, healthy = len(snapshot.broken), len(snapshot.healthy)
    title = f"✖ {broken} broken" if broken else "✔ healthy"
    if not snapshot.has_builds:
        tiles = '<div class="tile warn">⌛ Waiting for the first refresh of build health</div>'
    else:
        tiles = (f'<div class="tile {"bad" if broken else "ok"}">{"✖" if broken else "✔"} {broken} broken</div>'
                 f'<div class="tile ok">✔ {healthy} healthy</div>')
    stale = ""
    if snapshot.stale_collectors:
        parts = []
        for name in snapshot.stale_collectors:
            last = snapshot.collectors[name][1]
            age = f"last success {human_duration(snapshot.taken_at - last)} ago" if last else "no success yet"
            parts.append(f"{_e(name)} ({_e(age)})")
        stale = (f'<p class="stale"><span class="warn-word">⚠ Stale data:</span> the last refresh failed for '
                 f"{', '.join(parts)}; the page shows the last good numbers.</p>")
    sections = ""
    if snapshot.has_builds:
        sections = (f"<h2>Broken now</h2>{_broken_section(snapshot)}{_projects_section(snapshot)}"
                    f"{_reviews_section(snapshot)}{_deployments_section(snapshot, zone)}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · {_e(snapshot.organization)} · pipeline status</title>
<style>{CSS}</style></head>
<body><header><h1>Delivery pipelines · {_e(snapshot.organization)}</h1>
<span class="meta">as of {_e(_when(snapshot.taken_at, zone))} · refreshes every {REFRESH_SECONDS} s</span></header>
<div class="tiles">{tiles}</div>{stale}
{sections}
<footer>azdo-exporter · from the last completed refresh; this page never calls Azure DevOps.</footer>
</body></html>
"""


def status_page(registry: Collector, config: Config,
                clock: Callable[[], float] = time.time) -> tuple[str, bytes, dict[str, str]]:
    """The `/status` handler for `ExporterHTTPServer.extra_pages`: content type, body and headers."""
    snapshot = read_snapshot(registry, organization=config.organization, organization_url=config.organization_url,
                             now=clock(), is_production=config.production_environment)
    zone = config.digest.zone
    return "text/html; charset=utf-8", render_status(snapshot, zone).encode("utf-8"), dict(HEADERS)

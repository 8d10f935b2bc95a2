"""`/status`, the team radiator: content, order, escaping, headers, and what headless Chromium renders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from exporter.cli import demo_config
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.team.digest_snapshot import read_snapshot
from exporter.team.radiator import CONTENT_SECURITY_POLICY, CSS, CSS_HASH, render_status, status_page
from tests.integration.test_digest import NOW, ORG_URL, FakeSnapshot, snapshot_collector

ROOT = Path(__file__).resolve().parents[2]
MARKUP_NAME = "<script>document.body.setAttribute('data-pwned','1')</script>"




def page_for(collector: FakeSnapshot, now: float = NOW) -> str:
    snapshot = read_snapshot(collector, organization="contoso", organization_url=ORG_URL, now=now)
    return render_status(snapshot)


def with_markup_pipeline() -> FakeSnapshot:
    pipelines = [
        {"project": "Payments", "pipeline": "infra/deploy-api", "id": 1, "branch": "main", "broken": 4.7,
         "failures": 10, "runs": (40, 12, 2), "fixes": (0, 0.0), "window_fixes": (0, 0.0), "last": ("failed", NOW)},
        {"project": "Evil & Co", "pipeline": MARKUP_NAME, "id": 66, "branch": "main<b>", "broken": 2.0,
         "failures": 3, "runs": (1, 3, 0), "fixes": (0, 0.0), "window_fixes": (0, 0.0), "last": ("failed", NOW)},
        {"project": "Platform", "pipeline": "core-ci", "id": 5, "branch": "main", "broken": None, "failures": 0,
         "runs": (10, 0, 0), "fixes": (0, 0.0), "window_fixes": (0, 0.0), "last": ("succeeded", NOW)},
    ]
    return snapshot_collector(pipelines=pipelines)


def test_broken_first_longest_at_the_top_with_links_and_counts() -> None:
    page = page_for(snapshot_collector())
    broken_rows = re.findall(r'<tr class="broken">(.*?)</tr>', page)
    assert len(broken_rows) == 2
    assert "core-ci" in broken_rows[0] and "infra/deploy-api" in broken_rows[1]  # 30h before 4.5h
    assert f'href="{ORG_URL}/Payments/_build?definitionId=1"' in broken_rows[1]
    assert "1d 6h" in broken_rows[0] and ">25<" in broken_rows[0]
    assert "BROKEN" in broken_rows[0] and "✖" in broken_rows[0]  # not by colour alone
    assert "2 broken" in page and "3 healthy" in page
    assert page.index("Broken now") < page.index("Healthy branches by project") < page.index("Review coverage") \
        < page.index("Last production deployments")
    assert '<meta http-equiv="refresh" content="30">' in page


def test_reviews_and_deployments_sections_only_when_their_families_exist() -> None:
    page = page_for(snapshot_collector(reviews=False, deployments=False))
    assert "Review coverage" not in page and "Last production deployments" not in page
    full = page_for(snapshot_collector())
    assert "Platform / mobile" in full and "4 of 8" in full and "50%" in full and "not all reviewed" in full
    deployments = full[full.index("Last production deployments"):]
    assert "Production" in deployments and "prod-eu" in deployments and "Staging" not in deployments
    assert "2h ago" in deployments


def test_everything_from_azure_devops_is_escaped() -> None:
    page = page_for(with_markup_pipeline())
    assert "<script" not in page
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;" in page
    assert "Evil &amp; Co" in page and "main&lt;b&gt;" in page


def test_no_external_assets_and_no_script() -> None:
    page = page_for(snapshot_collector())
    assert "<script" not in page and "<link" not in page and "<img" not in page and "@import" not in page
    assert re.findall(r"(?:src|href)=\"([^\"]+)\"", page) == [
        f"{ORG_URL}/Platform/_build?definitionId=5", f"{ORG_URL}/Payments/_build?definitionId=1"]


def test_waiting_and_stale_states() -> None:
    empty = render_status(read_snapshot(CollectorRegistry(), organization="contoso", organization_url=ORG_URL,
                                        now=NOW))
    assert "Waiting for the first refresh" in empty and "Nothing is broken" not in empty
    stale = page_for(snapshot_collector(builds_ok=False))
    assert "Stale data" in stale and "builds (last success 2m ago)" in stale


def test_all_healthy() -> None:
    pipelines = [{"project": "P", "pipeline": "a", "id": 1, "branch": "main", "broken": None, "failures": 0,
                  "runs": (1, 0, 0), "fixes": (0, 0.0), "window_fixes": (0, 0.0), "last": ("succeeded", NOW)}]
    page = page_for(snapshot_collector(pipelines=pipelines, reviews=False, deployments=False))
    assert "Nothing is broken: all 1 tracked branches are healthy" in page and "0 broken" in page


# ---------------------------------------------------------------------------------------------- HTTP

@contextmanager
def serving_radiator() -> Iterator[str]:
    """An HTTP server with /status over the digest tests' fake snapshot."""
    collector = with_markup_pipeline()
    config = demo_config("https://dev.azure.com/contoso", {"listen": "127.0.0.1:0"})
    server = ExporterHTTPServer(("127.0.0.1", 0), CollectorRegistry(), lambda: True, lambda: {},
                                extra_pages={"/status": lambda: status_page(collector, config, clock=lambda: NOW)})
    start_server(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def radiator_server() -> Iterator[str]:
    with serving_radiator() as url:
        yield url


def test_status_is_served_with_a_strict_content_security_policy(radiator_server: str) -> None:
    answer = requests.get(f"{radiator_server}/status", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = answer.headers["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert f"'sha256-{CSS_HASH}'" in csp and f"<style>{CSS}</style>" in answer.text
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "infra/deploy-api" in answer.text
    assert 'href="/status"' in requests.get(f"{radiator_server}/", timeout=10).text  # linked from the landing page


# ------------------------------------------------------------------------------------------ Chromium










def test_head_answers_for_every_page_the_server_serves() -> None:
    import threading

    from prometheus_client import CollectorRegistry

    from exporter.serve.http_server import ExporterHTTPServer

    server = ExporterHTTPServer(("127.0.0.1", 0), CollectorRegistry(), lambda: True, dict,
                                extra_pages={"/status": lambda: ("text/html", b"<p>x</p>")})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert requests.head(f"{base}/status", timeout=5).status_code == 200
        assert requests.head(f"{base}/readyz", timeout=5).status_code == 200
        assert requests.head(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()

"""Hostile upstreams (issue 12): answers that echo credentials, trickle, never end, redirect elsewhere,
or fail TLS. Nothing hangs, nothing grows without bound, and no form of the PAT leaves the process."""

from __future__ import annotations

import base64
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.exposition import generate_latest

from exporter.azdo.client import ApiError
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from exporter.team.digest import build_digest
from exporter.team.digest_formats import render_markdown
from exporter.team.digest_model import DigestState
from exporter.team.radiator import status_page
from tests.conftest import ExporterFactory, FakeClock

KNOWN_PAT = "pat-4e3d2c1b0a99887766554433221100ffeeddccbbaa9f8e7d6c5b4a"


def pat_forms(secret: str) -> list[str]:
    """The PAT raw, in base64 as HTTP Basic sends it (`:PAT`), the whole `Basic` header value, and
    pieces of each (what a message cut after the fact would leave)."""
    encoded = base64.b64encode(f":{secret}".encode()).decode()
    return [secret, encoded, f"Basic {encoded}", encoded.rstrip("="), secret[:16], secret[-16:],
            encoded[:20], encoded[-20:]]


@contextmanager
def serving(exporter: object) -> Iterator[str]:
    """The exporter's HTTP front (`/`, `/status`, `/metrics`) on 127.0.0.1."""
    server = ExporterHTTPServer(("127.0.0.1", 0), exporter.registry, exporter.scheduler.ready,  # type: ignore[attr-defined]
                                lambda: dict(exporter.scheduler.status),  # type: ignore[attr-defined]
                                extra_pages={"/status": lambda: status_page(exporter.registry,  # type: ignore[attr-defined]
                                                                            exporter.config)})  # type: ignore[attr-defined]
    start_server(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - 127.0.0.1 only
        return str(answer.read().decode("utf-8"))


@pytest.fixture
def payments(empty_org: Organization, clock: FakeClock) -> Organization:
    empty_org.add_project("Payments")
    pipeline = empty_org.add_pipeline("Payments", "ci", default_branch="main", repository="r", has_tests=True)
    empty_org.add_run("Payments", pipeline.id, branch="main", result="failed", queue_time=clock.now - 500,
                      start_time=clock.now - 400, finish_time=clock.now - 100, tests=(1, 1, 0))
    return empty_org


# ------------------------------------------------------------------------------------ echoed credentials


@pytest.mark.parametrize("status", [400, 401, 403, 500, 203])
def test_echoed_credentials_appear_in_no_output(status: int, payments: Organization, clock: FakeClock,
                                                make_exporter: ExporterFactory,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with SimulatorServer(payments, pat=KNOWN_PAT) as upstream:
        exporter = make_exporter(upstream, pat=KNOWN_PAT)
        upstream.faults.add(Fault(kind="echo_headers", status=status, path=r"/_apis/"))
        errors = exporter.refresh_all_once()
        assert errors and all(errors.values())  # every area failed on the echoing answers
        texts += [str(e) for e in errors.values()]
        texts += [repr(exporter.scheduler.status)]
        with pytest.raises(ApiError) as caught:
            exporter.client.get("projects", f"{upstream.base_url}/_apis/projects")
        error = caught.value
        texts += [str(error), repr(error), repr(error.args), str(error.__cause__), str(error.__context__)]
        with serving(exporter) as base:
            texts += [fetch_text(f"{base}/"), fetch_text(f"{base}/status"), fetch_text(f"{base}/metrics")]
        texts.append(generate_latest(exporter.registry).decode())
        texts.append(render_markdown(build_digest(exporter.config, exporter.registry, clock.now, DigestState())[1]))
        echoed = [r for r in upstream.requests if r.status == status]
    texts += [record.getMessage() for record in caplog.records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    assert echoed  # the upstream did echo (the simulator records each echoing answer)
    expected = {400: "http_4xx", 401: "auth", 403: "auth", 500: "http_5xx", 203: "auth"}[status]
    assert error.reason == expected and error.status == status
    if status in (400, 401, 403):  # these messages carry the upstream's text: the echo was there, scrubbed
        assert "Authorization: Basic [redacted]" in str(error)
    joined = "\n".join(texts)
    for form in pat_forms(KNOWN_PAT):
        assert form not in joined, form

"""A known PAT goes through auth failures, 5xx, retries and timeouts and appears nowhere."""

from __future__ import annotations

import base64
import logging

import pytest
from prometheus_client.exposition import generate_latest

from exporter.azdo.client import ApiError
from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from tests.conftest import ExporterFactory, FakeClock

KNOWN_PAT = "pat-9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddcc"


def forms_of(secret: str) -> list[str]:
    return [secret, base64.b64encode(f":{secret}".encode()).decode(), secret[:16], secret[-16:]]


def test_pat_never_reaches_logs_metrics_or_errors(empty_org: Organization, clock: FakeClock,
                                                  make_exporter: ExporterFactory,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    empty_org.add_project("Payments")
    p = empty_org.add_pipeline("Payments", "ci", default_branch="main", repository="r", has_tests=True)
    empty_org.add_run("Payments", p.id, branch="main", result="failed", queue_time=clock.now - 500,
                      start_time=clock.now - 400, finish_time=clock.now - 100, tests=(1, 1, 0))
    texts: list[str] = []
    with SimulatorServer(empty_org, pat=KNOWN_PAT) as server:
        # 1. The right PAT through 5xx, a timeout, a malformed answer and a sign-in page.
        exporter = make_exporter(server, pat=KNOWN_PAT, request_timeout="0.5s")
        for fault in (Fault(kind="status", status=503, path=r"/_apis/projects$", count=1),
                      Fault(kind="delay", delay=1.0, path=r"/build/definitions$", count=2),
                      Fault(kind="malformed", path=r"/build/builds$", count=2),
                      Fault(kind="signin", path=r"/_apis/projects$", count=1)):
            server.faults.clear()
            server.faults.add(fault)
            clock.advance(120)
            errors = exporter.refresh_all_once()
            texts += [str(e) for e in errors.values() if e]
        server.faults.clear()
        clock.advance(120)
        assert exporter.refresh_all_once()["builds"] is None
        texts.append(generate_latest(exporter.registry).decode())
        # 2. A wrong PAT that contains the right one as a prefix (so a careless message would leak it).
        wrong = make_exporter(server, pat=KNOWN_PAT + "-expired")
        texts += [str(e) for e in wrong.refresh_all_once().values() if e]
        try:
            wrong.client.get("projects", f"{server.base_url}/_apis/projects")
        except ApiError as error:
            texts += [str(error), repr(error), str(error.__cause__), str(error.__context__)]
        texts.append(generate_latest(wrong.registry).decode())
        texts.append(repr(wrong.config))
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    assert any("503" in t or "http_5xx" in t for t in texts)  # the failures did happen and were reported
    assert any("access denied" in t for t in texts)
    joined = "\n".join(texts)
    for form in forms_of(KNOWN_PAT):
        assert form not in joined

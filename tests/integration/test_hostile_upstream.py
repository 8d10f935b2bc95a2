"""Hostile upstreams (issue 12): answers that echo credentials, trickle, never end, redirect elsewhere,
or fail TLS. Nothing hangs, nothing grows without bound, and no form of the PAT leaves the process."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import ssl
import threading
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from exporter.azdo.auth import PatCredential
from exporter.azdo.client import ApiError, AzureDevOpsClient
from exporter.azdo.scrub import SCRUBBER
from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from exporter.team.digest import DeliveryError, build_digest, deliver
from exporter.team.digest_formats import render_markdown
from exporter.team.digest_model import DigestState
from exporter.team.radiator import status_page
from tests.conftest import PAT, ExporterFactory, FakeClock

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


# ------------------------------------------------------------------------------- slow and endless answers


def call_within(seconds: float, function: Callable[[], object]) -> BaseException | None:
    """Run `function` in a thread; the exception it raised (None if it returned). Fails the test if it is
    still running after `seconds` (the old client waited for a trickling answer for minutes)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            function()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, name="hostile-call", daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds}s"
    return outcome[0]


def make_client(**kwargs: object) -> tuple[AzureDevOpsClient, CollectorRegistry]:
    registry = CollectorRegistry()
    client = AzureDevOpsClient(PatCredential(token=PAT), SelfMetrics(registry), sleep=lambda s: None,
                               **kwargs)  # type: ignore[arg-type]
    return client, registry


@pytest.mark.parametrize(("fault", "where"), [
    (Fault(kind="trickle", delay=0.2, path=r"/_apis/projects$"), "headers"),  # status line and headers too
    (Fault(kind="endless", delay=0.3, path=r"/_apis/projects$"), "body"),  # a slow body that never ends
])
def test_a_trickling_answer_times_out_at_the_deadline(sim: SimulatorServer, fault: Fault, where: str) -> None:
    client, registry = make_client(timeout=1.0, max_retries=1)
    sim.faults.add(fault)
    try:
        error = call_within(20, lambda: client.get("projects", f"{sim.base_url}/_apis/projects"))
    finally:
        client.close()
    assert isinstance(error, ApiError), error
    assert error.reason == "timeout"
    assert "no complete answer within 1s" in str(error)
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total,
                                     {"endpoint": "projects", "code": "timeout"}) == 2  # first try and retry
    assert fault.hits == 2


def test_a_trickling_upstream_is_a_counted_logged_and_shown_refresh_failure(
        sim: SimulatorServer, payments: Organization, make_exporter: ExporterFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    exporter = make_exporter(sim, request_timeout="1s", max_retries=0)
    sim.faults.add(Fault(kind="trickle", delay=0.2, path=r"/_apis/projects$"))
    builds = next(a for a in exporter.areas if a.name == "builds")
    with caplog.at_level(logging.WARNING):
        assert call_within(30, lambda: exporter.scheduler.run_once(builds)) is None
    assert exporter.registry.get_sample_value(m.EXPORTER_REFRESH_ERRORS.total,
                                              {"collector": "builds", "reason": "timeout"}) == 1
    assert exporter.registry.get_sample_value(m.EXPORTER_REFRESH_SUCCESS.name, {"collector": "builds"}) == 0
    assert "no complete answer within 1s" in str(exporter.scheduler.status["builds"]["last_error"])
    assert any("refresh of builds failed" in r.getMessage() and "no complete answer" in r.getMessage()
               for r in caplog.records)


def test_an_endless_body_stops_at_the_size_cap_without_holding_more(sim: SimulatorServer) -> None:
    cap = 1 << 20
    client, registry = make_client(timeout=30.0, max_retries=0, max_response_bytes=cap)
    sim.faults.add(Fault(kind="endless", delay=0.002, path=r"/_apis/projects$"))
    tracemalloc.start()
    try:
        error = call_within(20, lambda: client.get("projects", f"{sim.base_url}/_apis/projects"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        client.close()
    assert isinstance(error, ApiError), error
    assert error.reason == "bad_response"
    assert f"answer larger than {cap} bytes" in str(error)
    assert peak < 4 * cap  # the cap, one chunk and the decoder's buffers, not the stream
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total,
                                     {"endpoint": "projects", "code": "200"}) == 1


def test_a_declared_length_over_the_cap_is_refused_before_reading(sim: SimulatorServer,
                                                                  empty_org: Organization) -> None:
    for i in range(40):
        empty_org.add_project(f"Project-{i:02d}")
    client, _ = make_client(max_retries=0, max_response_bytes=1000)
    try:
        with pytest.raises(ApiError) as caught:
            client.get("projects", f"{sim.base_url}/_apis/projects")
        assert caught.value.reason == "bad_response" and caught.value.status == 200
        client._max_response_bytes = 1 << 20  # the same client, with room: the next answer is read whole
        assert len(client.get("projects", f"{sim.base_url}/_apis/projects").body["value"]) == 40
    finally:
        client.close()


# ---------------------------------------------------------------------------------- redirect elsewhere


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"count": 0, "value": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass


def _recorder() -> type[_Recorder]:
    """A handler class with its own list of what it saw."""

    class Recorder(_Recorder):
        seen: list[dict[str, str]] = []  # noqa: RUF012 - one list per class made here, on purpose

    return Recorder


@contextmanager
def recording_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Another host (another port on 127.0.0.1) that records the headers of every request it gets."""
    handler = _recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_is_not_followed_and_gets_no_credential(sim: SimulatorServer,
                                                                          status: int) -> None:
    client, _ = make_client(max_retries=0)
    with recording_server() as (elsewhere, seen):
        sim.faults.add(Fault(kind="redirect", status=status, location=f"{elsewhere}/contoso/_apis/projects",
                             path=r"/_apis/projects$"))
        try:
            with pytest.raises(ApiError) as caught:
                client.get("projects", f"{sim.base_url}/_apis/projects")
        finally:
            client.close()
        assert caught.value.reason == "auth" and caught.value.status == status
        assert "redirected" in str(caught.value)
        assert seen == []  # nothing at all reached the other host, so no Authorization either
        # What the client relies on not needing: requests itself, following such a redirect, strips
        # Authorization on the change of host.
        followed = requests.get(f"{sim.base_url}/_apis/projects", headers={"Authorization": "Basic eA=="},
                                timeout=10)
        assert followed.status_code == 200
        assert len(seen) == 1 and "authorization" not in seen[0]


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no trust store knows."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile-upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return str(directory / "cert.pem"), str(directory / "key.pem")


def test_an_untrusted_certificate_is_a_clear_connection_error(self_signed: tuple[str, str]) -> None:
    handler = _recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client, registry = make_client(max_retries=1, timeout=5.0)
    try:
        with pytest.raises(ApiError) as caught:
            client.get("projects", f"https://127.0.0.1:{server.server_address[1]}/contoso/_apis/projects")
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert caught.value.reason == "connection"
    assert "TLS failed (certificate not trusted: self-signed certificate)" in str(caught.value)
    assert handler.seen == []
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total,
                                     {"endpoint": "projects", "code": "connection"}) == 2


def test_tls_to_a_plain_http_upstream_is_a_clear_connection_error(sim: SimulatorServer) -> None:
    client, _ = make_client(max_retries=0, timeout=5.0)
    try:
        with pytest.raises(ApiError) as caught:
            client.get("projects", sim.base_url.replace("http://", "https://") + "/_apis/projects")
    finally:
        client.close()
    assert caught.value.reason == "connection"
    assert str(caught.value).startswith("projects: TLS failed (")


# ------------------------------------------------------------------------------------- a webhook's echo


class _EchoingWebhook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = ("x" * 150 + f" invalid_token for {self.path}").encode()  # the secret path, past a cut at 200
        self.send_response(400)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass


def test_a_webhook_that_echoes_its_secret_path_leaks_nothing() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingWebhook)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    secret_path = "/services/T0HOSTILE/B0UPSTREAM/abcdefghijklmnopqrstuvwx"
    url = f"http://127.0.0.1:{server.server_address[1]}{secret_path}"
    SCRUBBER.add_secret(url)  # what the Exporter does with every Secret of the configuration
    try:
        with pytest.raises(DeliveryError) as caught:
            deliver(url, {"text": "digest"}, attempts=1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    text = str(caught.value)
    assert "HTTP 400" in text and "invalid_token" in text  # the answer's text is kept, minus the secret
    for piece in (url, secret_path, secret_path[:20], "abcdefghijklmnop"):
        assert piece not in text

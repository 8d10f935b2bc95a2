"""`--web.config.file` (exporter-toolkit format): TLS, mutual TLS, basic auth, headers; and the limits that
keep slow or huge requests from exhausting the HTTP server."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Gauge

from exporter.config.settings import ConfigError, load_config
from exporter.config.web_config import WebConfigError, load_web_config
from exporter.metrics import catalogue as m
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.serve.web_serving import BasicAuth, WebServing
from tests.support import run_cli

ENV = {"AZDO_ORG_URL": "https://dev.azure.com/contoso", "AZDO_PAT": "x"}


# ------------------------------------------------------------------------------------------ certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool = False, sans=()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key=None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca = _cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    _cert("other-ca", other_key, "other-ca", other_key, ca=True)
    _write(d / "ca", ca)
    server_key, client_key, rogue_key, named_key = _key(), _key(), _key(), _key()
    _write(d / "server", _cert("localhost", server_key, "test-ca", ca_key,
                               sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
           server_key)
    _write(d / "client", _cert("prometheus", client_key, "test-ca", ca_key, sans=[x509.DNSName("prometheus")]),
           client_key)
    _write(d / "named", _cert("grafana", named_key, "test-ca", ca_key, sans=[x509.DNSName("grafana")]), named_key)
    _write(d / "rogue", _cert("prometheus", rogue_key, "other-ca", other_key, sans=[x509.DNSName("prometheus")]),
           rogue_key)
    return d


# --------------------------------------------------------------------------------------------- serving


class Served:
    def __init__(self, server: ExporterHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]


@pytest.fixture
def serve() -> Iterator:
    servers: list[ExporterHTTPServer] = []

    def start(web_yaml: str | None, tmp: Path) -> Served:
        registry = CollectorRegistry()
        Gauge(m.PIPELINE_BROKEN.name, "test", registry=registry).set(1)
        web = None
        if web_yaml is not None:
            path = tmp / "web.yml"
            path.write_text(web_yaml)
            web = load_web_config(str(path))
        server = ExporterHTTPServer(("127.0.0.1", 0), registry, lambda: True, lambda: {}, web_config=web)
        start_server(server)
        servers.append(server)
        return Served(server)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _client_context(pki: Path, cert: str | None = None, **versions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    for name, value in versions.items():
        setattr(ctx, name, value)
    return ctx


def _https_get(port: int, ctx: ssl.SSLContext, path: str = "/metrics", headers=None) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def _http_get(port: int, path: str = "/metrics", headers=None) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ------------------------------------------------------------------------------------------------- TLS


def test_tls_serves_https_and_refuses_plain_http(pki: Path, tmp_path: Path, serve) -> None:
    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n", tmp_path)
    status, body, _ = _https_get(s.port, _client_context(pki))
    assert status == 200 and f"{m.PIPELINE_BROKEN} 1.0".encode() in body
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        _http_get(s.port)
    # The server survives the bad client.
    assert _https_get(s.port, _client_context(pki), "/healthz")[0] == 200


def test_tls_minimum_version(pki: Path, tmp_path: Path, serve) -> None:
    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
              "  min_version: TLS13\n", tmp_path)
    with pytest.raises(ssl.SSLError):
        _https_get(s.port, _client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert _https_get(s.port, _client_context(pki))[0] == 200


def test_mutual_tls(pki: Path, tmp_path: Path, serve) -> None:
    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
              f"  client_ca_file: {pki}/ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n", tmp_path)
    assert _https_get(s.port, _client_context(pki, "client"))[0] == 200
    for cert in (None, "rogue"):  # no client certificate; one from another CA
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
            _https_get(s.port, _client_context(pki, cert))
    assert _https_get(s.port, _client_context(pki, "client"), "/healthz")[0] == 200


def test_mutual_tls_allowed_sans_and_optional_client_certs(pki: Path, tmp_path: Path, serve) -> None:
    s = serve("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n"
              "  client_allowed_sans: [prometheus]\n", pki)  # relative paths: to the web config's folder
    assert _https_get(s.port, _client_context(pki, "client"))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        _https_get(s.port, _client_context(pki, "named"))
    (pki / "web.yml").unlink()

    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
              f"  client_ca_file: {pki}/ca.crt\n  client_auth_type: VerifyClientCertIfGiven\n", tmp_path)
    assert _https_get(s.port, _client_context(pki))[0] == 200
    assert _https_get(s.port, _client_context(pki, "client"))[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        _https_get(s.port, _client_context(pki, "rogue"))


# ------------------------------------------------------------------------------------------ basic auth


def _users_yaml(**users: str) -> str:
    lines = ["basic_auth_users:"]
    for user, password in users.items():
        lines.append(f"  {user}: {bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}")
    return "\n".join(lines) + "\n"


def test_basic_auth_right_wrong_missing(tmp_path: Path, serve) -> None:
    s = serve(_users_yaml(prometheus="s3cret", other="pw") + "http_server_config:\n  headers:\n"
              "    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n", tmp_path)
    status, body, headers = _http_get(s.port, headers=_basic("prometheus", "s3cret"))
    assert status == 200 and m.PIPELINE_BROKEN.name.encode() in body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    answers = []
    for given in (_basic("prometheus", "wrong"), _basic("nobody", "s3cret"), _basic("other", "s3cret"), {},
                  {"Authorization": "Basic !!!"}, {"Authorization": "Bearer s3cret"},
                  {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}):
        status, body, headers = _http_get(s.port, headers=given)
        answers.append((status, body, headers.get("WWW-Authenticate")))
    # One answer for every failure: nothing tells which part was wrong.
    assert set(answers) == {(401, b"Unauthorized\n", "Basic")}
    # Like exporter-toolkit, every path is protected.
    for path in ("/healthz", "/readyz", "/", "/nope"):
        assert _http_get(s.port, path)[0] == 401
    assert _http_get(s.port, "/healthz", _basic("other", "pw"))[0] == 200


def test_basic_auth_over_tls(pki: Path, tmp_path: Path, serve) -> None:
    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
              + _users_yaml(prometheus="s3cret"), tmp_path)
    assert _https_get(s.port, _client_context(pki), headers=_basic("prometheus", "s3cret"))[0] == 200
    assert _https_get(s.port, _client_context(pki), headers=_basic("prometheus", "nope"))[0] == 401


def test_successful_checks_are_cached_and_failures_are_not() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=12)).decode()
    auth = BasicAuth({"u": hashed})
    header = _basic("u", "pw")["Authorization"]
    started = time.perf_counter()
    assert auth.check(header)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(20):
        assert auth.check(header)
    cached = (time.perf_counter() - started) / 20
    assert cached < first / 20, (first, cached)
    assert not auth.check(_basic("u", "pw2")["Authorization"])
    assert len(auth._cache) == 1
    assert b"pw" not in b"".join(auth._cache)  # keys are HMACs, not passwords


def test_web_config_is_reloaded_when_it_changes(tmp_path: Path, serve) -> None:
    s = serve(_users_yaml(prometheus="one"), tmp_path)
    assert _http_get(s.port, headers=_basic("prometheus", "one"))[0] == 200
    WebServing.RECHECK_SECONDS, saved = 0.0, WebServing.RECHECK_SECONDS
    try:
        (tmp_path / "web.yml").write_text(_users_yaml(prometheus="two", extra="x"))
        assert _http_get(s.port, headers=_basic("prometheus", "two"))[0] == 200
        assert _http_get(s.port, headers=_basic("prometheus", "one"))[0] == 401
        (tmp_path / "web.yml").write_text("basic_auth_users: {prometheus: not-a-hash}\n")  # broken: kept old
        assert _http_get(s.port, headers=_basic("prometheus", "two"))[0] == 200
    finally:
        WebServing.RECHECK_SECONDS = saved


# -------------------------------------------------------------------------------------- slow and large


def test_a_client_that_trickles_its_request_is_cut_off(serve, tmp_path: Path) -> None:
    s = serve(None, tmp_path)
    s.server.header_timeout = 1.0
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    started = time.monotonic()
    closed_after = None
    try:
        for piece in [b"GET /metrics HTTP/1.1\r\n", *[b"X-Slow: a\r\n"] * 40]:
            try:
                sock.sendall(piece)
                time.sleep(0.2)
                sock.settimeout(0.01)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except (ConnectionError, BrokenPipeError):
                closed_after = time.monotonic() - started
                break
    finally:
        sock.close()
    assert closed_after is not None and closed_after < 3.0, closed_after
    assert _http_get(s.port)[0] == 200  # the server still serves others


def test_a_stalled_tls_handshake_is_cut_off(pki: Path, tmp_path: Path, serve) -> None:
    s = serve(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n", tmp_path)
    s.server.header_timeout = 1.0
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    started = time.monotonic()
    try:
        sock.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing more
        try:
            assert sock.recv(1024) == b""
        except ConnectionError:
            pass
    finally:
        sock.close()
    assert time.monotonic() - started < 3.0
    assert _https_get(s.port, _client_context(pki))[0] == 200


def test_an_idle_connection_without_a_request_is_closed(serve, tmp_path: Path) -> None:
    s = serve(None, tmp_path)
    s.server.header_timeout = 0.5
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    started = time.monotonic()
    assert sock.recv(1) == b""
    assert time.monotonic() - started < 3.0
    sock.close()


def _raw(port: int, data: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        try:
            sock.sendall(data)
        except (ConnectionError, BrokenPipeError):
            pass
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        sock.close()


def test_too_large_requests_are_refused(serve, tmp_path: Path) -> None:
    s = serve(None, tmp_path)
    huge_headers = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100)
                                                                     for i in range(300)) + b"\r\n"
    assert _raw(s.port, huge_headers).startswith(b"HTTP/1.1 431 ")
    assert _raw(s.port, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 414 ")
    assert _raw(s.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").startswith(
        b"HTTP/1.1 413 ")
    assert _raw(s.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                ).startswith(b"HTTP/1.1 413 ")
    # Keep-alive and pipelining still work for well-behaved clients.
    two = _raw(s.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
               b"Connection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 ") == 2
    assert _http_get(s.port)[0] == 200


# ---------------------------------------------------------------------------------------------- errors


def test_invalid_web_configs_list_every_problem_with_its_location(tmp_path: Path, pki: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n"
        "  cert_file: missing.crt\n"
        "  client_auth_type: Sometimes\n"
        "  min_version: TLS9\n"
        "basic_auth_users:\n"
        "  prometheus: plain-text-password\n"
        "http_server_config:\n"
        "  headers: {Set-Cookie: a}\n"
        "tls_config: {}\n"
    )
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    text = "\n".join(info.value.errors)
    assert f"{path}:2:14: tls_server_config.cert_file: cannot read 'missing.crt'" in text
    assert f"{path}:2:3: tls_server_config: key_file is required" in text
    assert f"{path}:3:21: tls_server_config.client_auth_type: unknown 'Sometimes'" in text
    assert f"{path}:4:16: tls_server_config.min_version: unknown 'TLS9'" in text
    assert f"{path}:6:15: basic_auth_users.prometheus: expected a bcrypt hash" in text
    assert "plain-text-password" not in text
    assert f"{path}:8:25: http_server_config.headers.Set-Cookie: this header cannot be set" in text
    assert f"{path}:9:1: tls_config: unknown key" in text

    path.write_text(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
                    "  client_auth_type: RequireAndVerifyClientCert\n")
    with pytest.raises(WebConfigError, match="RequireAndVerifyClientCert needs client_ca_file"):
        load_web_config(str(path))
    path.write_text(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/client.key\n")
    with pytest.raises(WebConfigError, match="cannot load the certificate, key or CA"):
        load_web_config(str(path))
    path.write_text(f"tls_server_config:\n  cert_file: {pki}/server.crt\n  key_file: {pki}/server.key\n"
                    f"  client_ca_file: {pki}/ca.crt\n  client_auth_type: RequireAnyClientCert\n")
    with pytest.raises(WebConfigError, match="RequireAnyClientCert .* is not supported"):
        load_web_config(str(path))


def test_web_config_file_in_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  u: nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(None, {**ENV, "AZDO_WEB_CONFIG_FILE": str(path)})
    assert info.value.errors[0].startswith(f"env AZDO_WEB_CONFIG_FILE: {path}:2:6: basic_auth_users.u: ")
    with pytest.raises(ConfigError, match="--web.config.file: cannot read"):
        load_config(None, ENV, {"web_config_file": str(tmp_path / "absent.yml")})
    path.write_text(_users_yaml(u="pw"))
    config = load_config(None, ENV, {"web_config_file": str(path)})
    assert config.web_config is not None and set(config.web_config.users) == {"u"}


def test_cli_exits_2_on_an_invalid_web_config(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
    proc = run_cli("--demo", "--web.config.file", str(path), timeout=60)
    assert proc.returncode == 2
    # Named as the flag is spelled (exporter-toolkit's --web.config.file), not --web-config-file.
    assert f"--web.config.file: {path}:2:14: tls_server_config.cert_file: cannot read 'nope.crt'" in proc.stderr

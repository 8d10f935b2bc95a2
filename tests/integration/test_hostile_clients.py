"""Hostile clients (issue 12): slow readers, slowloris, idle and keep-alive hogs, unauthenticated and
brute-forcing clients, oversized requests, and 1,000 of them at once. Throughout, a well-behaved client
gets /healthz and complete /metrics answers, and the server's memory and threads stay bounded.

Everything runs on 127.0.0.1, bounded in count and time, and every socket is closed at the end."""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import resource
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from exporter.config.web_config import load_web_config
from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve import http_server
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.serve.web_serving import BasicAuth, WebServing
from tests.support import wait_until

SERIES = 1500  # about 100 KB of exposition: far more than a tiny receive window takes


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("padding_test_series", "padding", ["name"], registry=registry)
    for i in range(SERIES):
        gauge.labels(f"pipeline-{i:05d}-" + "x" * 40).set(i)
    return registry


@contextmanager
def serving(web_yaml: str | None = None, tmp: Path | None = None, **limits: float) -> Iterator[ExporterHTTPServer]:
    registry = _registry()
    web = None
    if web_yaml is not None:
        assert tmp is not None
        (tmp / "web.yml").write_text(web_yaml)
        web = load_web_config(str(tmp / "web.yml"))
    metrics = SelfMetrics(CollectorRegistry())
    server = ExporterHTTPServer(("127.0.0.1", 0), registry, lambda: True, lambda: {}, web_config=web,
                                reload_gauge=metrics.web_config_last_reload_successful)
    for name, value in limits.items():
        setattr(server, name, value)
    thread = start_server(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive()


def _get(port: int, path: str = "/metrics", headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def _good_client_ok(port: int, rounds: int = 3) -> list[float]:
    """A well-behaved client: /healthz answers (timed) and complete /metrics answers."""
    healthz = []
    for _ in range(rounds):
        started = time.monotonic()
        assert _get(port, "/healthz")[:2] == (200, b"ok\n")
        healthz.append(time.monotonic() - started)
        status, body, headers = _get(port, "/metrics")
        assert status == 200 and int(headers["Content-Length"]) == len(body)
        assert body.endswith(b"\n") and body.count(b"padding_test_series{") == SERIES
    return healthz


def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the advertised window stays tiny
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes `sock` within `within` seconds (whatever it sent is read and dropped)."""
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


PIPELINED = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 30


# ------------------------------------------------------------------------------------------ slow readers


def test_slow_readers_pipelining_metrics_neither_block_others_nor_log_errors(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter")
    with serving(write_timeout=2.0) as server:
        port = server.server_address[1]
        hogs = [_connect(port, rcvbuf=4096) for _ in range(80)]  # more than the old 64 threads
        try:
            for sock in hogs:
                sock.sendall(PIPELINED)
            wait_until(lambda: server.connections >= 80, 5, "at least 80 connections", interval=0.05,
                       details=lambda: f"{server.connections} connections")
            assert max(_good_client_ok(port)) < 1.0
            # The whole answer has a deadline (not each write): every hog is cut off soon after it.
            wait_until(lambda: server.connections == 0, 15, "every connection closed", interval=0.05,
                       details=lambda: f"{server.connections} connections")
            _good_client_ok(port, rounds=1)
        finally:
            for sock in hogs:
                sock.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


# -------------------------------------------------------------------------------------------- slowloris


def test_slowloris_headers_are_cut_off_and_do_not_block_others() -> None:
    with serving(header_timeout=1.5) as server:
        port = server.server_address[1]
        slow = [_connect(port) for _ in range(100)]
        try:
            for sock in slow:
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            for _ in range(2):  # keep trickling: each byte arrives well within any per-read timeout
                time.sleep(0.3)
                for sock in slow:
                    try:
                        sock.sendall(b"X-A: b\r\n")
                    except OSError:
                        pass
            assert max(_good_client_ok(port)) < 1.0
            assert all(_closed_by_server(sock, 5) for sock in slow)
        finally:
            for sock in slow:
                sock.close()


def test_bare_lf_requests_are_answered_at_once() -> None:
    with serving() as server:
        sock = _connect(server.server_address[1])
        try:
            started = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nok\n")
            assert time.monotonic() - started < 2.0  # not after the 10 s header deadline
        finally:
            sock.close()


# --------------------------------------------------------------------------------- idle and keep-alive


def test_idle_and_keep_alive_hogs_do_not_cut_others_off() -> None:
    with serving() as server:
        port = server.server_address[1]
        idle = [_connect(port) for _ in range(100)]
        kept = [_connect(port) for _ in range(100)]
        try:
            for sock in kept:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in kept:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            wait_until(lambda: server.connections >= 200, 5, "at least 200 connections", interval=0.05,
                       details=lambda: f"{server.connections} connections")
            assert max(_good_client_ok(port)) < 1.0
        finally:
            for sock in idle + kept:
                sock.close()


def test_connections_per_client_address_are_bounded() -> None:
    with serving() as server:
        port = server.server_address[1]
        server.max_connections_per_client = 5
        held = [_connect(port) for _ in range(5)]
        try:
            wait_until(lambda: server.connections == 5, 5, "5 connections", interval=0.05,
                       details=lambda: f"{server.connections} connections")
            extra = _connect(port)
            try:
                assert _closed_by_server(extra, 2)
            finally:
                extra.close()
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: server.connections == 0, 5, "every connection closed", interval=0.05,
                   details=lambda: f"{server.connections} connections")
        assert _get(port, "/healthz")[0] == 200


# ------------------------------------------------------------------------------------------ basic auth


def _users_yaml(rounds: int = 4, **users: str) -> str:
    lines = ["basic_auth_users:"]
    for user, password in users.items():
        lines.append(f"  {user}: {bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()}")
    return "\n".join(lines) + "\n"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_an_unauthenticated_client_is_answered_and_let_go(tmp_path: Path) -> None:
    with serving(_users_yaml(prometheus="s3cret"), tmp_path) as server:
        sock = _connect(server.server_address[1])
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 401 ") and b"WWW-Authenticate: Basic" in answer
            assert _closed_by_server(sock, 2)  # not held for the idle or header deadline
        finally:
            sock.close()
        wait_until(lambda: server.connections == 0, 5, "every connection closed", interval=0.05,
                   details=lambda: f"{server.connections} connections")


class _CountingBcrypt:
    """bcrypt, recording the cost of every hash checked."""

    def __init__(self) -> None:
        self.costs: list[int] = []

    def checkpw(self, password: bytes, hashed: bytes) -> bool:
        self.costs.append(int(hashed[4:6]))
        return bcrypt.checkpw(password, hashed)

    def __getattr__(self, name: str) -> Any:
        return getattr(bcrypt, name)


def test_an_unknown_user_costs_one_bcrypt_check_of_the_configured_cost() -> None:
    auth = BasicAuth({"prometheus": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=12)).decode()})
    counting = _CountingBcrypt()
    auth._bcrypt = counting
    assert auth.check(_basic("nobody", "s3cret")["Authorization"]) is False
    assert auth.check(_basic("prometheus", "wrong")["Authorization"]) is False
    # Same number of checks at the same cost: the answer time does not tell whether the user exists.
    assert counting.costs == [12, 12]
    assert auth.check(_basic("prometheus", "s3cret")["Authorization"]) is True
    assert auth.check(_basic("prometheus", "s3cret")["Authorization"]) is True  # cached
    assert counting.costs == [12, 12, 12]


def test_a_brute_force_does_not_delay_a_client_with_cached_credentials(tmp_path: Path) -> None:
    with serving(_users_yaml(rounds=8, prometheus="s3cret"), tmp_path) as server:
        port = server.server_address[1]
        good = _basic("prometheus", "s3cret")
        assert _get(port, "/healthz", good)[0] == 200  # now cached
        stop = threading.Event()
        failures: list[int] = []

        def guess(n: int) -> None:
            for i in range(200):  # bounded; stopped long before
                if stop.is_set():
                    return
                failures.append(_get(port, "/healthz", _basic("prometheus", f"guess-{n}-{i}"))[0])

        guessers = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
        for thread in guessers:
            thread.start()
        try:
            time.sleep(0.5)
            timings = []
            for _ in range(5):
                started = time.monotonic()
                assert _get(port, "/healthz", good)[0] == 200
                timings.append(time.monotonic() - started)
            assert max(timings) < 1.0, timings
        finally:
            stop.set()
            for thread in guessers:
                thread.join(30)
        assert failures and set(failures) == {401}


# ------------------------------------------------------------------------------------------- oversized


def test_many_oversized_requests_at_once_each_get_a_clear_answer() -> None:
    with serving() as server:
        port = server.server_address[1]
        body = b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000
        headers = b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        socks = [_connect(port) for _ in range(100)]
        try:
            for i, sock in enumerate(socks):
                try:
                    sock.sendall(body if i % 2 else headers)
                except OSError:
                    pass
            for i, sock in enumerate(socks):
                sock.settimeout(5)
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 413 " if i % 2 else b"HTTP/1.1 431 "), (i, answer[:40])
                assert b"Connection: close" in answer
        finally:
            for sock in socks:
                sock.close()
        _good_client_ok(port, rounds=1)


# ------------------------------------------------------------------------------------------ HTTP details


def test_gzip_only_when_accepted_head_has_the_real_length_and_no_python_in_server() -> None:
    with serving() as server:
        port = server.server_address[1]
        for refused in ("gzip;q=0", "identity", "gzip; q=0.000, identity", ""):
            status, body, headers = _get(port, headers={"Accept-Encoding": refused})
            assert status == 200 and "Content-Encoding" not in headers, refused
        for accepted in ("gzip", "gzip;q=0.5", "deflate, gzip"):
            status, body, headers = _get(port, headers={"Accept-Encoding": accepted})
            assert headers["Content-Encoding"] == "gzip", accepted
            assert gzip.decompress(body).count(b"padding_test_series{") == SERIES
        get_length = int(_get(port, "/metrics")[2]["Content-Length"])
        status, body, headers = _get(port, "/metrics", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == get_length > 100_000
        assert int(_get(port, "/healthz", method="HEAD")[2]["Content-Length"]) == 3
        assert headers["Server"].startswith("azdo-exporter/") and "Python" not in headers["Server"]


# --------------------------------------------------------------------------------------- fail closed


def _reload_gauge(server: ExporterHTTPServer) -> float | None:
    return server.registry.get_sample_value(m.EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL.name)


def test_a_web_config_that_becomes_empty_unreadable_or_invalid_keeps_auth_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="exporter")
    path = tmp_path / "web.yml"
    good = _basic("prometheus", "one")
    WebServing.RECHECK_SECONDS, saved = 0.0, WebServing.RECHECK_SECONDS
    try:
        with serving(_users_yaml(prometheus="one"), tmp_path) as server:
            port = server.server_address[1]
            assert _get(port, "/healthz", good)[0] == 200 and _reload_gauge(server) == 1.0
            for broken in ("", "# nothing here\n", "basic_auth_users: [\n", None):
                caplog.clear()
                if broken is None:
                    path.unlink()
                else:
                    path.write_text(broken)
                assert _get(port, "/healthz")[0] == 401, repr(broken)  # still protected
                assert _get(port, "/healthz", good)[0] == 200
                assert _reload_gauge(server) == 0.0
                assert any(r.levelno == logging.ERROR and "keeping the previous settings" in r.getMessage()
                           for r in caplog.records), repr(broken)
            path.write_text("{}\n")  # a valid file that says so turns authentication off
            assert _get(port, "/healthz")[0] == 200 and _reload_gauge(server) == 1.0
    finally:
        WebServing.RECHECK_SECONDS = saved


# ---------------------------------------------------------------------------------------- 1,000 at once


class _Hostiles:
    """Many hostile connections driven from one thread: slow readers, slowloris and idle keep-alives."""

    def __init__(self, port: int, slow_readers: int, slowloris: int, idle: int) -> None:
        self.port = port
        self.readers = [_connect(port, rcvbuf=4096) for _ in range(slow_readers)]
        self.loris = [_connect(port) for _ in range(slowloris)]
        self.idle = [_connect(port) for _ in range(idle)]
        for sock in self.readers:
            sock.sendall(PIPELINED)
        for sock in self.loris:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        for sock in self.idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in self.idle:
            sock.recv(65536)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slowloris")
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(0.5):
            for sock in self.loris:
                try:
                    sock.send(b"X: y\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.readers + self.loris + self.idle:
            sock.close()


@pytest.mark.slow  # a soak (1,000 connections held 10 s, a latency bound): make test runs it, make test-fast does not
def test_a_thousand_hostile_connections_leave_a_good_client_served() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    with serving(header_timeout=60.0, write_timeout=60.0) as server:
        port = server.server_address[1]
        _good_client_ok(port, rounds=2)  # warm: pools started, exposition rendered once
        idle_rss = _rss_kib()
        threads_before = threading.active_count()
        hostiles = _Hostiles(port, slow_readers=300, slowloris=400, idle=300)
        try:
            wait_until(lambda: server.connections >= 1000, 10, "at least 1000 connections", interval=0.05,
                       details=lambda: f"{server.connections} connections")
            # Held open, not arriving: the first answers of 300 slow readers, written while they all
            # connect at once (and this process's GIL busy opening them), are the arrival, not the hold.
            time.sleep(2.0)
            healthz: list[float] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                healthz += _good_client_ok(port, rounds=1)
            assert server.connections >= 1000  # still held
            assert max(healthz) < 1.0, max(healthz)
            rss = _rss_kib()
            # The test's own 1,000 client sockets live in this process too; the bound is generous.
            assert rss < 1.5 * idle_rss, (rss, idle_rss)
            # The slowloris thread is the test's own; the server added none per connection.
            assert threading.active_count() <= threads_before + 1 + http_server.WORKERS + http_server.AUTH_WORKERS
        finally:
            hostiles.close()
        wait_until(lambda: server.connections == 0, 10, "every connection closed", interval=0.05,
                   details=lambda: f"{server.connections} connections")

"""The exporter's HTTP server: /metrics, /healthz, /readyz and a small landing page.

`/metrics` serves published snapshots only; no Azure DevOps call happens during a scrape. Each area's
snapshot is rendered to text (and gzip) once per refresh and cached; a scrape renders only the small
live self-metrics and sends the cached bytes after them. Answers are gzip-compressed when the client asks for it.
"""

from __future__ import annotations

import gzip
import html
import io
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.config.web_config import WebConfig, WebServing
from exporter.serve.scheduler import exposition_parts

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
REQUEST_TIMEOUT = 30.0
# Limits that keep slow or huge requests from exhausting the server (slowloris and friends):
HEADER_TIMEOUT = 10.0  # the whole request line and headers must arrive within this time
IDLE_TIMEOUT = 60.0  # a kept-alive connection may wait this long for its next request
WRITE_TIMEOUT = 30.0  # the whole answer must be taken within this time
MAX_HEADER_BYTES = 16384  # request line plus headers; a request body is never accepted
MAX_CONNECTIONS = 64  # connections served at once; more are closed at once


# An extra page's handler returns (content type, body) or (content type, body, extra response headers).
ExtraPage = tuple[str, bytes] | tuple[str, bytes, dict[str, str]]


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 ready: Callable[[], bool], status: Callable[[], dict[str, dict[str, Any]]],
                 extra_pages: dict[str, Callable[[], ExtraPage]] | None = None,
                 web_config: WebConfig | None = None) -> None:
        self.registry = registry
        self.ready = ready
        self.status = status
        self.extra_pages = extra_pages or {}
        self.web = WebServing(web_config) if web_config is not None else None
        self.header_timeout, self.idle_timeout, self.write_timeout = HEADER_TIMEOUT, IDLE_TIMEOUT, WRITE_TIMEOUT
        self.max_header_bytes = MAX_HEADER_BYTES
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # too many connections: refuse this one at once
            log.warning("more than %d connections at once; closing one from %s", MAX_CONNECTIONS, client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error serving a connection from %s", client_address[0], exc_info=True)


class _HeadTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT  # a slow client cannot hold a thread for ever
    server_version = f"azdo-exporter/{__version__}"

    # -- connection handling with limits: TLS in the connection's thread, deadlines, no bodies ------

    def setup(self) -> None:
        self.connection = self.request
        self.connection.settimeout(self.server.header_timeout)
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK can add ~40 ms to an answer.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._pending = b""
        self._served = 0
        self._usable = True
        self.headers = None  # type: ignore[assignment]  # until a request's headers are parsed
        if self.server.web is not None and self.server.web.tls:
            try:  # the handshake runs here, not in the accept loop, so a stalled one blocks nobody else
                self.connection = self.request = self.server.web.wrap(self.request, self.server.header_timeout)
            except (OSError, ValueError) as error:
                log.debug("TLS handshake with %s failed: %s", self.client_address[0], error)
                self._usable = False
        self.rfile = io.BytesIO()
        self.wfile = socketserver._SocketWriter(self.connection)  # type: ignore[attr-defined]

    def handle(self) -> None:
        if self._usable:
            super().handle()

    def _read_head(self) -> bytes | None:
        """Request line and headers, within the header deadline; None when the client closed or idled."""
        server = self.server
        buffer = self._pending
        start = time.monotonic()
        deadline = start + (server.header_timeout if not self._served or buffer else server.idle_timeout)
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                self._pending = buffer[end + 4:]
                return buffer[:end + 4]
            if len(buffer) > server.max_header_bytes:
                raise _HeadTooLarge
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.connection.settimeout(remaining)
            chunk = self.connection.recv(8192)
            if not chunk:
                return None
            if not buffer:  # the first byte of a request: from now on the header deadline applies
                deadline = min(deadline, time.monotonic() + server.header_timeout)
            buffer += chunk

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            head = self._read_head()
        except _HeadTooLarge:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self._reject(431, "request header fields too large\n")
            return
        except TimeoutError:
            log.debug("closing a connection from %s: request not received in time", self.client_address[0])
            return
        except OSError:
            return
        if head is None:
            return
        self.close_connection = False
        self.rfile = io.BytesIO(head)
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
            self._reject(414, "request line too long\n")
            return
        if not self.parse_request():
            self.close_connection = True
            return
        self.connection.settimeout(self.server.write_timeout)
        length = self.headers.get("Content-Length", "0").strip()
        if self.headers.get("Transfer-Encoding") or length not in ("", "0"):
            self._reject(413, "request bodies are not accepted\n")
            return
        web = self.server.web
        if web is not None and not web.authorized(self.headers.get("Authorization")):
            self._send(401, "text/plain; charset=utf-8", b"Unauthorized\n", extra={"WWW-Authenticate": "Basic"})
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self._unsupported()
            return
        method()
        self.wfile.flush()
        self._served += 1

    def _reject(self, code: int, text: str) -> None:
        self.close_connection = True
        try:
            self._send(code, "text/plain; charset=utf-8", text.encode(), extra={"Connection": "close"})
            self.wfile.flush()
            # Lingering close: read (and drop) what the client is still sending for a moment, so that the
            # kernel does not answer it with a reset that would destroy the error answer in flight.
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            drained = 0
            while drained < 1 << 20 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except (OSError, ValueError):
            pass

    def end_headers(self) -> None:
        if self.server.web is not None:
            for name, value in self.server.web.headers:
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        log.debug("http %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send_metrics()
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/readyz":
                if self.server.ready():
                    self._send(200, "text/plain; charset=utf-8", b"ready\n")
                else:
                    self._send(503, "text/plain; charset=utf-8",
                               b"not ready: waiting for the first successful refresh of every collector\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", self._landing_page())
            elif path in self.server.extra_pages:
                page = self.server.extra_pages[path]()
                self._send(200, page[0], page[1], extra=page[2] if len(page) > 2 else None)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # never let one request take the server down
            log.exception("error serving %s", path)
            try:
                self._send(500, "text/plain; charset=utf-8", b"internal error\n")
            except OSError:
                pass

    def do_HEAD(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        known = path in ("/", "/metrics", "/healthz", "/readyz") or path in self.server.extra_pages
        self._send(200 if known else 404, "text/plain; charset=utf-8", b"", head_only=True)

    def _unsupported(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"method not allowed\n", extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _unsupported  # noqa: N815

    def _send(self, code: int, content_type: str, body: bytes, head_only: bool = False,
              extra: dict[str, str] | None = None) -> None:
        accept = self.headers.get("Accept-Encoding", "") if self.headers else ""
        if "gzip" in accept.lower() and len(body) > 512:
            body = gzip.compress(body, compresslevel=5)
            encoding = "gzip"
        else:
            encoding = ""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
            self.send_header("Vary", "Accept-Encoding")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_metrics(self) -> None:
        """Self-metrics rendered now plus each area's snapshot rendered once per refresh (cached bytes,
        or cached gzip members: a gzip stream may be several members, RFC 1952), sent part by part."""
        accept = self.headers.get("Accept-Encoding", "") if self.headers else ""
        want_gzip = "gzip" in accept.lower()
        parts = exposition_parts(self.server.registry, want_gzip)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(sum(len(part) for part in parts)))
        if want_gzip:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.end_headers()
        for part in parts:
            self.wfile.write(part)

    def _landing_page(self) -> bytes:
        rows = []
        for name, status in sorted(self.server.status().items()):
            def when(value: Any) -> str:
                if not isinstance(value, (int, float)):
                    return "never"
                return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
            error = status.get("last_error")
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{when(status.get('last_success'))}</td>"
                f"<td>{'OK' if not error else 'FAILING'}</td>"
                f"<td>{html.escape(str(error)) if error else ''}</td></tr>"
            )
        extra_links = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>'
                              for p in sorted(self.server.extra_pages))
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>azdo-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}</style></head>
<body><h1>azdo-exporter {html.escape(__version__)}</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>
<li><a href="/readyz">/readyz</a></li>{extra_links}</ul>
<h2>Collectors</h2>
<table><tr><th>collector</th><th>last successful refresh</th><th>status</th><th>last error</th></tr>
{''.join(rows)}</table></body></html>
"""
        return page.encode("utf-8")


def start_server(server: ExporterHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with `server.shutdown()` then `server.server_close()`."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="http", daemon=True)
    thread.start()
    return thread

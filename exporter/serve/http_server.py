"""The exporter's HTTP server: /metrics, /healthz, /readyz, a small landing page and extra pages.

`/metrics` serves published snapshots only; no Azure DevOps call happens during a scrape. Each area's
snapshot is rendered to text (and gzip) once per refresh and cached; a scrape renders only the small
live self-metrics and sends the cached bytes after them. Answers are gzip-compressed when the client
asks for it.

The server is event-driven: one asyncio loop in one thread owns every socket, so a connection that
is slow, idle or hostile costs a few kilobytes and a timer, never a thread. Work that takes CPU time
(rendering /metrics and the pages, bcrypt, reloading the web config) runs in two small thread pools;
/healthz and /readyz are answered by the loop itself, so they are answered even while every worker is
busy. Every connection has total deadlines: for its TLS handshake, for each request head (from its
first byte), between kept-alive requests, and for each whole answer (not per write). A write error or
a missed deadline closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import html
import logging
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from exporter import __version__
from exporter.config.web_config import WebConfig
from exporter.serve.http_protocol import BadRequest, Request, accepts_gzip, find_head, parse_head, response_head
from exporter.serve.scheduler import exposition_parts
from exporter.serve.web_serving import Active, WebServing

log = logging.getLogger(__name__)

# Limits that keep slow, idle or huge requests from exhausting the server (slowloris and friends):
HEADER_TIMEOUT = 10.0  # the TLS handshake, and each request line plus headers (from its first byte)
IDLE_TIMEOUT = 60.0  # a kept-alive connection may wait this long for its next request
WRITE_TIMEOUT = 30.0  # each whole answer must be taken within this time
MAX_HEADER_BYTES = 16384  # request line plus headers; a request body is never accepted
MAX_CONNECTIONS = 8192  # connections open at once (also kept below the open-file limit)
MAX_CONNECTIONS_PER_CLIENT = 2048  # from one client address: one address cannot take every slot
WORKERS = 4  # threads rendering /metrics and the pages
AUTH_WORKERS = 2  # threads running bcrypt for credentials not in the cache
WRITE_CHUNK = 16384  # answers go out in slices, so a slow reader buffers at most ~2 of them
WRITE_HIGH_WATER = 32768
SEND_BUFFER = 131072  # kernel send buffer per connection (Linux doubles it): ~2 ms of a 1 Gbit/s link
LINGER_SECONDS = 1.0  # after an error answer, how long unread request bytes are drained before closing
CLOSE_SECONDS = 2.0  # how long a closing connection may take to send what is buffered (and TLS close_notify)
BACKLOG = 1024
FD_RESERVE = 128  # open files kept free for the Azure DevOps client, logs and the web config

# An extra page's handler returns (content type, body) or (content type, body, extra response headers).
ExtraPage = tuple[str, bytes] | tuple[str, bytes, dict[str, str]]
Answer = tuple[int, list[tuple[str, str]], list[bytes]]  # status, headers, body parts

_TEXT = "text/plain; charset=utf-8"
_QUIET_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard limit (as Go programs do at start) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class _RateLimitedWarning:
    """A warning logged at most once per `every` seconds, with the count of the ones left out."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = -every
        self._suppressed = 0

    def __call__(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more like this not logged)" if self._suppressed else ""
        self._last, self._suppressed = now, 0
        log.warning(message + suffix, *args)


class ExporterHTTPServer:
    """Serves the exporter over HTTP(S); run with `serve_forever()` (or `start_server`), stop with
    `shutdown()` then `server_close()`. The listening socket is bound by the constructor."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry,
                 ready: Callable[[], bool], status: Callable[[], dict[str, dict[str, Any]]],
                 extra_pages: dict[str, Callable[[], ExtraPage]] | None = None,
                 web_config: WebConfig | None = None, reload_gauge: Gauge | None = None) -> None:
        self.registry = registry
        self.ready = ready
        self.status = status
        self.extra_pages = extra_pages or {}
        on_reload = None
        if reload_gauge is not None and web_config is not None:
            registry.register(reload_gauge)
            on_reload = reload_gauge.set
        self.web = WebServing(web_config, on_reload) if web_config is not None else None
        # Read for every connection, so tests (and nobody else) may change them on a running server.
        self.header_timeout, self.idle_timeout, self.write_timeout = HEADER_TIMEOUT, IDLE_TIMEOUT, WRITE_TIMEOUT
        self.max_header_bytes = MAX_HEADER_BYTES
        open_files = raise_open_file_limit()
        self.max_connections = max(16, min(MAX_CONNECTIONS, open_files - FD_RESERVE))
        self.max_connections_per_client = max(4, min(MAX_CONNECTIONS_PER_CLIENT, self.max_connections // 4))
        host = address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server(address, family=family, backlog=BACKLOG)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self._pages = ThreadPoolExecutor(WORKERS, thread_name_prefix="http-worker")
        self._auth = ThreadPoolExecutor(AUTH_WORKERS, thread_name_prefix="http-auth")
        self._open: dict[str, int] = {}  # client address -> connections open
        self._open_total = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._flights: dict[tuple[str, bool], asyncio.Future[Answer]] = {}  # renderings in progress
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = threading.Event()
        self._serving = threading.Event()
        self._done = threading.Event()
        self._warn_refused = _RateLimitedWarning()

    # -- lifecycle -------------------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:  # noqa: ARG002 - socketserver's signature
        """Serve until `shutdown()`."""
        self._serving.set()
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop serving and wait until every connection is closed."""
        self._stop_requested.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stop.set)
        if self._serving.is_set():
            self._done.wait(30)

    def server_close(self) -> None:
        self.socket.close()
        self._pages.shutdown(wait=False, cancel_futures=True)
        self._auth.shutdown(wait=False, cancel_futures=True)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._open_total

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_loop_exception)
        self._stop = asyncio.Event()
        self._loop = loop
        if self._stop_requested.is_set():
            return
        server = await asyncio.start_server(self._on_connection, sock=self.socket, limit=MAX_HEADER_BYTES,
                                            backlog=BACKLOG)
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one connection ----------------------------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.web is not None:
            # Nothing may be read before the TLS handshake takes the connection over: a ClientHello read
            # into the plain stream would be lost.
            writer.transport.pause_reading()  # type: ignore[attr-defined]
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        if self._open_total >= self.max_connections or self._open.get(client, 0) >= self.max_connections_per_client:
            self._warn_refused("too many connections (%d open, %d from %s); closing new ones at once",
                               self._open_total, self._open.get(client, 0), client)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open[client] = self._open.get(client, 0) + 1
        self._open_total += 1
        connection = _Connection(self, reader, writer, client)
        graceful = False
        try:
            await connection.run()
            graceful = connection.graceful
        except asyncio.CancelledError:
            pass
        except _QUIET_ERRORS as error:
            log.debug("connection from %s closed: %s", client, type(error).__name__)
        except Exception:  # never let one connection take the server down
            log.exception("error serving a connection from %s", client)
        finally:
            closed = False
            if graceful:  # let the last answer's buffered bytes go out, for a moment at most
                try:
                    writer.close()
                    async with asyncio.timeout(CLOSE_SECONDS):
                        await writer.wait_closed()
                    closed = True
                except (*_QUIET_ERRORS, asyncio.CancelledError):
                    pass
            if not closed:
                # CPython 3.11: a transport that finished closing after its buffer drained has no loop
                # left, and abort() then raises AttributeError instead of doing nothing.
                with contextlib.suppress(AttributeError):
                    writer.transport.abort()
            self._tasks.discard(task)
            self._open_total -= 1
            left = self._open[client] - 1
            if left:
                self._open[client] = left
            else:
                del self._open[client]

    async def web_settings(self) -> Active | None:
        """The web settings in force, reloaded (in a worker) when their files may have changed."""
        if self.web is None:
            return None
        if not self.web.due():
            return self.web.active
        return await asyncio.get_running_loop().run_in_executor(self._pages, self.web.current)

    async def authorized(self, settings: Active | None, header: str) -> bool:
        auth = settings.auth if settings is not None else None
        if auth is None:
            return True
        verdict = auth.check(header or None, cached_only=True)
        if verdict is None:  # bcrypt: tens of milliseconds, never on the loop
            verdict = await asyncio.get_running_loop().run_in_executor(self._auth, auth.check, header)
        return bool(verdict)

    async def in_worker(self, key: tuple[str, bool], work: Callable[[], Answer]) -> Answer:
        """`work()` in a worker, shared: requests that arrive while the same answer is being rendered
        get that rendering (one snapshot, as consistent as any), so a crowd asking for /metrics at once
        costs one rendering, not a queue of them in front of a well-behaved scraper."""
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.get_running_loop().run_in_executor(self._pages, work)
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._flights.pop(key, None) if self._flights.get(key) is done
                                     else None)
        return await asyncio.shield(flight)

    # -- answers -------------------------------------------------------------------------------------------

    def metrics_answer(self, want_gzip: bool) -> Answer:
        """Self-metrics rendered now plus each area's snapshot rendered once per refresh (cached bytes,
        or cached gzip members: a gzip stream may be several members, RFC 1952)."""
        parts = exposition_parts(self.registry, want_gzip)
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if want_gzip:
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        return 200, headers, parts

    def page_answer(self, path: str, want_gzip: bool) -> Answer:
        if path == "/":
            return _body(200, "text/html; charset=utf-8", self._landing_page(), want_gzip)
        page = self.extra_pages[path]()
        return _body(200, page[0], page[1], want_gzip, page[2] if len(page) > 2 else None)  # type: ignore[misc]

    def _landing_page(self) -> bytes:
        rows = []
        for name, status in sorted(self.status().items()):
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
                              for p in sorted(self.extra_pages))
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


def _body(status: int, content_type: str, body: bytes, want_gzip: bool,
          extra: dict[str, str] | None = None) -> Answer:
    headers = [("Content-Type", content_type)]
    if want_gzip and len(body) > 512:
        body = gzip.compress(body, compresslevel=5)
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    headers += list((extra or {}).items())
    return status, headers, [body]


def _text(status: int, text: str, extra: dict[str, str] | None = None) -> Answer:
    return _body(status, _TEXT, text.encode(), False, extra)


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own reports (a transport failing, a handshake aborted): one line, at DEBUG for the
    network errors hostile or unlucky clients cause."""
    error = context.get("exception")
    if isinstance(error, _QUIET_ERRORS):
        log.debug("asyncio: %s: %s", context.get("message"), type(error).__name__)
    else:
        log.error("asyncio: %s", context.get("message"), exc_info=error)


class _Connection:
    """One client connection: optional TLS handshake, then requests one after the other."""

    def __init__(self, server: ExporterHTTPServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 client: str) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.client = client
        self.pending = b""  # bytes read beyond the request being answered (pipelining)
        self.settings: Active | None = None
        self.graceful = True  # False: close at once, dropping what is buffered (a missed deadline)

    async def run(self) -> None:
        server = self.server
        self.settings = await server.web_settings()
        if self.settings is not None and self.settings.context is not None:
            if not await self._handshake(self.settings):
                return
        elif server.web is not None:
            self.writer.transport.resume_reading()  # type: ignore[attr-defined]
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK can add ~40 ms to an answer.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # A fixed kernel send buffer: with autotuning, each reader that never reads could pin up
                # to tcp_wmem's maximum (4 MiB) of kernel memory, and a few hundred of them the host's.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        first = True
        while True:
            try:
                head = await self._read_head(first)
            except BadRequest as error:
                await self._reject(error.status, error.text)
                return
            if head is None:
                return
            first = False
            try:
                request = parse_head(head)
            except BadRequest as error:
                await self._reject(error.status, error.text)
                return
            if not await self._answer(request):
                return

    async def _handshake(self, settings: Active) -> bool:
        timeout = self.server.header_timeout
        assert settings.context is not None
        try:
            async with asyncio.timeout(timeout):
                await self.writer.start_tls(settings.context, ssl_handshake_timeout=timeout)
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as error:
            log.debug("TLS handshake with %s failed: %s", self.client, type(error).__name__)
            self.graceful = False
            return False
        if not settings.allowed_peer(self.writer.get_extra_info("peercert")):
            log.debug("client certificate of %s has none of the allowed subject alternative names", self.client)
            self.graceful = False
            return False
        return True

    async def _read_head(self, first: bool) -> bytes | None:
        """The next request head within its deadlines; None when the client closed or stayed idle."""
        server = self.server
        self.pending = self.pending.lstrip(b"\r\n")  # empty lines before a request are ignored (RFC 9112)
        started = time.monotonic()
        deadline = started + (server.header_timeout if first or self.pending else server.idle_timeout)
        while True:
            end = find_head(self.pending)
            if end > server.max_header_bytes or (end < 0 and len(self.pending) > server.max_header_bytes):
                raise BadRequest(431, "request header fields too large\n")
            if end >= 0:
                head, self.pending = self.pending[:end], self.pending[end:]
                return head
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.debug("closing a connection from %s: request not received in time", self.client)
                return None
            try:
                async with asyncio.timeout(remaining):
                    chunk = await self.reader.read(8192)
            except TimeoutError:
                log.debug("closing a connection from %s: request not received in time", self.client)
                return None
            if not chunk:
                return None
            if not self.pending:  # the first byte of a request: from now on the header deadline applies
                deadline = min(deadline, time.monotonic() + server.header_timeout)
            self.pending = (self.pending + chunk).lstrip(b"\r\n")

    async def _answer(self, request: Request) -> bool:
        """Answer one request; False when the connection is to be closed."""
        server = self.server
        if server.web is not None:
            self.settings = await server.web_settings()
        if not await server.authorized(self.settings, request.header("Authorization")):
            # Closed after the answer: an unauthenticated client holds nothing.
            await self._send(request, _text(401, "Unauthorized\n", {"WWW-Authenticate": "Basic"}), close=True)
            return False
        if request.method not in ("GET", "HEAD"):
            answer = _text(405, "method not allowed\n", {"Allow": "GET, HEAD"})
        else:
            answer = await self._route(request)
        return await self._send(request, answer, close=not request.keep_alive)

    async def _route(self, request: Request) -> Answer:
        server, path = self.server, request.path
        want_gzip = accepts_gzip(request.header("Accept-Encoding"))
        try:
            if path == "/healthz":
                return _text(200, "ok\n")
            if path == "/readyz":
                if server.ready():
                    return _text(200, "ready\n")
                return _text(503, "not ready: waiting for the first successful refresh of every collector\n")
            if path == "/metrics":
                return await server.in_worker((path, want_gzip), lambda: server.metrics_answer(want_gzip))
            if path == "/" or path in server.extra_pages:
                return await server.in_worker((path, want_gzip), lambda: server.page_answer(path, want_gzip))
            return _text(404, "not found\n")
        except RuntimeError as error:  # the worker pools are shut down: the server is stopping
            log.debug("not serving %s: %s", path, error)
            return _text(503, "shutting down\n")
        except Exception:  # a failing page answers 500; the server goes on
            log.exception("error serving %s", path)
            return _text(500, "internal error\n")

    async def _send(self, request: Request | None, answer: Answer, close: bool) -> bool:
        """Write a whole answer within the write deadline; False when the connection is to be closed."""
        status, headers, parts = answer
        headers = [*headers, ("Content-Length", str(sum(len(part) for part in parts)))]
        if self.settings is not None:
            headers += list(self.settings.config.headers)
        if close:
            headers.append(("Connection", "close"))
        head_only = request is not None and request.method == "HEAD"
        writer = self.writer
        try:
            async with asyncio.timeout(self.server.write_timeout):
                writer.write(response_head(status, headers))
                if not head_only:
                    for part in parts:
                        view = memoryview(part)
                        for start in range(0, len(view), WRITE_CHUNK):
                            writer.write(view[start:start + WRITE_CHUNK])
                            await writer.drain()
                await writer.drain()
        except TimeoutError:
            log.debug("closing a connection from %s: answer not taken within %.0f s", self.client,
                      self.server.write_timeout)
            self.graceful = False
            return False
        return not close

    async def _reject(self, status: int, text: str) -> None:
        """Answer an unusable request and close; unread request bytes are drained for a moment first,
        so that the kernel does not answer them with a reset that destroys the answer in flight."""
        if not await self._send(None, _text(status, text), close=True):
            return
        with contextlib.suppress(*_QUIET_ERRORS):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            drained = 0
            async with asyncio.timeout(LINGER_SECONDS):
                while drained < 1 << 20:
                    chunk = await self.reader.read(65536)
                    if not chunk:
                        break
                    drained += len(chunk)


def start_server(server: ExporterHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with `server.shutdown()` then `server.server_close()`."""
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread

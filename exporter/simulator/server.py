"""HTTP front of the simulated organization: routing, auth, faults, rate-limit headers, request log.

Area handlers live in sibling modules named ``*_api.py`` (``builds_api.py``, later ``git_api.py``
...). Each defines ``ROUTES: list[Route]``; the server discovers them by name, so adding an area
needs no change here. Handlers receive an :class:`ApiContext` and return an :class:`ApiResponse`
or raise :class:`ApiError`.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import importlib
import json
import logging
import pkgutil
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from exporter.simulator.model import Identity, Organization, Project, format_time, parse_ticks

log = logging.getLogger("exporter.simulator")

SIGNIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head>"
    "<body><p>Sign in to your account to continue to Azure DevOps.</p>"
    "<!-- simulated sign-in page: the request carried no valid credential --></body></html>"
)
JSON_TYPE = "application/json; charset=utf-8"
CONTROL_PREFIX = "/_simulator/"
FAULT_KINDS = (
    "status", "delay", "malformed", "truncated", "signin", "throttle", "retry_after_ok",
    "repeat_token", "reset", "trickle", "endless", "echo_headers", "redirect",
)
ENDLESS_CHUNK = b'{"id": 1, "name": "endless"}, ' * 2048  # ~60 KiB of list items, sent again and again
#: rate-limit model: 200 TSTUs per sliding 5-minute window; each request costs RATE_LIMIT_COST
RATE_LIMIT = 200
RATE_LIMIT_WINDOW = 300.0
RATE_LIMIT_COST = 0.1
MAX_BODY = 1 << 20


# --------------------------------------------------------------------------------------------
# building blocks for area modules
# --------------------------------------------------------------------------------------------


def wrapped_exception(message: str, type_key: str, type_name: str | None = None) -> dict[str, Any]:
    """The WrappedException JSON body that Azure DevOps sends with every error."""
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": type_name or f"Microsoft.VisualStudio.Services.WebApi.{type_key}, "
        "Microsoft.VisualStudio.Services.WebApi",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }


class ApiError(Exception):
    """Raise from a handler to answer an error with a WrappedException body."""

    def __init__(self, status: int, message: str, type_key: str = "VssServiceException",
                 type_name: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key
        self.type_name = type_name
        self.headers = headers or {}

    def response(self) -> ApiResponse:
        body = wrapped_exception(self.message, self.type_key, self.type_name)
        return ApiResponse(body=body, status=self.status, headers=dict(self.headers))


@dataclass
class ApiResponse:
    """What a handler answers: a JSON-able body (or raw bytes with ``content_type``)."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


def list_response(items: list[Any], token: str | None = None) -> ApiResponse:
    """``{"count": N, "value": [...]}`` with an ``x-ms-continuationtoken`` header when more."""
    headers = {"x-ms-continuationtoken": token} if token is not None else {}
    return ApiResponse(body={"count": len(items), "value": items}, headers=headers)


@dataclass
class ApiContext:
    """One request as seen by a handler."""

    org: Organization
    method: str
    path: str
    params: dict[str, str]  # keys lower-cased: Azure DevOps query names are case-insensitive
    base_url: str  # the organization URL as the client addressed it, e.g. http://127.0.0.1:1234/contoso
    now: float  # simulated now, read once per request so one answer is consistent
    api_version: str
    project: Project | None = None

    def param(self, name: str) -> str | None:
        v = self.params.get(name.lower())
        return v if v not in (None, "") else None

    def int_param(self, name: str, default: int | None = None, minimum: int = 0) -> int | None:
        v = self.param(name)
        if v is None:
            return default
        try:
            n = int(v)
        except ValueError:
            raise ApiError(400, f"The value '{v}' is not valid for {name}.", "ArgumentException") from None
        if n < minimum:
            raise ApiError(400, f"The value '{v}' is out of range for {name}.",
                           "ArgumentOutOfRangeException")
        return n

    def int_token(self, default: int) -> int:
        """The integer ``continuationToken`` (an offset or an id); ``default`` when there is none."""
        token = self.param("continuationToken")
        if token is None:
            return default
        try:
            return int(token)
        except ValueError:
            raise ApiError(400, "The continuation token is not valid.", "ArgumentException") from None

    def bool_param(self, name: str) -> bool:
        return (self.param(name) or "").lower() == "true"

    def csv_param(self, name: str) -> list[str]:
        v = self.param(name)
        return [s.strip() for s in v.split(",") if s.strip()] if v else []

    def int_csv_param(self, name: str) -> list[int]:
        try:
            return [int(s) for s in self.csv_param(name)]
        except ValueError:
            raise ApiError(400, f"The value of {name} is not a list of integers.", "ArgumentException") from None

    def time_param(self, name: str) -> int | None:
        """A date parameter as exact 100 ns ticks."""
        v = self.param(name)
        if v is None:
            return None
        try:
            return parse_ticks(v)
        except ValueError:
            raise ApiError(400, f"The value '{v}' is not a valid date for {name}.", "ArgumentException") from None


Handler = Callable[[ApiContext, "re.Match[str]"], ApiResponse]


@dataclass
class Route:
    """``pattern`` is matched (case-insensitively, whole) against the path after ``/{org}`` for
    ``scope="org"``, or after ``/{org}/{project}`` for ``scope="project"``."""

    method: str
    pattern: str
    handler: Handler
    scope: str = "project"
    preview: bool = False  # preview-only resource: api-version must carry -preview
    name: str = ""
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = re.compile(self.pattern, re.IGNORECASE)


def project_json(ctx: ApiContext, p: Project) -> dict[str, Any]:
    """TeamProjectReference."""
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "url": f"{ctx.base_url}/_apis/projects/{p.id}",
        "state": "wellFormed",
        "revision": p.revision,
        "visibility": "private",
        "lastUpdateTime": format_time(p.last_update),
    }


def identity_json(ctx: ApiContext, ident: Identity) -> dict[str, Any]:
    """IdentityRef (``uniqueName`` is null for service identities, as in Azure DevOps)."""
    avatar = f"{ctx.base_url}/_apis/GraphProfile/MemberAvatars/{ident.descriptor}"
    return {
        "displayName": ident.display_name,
        "url": "https://spsprodweu5.vssps.visualstudio.com/A00000000-0000-0000-0000-000000000000"
        f"/_apis/Identities/{ident.id}",
        "_links": {"avatar": {"href": avatar}},
        "id": ident.id,
        "uniqueName": ident.unique_name,
        "imageUrl": avatar,
        "descriptor": ident.descriptor,
    }


def _projects(ctx: ApiContext, m: re.Match[str]) -> ApiResponse:
    """GET /{org}/_apis/projects: $top/$skip, continuationToken = int offset."""
    projects = ctx.org.projects
    top = ctx.int_param("$top", 100) or 100
    skip = ctx.int_token(ctx.int_param("$skip", 0) or 0)
    page = projects[skip: skip + top]
    more = skip + top < len(projects)
    return list_response([project_json(ctx, p) for p in page], str(skip + top) if more else None)


CORE_ROUTES = [Route("GET", r"/_apis/projects/?", _projects, scope="org", name="projects")]


def discover_routes() -> list[Route]:
    """The core routes plus ``ROUTES`` of every sibling module named ``*_api``."""
    import exporter.simulator as pkg

    routes = list(CORE_ROUTES)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.endswith("_api"):
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            routes.extend(getattr(mod, "ROUTES", []))
    return routes


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """A misbehaviour injected into requests whose URL path matches ``path`` (a regex).

    ``count``: how many matching requests it hits (None = until cleared); ``probability``: chance
    that a matching request is hit (seeded, so runs are repeatable). ``location``: where a ``redirect``
    sends the client.
    """

    kind: str
    path: str = ""
    count: int | None = None
    probability: float = 1.0
    status: int = 500
    delay: float = 0.0
    retry_after: float | None = None
    location: str = ""
    hits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {self.kind!r}")
        re.compile(self.path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fault:
        names = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**d)


class FaultSet:
    """The active faults; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(0)

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def replace(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._faults = list(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def match(self, path: str) -> Fault | None:
        """The first fault that hits this request (consumes one of its ``count``)."""
        with self._lock:
            for f in self._faults:
                if f.count is not None and f.hits >= f.count:
                    continue
                if not re.search(f.path, path):
                    continue
                if f.probability < 1.0 and self._rng.random() >= f.probability:
                    continue
                f.hits += 1
                return f
        return None


# --------------------------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received (credentials redacted)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: SimulatorServer


class SimulatorServer:
    """Serves an :class:`Organization` over HTTP on a background thread."""

    def __init__(
        self,
        org: Organization,
        host: str = "127.0.0.1",
        port: int = 0,
        pat: str = "sim-pat",
        bearer_tokens: set[str] | None = None,
        rate_limit_headers: bool = True,
    ) -> None:
        self.org = org
        self.host = host
        self.port = port
        self.pat = pat
        self.bearer_tokens = set(bearer_tokens or ())
        self.rate_limit_headers = rate_limit_headers
        self.faults = FaultSet()
        self.routes = discover_routes()
        #: when > 0, every answer carries `X-RateLimit-Delay` with this many seconds
        self.rate_limit_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque()
        self._window_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SimulatorServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"simulator:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and every open connection, join the threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a delay fault
        httpd.shutdown()
        httpd.server_close()
        with self._conns_lock:
            conns, threads = list(self._conns), list(self._handler_threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The organization URL to give the exporter."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/{self.org.name}"

    # ---------------------------------------------------------------- request log

    def record(self, req: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(req)

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    # ---------------------------------------------------------------- rate limit

    def rate_limit_values(self, blocked: bool = False) -> dict[str, str]:
        """X-RateLimit-* headers; each request uses RATE_LIMIT_COST of a sliding 5-min window."""
        now = time.monotonic()
        with self._window_lock:
            self._window.append(now)
            while self._window and self._window[0] < now - RATE_LIMIT_WINDOW:
                self._window.popleft()
            used = len(self._window) * RATE_LIMIT_COST
        remaining = 0 if blocked else max(0, int(RATE_LIMIT - used))
        values = {
            "X-RateLimit-Resource": "ATCPU",
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(time.time() + RATE_LIMIT_WINDOW)),
        }
        if self.rate_limit_delay > 0:  # Azure DevOps reports how long it delayed this request
            values["X-RateLimit-Delay"] = f"{self.rate_limit_delay:.3f}"
        return values

    # ---------------------------------------------------------------- auth

    def authorized(self, header: str | None) -> bool:
        """Basic with any user name and the PAT as password, or Bearer with a known token."""
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return False
            _, sep, password = decoded.partition(":")
            return bool(sep) and hmac.compare_digest(password.encode(), self.pat.encode())
        if scheme.lower() == "bearer":
            return any(hmac.compare_digest(value.encode(), t.encode()) for t in self.bearer_tokens)
        return False


# --------------------------------------------------------------------------------------------
# request handling
# --------------------------------------------------------------------------------------------


def _redact(headers: dict[str, str]) -> dict[str, str]:
    out = dict(headers)
    for k in list(out):
        if k.lower() in ("authorization", "cookie", "proxy-authorization"):
            scheme = out[k].split(" ", 1)[0] if " " in out[k] else ""
            out[k] = f"{scheme} [redacted]".strip()
    return out


class _Handler(BaseHTTPRequestHandler):
    _pending_record: tuple[str, str, dict[str, str], dict[str, str]] | None = None
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def version_string(self) -> str:
        return "Simulated-AzureDevOps"

    # ---------------------------------------------------------------- plumbing

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        sim = self.server.sim
        with sim._conns_lock:
            sim._conns.add(self.connection)
            sim._handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        sim = self.server.sim
        with sim._conns_lock:
            sim._conns.discard(self.connection)
            sim._handler_threads.discard(threading.current_thread())
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests (bad request line, headers) get a JSON error, not HTML."""
        body = json.dumps(wrapped_exception(message or HTTPStatus(code).phrase, "BadRequestException")).encode()
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a status line even for garbage request lines
        try:
            self.send_response(code)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    def _record_pending(self, status: int) -> None:
        # Record before answering, so a client that has its answer always finds its request logged.
        pending = self._pending_record
        if pending is not None:
            self._pending_record = None
            method, path, params, headers_seen = pending
            self.server.sim.record(RecordedRequest(method, path, params, headers_seen, status))

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str],
              reason: str | None = None) -> None:
        self._record_pending(status)
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle()

    def do_PUT(self) -> None:  # noqa: N802
        self._handle()

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle()

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle()

    # ---------------------------------------------------------------- dispatch

    def _handle(self) -> None:
        sim = self.server.sim
        split = urlsplit(self.path)
        path = unquote(split.path)
        raw_params = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k: v for k, v in self.headers.items()}
        body = b""
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                self.send_error(400, "Bad Content-Length")
                return
            body = self.rfile.read(n)
        status = 500
        self._pending_record = (self.command, path, raw_params, _redact(headers))
        try:
            if path.startswith(CONTROL_PREFIX):
                status = self._control(path, body)
                return
            status = self._api(path, raw_params, headers)
        except ConnectionError:
            status = 0
        except Exception:  # a bug in a handler must not kill the thread or the connection
            log.exception("simulator: error handling %s %s", self.command, path)
            resp = ApiError(500, "Internal error in the simulated organization.").response()
            status = 500
            try:
                self._send(500, resp.encode(), JSON_TYPE, {})
            except OSError:
                status = 0
        finally:
            if self._pending_record is not None:  # no answer was sent (a reset connection)
                self._pending_record = None
                sim.record(RecordedRequest(self.command, path, raw_params, _redact(headers), status))

    def _control(self, path: str, body: bytes) -> int:
        """POST/DELETE /_simulator/faults (unauthenticated, for out-of-process tests)."""
        sim = self.server.sim
        if path.rstrip("/") == "/_simulator/faults":
            if self.command == "DELETE":
                sim.faults.clear()
                self._send(200, b'{"faults":0}', JSON_TYPE, {})
                return 200
            if self.command == "POST":
                try:
                    data = json.loads(body or b"[]")
                    if isinstance(data, dict):
                        data = [data]
                    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
                        raise ValueError("expected a JSON list of fault objects")
                    faults = [Fault.from_dict(d) for d in data]
                except (ValueError, TypeError, re.error) as e:
                    err = ApiError(400, f"Bad fault list: {e}", "ArgumentException").response()
                    self._send(400, err.encode(), JSON_TYPE, {})
                    return 400
                sim.faults.replace(faults)
                self._send(200, json.dumps({"faults": len(faults)}).encode(), JSON_TYPE, {})
                return 200
            if self.command == "GET":
                listed = [{f.name: getattr(x, f.name) for f in fields(x)} for x in sim.faults.list()]
                self._send(200, json.dumps(listed).encode(), JSON_TYPE, {})
                return 200
        if path.rstrip("/") in ("/_simulator/projects", "/_simulator/clock") and self.command == "POST":
            try:
                data = json.loads(body or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                if path.rstrip("/") == "/_simulator/projects":
                    answer = _control_projects(sim.org, data)
                else:
                    answer = _control_clock(sim.org, data)
            except (ValueError, TypeError, KeyError) as e:
                err = ApiError(400, f"Bad control request: {e}", "ArgumentException").response()
                self._send(400, err.encode(), JSON_TYPE, {})
                return 400
            self._send(200, json.dumps(answer).encode(), JSON_TYPE, {})
            return 200
        err = ApiError(404, f"No simulator control endpoint {path}.", "NotFoundException").response()
        self._send(404, err.encode(), JSON_TYPE, {})
        return 404

    def _api(self, path: str, raw_params: dict[str, str], headers: dict[str, str]) -> int:
        sim = self.server.sim
        fault = sim.faults.match(path)
        extra: dict[str, str] = {}
        if fault is not None:
            if fault.kind == "reset":
                # close without answering: the client sees a dropped connection
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return 0
            if fault.kind == "delay":
                if sim._stopping.wait(fault.delay):
                    raise ConnectionError("server stopping")
            elif fault.kind in ("status", "malformed", "signin", "throttle"):
                return self._fault_answer(fault)
            elif fault.kind in ("endless", "echo_headers", "redirect"):
                return self._hostile_answer(fault, headers)
        resp = self._dispatch(path, raw_params, headers, repeat=fault is not None and fault.kind == "repeat_token")
        if sim.rate_limit_headers:
            extra.update(sim.rate_limit_values())
        data = resp.encode()
        if fault is not None:
            if fault.kind == "trickle":
                return self._trickle(resp, data, {**resp.headers, **extra}, fault.delay)
            if fault.kind == "truncated":
                data = data[: len(data) // 2]
            elif fault.kind == "retry_after_ok":
                extra["Retry-After"] = _seconds(fault.retry_after if fault.retry_after is not None else 1)
                extra["X-RateLimit-Delay"] = "0.250"
        self._send(resp.status, data, resp.content_type, {**resp.headers, **extra})
        return resp.status

    def _fault_answer(self, fault: Fault) -> int:
        sim = self.server.sim
        headers = sim.rate_limit_values(blocked=fault.kind == "throttle") if sim.rate_limit_headers else {}
        if fault.kind == "status":
            reason = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else ""
            body = wrapped_exception(f"Simulated failure: HTTP {fault.status} {reason}".strip(),
                                     "VssServiceException")
            if fault.retry_after is not None:
                headers["Retry-After"] = _seconds(fault.retry_after)
            self._send(fault.status, json.dumps(body).encode(), JSON_TYPE, headers)
            return fault.status
        if fault.kind == "malformed":
            self._send(200, b'{"count": 2, "value": [{"id": 1,, <html>not json', JSON_TYPE, headers)
            return 200
        if fault.kind == "signin":
            self._send(203, SIGNIN_PAGE.encode(), "text/html; charset=utf-8", headers)
            return 203
        # throttle
        retry = fault.retry_after if fault.retry_after is not None else 30
        headers.update({"Retry-After": _seconds(retry), "X-RateLimit-Delay": "0.000"})
        headers.setdefault("X-RateLimit-Resource", "ATCPU")
        headers.setdefault("X-RateLimit-Limit", str(RATE_LIMIT))
        headers["X-RateLimit-Remaining"] = "0"
        headers.setdefault("X-RateLimit-Reset", str(int(time.time() + RATE_LIMIT_WINDOW)))
        body = wrapped_exception(
            "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
            "resource 'ATCPU' in namespace 'User'.",
            "RequestBlockedException",
            "Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, "
            "Microsoft.TeamFoundation.Framework.Server",
        )
        self._send(429, json.dumps(body).encode(), JSON_TYPE, headers)
        return 429

    # ---------------------------------------------------------------- hostile upstream faults

    def _trickle(self, resp: ApiResponse, data: bytes, headers: dict[str, str], delay: float) -> int:
        """The real answer, status line and headers included, one byte every `delay` seconds."""
        self._record_pending(resp.status)
        head = [f"HTTP/1.1 {resp.status} {HTTPStatus(resp.status).phrase}", f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]
        answer = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
        self.close_connection = True
        for i in range(len(answer)):
            if self.server.sim._stopping.wait(delay):
                raise ConnectionError("server stopping")
            self.wfile.write(answer[i:i + 1])
            self.wfile.flush()
        return resp.status

    def _hostile_answer(self, fault: Fault, headers: dict[str, str]) -> int:
        sim = self.server.sim
        if fault.kind == "redirect":
            status = fault.status if 300 <= fault.status < 400 else 302
            self._send(status, b"", JSON_TYPE, {"Location": fault.location or "http://127.0.0.1:9/"})
            return status
        if fault.kind == "echo_headers":
            # A careless upstream (or a proxy in front of it) that repeats the request, credentials and all,
            # in the status line, the message and the body.
            seen = "; ".join(f"{k}: {v}" for k, v in headers.items())
            reason = f"Refused: Authorization: {headers.get('Authorization', '')}"
            if fault.status == 203:
                page = SIGNIN_PAGE.replace("</body>", f"<pre>{seen}</pre></body>")
                self._send(203, page.encode(), "text/html; charset=utf-8", {}, reason=reason)
                return 203
            body = wrapped_exception(f"Simulated failure: HTTP {fault.status}; the request was: {seen}",
                                     "VssServiceException")
            self._send(fault.status, json.dumps(body).encode(), JSON_TYPE, {"X-Echo": seen}, reason=reason)
            return fault.status
        # endless: a 200 list answer whose body never ends (chunked), one chunk every `delay` seconds
        self._record_pending(200)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = b'{"count": 1000000000, "value": ['
        self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        while not sim._stopping.wait(fault.delay):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ENDLESS_CHUNK), ENDLESS_CHUNK))
        raise ConnectionError("server stopping")

    def _dispatch(self, path: str, raw_params: dict[str, str], headers: dict[str, str],
                  repeat: bool = False) -> ApiResponse:
        """Auth, routing, api-version, project lookup, handler."""
        sim = self.server.sim
        org = sim.org
        if not sim.authorized(self.headers.get("Authorization")):
            if (self.headers.get("X-TFS-FedAuthRedirect") or "").lower() == "suppress":
                return ApiError(
                    401, "TF400813: The user '' is not authorized to access this resource.",
                    "UnauthorizedRequestException",
                    "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
                    "Microsoft.TeamFoundation.Framework.Server",
                    headers={"WWW-Authenticate": 'Basic realm="https://simulated.dev.azure.com/"'},
                ).response()
            return ApiResponse(body=SIGNIN_PAGE, status=203, content_type="text/html; charset=utf-8")
        try:
            return self._route(org, path, raw_params, repeat)
        except ApiError as e:
            return e.response()

    def _route(self, org: Organization, path: str, raw_params: dict[str, str], repeat: bool) -> ApiResponse:
        sim = self.server.sim
        segments = path.split("/")
        if len(segments) < 3 or segments[1].lower() != org.name.lower():
            raise ApiError(404, f"The resource {path} does not exist.", "NotFoundException")
        method = "GET" if self.command == "HEAD" else self.command
        rest = "/" + "/".join(segments[2:])
        route, match, project_key = None, None, None
        for r in sim.routes:
            if r.scope == "org":
                m = r.regex.fullmatch(rest)
            elif len(segments) >= 4:
                m = r.regex.fullmatch("/" + "/".join(segments[3:]))
            else:
                m = None
            if m is not None:
                if r.method != method:
                    raise ApiError(405, f"The requested resource does not support http method '{self.command}'.",
                                   "HttpMethodNotAllowedException")
                route, match = r, m
                project_key = segments[2] if r.scope == "project" else None
                break
        if route is None or match is None:
            raise ApiError(404, f"The resource {path} does not exist.", "NotFoundException")
        params = {k.lower(): v for k, v in raw_params.items()}
        version = params.get("api-version") or _accept_version(self.headers.get("Accept", ""))
        if not version:
            raise ApiError(
                400, f"No api-version was supplied for the \"{method}\" request. The version must be "
                "supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") "
                "or as a query parameter (e.g. '?api-version=1.0').",
                "VssVersionNotSpecifiedException",
            )
        if route.preview and "-preview" not in version.lower():
            raise ApiError(
                400, f"The requested version \"{version}\" of the resource is under preview. The -preview "
                "flag must be supplied in the api-version for such requests. For example: "
                f"\"{version.split('-')[0]}-preview\"",
                "VssInvalidPreviewVersionException",
                "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, "
                "Microsoft.VisualStudio.Services.WebApi",
            )
        if repeat:
            params.pop("continuationtoken", None)  # always the first page ...
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        ctx = ApiContext(org=org, method=method, path=path, params=params,
                         base_url=f"http://{host}/{org.name}", now=org.now(), api_version=version)
        if project_key is not None:
            ctx.project = org.project(project_key)
            if ctx.project is None:
                raise ApiError(
                    404, f"TF200016: The following project does not exist: {project_key}. Verify that the "
                    "name of the project is correct and that the project exists on the specified "
                    "Azure DevOps Server.",
                    "ProjectDoesNotExistWithNameException",
                    "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
                    "Microsoft.TeamFoundation.Core.WebApi",
                )
        resp = route.handler(ctx, match)
        if repeat:
            # ... announcing the same continuation token, forever
            token = resp.headers.get("x-ms-continuationtoken") or raw_params.get("continuationToken") or "1"
            resp.headers["x-ms-continuationtoken"] = token
        return resp


def _control_projects(org: Organization, data: dict[str, Any]) -> dict[str, Any]:
    """``{"add": [names], "remove": [names]}``: an added project gets one pipeline (``ci``, tracked
    ``main``) with one succeeded run; removing deletes the project with everything in it."""
    add, remove = data.get("add", []), data.get("remove", [])
    if not isinstance(add, list) or not isinstance(remove, list) or \
            not all(isinstance(n, str) and n for n in [*add, *remove]):
        raise ValueError("'add' and 'remove' must be lists of project names")
    with org.lock:
        for name in remove:
            if org.project(name) is not None:
                org.remove_project(name)
        for name in add:
            if org.project(name) is None:
                org.add_project(name)
                pipeline = org.add_pipeline(name, "ci", repository=name)
                now = org.now()
                org.add_run(name, pipeline.id, result="succeeded", queue_time=now - 300, start_time=now - 240,
                            finish_time=now - 60)
        return {"projects": [p.name for p in org.projects]}


def _control_clock(org: Organization, data: dict[str, Any]) -> dict[str, Any]:
    """``{"advance": seconds}`` makes simulated time leap forward; ``{"speed": x}`` changes the speed
    from now on. Simulated time never jumps back."""
    advance = float(data.get("advance", 0.0))
    speed = float(data.get("speed", org.speed))
    if advance < 0 or speed <= 0:
        raise ValueError("'advance' must be >= 0 and 'speed' > 0")
    with org.lock:
        target = org.now() + advance
        # now() = anchor + (clock - clock0) * speed: move clock0 so that now() == target at this speed
        org.speed = speed
        org._clock0 = org._now_fn() - (target - org.anchor) / speed
        return {"now": org.now(), "speed": org.speed}


def _accept_version(accept: str) -> str | None:
    m = re.search(r"api-version=([\w.\-]+)", accept)
    return m.group(1) if m else None


def _seconds(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


# --------------------------------------------------------------------------------------------
# stand-alone
# --------------------------------------------------------------------------------------------


def serve_forever(listen: str, seed: int, scale: str, speed: float, pat: str = "sim-pat") -> None:
    """Serve a generated organization until SIGTERM/SIGINT (``azdo-exporter simulate``)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, not {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    org = Organization.generate(seed=seed, scale=scale, speed=speed)
    server = SimulatorServer(org, host=host, port=int(port), pat=pat)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    try:
        print(
            f"Simulated Azure DevOps organization (simulated data, seed {seed}, scale {scale}, "
            f"speed {speed:g}x) at {server.base_url} - PAT: {pat}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for s, h in previous.items():
            signal.signal(s, h)

"""A requests session whose every request has a total deadline: connect, headers and whole body.

`requests`' timeout bounds each socket operation, so an answer that arrives a byte at a time never
times out. Here each request runs under a `Watch`: the connection it uses registers itself with the
watch (through connection classes installed in the session's pools), and one watchdog thread shuts the
connection's socket down when the deadline passes. The blocked read then fails at once, wherever it
is: TLS handshake, status line, headers or body. The caller checks `Watch.expired` to tell that
apart from a connection the server dropped.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # the Watch of the request this thread is sending, if any
IDLE_EXIT = 30.0  # the watchdog thread ends after this long without requests (and starts again on the next)


class Watch:
    """The deadline of one request and the connection it is using."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            expired = self.expired
        if expired:  # the deadline passed before the connection was known
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            connection = self._connection
        if connection is not None:
            _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket call, also for a TLS socket: it wakes the reading thread without touching the
        # TLS object that thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _attach_current(connection: HTTPConnection) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _attach_current(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same watch over TLS: the MRO puts HTTPSConnection's connect() behind _WatchedHTTPConnection's."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools (direct and through a proxy) use the watched connection classes."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


class Watchdog:
    """One daemon thread that expires watches whose deadline has passed (started on first use, gone when
    idle, so a client nobody closed leaves no thread behind for long)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def watching(self, seconds: float) -> Iterator[Watch]:
        """Run the body as one request with a deadline `seconds` from now."""
        watch = Watch(self._monotonic() + seconds)
        with self._wake:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._heap[0][2] is watch:  # the earliest deadline now: the thread must wake for it
                self._wake.notify()
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            with self._wake:  # done: leave it in the heap, marked, so the thread skips it cheaply
                watch.deadline = -1.0

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                while self._heap and self._heap[0][2].deadline < 0:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait(IDLE_EXIT)
                    if not self._heap:
                        self._thread = None  # the next request starts a new one
                        return
                    continue
                deadline, _, watch = self._heap[0]
                wait = deadline - self._monotonic()
                if wait > 0:
                    self._wake.wait(min(wait, 60.0))
                    continue
                heapq.heappop(self._heap)
                if watch.deadline >= 0:
                    watch.expire()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=2)


def watched_session() -> requests.Session:
    """A session whose requests honour `Watchdog.watching` deadlines."""
    session = requests.Session()
    adapter = WatchedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

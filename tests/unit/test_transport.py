"""The request watchdog: a deadline shuts the connection's socket down; the thread ends when idle."""

from __future__ import annotations

import socket
import threading

import pytest

from exporter.azdo import transport
from exporter.azdo.transport import Watchdog
from tests.support import wait_until


class FakeConnection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def alive(watchdog: Watchdog) -> bool:
    thread: threading.Thread | None = watchdog._thread
    return thread is not None and thread.is_alive()


def test_a_blocked_read_is_woken_at_the_deadline_and_a_request_in_time_is_left_alone() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    thread: threading.Thread | None = None
    try:
        with watchdog.watching(5.0) as in_time:
            in_time.attach(FakeConnection(ours))  # type: ignore[arg-type]
        assert not in_time.expired
        with watchdog.watching(0.2) as watch:
            watch.attach(FakeConnection(ours))  # type: ignore[arg-type]
            ours.settimeout(10)
            assert ours.recv(1) == b""  # the peer sent nothing: only the shutdown ends this read
        assert watch.expired
        thread = watchdog._thread
    finally:
        watchdog.close()
        ours.close()
        theirs.close()
    assert thread is not None and not thread.is_alive()


def test_the_watchdog_thread_ends_when_idle_and_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "IDLE_EXIT", 0.05)
    watchdog = Watchdog()
    try:
        # A short deadline: a finished request leaves its entry until that deadline (the thread is not woken
        # for it), so the thread goes idle at most then, plus IDLE_EXIT.
        with watchdog.watching(0.3):
            first = watchdog._thread
            assert alive(watchdog)
        wait_until(lambda: not alive(watchdog), 5, "the idle watchdog thread to end", interval=0.01)
        assert watchdog._thread is None and first is not None and not first.is_alive()
        with watchdog.watching(5.0) as watch:
            assert alive(watchdog) and watchdog._thread is not first
        assert not watch.expired
    finally:
        watchdog.close()

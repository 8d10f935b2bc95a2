"""What the tests share besides fixtures: fixed times, free ports, waits and runs of the command line.

Fixtures stay in tests/conftest.py; this module is plain functions, importable from any test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]

T0 = 1795694400.0  # 2026-11-20T12:00:00Z: where the injected clock starts, and the golden file's clock
H = 3600.0  # an hour, in seconds
DAY = 86400.0

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *, interval: float = 0.1,
               details: Callable[[], str] | None = None) -> T:
    """Call `predicate` until it returns something truthy, and return that; fail the test after `timeout` s.

    OSError (not listening yet, connection refused; requests' errors are OSErrors) and ValueError (a
    partial answer) count as "not yet". `details` adds context to the failure, e.g. a process's log.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = predicate()
            if last:
                return last  # type: ignore[return-value]  # truthy, so the T the caller waits for
        except (OSError, ValueError) as error:
            last = error
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {last!r}){extra}")
        time.sleep(interval)


def wait_http(url: str, timeout: float = 60.0, *, status: int = 200,
              process: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None,
              details: Callable[[], str] | None = None) -> requests.Response:
    """GET `url` until it answers `status`; stop early (and fail) if `process` exits meanwhile."""

    answers: list[requests.Response] = []  # not the Response itself: one with an error status is falsy

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            extra = f"\n{details()}" if details else ""
            pytest.fail(f"{process.args!r} exited with {process.returncode} before {url} answered {status}{extra}")
        answers.append(requests.get(url, timeout=2))
        return answers[-1].status_code == status

    wait_until(answered, timeout, f"{url} to answer {status}", interval=0.2, details=details)
    return answers[-1]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without AZDO_* (so a developer's settings never leak in), plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AZDO_")}
    env.update(extra or {})
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", *args]


def run_cli(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGS` to completion, with a clean environment; output captured as text."""
    return subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout, env=cli_env(env),
                          cwd=ROOT)


@contextmanager
def cli_process(*args: str, env: Mapping[str, str] | None = None,
                output: int | None = subprocess.PIPE) -> Iterator[subprocess.Popen[str]]:
    """`python -m exporter ARGS` running for the block; SIGTERM (then SIGKILL) on the way out if still alive.

    `output` is where stdout and stderr go: PIPE (read them with communicate() after the block) or DEVNULL.
    """
    process = subprocess.Popen(cli_argv(*args), cwd=ROOT, env=cli_env(env), stdout=output, stderr=output,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

"""Process plumbing shared by the benchmark (`bench/run.py`) and the fault soak (`bench/soak.py`).

Everything binds to 127.0.0.1 and every process started here is stopped by the caller (`Proc.stop`,
or the `processes` context manager). Request loops elsewhere are bounded in count and time; the
helpers here only ever wait with deadlines.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.metrics import catalogue as m

ROOT = Path(__file__).resolve().parent.parent
PAT = "bench-pat-not-a-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A child process with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- /proc figures --------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process (threads included)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def _status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024.0
        return 0.0

    def rss_bytes(self) -> float:
        return self._status("VmRSS")

    def peak_rss_bytes(self) -> float:
        return self._status("VmHWM")


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def start_simulator(log_dir: Path, *, scale: str, speed: float = 1.0, seed: int = 1,
                    timeout: float = 120.0) -> Proc:
    """`azdo-exporter simulate` on a free loopback port; waits until it prints its URL."""
    port = free_port()
    log_path = log_dir / f"simulator-{port}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - owned by the child's lifetime
    popen = subprocess.Popen(
        [_python(), "-m", "exporter", "simulate", "--listen", f"127.0.0.1:{port}", "--scale", scale,
         "--speed", repr(speed), "--seed", str(seed), "--pat", PAT],
        stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    proc = Proc("simulator", popen, log_path, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = re.search(r" at (http://\S+) - PAT", text)
        if found:
            proc.extra["url"] = found.group(1)
            return proc
        if not proc.alive():
            break
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"simulator did not start:\n{proc.log_tail()}")


def start_exporter(log_dir: Path, org_url: str, env: Mapping[str, str] | None = None,
                   args: list[str] | None = None) -> Proc:
    """The exporter as a subprocess on a free loopback port (real HTTP both ways)."""
    port = free_port()
    log_path = log_dir / f"exporter-{port}.log"
    handle = open(log_path, "wb")  # noqa: SIM115
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AZDO_")}
    child_env.update({"AZDO_ORG_URL": org_url, "AZDO_PAT": PAT, "PYTHONUNBUFFERED": "1"})
    child_env.update(env or {})
    popen = subprocess.Popen([_python(), "-m", "exporter", "--listen", f"127.0.0.1:{port}", *(args or [])],
                             stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env)
    return Proc("exporter", popen, log_path, port)


def run_once(org_url: str, env: Mapping[str, str] | None = None, timeout: float = 600.0) -> tuple[int, str, str]:
    """`azdo-exporter --once` against `org_url`: (exit code, exposition, stderr)."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AZDO_")}
    child_env.update({"AZDO_ORG_URL": org_url, "AZDO_PAT": PAT})
    child_env.update(env or {})
    done = subprocess.run([_python(), "-m", "exporter", "--once"], capture_output=True, cwd=ROOT, env=child_env,
                          timeout=timeout)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """Collects started processes and stops every one of them on the way out."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


# -- HTTP ------------------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 30.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes,
                                                                                                  dict[str, str]]:
    """GET with a deadline: (status, body, headers); body is gunzipped when the answer is gzip."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback only
            body, status, got = answer.read(), answer.status, dict(answer.headers.items())
    except urllib.error.HTTPError as error:
        body, status, got = error.read(), error.code, dict(error.headers.items())
    if got.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return status, body, got


def http_post_json(url: str, payload: Any, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - loopback only
        return json.loads(answer.read())


def wait_ready(proc: Proc, timeout: float) -> float:
    """Poll /readyz until 200; returns the wall seconds waited. Raises on timeout or death."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"exporter exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            status, _, _ = http_get(f"http://127.0.0.1:{proc.port}/readyz", timeout=5)
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"exporter not ready within {timeout:.0f}s:\n{proc.log_tail()}")


_SELF_METRICS = tuple(name.encode() for name in m.SELF_METRICS)


def self_metrics(port: int, timeout: float = 30.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exporter's own samples (azdo_exporter_*) from one gzip scrape, without parsing the rest."""
    _, body, _ = http_get(f"http://127.0.0.1:{port}/metrics", timeout=timeout, headers={"Accept-Encoding": "gzip"})
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in body.split(b"\n"):
        if line.startswith(_SELF_METRICS):
            name, labels, value = parse_sample_line(line.decode())
            out[(name, labels)] = value
    return out


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_sample_line(line: str) -> tuple[str, tuple[tuple[str, str], ...], float]:
    if "{" in line:
        name, rest = line.split("{", 1)
        labels_text, value = rest.rsplit("}", 1)
        labels = tuple(sorted(_LABEL.findall(labels_text)))
    else:
        name, value = line.split(" ", 1)
        labels = ()
    return name, labels, float(value.split()[0])


def total(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, val) in labels for k, val in match.items()))

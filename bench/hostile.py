"""The soak's hostile phase: the exporter (a subprocess, real HTTP) against the simulator while about a
thousand hostile connections are held open against it, a third each of

- slow readers: pipeline 30 `GET /metrics` with a tiny receive window and never read;
- slowloris: send a request line, then a header line every second, never the blank line that ends them;
- idle keep-alives: one `GET /healthz`, then nothing.

The exporter cuts them off at its deadlines (whole answer 30 s, request head 10 s, idle 60 s); like a
real attacker the phase reconnects them, so the number held stays near the target. Meanwhile a
well-behaved client asks for `/healthz` every 0.1 s and `/metrics` every second. Checked: every
`/healthz` within 1 s, every `/metrics` complete (its Content-Length, a final newline, every area
there), the exporter's RSS under 1.5 times its idle value and its thread count at most a few above idle.

`python -m bench.soak --phase hostile` runs it alone; `make soak` runs it after the fault soak.
Everything on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Proc, http_get, processes, start_exporter, start_simulator, wait_ready
from exporter.metrics import catalogue as m

SLOW_READER = b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n" * 30
HEALTH_DEADLINE = 1.0
METRICS_DEADLINE = 30.0
SLOW_READER_LIFETIME = 35.0  # the exporter's whole-answer deadline is 30 s: then reconnect
# Each area's family names (from the catalogue): a complete /metrics names at least one of every area.
AREA_FAMILIES: dict[str, list[bytes]] = {}
for _family in m.ALL:
    if _family.area not in (m.AREA_EXPORTER, m.AREA_DIGEST):
        AREA_FAMILIES.setdefault(_family.area, []).append(_family.name.encode())


@dataclass
class HostileReport:
    duration: float = 0.0
    target: int = 0
    held: list[int] = field(default_factory=list)  # exporter-side established connections, per second
    opened: int = 0  # hostile connections opened in all (reconnects included)
    healthz: list[float] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    idle_rss_mib: float = 0.0
    rss_mib: list[float] = field(default_factory=list)
    idle_threads: int = 0
    threads: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # "when:how long" of /healthz answers over 250 ms
    bursts: list[str] = field(default_factory=list)  # "when:how many" reconnects of the crowd

    def lines(self) -> list[str]:
        held, health = self.held or [0], sorted(self.healthz) or [0.0]
        p99 = health[min(len(health) - 1, int(len(health) * 0.99))]
        return [
            f"hostile phase ran {self.duration:.0f} s against a target of {self.target} hostile connections "
            f"({self.opened} opened in all, reconnects included)",
            f"  connections held (exporter side, sampled each second): min {min(held)}, "
            f"median {statistics.median(held):.0f}, max {max(held)}",
            f"  good client /healthz: {len(self.healthz)} answers, p50 {statistics.median(health) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {max(health) * 1000:.1f} ms",
            f"  good client /metrics: {len(self.metrics)} complete answers, max {max(self.metrics or [0]):.2f} s",
            f"  exporter RSS MiB: idle {self.idle_rss_mib:.0f}, max {max(self.rss_mib or [0]):.0f}, "
            f"median {statistics.median(self.rss_mib or [0]):.0f}",
            f"  exporter threads: idle {self.idle_threads}, max {max(self.threads or [0])}",
            f"  /healthz over 250 ms (s into the phase: seconds): {', '.join(self.slow[:30]) or 'none'}",
            f"  reconnect bursts over 50 (s into the phase: count): {', '.join(self.bursts[:40]) or 'none'}",
            "  checks: " + ("ALL PASSED" if not self.failures else f"{len(self.failures)} FAILED"),
            *[f"    FAILED: {f}" for f in self.failures[:20]],
        ]


def _threads(proc: Proc) -> int:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def _established(port: int) -> int:
    """Established TCP connections whose local port is `port` (the exporter's side of them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


class _Crowd:
    """The hostile connections, kept near `target` from one thread."""

    def __init__(self, port: int, target: int, report: HostileReport) -> None:
        self.port, self.target, self.report = port, target, report
        self.readers: list[tuple[socket.socket, float]] = []
        self.loris: list[socket.socket] = []
        self.idle: list[socket.socket] = []
        self.stop = threading.Event()
        self.began: float | None = None  # when the measured phase began
        self.thread = threading.Thread(target=self._run, name="hostile-crowd", daemon=True)

    def _connect(self, rcvbuf: int | None = None) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(2.0)
        try:
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return None
        self.report.opened += 1
        return sock

    def _fill(self) -> None:
        before = self.report.opened
        self._open_missing()
        if self.report.opened - before > 50 and self.began is not None:
            self.report.bursts.append(f"{time.monotonic() - self.began:.0f}s:{self.report.opened - before}")

    def _open_missing(self) -> None:
        third = self.target // 3
        now = time.monotonic()
        fresh = []
        for reader, opened in self.readers:
            if now - opened > SLOW_READER_LIFETIME:
                reader.close()
            else:
                fresh.append((reader, opened))
        self.readers = fresh
        while len(self.readers) < third and not self.stop.is_set():
            sock = self._connect(rcvbuf=4096)
            if sock is None:
                break
            with contextlib.suppress(OSError):
                sock.sendall(SLOW_READER)
            self.readers.append((sock, time.monotonic()))
        while len(self.loris) < third and not self.stop.is_set():
            sock = self._connect()
            if sock is None:
                break
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n")
            self.loris.append(sock)
        while len(self.idle) < self.target - 2 * third and not self.stop.is_set():
            sock = self._connect()
            if sock is None:
                break
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: soak\r\n\r\n")
                sock.recv(65536)
            except OSError:
                sock.close()
                continue
            self.idle.append(sock)

    def _trickle(self) -> None:
        alive = []
        for sock in self.loris:
            try:
                sock.send(b"X-Slow: y\r\n")
                alive.append(sock)
            except OSError:  # cut off by the exporter: reconnect
                sock.close()
        self.loris = alive
        alive = []
        for sock in self.idle:
            sock.setblocking(False)
            try:
                closed = sock.recv(1) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                sock.close()
            else:
                sock.setblocking(True)
                alive.append(sock)
        self.idle = alive

    def _run(self) -> None:
        while not self.stop.is_set():
            self._fill()
            if self.stop.wait(1.0):
                break
            self._trickle()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for sock in [s for s, _ in self.readers] + self.loris + self.idle:
            sock.close()


def run_hostile(duration: float = 120.0, *, connections: int = 1000, scale: str = "medium",
                log: Callable[[str], None] = print) -> HostileReport:
    """Hold `connections` hostile connections for `duration` seconds; the report lists failed checks."""
    report = HostileReport(target=connections)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < connections + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 512), hard))
    log_dir = Path(tempfile.mkdtemp(prefix="azdo-hostile-"))
    env = {"AZDO_LOG_LEVEL": "WARNING"}
    with processes() as started:
        sim = start_simulator(log_dir, scale=scale, speed=30.0)
        started.append(sim)
        exporter = start_exporter(log_dir, sim.extra["url"], env)
        started.append(exporter)
        wait_ready(exporter, timeout=300)
        base = f"http://127.0.0.1:{exporter.port}"
        for _ in range(3):  # warm: the exposition rendered, the workers started
            http_get(f"{base}/metrics", timeout=METRICS_DEADLINE)
        rss, threads = [], []
        for _ in range(5):
            time.sleep(1.0)
            rss.append(exporter.rss_bytes() / 2**20)
            threads.append(_threads(exporter))
        report.idle_rss_mib, report.idle_threads = statistics.median(rss), max(threads)
        log(f"hostile: exporter idle at {report.idle_rss_mib:.0f} MiB, {report.idle_threads} threads; "
            f"opening {connections} hostile connections; logs in {log_dir}")
        crowd = _Crowd(exporter.port, connections, report)
        crowd.thread.start()
        if not _wait_held(exporter.port, int(connections * 0.9), 60):
            report.failures.append(f"could not open {connections} connections within 60 s "
                                   f"(held {_established(exporter.port)})")
        began = time.monotonic()
        crowd.began = began
        next_metrics = began
        while time.monotonic() < began + duration and exporter.alive():
            now = time.monotonic()
            if int(now - began) >= len(report.held):
                report.held.append(_established(exporter.port))
                report.rss_mib.append(exporter.rss_bytes() / 2**20)
                report.threads.append(_threads(exporter))
            started_at = time.monotonic()
            try:
                status, body, _ = http_get(f"{base}/healthz", timeout=5.0)
                took = time.monotonic() - started_at
                report.healthz.append(took)
                if status != 200 or body != b"ok\n":
                    report.failures.append(f"/healthz answered {status}")
                elif took > HEALTH_DEADLINE:
                    report.failures.append(f"/healthz took {took:.2f} s at {started_at - began:.0f} s")
                if took > 0.25:
                    report.slow.append(f"{started_at - began:.1f}s:{took:.2f}")
            except OSError as error:
                report.failures.append(f"/healthz failed: {error}")
            if now >= next_metrics:
                next_metrics = now + 1.0
                started_at = time.monotonic()
                try:
                    status, body, headers = http_get(f"{base}/metrics", timeout=METRICS_DEADLINE)
                    complete = (status == 200 and body.endswith(b"\n")
                                and all(any(name in body for name in names) for names in AREA_FAMILIES.values()))
                    if not complete:
                        report.failures.append(f"/metrics incomplete: status {status}, {len(body)} bytes")
                    else:
                        report.metrics.append(time.monotonic() - started_at)
                except OSError as error:
                    report.failures.append(f"/metrics failed: {error}")
            time.sleep(0.1)
        report.duration = time.monotonic() - began
        crowd.close()
        if not exporter.alive():
            report.failures.append(f"exporter exited with {exporter.popen.returncode}")
        if report.rss_mib and max(report.rss_mib) > 1.5 * report.idle_rss_mib:
            report.failures.append(f"RSS rose to {max(report.rss_mib):.0f} MiB, over 1.5 x idle "
                                   f"({report.idle_rss_mib:.0f} MiB)")
        if report.threads and max(report.threads) > report.idle_threads + 8:
            report.failures.append(f"threads rose to {max(report.threads)} (idle {report.idle_threads})")
        text = exporter.log_path.read_text(errors="replace")
        if "Traceback" in text:
            report.failures.append(f"a traceback in the exporter's log: {exporter.log_path}")
        code = exporter.stop()
        if code != 0:
            report.failures.append(f"exporter exited with {code} on SIGTERM")
    report.failures = list(dict.fromkeys(report.failures))
    for line in report.lines():
        log(line)
    return report


def _wait_held(port: int, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _established(port) >= count:
            return True
        time.sleep(0.5)
    return False

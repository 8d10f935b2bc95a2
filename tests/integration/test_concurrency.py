"""50 clients scraping at once while refreshes publish new snapshots get complete, consistent expositions:
never a mix of two snapshots, never half an area."""

from __future__ import annotations

import gzip
import http.client
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.serve.http_server import ExporterHTTPServer, start_server
from exporter.serve.scheduler import Scheduler, SnapshotCollector, render_families
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, ExporterFactory, FakeClock

CLIENTS = 50
SCRAPES_PER_CLIENT = 4
FAMILIES = 12
SERIES_PER_FAMILY = 400

# 200 scrapes of about 5,000 series each, parsed by the test: a soak, so make test-fast leaves it out.
pytestmark = pytest.mark.slow


class GenerationArea:
    """Every series of a snapshot carries the snapshot's generation number as its value."""

    name = "generations"
    interval = 0.0

    def __init__(self) -> None:
        self.generation = 0
        self._families: list[Metric] = []
        self.refresh()

    def refresh(self) -> None:
        self.generation += 1
        families: list[Metric] = []
        for f in range(FAMILIES):
            family: Metric
            if f % 3 == 0:
                family = CounterMetricFamily(f"gen_family_{f}", "generation counter", labels=["series"])
            else:
                family = GaugeMetricFamily(f"gen_family_{f}", "generation gauge", labels=["series"])
            for s in range(SERIES_PER_FAMILY):
                family.add_metric([f"s{s}"], self.generation)
            families.append(family)
        self._families = families  # published in one assignment

    def families(self) -> list[Metric]:
        return self._families


BUILDS_NAMES = tuple(name.encode() for name in m.names_of(m.AREA_BUILDS))


def _is_builds_line(line: bytes) -> bool:
    return line.removeprefix(b"# HELP ").removeprefix(b"# TYPE ").startswith(BUILDS_NAMES)


def scrape_all(port: int, check: Callable[[str], None]) -> list[str]:
    """CLIENTS threads, each SCRAPES_PER_CLIENT scrapes (every other one gzip), all started together."""
    errors: list[str] = []
    barrier = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            errors.append("barrier broken")
            return
        for n in range(SCRAPES_PER_CLIENT):
            want_gzip = (index + n) % 2 == 0
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"} if want_gzip else {})
                answer = connection.getresponse()
                body = answer.read()
                if answer.status != 200:
                    errors.append(f"HTTP {answer.status}")
                    continue
                if want_gzip:
                    assert answer.getheader("Content-Encoding") == "gzip"
                    body = gzip.decompress(body)
                check(body.decode("utf-8"))
            except Exception as error:  # collected and reported by the test
                errors.append(f"{type(error).__name__}: {error}")
            finally:
                connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a scrape hung"
    return errors


@pytest.fixture
def generation_server() -> Iterator[tuple[ExporterHTTPServer, GenerationArea, CollectorRegistry]]:
    registry = CollectorRegistry(auto_describe=False)
    metrics = SelfMetrics(registry)
    area = GenerationArea()
    registry.register(SnapshotCollector([area]))
    server = ExporterHTTPServer(("127.0.0.1", 0), registry, lambda: True, lambda: {})
    start_server(server)
    try:
        yield server, area, registry
    finally:
        server.shutdown()
        server.server_close()
        del metrics


@pytest.mark.parametrize("via_scheduler", [True, False], ids=["scheduler", "published-outside-the-scheduler"])
def test_fifty_scrapers_never_see_two_generations(
        generation_server: tuple[ExporterHTTPServer, GenerationArea, CollectorRegistry], via_scheduler: bool) -> None:
    server, area, registry = generation_server
    scheduler = Scheduler([area], SelfMetrics(CollectorRegistry()))
    stop = threading.Event()
    seen: set[float] = set()
    lock = threading.Lock()

    def refresher() -> None:
        for _ in range(10_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            if via_scheduler:
                scheduler.run_once(area)
            else:
                area.refresh()
            time.sleep(0.01)

    def check(text: str) -> None:
        assert text.endswith("\n")
        values: dict[str, set[float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name.startswith("gen_family_"):
                values[family.name] = {s.value for s in family.samples}
                assert len(family.samples) == SERIES_PER_FAMILY, "an incomplete family"
        assert len(values) == FAMILIES, "an incomplete area"
        generations = set().union(*values.values())
        assert len(generations) == 1, f"a mix of snapshots: generations {sorted(generations)}"
        assert m.EXPORTER_BUILD_INFO.name in text  # the live self-metrics come along
        with lock:
            seen.update(generations)

    thread = threading.Thread(target=refresher)
    thread.start()
    try:
        errors = scrape_all(server.server_address[1], check)
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert len(seen) >= 2, "refreshes did not overlap the scrapes"


def test_fifty_scrapers_get_one_published_builds_snapshot(clock: FakeClock, make_exporter: ExporterFactory) -> None:
    """The real builds area against the simulator: each scrape's builds part is one whole published snapshot."""
    org = Organization.generate(seed=3, scale="small", now_fn=clock, anchor=clock.now)
    with SimulatorServer(org, pat=PAT) as sim:
        exporter = make_exporter(sim)
        assert set(exporter.refresh_all_once().values()) == {None}
        area = next(a for a in exporter.areas if a.name == "builds")
        published: list[bytes] = [render_families(area.families())]
        server = ExporterHTTPServer(("127.0.0.1", 0), exporter.registry, exporter.scheduler.ready,
                                    lambda: dict(exporter.scheduler.status))
        start_server(server)
        stop = threading.Event()

        def refresher() -> None:
            for _ in range(200):
                if stop.is_set():
                    return
                clock.advance(900)  # new runs finish: every refresh publishes a different snapshot
                exporter.scheduler.run_once(area)
                published.append(render_families(area.families()))

        def check(text: str) -> None:
            assert text.endswith("\n")
            list(text_string_to_metric_families(text))  # parses
            raw = text.encode()
            builds_lines = sum(1 for line in raw.split(b"\n") if _is_builds_line(line))
            assert any(snapshot in raw and builds_lines == sum(1 for line in snapshot.split(b"\n")
                                                               if _is_builds_line(line))
                       for snapshot in list(published)), "the builds part is not one of the published snapshots"

        thread = threading.Thread(target=refresher)
        thread.start()
        try:
            errors = scrape_all(server.server_address[1], check)
        finally:
            stop.set()
            thread.join(60)
            server.shutdown()
            server.server_close()
        assert errors == []
        assert len(set(published)) >= 2

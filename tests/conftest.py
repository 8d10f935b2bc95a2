"""Shared fixtures: an injected clock, a simulator on 127.0.0.1, and exporters pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
import pytest

from exporter.app import Exporter
from exporter.cli import demo_config
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.support import T0

PAT = "test-pat-8f14e45fceea167a5a36dedd4bea2543"

prometheus_client.disable_created_metrics()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def empty_org(clock: FakeClock) -> Organization:
    return Organization.empty(now_fn=clock, anchor=clock.now)


@pytest.fixture
def sim(empty_org: Organization) -> Iterator[SimulatorServer]:
    server = SimulatorServer(empty_org, pat=PAT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


ExporterFactory = Callable[..., Exporter]


@pytest.fixture
def make_exporter(clock: FakeClock) -> Iterator[ExporterFactory]:
    """Build exporters on the simulator with the fake clock; close them all at the end."""
    made: list[Exporter] = []

    def factory(server: SimulatorServer, pat: str = PAT, **settings: Any) -> Exporter:
        overrides: dict[str, Any] = {"request_timeout": "5s", "max_retries": 1}
        overrides.update(settings)
        exporter = Exporter(demo_config(server.base_url, overrides, pat=pat), clock=clock)
        exporter.client._backoff_base = 0.01  # keep retry waits short in tests
        made.append(exporter)
        return exporter

    yield factory
    for exporter in made:
        exporter.close()


def sample(exporter: Exporter, name: str, **labels: str) -> float | None:
    return exporter.registry.get_sample_value(name, labels)

"""The audit area: incremental reading from a watermark, paging through equal timestamps, unreadable logs."""

from __future__ import annotations

import logging

import pytest

import exporter.areas.audit
from exporter.azdo.fields import format_time
from exporter.metrics import catalogue as m
from exporter.simulator.audit_model import add_entry, set_mode
from exporter.simulator.model import Organization
from exporter.simulator.server import SimulatorServer
from tests.conftest import ExporterFactory, FakeClock, sample
from tests.integration.test_pull_requests import only
from tests.support import DAY, H

BYPASS = {"area": "Git", "category": "modify", "action": "Git.RefUpdatePoliciesBypassed"}
POLICY = {"area": "Policy", "category": "modify", "action": "Policy.PolicyConfigModified"}
TOKEN = {"area": "Token", "category": "create", "action": "Token.PatCreateEvent"}


def total(exporter: object, key: dict[str, str]) -> float | None:
    return sample(exporter, m.AUDIT_EVENTS.total, **key)  # type: ignore[arg-type]


def window(exporter: object, key: dict[str, str]) -> float | None:
    return sample(exporter, m.AUDIT_WINDOW_EVENTS.name, **key)  # type: ignore[arg-type]


def add(org: Organization, timestamp: float, key: dict[str, str]) -> None:
    add_entry(org, timestamp, key["action"], key["area"], key["category"])


def test_two_cycles_over_a_growing_log_count_each_entry_once(sim: SimulatorServer, empty_org: Organization,
                                                             clock: FakeClock, make_exporter: ExporterFactory) -> None:
    add(empty_org, clock.now - 2 * DAY, POLICY)
    add(empty_org, clock.now - 40 * DAY, POLICY)  # before the window
    add(empty_org, clock.now - H, TOKEN)
    exporter = make_exporter(sim, **only("audit"))
    assert exporter.refresh_all_once() == {"audit": None}
    # History fills the window gauges, not the counters; the bypass action is known from the start.
    assert window(exporter, POLICY) == 1 and total(exporter, POLICY) == 0
    assert window(exporter, TOKEN) == 1 and total(exporter, TOKEN) == 0
    assert window(exporter, BYPASS) == 0 and total(exporter, BYPASS) == 0
    first = clock.now
    clock.advance(600)
    add(empty_org, first - 120, BYPASS)  # indexed late: its timestamp is before the last cycle's end
    add(empty_org, first + 100, BYPASS)
    add(empty_org, first + 100, TOKEN)  # same timestamp as the previous one
    assert exporter.refresh_all_once() == {"audit": None}
    assert total(exporter, BYPASS) == 2 and window(exporter, BYPASS) == 2
    assert total(exporter, TOKEN) == 1 and window(exporter, TOKEN) == 2
    clock.advance(600)
    add(empty_org, clock.now - 1, POLICY)
    assert exporter.refresh_all_once() == {"audit": None}
    clock.advance(600)
    assert exporter.refresh_all_once() == {"audit": None}  # nothing new: nothing counted again
    assert total(exporter, BYPASS) == 2 and total(exporter, TOKEN) == 1 and total(exporter, POLICY) == 1
    assert window(exporter, POLICY) == 2
    queries = [r.params for r in sim.requests if r.path.endswith("/_apis/audit/auditlog")]
    assert len(queries) == 4
    assert queries[0]["startTime"] == format_time(first - 30 * DAY)
    assert queries[1]["startTime"] == format_time(first - 900)  # the overlap before the previous end
    assert queries[1]["endTime"] == format_time(first + 600)
    assert all(q["api-version"] == "7.1-preview.1" for q in queries)


def test_a_page_boundary_inside_equal_timestamps_loses_nothing(sim: SimulatorServer, empty_org: Organization,
                                                               clock: FakeClock, make_exporter: ExporterFactory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exporter.areas.audit, "BATCH_SIZE", 2)
    exp = make_exporter(sim, **only("audit"))
    assert exp.refresh_all_once() == {"audit": None}
    clock.advance(300)
    same = clock.now - 100
    add(empty_org, same + 50, POLICY)
    for key in (BYPASS, TOKEN, BYPASS, POLICY, TOKEN):  # five entries share one timestamp
        add(empty_org, same, key)
    add(empty_org, same - 50, TOKEN)
    sim.clear_requests()
    assert exp.refresh_all_once() == {"audit": None}
    assert total(exp, POLICY) == 2 and total(exp, BYPASS) == 2 and total(exp, TOKEN) == 3
    pages = [r.params for r in sim.requests if r.path.endswith("/_apis/audit/auditlog")]
    assert len(pages) == 4  # 7 entries, 2 per page
    assert "continuationToken" not in pages[0]
    assert all(p["batchSize"] == "2" and p["startTime"] == pages[0]["startTime"] for p in pages)
    assert len({p["continuationToken"] for p in pages[1:]}) == 3


@pytest.mark.parametrize(("mode", "reason"), [("forbidden", "auth"), ("disabled", "http_4xx"),
                                              ("unavailable", "http_4xx")])
def test_an_unreadable_audit_log_fails_the_collector_with_one_clear_message(
        sim: SimulatorServer, empty_org: Organization, clock: FakeClock, make_exporter: ExporterFactory,
        caplog: pytest.LogCaptureFixture, mode: str, reason: str) -> None:
    set_mode(empty_org, mode)
    exp = make_exporter(sim, **only("audit"))
    with caplog.at_level(logging.WARNING):
        errors = exp.refresh_all_once()
    message = errors["audit"]
    assert message is not None and "View audit log" in message and "Entra ID" in message
    assert "intervals.audit: 0" in message
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert sample(exp, m.EXPORTER_REFRESH_SUCCESS.name, collector="audit") == 0
    assert sample(exp, m.EXPORTER_REFRESH_ERRORS.total, collector="audit", reason=reason) == 1
    assert total(exp, BYPASS) is None  # no numbers before the first good read
    # Once readable, the collector recovers.
    set_mode(empty_org, "enabled")
    add(empty_org, clock.now - 60, BYPASS)
    assert exp.refresh_all_once() == {"audit": None}
    assert window(exp, BYPASS) == 1


def test_failed_cycle_keeps_the_last_numbers(sim: SimulatorServer, empty_org: Organization, clock: FakeClock,
                                             make_exporter: ExporterFactory) -> None:
    add(empty_org, clock.now - H, TOKEN)
    exp = make_exporter(sim, **only("audit"))
    assert exp.refresh_all_once() == {"audit": None}
    clock.advance(600)
    add(empty_org, clock.now - 10, TOKEN)
    set_mode(empty_org, "forbidden")
    assert exp.refresh_all_once()["audit"] is not None
    assert window(exp, TOKEN) == 1 and total(exp, TOKEN) == 0
    set_mode(empty_org, "enabled")
    assert exp.refresh_all_once() == {"audit": None}
    assert window(exp, TOKEN) == 2 and total(exp, TOKEN) == 1


def test_audit_interval_zero_disables_the_area(sim: SimulatorServer, make_exporter: ExporterFactory) -> None:
    settings = only("builds")
    exp = make_exporter(sim, **settings)
    assert "audit" not in exp.refresh_all_once()
    assert not [r for r in sim.requests if "audit" in r.path]

"""The broken/fixed state machine of SPEC §4 "Build health", on hand-made runs."""

from __future__ import annotations

from exporter.areas.build_health import BranchHistory, BranchState, CompletedRun
from tests.support import H

FAILED_ONLY = frozenset({"failed"})
FAILED_AND_PARTIAL = frozenset({"failed", "partiallySucceeded"})


def history(results: list[str], breaking: frozenset[str] = FAILED_ONLY, start: float = 1000.0) -> BranchHistory:
    h = BranchHistory(breaking)
    for i, result in enumerate(results):
        h.add(CompletedRun(id=i + 1, finish=start + i * H, result=result, queue=start + i * H - 600,
                           start=start + i * H - 500))
    return h


def test_healthy_branch() -> None:
    state, periods = history(["succeeded", "succeeded"]).evaluate()
    assert state == BranchState(broken=False, broken_since=None, consecutive_failures=0, last_fix=1000.0 + H)
    assert periods == []


def test_failures_after_a_success() -> None:
    state, periods = history(["succeeded", "failed", "failed", "failed"]).evaluate()
    assert state.broken is True
    assert state.broken_since == 1000.0 + H  # the first failure after the success
    assert state.consecutive_failures == 3
    assert periods == []


def test_fix_ends_a_broken_period() -> None:
    state, periods = history(["succeeded", "failed", "failed", "succeeded", "failed"]).evaluate()
    assert [(p.start, p.end, p.fixing_run_id, p.duration) for p in periods] == [
        (1000.0 + H, 1000.0 + 3 * H, 4, 2 * H)
    ]
    assert state.broken and state.broken_since == 1000.0 + 4 * H and state.consecutive_failures == 1


def test_failures_then_only_canceled_runs_stay_broken() -> None:
    state, periods = history(["succeeded", "failed", "canceled", "canceled"]).evaluate()
    assert state.broken is True
    assert state.broken_since == 1000.0 + H
    assert state.consecutive_failures == 1  # canceled runs neither break nor fix
    assert periods == []


def test_canceled_runs_do_not_break_a_healthy_branch() -> None:
    state, _ = history(["succeeded", "canceled", "canceled"]).evaluate()
    assert state.broken is False and state.consecutive_failures == 0


def test_partially_succeeded_is_neutral_by_default() -> None:
    state, _ = history(["succeeded", "partiallySucceeded"]).evaluate()
    assert state.broken is False
    state, _ = history(["failed", "partiallySucceeded"]).evaluate()
    assert state.broken is True and state.consecutive_failures == 1  # it does not fix either


def test_partially_succeeded_breaks_when_configured() -> None:
    state, _ = history(["succeeded", "partiallySucceeded", "failed"], FAILED_AND_PARTIAL).evaluate()
    assert state.broken is True
    assert state.broken_since == 1000.0 + H
    assert state.consecutive_failures == 2


def test_last_success_before_the_window() -> None:
    h = history(["failed", "failed"], start=100 * H)
    assert h.needs_lookup() is True
    older = [  # newest first, back to and including the last success
        CompletedRun(90, 90 * H, "failed"),
        CompletedRun(89, 80 * H, "canceled"),
        CompletedRun(88, 70 * H, "failed"),
        CompletedRun(87, 60 * H, "succeeded"),
    ]
    h.set_base_from_history(older)
    assert h.needs_lookup() is False
    state, periods = h.evaluate()
    assert state.broken is True
    assert state.broken_since == 70 * H  # not clipped to the window
    assert state.consecutive_failures == 4  # two before the window, two in it
    assert periods == []


def test_branch_that_never_succeeded() -> None:
    h = history(["failed", "failed"], start=100 * H)
    h.set_base_from_history([CompletedRun(5, 50 * H, "failed"), CompletedRun(4, 40 * H, "failed")])
    state, _ = h.evaluate()
    assert state.broken_since == 40 * H  # its first run
    assert state.consecutive_failures == 4
    assert state.last_fix is None


def test_no_lookup_when_the_window_starts_with_a_fix() -> None:
    assert history(["canceled", "succeeded", "failed"]).needs_lookup() is False
    assert history(["canceled", "canceled"]).needs_lookup() is False  # nothing decisive: state unknown but moot


def test_prune_keeps_the_state_and_the_latest_run() -> None:
    h = history(["succeeded", "failed", "failed", "canceled"])
    before, _ = h.evaluate()
    h.prune(window_start=1000.0 + 10 * H)  # every run is older than the window
    after, periods = h.evaluate()
    assert after == before
    assert [r.id for r in h.runs] == [4]  # the latest run stays for the last-run metrics
    assert periods == []


def test_prune_drops_periods_that_ended_before_the_window() -> None:
    h = history(["failed", "succeeded", "failed", "succeeded", "failed"])
    h.base_known = True
    assert len(h.evaluate()[1]) == 2
    h.prune(window_start=1000.0 + 2.5 * H)
    state, periods = h.evaluate()
    assert [p.fixing_run_id for p in periods] == [4]
    assert state.broken and state.broken_since == 1000.0 + 4 * H


def test_runs_are_ordered_by_finish_time_and_deduplicated() -> None:
    h = BranchHistory(FAILED_ONLY)
    assert h.add(CompletedRun(2, 200.0, "failed"))
    assert h.add(CompletedRun(1, 100.0, "succeeded"))  # arrives late, finished earlier
    assert not h.add(CompletedRun(2, 200.0, "failed"))
    assert [r.id for r in h.runs] == [1, 2]
    state, _ = h.evaluate()
    assert state.broken_since == 200.0 and state.consecutive_failures == 1

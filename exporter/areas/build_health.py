"""Broken / fixed state of one pipeline branch: the rules of SPEC §4 "Build health", as pure logic.

Runs are ordered by finish time. A run is *breaking* if its result is in `broken_results`; a
succeeded run *fixes*; other runs (canceled, and partially succeeded unless configured as breaking)
neither break nor fix. A branch is broken while its latest breaking-or-fixing run is breaking; broken
since = finish time of the first breaking run after the last fixing run; consecutive failures =
breaking runs since the last fixing run.

`BranchHistory` keeps the completed runs of the lookback window plus a folded `BranchState` for
everything before the window, so pruning old runs never changes the current state.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace

SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class CompletedRun:
    """The facts of one completed run that the metrics need."""

    id: int
    finish: float
    result: str  # Azure DevOps result name: succeeded, partiallySucceeded, failed, canceled
    queue: float | None = None
    start: float | None = None

    @property
    def sort_key(self) -> tuple[float, int]:
        return (self.finish, self.id)


@dataclass(frozen=True, slots=True)
class BranchState:
    """The state after a sequence of runs."""

    broken: bool = False
    broken_since: float | None = None
    consecutive_failures: int = 0
    last_fix: float | None = None


@dataclass(frozen=True, slots=True)
class BrokenPeriod:
    """A broken period that a fixing run ended."""

    start: float
    end: float
    fixing_run_id: int

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def step(state: BranchState, run: CompletedRun, breaking: frozenset[str]) -> tuple[BranchState, BrokenPeriod | None]:
    """Apply one completed run; return the new state and the broken period it ended, if any."""
    if run.result in breaking:
        if state.broken:
            return replace(state, consecutive_failures=state.consecutive_failures + 1), None
        return replace(state, broken=True, broken_since=run.finish, consecutive_failures=1), None
    if run.result == SUCCEEDED:
        ended = None
        if state.broken and state.broken_since is not None:
            ended = BrokenPeriod(state.broken_since, run.finish, run.id)
        return BranchState(broken=False, broken_since=None, consecutive_failures=0, last_fix=run.finish), ended
    return state, None


def is_decisive(run: CompletedRun, breaking: frozenset[str]) -> bool:
    """True for runs that break or fix."""
    return run.result in breaking or run.result == SUCCEEDED


@dataclass
class BranchHistory:
    """Completed runs of one branch within the window, and the folded state before them."""

    breaking: frozenset[str]
    base: BranchState = field(default_factory=BranchState)
    base_known: bool = False  # False until what came before the first held run has been looked up
    runs: list[CompletedRun] = field(default_factory=list)
    _ids: set[int] = field(default_factory=set)

    def add(self, run: CompletedRun) -> bool:
        """Insert a run in finish order; False if it was already held."""
        if run.id in self._ids:
            return False
        self._ids.add(run.id)
        if not self.runs or self.runs[-1].sort_key <= run.sort_key:
            self.runs.append(run)
        else:
            bisect.insort(self.runs, run, key=lambda r: r.sort_key)
        return True

    def __contains__(self, run_id: int) -> bool:
        return run_id in self._ids

    def needs_lookup(self) -> bool:
        """True if the state before the held runs matters and is not known yet.

        It matters only when the first breaking-or-fixing run held is breaking: then broken-since and
        consecutive failures may reach back before it.
        """
        if self.base_known:
            return False
        for run in self.runs:
            if is_decisive(run, self.breaking):
                return run.result in self.breaking
        return False

    def set_base_from_history(self, older_runs_newest_first: list[CompletedRun]) -> None:
        """Fold runs that finished before the first held run (given newest first, up to and including
        the last fixing run, or the whole history if the branch never succeeded)."""
        state = BranchState()
        for run in reversed(older_runs_newest_first):
            state, _ = step(state, run, self.breaking)
        self.base = state
        self.base_known = True

    def prune(self, window_start: float) -> None:
        """Fold runs that finished before `window_start` into the base state and drop them.

        The latest run is always kept, so the branch keeps its last-run metrics when it goes quiet.
        """
        cut = 0
        state = self.base
        while cut < len(self.runs) - 1 and self.runs[cut].finish < window_start:
            state, _ = step(state, self.runs[cut], self.breaking)
            self._ids.discard(self.runs[cut].id)
            cut += 1
        if cut:
            self.base = state
            del self.runs[:cut]

    def evaluate(self) -> tuple[BranchState, list[BrokenPeriod]]:
        """The current state and every broken period that a held run ended."""
        state = self.base
        periods: list[BrokenPeriod] = []
        for run in self.runs:
            state, ended = step(state, run, self.breaking)
            if ended is not None:
                periods.append(ended)
        return state, periods

    @property
    def latest(self) -> CompletedRun | None:
        return self.runs[-1] if self.runs else None

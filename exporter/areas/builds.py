"""The builds area: build health and automated tests per tracked pipeline branch (SPEC §4).

Per project and cycle, with `P` the pages of new items:
- one definitions listing (pipelines, their repository and default branch),
- one builds listing of runs completed since the watermark (`finishTimeAscending`, `minTime`),
- one builds listing of runs in progress or queued,
- a test summary per new completed run of a tracked branch.
The first cycle reads the lookback window instead of "since the watermark", and for a branch whose
earliest held breaking-or-fixing run is breaking, it asks once for the runs before it back to the last
success, so broken-since and consecutive failures are right rather than clipped to the window.

A project's refresh fetches everything first and applies it only if every request succeeded, so a
failed cycle leaves that project's last good numbers; other projects still refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from exporter.areas import base
from exporter.areas.build_health import BranchHistory, CompletedRun, is_decisive
from exporter.areas.projects import Project, ProjectDirectory, project_gone
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.client import ApiError, NotFoundError
from exporter.azdo.fields import result_label
from exporter.azdo.records import Build, TestCounts
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.metrics.families import (
    QUEUE_DURATION_BUCKETS,
    RUN_DURATION_BUCKETS,
    TIME_TO_FIX_BUCKETS,
    HistogramData,
)

log = logging.getLogger(__name__)

RESULT_LABEL_VALUES = ("succeeded", "partially_succeeded", "failed", "canceled")
TEST_OUTCOMES = ("passed", "failed", "other")
# Runs finishing just before the watermark may be recorded late; re-read a margin and dedupe by id.
WATERMARK_OVERLAP = 600.0

BranchKey = tuple[int, str]  # pipeline id, branch


@dataclass(frozen=True)
class Pipeline:
    id: int
    label: str  # folder/name
    repository: str
    default_branch: str | None  # without refs/heads/


@dataclass
class BranchData:
    history: BranchHistory
    tests: TestCounts | None = None  # of the latest completed run; None: it published no test results
    tests_run_id: int | None = None


@dataclass
class ProjectState(base.ProjectState):
    """What is known about one project's builds; mutated only by the refresh thread."""

    watermark: float | None = None
    pipelines: dict[int, Pipeline] = field(default_factory=dict)
    branches: dict[tuple[int, str], BranchData] = field(default_factory=dict)
    in_progress: dict[int, int] = field(default_factory=dict)
    queued: dict[int, int] = field(default_factory=dict)
    # Since-start accumulators (counters and histograms), keyed by pipeline id.
    runs_total: dict[tuple[int, str, str], int] = field(default_factory=dict)
    tests_total: dict[tuple[int, str, str], int] = field(default_factory=dict)
    run_duration: dict[int, HistogramData] = field(default_factory=dict)
    queue_duration: dict[int, HistogramData] = field(default_factory=dict)
    time_to_fix: dict[tuple[int, str], HistogramData] = field(default_factory=dict)


@dataclass
class _Fetched:
    """Everything one project cycle read, before any of it is applied."""

    pipelines: dict[int, Pipeline]
    new_runs: dict[tuple[int, str], list[CompletedRun]]
    max_finish: float | None
    in_progress: dict[int, int]
    queued: dict[int, int]
    older_runs: dict[tuple[int, str], list[CompletedRun]]
    tests: dict[int, TestCounts | None]


def _completed_run(build: Build) -> CompletedRun | None:
    if build.finish is None or build.result is None:
        return None
    return CompletedRun(build.id, build.finish, build.result, build.queue, build.start)


class CompactSamples:
    """The samples of a metric family, kept as flat tuples and made into `Sample`s when read.

    A `Sample` with its own label dict costs ~310 bytes; at 5,000 pipelines the builds area holds
    ~440,000 of them per snapshot, twice while a new snapshot is built. A flat tuple of the name, the
    (shared) label names, the value and the label values costs about half. Families append `Sample`s
    as usual; readers iterate and get equal `Sample`s back.
    """

    __slots__ = ("_rows", "_keys")

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        self._rows: list[tuple[Any, ...] | Sample] = []
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        for sample in samples:
            self.append(sample)

    def append(self, sample: Sample) -> None:
        if sample.timestamp is not None or sample.exemplar is not None or sample.native_histogram is not None:
            self._rows.append(sample)  # rare: kept as it is
            return
        keys = tuple(sample.labels)
        keys = self._keys.setdefault(keys, keys)
        self._rows.append((sample.name, keys, sample.value, *sample.labels.values()))

    @staticmethod
    def _sample(row: tuple[Any, ...] | Sample) -> Sample:
        if isinstance(row, Sample):
            return row
        return Sample(row[0], dict(zip(row[1], row[3:], strict=True)), row[2])

    def __iter__(self) -> Iterator[Sample]:
        return map(self._sample, self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Sample:
        return self._sample(self._rows[index])

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, CompactSamples)) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactSamples({list(self)!r})"


class BuildsArea(base.ProjectArea[ProjectState, _Fetched]):
    """Refreshes build health for every admitted project and publishes its metric families."""

    name = m.AREA_BUILDS

    def __init__(self, config: Config, api: AzureDevOpsApi, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        super().__init__(config, api, projects, clock)
        self._tests_enabled = config.intervals.tests > 0
        self._breaking = frozenset(config.broken_results)

    # -- refresh ---------------------------------------------------------------------------------

    def _new_state(self, project: Project) -> ProjectState:
        return ProjectState(project)

    def _gone(self, error: ApiError) -> bool:
        """Gone: the project does not exist any more, or its definitions are hidden from the token (404)."""
        return project_gone(error) or (isinstance(error, NotFoundError) and error.endpoint == "definitions")

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        project = state.project
        pipelines = self._fetch_pipelines(project)
        window_start = self._window_start(now)
        since = base.read_since(window_start, state.watermark if state.loaded else None, WATERMARK_OVERLAP)
        new_runs: dict[tuple[int, str], list[CompletedRun]] = {}
        max_finish = state.watermark
        for build in self._api.completed_builds_since(project.id, since):
            run = _completed_run(build)
            if run is None:
                continue
            max_finish = run.finish if max_finish is None else max(max_finish, run.finish)
            key = self._tracked_key(pipelines, build)
            if key is None:
                continue
            held = state.branches.get(key)
            if held is not None and run.id in held.history:
                continue
            new_runs.setdefault(key, []).append(run)
        in_progress: dict[int, int] = dict.fromkeys(pipelines, 0)
        queued: dict[int, int] = dict.fromkeys(pipelines, 0)
        seen_open: set[int] = set()
        for build in self._api.open_builds(project.id):
            pipeline_id = build.definition_id
            if pipeline_id is None or pipeline_id not in pipelines or build.id in seen_open:
                continue
            seen_open.add(build.id)
            if build.status == "inprogress":
                in_progress[pipeline_id] += 1
            elif build.status == "notstarted":
                queued[pipeline_id] += 1
        older_runs = self._fetch_older_runs(state, project, new_runs)
        tests = self._fetch_tests(state, project, new_runs) if self._tests_enabled else {}
        return _Fetched(pipelines, new_runs, max_finish, in_progress, queued, older_runs, tests)

    def _fetch_pipelines(self, project: Project) -> dict[int, Pipeline]:
        pipelines: dict[int, Pipeline] = {}
        for definition in self._api.build_definitions(project.id, all_properties=True):
            label = definition.label
            if self._config.pipelines.matches(label):
                pipelines[definition.id] = Pipeline(definition.id, label, definition.repository,
                                                    definition.default_branch)
        return pipelines

    def _tracked_key(self, pipelines: dict[int, Pipeline], build: Build) -> tuple[int, str] | None:
        pipeline = pipelines.get(build.definition_id) if build.definition_id is not None else None
        if pipeline is None:
            return None
        branch = build.branch
        if branch is None or not self._config.branch_tracked(branch, pipeline.default_branch):
            return None
        return pipeline.id, branch

    def _fetch_older_runs(self, state: ProjectState, project: Project,
                          new_runs: dict[BranchKey, list[CompletedRun]]) -> dict[BranchKey, list[CompletedRun]]:
        """For branches whose earliest held decisive run is breaking and whose past is unknown, read runs
        before it (newest first) back to the last success: one listing per such branch."""
        older: dict[tuple[int, str], list[CompletedRun]] = {}
        for key, runs in new_runs.items():
            held = state.branches.get(key)
            if held is not None and held.history.base_known:
                continue
            combined = sorted([*(held.history.runs if held else []), *runs], key=lambda r: r.sort_key)
            first_decisive = next((r for r in combined if is_decisive(r, self._breaking)), None)
            if first_decisive is None or first_decisive.result not in self._breaking:
                continue
            first = combined[0]
            pipeline_id, branch = key
            found: list[CompletedRun] = []
            known_ids = {r.id for r in combined}
            for build in self._api.completed_builds_before(project.id, pipeline_id, branch, first.finish):
                run = _completed_run(build)
                if run is None or run.id in known_ids or run.sort_key >= first.sort_key:
                    continue
                known_ids.add(run.id)
                found.append(run)
                if run.result == "succeeded":
                    break  # the last success: nothing before it matters (and no further page is read)
            older[key] = found
        return older

    def _fetch_tests(self, state: ProjectState, project: Project,
                     new_runs: dict[tuple[int, str], list[CompletedRun]]) -> dict[int, TestCounts | None]:
        """Test summaries: every new run in steady state (for the counter); only the latest run of each
        branch on the first load."""
        wanted: list[int] = []
        for runs in new_runs.values():
            if state.loaded:
                wanted += [r.id for r in runs]
            else:
                wanted.append(max(runs, key=lambda r: r.sort_key).id)
        tests: dict[int, TestCounts | None] = {}
        for run_id in wanted:
            try:
                tests[run_id] = self._api.test_summary(project.id, run_id)
            except NotFoundError:
                tests[run_id] = None  # the run was deleted meanwhile
        return tests

    # -- apply -------------------------------------------------------------------------------------

    def _apply(self, state: ProjectState, fetched: _Fetched, now: float) -> None:
        steady = state.loaded
        state.pipelines = fetched.pipelines
        state.in_progress, state.queued = fetched.in_progress, fetched.queued
        state.watermark = fetched.max_finish
        # Pipelines deleted, renamed out of the filter, or branches no longer tracked leave now.
        for key in [k for k in state.branches if k[0] not in fetched.pipelines]:
            del state.branches[key]
        for accumulator in (state.runs_total, state.tests_total):
            for key3 in [k for k in accumulator if k[0] not in fetched.pipelines]:
                del accumulator[key3]
        for hist_map in (state.run_duration, state.queue_duration):
            for pid in [p for p in hist_map if p not in fetched.pipelines]:
                del hist_map[pid]
        for key in [k for k in state.time_to_fix if k[0] not in fetched.pipelines]:
            del state.time_to_fix[key]

        window_start = now - self._config.lookback
        for key, runs in fetched.new_runs.items():
            data = state.branches.get(key)
            if data is None:
                data = state.branches[key] = BranchData(BranchHistory(self._breaking))
            history = data.history
            new_ids: set[int] = set()
            for run in runs:
                if history.add(run):
                    new_ids.add(run.id)
            if key in fetched.older_runs:
                history.set_base_from_history(fetched.older_runs[key])
            elif not history.base_known:
                first_decisive = next((r for r in history.runs if is_decisive(r, self._breaking)), None)
                if first_decisive is not None:  # it is a fix: nothing before it can matter any more
                    history.base_known = True
            latest = history.latest
            if latest is not None and latest.id in fetched.tests:
                data.tests, data.tests_run_id = fetched.tests[latest.id], latest.id
            pipeline_id, branch = key
            self._init_series(state, key)
            if steady:
                self._count_new_runs(state, key, [r for r in runs if r.id in new_ids], fetched.tests)
        for key, data in state.branches.items():
            self._init_series(state, key)
            data.history.prune(window_start)

    def _init_series(self, state: ProjectState, key: tuple[int, str]) -> None:
        """Every known label set exists from start-up at 0 (SPEC: rate() loses no event)."""
        pipeline_id, branch = key
        for result in RESULT_LABEL_VALUES:
            state.runs_total.setdefault((pipeline_id, branch, result), 0)
        if self._tests_enabled:
            for outcome in TEST_OUTCOMES:
                state.tests_total.setdefault((pipeline_id, branch, outcome), 0)
        state.run_duration.setdefault(pipeline_id, HistogramData(RUN_DURATION_BUCKETS))
        state.queue_duration.setdefault(pipeline_id, HistogramData(QUEUE_DURATION_BUCKETS))
        state.time_to_fix.setdefault(key, HistogramData(TIME_TO_FIX_BUCKETS))

    def _count_new_runs(self, state: ProjectState, key: tuple[int, str], runs: list[CompletedRun],
                        tests: dict[int, TestCounts | None]) -> None:
        pipeline_id, branch = key
        new_ids = {r.id for r in runs}
        for run in runs:
            state.runs_total[(pipeline_id, branch, result_label(run.result))] += 1
            if run.start is not None:
                state.run_duration[pipeline_id].observe(max(0.0, run.finish - run.start))
                if run.queue is not None:
                    state.queue_duration[pipeline_id].observe(max(0.0, run.start - run.queue))
            counts = tests.get(run.id)
            if counts is not None:
                for outcome, count in zip(TEST_OUTCOMES, counts, strict=True):
                    state.tests_total[(pipeline_id, branch, outcome)] += count
        _, periods = state.branches[key].history.evaluate()
        for period in periods:
            if period.fixing_run_id in new_ids:
                state.time_to_fix[key].observe(period.duration)

    # -- publish -----------------------------------------------------------------------------------

    def _publish(self, now: float) -> list[Metric]:
        families = []
        for family in self._build_families(now):
            if not isinstance(family.samples, CompactSamples):  # histograms, filled by families.py helpers
                family.samples = CompactSamples(family.samples)  # type: ignore[assignment]
            families.append(family)
        return families

    def _build_families(self, now: float) -> Iterable[Metric]:
        info = m.PIPELINE_INFO.gauge()
        last_result = m.PIPELINE_LAST_RUN_RESULT.gauge()
        last_finished = m.PIPELINE_LAST_RUN_FINISHED_TIMESTAMP_SECONDS.gauge()
        last_duration = m.PIPELINE_LAST_RUN_DURATION_SECONDS.gauge()
        broken = m.PIPELINE_BROKEN.gauge()
        broken_since = m.PIPELINE_BROKEN_SINCE_TIMESTAMP_SECONDS.gauge()
        broken_duration = m.PIPELINE_BROKEN_DURATION_SECONDS.gauge()
        consecutive = m.PIPELINE_CONSECUTIVE_FAILURES.gauge()
        running = m.PIPELINE_RUNS_IN_PROGRESS.gauge()
        waiting = m.PIPELINE_RUNS_QUEUED.gauge()
        runs_total = m.PIPELINE_RUNS.counter()
        window_runs = m.PIPELINE_WINDOW_RUNS.gauge()
        run_duration: list[tuple[list[str], HistogramData]] = []
        queue_duration: list[tuple[list[str], HistogramData]] = []
        time_to_fix: list[tuple[list[str], HistogramData]] = []
        window_ttf: list[tuple[list[str], HistogramData]] = []
        last_tests = m.PIPELINE_LAST_RUN_TESTS.gauge()
        has_tests = m.PIPELINE_HAS_TESTS.gauge()
        tests_total = m.PIPELINE_TESTS.counter()
        window_start = now - self._config.lookback
        for family in (info, last_result, last_finished, last_duration, broken, broken_since, broken_duration,
                       consecutive, running, waiting, runs_total, window_runs, last_tests, has_tests, tests_total):
            family.samples = CompactSamples()  # type: ignore[assignment]

        for state in sorted(self._states.values(), key=lambda s: s.project.name.lower()):
            project = state.project.name
            for pipeline in sorted(state.pipelines.values(), key=lambda p: p.label):
                info.add_metric([project, pipeline.label, str(pipeline.id), pipeline.repository,
                                 pipeline.default_branch or ""], 1)
                running.add_metric([project, pipeline.label], state.in_progress.get(pipeline.id, 0))
                waiting.add_metric([project, pipeline.label], state.queued.get(pipeline.id, 0))
                if pipeline.id in state.run_duration:
                    run_duration.append(([project, pipeline.label], state.run_duration[pipeline.id]))
                    queue_duration.append(([project, pipeline.label], state.queue_duration[pipeline.id]))
            for (pipeline_id, branch), data in sorted(state.branches.items(),
                                                      key=lambda kv: (state.pipelines[kv[0][0]].label, kv[0][1])):
                labels = [project, state.pipelines[pipeline_id].label, branch]
                history = data.history
                current, periods = history.evaluate()
                latest = history.latest
                if latest is not None:
                    latest_label = result_label(latest.result)
                    for result in RESULT_LABEL_VALUES:
                        last_result.add_metric([*labels, result], 1 if result == latest_label else 0)
                    last_finished.add_metric(labels, latest.finish)
                    if latest.start is not None:
                        last_duration.add_metric(labels, max(0.0, latest.finish - latest.start))
                broken.add_metric(labels, 1 if current.broken else 0)
                if current.broken and current.broken_since is not None:
                    broken_since.add_metric(labels, current.broken_since)
                    broken_duration.add_metric(labels, max(0.0, now - current.broken_since))
                consecutive.add_metric(labels, current.consecutive_failures)
                counts = dict.fromkeys(RESULT_LABEL_VALUES, 0)
                for run in history.runs:
                    if run.finish >= window_start:
                        counts[result_label(run.result)] += 1
                for result in RESULT_LABEL_VALUES:
                    window_runs.add_metric([*labels, result], counts[result])
                    runs_total.add_metric([*labels, result], state.runs_total.get((pipeline_id, branch, result), 0))
                window_hist = HistogramData(TIME_TO_FIX_BUCKETS)
                for period in periods:
                    if period.end >= window_start:
                        window_hist.observe(period.duration)
                window_ttf.append((labels, window_hist))
                time_to_fix.append((labels, state.time_to_fix.get((pipeline_id, branch),
                                                                   HistogramData(TIME_TO_FIX_BUCKETS))))
                if self._tests_enabled:
                    has_tests.add_metric(labels, 1 if data.tests is not None else 0)
                    tested = data.tests or (0, 0, 0)
                    for outcome, count in zip(TEST_OUTCOMES, tested, strict=True):
                        last_tests.add_metric([*labels, outcome], count)
                        tests_total.add_metric([*labels, outcome],
                                               state.tests_total.get((pipeline_id, branch, outcome), 0))

        yield from (info, last_result, last_finished, last_duration, broken, broken_since, broken_duration,
                    consecutive, running, waiting, runs_total, window_runs)
        yield m.PIPELINE_RUN_DURATION_SECONDS.histogram(run_duration)
        yield m.PIPELINE_QUEUE_DURATION_SECONDS.histogram(queue_duration)
        yield m.PIPELINE_TIME_TO_FIX_SECONDS.histogram(time_to_fix)
        yield m.PIPELINE_WINDOW_TIME_TO_FIX_SECONDS.histogram(window_ttf)
        if self._tests_enabled:
            yield from (last_tests, has_tests, tests_total)

"""The pull-requests area: open pull requests, review coverage, time to merge, bypasses (SPEC §4).

Per project and cycle (endpoints `repositories`, `pullrequests`):
- one repositories listing (names, default branches; disabled repositories are skipped),
- the project-level pull-request list of those completed since the watermark
  (`searchCriteria.status=completed`, `queryTimeRangeType=closed`, `minTime`), paged with `$top/$skip`,
- the project-level list of active pull requests (open and draft counts).
The first cycle reads the lookback window instead of "since the watermark". Each completed pull
request is classified once, as reviewed or not (see `is_reviewed`), and remembered by id while it is
in the window, so the watermark overlap never counts it twice. Abandoned pull requests are never read.

A project's refresh fetches everything first and applies it only if every request succeeded, so a
failed cycle leaves that project's last good numbers; other projects still refresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from exporter.areas import base
from exporter.areas.projects import Project
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.records import PullRequest, Repository
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.metrics.families import DAY, HOUR, MINUTE, HistogramData

# Pull requests closed just before the watermark may be indexed late; re-read a margin, dedupe by id.
WATERMARK_OVERLAP = 600.0
TIME_TO_MERGE_BUCKETS = (15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY, 2 * DAY, 4 * DAY,
                         7 * DAY, 14 * DAY, 30 * DAY)
REVIEWED_VALUES = ("true", "false")


def is_reviewed(pull_request: PullRequest) -> bool:
    """True when an individual reviewer other than the author voted approve or approve with suggestions.
    Group reviewers never count on their own; a person whose vote also counted for a group counts as the
    individual they are; the author's vote never counts."""
    return any(not r.is_container and r.id and r.id != pull_request.author_id and r.approved
               for r in pull_request.reviewers)


def is_bypassed(pull_request: PullRequest) -> bool:
    return pull_request.bypassed


@dataclass(frozen=True)
class ClosedPullRequest:
    id: int
    repository_id: str
    target_branch: str
    created: float | None
    closed: float
    reviewed: bool
    bypassed: bool


BranchKey = tuple[str, str]  # repository id, target branch


@dataclass
class ProjectState(base.ProjectState):
    """What is known about one project's pull requests; mutated only by the refresh thread."""

    watermark: float | None = None
    repositories: dict[str, Repository] = field(default_factory=dict)
    window: dict[int, ClosedPullRequest] = field(default_factory=dict)  # completed in the window, by id
    open: dict[BranchKey, int] = field(default_factory=dict)
    drafts: dict[BranchKey, int] = field(default_factory=dict)
    # Since-start accumulators; their keys are the known label sets.
    completed_total: dict[tuple[str, str, str], int] = field(default_factory=dict)
    bypassed_total: dict[BranchKey, int] = field(default_factory=dict)
    time_to_merge: dict[str, HistogramData] = field(default_factory=dict)


@dataclass
class _Fetched:
    repositories: dict[str, Repository]
    completed: list[ClosedPullRequest]
    open: dict[BranchKey, int]
    drafts: dict[BranchKey, int]
    now: float


def list_repositories(api: AzureDevOpsApi, config: Config, project: Project) -> dict[str, Repository]:
    """The project's enabled repositories that the `repositories` filter admits (shared with policies)."""
    return {r.id: r for r in api.repositories(project.id) if not r.disabled and config.repositories.matches(r.name)}


class PullRequestsArea(base.ProjectArea[ProjectState, _Fetched]):
    """Refreshes pull-request numbers for every admitted project and publishes its metric families."""

    name = m.AREA_PULL_REQUESTS

    # -- refresh ---------------------------------------------------------------------------------

    def _new_state(self, project: Project) -> ProjectState:
        return ProjectState(project)

    def _tracked(self, repository: Repository, branch: str | None) -> str | None:
        if branch is None or not self._config.branch_tracked(branch, repository.default_branch):
            return None
        return branch

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        project = state.project
        repositories = list_repositories(self._api, self._config, project)
        window_start = self._window_start(now)
        since = base.read_since(window_start, state.watermark if state.loaded else None, WATERMARK_OVERLAP)
        completed: dict[int, ClosedPullRequest] = {}
        for pr in self._api.completed_pull_requests(project.id, since):
            if pr.id in state.window or pr.id in completed or pr.status != "completed":
                continue
            repository = repositories.get(pr.repository_id) if pr.repository_id is not None else None
            closed = pr.closed
            if repository is None or closed is None or closed < window_start:
                continue
            branch = self._tracked(repository, pr.target_branch)
            if branch is None:
                continue
            completed[pr.id] = ClosedPullRequest(pr.id, repository.id, branch, pr.created, closed, is_reviewed(pr),
                                                 is_bypassed(pr))
        open_counts: dict[BranchKey, int] = {}
        drafts: dict[BranchKey, int] = {}
        seen_open: set[int] = set()
        for pr in self._api.active_pull_requests(project.id):
            repository = repositories.get(pr.repository_id) if pr.repository_id is not None else None
            if pr.id in seen_open or repository is None:
                continue
            branch = self._tracked(repository, pr.target_branch)
            if branch is None:
                continue
            seen_open.add(pr.id)
            key = (repository.id, branch)
            open_counts[key] = open_counts.get(key, 0) + 1
            if pr.is_draft:
                drafts[key] = drafts.get(key, 0) + 1
        return _Fetched(repositories, list(completed.values()), open_counts, drafts, now)

    # -- apply -------------------------------------------------------------------------------------

    def _apply(self, state: ProjectState, fetched: _Fetched, now: float) -> None:
        steady = state.loaded
        repos = fetched.repositories
        state.repositories = repos
        state.open, state.drafts = fetched.open, fetched.drafts
        state.watermark = fetched.now
        # Repositories deleted, disabled or filtered out leave now, with every series they had.
        state.window = {k: v for k, v in state.window.items() if v.repository_id in repos}
        state.completed_total = {k: v for k, v in state.completed_total.items() if k[0] in repos}
        state.bypassed_total = {k: v for k, v in state.bypassed_total.items() if k[0] in repos}
        state.time_to_merge = {k: v for k, v in state.time_to_merge.items() if k in repos}
        for pr in sorted(fetched.completed, key=lambda p: (p.closed, p.id)):
            state.window[pr.id] = pr
            self._init_series(state, (pr.repository_id, pr.target_branch))
            if steady:  # the initial window load is history, not events
                state.completed_total[(pr.repository_id, pr.target_branch, _flag(pr.reviewed))] += 1
                if pr.bypassed:
                    state.bypassed_total[(pr.repository_id, pr.target_branch)] += 1
                if pr.created is not None:
                    state.time_to_merge[pr.repository_id].observe(max(0.0, pr.closed - pr.created))
        window_start = fetched.now - self._config.lookback
        state.window = {k: v for k, v in state.window.items() if v.closed >= window_start}
        for repo in repos.values():
            state.time_to_merge.setdefault(repo.id, HistogramData(TIME_TO_MERGE_BUCKETS))
            if repo.default_branch is not None:
                self._init_series(state, (repo.id, repo.default_branch))
        for key in (*state.open, *state.drafts):
            self._init_series(state, key)

    @staticmethod
    def _init_series(state: ProjectState, key: BranchKey) -> None:
        """Every known label set exists from start-up at 0 (SPEC: rate() loses no event)."""
        repo_id, branch = key
        for flag in REVIEWED_VALUES:
            state.completed_total.setdefault((repo_id, branch, flag), 0)
        state.bypassed_total.setdefault(key, 0)
        state.time_to_merge.setdefault(repo_id, HistogramData(TIME_TO_MERGE_BUCKETS))

    # -- publish -----------------------------------------------------------------------------------

    def _publish(self, now: float) -> list[Metric]:
        return list(self._build_families())

    def _build_families(self) -> Iterable[Metric]:
        open_prs = m.PULL_REQUESTS_OPEN.gauge()
        open_drafts = m.PULL_REQUESTS_OPEN_DRAFT.gauge()
        completed_total = m.PULL_REQUESTS_COMPLETED.counter()
        window_completed = m.PULL_REQUESTS_WINDOW_COMPLETED.gauge()
        bypassed_total = m.PULL_REQUESTS_BYPASSED.counter()
        window_bypassed = m.PULL_REQUESTS_WINDOW_BYPASSED.gauge()
        time_to_merge: list[tuple[list[str], HistogramData]] = []
        for state in sorted(self._states.values(), key=lambda s: s.project.name.lower()):
            project = state.project.name
            window_counts: dict[tuple[str, str, str], int] = {}
            window_bypass: dict[BranchKey, int] = {}
            for pr in state.window.values():
                key3 = (pr.repository_id, pr.target_branch, _flag(pr.reviewed))
                window_counts[key3] = window_counts.get(key3, 0) + 1
                if pr.bypassed:
                    window_bypass[(pr.repository_id, pr.target_branch)] = \
                        window_bypass.get((pr.repository_id, pr.target_branch), 0) + 1
            branches = sorted(state.bypassed_total, key=lambda k: (state.repositories[k[0]].name.lower(), k[1]))
            for repo_id, branch in branches:
                names = [project, state.repositories[repo_id].name, branch]
                open_prs.add_metric(names, state.open.get((repo_id, branch), 0))
                open_drafts.add_metric(names, state.drafts.get((repo_id, branch), 0))
                for flag in REVIEWED_VALUES:
                    completed_total.add_metric([*names, flag], state.completed_total.get((repo_id, branch, flag), 0))
                    window_completed.add_metric([*names, flag], window_counts.get((repo_id, branch, flag), 0))
                bypassed_total.add_metric(names, state.bypassed_total[(repo_id, branch)])
                window_bypassed.add_metric(names, window_bypass.get((repo_id, branch), 0))
            for repo in sorted(state.repositories.values(), key=lambda r: r.name.lower()):
                time_to_merge.append(([project, repo.name], state.time_to_merge[repo.id]))
        yield from (open_prs, open_drafts, completed_total, window_completed, bypassed_total, window_bypassed)
        yield m.PULL_REQUEST_TIME_TO_MERGE_SECONDS.histogram(time_to_merge)


def _flag(value: bool) -> str:
    return "true" if value else "false"

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.areas.projects import Project, ProjectDirectory, refresh_each_project
from exporter.azdo.client import ApiError, AzureDevOpsClient
from exporter.azdo.fields import branch_name, format_time, parse_time
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.metrics.families import DAY, HOUR, MINUTE, HistogramData

PAGE_SIZE = 100  # below the service's default page (101), so a short page really is the last one
# Pull requests closed just before the watermark may be indexed late; re-read a margin, dedupe by id.
WATERMARK_OVERLAP = 600.0
REVIEW_VOTES = (10, 5)  # approved, approved with suggestions
TIME_TO_MERGE_BUCKETS = (15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY, 2 * DAY, 4 * DAY,
                         7 * DAY, 14 * DAY, 30 * DAY)
REVIEWED_VALUES = ("true", "false")


def is_reviewed(pull_request: dict[str, Any]) -> bool:
    """True when an individual reviewer other than the author voted approve (10) or approve with
    suggestions (5). Group reviewers (`isContainer`) never count on their own; a person whose vote also
    counted for a group (`votedFor`) counts as the individual they are; the author's vote never counts."""
    author = pull_request.get("createdBy")
    author_id = str(author.get("id") or "").lower() if isinstance(author, dict) else ""
    reviewers = pull_request.get("reviewers")
    if not isinstance(reviewers, list):
        return False
    for reviewer in reviewers:
        if not isinstance(reviewer, dict) or reviewer.get("isContainer") is True:
            continue
        reviewer_id = str(reviewer.get("id") or "").lower()
        if not reviewer_id or reviewer_id == author_id:
            continue
        if reviewer.get("vote") in REVIEW_VOTES:
            return True
    return False


def is_bypassed(pull_request: dict[str, Any]) -> bool:
    options = pull_request.get("completionOptions")
    return isinstance(options, dict) and options.get("bypassPolicy") is True


@dataclass(frozen=True)
class Repository:
    id: str
    name: str
    default_branch: str | None  # without refs/heads/


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
class ProjectState:
    """What is known about one project's pull requests; mutated only by the refresh thread."""

    project: Project
    loaded: bool = False
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


def list_repositories(client: AzureDevOpsClient, config: Config, project: Project) -> dict[str, Repository]:
    """The project's enabled repositories that the `repositories` filter admits (shared with policies)."""
    url = f"{config.organization_url}/{project.id}/_apis/git/repositories"
    body = client.get("repositories", url).body
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise ApiError("bad_response", "repositories: expected a list answer with 'value'", endpoint="repositories")
    found: dict[str, Repository] = {}
    for item in body["value"]:
        if not isinstance(item, dict):
            continue
        repo_id, name = item.get("id"), item.get("name")
        if not isinstance(repo_id, str) or not isinstance(name, str) or item.get("isDisabled") is True:
            continue
        if config.repositories.matches(name):
            found[repo_id.lower()] = Repository(repo_id.lower(), name, branch_name(item.get("defaultBranch")))
    return found


class PullRequestsArea:
    """Refreshes pull-request numbers for every admitted project and publishes its metric families."""

    name = m.AREA_PULL_REQUESTS

    def __init__(self, config: Config, client: AzureDevOpsClient, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._client = client
        self._projects = projects
        self._clock = clock
        self.interval = config.intervals.pull_requests
        self._states: dict[str, ProjectState] = {}
        self._families: list[Metric] = []

    # -- refresh ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        now = self._clock()
        self._states, failures = refresh_each_project(
            self._projects.projects(), self._states, lambda project, state: self._refresh_project(project, state, now))
        self._publish(now)
        failures.raise_if_any()

    def _refresh_project(self, project: Project, state: ProjectState | None, now: float) -> ProjectState:
        state = state or ProjectState(project)
        state.project = project
        fetched = self._fetch(state, now)
        self._apply(state, fetched)
        return state

    def _tracked(self, repository: Repository, ref: object) -> str | None:
        branch = branch_name(ref)
        if branch is None or not self._config.branch_tracked(branch, repository.default_branch):
            return None
        return branch

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        project = state.project
        repositories = list_repositories(self._client, self._config, project)
        url = f"{self._config.organization_url}/{project.id}/_apis/git/pullrequests"
        window_start = now - self._config.lookback
        since = window_start
        if state.loaded and state.watermark is not None:
            since = max(window_start, state.watermark - WATERMARK_OVERLAP)
        params = {"searchCriteria.status": "completed", "searchCriteria.queryTimeRangeType": "closed",
                  "searchCriteria.minTime": format_time(since)}
        completed: dict[int, ClosedPullRequest] = {}
        for page in self._client.pages_by_skip("pullrequests", url, params, page_size=PAGE_SIZE):
            for item in page:
                pr_id = item.get("pullRequestId")
                if not isinstance(pr_id, int) or pr_id in state.window or pr_id in completed:
                    continue
                if str(item.get("status", "")).lower() != "completed":
                    continue
                repository = self._repository_of(repositories, item)
                closed = parse_time(item.get("closedDate"))
                if repository is None or closed is None or closed < window_start:
                    continue
                branch = self._tracked(repository, item.get("targetRefName"))
                if branch is None:
                    continue
                completed[pr_id] = ClosedPullRequest(pr_id, repository.id, branch, parse_time(item.get("creationDate")),
                                                     closed, is_reviewed(item), is_bypassed(item))
        open_counts: dict[BranchKey, int] = {}
        drafts: dict[BranchKey, int] = {}
        seen_open: set[int] = set()
        for page in self._client.pages_by_skip("pullrequests", url, {"searchCriteria.status": "active"},
                                               page_size=PAGE_SIZE):
            for item in page:
                pr_id = item.get("pullRequestId")
                repository = self._repository_of(repositories, item)
                if not isinstance(pr_id, int) or pr_id in seen_open or repository is None:
                    continue
                branch = self._tracked(repository, item.get("targetRefName"))
                if branch is None:
                    continue
                seen_open.add(pr_id)
                key = (repository.id, branch)
                open_counts[key] = open_counts.get(key, 0) + 1
                if item.get("isDraft") is True:
                    drafts[key] = drafts.get(key, 0) + 1
        return _Fetched(repositories, list(completed.values()), open_counts, drafts, now)

    @staticmethod
    def _repository_of(repositories: dict[str, Repository], item: dict[str, Any]) -> Repository | None:
        repo = item.get("repository")
        repo_id = repo.get("id") if isinstance(repo, dict) else None
        return repositories.get(repo_id.lower()) if isinstance(repo_id, str) else None

    # -- apply -------------------------------------------------------------------------------------

    def _apply(self, state: ProjectState, fetched: _Fetched) -> None:
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
        state.loaded = True

    @staticmethod
    def _init_series(state: ProjectState, key: BranchKey) -> None:
        """Every known label set exists from start-up at 0 (SPEC: rate() loses no event)."""
        repo_id, branch = key
        for flag in REVIEWED_VALUES:
            state.completed_total.setdefault((repo_id, branch, flag), 0)
        state.bypassed_total.setdefault(key, 0)
        state.time_to_merge.setdefault(repo_id, HistogramData(TIME_TO_MERGE_BUCKETS))

    # -- publish -----------------------------------------------------------------------------------

    def families(self) -> list[Metric]:
        return self._families

    def _publish(self, now: float) -> None:
        self._families = list(self._build_families())

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

"""Git area of the simulated organization: repositories and pull requests with reviewers.

Like the builds model, two kinds of pull requests live side by side:

* *scheduled* pull requests, produced by a :class:`PrStream` (one repository + one target branch +
  a deterministic schedule). They are never stored: the pull request of slot ``k`` is recomputed
  from a 64-bit hash of ``(stream seed, k)``, so 30,000 pull requests a month cost no memory.
* *explicit* pull requests, added with :func:`add_pull_request` (scenarios and tests).

A pull request is visible once created (``creation <= now``); it is ``active`` until its closing
time and then has its final status (``completed`` or ``abandoned``).

Reviewer votes follow Azure DevOps: 10 approved, 5 approved with suggestions, 0 no vote,
-5 waiting for the author, -10 rejected. A group (team) reviewer has ``is_container``; a person
whose vote also counted for a group lists it in ``voted_for``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from exporter.simulator.model import (
    DAY,
    HOUR,
    MINUTE,
    PEOPLE,
    Identity,
    Organization,
    Project,
    hash_ints,
    hash_str,
    slot_range,
    stable_uuid,
    unit,
)

KEY = "git"

APPROVED, APPROVED_WITH_SUGGESTIONS, NO_VOTE, WAITING, REJECTED = 10, 5, 0, -5, -10
STATUSES = ("active", "completed", "abandoned")
#: scheduled pull-request ids are PR_ID_BASE + k * stride + stream index
PR_ID_BASE = 100_000
#: explicit pull requests of a generated organization are numbered from here
EXPLICIT_PR_BASE = 1


@dataclass(slots=True)
class Repository:
    """A Git repository. ``default_branch`` is a full ref, or None for an empty repository."""

    id: str
    name: str
    project_id: str
    default_branch: str | None = "refs/heads/main"
    is_disabled: bool = False
    size: int = 0


@dataclass(frozen=True, slots=True)
class Reviewer:
    identity: Identity
    vote: int = NO_VOTE
    is_container: bool = False
    voted_for: tuple[Identity, ...] = ()
    is_required: bool = False


@dataclass(slots=True)
class PullRequest:
    """One pull request; ``status`` is its final status, reached at ``closed`` (None: stays active)."""

    id: int
    project_id: str
    repository_id: str
    created_by: Identity
    creation: float
    source_ref: str
    target_ref: str
    status: str = "active"
    closed: float | None = None
    is_draft: bool = False
    reviewers: tuple[Reviewer, ...] = ()
    bypass: bool = False
    bypass_reason: str | None = None
    title: str = ""
    merge_strategy: str = "squash"
    closed_by: Identity | None = None

    def status_at(self, now: float) -> str:
        if self.closed is not None and self.closed <= now:
            return self.status
        return "active"

    def visible_at(self, now: float) -> bool:
        return self.creation <= now


@dataclass(slots=True)
class PrStream:
    """An endless schedule of pull requests into one repository branch.

    Slot ``k`` is created at ``epoch + phase + k * period + jitter * u``; it lives ``lifetime`` and is
    then completed (or abandoned with ``abandon_rate``). The review profile draws, per slot, one of:
    peer approval, approval with suggestions, self-approval only, group approval only, no reviewer.
    """

    index: int
    project_id: str
    repository_id: str
    target_ref: str
    seed: int
    period: float
    phase: float
    jitter: float
    lifetime: tuple[float, float]
    abandon_rate: float = 0.08
    draft_rate: float = 0.15  # while active
    unreviewed_rate: float = 0.05  # completed without any reviewer
    self_rate: float = 0.03  # only the author approved
    group_rate: float = 0.03  # only the team approved
    bypass_rate: float = 0.0  # completion bypassed the branch policies
    team: Identity | None = None
    start_k: int = 0

    def slot_range(self, epoch: float, lo: float, hi: float) -> range:
        """Slots whose creation time may fall within [lo, hi]."""
        return slot_range(epoch, self.phase, self.jitter, self.period, self.start_k, lo, hi)


@dataclass
class GitData:
    """Everything of the git area, stored in ``org.extensions["git"]``."""

    repositories: dict[str, Repository] = field(default_factory=dict)  # by id
    explicit: list[PullRequest] = field(default_factory=list)
    streams: list[PrStream] = field(default_factory=list)
    stride: int = 1
    next_id: int = EXPLICIT_PR_BASE
    teams: dict[str, Identity] = field(default_factory=dict)  # by project id


def git_data(org: Organization) -> GitData:
    """The git area's data, created on first use (so ``Organization.empty()`` works too)."""
    return org.extension(KEY, GitData)


def team_of(org: Organization, project: Project) -> Identity:
    """The project's default team, a group reviewer (``isContainer``)."""
    data = git_data(org)
    team = data.teams.get(project.id)
    if team is None:
        team = Identity(stable_uuid(org.name, "team", project.id), f"[{project.name}]\\{project.name} Team",
                        f"vstfs:///Classification/TeamProject/{project.id}\\{project.name} Team",
                        "vssgp." + f"{hash_str(project.id):x}"[:12])
        data.teams[project.id] = team
    return team


# -------------------------------------------------------------------------------------------- building


def add_repository(org: Organization, project: str, name: str, default_branch: str | None = "main",
                   is_disabled: bool = False) -> Repository:
    """Add a repository to ``project`` (its id is the one builds use for the same name)."""
    with org.lock:
        p = org._require_project(project)
        ref = None if default_branch is None else _ref(default_branch)
        repo = Repository(org.repository_id(p, name), name, p.id, ref, is_disabled,
                          size=1024 * (1 + hash_str(name) % 5000))
        git_data(org).repositories[repo.id] = repo
        return repo


def repository(org: Organization, project: str, name: str) -> Repository:
    p = org._require_project(project)
    repo = git_data(org).repositories.get(org.repository_id(p, name))
    if repo is None:
        raise KeyError(f"no repository {name!r} in {project!r}")
    return repo


def remove_repository(org: Organization, project: str, name: str) -> None:
    with org.lock:
        del git_data(org).repositories[repository(org, project, name).id]


def add_pull_request(
    org: Organization,
    project: str,
    repo: str,
    *,
    created_by: Identity,
    creation: float,
    target: str = "main",
    source: str | None = None,
    status: str = "active",
    closed: float | None = None,
    is_draft: bool = False,
    reviewers: tuple[Reviewer, ...] | list[Reviewer] = (),
    bypass: bool = False,
    bypass_reason: str | None = None,
    title: str = "",
    closed_by: Identity | None = None,
) -> PullRequest:
    """Add an explicit pull request. ``status`` is the final one, reached at ``closed``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    if (status == "active") != (closed is None):
        raise ValueError("an active pull request has no closing time; a closed one needs it")
    with org.lock:
        data = git_data(org)
        r = repository(org, project, repo)
        pr_id = data.next_id
        data.next_id += 1
        pr = PullRequest(
            id=pr_id, project_id=r.project_id, repository_id=r.id, created_by=created_by,
            creation=float(creation), source_ref=_ref(source or f"feature/change-{pr_id}"),
            target_ref=_ref(target), status=status, closed=None if closed is None else float(closed),
            is_draft=is_draft, reviewers=tuple(reviewers), bypass=bypass, bypass_reason=bypass_reason,
            title=title or f"Change {pr_id}", closed_by=closed_by,
        )
        data.explicit.append(pr)
        return pr


def _ref(branch: str) -> str:
    return branch if branch.startswith("refs/") else "refs/heads/" + branch


# -------------------------------------------------------------------------------------------- queries


def repositories(org: Organization, project: Project) -> list[Repository]:
    """Repositories of a project, by name."""
    with org.lock:
        found = [r for r in git_data(org).repositories.values() if r.project_id == project.id]
    return sorted(found, key=lambda r: r.name.lower())


def pull_requests(org: Organization, project: Project, *, created: tuple[float, float] | None = None,
                  closed: tuple[float, float] | None = None, now: float) -> list[PullRequest]:
    """Visible pull requests of a project whose creation (or closing) time is in [lo, hi], unordered.

    Without ranges: every visible pull request (scheduled ones from the start of history).
    """
    data = git_data(org)
    out: list[PullRequest] = []
    with org.lock:
        repos = {r.id for r in data.repositories.values() if r.project_id == project.id}
        for pr in data.explicit:
            if pr.repository_id in repos and pr.visible_at(now) and _in_ranges(pr, created, closed):
                out.append(pr)
        for st in data.streams:
            if st.repository_id not in repos:
                continue
            out.extend(stream_pull_requests(org, st, created=created, closed=closed, now=now))
    return out


def active_pull_requests(org: Organization, project: Project, now: float) -> list[PullRequest]:
    """Pull requests active at ``now`` (bounded by the streams' longest lifetime)."""
    data = git_data(org)
    longest = max((st.lifetime[1] for st in data.streams), default=0.0)
    out: list[PullRequest] = []
    with org.lock:
        repos = {r.id for r in data.repositories.values() if r.project_id == project.id}
        out = [pr for pr in data.explicit
               if pr.repository_id in repos and pr.visible_at(now) and pr.status_at(now) == "active"]
        for st in data.streams:
            if st.repository_id in repos:
                out.extend(pr for pr in stream_pull_requests(org, st, created=(now - longest, now), now=now)
                           if pr.status_at(now) == "active")
    return out


def _in_ranges(pr: PullRequest, created: tuple[float, float] | None, closed: tuple[float, float] | None) -> bool:
    if created is not None and not created[0] <= pr.creation <= created[1]:
        return False
    if closed is not None:
        if pr.closed is None or not closed[0] <= pr.closed <= closed[1]:
            return False
    return True


def stream_pull_requests(org: Organization, st: PrStream, *, created: tuple[float, float] | None = None,
                         closed: tuple[float, float] | None = None, now: float) -> Iterator[PullRequest]:
    """Visible scheduled pull requests of one stream within the ranges."""
    lo, hi = org.epoch, now
    if created is not None:
        lo, hi = max(lo, created[0]), min(hi, created[1])
    if closed is not None:
        lo, hi = max(lo, closed[0] - st.lifetime[1]), min(hi, closed[1])
    if hi < lo:
        return
    for k in st.slot_range(org.epoch, lo, hi):
        pr = scheduled_pull_request(org, st, k)
        if pr.visible_at(now) and lo <= pr.creation <= hi and _in_ranges(pr, created, closed):
            if closed is not None and (pr.closed is None or pr.closed > now):
                continue
            yield pr


def scheduled_pull_request(org: Organization, st: PrStream, k: int) -> PullRequest:
    data = git_data(org)
    h = hash_ints(st.seed, k)
    creation = org.epoch + st.phase + k * st.period + st.jitter * unit(h, 0)
    life = st.lifetime[0] + (st.lifetime[1] - st.lifetime[0]) * unit(h, 16)
    closed = creation + life
    author = PEOPLE[(h >> 8) % len(PEOPLE)]
    peer = PEOPLE[((h >> 8) % len(PEOPLE) + 1 + (h >> 40) % (len(PEOPLE) - 1)) % len(PEOPLE)]
    h2 = hash_ints(h, 7)
    u = unit(h2, 0)
    status = "abandoned" if u < st.abandon_rate else "completed"
    team = st.team
    reviewers: tuple[Reviewer, ...]
    r = unit(h2, 16)
    if r < st.unreviewed_rate:
        reviewers = ()
    elif r < st.unreviewed_rate + st.self_rate:
        reviewers = (Reviewer(author, APPROVED),)
    elif r < st.unreviewed_rate + st.self_rate + st.group_rate and team is not None:
        reviewers = (Reviewer(team, APPROVED, is_container=True, is_required=True),)
    else:
        vote = APPROVED_WITH_SUGGESTIONS if unit(h2, 32) < 0.25 else APPROVED
        if team is not None and unit(h2, 48) < 0.5:
            reviewers = (Reviewer(team, vote, is_container=True, is_required=True),
                         Reviewer(peer, vote, voted_for=(team,)))
        else:
            reviewers = (Reviewer(peer, vote),)
    is_draft = unit(hash_ints(h, 9), 0) < st.draft_rate
    bypass = status == "completed" and unit(hash_ints(h, 11), 0) < st.bypass_rate
    return PullRequest(
        id=PR_ID_BASE + k * data.stride + st.index, project_id=st.project_id, repository_id=st.repository_id,
        created_by=author, creation=creation, source_ref=f"refs/heads/feature/{k % 997}-{(h >> 20) % 1000}",
        target_ref=st.target_ref, status=status, closed=closed, is_draft=is_draft, reviewers=reviewers,
        bypass=bypass, bypass_reason="Hotfix: release blocker" if bypass else None,
        title=_TITLES[(h >> 24) % len(_TITLES)], merge_strategy="squash" if k % 3 else "noFastForward",
        closed_by=author if bypass or status == "abandoned" else peer,
    )


def get_pull_request(org: Organization, pr_id: int) -> PullRequest | None:
    data = git_data(org)
    with org.lock:
        for pr in data.explicit:
            if pr.id == pr_id:
                return pr
        if pr_id >= PR_ID_BASE and data.streams:
            k, idx = divmod(pr_id - PR_ID_BASE, data.stride)
            if idx < len(data.streams) and k >= data.streams[idx].start_k:
                return scheduled_pull_request(org, data.streams[idx], k)
    return None


_TITLES = (
    "Add retry to payment client", "Fix null reference in importer", "Bump dependencies", "Refactor config",
    "Add tracing to checkout", "Remove feature flag", "Speed up tests", "Handle timeouts upstream",
    "Update README", "Tighten input validation",
)


# -------------------------------------------------------------------------------------------- generation


def add_stream(org: Organization, repo: Repository, target: str = "main", *, per_day: float,
               lifetime: tuple[float, float] = (30 * MINUTE, 2 * DAY), **kwargs: object) -> PrStream:
    """Attach a pull-request schedule to a repository branch (generation and tests)."""
    data = git_data(org)
    seed = hash_ints(org.seed, hash_str(org.name), hash_str(repo.id), hash_str(target), len(data.streams))
    period = DAY / per_day
    p = org.project(repo.project_id)
    st = PrStream(index=len(data.streams), project_id=repo.project_id, repository_id=repo.id,
                  target_ref=_ref(target), seed=seed, period=period, phase=unit(seed, 0) * period,
                  jitter=period * 0.5, lifetime=lifetime,
                  team=team_of(org, p) if p is not None else None, **kwargs)  # type: ignore[arg-type]
    data.streams.append(st)
    data.stride = max(1, len(data.streams))
    return st


def _person(name: str) -> Identity:
    return next(p for p in PEOPLE if p.display_name.startswith(name))


def populate(org: Organization) -> None:
    """Repositories for every pipeline repository, the named review scenarios, generic streams."""
    data = git_data(org)
    data.next_id = EXPLICIT_PR_BASE
    for p in org.projects:
        names = sorted({pl.repository for pl in p.pipelines.values()}, key=str.lower)
        for name in names:
            add_repository(org, p.name, name, default_branch="master" if name == "legacy" else "main")
    if org.project("Payments") is not None and org.project("Platform") is not None:
        _scenarios(org)
    scale = org.scale or "small"
    per_project = {"small": 12.0, "medium": 12.0, "large": 10.0}[scale]
    for p in org.projects:
        if p.name in ("Payments", "Platform"):
            continue
        repos = repositories(org, p)
        for repo in repos:
            h = hash_ints(org.seed, hash_str(repo.id))
            add_stream(org, repo, per_day=per_project / len(repos), unreviewed_rate=0.02 + 0.1 * unit(h, 0),
                       self_rate=0.02, group_rate=0.02)


def _scenarios(org: Organization) -> None:
    """Named review scenarios (times relative to the anchor); see docs/review-and-audit.md."""
    a = org.anchor
    alice, bob, carol, dan = _person("Alice"), _person("Bob"), _person("Carol"), _person("Dan")
    payments = org._require_project("Payments")
    team = team_of(org, payments)
    H = HOUR

    def done(title: str, author: Identity, reviewers: tuple[Reviewer, ...], created: float, closed: float,
             bypass: bool = False, repo: str = "payments", project: str = "Payments", target: str = "main",
             status: str = "completed") -> None:
        add_pull_request(org, project, repo, created_by=author, creation=a - created, target=target,
                         status=status, closed=a - closed, reviewers=reviewers, bypass=bypass,
                         bypass_reason="Hotfix: production outage" if bypass else None, title=title,
                         closed_by=author if bypass or status == "abandoned" else reviewers[0].identity
                         if reviewers else author)

    # payments: every review case once, in the window
    done("Peer approved", alice, (Reviewer(bob, APPROVED),), 50 * H, 48 * H)
    done("Approved with suggestions", bob, (Reviewer(carol, APPROVED_WITH_SUGGESTIONS),), 40 * H, 30 * H)
    done("Self-approved", carol, (Reviewer(carol, APPROVED),), 26 * H, 25 * H)
    done("Team approved, nobody individually", dan,
         (Reviewer(team, APPROVED, is_container=True, is_required=True), Reviewer(alice, NO_VOTE)), 22 * H, 20 * H)
    done("Individual voted for the team", alice,
         (Reviewer(team, APPROVED, is_container=True, is_required=True),
          Reviewer(bob, APPROVED, voted_for=(team,)), Reviewer(alice, APPROVED)), 18 * H, 17 * H)
    done("One reject, one approve", bob, (Reviewer(carol, REJECTED), Reviewer(dan, APPROVED)), 16 * H, 12 * H)
    done("Merged without review", carol, (), 10 * H, 9 * H)
    done("Hotfix bypassing policies", dan, (Reviewer(dan, APPROVED),), 6 * H, 5.5 * H, bypass=True)
    done("Abandoned experiment", alice, (Reviewer(bob, REJECTED),), 8 * H, 4 * H, status="abandoned")
    done("Release fix", bob, (Reviewer(alice, APPROVED),), 30 * H, 29 * H, target="release/2026.11")
    done("Old change, before the window", alice, (Reviewer(bob, APPROVED),), 40 * DAY, 39 * DAY)
    add_pull_request(org, "Payments", "payments", created_by=alice, creation=a - 3 * H, target="main",
                     reviewers=(Reviewer(bob, WAITING),), title="Open change")
    add_pull_request(org, "Payments", "payments", created_by=bob, creation=a - 2 * H, target="main",
                     is_draft=True, title="Draft: rework retries")
    # frontend: always reviewed; platform legacy: merged without review, no reviewer policy
    done("Frontend tweak", carol, (Reviewer(alice, APPROVED),), 12 * H, 11 * H, repo="frontend")
    for n in range(3):
        done(f"Legacy change {n + 1}", dan, (), (20 + n) * H, (19 + n) * H, project="Platform", repo="legacy",
             target="master")
    # evolving traffic, so counters move in a long-running demo
    add_stream(org, repository(org, "Payments", "payments"), per_day=8, unreviewed_rate=0.1, self_rate=0.05,
               group_rate=0.05, bypass_rate=0.03)
    add_stream(org, repository(org, "Payments", "frontend"), per_day=4, unreviewed_rate=0.0, self_rate=0.0,
               group_rate=0.0)
    add_stream(org, repository(org, "Platform", "core"), per_day=3, unreviewed_rate=0.02)
    add_stream(org, repository(org, "Platform", "legacy"), "master", per_day=1, unreviewed_rate=0.6,
               self_rate=0.2, group_rate=0.0)

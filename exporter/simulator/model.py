"""The simulated Azure DevOps organization: projects, pipelines and runs that evolve in time.

Two kinds of runs live side by side:

* *scheduled* runs, produced by a :class:`Stream` (one pipeline + one branch + a deterministic
  schedule). They are never stored: the run of slot ``k`` is recomputed from a 64-bit hash of
  ``(stream seed, k)`` whenever it is needed, which keeps a 5,000-pipeline organization in a few MB
  and lets the organization keep producing runs as simulated time moves on.
* *explicit* runs, added with :meth:`Organization.add_run` (tests that build their own data).

A run is visible once its queue time is <= ``org.now()``; it is ``notStarted`` until its start
time, ``inProgress`` until its finish time and ``completed`` after. All times are float epoch
seconds; comparisons that must be exact (continuation tokens) use integer 100 ns ticks.
"""

from __future__ import annotations

import bisect
import importlib
import math
import pkgutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar, cast

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

#: how far before the anchor the generated history starts
HISTORY_DAYS = 47
#: upper bound of queue wait + duration of any scheduled run: lets queries on finish/start time
#: turn into a bounded range of queue times
MAX_SCHEDULED_SPAN = 2 * HOUR

RESULTS = ("succeeded", "partiallySucceeded", "failed", "canceled")
SCALES = ("small", "medium", "large")

_T = TypeVar("_T")

_NAMESPACE = uuid.UUID("6f1d8a52-0c8e-4b7e-9d7a-2f4f3b1e9a10")
_M64 = (1 << 64) - 1

# Scheduled run ids are SCHED_ID_BASE + k * stride + stream index (so an id maps back to its slot);
# explicit runs of a generated organization are numbered from EXPLICIT_ID_BASE to avoid collisions.
SCHED_ID_BASE = 1000
EXPLICIT_ID_BASE = 500_000_000


# --------------------------------------------------------------------------------------------
# hashing and time helpers
# --------------------------------------------------------------------------------------------


def _mix(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash (pure Python, deterministic)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hash_ints(*parts: int) -> int:
    """Combine integers into one 64-bit hash."""
    h = 0x243F6A8885A308D3
    for p in parts:
        h = _mix(h ^ (p & _M64))
    return h


def hash_str(s: str) -> int:
    """Stable 64-bit hash of a string (Python's hash() is salted per process)."""
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & _M64
    return _mix(h)


def unit(h: int, shift: int = 0) -> float:
    """A float in [0, 1) taken from 16 bits of hash ``h``."""
    return ((h >> shift) & 0xFFFF) / 65536.0


def time_id(t: float, salt: int) -> int:
    """An id that grows with time ``t`` (as database ids do); ``salt`` tells apart ids of one millisecond."""
    return int(t * 1000) * 64 + salt % 64


def slot_range(epoch: float, phase: float, jitter: float, period: float, start_k: int, lo: float,
               hi: float) -> range:
    """Slots ``k >= start_k`` of a schedule ``epoch + phase + k * period (+ jitter)`` that may fall in [lo, hi]."""
    base = epoch + phase
    k0 = max(start_k, math.floor((lo - base - jitter) / period))
    k1 = math.floor((hi - base) / period)
    return range(k0, k1 + 1)


def check_result(result: str | None, results: tuple[str, ...], name: str = "result") -> None:
    """A finished item's ``result`` must be one of ``results``."""
    if result not in results:
        raise ValueError(f"{name} must be one of {results}")


def check_outcome(result: str | None, finish: float | None, results: tuple[str, ...], name: str = "result",
                  finish_name: str = "finish_time") -> None:
    """An explicit item is finished (a result and a finish time) or not (neither); its result is known."""
    if result is not None and result not in results:
        raise ValueError(f"{name} must be one of {results} or None")
    if (result is None) != (finish is None):
        raise ValueError(f"{name} and {finish_name} go together")


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


_I = TypeVar("_I", bound=_Identified)


def find_by_id(items: Iterable[_I], item_id: int, what: str) -> _I:
    """The item with id ``item_id``; KeyError ``no {what} {item_id}`` if there is none."""
    for item in items:
        if item.id == item_id:
            return item
    raise KeyError(f"no {what} {item_id}")


def to_ticks(t: float) -> int:
    """Epoch seconds -> integer 100 ns ticks (the 7 fractional digits of Azure DevOps dates)."""
    return int(round(t * 10_000_000))


def format_ticks(ticks: int) -> str:
    """Integer ticks -> ``2026-10-08T03:37:08.1587704Z`` (always 7 fractional digits)."""
    secs, frac = divmod(ticks, 10_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z"


def format_time(t: float) -> str:
    """Epoch seconds -> Azure DevOps ISO date with 7 fractional digits and ``Z``."""
    return format_ticks(to_ticks(t))


def parse_ticks(value: str) -> int:
    """Parse an ISO-8601 date (any fraction length, ``Z`` or offset, or a date) into exact ticks.

    Exact integer arithmetic matters: a continuation token must compare equal to the key of the
    item it was made from, which float parsing would not guarantee.
    """
    s = value.strip()
    frac_ticks = 0
    main = s
    tz = ""
    # split off the zone designator
    if s.endswith(("Z", "z")):
        main, tz = s[:-1], "+00:00"
    else:
        for sign in ("+", "-"):
            pos = s.rfind(sign)
            if pos > 10:  # a '-' inside the date part is not an offset
                main, tz = s[:pos], s[pos:]
                break
    if "." in main:
        main, frac = main.split(".", 1)
        if not frac.isdigit():
            raise ValueError(f"bad fraction in date {value!r}")
        frac_ticks = int((frac + "0000000")[:7])
    dt = datetime.fromisoformat(main + tz)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10_000_000 + frac_ticks


def stable_uuid(*parts: str) -> str:
    """A uuid string that depends only on ``parts``."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def sha_for(a: int, b: int) -> str:
    """A deterministic 40-hex-digit commit id."""
    h = hash_ints(a, b)
    return f"{h:016x}{_mix(h ^ 0x5A5A):016x}{_mix(h + 1) >> 32:08x}"


_DAY_STR: dict[int, str] = {}


def day_string(t: float) -> str:
    """``YYYYMMDD`` of an epoch time (UTC), cached: build numbers need it for every run."""
    d = int(t // DAY)
    s = _DAY_STR.get(d)
    if s is None:
        s = _DAY_STR[d] = datetime.fromtimestamp(d * DAY, UTC).strftime("%Y%m%d")
    return s


# --------------------------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """An Azure DevOps identity (IdentityRef): people and service accounts."""

    id: str
    display_name: str
    unique_name: str | None
    descriptor: str


def _person(display: str, unique: str | None) -> Identity:
    key = unique or display
    return Identity(stable_uuid("identity", key), display, unique, "aad." + f"{hash_str(key):x}"[:12])


#: people who commit, queue runs and (later) open pull requests; the order is part of the data
PEOPLE: tuple[Identity, ...] = tuple(
    _person(name, f"{name.split()[0].lower()}@contoso.example")
    for name in (
        "Alice Author", "Bob Builder", "Carol Coder", "Dan Deployer", "Erin Engineer",
        "Frank Fixer", "Grace Gatekeeper", "Heidi Hotfix", "Ivan Integrator", "Judy Jenkins",
    )
)
SERVICE_IDENTITY = Identity(
    "00000002-0000-8888-8000-000000000000", "Microsoft.VisualStudio.Services.TFS", None, "s2s.U2VydmljZQ"
)


# --------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One build (pipeline run). Times are epoch seconds; ``branch`` is a full ref."""

    id: int
    project_id: str
    pipeline_id: int
    branch: str
    queue_time: float
    start_time: float | None
    finish_time: float | None
    result: str | None
    reason: str = "individualCI"
    tests: tuple[int, int, int] | None = None  # (passed, failed, other)
    source_version: str = ""
    requested_for: Identity = SERVICE_IDENTITY
    build_number: str = ""

    def status_at(self, now: float) -> str:
        """``notStarted``, ``inProgress`` or ``completed`` as seen at simulated time ``now``."""
        if self.finish_time is not None and self.result is not None and self.finish_time <= now:
            return "completed"
        if self.start_time is not None and self.start_time <= now:
            return "inProgress"
        return "notStarted"

    def visible_at(self, now: float) -> bool:
        """A run exists for the API once it has been queued."""
        return self.queue_time <= now


@dataclass(slots=True)
class Pipeline:
    """A build definition. ``folder`` is slash-separated without leading slash ("" = root)."""

    id: int
    name: str
    project_id: str
    folder: str = ""
    default_branch: str = "main"
    repository: str = ""
    has_tests: bool = False
    created: float = 0.0
    modified: float = 0.0
    revision: int = 1
    pool: str = "Azure Pipelines"
    streams: list[Stream] = field(default_factory=list)
    explicit_runs: list[Run] = field(default_factory=list)
    test_base: int = 100  # typical number of tests per run (scheduled runs)

    @property
    def path(self) -> str:
        """Azure DevOps folder path with backslashes: ``\\`` or ``\\infra``."""
        return folder_path(self.folder)

    @property
    def full_name(self) -> str:
        """``folder/name`` as used in metric labels."""
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def default_ref(self) -> str:
        return full_ref(self.default_branch)


@dataclass(slots=True)
class Project:
    """A team project."""

    id: str
    name: str
    description: str = ""
    revision: int = 1
    last_update: float = 0.0
    pipelines: dict[int, Pipeline] = field(default_factory=dict)


@dataclass(slots=True)
class Stream:
    """A deterministic, endless schedule of runs of one pipeline on one branch.

    Slot ``k`` is queued at ``epoch + phase + k * period + jitter * u`` (``u`` from the hash), so
    consecutive slots never swap and the slots that fall in a time range are found by arithmetic.
    """

    index: int
    pipeline: Pipeline
    branch: str  # full ref; ignored when pr_base > 0
    seed: int
    period: float
    phase: float
    jitter: float
    wait: tuple[float, float]
    duration: tuple[float, float]
    reason: str = "individualCI"
    start_k: int = 0
    pr_base: int = 0  # > 0: PR validation runs on refs/pull/{pr_base + k // 4}/merge
    fail_rate: float = 0.03
    cancel_rate: float = 0.01
    partial_rate: float = 0.01
    # (from, to, result): runs whose finish time falls in [from, to) get that result
    rules: tuple[tuple[float, float, str], ...] = ()
    overrides: dict[int, str] = field(default_factory=dict)

    def slot_range(self, epoch: float, lo: float, hi: float) -> range:
        """Slots whose queue time may fall within [lo, hi]."""
        return slot_range(epoch, self.phase, self.jitter, self.period, self.start_k, lo, hi)


class SlotBuild(NamedTuple):
    """A scheduled build as the areas that follow builds see it."""

    run_id: int
    start: float
    finish: float
    result: str


def normal_folder(folder: str) -> str:
    """A folder as given (slashes or backslashes, leading or not) -> slash-separated, no leading slash."""
    return folder.strip("/\\").replace("\\", "/")


def folder_path(folder: str) -> str:
    """A slash-separated folder ("" = root) as Azure DevOps writes it: ``\\`` or ``\\infra``."""
    return "\\" + folder.replace("/", "\\") if folder else "\\"


def full_ref(branch: str) -> str:
    """``main`` -> ``refs/heads/main``; a value starting with ``refs/`` is kept."""
    return branch if branch.startswith("refs/") else "refs/heads/" + branch


# --------------------------------------------------------------------------------------------
# the organization
# --------------------------------------------------------------------------------------------


class Organization:
    """A whole simulated organization. Thread-safe: the HTTP server reads it from many threads."""

    def __init__(
        self,
        *,
        now_fn: Callable[[], float] = time.time,
        speed: float = 1.0,
        anchor: float | None = None,
        name: str = "contoso",
        seed: int = 0,
        scale: str | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self.scale = scale
        self.speed = float(speed)
        self._now_fn = now_fn
        self._clock0 = now_fn()
        self.anchor = float(anchor) if anchor is not None else self._clock0
        #: slot 0 of every stream is counted from here
        self.epoch = self.anchor - HISTORY_DAYS * DAY
        self.lock = threading.RLock()
        self._projects: dict[str, Project] = {}  # by id
        self._streams: list[Stream] = []
        self._stride = 1
        self._explicit: dict[int, Run] = {}
        self._overrides: dict[int, Run] = {}
        self._next_pipeline_id = 1
        self._next_run_id = 1
        #: data of other areas (git, releases, ...), kept by their own ``*_model`` modules under a key each
        self.extensions: dict[str, Any] = {}

    def extension(self, key: str, factory: Callable[[], _T]) -> _T:
        """The data an area's ``*_model`` module keeps under ``key``, made by ``factory`` on first use."""
        with self.lock:
            d = self.extensions.get(key)
            if d is None:
                d = self.extensions[key] = factory()
            return cast(_T, d)

    # ---------------------------------------------------------------- construction

    @classmethod
    def empty(
        cls,
        now_fn: Callable[[], float] = time.time,
        anchor: float | None = None,
        name: str = "contoso",
        speed: float = 1.0,
    ) -> Organization:
        """An organization without projects, for tests that build their own data."""
        return cls(now_fn=now_fn, speed=speed, anchor=anchor, name=name)

    @classmethod
    def generate(
        cls,
        seed: int = 1,
        scale: str = "small",
        now_fn: Callable[[], float] = time.time,
        speed: float = 1.0,
        anchor: float | None = None,
        name: str = "contoso",
    ) -> Organization:
        """The seeded organization with the named scenarios plus generic projects (see docs)."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
        org = cls(now_fn=now_fn, speed=speed, anchor=anchor, name=name, seed=seed, scale=scale)
        _populate(org)
        _populate_extensions(org)
        org._stride = max(1, len(org._streams))
        org._next_run_id = EXPLICIT_ID_BASE
        return org

    # ---------------------------------------------------------------- time

    def now(self) -> float:
        """Simulated now: the anchor plus the elapsed clock time times ``speed``."""
        return self.anchor + (self._now_fn() - self._clock0) * self.speed

    # ---------------------------------------------------------------- projects

    @property
    def projects(self) -> list[Project]:
        """Projects ordered by name (case-insensitive)."""
        with self.lock:
            return sorted(self._projects.values(), key=lambda p: p.name.lower())

    def project(self, name_or_id: str) -> Project | None:
        """Find a project by name or id, case-insensitively."""
        key = name_or_id.lower()
        with self.lock:
            p = self._projects.get(key)
            if p is not None:
                return p
            for p in self._projects.values():
                if p.name.lower() == key:
                    return p
        return None

    def _require_project(self, name_or_id: str) -> Project:
        p = self.project(name_or_id)
        if p is None:
            raise KeyError(f"no project {name_or_id!r}")
        return p

    def add_project(self, name: str, description: str = "") -> Project:
        """Add a project; its id is a uuid derived from the organization and project name."""
        with self.lock:
            if self.project(name) is not None:
                raise ValueError(f"project {name!r} exists")
            p = Project(
                id=stable_uuid(self.name, "project", name.lower()),
                name=name,
                description=description,
                revision=hash_str(name) % 400 + 10,
                last_update=self.anchor - 30 * DAY,
            )
            self._projects[p.id] = p
            return p

    def remove_project(self, name: str) -> None:
        """Delete a project and everything in it."""
        with self.lock:
            p = self._require_project(name)
            del self._projects[p.id]

    def rename_project(self, old: str, new: str) -> None:
        """Rename a project; its id stays."""
        with self.lock:
            p = self._require_project(old)
            p.name = new
            p.revision += 1
            p.last_update = self.now()

    # ---------------------------------------------------------------- pipelines

    def add_pipeline(
        self,
        project: str,
        name: str,
        folder: str = "",
        default_branch: str = "main",
        repository: str | None = None,
        has_tests: bool = False,
    ) -> Pipeline:
        """Add a build definition to ``project``. ``folder`` may be nested ("a/b")."""
        with self.lock:
            p = self._require_project(project)
            created = self.now()
            pl = Pipeline(
                id=self._next_pipeline_id,
                name=name,
                project_id=p.id,
                folder=normal_folder(folder),
                default_branch=default_branch.removeprefix("refs/heads/"),
                repository=repository or p.name,
                has_tests=has_tests,
                created=created,
                modified=created,
            )
            self._next_pipeline_id += 1
            p.pipelines[pl.id] = pl
            return pl

    def pipeline(self, project: str, pipeline_id: int) -> Pipeline | None:
        p = self.project(project)
        return None if p is None else p.pipelines.get(pipeline_id)

    def delete_pipeline(self, project: str, pipeline_id: int) -> None:
        """Delete a definition; its runs disappear with it."""
        with self.lock:
            p = self._require_project(project)
            del p.pipelines[pipeline_id]

    def rename_pipeline(self, project: str, pipeline_id: int, new_name: str) -> None:
        with self.lock:
            pl = self._require_project(project).pipelines[pipeline_id]
            pl.name = new_name
            pl.revision += 1
            pl.modified = self.now()

    def repository_id(self, project: Project, repository: str) -> str:
        """Stable id of a Git repository (repositories are named by the pipelines using them)."""
        return stable_uuid(self.name, "repo", project.id, repository.lower())

    # ---------------------------------------------------------------- runs

    def add_run(
        self,
        project: str,
        pipeline_id: int,
        branch: str = "main",
        result: str | None = None,
        queue_time: float | None = None,
        start_time: float | None = None,
        finish_time: float | None = None,
        reason: str = "individualCI",
        tests: tuple[int, int, int] | None = None,
        requested_for: Identity | None = None,
    ) -> Run:
        """Add an explicit run. ``result`` None with ``finish_time`` None = in progress/notStarted."""
        check_outcome(result, finish_time, RESULTS)
        with self.lock:
            pl = self._require_project(project).pipelines[pipeline_id]
            qt = self.now() if queue_time is None else float(queue_time)
            rid = self._next_run_id
            self._next_run_id += 1
            day = day_string(qt)
            run = Run(
                id=rid,
                project_id=pl.project_id,
                pipeline_id=pl.id,
                branch=full_ref(branch),
                queue_time=qt,
                start_time=start_time,
                finish_time=finish_time,
                result=result,
                reason=reason,
                tests=tuple(tests) if tests is not None else None,  # type: ignore[arg-type]
                source_version=sha_for(rid, 0),
                requested_for=requested_for or PEOPLE[rid % len(PEOPLE)],
                build_number=f"{day}.{len(pl.explicit_runs) + 1}",
            )
            pl.explicit_runs.append(run)
            pl.explicit_runs.sort(key=lambda r: (r.queue_time, r.id))
            self._explicit[rid] = run
            return run

    def complete_run(
        self, run_id: int, result: str, finish_time: float, tests: tuple[int, int, int] | None = None
    ) -> Run:
        """Finish a run (explicit or scheduled) with ``result`` at ``finish_time``."""
        check_result(result, RESULTS)
        with self.lock:
            run = self.get_run(run_id)
            if run is None:
                raise KeyError(f"no run {run_id}")
            if run.start_time is None:
                run.start_time = min(run.queue_time, finish_time)
            run.result = result
            run.finish_time = float(finish_time)
            if tests is not None:
                run.tests = tuple(tests)  # type: ignore[assignment]
            if run_id not in self._explicit:
                self._overrides[run_id] = run
            return run

    def get_run(self, run_id: int) -> Run | None:
        """A run by id, whether explicit or scheduled (ignores visibility; None if deleted)."""
        with self.lock:
            run = self._explicit.get(run_id) or self._overrides.get(run_id)
            if run is None and self._streams and SCHED_ID_BASE <= run_id < EXPLICIT_ID_BASE:
                k, idx = divmod(run_id - SCHED_ID_BASE, self._stride)
                if idx < len(self._streams) and k >= self._streams[idx].start_k:
                    run = self._scheduled_run(self._streams[idx], k)
            if run is None:
                return None
            p = self._projects.get(run.project_id)
            if p is None or run.pipeline_id not in p.pipelines:
                return None
            return run

    def runs(
        self,
        project: Project,
        pipeline_ids: Iterable[int] | None = None,
        queue_from: float | None = None,
        queue_to: float | None = None,
    ) -> list[Run]:
        """Runs of ``project`` (optionally some pipelines), visible now, unordered.

        ``queue_from``/``queue_to`` are hints that prune scheduled runs (queued outside the range
        are skipped); explicit runs are always all returned, so callers filter exactly.
        """
        now = self.now()
        hi = now if queue_to is None else min(queue_to, now)
        lo = self.epoch if queue_from is None else max(queue_from, self.epoch - DAY)
        out: list[Run] = []
        with self.lock:
            if pipeline_ids is None:
                pipelines = list(project.pipelines.values())
            else:
                pipelines = [project.pipelines[i] for i in pipeline_ids if i in project.pipelines]
            for pl in pipelines:
                for st in pl.streams:
                    out.extend(self._stream_runs(st, lo, hi))
                # explicit runs are few and may span anything: only the visibility bound applies
                runs = pl.explicit_runs
                out.extend(runs[: bisect.bisect_right(runs, hi, key=lambda r: r.queue_time)])
        return out

    def pipeline_runs(self, pipeline: Pipeline, queue_from: float | None = None) -> list[Run]:
        """Visible runs of one pipeline, unordered."""
        p = self._projects.get(pipeline.project_id)
        if p is None:
            return []
        return self.runs(p, [pipeline.id], queue_from=queue_from)

    def latest_runs(self, pipeline: Pipeline) -> tuple[Run | None, Run | None]:
        """(latest run by queue time, latest completed run by finish time), any branch."""
        now = self.now()
        # most pipelines run daily: look at recent history first, everything only if needed
        for lookback in (3 * DAY, None):
            frm = None if lookback is None else now - lookback
            runs = self.pipeline_runs(pipeline, queue_from=frm)
            latest = max(runs, key=lambda r: (r.queue_time, r.id), default=None)
            done = [r for r in runs if r.status_at(now) == "completed"]
            latest_done = max(done, key=lambda r: (r.finish_time or 0.0, r.id), default=None)
            if latest_done is not None or lookback is None:
                return latest, latest_done
        return None, None  # pragma: no cover - the loop always returns

    def count_runs(self, t_from: float, t_to: float) -> int:
        """Number of scheduled runs queued in [t_from, t_to] (cheap: slot arithmetic only)."""
        n = 0
        with self.lock:
            live = {pid for p in self._projects.values() for pid in p.pipelines}
            for st in self._streams:
                if st.pipeline.id in live:
                    r = st.slot_range(self.epoch, t_from, t_to)
                    n += max(0, len(r))
        return n

    # ---------------------------------------------------------------- scheduled runs

    def _add_stream(self, pipeline: Pipeline, **kwargs: object) -> Stream:
        """Attach a schedule to a pipeline (generation only)."""
        st = Stream(index=len(self._streams), pipeline=pipeline, **kwargs)  # type: ignore[arg-type]
        self._streams.append(st)
        pipeline.streams.append(st)
        return st

    def _stream_runs(self, st: Stream, lo: float, hi: float) -> Iterator[Run]:
        for k in st.slot_range(self.epoch, lo, hi):
            run = self._overrides.get(self.slot_run_id(st, k))
            if run is None:
                run = self._scheduled_run(st, k)
            if lo <= run.queue_time <= hi:
                yield run

    def slot_times(self, st: Stream, k: int) -> tuple[float, float, float, int]:
        """(queue, start, finish, hash) of slot ``k`` of a stream."""
        h = hash_ints(st.seed, k)
        qt = self.epoch + st.phase + k * st.period + st.jitter * unit(h, 0)
        wait = st.wait[0] + (st.wait[1] - st.wait[0]) * unit(h, 16)
        dur = st.duration[0] + (st.duration[1] - st.duration[0]) * unit(h, 32)
        # keep sub-millisecond digits so dates carry 7 meaningful fractional digits
        return qt, qt + wait, qt + wait + dur, h

    def slot_run_id(self, st: Stream, k: int) -> int:
        """The id of the scheduled run of slot ``k`` of a stream."""
        return SCHED_ID_BASE + k * self._stride + st.index

    def slot_outcome(self, st: Stream, k: int) -> tuple[float, float, float, int, str]:
        """(queue, start, finish, hash, result) of slot ``k`` of a stream."""
        qt, start, ft, h = self.slot_times(st, k)
        return qt, start, ft, h, self._slot_result(st, k, ft, h)

    def slot_build(self, st: Stream, k: int) -> SlotBuild | None:
        """Slot ``k``'s build, for the areas that follow builds (releases, environments); None for a
        slot before the stream's first."""
        if k < st.start_k:
            return None
        qt, start, ft, h, result = self.slot_outcome(st, k)
        return SlotBuild(self.slot_run_id(st, k), start, ft, result)

    def _slot_result(self, st: Stream, k: int, ft: float, h: int) -> str:
        res = st.overrides.get(k)
        if res is not None:
            return res
        for lo, hi, r in st.rules:
            if lo <= ft < hi:
                return r
        u = unit(h, 48)
        if u < st.fail_rate:
            return "failed"
        u -= st.fail_rate
        if u < st.cancel_rate:
            return "canceled"
        u -= st.cancel_rate
        if u < st.partial_rate:
            return "partiallySucceeded"
        return "succeeded"

    def _scheduled_run(self, st: Stream, k: int) -> Run:
        qt, start, ft, h, result = self.slot_outcome(st, k)
        rid = self.slot_run_id(st, k)
        pl = st.pipeline
        branch = f"refs/pull/{st.pr_base + k // 4}/merge" if st.pr_base else st.branch
        tests = _tests_for(rid, pl, result) if pl.has_tests else None
        day = day_string(qt)
        who = SERVICE_IDENTITY if st.reason == "schedule" else PEOPLE[(h >> 8) % len(PEOPLE)]
        return Run(
            id=rid,
            project_id=pl.project_id,
            pipeline_id=pl.id,
            branch=branch,
            queue_time=qt,
            start_time=start,
            finish_time=ft,
            result=result,
            reason=st.reason,
            tests=tests,
            source_version=sha_for(st.seed, k),
            requested_for=who,
            build_number=f"{day}.{k % 100 + 1}",
        )

    def last_completed_slot(self, st: Stream, before: float) -> int:
        """The slot whose run finished last at or before ``before`` (generation helper)."""
        best_k, best_ft = -1, -math.inf
        for k in st.slot_range(self.epoch, before - 3 * st.period - MAX_SCHEDULED_SPAN, before):
            _, _, ft, _ = self.slot_times(st, k)
            if ft <= before and ft > best_ft:
                best_k, best_ft = k, ft
        return best_k

    def copy_run(self, run: Run, **changes: object) -> Run:
        """A modified copy of a run (helper for other simulator areas)."""
        return replace(run, **changes)  # type: ignore[arg-type]


def _tests_for(run_id: int, pipeline: Pipeline, result: str) -> tuple[int, int, int] | None:
    """Deterministic (passed, failed, other) test counts of a scheduled run, by run id."""
    if result == "canceled":
        return None
    h = hash_ints(run_id, 0x7E57)
    total = max(5, int(pipeline.test_base * (0.97 + 0.06 * unit(h, 0))))
    other = int(unit(h, 16) * 4)
    if result == "failed":
        failed = 1 + int(unit(h, 32) * 9)
    elif result == "partiallySucceeded":
        failed = 1 + int(unit(h, 32) * 2)
    else:
        failed = 0
    failed = min(failed, total - other - 1)
    return (total - failed - other, failed, other)


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------

_WORDS = (
    "Inventory", "Identity", "Search", "Billing", "Catalog", "Checkout", "Shipping", "Loyalty",
    "Messaging", "Reporting", "Analytics", "Gateway", "Ledger", "Pricing", "Recommendations",
    "Notifications", "Onboarding", "Fraud", "Maps", "Media", "Scheduling", "Support", "Warehouse",
    "Telemetry", "Compliance", "Partners", "Marketplace", "Accounts", "Storefront", "Insights",
)
_COMPONENTS = (
    "api", "web", "worker", "gateway", "importer", "exporter", "scheduler", "auth", "cache", "cli",
    "sdk", "ui", "jobs", "sync", "admin", "events", "store", "proxy", "indexer", "reports",
)
_KINDS = ("ci", "build", "deploy", "release", "nightly", "pr", "integration", "e2e")
_FOLDERS = ("", "", "", "services", "web", "infra", "tools", "data", "services/backend")

RELEASE_BRANCH = "refs/heads/release/2026.11"


def _populate(org: Organization) -> None:
    """Create the named scenarios, then the seeded generic projects for ``org.scale``."""
    _scenarios(org)
    scale = org.scale or "small"
    if scale == "small":
        n_projects, per_project, periods = 1, 6, (1 * HOUR, 6 * HOUR)
    elif scale == "medium":
        n_projects, per_project, periods = 8, 20, (2 * HOUR, 8 * HOUR)
    else:
        n_projects, per_project, periods = 100, 50, (8 * HOUR, 24 * HOUR)
    order = sorted(range(len(_WORDS)), key=lambda i: hash_ints(org.seed, 0xA11, i))
    for n in range(n_projects):
        word = _WORDS[order[n % len(_WORDS)]]
        name = word if n < len(_WORDS) else f"{word}-{n // len(_WORDS) + 1}"
        _generic_project(org, name, per_project, periods)


def _pipe(
    org: Organization, project: str, name: str, folder: str, repo: str, tests: bool, test_base: int = 150
) -> Pipeline:
    pl = org.add_pipeline(project, name, folder=folder, repository=repo, has_tests=tests)
    pl.created = pl.modified = org.epoch - (60 + pl.id % 300) * DAY
    pl.revision = 1 + hash_ints(org.seed, pl.id) % 20
    pl.test_base = test_base
    return pl


def _stream(
    org: Organization,
    pl: Pipeline,
    branch: str = "refs/heads/main",
    *,
    period: float,
    jitter: float | None = None,
    wait: tuple[float, float] = (5.0, 3 * MINUTE),
    duration: tuple[float, float] = (4 * MINUTE, 15 * MINUTE),
    start: float | None = None,
    **kwargs: object,
) -> Stream:
    seed = hash_ints(org.seed, hash_str(org.name), pl.id, hash_str(branch), len(pl.streams))
    phase = unit(seed, 0) * period
    j = period * 0.25 if jitter is None else jitter
    start_k = 0 if start is None else max(0, math.ceil((start - org.epoch - phase) / period))
    return org._add_stream(
        pl, branch=branch, seed=seed, period=period, phase=phase, jitter=j, wait=wait,
        duration=duration, start_k=start_k, **kwargs,
    )


def _scenarios(org: Organization) -> None:
    """The fixed, named scenarios that tests, demo, alerts and golden files rely on."""
    a = org.anchor
    always = (a - 365 * DAY, a + 3650 * DAY)  # "from the beginning to forever"

    org.add_project("Payments", "Payment services: the builds area's main scenarios.")
    # deploy-api: main broken since anchor-5h. Every run finishing after that fails, forever; the
    # three hours before are green so the last success lies just before the break.
    pl = _pipe(org, "Payments", "deploy-api", "infra", "payments", True, 240)
    _stream(org, pl, period=30 * MINUTE, jitter=5 * MINUTE, duration=(4 * MINUTE, 9 * MINUTE),
            fail_rate=0.05,
            rules=((a - 8 * HOUR, a - 5 * HOUR, "succeeded"), (a - 5 * HOUR, always[1], "failed")))
    # payments-ci: healthy (failures only long before the anchor), tests, release branch, PR
    # validation and an untracked feature branch.
    pl = _pipe(org, "Payments", "payments-ci", "", "payments", True, 1200)
    healthy = ((a - 3 * DAY, always[1], "succeeded"),)
    _stream(org, pl, period=2 * HOUR, fail_rate=0.05, rules=healthy)
    _stream(org, pl, RELEASE_BRANCH, period=8 * HOUR, fail_rate=0.0, cancel_rate=0.0, partial_rate=0.0)
    # PR validation every 15 min with a 16-19 min queue wait and 31-40 min duration and no
    # jitter: at any moment the newest run is still queued and the one two slots back is running.
    _stream(org, pl, "refs/pull/0/merge", period=15 * MINUTE, jitter=0.0, wait=(16 * MINUTE, 19 * MINUTE),
            duration=(31 * MINUTE, 40 * MINUTE), reason="pullRequest", pr_base=300, fail_rate=0.15,
            cancel_rate=0.02, partial_rate=0.0)
    _stream(org, pl, "refs/heads/feature/x", period=6 * HOUR, fail_rate=0.2)
    # frontend-ci: flaky, ~30 % of main runs fail, seeded
    pl = _pipe(org, "Payments", "frontend-ci", "web", "frontend", True, 600)
    _stream(org, pl, period=90 * MINUTE, fail_rate=0.30, cancel_rate=0.0, partial_rate=0.0)

    org.add_project("Platform", "Shared platform: long-broken and odd pipelines.")
    # legacy-nightly: never succeeded; nightly since anchor-40d
    pl = _pipe(org, "Platform", "legacy-nightly", "tools", "legacy", False)
    _stream(org, pl, period=DAY, jitter=10 * MINUTE, reason="schedule", start=a - 40 * DAY,
            rules=(always + ("failed",),))
    # core-ci: last success on main 40 days before the anchor, failing ever since
    pl = _pipe(org, "Platform", "core-ci", "", "core", True, 800)
    _stream(org, pl, period=6 * HOUR, fail_rate=0.04,
            rules=((a - 41 * DAY, a - 40 * DAY, "succeeded"), (a - 40 * DAY, always[1], "failed")))
    _stream(org, pl, RELEASE_BRANCH, period=12 * HOUR, fail_rate=0.0, cancel_rate=0.0, partial_rate=0.0)
    # etl: main failed, then only canceled runs (still broken)
    pl = _pipe(org, "Platform", "etl", "data", "data-platform", False)
    _stream(org, pl, period=4 * HOUR, fail_rate=0.03, partial_rate=0.0,
            rules=((a - 3 * DAY, a - 1 * DAY, "failed"), (a - 1 * DAY, always[1], "canceled")))
    # app-ci: the latest main run completed at the anchor is partiallySucceeded, after a success
    pl = _pipe(org, "Platform", "app-ci", "mobile", "mobile", True, 300)
    st = _stream(org, pl, period=8 * HOUR, fail_rate=0.05, partial_rate=0.0,
                 rules=((a - 3 * DAY, always[1], "succeeded"),))
    k = org.last_completed_slot(st, a)
    st.overrides.update({k: "partiallySucceeded", k - 1: "succeeded"})
    # docs-build: healthy, no tests, also builds the release branch
    pl = _pipe(org, "Platform", "docs-build", "", "docs", False)
    _stream(org, pl, period=3 * HOUR, fail_rate=0.02, rules=healthy)
    _stream(org, pl, RELEASE_BRANCH, period=DAY, fail_rate=0.0, cancel_rate=0.0, partial_rate=0.0)


def _generic_project(org: Organization, name: str, n: int, periods: tuple[float, float]) -> None:
    """A seeded project of ``n`` mostly healthy pipelines."""
    p = org.add_project(name, f"{name} team (generated).")
    a = org.anchor
    used: set[str] = set()
    for i in range(n):
        h = hash_ints(org.seed, hash_str(name), i)
        comp = _COMPONENTS[h % len(_COMPONENTS)]
        kind = _KINDS[(h >> 8) % len(_KINDS)]
        pname = f"{comp}-{kind}"
        if pname in used:
            pname = f"{comp}-{kind}-{i}"
        used.add(pname)
        folder = _FOLDERS[(h >> 16) % len(_FOLDERS)]
        tests = unit(h, 24) < 0.7
        repo = f"{p.name.lower()}-{comp}" if unit(h, 40) < 0.5 else p.name.lower()
        pl = _pipe(org, p.name, pname, folder, repo, tests, 20 + (h >> 48) % 1500)  # h >> 48: 16 bits
        # health profile: most pipelines rarely fail, a few are flaky, a few are broken right now
        u = unit(h, 32)
        rules: tuple[tuple[float, float, str], ...] = ()
        if u < 0.70:
            fail = 0.03
        elif u < 0.93:
            fail = 0.12
        elif u < 0.97:
            fail = 0.35
        else:
            fail = 0.03
            rules = ((a - (1 + unit(h, 20) * 72) * HOUR, a + 3650 * DAY, "failed"),)
        period = periods[0] + (periods[1] - periods[0]) * unit(h, 4)
        h2 = hash_ints(h, 2)  # a second hash: the 16-bit fields of h are used up
        dur = (2 * MINUTE + unit(h2, 32) * 10 * MINUTE, 30 * MINUTE)
        _stream(org, pl, period=period, duration=dur, fail_rate=fail, rules=rules,
                reason="schedule" if kind == "nightly" else "individualCI")
        if unit(h2, 0) < 0.3:
            _stream(org, pl, "refs/pull/0/merge", period=period * 0.75, duration=dur, reason="pullRequest",
                    pr_base=1000 + i * 500, fail_rate=0.15)
        if unit(h2, 16) < 0.15:
            _stream(org, pl, RELEASE_BRANCH, period=period * 4, duration=dur, fail_rate=0.02)


def _populate_extensions(org: Organization) -> None:
    """Let every sibling ``*_model`` module add its area's generated data (function ``populate(org)``).

    Modules run in name order, after the builds area, so they can refer to its projects and pipelines.
    """
    import exporter.simulator as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.endswith("_model"):
            module = importlib.import_module(f"{pkg.__name__}.{info.name}")
            populate = getattr(module, "populate", None)
            if callable(populate):
                populate(org)

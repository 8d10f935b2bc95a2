"""Classic release management of the simulated organization: release definitions and deployments.

Data lives in ``org.extensions["release"]`` (created lazily, so ``Organization.empty()`` plus the
``add_*`` helpers below work in tests). Two kinds of deployments live side by side, as for builds:

* *scheduled*: a :class:`ReleaseStream` ties a release definition to a build stream of the builds
  model. Every successful (or partially successful) build of slot ``k`` creates release ``k``, which
  deploys stage after stage; a failed stage attempt may be redeployed (attempt 2); later stages run
  only after a success. Deployments are recomputed from hashes whenever asked, never stored.
* *explicit*: :func:`add_deployment` (tests).

Deployment ids grow with their start time (as database ids do), so ``queryOrder`` by id and the
integer continuation token behave like Azure DevOps'.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from exporter.simulator.model import (
    DAY,
    HOUR,
    MINUTE,
    Organization,
    Stream,
    check_outcome,
    check_result,
    find_by_id,
    folder_path,
    hash_ints,
    hash_str,
    normal_folder,
    time_id,
    unit,
)

KEY = "release"
RESULTS = ("succeeded", "partiallySucceeded", "failed", "canceled")
#: upper bound of the time between a build's finish and the last deployment of its release
MAX_RELEASE_SPAN = 16 * HOUR
RELEASE_ID_BASE = 10_000
EXPLICIT_RELEASE_ID_BASE = 900_000_000


@dataclass(slots=True)
class StageSpec:
    """How the deployments of one stage of a scheduled release behave."""

    name: str
    wait: tuple[float, float] = (1 * MINUTE, 5 * MINUTE)  # after the previous stage (approvals)
    duration: tuple[float, float] = (3 * MINUTE, 12 * MINUTE)
    fail_rate: float = 0.05
    partial_rate: float = 0.02
    cancel_rate: float = 0.01
    retry_rate: float = 0.7  # chance that a failed attempt is redeployed (attempt 2)
    retry_fail_rate: float = 0.1
    # (from, to, attempt-1 result, attempt-2 result or "" for no retry): releases whose build
    # finished in [from, to) get these results
    rules: tuple[tuple[float, float, str, str], ...] = ()


@dataclass(slots=True)
class ReleaseDefinition:
    id: int
    name: str
    project_id: str
    folder: str = ""
    stages: tuple[str, ...] = ("Dev", "Prod")
    artifact_pipeline_id: int | None = None
    created: float = 0.0
    revision: int = 1

    @property
    def path(self) -> str:
        return folder_path(self.folder)

    def stage_id(self, stage: str) -> int:
        """definitionEnvironmentId of a stage."""
        return self.id * 100 + self.stages.index(stage) + 1


@dataclass(slots=True)
class Deployment:
    """One deployment attempt of one release to one stage. ``status`` None: in progress."""

    id: int
    definition_id: int
    project_id: str
    release_id: int
    release_name: str
    stage: str
    attempt: int
    started: float
    completed: float | None
    status: str | None
    build_id: int | None = None
    build_pipeline_id: int | None = None
    build_number: str = ""
    reason: str = "automated"

    def status_at(self, now: float) -> tuple[str, str]:
        """(deploymentStatus, operationStatus) as seen at ``now``; PascalCase operation status."""
        if self.status is None or self.completed is None or self.completed > now:
            return "inProgress", "PhaseInProgress"
        if self.status == "canceled":
            return "notDeployed", "Canceled"
        if self.status == "failed":
            return "failed", "PhaseFailed"
        if self.status == "partiallySucceeded":
            return "partiallySucceeded", "PhasePartiallySucceeded"
        return "succeeded", "Approved"


@dataclass(slots=True)
class ReleaseStream:
    index: int
    definition: ReleaseDefinition
    build_stream: Stream
    seed: int
    stages: tuple[StageSpec, ...]


@dataclass
class ReleaseData:
    definitions: dict[int, ReleaseDefinition] = field(default_factory=dict)
    streams: list[ReleaseStream] = field(default_factory=list)
    explicit: list[Deployment] = field(default_factory=list)
    next_definition_id: int = 1
    next_release_id: int = EXPLICIT_RELEASE_ID_BASE
    next_deployment_id: int = 1


def data(org: Organization) -> ReleaseData:
    """The release data of ``org``, created on first use."""
    return org.extension(KEY, ReleaseData)


# --------------------------------------------------------------------------------------------
# helpers for tests (explicit data)
# --------------------------------------------------------------------------------------------


def add_release_definition(org: Organization, project: str, name: str, stages: tuple[str, ...] = ("Dev", "Prod"),
                           folder: str = "", artifact_pipeline_id: int | None = None) -> ReleaseDefinition:
    """Add a classic release definition with the given stages (environments)."""
    d = data(org)
    p = org.project(project)
    if p is None:
        raise KeyError(f"no project {project!r}")
    with org.lock:
        rd = ReleaseDefinition(d.next_definition_id, name, p.id, normal_folder(folder),
                               tuple(stages), artifact_pipeline_id, org.now() - 90 * DAY)
        d.next_definition_id += 1
        d.definitions[rd.id] = rd
        return rd


def add_deployment(org: Organization, definition_id: int, stage: str, started: float, *,
                   status: str | None = None, completed: float | None = None, attempt: int = 1,
                   release_id: int | None = None, build_id: int | None = None) -> Deployment:
    """Add an explicit deployment; ``status`` None (and no ``completed``) = in progress."""
    check_outcome(status, completed, RESULTS, "status", "completed")
    d = data(org)
    with org.lock:
        rd = d.definitions[definition_id]
        if stage not in rd.stages:
            raise ValueError(f"definition {rd.name} has no stage {stage!r}")
        if release_id is None:
            release_id = d.next_release_id
            d.next_release_id += 1
        build = org.get_run(build_id) if build_id is not None else None
        dep = Deployment(time_id(float(started), d.next_deployment_id), rd.id, rd.project_id, release_id,
                         f"Release-{release_id}", stage,
                         attempt, float(started), completed, status, build_id,
                         build.pipeline_id if build is not None else rd.artifact_pipeline_id,
                         build.build_number if build is not None else "")
        d.next_deployment_id += 1
        d.explicit.append(dep)
        return dep


def complete_deployment(org: Organization, deployment_id: int, status: str, completed: float) -> Deployment:
    """Finish an explicit in-progress deployment."""
    check_result(status, RESULTS, "status")
    with org.lock:
        dep = find_by_id(data(org).explicit, deployment_id, "deployment")
        dep.status, dep.completed = status, float(completed)
        return dep


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------


def release_deployments(org: Organization, rs: ReleaseStream, k: int) -> list[Deployment]:
    """The deployments of release ``k`` of a stream (all of them, whatever ``now`` is)."""
    st = rs.build_stream
    build = org.slot_build(st, k)
    if build is None or build.result not in ("succeeded", "partiallySucceeded"):
        return []  # a failed build is not released
    build_id, _, ft, _ = build
    d = data(org)
    release_id = RELEASE_ID_BASE + k * max(1, len(d.streams)) + rs.index
    rd = rs.definition
    out: list[Deployment] = []
    t = ft + 2 * MINUTE
    for i, spec in enumerate(rs.stages):
        hs = hash_ints(rs.seed, k, i)
        t += spec.wait[0] + (spec.wait[1] - spec.wait[0]) * unit(hs, 0)
        rule = next((r for r in spec.rules if r[0] <= ft < r[1]), None)
        outcome = ""
        for attempt in (1, 2):
            ha = hash_ints(rs.seed, k, i, attempt)
            dur = spec.duration[0] + (spec.duration[1] - spec.duration[0]) * unit(ha, 0)
            u = unit(ha, 16)
            if rule is not None:
                outcome = rule[2] if attempt == 1 else rule[3]
            elif attempt == 2:
                outcome = "failed" if u < spec.retry_fail_rate else "succeeded"
            elif u < spec.fail_rate:
                outcome = "failed"
            elif u < spec.fail_rate + spec.partial_rate:
                outcome = "partiallySucceeded"
            elif u < spec.fail_rate + spec.partial_rate + spec.cancel_rate:
                outcome = "canceled"
            else:
                outcome = "succeeded"
            if not outcome:
                break
            out.append(Deployment(time_id(t, rs.index * 8 + i * 2 + attempt), rd.id, rd.project_id,
                                  release_id, f"Release-{release_id}", rd.stages[i], attempt, t, t + dur, outcome,
                                  build_id, st.pipeline.id, f"{k % 100 + 1}",
                                  "automated" if attempt == 1 else "redeployTrigger"))
            t += dur
            if outcome != "failed":
                break
            retry = bool(rule[3]) if rule is not None else attempt == 1 and unit(ha, 32) < spec.retry_rate
            if attempt == 2 or not retry:
                break
            t += 15 * MINUTE + 25 * MINUTE * unit(ha, 48)
        if outcome not in ("succeeded", "partiallySucceeded"):
            break
    return out


def deployments(org: Organization, project_id: str, started_from: float, started_to: float,
                now: float) -> Iterator[Deployment]:
    """Deployments of a project started in [started_from, started_to] and visible at ``now``, unordered."""
    d = data(org)
    hi = min(started_to, now)
    with org.lock:
        streams = [rs for rs in d.streams if rs.definition.project_id == project_id
                   and rs.definition.id in d.definitions]
        explicit = [dep for dep in d.explicit if dep.project_id == project_id and dep.definition_id in d.definitions]
    for rs in streams:
        st = rs.build_stream
        for k in st.slot_range(org.epoch, started_from - MAX_RELEASE_SPAN - 3 * HOUR, hi):
            for dep in release_deployments(org, rs, k):
                if started_from <= dep.started <= hi:
                    yield dep
    for dep in explicit:
        if started_from <= dep.started <= hi:
            yield dep


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _add_stream(org: Organization, rd: ReleaseDefinition, build_stream: Stream, stages: tuple[StageSpec, ...]) -> None:
    d = data(org)
    seed = hash_ints(org.seed, hash_str(org.name), 0x4E1, rd.id)
    d.streams.append(ReleaseStream(len(d.streams), rd, build_stream, seed, stages))


def _main_stream(org: Organization, project: str, pipeline: str) -> Stream | None:
    p = org.project(project)
    if p is None:
        return None
    for pl in p.pipelines.values():
        if pl.full_name == pipeline:
            return next((s for s in pl.streams if s.branch == "refs/heads/main" and not s.pr_base), None)
    return None


def populate(org: Organization) -> None:
    """Scenarios (see docs/delivery.md) and one release definition per generic project."""
    a = org.anchor
    prod_rules = (
        # A failed production deployment restored by its redeploy 15-40 minutes later.
        (a - 30 * HOUR, a - 27 * HOUR, "failed", "succeeded"),
        # A failed one left failed, then the next release restores production.
        (a - 80 * HOUR, a - 77 * HOUR, "failed", ""),
    )
    st = _main_stream(org, "Platform", "docs-build")
    if st is not None:
        rd = add_release_definition(org, "Platform", "docs-release", ("Dev", "QA", "Prod-EU"), "releases",
                                    st.pipeline.id)
        qa_rules = ((a - 20 * HOUR, a - 17 * HOUR, "partiallySucceeded", ""),)
        _add_stream(org, rd, st, (StageSpec("Dev"), StageSpec("QA", rules=qa_rules),
                                  StageSpec("Prod-EU", wait=(10 * MINUTE, 40 * MINUTE), rules=prod_rules)))
    st = _main_stream(org, "Payments", "web/frontend-ci")
    if st is not None:
        rd = add_release_definition(org, "Payments", "frontend-release", ("Test", "Production"), "",
                                    st.pipeline.id)
        _add_stream(org, rd, st, (StageSpec("Test", fail_rate=0.08),
                                  StageSpec("Production", wait=(5 * MINUTE, 30 * MINUTE), fail_rate=0.1)))
    for p in org.projects:
        if p.name in ("Payments", "Platform") or not p.pipelines:
            continue
        first = min(p.pipelines.values(), key=lambda pl: pl.id)
        main = next((s for s in first.streams if not s.pr_base), None)
        if main is None:
            continue
        rd = add_release_definition(org, p.name, f"{first.name}-release", ("dev", "test", "prod"), "",
                                    first.id)
        _add_stream(org, rd, main, (StageSpec("dev"), StageSpec("test"),
                                    StageSpec("prod", wait=(10 * MINUTE, 2 * HOUR))))


def count_deployments(org: Organization, t_from: float, t_to: float) -> int:
    """Deployments started in [t_from, t_to] in the whole organization (scale measurements)."""
    return sum(1 for p in org.projects for _ in deployments(org, p.id, t_from, t_to, math.inf))

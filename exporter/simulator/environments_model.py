"""YAML pipeline environments of the simulated organization and their deployment records.

Data lives in ``org.extensions["environments"]`` (created lazily). A record exists per deployment
*job* and attempt, as in Azure DevOps: a stage with two deployment jobs leaves two records, and a
rerun of a failed stage leaves records with ``stageAttempt`` 2. ``owner`` is the run (a build of the
builds model, so its changes can be read), ``definition`` the pipeline.

Scheduled records come from a :class:`YamlStream` bound to a build stream: slot ``k``'s run deploys
its stages inside the run's own start-to-finish time; a run that failed failed in its production
stage (one job failed, the others succeeded). A failed stage may be rerun after the run finished.
Records are recomputed from hashes on every request. Record ids grow with creation time, so the
newest-first order by id is also a time order.
"""

from __future__ import annotations

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
    hash_ints,
    hash_str,
    time_id,
    unit,
)

KEY = "environments"
RESULTS = ("succeeded", "succeededWithIssues", "failed", "canceled", "skipped", "abandoned")
#: upper bound of a run's duration plus a rerun after it (to turn time ranges into slot ranges)
MAX_SPAN = 6 * HOUR


@dataclass(slots=True)
class Environment:
    id: int
    name: str
    project_id: str
    created: float = 0.0


@dataclass(slots=True)
class Record:
    """One EnvironmentDeploymentExecutionRecord. ``result`` None: still running."""

    id: int
    environment_id: int
    project_id: str
    pipeline_id: int
    pipeline_name: str
    run_id: int
    run_name: str
    stage: str
    job: str
    stage_attempt: int
    job_attempt: int
    queue_time: float
    start_time: float
    finish_time: float | None
    result: str | None


@dataclass(slots=True)
class YamlStage:
    name: str
    environment: str
    jobs: tuple[str, ...]
    span: tuple[float, float]  # fractions of the run's start-to-finish time
    production: bool = False


@dataclass(slots=True)
class YamlStream:
    index: int
    project_id: str
    build_stream: Stream
    seed: int
    stages: tuple[YamlStage, ...]
    retry_rate: float = 0.7
    every: int = 1  # only every n-th run deploys
    # (from, to, attempt-1 result, attempt-2 result or "" for no rerun) of the production stage, for
    # runs finishing in [from, to); overrides the run's own result
    rules: tuple[tuple[float, float, str, str], ...] = ()


@dataclass
class EnvironmentData:
    environments: dict[int, Environment] = field(default_factory=dict)
    streams: list[YamlStream] = field(default_factory=list)
    explicit: list[Record] = field(default_factory=list)
    next_environment_id: int = 1
    next_record_id: int = 1


def data(org: Organization) -> EnvironmentData:
    return org.extension(KEY, EnvironmentData)


# --------------------------------------------------------------------------------------------
# helpers for tests (explicit data)
# --------------------------------------------------------------------------------------------


def add_environment(org: Organization, project: str, name: str) -> Environment:
    p = org.project(project)
    if p is None:
        raise KeyError(f"no project {project!r}")
    d = data(org)
    with org.lock:
        env = Environment(d.next_environment_id, name, p.id, org.now() - 120 * DAY)
        d.next_environment_id += 1
        d.environments[env.id] = env
        return env


def environment(org: Organization, project_id: str, name: str) -> Environment | None:
    with org.lock:
        return next((e for e in data(org).environments.values()
                     if e.project_id == project_id and e.name.lower() == name.lower()), None)


def add_record(org: Organization, environment_id: int, run_id: int, stage: str, job: str, start: float, *,
               finish: float | None = None, result: str | None = None, stage_attempt: int = 1,
               job_attempt: int | None = None) -> Record:
    """Add an explicit record for a deployment job of run ``run_id`` (a build of the builds model)."""
    check_outcome(result, finish, RESULTS, finish_name="finish")
    d = data(org)
    with org.lock:
        env = d.environments[environment_id]
        run = org.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        pl = org._projects[run.project_id].pipelines[run.pipeline_id]
        rec = Record(time_id(start - 5, d.next_record_id), env.id, env.project_id, pl.id, pl.name, run.id,
                     run.build_number, stage, job,
                     stage_attempt, job_attempt or stage_attempt, start - 5, float(start), finish, result)
        d.next_record_id += 1
        d.explicit.append(rec)
        return rec


def finish_record(org: Organization, record_id: int, result: str, finish: float) -> Record:
    check_result(result, RESULTS)
    with org.lock:
        rec = find_by_id(data(org).explicit, record_id, "record")
        rec.result, rec.finish_time = result, float(finish)
        return rec


# --------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------


def run_records(org: Organization, ys: YamlStream, k: int) -> list[Record]:
    """Every record of slot ``k``'s run (whatever ``now`` is)."""
    st = ys.build_stream
    build = org.slot_build(st, k) if not k % ys.every else None
    if build is None or build.result == "canceled":
        return []
    run_id, start, ft, result = build
    pl = st.pipeline
    d = data(org)
    envs = {e.name: e.id for e in d.environments.values() if e.project_id == ys.project_id}
    run_name = f"{k % 100 + 1}"
    dur = ft - start
    out: list[Record] = []
    for si, stage in enumerate(ys.stages):
        env_id = envs.get(stage.environment)
        if env_id is None:
            continue
        t0, t1 = start + stage.span[0] * dur, start + stage.span[1] * dur
        rule = next((r for r in ys.rules if r[0] <= ft < r[1]), None) if stage.production else None
        if rule is not None:
            outcomes = [rule[2]] + ([rule[3]] if rule[3] else [])
        elif stage.production and result == "failed":
            ha = hash_ints(ys.seed, k, 0xA2)
            outcomes = ["failed"]
            if unit(ha, 0) < ys.retry_rate:
                outcomes.append("failed" if unit(ha, 16) < 0.15 else "succeeded")
        elif result == "partiallySucceeded":
            outcomes = ["succeededWithIssues"]
        else:
            outcomes = ["succeeded"]
        for attempt, outcome in enumerate(outcomes, start=1):
            if attempt == 2:  # a rerun of the failed stage, after the run
                t0 = ft + 10 * MINUTE + 20 * MINUTE * unit(hash_ints(ys.seed, k, si), 0)
                t1 = t0 + stage.span[1] * dur - stage.span[0] * dur
            for ji, job in enumerate(stage.jobs):
                # one job of a failed stage fails: the last; the others succeed
                job_result = outcome if outcome != "failed" or ji == len(stage.jobs) - 1 else "succeeded"
                rid = time_id(t0, ys.index * 16 + si * 4 + ji + attempt)
                out.append(Record(rid, env_id, ys.project_id, pl.id, pl.name, run_id, run_name, stage.name, job,
                                  attempt, attempt, t0, t0 + 3 + 2 * ji, t1 - 5 * ji, job_result))
        if outcomes[-1] not in ("succeeded", "succeededWithIssues"):
            break
    return out


def records(org: Organization, environment_id: int, created_from: float, created_to: float) -> Iterator[Record]:
    """Records of an environment created in [created_from, created_to], unordered (no ``now`` filter)."""
    d = data(org)
    with org.lock:
        env = d.environments.get(environment_id)
        if env is None:
            return
        streams = [ys for ys in d.streams if ys.project_id == env.project_id
                   and any(s.environment == env.name for s in ys.stages)]
        explicit = [r for r in d.explicit if r.environment_id == environment_id]
    for ys in streams:
        st = ys.build_stream
        if st.pipeline.id not in org._projects[ys.project_id].pipelines:
            continue
        for k in st.slot_range(org.epoch, created_from - MAX_SPAN, created_to):
            for rec in run_records(org, ys, k):
                if rec.environment_id == environment_id and created_from <= rec.queue_time <= created_to:
                    yield rec
    for rec in explicit:
        if created_from <= rec.queue_time <= created_to:
            yield rec


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _stream(org: Organization, project: str, pipeline: str, stages: tuple[YamlStage, ...], **kwargs: object) -> None:
    p = org.project(project)
    if p is None:
        return
    pl = next((x for x in p.pipelines.values() if x.full_name == pipeline), None)
    if pl is None:
        return
    st = next((s for s in pl.streams if not s.pr_base and s.branch == "refs/heads/main"), None)
    if st is None:
        return
    d = data(org)
    for stage in stages:
        if environment(org, p.id, stage.environment) is None:
            add_environment(org, p.name, stage.environment)
    seed = hash_ints(org.seed, hash_str(org.name), 0xE4, pl.id)
    d.streams.append(YamlStream(len(d.streams), p.id, st, seed, stages, **kwargs))  # type: ignore[arg-type]


def populate(org: Organization) -> None:
    """Scenarios (see docs/delivery.md) and one YAML deployment pipeline per generic project."""
    a = org.anchor
    staging = YamlStage("Deploy_Staging", "staging", ("DeployWeb",), (0.30, 0.55))
    prod = YamlStage("Deploy_Prod", "production", ("DeployWeb", "DeployApi"), (0.60, 1.0), production=True)
    # payments-ci: staging then production (two jobs). A production failure at anchor-50h stays failed
    # after its rerun; the next run's rerun restores production.
    _stream(org, "Payments", "payments-ci", (staging, prod), retry_rate=0.7,
            rules=((a - 50 * HOUR, a - 48 * HOUR, "failed", "failed"),
                   (a - 48 * HOUR, a - 46 * HOUR, "failed", "succeeded")))
    # infra/deploy-api: broken since anchor-5h, so its production deployments fail since then (no rerun).
    _stream(org, "Payments", "infra/deploy-api",
            (YamlStage("Deploy", "production", ("Deploy",), (0.5, 1.0), production=True),), retry_rate=0.0,
            every=4)
    # Platform mobile/app-ci: the partially succeeded run deploys with issues to a test environment.
    _stream(org, "Platform", "mobile/app-ci", (YamlStage("Test", "mobile-test", ("Publish",), (0.4, 1.0)),))
    for p in org.projects:
        if p.name in ("Payments", "Platform") or len(p.pipelines) < 2:
            continue
        second = sorted(p.pipelines.values(), key=lambda pl: pl.id)[1]
        _stream(org, p.name, second.full_name,
                (YamlStage("Staging", "staging", ("Deploy",), (0.3, 0.6)),
                 YamlStage("Production", "production", ("Deploy", "Smoke"), (0.65, 1.0), production=True)),
                every=2)


def count_records(org: Organization, t_from: float, t_to: float) -> int:
    return sum(1 for e in list(data(org).environments) for _ in records(org, e, t_from, t_to))

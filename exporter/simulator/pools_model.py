"""Agent pools, agents and job requests of the simulated organization (organization level).

Data lives in ``org.extensions["pools"]`` (created lazily). Generated pools compute their agents'
busyness and their queue from ``org.now()`` in 5-minute buckets (nothing stored per job); explicit
agents and job requests (tests) are stored as given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.simulator.model import DAY, MINUTE, Organization, find_by_id, hash_ints, hash_str, unit

KEY = "pools"
BUCKET = 5 * MINUTE
AGENT_ID_BASE = 1000
REQUEST_ID_BASE = 1_000_000


@dataclass(slots=True)
class Agent:
    id: int
    name: str
    online: bool = True
    enabled: bool = True
    created: float = 0.0


@dataclass(slots=True)
class JobRequest:
    """A job request; ``agent_id`` None = not assigned (queued); ``result`` None = not finished."""

    id: int
    pool_id: int
    queue_time: float
    assign_time: float | None = None
    finish_time: float | None = None
    result: str | None = None
    agent_id: int | None = None
    job_name: str = "Job"
    pipeline_id: int = 1
    pipeline_name: str = "ci"
    run_id: int = 1


@dataclass(slots=True)
class Pool:
    id: int
    name: str
    hosted: bool = False
    pool_type: str = "automation"
    created: float = 0.0
    agents: list[Agent] = field(default_factory=list)
    explicit_requests: list[JobRequest] = field(default_factory=list)
    generated: bool = False
    busy_rate: float = 0.5  # chance that an online, enabled agent runs a job in a bucket
    queue: tuple[int, int] = (0, 0)  # queued requests per bucket when every agent is busy (min, max)
    seed: int = 0


@dataclass
class PoolData:
    pools: dict[int, Pool] = field(default_factory=dict)
    next_pool_id: int = 1
    next_agent_id: int = AGENT_ID_BASE
    next_request_id: int = REQUEST_ID_BASE


def data(org: Organization) -> PoolData:
    return org.extension(KEY, PoolData)


def add_pool(org: Organization, name: str, hosted: bool = False, pool_type: str = "automation") -> Pool:
    d = data(org)
    with org.lock:
        pool = Pool(d.next_pool_id, name, hosted, pool_type, org.now() - 400 * DAY)
        d.next_pool_id += 1
        d.pools[pool.id] = pool
        return pool


def pool(org: Organization, name: str) -> Pool:
    with org.lock:
        for p in data(org).pools.values():
            if p.name.lower() == name.lower():
                return p
    raise KeyError(f"no pool {name!r}")


def add_agent(org: Organization, pool_name: str, name: str, online: bool = True, enabled: bool = True) -> Agent:
    d = data(org)
    with org.lock:
        p = pool(org, pool_name)
        agent = Agent(d.next_agent_id, name, online, enabled, org.now() - 200 * DAY)
        d.next_agent_id += 1
        p.agents.append(agent)
        return agent


def add_job_request(org: Organization, pool_name: str, queue_time: float, *, agent_id: int | None = None,
                    assign_time: float | None = None, finish_time: float | None = None,
                    result: str | None = None, job_name: str = "Build") -> JobRequest:
    """An explicit job request: queued without ``agent_id``, running with one, finished with a result."""
    if (result is None) != (finish_time is None):
        raise ValueError("result and finish_time go together")
    d = data(org)
    with org.lock:
        p = pool(org, pool_name)
        req = JobRequest(d.next_request_id, p.id, float(queue_time),
                         assign_time if assign_time is not None else (queue_time if agent_id is not None else None),
                         finish_time, result, agent_id, job_name)
        d.next_request_id += 1
        p.explicit_requests.append(req)
        return req


def finish_job_request(org: Organization, request_id: int, result: str, finish_time: float) -> None:
    with org.lock:
        requests = (req for p in data(org).pools.values() for req in p.explicit_requests)
        req = find_by_id(requests, request_id, "job request")
        req.result, req.finish_time = result, float(finish_time)


def _generated_requests(org: Organization, p: Pool, now: float) -> list[JobRequest]:
    """Unfinished requests of a generated pool at ``now`` plus the last finished bucket's requests."""
    bucket = int(now // BUCKET)
    start = bucket * BUCKET
    out: list[JobRequest] = []
    n = 0
    for agent in p.agents:
        h = hash_ints(p.seed, agent.id, bucket)
        if not (agent.online and agent.enabled):
            continue
        # one finished request per agent in the previous bucket, a running one if busy now
        hp = hash_ints(p.seed, agent.id, bucket - 1)
        out.append(JobRequest(REQUEST_ID_BASE + (bucket - 1) * 4096 + n, p.id, start - BUCKET, start - BUCKET + 5,
                              start - 30, "failed" if unit(hp, 16) < 0.05 else "succeeded", agent.id,
                              "Build", 1 + hp % 50, "ci", 1000 + hp % 100000))
        n += 1
        if unit(h, 0) < p.busy_rate:
            out.append(JobRequest(REQUEST_ID_BASE + bucket * 4096 + n, p.id, start, start + 2 + unit(h, 16) * 20,
                                  None, None, agent.id, "Build", 1 + h % 50, "ci", 1000 + h % 100000))
            n += 1
    busy = sum(1 for r in out if r.result is None)
    usable = sum(1 for a in p.agents if a.online and a.enabled)
    if busy >= usable and p.queue[1] > 0:
        hq = hash_ints(p.seed, 0x0E, bucket)
        queued = p.queue[0] + int(unit(hq, 0) * (p.queue[1] - p.queue[0] + 1))
        for i in range(queued):
            out.append(JobRequest(REQUEST_ID_BASE + bucket * 4096 + 2048 + i, p.id, start - 1 - i * 7.5, None,
                                  None, None, None, "Build", 1 + (hq + i) % 50, "ci", 1000 + (hq + i) % 100000))
    return [r for r in out if r.queue_time <= now]


def job_requests(org: Organization, p: Pool, now: float) -> list[JobRequest]:
    """Every job request of a pool visible at ``now`` (finished ones too), newest first."""
    with org.lock:
        explicit = [r for r in p.explicit_requests if r.queue_time <= now]
    reqs = explicit + (_generated_requests(org, p, now) if p.generated else [])
    return sorted(reqs, key=lambda r: r.id, reverse=True)


def busy_agents(org: Organization, p: Pool, now: float) -> dict[int, JobRequest]:
    """Agent id -> the unfinished request it runs."""
    out: dict[int, JobRequest] = {}
    for r in job_requests(org, p, now):
        finished = r.result is not None and r.finish_time is not None and r.finish_time <= now
        if r.agent_id is not None and not finished:
            out[r.agent_id] = r
    return out


def _generated_pool(org: Organization, name: str, agents: int, *, hosted: bool = False, busy_rate: float = 0.5,
                    queue: tuple[int, int] = (0, 0), offline: int = 0, disabled: int = 0) -> Pool:
    p = add_pool(org, name, hosted)
    p.generated, p.busy_rate, p.queue = True, busy_rate, queue
    p.seed = hash_ints(org.seed, hash_str(org.name), 0x9001, p.id)
    prefix = "hosted" if hosted else name
    for i in range(agents):
        a = add_agent(org, name, f"{prefix}-{i + 1:03d}", online=i >= offline,
                      enabled=not (offline <= i < offline + disabled))
        a.created = org.anchor - (30 + i) * DAY
    return p


def populate(org: Organization) -> None:
    """The scenarios: a saturated pool, a pool with offline and disabled agents, an idle one; more
    pools at larger scales (500 agents at ``large``)."""
    _generated_pool(org, "Azure Pipelines", 10, hosted=True, busy_rate=0.4)
    # linux-build: every agent busy and a long queue, all the time
    _generated_pool(org, "linux-build", 8, busy_rate=1.0, queue=(18, 30))
    _generated_pool(org, "windows-build", 6, busy_rate=0.5, offline=1, disabled=1)
    _generated_pool(org, "Default", 2, busy_rate=0.0)
    extra = {"small": 0, "medium": 4, "large": 10}.get(org.scale or "small", 0)
    for i in range(extra):
        n = 474 // extra + (1 if i < 474 % extra else 0) if org.scale == "large" else 12
        _generated_pool(org, f"scale-set-{i + 1:02d}", n, busy_rate=0.3 + 0.05 * i, offline=n // 20)

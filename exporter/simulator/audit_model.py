"""Audit log of the simulated organization (NOTES §2.13).

Entries come from three sources, merged at query time:

* *scheduled* entries of :class:`AuditStream` s (one action at a steady rate), recomputed from a hash
  of ``(stream seed, k)`` like scheduled runs, so the log grows with simulated time at no memory cost;
* one ``Git.RefUpdatePoliciesBypassed`` entry per completed pull request of the git model whose
  completion bypassed branch policies, at its closing time;
* *explicit* entries added with :func:`add_entry` (scenarios and tests).

An entry id is ``"<reversed ticks>;<actor id>;<activity id>"``: sorting ids ascending lists the log
newest first, ties (equal timestamps) broken by the rest of the id, which is how the continuation
token stays exact.

``AuditData.mode`` switches the answers Azure DevOps gives when the log cannot be read:
``enabled``, ``disabled`` (auditing turned off), ``forbidden`` (the token lacks "View audit log"),
``unavailable`` (the organization is not backed by Microsoft Entra ID).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.git_model import git_data, stream_pull_requests
from exporter.simulator.model import (
    DAY,
    HOUR,
    MINUTE,
    PEOPLE,
    SERVICE_IDENTITY,
    Identity,
    Organization,
    hash_ints,
    hash_str,
    stable_uuid,
    to_ticks,
    unit,
)

KEY = "audit"
MODES = ("enabled", "disabled", "forbidden", "unavailable")
MAX_TICKS = 3_155_378_975_999_999_999  # DateTime.MaxValue in .NET ticks: ids count down from it
_UNIX_EPOCH_TICKS = 621_355_968_000_000_000  # .NET ticks of 1970-01-01
BYPASS_ACTION = ("Git.RefUpdatePoliciesBypassed", "Git", "modify")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    ticks: int  # 100 ns since the Unix epoch
    id: str
    action_id: str
    area: str
    category: str
    actor: Identity
    details: str
    project_id: str | None = None
    project_name: str | None = None
    data: tuple[tuple[str, Any], ...] = ()


@dataclass(slots=True)
class AuditStream:
    index: int
    action_id: str
    area: str
    category: str
    details: str
    seed: int
    period: float
    phase: float
    jitter: float


@dataclass
class AuditData:
    mode: str = "enabled"
    explicit: list[AuditEntry] = field(default_factory=list)
    streams: list[AuditStream] = field(default_factory=list)
    include_git_bypasses: bool = True
    counter: int = 0


def audit_data(org: Organization) -> AuditData:
    return org.extension(KEY, AuditData)


def set_mode(org: Organization, mode: str) -> None:
    """Switch how the audit log answers (see the module doc)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    audit_data(org).mode = mode


def entry_id(ticks: int, actor: Identity, activity: str) -> str:
    return f"{MAX_TICKS - (ticks + _UNIX_EPOCH_TICKS):019d};{actor.id};{activity}"


def add_entry(org: Organization, timestamp: float, action_id: str, area: str, category: str, *,
              actor: Identity | None = None, details: str = "", project: str | None = None,
              data: dict[str, Any] | None = None) -> AuditEntry:
    """Add an explicit entry at ``timestamp`` (several may share one timestamp)."""
    with org.lock:
        audit = audit_data(org)
        audit.counter += 1
        who = actor or PEOPLE[audit.counter % len(PEOPLE)]
        ticks = to_ticks(timestamp)
        p = org.project(project) if project else None
        entry = AuditEntry(ticks, entry_id(ticks, who, stable_uuid(org.name, "audit", str(audit.counter))),
                           action_id, area, category, who, details or f"{action_id} by {who.display_name}",
                           p.id if p else None, p.name if p else None, tuple(sorted((data or {}).items())))
        audit.explicit.append(entry)
        return entry


def add_stream(org: Organization, action_id: str, area: str, category: str, per_day: float,
               details: str = "") -> AuditStream:
    audit = audit_data(org)
    seed = hash_ints(org.seed, hash_str(org.name), hash_str(action_id), len(audit.streams))
    period = DAY / per_day
    st = AuditStream(len(audit.streams), action_id, area, category, details or action_id, seed, period,
                     unit(seed, 0) * period, period * 0.8)
    audit.streams.append(st)
    return st


def _stream_entries(org: Organization, st: AuditStream, lo: float, hi: float) -> Iterator[AuditEntry]:
    base = org.epoch + st.phase
    k0 = max(0, math.floor((lo - base - st.jitter) / st.period))
    k1 = math.floor((hi - base) / st.period)
    for k in range(k0, k1 + 1):
        h = hash_ints(st.seed, k)
        t = base + k * st.period + st.jitter * unit(h, 0)
        if not lo <= t < hi:
            continue
        actor = SERVICE_IDENTITY if st.area == "Auditing" and unit(h, 16) < 0.3 else PEOPLE[(h >> 20) % len(PEOPLE)]
        ticks = to_ticks(t)
        yield AuditEntry(ticks, entry_id(ticks, actor, stable_uuid("audit", str(st.seed), str(k))), st.action_id,
                         st.area, st.category, actor, f"{st.details} ({actor.display_name})")


def _bypass_entries(org: Organization, lo: float, hi: float, now: float) -> Iterator[AuditEntry]:
    git = git_data(org)
    action, area, category = BYPASS_ACTION
    candidates = [pr for pr in git.explicit if pr.bypass and pr.status == "completed" and pr.closed is not None]
    for st in git.streams:
        if st.bypass_rate > 0:
            candidates.extend(pr for pr in stream_pull_requests(org, st, closed=(lo, hi), now=now) if pr.bypass)
    repos = git.repositories
    for pr in candidates:
        if pr.closed is None or not lo <= pr.closed < hi or pr.closed > now:
            continue
        actor = pr.closed_by or pr.created_by
        ticks = to_ticks(pr.closed)
        repo = repos.get(pr.repository_id)
        p = org._projects.get(pr.project_id)
        yield AuditEntry(
            ticks, entry_id(ticks, actor, stable_uuid("bypass", str(pr.id))), action, area, category, actor,
            f"Bypassed policies on {pr.target_ref} in repository {repo.name if repo else '?'} "
            f"(pull request {pr.id})", pr.project_id, p.name if p else None,
            (("PullRequestId", pr.id), ("RefName", pr.target_ref), ("RepoName", repo.name if repo else None)),
        )


def entries(org: Organization, lo: float, hi: float, now: float) -> list[AuditEntry]:
    """Entries with ``lo <= timestamp < hi`` (and not after ``now``), newest first."""
    hi = min(hi, now + 1e-7)
    audit = audit_data(org)
    with org.lock:
        out = [e for e in audit.explicit if lo <= e.ticks / 1e7 < hi]
        for st in audit.streams:
            out.extend(_stream_entries(org, st, lo, hi))
        if audit.include_git_bypasses:
            out.extend(_bypass_entries(org, lo, hi, now))
    out.sort(key=lambda e: e.id)
    return out


_ACTIONS = (
    ("AuditLog.AccessLog", "Auditing", "access", 4.0, "Accessed the audit log"),
    ("Token.PatCreateEvent", "Token", "create", 3.0, "Created a personal access token"),
    ("Security.ModifyPermission", "Security", "modify", 2.0, "Changed a permission"),
    ("Policy.PolicyConfigModified", "Policy", "modify", 0.7, "Modified a branch policy"),
    ("Pipelines.PipelineModified", "Pipelines", "modify", 3.0, "Modified a pipeline"),
    ("Library.ServiceConnectionExecuted", "Library", "execute", 8.0, "Used a service connection"),
    ("Group.UpdateGroupMembership.Add", "Group", "modify", 0.5, "Added a member to a group"),
    ("Git.RepositoryCreated", "Git", "create", 0.2, "Created a repository"),
)


def populate(org: Organization) -> None:
    """A steady background of audit events, plus the named scenarios (a direct push bypassing policies,
    three entries sharing one timestamp)."""
    factor = {"small": 1.0, "medium": 3.0, "large": 20.0}[org.scale or "small"]
    for action, area, category, per_day, details in _ACTIONS:
        add_stream(org, action, area, category, per_day * factor, details)
    a = org.anchor
    if org.project("Payments") is not None:
        heidi = next(p for p in PEOPLE if p.display_name.startswith("Heidi"))
        add_entry(org, a - 2 * HOUR, *BYPASS_ACTION, actor=heidi, project="Payments",
                  details="Pushed to refs/heads/main of payments bypassing branch policies",
                  data={"RefName": "refs/heads/main", "RepoName": "payments"})
        same = a - 3 * HOUR - 17 * MINUTE
        add_entry(org, same, "Policy.PolicyConfigModified", "Policy", "modify", project="Payments",
                  details="Modified Minimum number of reviewers policy")
        add_entry(org, same, "Policy.PolicyConfigRemoved", "Policy", "remove", project="Payments",
                  details="Removed Minimum number of reviewers policy")
        add_entry(org, same, "Security.ModifyPermission", "Security", "modify",
                  details="Granted Bypass policies when pushing")

"""Branch policies of the simulated organization (policy configurations with scopes, NOTES §2.7).

A scope entry is ``{repositoryId: id | None (all repositories of the project), refName: ref | None,
matchKind: "Exact" | "Prefix" | "DefaultBranch"}``; how the exporter matches them is documented in
docs/review-and-audit.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.git_model import git_data, repositories, repository
from exporter.simulator.model import DAY, PEOPLE, Organization, hash_ints, hash_str, unit

KEY = "policy"

MINIMUM_REVIEWERS = "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd"
REQUIRED_REVIEWERS = "fd2167ab-b0be-447a-8ec8-39368250530e"
BUILD = "0609b952-1397-4640-95ec-e00a01b2c241"
WORK_ITEM_LINKING = "40e92b44-2fe1-4dd6-b3d8-74a9c21d0c6e"
COMMENT_REQUIREMENTS = "c6a1889d-b943-4856-b76f-9e46bb6b0df2"
MERGE_STRATEGY = "fa4e907d-c16b-4a4c-9dfa-4916e5d171ab"
FILE_SIZE = "2e26e725-8201-4edd-8bf5-978563c34a80"

TYPE_NAMES = {
    MINIMUM_REVIEWERS: "Minimum number of reviewers",
    REQUIRED_REVIEWERS: "Required reviewers",
    BUILD: "Build",
    WORK_ITEM_LINKING: "Work item linking",
    COMMENT_REQUIREMENTS: "Comment requirements",
    MERGE_STRATEGY: "Require a merge strategy",
    FILE_SIZE: "File size restriction",
}


@dataclass(frozen=True, slots=True)
class Scope:
    repository_id: str | None = None
    ref_name: str | None = None
    match_kind: str = "Exact"

    def json(self) -> dict[str, Any]:
        j: dict[str, Any] = {"refName": self.ref_name, "matchKind": self.match_kind,
                             "repositoryId": self.repository_id}
        if self.match_kind == "DefaultBranch":
            j.pop("refName")
        return j


@dataclass(slots=True)
class PolicyConfiguration:
    id: int
    project_id: str
    type_id: str
    scopes: tuple[Scope, ...]
    is_enabled: bool = True
    is_blocking: bool = True
    is_deleted: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    revision: int = 1


@dataclass
class PolicyData:
    configurations: dict[int, PolicyConfiguration] = field(default_factory=dict)
    next_id: int = 1


def policy_data(org: Organization) -> PolicyData:
    return org.extension(KEY, PolicyData)


def add_policy(org: Organization, project: str, type_id: str, scopes: list[Scope] | tuple[Scope, ...], *,
               is_enabled: bool = True, is_blocking: bool = True, is_deleted: bool = False,
               settings: dict[str, Any] | None = None) -> PolicyConfiguration:
    """Add a policy configuration (``minimumApproverCount`` etc. go in ``settings``)."""
    with org.lock:
        p = org._require_project(project)
        data = policy_data(org)
        config = PolicyConfiguration(data.next_id, p.id, type_id, tuple(scopes), is_enabled, is_blocking, is_deleted,
                                     dict(settings or {}), created=org.anchor - (100 + data.next_id) * DAY)
        data.next_id += 1
        data.configurations[config.id] = config
        return config


def scope(org: Organization, project: str, repo: str | None = None, ref: str | None = None,
          match_kind: str = "Exact") -> Scope:
    """A scope entry naming a repository by name (None: all repositories of the project)."""
    repo_id = repository(org, project, repo).id if repo is not None else None
    if ref is not None and not ref.startswith("refs/"):
        ref = "refs/heads/" + ref
    return Scope(repo_id, ref, match_kind)


def configurations(org: Organization, project_id: str) -> list[PolicyConfiguration]:
    with org.lock:
        return sorted((c for c in policy_data(org).configurations.values() if c.project_id == project_id),
                      key=lambda c: c.id)


def populate(org: Organization) -> None:
    """Scenario policies for Payments and Platform, seeded ones for generic projects."""
    git_data(org)
    if org.project("Payments") is not None and org.project("Platform") is not None:
        _scenarios(org)
    for p in org.projects:
        if p.name in ("Payments", "Platform"):
            continue
        h = hash_ints(org.seed, hash_str(p.id), 0x9011C7)
        if unit(h, 0) < 0.8:  # most generic projects protect every default branch with 1-2 reviewers
            add_policy(org, p.name, MINIMUM_REVIEWERS, [Scope(None, None, "DefaultBranch")],
                       settings={"minimumApproverCount": 1 + (h >> 20) % 2, "creatorVoteCounts": False})
        if unit(h, 32) < 0.6:
            add_policy(org, p.name, BUILD, [Scope(None, "refs/heads/main", "Exact")],
                       settings={"buildDefinitionId": 1, "displayName": "CI", "validDuration": 720})
        for repo in repositories(org, p):
            if unit(hash_ints(h, hash_str(repo.id)), 0) < 0.2:
                add_policy(org, p.name, COMMENT_REQUIREMENTS, [Scope(repo.id, "refs/heads/main", "Exact")])


def _scenarios(org: Organization) -> None:
    reviewers = [PEOPLE[6].id]
    # Payments: two reviewers on every default branch; the payments repository is fully protected.
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", None, None, "DefaultBranch")],
               settings={"minimumApproverCount": 2, "creatorVoteCounts": False, "allowDownvotes": False,
                         "resetOnSourcePush": True})
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "payments", "release/", "Prefix")],
               settings={"minimumApproverCount": 1, "creatorVoteCounts": False})
    add_policy(org, "Payments", BUILD, [scope(org, "Payments", "payments", "main")],
               settings={"buildDefinitionId": 2, "displayName": "payments-ci", "validDuration": 720,
                         "queueOnSourceUpdateOnly": True, "manualQueueOnly": False})
    add_policy(org, "Payments", COMMENT_REQUIREMENTS, [scope(org, "Payments", None, "main")])
    add_policy(org, "Payments", MERGE_STRATEGY, [scope(org, "Payments", "payments", "main")],
               settings={"useSquashMerge": True, "allowNoFastForward": False})
    add_policy(org, "Payments", REQUIRED_REVIEWERS, [scope(org, "Payments", "payments", "main")],
               settings={"requiredReviewerIds": reviewers, "filenamePatterns": ["/src/billing/*"],
                         "addedFilesOnly": False, "message": None, "minimumApproverCount": 1})
    # work item linking: only advisory (not blocking), so it counts nowhere
    add_policy(org, "Payments", WORK_ITEM_LINKING, [scope(org, "Payments", None, "main")], is_blocking=False)
    # a deleted policy that once required 4 reviewers on frontend
    add_policy(org, "Payments", MINIMUM_REVIEWERS, [scope(org, "Payments", "frontend", "main")], is_deleted=True,
               settings={"minimumApproverCount": 4})
    # Platform: reviewer policies per repository, none for legacy (a repository without a reviewer policy);
    # legacy only has a disabled one.
    for repo in ("core", "data-platform", "docs", "mobile"):
        add_policy(org, "Platform", MINIMUM_REVIEWERS, [scope(org, "Platform", repo, "main")],
                   settings={"minimumApproverCount": 1, "creatorVoteCounts": False})
    add_policy(org, "Platform", MINIMUM_REVIEWERS, [scope(org, "Platform", "legacy", "master")], is_enabled=False,
               settings={"minimumApproverCount": 2, "creatorVoteCounts": False})
    add_policy(org, "Platform", BUILD,
               [scope(org, "Platform", "core", "main"), scope(org, "Platform", "mobile", "main")],
               settings={"buildDefinitionId": 5, "displayName": "core-ci", "validDuration": 0})
    add_policy(org, "Platform", FILE_SIZE, [Scope(None, None, "Exact")],
               settings={"maximumGitBlobSizeInBytes": 10485760})

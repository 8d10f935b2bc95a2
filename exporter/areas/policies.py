"""The policies area: branch policies per repository and tracked branch (SPEC §4).

Per project and cycle (endpoints `repositories`, `policies`): one repositories listing and the
project's policy configurations. A configuration applies to a branch the way Azure DevOps applies its
scope entries (see `PolicyScope` in exporter/azdo/records.py). Only enabled, blocking, not deleted
configurations count.

Tracked branches of a repository: its default branch, plus every literal name among the configured
`branches` (no wildcard) that a policy scope names exactly for that repository. Branch lists are not
read (that would cost one request per repository), so a configured name that no policy names is not
reported: it could be a branch that does not exist. An empty repository (no default branch) has none.

A project's refresh fetches everything first and applies it only if every request succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.areas import base
from exporter.areas.projects import Project, ProjectDirectory
from exporter.areas.pull_requests import list_repositories
from exporter.azdo.api import AzureDevOpsApi
from exporter.azdo.fields import HEADS, branch_name
from exporter.azdo.records import PolicyConfiguration, Repository, parse_policy_configuration
from exporter.azdo.records import PolicyScope as Scope
from exporter.config.settings import Config
from exporter.metrics import catalogue as m

# Policy names (label values) by Azure DevOps policy type id (NOTES §2.7), and by display name as a fallback.
POLICY_TYPES = {
    "fa4e907d-c16b-4a4c-9dfa-4906e5d171dd": "minimum_reviewers",
    "0609b952-1397-4640-95ec-e00a01b2c241": "build_validation",
    "c6a1889d-b943-4856-b76f-9e46bb6b0df2": "comment_resolution",
    "40e92b44-2fe1-4dd6-b3d8-74a9c21d0c6e": "work_item_linking",
    "fd2167ab-b0be-447a-8ec8-39368250530e": "required_reviewers",
    "fa4e907d-c16b-4a4c-9dfa-4916e5d171ab": "merge_strategy",
}
POLICY_DISPLAY_NAMES = {
    "minimum number of reviewers": "minimum_reviewers",
    "minimum approval count": "minimum_reviewers",
    "build": "build_validation",
    "comment requirements": "comment_resolution",
    "work item linking": "work_item_linking",
    "required reviewers": "required_reviewers",
    "require a merge strategy": "merge_strategy",
}
POLICY_NAMES = ("minimum_reviewers", "build_validation", "comment_resolution", "work_item_linking",
                "required_reviewers", "merge_strategy")


@dataclass(frozen=True)
class Policy:
    name: str | None  # one of POLICY_NAMES, or None for other types
    counts: bool  # enabled, blocking and not deleted
    min_approvers: int
    scopes: tuple[Scope, ...]

    def applies(self, repository: Repository, branch: str) -> bool:
        return any(s.applies(repository, branch) for s in self.scopes)


def policy_of(configuration: PolicyConfiguration) -> Policy:
    """What a policy configuration means for the metrics."""
    name = POLICY_TYPES.get(configuration.type_id) or POLICY_DISPLAY_NAMES.get(configuration.type_name)
    counts = configuration.enabled and configuration.blocking and not configuration.deleted
    return Policy(name, counts, configuration.minimum_approvers, configuration.scopes)


def parse_policy(item: Mapping[str, Any]) -> Policy:
    """`policy_of` one item of a policy configurations answer."""
    return policy_of(parse_policy_configuration(item))


@dataclass
class ProjectState(base.ProjectState):
    repositories: dict[str, Repository] = field(default_factory=dict)
    policies: list[Policy] = field(default_factory=list)


_Fetched = tuple[dict[str, Repository], list[Policy]]


class PoliciesArea(base.ProjectArea[ProjectState, _Fetched]):
    """Refreshes branch policies for every admitted project and publishes its metric families."""

    name = m.AREA_POLICIES

    def __init__(self, config: Config, api: AzureDevOpsApi, projects: ProjectDirectory,
                 clock: Callable[[], float]) -> None:
        super().__init__(config, api, projects, clock)
        self._literal_branches = tuple(b.removeprefix(HEADS) for b in config.branches
                                       if not any(c in b for c in "*?["))

    def _new_state(self, project: Project) -> ProjectState:
        return ProjectState(project)

    def _fetch(self, state: ProjectState, now: float) -> _Fetched:
        repositories = list_repositories(self._api, self._config, state.project)
        policies = [policy_of(configuration) for configuration in self._api.policy_configurations(state.project.id)]
        return repositories, policies

    def _apply(self, state: ProjectState, fetched: _Fetched, now: float) -> None:
        state.repositories, state.policies = fetched  # a snapshot: nothing accumulates across cycles

    def tracked_branches(self, repository: Repository, policies: list[Policy]) -> list[str]:
        """The repository's default branch plus configured literal names that a policy names exactly."""
        if repository.default_branch is None:  # an empty repository has no branch at all
            return []
        branches = [repository.default_branch]
        named: set[str] = set()
        for policy in policies:
            for scope in policy.scopes:
                if scope.match_kind == "exact" and scope.ref_name and \
                        scope.repository_id in (None, repository.id):
                    branch = branch_name(scope.ref_name)
                    if branch is not None:
                        named.add(branch.casefold())
        for literal in self._literal_branches:
            if literal.casefold() in named and literal.casefold() not in {b.casefold() for b in branches}:
                branches.append(literal)
        return branches

    def _publish(self, now: float) -> list[Metric]:
        return list(self._build_families())

    def _build_families(self) -> Iterable[Metric]:
        min_reviewers = m.BRANCH_POLICY_MIN_REVIEWERS.gauge()
        enabled = m.BRANCH_POLICY_ENABLED.gauge()
        for state in sorted(self._states.values(), key=lambda s: s.project.name.lower()):
            counted = [p for p in state.policies if p.counts and p.name is not None]
            for repo in sorted(state.repositories.values(), key=lambda r: r.name.lower()):
                for branch in self.tracked_branches(repo, state.policies):
                    names = [state.project.name, repo.name, branch]
                    applying = [p for p in counted if p.applies(repo, branch)]
                    min_reviewers.add_metric(names, max((p.min_approvers for p in applying
                                                         if p.name == "minimum_reviewers"), default=0))
                    present = {p.name for p in applying}
                    for policy in POLICY_NAMES:
                        enabled.add_metric([*names, policy], 1 if policy in present else 0)
        yield from (min_reviewers, enabled)

"""The per-project refresh loop shared by the builds, pull-request, policy and deployment areas."""

from __future__ import annotations

import pytest
import requests

from exporter.areas.base import RefreshError, refresh_each_project
from exporter.areas.projects import Project
from exporter.azdo.client import ApiError, NotFoundError
from exporter.metrics import catalogue as m
from exporter.simulator.server import SimulatorServer
from tests.conftest import ExporterFactory, sample

ALL_AREAS_OFF = {"builds": 0, "tests": 0, "pull_requests": 0, "policies": 0, "deployments": 0,
                 "agent_pools": 0, "audit": 0}
ALPHA, BETA, GAMMA = Project("a", "Alpha"), Project("b", "Beta"), Project("c", "Gamma")


def test_a_failing_project_keeps_its_state_and_a_gone_one_leaves() -> None:
    def refresh_one(project: Project, old: str | None) -> str:
        if project is BETA:
            raise ApiError("http_5xx", "server error HTTP 503", endpoint="builds", status=503)
        if project is GAMMA:
            raise NotFoundError("http_4xx", "TF200016: The following project does not exist: Gamma",
                                endpoint="builds", status=404)
        return f"{project.name} new (was {old})"

    previous = {"a": "Alpha old", "b": "Beta old", "c": "Gamma old", "z": "deleted project"}
    states, failures = refresh_each_project([ALPHA, BETA, GAMMA], previous, refresh_one)
    assert states == {"a": "Alpha new (was Alpha old)", "b": "Beta old"}
    assert failures.reasons == ["http_5xx"]
    with pytest.raises(RefreshError) as caught:
        failures.raise_if_any()
    assert caught.value.reasons == ["http_5xx"] and "project Beta" in str(caught.value)


def test_a_project_that_never_loaded_is_not_kept_on_failure() -> None:
    def refresh_one(project: Project, old: str | None) -> str:
        raise ApiError("timeout", "no answer", endpoint="builds")

    states, failures = refresh_each_project([ALPHA], {}, refresh_one)
    assert states == {} and failures.reasons == ["timeout"]


@pytest.mark.parametrize("area", ["builds", "pull_requests", "policies", "deployments"])
def test_a_project_deleted_after_the_listing_leaves_without_failing_the_refresh(
        sim: SimulatorServer, make_exporter: ExporterFactory, area: str) -> None:
    """The fault soak found this: the shared projects listing is cached briefly, so a refresh may still ask
    for a project deleted meanwhile; its 404 (TF200016, the project does not exist) means "gone", not a
    failed refresh."""
    enabled = {area: "60s"} | ({"tests": "60s"} if area == "builds" else {})
    exporter = make_exporter(sim, intervals={**ALL_AREAS_OFF, **enabled})
    base = f"http://127.0.0.1:{sim.port}/_simulator"
    requests.post(f"{base}/projects", json={"add": ["Alpha", "Beta"]}, timeout=10)
    assert exporter.refresh_all_once() == {area: None}
    if area == "builds":
        assert sample(exporter, m.PIPELINE_INFO.name, project="Beta", pipeline="ci", pipeline_id="2",
                      repository="Beta", default_branch="main") == 1
    requests.post(f"{base}/projects", json={"remove": ["Beta"]}, timeout=10)
    assert exporter.refresh_all_once() == {area: None}  # the listing is still cached: Beta answers 404
    assert sample(exporter, m.EXPORTER_REFRESH_ERRORS.total, collector=area, reason="http_4xx") == 0
    assert not [s for fam in exporter.registry.collect() for s in fam.samples if s.labels.get("project") == "Beta"]

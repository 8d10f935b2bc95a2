"""The Azure DevOps client against the simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.azdo.auth import PatCredential
from exporter.azdo.client import API_VERSION_PREVIEW, ApiError, AzureDevOpsClient
from exporter.metrics import catalogue as m
from exporter.metrics.selfmetrics import SelfMetrics
from exporter.simulator.model import Organization
from exporter.simulator.server import Fault, SimulatorServer
from tests.conftest import PAT, FakeClock


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(pat: str = PAT, **kwargs: object) -> tuple[AzureDevOpsClient, CollectorRegistry]:
    registry = CollectorRegistry()
    client = AzureDevOpsClient(PatCredential(token=pat), SelfMetrics(registry), **kwargs)  # type: ignore[arg-type]
    return client, registry


@pytest.fixture
def org_with_runs(empty_org: Organization, clock: FakeClock) -> Organization:
    empty_org.add_project("Payments")
    pipeline = empty_org.add_pipeline("Payments", "deploy-api", folder="infra", default_branch="main",
                                      repository="payments", has_tests=True)
    for i in range(25):
        t = clock.now - 86400 + i * 600
        empty_org.add_run("Payments", pipeline.id, branch="main", result="succeeded", queue_time=t - 300,
                          start_time=t - 240, finish_time=t)
    return empty_org


def builds_requests(server: SimulatorServer) -> list[dict[str, str]]:
    return [r.params for r in server.requests if r.path.endswith("/_apis/build/builds")]


def test_every_request_carries_auth_suppress_header_and_api_version(sim: SimulatorServer,
                                                                     org_with_runs: Organization) -> None:
    client, _ = make_client()
    project = org_with_runs.project("Payments")
    assert project is not None
    client.get("projects", f"{sim.base_url}/_apis/projects")
    client.get("test_summary", f"{sim.base_url}/{project.id}/_apis/test/ResultSummaryByBuild",
               {"buildId": 1}, API_VERSION_PREVIEW)
    first, second = sim.requests[-2:]
    assert first.params == {"api-version": "7.1"}
    assert second.params == {"buildId": "1", "api-version": "7.1-preview.1"}
    for request in (first, second):
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["x-tfs-fedauthredirect"] == "Suppress"
        assert headers["authorization"].startswith("Basic ")
        assert request.status == 200


def test_paging_follows_header_tokens_and_sends_identical_parameters(sim: SimulatorServer,
                                                                      org_with_runs: Organization) -> None:
    client, registry = make_client()
    project = org_with_runs.project("Payments")
    assert project is not None
    params = {"statusFilter": "completed", "queryOrder": "finishTimeAscending", "$top": 10}
    pages = list(client.pages_by_token("builds", f"{sim.base_url}/{project.id}/_apis/build/builds", params))
    ids = [b["id"] for page in pages for b in page]
    assert len(set(ids)) == 25  # every run, possibly with repeats at equal timestamps
    sent = builds_requests(sim)
    assert len(sent) == len(pages) >= 3
    assert "continuationToken" not in sent[0]
    for request in sent[1:]:
        assert request["continuationToken"]
        assert {k: v for k, v in request.items() if k != "continuationToken"} == {
            "statusFilter": "completed", "queryOrder": "finishTimeAscending", "$top": "10", "api-version": "7.1"}
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total,
                                     {"endpoint": "builds", "code": "200"}) == len(pages)


def test_repeated_continuation_token_stops_the_listing(sim: SimulatorServer, org_with_runs: Organization) -> None:
    client, _ = make_client()
    sim.faults.add(Fault(kind="repeat_token", path=r"/_apis/build/builds$"))
    project = org_with_runs.project("Payments")
    assert project is not None
    with pytest.raises(ApiError) as caught:
        list(client.pages_by_token("builds", f"{sim.base_url}/{project.id}/_apis/build/builds",
                                   {"queryOrder": "finishTimeAscending", "$top": 5}))
    assert caught.value.reason == "bad_response"
    assert "repeated" in str(caught.value)
    assert len(builds_requests(sim)) == 2  # the first page and the one that repeated the token


def test_429_with_retry_after_is_waited_out_and_counted(sim: SimulatorServer) -> None:
    client, registry = make_client()
    sim.faults.add(Fault(kind="throttle", path=r"/_apis/projects$", count=1, retry_after=1))
    started = time.monotonic()
    body = client.get("projects", f"{sim.base_url}/_apis/projects").body
    waited = time.monotonic() - started
    assert isinstance(body["value"], list)
    assert waited >= 0.95  # the client waited as told before asking again
    assert [r.status for r in sim.requests] == [429, 200]
    assert registry.get_sample_value(m.EXPORTER_THROTTLED.total) == 1
    delay = registry.get_sample_value(m.EXPORTER_RATE_LIMIT_DELAY_SECONDS.total)
    assert delay is not None and delay >= 0.95


def test_retry_after_on_a_200_delays_the_next_request(sim: SimulatorServer) -> None:
    sleep = RecordingSleep()
    client, _ = make_client(sleep=sleep)
    sim.faults.add(Fault(kind="retry_after_ok", path=r"/_apis/projects$", count=1, retry_after=7))
    client.get("projects", f"{sim.base_url}/_apis/projects")
    assert sleep.calls == []  # a 200 is not retried
    client.get("projects", f"{sim.base_url}/_apis/projects")
    assert len(sleep.calls) == 1 and 6.5 <= sleep.calls[0] <= 7.0


def test_signin_page_with_203_is_an_auth_error(sim: SimulatorServer) -> None:
    client, registry = make_client()
    sim.faults.add(Fault(kind="signin", path=r"/_apis/projects$"))
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "auth"
    assert "sign-in page" in str(caught.value) and "203" in str(caught.value)
    assert len(sim.requests) == 1  # auth errors are not retried
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total, {"endpoint": "projects",
                                                                          "code": "203"}) == 1


def test_wrong_pat_is_an_auth_error_with_401(sim: SimulatorServer) -> None:
    client, _ = make_client(pat="not-the-right-one")
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "auth" and caught.value.status == 401


def test_5xx_is_retried_with_growing_backoff(sim: SimulatorServer) -> None:
    sleep = RecordingSleep()
    client, registry = make_client(sleep=sleep, max_retries=3, backoff_base=1.0)
    sim.faults.add(Fault(kind="status", status=503, path=r"/_apis/projects$", count=2))
    client.get("projects", f"{sim.base_url}/_apis/projects")
    assert [r.status for r in sim.requests] == [503, 503, 200]
    assert len(sleep.calls) == 2
    assert 0 <= sleep.calls[0] <= 2.0 and 0 <= sleep.calls[1] <= 4.0  # full jitter under 1*2^n
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total, {"endpoint": "projects",
                                                                          "code": "503"}) == 2


def test_5xx_gives_up_after_max_retries(sim: SimulatorServer) -> None:
    client, _ = make_client(sleep=RecordingSleep(), max_retries=2)
    sim.faults.add(Fault(kind="status", status=500, path=r"/_apis/projects$"))
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "http_5xx"
    assert len(sim.requests) == 3


def test_timeout_is_reported_as_timeout(sim: SimulatorServer) -> None:
    client, registry = make_client(sleep=RecordingSleep(), timeout=0.3, max_retries=1)
    sim.faults.add(Fault(kind="delay", delay=1.5, path=r"/_apis/projects$"))
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "timeout"
    assert time.monotonic() - started < 1.4  # it did not wait for the slow answers
    assert registry.get_sample_value(m.EXPORTER_API_REQUESTS.total, {"endpoint": "projects",
                                                                          "code": "timeout"}) == 2


@pytest.mark.parametrize("kind", ["malformed", "truncated"])
def test_bad_json_is_a_bad_response(sim: SimulatorServer, kind: str) -> None:
    client, _ = make_client(sleep=RecordingSleep(), max_retries=1)
    sim.faults.add(Fault(kind=kind, path=r"/_apis/projects$"))
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "bad_response"


def test_connection_reset_is_a_connection_error(sim: SimulatorServer) -> None:
    client, _ = make_client(sleep=RecordingSleep(), max_retries=1)
    sim.faults.add(Fault(kind="reset", path=r"/_apis/projects$"))
    with pytest.raises(ApiError) as caught:
        client.get("projects", f"{sim.base_url}/_apis/projects")
    assert caught.value.reason == "connection"


def test_rate_limit_headers_become_self_metrics(sim: SimulatorServer) -> None:
    client, registry = make_client()
    client.get("projects", f"{sim.base_url}/_apis/projects")
    text = [fam for fam in registry.collect() if fam.name == m.EXPORTER_RATE_LIMIT_REMAINING.name][0]
    assert len(text.samples) == 1 and text.samples[0].value >= 0


def test_rate_limit_delay_header_slows_the_next_request(sim: SimulatorServer) -> None:
    sleep = RecordingSleep()
    client, registry = make_client(sleep=sleep)
    sim.rate_limit_delay = 2.5
    client.get("projects", f"{sim.base_url}/_apis/projects")
    assert registry.get_sample_value(m.EXPORTER_RATE_LIMIT_DELAY_SECONDS.total) == 2.5
    assert sleep.calls == []
    sim.rate_limit_delay = 0.0
    client.get("projects", f"{sim.base_url}/_apis/projects")
    assert len(sleep.calls) == 1 and 2.0 <= sleep.calls[0] <= 2.5  # paused before asking again

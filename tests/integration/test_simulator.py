"""The simulated Azure DevOps organization, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from exporter.simulator.model import DAY, HOUR, Organization
from exporter.simulator.server import Fault, SimulatorServer

ANCHOR = 1_790_000_000.0  # 2026-09-21T14:13:20Z
V: dict[str, str | int] = {"api-version": "7.1"}
PREVIEW: dict[str, str | int] = {"api-version": "7.1-preview.1"}


class Clock:
    """A fake wall clock the tests move by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


@pytest.fixture(scope="module")
def org() -> Organization:
    return Organization.generate(seed=1, scale="small", now_fn=lambda: 0.0, anchor=ANCHOR)


@pytest.fixture(scope="module")
def server(org: Organization) -> Iterator[SimulatorServer]:
    with SimulatorServer(org, bearer_tokens={"entra-token"}) as s:
        yield s


@pytest.fixture()
def sim(server: SimulatorServer) -> Iterator[SimulatorServer]:
    server.faults.clear()
    server.clear_requests()
    yield server
    server.faults.clear()


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    s = requests.Session()
    s.auth = ("", "sim-pat")
    s.headers["X-TFS-FedAuthRedirect"] = "Suppress"
    yield s
    s.close()


def get(http: requests.Session, sim: SimulatorServer, url_path: str, **params: Any) -> requests.Response:
    return http.get(sim.base_url + url_path, params={**V, **params}, timeout=10)


def builds(http: requests.Session, sim: SimulatorServer, project: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a builds query."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while True:
        r = get(http, sim, f"/{project}/_apis/build/builds", **params)
        assert r.status_code == 200, r.text
        out.extend(r.json()["value"])
        token = r.headers.get("x-ms-continuationtoken")
        if not token:
            return out
        assert token not in seen
        seen.add(token)
        params["continuationToken"] = token


def definition_id(http: requests.Session, sim: SimulatorServer, project: str, name: str) -> int:
    r = get(http, sim, f"/{project}/_apis/build/definitions", name=name)
    (d,) = r.json()["value"]
    return int(d["id"])


def main_runs(http: requests.Session, sim: SimulatorServer, project: str, name: str) -> list[dict[str, Any]]:
    """Completed main runs of a pipeline, newest finish first."""
    did = definition_id(http, sim, project, name)
    return builds(http, sim, project, definitions=did, branchName="refs/heads/main", statusFilter="completed",
                  queryOrder="finishTimeDescending")


# ------------------------------------------------------------------------------------- scenarios


def test_projects_and_pipelines_of_the_small_scale(http: requests.Session, sim: SimulatorServer) -> None:
    names = [p["name"] for p in get(http, sim, "/_apis/projects").json()["value"]]
    assert "Payments" in names and "Platform" in names and len(names) == 3
    defs = get(http, sim, "/Payments/_apis/build/definitions", queryOrder="definitionNameAscending").json()
    assert [(d["path"], d["name"]) for d in defs["value"]] == [
        ("\\infra", "deploy-api"), ("\\web", "frontend-ci"), ("\\", "payments-ci")]
    defs = get(http, sim, "/Platform/_apis/build/definitions", queryOrder="definitionNameAscending").json()
    assert {(d["path"], d["name"]) for d in defs["value"]} == {
        ("\\mobile", "app-ci"), ("\\", "core-ci"), ("\\", "docs-build"), ("\\data", "etl"),
        ("\\tools", "legacy-nightly")}


def test_deploy_api_main_broken_since_five_hours(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Payments", "deploy-api")
    assert runs[0]["result"] == "failed"
    last_ok = next(r for r in runs if r["result"] == "succeeded")
    assert ts(last_ok["finishTime"]) < ANCHOR - 5 * HOUR
    after = [r for r in runs if ts(r["finishTime"]) > ts(last_ok["finishTime"])]
    assert after and all(r["result"] == "failed" for r in after)
    broken_since = min(ts(r["finishTime"]) for r in after)
    assert ANCHOR - 5 * HOUR <= broken_since < ANCHOR - 4 * HOUR  # broken for more than 4 hours
    # the history reaches back at least 45 days
    assert ts(runs[-1]["queueTime"]) < ANCHOR - 45 * DAY


def test_core_ci_last_success_forty_days_back(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Platform", "core-ci")
    assert runs[0]["result"] == "failed"
    last_ok = next(r for r in runs if r["result"] == "succeeded")
    assert 40 * DAY < ANCHOR - ts(last_ok["finishTime"]) < 41 * DAY
    # the same answer through the recipe the exporter uses for "last success before the window"
    did = definition_id(http, sim, "Platform", "core-ci")
    r = get(http, sim, "/Platform/_apis/build/builds", definitions=did, branchName="refs/heads/main",
            statusFilter="completed", resultFilter="succeeded", queryOrder="finishTimeDescending", **{"$top": 1})
    assert r.json()["value"][0]["id"] == last_ok["id"]


def test_legacy_nightly_never_succeeded(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Platform", "legacy-nightly")
    assert runs and {r["result"] for r in runs} == {"failed"}
    assert 38 * DAY < ANCHOR - ts(runs[-1]["queueTime"]) < 41 * DAY
    assert runs[0]["definition"]["path"] == "\\tools" and runs[0]["reason"] == "schedule"


def test_etl_failures_then_only_canceled(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Platform", "etl")
    assert runs[0]["result"] == "canceled"
    first_not_canceled = next(r for r in runs if r["result"] != "canceled")
    assert first_not_canceled["result"] == "failed"


def test_app_ci_latest_partially_succeeded_after_success(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Platform", "app-ci")
    assert [r["result"] for r in runs[:2]] == ["partiallySucceeded", "succeeded"]


def test_frontend_ci_is_flaky(http: requests.Session, sim: SimulatorServer) -> None:
    runs = main_runs(http, sim, "Payments", "frontend-ci")
    failed = sum(r["result"] == "failed" for r in runs) / len(runs)
    assert 0.2 < failed < 0.4
    assert runs[0]["definition"]["path"] == "\\web"


def test_payments_ci_branches_and_tests(http: requests.Session, sim: SimulatorServer) -> None:
    did = definition_id(http, sim, "Payments", "payments-ci")
    runs = builds(http, sim, "Payments", definitions=did, minTime="2026-09-18T00:00:00Z",
                  queryOrder="queueTimeDescending")
    branches = {r["sourceBranch"] for r in runs}
    assert {"refs/heads/main", "refs/heads/release/2026.11", "refs/heads/feature/x"} <= branches
    prs = [r for r in runs if r["sourceBranch"].startswith("refs/pull/")]
    assert prs and all(r["sourceBranch"].endswith("/merge") and r["reason"] == "pullRequest" for r in prs)
    assert prs[0]["triggerInfo"]["pr.number"] == prs[0]["sourceBranch"].split("/")[2]
    main = main_runs(http, sim, "Payments", "payments-ci")
    assert {r["result"] for r in main if ts(r["finishTime"]) > ANCHOR - 3 * DAY} == {"succeeded"}
    summary = get(http, sim, "/Payments/_apis/test/ResultSummaryByBuild", buildId=main[0]["id"], **PREVIEW).json()
    analysis = summary["aggregatedResultsAnalysis"]
    assert analysis["totalTests"] > 1000 and "Failed" not in analysis["resultsByOutcome"]
    assert analysis["resultsByOutcome"]["Passed"]["count"] <= analysis["totalTests"]
    assert summary["totalRunsCount"] == 1
    assert summary["testResultsContext"]["build"]["id"] == main[0]["id"]


def test_failed_runs_with_tests_have_failed_tests(http: requests.Session, sim: SimulatorServer) -> None:
    failed = main_runs(http, sim, "Payments", "deploy-api")[0]
    assert failed["result"] == "failed"
    body = http.get(sim.base_url + "/Payments/_apis/testresults/resultsummarybybuild",
                    params={"buildId": failed["id"], **PREVIEW}).json()
    by = body["aggregatedResultsAnalysis"]["resultsByOutcome"]
    assert by["Failed"]["count"] >= 1 and by["Failed"]["outcome"] == "failed"
    assert sum(o["count"] for o in by.values()) == body["aggregatedResultsAnalysis"]["totalTests"]


def test_docs_build_has_no_tests(http: requests.Session, sim: SimulatorServer) -> None:
    run = main_runs(http, sim, "Platform", "docs-build")[0]
    assert run["result"] == "succeeded"
    body = get(http, sim, "/Platform/_apis/test/ResultSummaryByBuild", buildId=run["id"], **PREVIEW).json()
    assert body["aggregatedResultsAnalysis"]["totalTests"] == 0
    assert body["aggregatedResultsAnalysis"]["resultsByOutcome"] == {}
    assert body["totalRunsCount"] == 0


def test_release_branch_runs_in_both_projects(http: requests.Session, sim: SimulatorServer) -> None:
    for project in ("Payments", "Platform"):
        runs = builds(http, sim, project, branchName="refs/heads/release/2026.11",
                      minTime="2026-09-01T00:00:00Z", queryOrder="finishTimeDescending")
        assert runs and {r["sourceBranch"] for r in runs} == {"refs/heads/release/2026.11"}


def test_payments_always_has_running_and_queued_builds() -> None:
    clock = Clock()
    org = Organization.generate(seed=7, scale="small", now_fn=clock, anchor=ANCHOR, speed=1.0)
    payments = org.project("Payments")
    assert payments is not None
    for step in range(40):
        clock.t = 1000.0 + step * 397.0  # ~4.4 simulated hours in uneven steps
        now = org.now()
        states = [r.status_at(now) for r in org.runs(payments)]
        assert "inProgress" in states and "notStarted" in states, step


# ------------------------------------------------------------------------------------- payloads


def test_build_payload_shape(http: requests.Session, sim: SimulatorServer) -> None:
    r = get(http, sim, "/Payments/_apis/build/builds", statusFilter="inProgress,notStarted,completed",
            queryOrder="queueTimeDescending", **{"$top": 200})
    values = r.json()["value"]
    assert r.json()["count"] == len(values) == 200
    by_status = {b["status"]: b for b in values}
    assert set(by_status) == {"inProgress", "notStarted", "completed"}
    assert "result" not in by_status["inProgress"] and "finishTime" not in by_status["inProgress"]
    assert "startTime" in by_status["inProgress"]
    assert "startTime" not in by_status["notStarted"] and "result" not in by_status["notStarted"]
    done = by_status["completed"]
    assert done["result"] in ("succeeded", "failed", "partiallySucceeded", "canceled")
    for key in ("queueTime", "startTime", "finishTime"):
        assert len(done[key]) == len("2026-10-08T03:37:08.1587704Z") and done[key].endswith("Z")
    pid = done["project"]["id"]
    assert done["_links"]["web"]["href"] == f"{sim.base_url}/{pid}/_build/results?buildId={done['id']}"
    assert done["uri"] == f"vstfs:///Build/Build/{done['id']}"
    assert done["definition"]["project"]["name"] == "Payments"
    assert done["repository"]["type"] == "TfsGit" and len(done["sourceVersion"]) == 40
    assert done["requestedFor"]["displayName"] and done["queue"]["pool"]["isHosted"] is True
    times = [b["queueTime"] for b in values]
    assert times == sorted(times, reverse=True)


def test_definitions_latest_builds_and_all_properties(http: requests.Session, sim: SimulatorServer) -> None:
    r = get(http, sim, "/Payments/_apis/build/definitions", includeLatestBuilds="true",
            includeAllProperties="true", name="deploy-*")
    (d,) = r.json()["value"]
    assert d["latestCompletedBuild"]["result"] == "failed"
    assert d["latestBuild"]["id"] >= 0 and d["latestBuild"]["definition"]["id"] == d["id"]
    assert d["repository"] == {**d["repository"], "type": "TfsGit", "name": "payments",
                               "defaultBranch": "refs/heads/main"}
    assert d["process"]["type"] == 2
    plain = get(http, sim, "/Payments/_apis/build/definitions", name="deploy-api").json()["value"][0]
    assert "latestBuild" not in plain and "repository" not in plain
    assert get(http, sim, "/Payments/_apis/build/definitions", path="\\infra").json()["count"] == 1
    assert get(http, sim, "/Payments/_apis/build/definitions", definitionIds=d["id"]).json()["count"] == 1


def test_changes_are_commits_before_queue_time(http: requests.Session, sim: SimulatorServer) -> None:
    run = main_runs(http, sim, "Payments", "deploy-api")[0]
    r = get(http, sim, f"/Payments/_apis/build/builds/{run['id']}/changes")
    changes = r.json()["value"]
    assert 1 <= len(changes) <= 3 and changes[0]["id"] == run["sourceVersion"]
    for c in changes:
        assert ts(c["timestamp"]) < ts(run["queueTime"])
        assert c["type"] == "TfsGit" and c["author"]["displayName"] and len(c["id"]) == 40
    assert get(http, sim, f"/Payments/_apis/build/builds/{run['id']}/changes").json() == r.json()
    assert len(get(http, sim, f"/Payments/_apis/build/builds/{run['id']}/changes", **{"$top": 1}).json()["value"]) == 1
    single = get(http, sim, f"/Payments/_apis/build/builds/{run['id']}").json()
    assert single["id"] == run["id"] and single["result"] == "failed"
    assert get(http, sim, "/Payments/_apis/build/builds/999999999").status_code == 404


def test_determinism_same_seed_same_bytes() -> None:
    bodies = []
    for seed in (3, 3, 4):
        org = Organization.generate(seed=seed, scale="small", now_fn=lambda: 0.0, anchor=ANCHOR)
        with SimulatorServer(org, port=0) as s:
            sess = requests.Session()
            sess.auth = ("", "sim-pat")
            parts = []
            for project in ("Payments", "Platform"):
                url = f"{s.base_url}/{project}/_apis/build/"
                r = sess.get(url + "builds", params={**V, "queryOrder": "finishTimeDescending", "$top": 300})
                parts.append(r.text.replace(f"127.0.0.1:{s.port}", "HOST"))
                r = sess.get(url + "definitions", params={**V, "includeLatestBuilds": "true"})
                parts.append(r.text.replace(f"127.0.0.1:{s.port}", "HOST"))
            projects = sess.get(s.base_url + "/_apis/projects", params=V).text
            parts.append(projects.replace(f"127.0.0.1:{s.port}", "HOST"))
            sess.close()
        bodies.append("".join(parts))
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


# ------------------------------------------------------------------------------------- queries


def test_status_and_result_filters_are_unions(http: requests.Session, sim: SimulatorServer) -> None:
    both = get(http, sim, "/Payments/_apis/build/builds", statusFilter="inProgress,notStarted").json()["value"]
    assert {b["status"] for b in both} == {"inProgress", "notStarted"}
    only = get(http, sim, "/Payments/_apis/build/builds", statusFilter="notStarted").json()["value"]
    assert 0 < len(only) < len(both)
    res = builds(http, sim, "Platform", resultFilter="failed,partiallySucceeded", queryOrder="finishTimeDescending",
                 minTime="2026-09-10T00:00:00Z")
    assert {b["result"] for b in res} == {"failed", "partiallySucceeded"}
    everything = get(http, sim, "/Payments/_apis/build/builds", statusFilter="all", **{"$top": 5}).json()
    assert everything["count"] == 5


def test_min_max_time_and_finish_order(http: requests.Session, sim: SimulatorServer) -> None:
    lo, hi = "2026-09-20T00:00:00Z", "2026-09-21T00:00:00Z"
    runs = builds(http, sim, "Platform", minTime=lo, maxTime=hi, queryOrder="finishTimeAscending")
    assert runs and all(b["status"] == "completed" for b in runs)
    finishes = [ts(b["finishTime"]) for b in runs]
    assert finishes == sorted(finishes) and ts(lo) <= finishes[0] and finishes[-1] < ts(hi)
    queued = builds(http, sim, "Platform", minTime=lo, maxTime=hi)  # no order: queue time
    assert all(ts(lo) <= ts(b["queueTime"]) < ts(hi) for b in queued)
    started = builds(http, sim, "Payments", minTime="2026-09-21T12:00:00Z", queryOrder="startTimeDescending")
    assert all("startTime" in b for b in started)
    # with a finish-time order, running builds (no finishTime) are excluded
    recent = builds(http, sim, "Payments", minTime="2026-09-21T12:00:00Z", queryOrder="finishTimeDescending")
    assert recent and all(b["status"] == "completed" for b in recent)


def test_branch_definitions_reason_ids_and_max_per_definition(http: requests.Session, sim: SimulatorServer) -> None:
    did = definition_id(http, sim, "Payments", "payments-ci")
    runs = builds(http, sim, "Payments", definitions=did, branchName="refs/heads/feature/x")
    assert runs and {(b["definition"]["id"], b["sourceBranch"]) for b in runs} == {(did, "refs/heads/feature/x")}
    assert get(http, sim, "/Payments/_apis/build/builds", branchName="main").json()["count"] == 0  # needs a full ref
    prs = get(http, sim, "/Payments/_apis/build/builds", reasonFilter="pullRequest", **{"$top": 50}).json()["value"]
    assert prs and {b["reason"] for b in prs} == {"pullRequest"}
    latest = get(http, sim, "/Payments/_apis/build/builds", maxBuildsPerDefinition=1,
                 queryOrder="queueTimeDescending").json()["value"]
    assert len(latest) == 3 and len({b["definition"]["id"] for b in latest}) == 3
    ids = [latest[0]["id"], latest[1]["id"], 999_999_999]
    picked = get(http, sim, "/Payments/_apis/build/builds", buildIds=",".join(map(str, ids))).json()["value"]
    assert sorted(b["id"] for b in picked) == sorted(ids[:2])
    assert get(http, sim, "/Payments/_apis/build/builds", deletedFilter="onlyDeleted").json()["count"] == 0


def test_builds_paging_tokens(http: requests.Session, sim: SimulatorServer) -> None:
    params = {"queryOrder": "finishTimeDescending", "minTime": "2026-09-14T00:00:00Z"}
    full = get(http, sim, "/Platform/_apis/build/builds", **params).json()["value"]
    r = get(http, sim, "/Platform/_apis/build/builds", **params, **{"$top": 25})
    token = r.headers["x-ms-continuationtoken"]
    assert token == full[25]["finishTime"]  # the sort key of the first item of the next page
    paged = builds(http, sim, "Platform", **params, **{"$top": 25})
    assert [b["id"] for b in paged] == [b["id"] for b in full]
    asc = builds(http, sim, "Platform", queryOrder="queueTimeAscending", minTime="2026-09-14T00:00:00Z",
                 **{"$top": 40})
    assert [b["id"] for b in asc] == sorted((b["id"] for b in asc), key=lambda i: [x["id"] for x in asc].index(i))
    times = [b["queueTime"] for b in asc]
    assert times == sorted(times) and len({b["id"] for b in asc}) == len(asc)


def test_equal_timestamps_repeat_across_pages(server: SimulatorServer) -> None:
    org = Organization.empty(now_fn=lambda: 0.0, anchor=ANCHOR)
    org.add_project("Ties")
    pl = org.add_pipeline("Ties", "same-time")
    for _ in range(3):
        org.add_run("Ties", pl.id, result="succeeded", queue_time=ANCHOR - 100, start_time=ANCHOR - 90,
                    finish_time=ANCHOR - 10)
    with SimulatorServer(org) as s:
        r = requests.get(s.base_url + "/Ties/_apis/build/builds", auth=("", "sim-pat"),
                         params={**V, "queryOrder": "finishTimeDescending", "$top": 2})
        token = r.headers["x-ms-continuationtoken"]
        r2 = requests.get(s.base_url + "/Ties/_apis/build/builds", auth=("", "sim-pat"),
                          params={**V, "queryOrder": "finishTimeDescending", "$top": 2, "continuationToken": token})
        # the next page starts at items with key <= token: the equal-time items come again
        assert r2.json()["count"] == 2 and r2.headers["x-ms-continuationtoken"] == token


def test_definitions_paging_needs_query_order(http: requests.Session, sim: SimulatorServer) -> None:
    r = get(http, sim, "/Platform/_apis/build/definitions", queryOrder="definitionNameAscending", **{"$top": 2})
    assert [d["name"] for d in r.json()["value"]] == ["app-ci", "core-ci"]
    token = r.headers["x-ms-continuationtoken"]
    r2 = get(http, sim, "/Platform/_apis/build/definitions", queryOrder="definitionNameAscending",
             continuationToken=token, **{"$top": 2})
    assert [d["name"] for d in r2.json()["value"]] == ["docs-build", "etl"]
    bad = get(http, sim, "/Platform/_apis/build/definitions", continuationToken=token, **{"$top": 2})
    assert bad.status_code == 400
    assert bad.json()["message"] == "Continuation token timestamp without query order is ambiguous."
    assert bad.json()["typeKey"] == "InvalidDefinitionQueryException"
    desc = get(http, sim, "/Platform/_apis/build/definitions", queryOrder="lastModifiedDescending").json()["value"]
    assert len(desc) == 5


def test_projects_paging(http: requests.Session, sim: SimulatorServer) -> None:
    r = get(http, sim, "/_apis/projects", **{"$top": 2})
    assert r.json()["count"] == 2 and r.headers["x-ms-continuationtoken"] == "2"
    r2 = get(http, sim, "/_apis/projects", **{"$top": 2}, continuationToken="2", stateFilter="all")
    assert r2.json()["count"] == 1 and "x-ms-continuationtoken" not in r2.headers
    assert get(http, sim, "/_apis/projects", **{"$skip": 1}).json()["count"] == 2


def test_project_by_id_or_any_case_and_unknown_project(http: requests.Session, sim: SimulatorServer) -> None:
    pid = get(http, sim, "/_apis/projects").json()["value"][1]["id"]
    by_id = get(http, sim, f"/{pid}/_apis/build/definitions").json()
    by_name = get(http, sim, "/pAyMeNtS/_apis/build/definitions").json()
    assert by_id == by_name
    r = get(http, sim, "/NoSuchProject/_apis/build/builds")
    assert r.status_code == 404 and r.json()["typeKey"] == "ProjectDoesNotExistWithNameException"


# ------------------------------------------------------------------------------------- protocol


def test_auth_401_with_suppress_203_without(sim: SimulatorServer) -> None:
    url = sim.base_url + "/_apis/projects"
    r = requests.get(url, params=V, auth=("", "wrong"), headers={"X-TFS-FedAuthRedirect": "Suppress"})
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/json")
    assert "wrong" not in r.text
    r = requests.get(url, params=V, auth=("", "wrong"))
    assert r.status_code == 203 and r.headers["Content-Type"].startswith("text/html")
    assert "<title>Azure DevOps Services | Sign In</title>" in r.text
    assert requests.get(url, params=V).status_code == 203
    assert requests.get(url, params=V, auth=("anyone", "sim-pat")).status_code == 200
    assert requests.get(url, params=V, headers={"Authorization": "Bearer entra-token"}).status_code == 200
    assert requests.get(url, params=V, headers={"Authorization": "Bearer nope"}).status_code == 203
    assert requests.get(url, params=V, headers={"Authorization": "Basic !!!"}).status_code == 203
    for req in sim.requests:
        assert "sim-pat" not in json.dumps(req.headers) and "entra-token" not in json.dumps(req.headers)
        assert base64.b64encode(b":sim-pat").decode() not in json.dumps(req.headers)


def test_api_version_and_preview(http: requests.Session, sim: SimulatorServer) -> None:
    r = http.get(sim.base_url + "/_apis/projects")
    assert r.status_code == 400 and r.json()["typeKey"] == "VssVersionNotSpecifiedException"
    r = http.get(sim.base_url + "/_apis/projects", headers={"Accept": "application/json;api-version=7.1"})
    assert r.status_code == 200
    r = get(http, sim, "/Payments/_apis/test/ResultSummaryByBuild", buildId=1)
    assert r.status_code == 400
    assert r.json()["message"] == (
        'The requested version "7.1" of the resource is under preview. The -preview flag must be supplied '
        'in the api-version for such requests. For example: "7.1-preview"')
    r = http.get(sim.base_url + "/Payments/_apis/test/ResultSummaryByBuild",
                 params={"api-version": "7.1-preview", "buildId": "1"})
    assert r.status_code == 200


def test_rate_limit_headers_and_request_log(http: requests.Session, sim: SimulatorServer) -> None:
    r1 = get(http, sim, "/_apis/projects", unknownParam="x")
    r2 = get(http, sim, "/_apis/projects")
    for r in (r1, r2):
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Resource"] and r.headers["X-RateLimit-Limit"] == "200"
        assert int(r.headers["X-RateLimit-Reset"]) > time.time()
    assert int(r2.headers["X-RateLimit-Remaining"]) <= int(r1.headers["X-RateLimit-Remaining"])
    req = sim.requests[0]
    assert (req.method, req.path, req.status) == ("GET", "/contoso/_apis/projects", 200)
    assert req.params == {"api-version": "7.1", "unknownParam": "x"}
    assert req.headers["Authorization"] == "Basic [redacted]"
    sim.clear_requests()
    assert sim.requests == []


def read_all(s: socket.socket) -> str:
    """Read until the server closes the connection."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_malformed_requests_get_json_400(sim: SimulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        data = read_all(s)
    assert data.startswith(("HTTP/1.1 400", "HTTP/1.0 400")) and '"typeKey"' in data
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(b"GET /contoso/_apis/projects HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        data = read_all(s)
    assert data.startswith("HTTP/1.1 400") and '"typeKey"' in data
    r = requests.get(sim.base_url + "/Payments/_apis/build/builds", params={**V, "$top": "lots"},
                     auth=("", "sim-pat"))
    assert r.status_code == 400 and r.json()["message"]
    r = requests.get(sim.base_url + "/Payments/_apis/build/builds", params={**V, "minTime": "yesterday"},
                     auth=("", "sim-pat"))
    assert r.status_code == 400
    # the server still answers afterwards
    assert requests.get(sim.base_url + "/_apis/projects", params=V, auth=("", "sim-pat")).status_code == 200


# ------------------------------------------------------------------------------------- faults


def test_fault_status_with_count(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="status", path=r"/_apis/projects", status=503, count=2))
    assert [get(http, sim, "/_apis/projects").status_code for _ in range(3)] == [503, 503, 200]
    r = get(http, sim, "/Payments/_apis/build/builds", **{"$top": 1})
    assert r.status_code == 200
    sim.faults.add(Fault(kind="status", path=r"build/builds", status=500))
    r = get(http, sim, "/Payments/_apis/build/builds")
    assert r.status_code == 500 and r.json()["typeKey"]


def test_fault_delay_provokes_timeouts(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="delay", path="projects", delay=1.0, count=1))
    with pytest.raises(requests.Timeout):
        http.get(sim.base_url + "/_apis/projects", params=V, timeout=0.2)
    assert get(http, sim, "/_apis/projects").status_code == 200


def test_fault_bodies(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="malformed", path="projects", count=1))
    r = get(http, sim, "/_apis/projects")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        r.json()
    sim.faults.add(Fault(kind="truncated", path="projects", count=1))
    good = get(http, sim, "/_apis/projects")
    with pytest.raises(ValueError):
        good.json()
    full = get(http, sim, "/_apis/projects").text
    assert full.startswith(good.text) and len(good.text) == len(full) // 2
    sim.faults.add(Fault(kind="signin", path="projects", count=1))
    r = get(http, sim, "/_apis/projects")
    assert r.status_code == 203 and "Sign In" in r.text and r.headers["Content-Type"].startswith("text/html")


def test_fault_throttle_and_retry_after(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="throttle", path="builds", retry_after=7, count=1))
    r = get(http, sim, "/Payments/_apis/build/builds", **{"$top": 1})
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Reset" in r.headers
    assert r.json()["message"].startswith("TF400733:")
    sim.faults.add(Fault(kind="retry_after_ok", path="builds", retry_after=2, count=1))
    r = get(http, sim, "/Payments/_apis/build/builds", **{"$top": 1})
    assert r.status_code == 200 and r.headers["Retry-After"] == "2" and r.json()["count"] == 1


def test_fault_repeat_token(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="repeat_token", path="build/builds"))
    tokens = []
    params: dict[str, Any] = {"queryOrder": "finishTimeDescending", "$top": 10}
    for _ in range(3):
        r = get(http, sim, "/Payments/_apis/build/builds", **params)
        tokens.append(r.headers["x-ms-continuationtoken"])
        params["continuationToken"] = tokens[-1]
    assert len(set(tokens)) == 1


def test_fault_reset_and_probability(http: requests.Session, sim: SimulatorServer) -> None:
    sim.faults.add(Fault(kind="reset", path="projects", count=1))
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.base_url + "/_apis/projects", params=V, auth=("", "sim-pat"), timeout=5)
    assert get(http, sim, "/_apis/projects").status_code == 200
    sim.faults.add(Fault(kind="status", path="projects", status=502, probability=0.5))
    codes = [get(http, sim, "/_apis/projects").status_code for _ in range(40)]
    assert 5 < codes.count(502) < 35 and codes.count(200) == 40 - codes.count(502)
    with pytest.raises(ValueError):
        Fault(kind="nonsense")


def test_fault_control_endpoint(http: requests.Session, sim: SimulatorServer) -> None:
    url = f"http://127.0.0.1:{sim.port}/_simulator/faults"
    r = requests.post(url, json=[{"kind": "status", "path": "projects", "status": 504}])
    assert r.status_code == 200 and len(sim.faults) == 1
    assert get(http, sim, "/_apis/projects").status_code == 504
    assert requests.post(url, json=[{"kind": "bogus"}]).status_code == 400
    assert requests.post(url, data=b"not json").status_code == 400
    assert requests.delete(url).status_code == 200 and len(sim.faults) == 0
    assert get(http, sim, "/_apis/projects").status_code == 200


# ------------------------------------------------------------------------------------- time


def test_time_evolution_with_speed() -> None:
    clock = Clock()
    org = Organization.generate(seed=1, scale="small", now_fn=clock, anchor=ANCHOR, speed=60.0)
    assert org.now() == ANCHOR
    with SimulatorServer(org) as s:
        sess = requests.Session()
        sess.auth = ("", "sim-pat")

        def deploy_main() -> list[dict[str, Any]]:
            r = sess.get(s.base_url + "/Payments/_apis/build/builds",
                         params={**V, "definitions": 1, "branchName": "refs/heads/main",
                                 "queryOrder": "queueTimeDescending", "statusFilter": "all",
                                 "minTime": "2026-09-20T00:00:00Z"})
            return list(r.json()["value"])

        before = deploy_main()
        running = [b for b in before if b["status"] != "completed"]
        clock.t += 3600  # one hour of clock = 60 simulated hours
        assert org.now() == ANCHOR + 60 * HOUR
        after = deploy_main()
        assert len(after) > len(before) + 100  # a run every 30 minutes
        done = {b["id"]: b for b in after}
        for b in running:
            assert done[b["id"]]["status"] == "completed" and done[b["id"]]["result"] == "failed"
        completed = [b for b in after if b["status"] == "completed"]
        assert all(b["result"] == "failed" for b in completed if ts(b["finishTime"]) > ANCHOR - 5 * HOUR)
        assert ts(completed[0]["finishTime"]) > ANCHOR + 59 * HOUR
        sess.close()


# ------------------------------------------------------------------------------------- custom data


def test_custom_org_via_add_run() -> None:
    clock = Clock()
    org = Organization.empty(now_fn=clock, anchor=ANCHOR, name="fabrikam")
    p = org.add_project("Shop")
    assert org.project("shop") is p and org.project(p.id) is p
    pl = org.add_pipeline("Shop", "api", folder="svc/backend", has_tests=True)
    ok = org.add_run("Shop", pl.id, result="succeeded", queue_time=ANCHOR - 3000, start_time=ANCHOR - 2900,
                     finish_time=ANCHOR - 2000, tests=(10, 0, 1))
    pr = org.add_run("Shop", pl.id, branch="refs/pull/42/merge", result="failed", queue_time=ANCHOR - 1900,
                     start_time=ANCHOR - 1800, finish_time=ANCHOR - 1000, reason="pullRequest", tests=(8, 2, 1))
    running = org.add_run("Shop", pl.id, queue_time=ANCHOR - 500, start_time=ANCHOR - 400)
    queued = org.add_run("Shop", pl.id, queue_time=ANCHOR - 100)
    with SimulatorServer(org, pat="custom") as s:
        assert s.base_url.endswith("/fabrikam")
        sess = requests.Session()
        sess.auth = ("", "custom")

        def all_builds() -> dict[int, dict[str, Any]]:
            r = sess.get(s.base_url + "/Shop/_apis/build/builds", params=V)
            return {b["id"]: b for b in r.json()["value"]}

        b = all_builds()
        assert b[ok.id]["sourceBranch"] == "refs/heads/main" and b[ok.id]["result"] == "succeeded"
        assert b[ok.id]["definition"]["path"] == "\\svc\\backend"
        assert b[pr.id]["sourceBranch"] == "refs/pull/42/merge"
        assert b[running.id]["status"] == "inProgress" and "result" not in b[running.id]
        assert b[queued.id]["status"] == "notStarted" and "startTime" not in b[queued.id]
        summary = sess.get(s.base_url + "/Shop/_apis/test/ResultSummaryByBuild",
                           params={**PREVIEW, "buildId": pr.id}).json()["aggregatedResultsAnalysis"]
        assert summary["totalTests"] == 11 and summary["resultsByOutcome"]["Failed"]["count"] == 2
        org.complete_run(running.id, "failed", ANCHOR - 10, tests=(1, 1, 0))
        assert all_builds()[running.id]["result"] == "failed"
        org.rename_pipeline("Shop", pl.id, "api-v2")
        assert all_builds()[ok.id]["definition"]["name"] == "api-v2"
        org.rename_project("Shop", "Store")
        r = sess.get(s.base_url + "/Store/_apis/build/builds", params=V)
        assert r.json()["value"][0]["project"]["name"] == "Store"
        assert sess.get(s.base_url + "/Shop/_apis/build/builds", params=V).status_code == 404
        org.delete_pipeline("Store", pl.id)
        assert sess.get(s.base_url + "/Store/_apis/build/builds", params=V).json()["count"] == 0
        org.remove_project("Store")
        assert sess.get(s.base_url + "/_apis/projects", params=V).json()["count"] == 0
        sess.close()


def test_stop_is_idempotent_and_closes_the_port() -> None:
    s = SimulatorServer(Organization.empty(now_fn=lambda: 0.0, anchor=ANCHOR)).start()
    port = s.port
    sess = requests.Session()
    assert sess.get(s.base_url + "/_apis/projects", params=V, auth=("", "sim-pat")).status_code == 200
    s.stop()
    s.stop()
    with pytest.raises(requests.ConnectionError):
        sess.get(f"http://127.0.0.1:{port}/contoso/_apis/projects", params=V, auth=("", "sim-pat"), timeout=2)
    sess.close()


# ------------------------------------------------------------------------------------- scale


def test_medium_scale_shape() -> None:
    org = Organization.generate(seed=2, scale="medium", now_fn=lambda: 0.0, anchor=ANCHOR)
    assert len(org.projects) == 10
    assert sum(len(p.pipelines) for p in org.projects) >= 160


def test_large_scale_is_compact_and_fast() -> None:
    t0 = time.perf_counter()
    org = Organization.generate(seed=1, scale="large", now_fn=lambda: 0.0, anchor=ANCHOR)
    assert time.perf_counter() - t0 < 5
    assert len(org.projects) >= 100
    assert sum(len(p.pipelines) for p in org.projects) >= 5000
    assert org.count_runs(ANCHOR - 30 * DAY, ANCHOR) >= 300_000
    project = org.projects[42].name
    with SimulatorServer(org) as s:
        t0 = time.perf_counter()
        r = requests.get(f"{s.base_url}/{project}/_apis/build/builds", auth=("", "sim-pat"),
                         params={**V, "queryOrder": "finishTimeDescending", "minTime": "2026-08-22T00:00:00Z"})
        elapsed = time.perf_counter() - t0
    assert r.status_code == 200 and r.json()["count"] == 1000 and "x-ms-continuationtoken" in r.headers
    assert elapsed < 5

"""Tests of exporter.config.settings: durations, filters, precedence, URLs, credentials and error reporting."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from exporter.config.settings import (
    Config,
    ConfigError,
    Intervals,
    NameFilter,
    Secret,
    check_config_file,
    load_config,
    parse_duration,
)

PAT = "pat-value-that-must-never-leak-7f3a"
ORG = "https://dev.azure.com/contoso"
BASE_ENV = {"AZDO_PAT": PAT}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def errors_of(path: str | None, env: dict[str, str], overrides: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env, overrides)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# ----------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("30d", 30 * 86400.0),
        ("1w", 7 * 86400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("90", 90.0),
        (" 2.5 ", 2.5),
        (45, 45.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["abc", "", "1h30", "5M", "5 minutes", "1y", "h", "1e3s", "nan", "inf", "1:30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid duration '{text}' (use e.g. 90s, 5m, 1h, 30d)")):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-5m", "-1", -3, -0.5])
def test_parse_duration_rejects_negative(text: str | int | float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_duration(text)


def test_parse_duration_rejects_bool_and_other_types() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)
    with pytest.raises(ValueError):
        parse_duration(float("inf"))


# ---------------------------------------------------------------------------------------------- globs


def test_name_filter_globs_case_insensitive_exclude_wins() -> None:
    f = NameFilter(include=("*",), exclude=("Sandbox*", "*-old"))
    assert f.matches("Payments") is True
    assert f.matches("Sandbox") is False
    assert f.matches("sandbox-team") is False
    assert f.matches("api-OLD") is False

    g = NameFilter(include=("infra/*", "Web?"), exclude=("infra/legacy*",))
    assert g.matches("INFRA/deploy-api") is True
    assert g.matches("infra/legacy-build") is False
    assert g.matches("web1") is True
    assert g.matches("web12") is False
    assert g.matches("other") is False


def test_name_filter_default_matches_everything() -> None:
    assert NameFilter().matches("anything/at all") is True
    assert NameFilter(include=()).matches("x") is False


def test_intervals_enabled() -> None:
    intervals = Intervals(audit=0)
    assert intervals.enabled("builds") is True
    assert intervals.enabled("audit") is False
    with pytest.raises(ValueError, match="did you mean 'pull_requests'"):
        intervals.enabled("pullrequests")


# ------------------------------------------------------------------------------------------ secrets


def test_secret_never_shows_its_value() -> None:
    s = Secret(PAT)
    assert repr(s) == "Secret('********')"
    assert str(s) == "Secret('********')"
    assert f"{s}" == "Secret('********')"
    assert PAT not in repr([s])
    assert s.reveal() == PAT
    assert s == Secret(PAT)
    assert s != Secret("other")
    assert bool(Secret("")) is False
    assert bool(s) is True
    assert len({Secret("a"), Secret("a")}) == 1


def test_config_repr_hides_secrets(tmp_path: Path) -> None:
    pat_file = write(tmp_path, f"  {PAT}\n", "pat")
    path = write(tmp_path, f"organization_url: {ORG}\npat_file: {pat_file}\n")
    config = load_config(path, {})
    assert config.pat is not None and config.pat.reveal() == PAT
    assert config.pat_file == pat_file
    assert PAT not in repr(config)
    assert PAT not in str(config)


def test_secrets_never_in_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"organization_url: https://user:{PAT}@dev.azure.com/contoso\n"
        f"pat: {PAT}\n"
        f"bearer_token: {PAT}\n"
        "lookback: nope\n",
    )
    env = {"AZDO_PAT": PAT, "AZDO_BEARER_TOKEN": PAT}
    errors = errors_of(path, env)
    joined = "\n".join(errors)
    assert PAT not in joined
    assert f"{path}:2:1: pat: secrets are not read from the configuration file" in joined
    assert "set the environment variable AZDO_PAT or use pat_file" in joined
    assert f"{path}:3:1: bearer_token: secrets are not read" in joined
    assert "must not contain credentials" in joined
    assert "more than one given (env AZDO_PAT, env AZDO_BEARER_TOKEN)" in joined


def test_secret_in_env_duration_is_still_an_invalid_duration_but_pat_never_echoed() -> None:
    # the value of AZDO_PAT is used only as a secret, even when other settings are wrong
    errors = errors_of(None, {"AZDO_PAT": PAT, "AZDO_ORG_URL": "ftp://x"})
    assert errors == [
        "env AZDO_ORG_URL: invalid URL 'ftp://x': expected an http(s) URL, "
        "e.g. https://dev.azure.com/contoso or https://tfs.example.com/tfs/DefaultCollection"
    ]


# ---------------------------------------------------------------------------------------- precedence


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"organization_url: {ORG}\n"), BASE_ENV)
    assert config.organization_url == ORG
    assert config.organization == "contoso"
    assert config.pat == Secret(PAT)
    assert config.bearer_token is None and config.pat_file is None and config.bearer_token_file is None
    assert config.projects == NameFilter(("*",), ())
    assert config.branches == ("main", "master", "release/*")
    assert config.lookback == 30 * 86400
    assert config.broken_results == frozenset({"failed"})
    assert [p.pattern for p in config.production_environments] == ["(?i)prod"]
    assert config.intervals == Intervals()
    assert config.intervals.pull_requests == 300
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9862)
    assert (config.log_level, config.log_format) == ("INFO", "text")
    assert config.request_timeout == 30.0
    assert config.max_retries == 3


def test_overrides_beat_env_beat_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"organization_url: {ORG}\n"
        "listen: 127.0.0.1:1000\n"
        "log_level: debug\n"
        "lookback: 7d\n"
        "intervals: {builds: 5m, audit: 0}\n"
        "branches: [develop]\n",
    )
    env = {
        **BASE_ENV,
        "AZDO_LISTEN": "127.0.0.2:2000",
        "AZDO_LOG_LEVEL": "warning",
        "AZDO_INTERVAL_BUILDS": "2m",
        "AZDO_BRANCHES": "trunk, release/* ,",
    }
    config = load_config(path, env, {"listen": "[::1]:3000", "log_format": "JSON", "log_level": None})
    assert (config.listen_host, config.listen_port) == ("::1", 3000)  # override
    assert config.log_level == "WARNING"  # env (override None = not given)
    assert config.log_format == "json"  # override
    assert config.lookback == 7 * 86400  # file
    assert config.intervals.builds == 120  # env beats file
    assert config.intervals.audit == 0  # file
    assert config.intervals.enabled("audit") is False
    assert config.intervals.tests == 60  # default
    assert config.branches == ("trunk", "release/*")


def test_env_only_configuration() -> None:
    env = {
        "AZDO_ORG_URL": "https://dev.azure.com/fabrikam/",
        "AZDO_BEARER_TOKEN": "tok",
        "AZDO_PROJECTS_INCLUDE": "Payments,Web*",
        "AZDO_PROJECTS_EXCLUDE": "WebOld",
        "AZDO_PIPELINES_EXCLUDE": "experiments/*",
        "AZDO_REPOSITORIES_INCLUDE": "*",
        "AZDO_LOOKBACK": "14d",
        "AZDO_BROKEN_RESULTS": "failed, partially_succeeded",
        "AZDO_PRODUCTION_ENVIRONMENTS": "^prod$,(?i)live",
        "AZDO_INTERVAL_PULL_REQUESTS": "10m",
        "AZDO_INTERVAL_AGENT_POOLS": "0",
        "AZDO_LISTEN": ":9000",
        "AZDO_LOG_FORMAT": "json",
        "AZDO_REQUEST_TIMEOUT": "1m",
        "AZDO_MAX_RETRIES": "5",
        "AZDO_RELEASE_URL": "https://vsrm.example.com/fabrikam/",
        "AZDO_PAT_FILE": "",  # empty variables count as unset
    }
    config = load_config(None, env)
    assert config.organization_url == "https://dev.azure.com/fabrikam"
    assert config.bearer_token == Secret("tok") and config.pat is None
    assert config.projects == NameFilter(("Payments", "Web*"), ("WebOld",))
    assert config.projects.matches("webshop") and not config.projects.matches("webold")
    assert config.pipelines == NameFilter(("*",), ("experiments/*",))
    assert config.lookback == 14 * 86400
    assert config.broken_results == frozenset({"failed", "partiallySucceeded"})
    assert [p.pattern for p in config.production_environments] == ["^prod$", "(?i)live"]
    assert config.intervals.pull_requests == 600
    assert config.intervals.enabled("agent_pools") is False
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9000)
    assert config.request_timeout == 60.0
    assert config.max_retries == 5
    assert config.release_url == "https://vsrm.example.com/fabrikam"
    assert config.audit_url == "https://auditservice.dev.azure.com/fabrikam"


def test_overrides_accept_any_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, f"organization_url: {ORG}\n")
    config = load_config(
        path,
        BASE_ENV,
        {"intervals": {"builds": "10s"}, "projects": {"exclude": ["Sandbox"]}, "max_retries": 0, "lookback": 3600},
    )
    assert config.intervals.builds == 10
    assert config.projects == NameFilter(("*",), ("Sandbox",))
    assert config.max_retries == 0
    assert config.lookback == 3600
    assert errors_of(path, BASE_ENV, {"lisen": "x:1"}) == ["--lisen: unknown setting (did you mean 'listen'?)"]


def test_full_example_from_spec(tmp_path: Path) -> None:
    pat_file = write(tmp_path, PAT + "\n", "azdo-pat")
    path = write(
        tmp_path,
        f"""\
organization_url: https://dev.azure.com/contoso
pat_file: {pat_file}          # or AZDO_PAT
projects:     {{include: ["*"], exclude: ["Sandbox*"]}}
pipelines:    {{include: ["*"], exclude: []}}      # matched against "folder/name"
repositories: {{include: ["*"], exclude: []}}
branches: ["main", "master", "release/*"]        # plus each pipeline's default branch
lookback: 30d
broken_results: [failed]
production_environments: ["(?i)prod"]
intervals: {{builds: 60s, tests: 60s, pull_requests: 5m, policies: 30m, deployments: 2m,
            agent_pools: 30s, audit: 10m}}        # an area set to 0 is disabled
digest: {{days: [mon, fri], time: "09:00", time_zone: Europe/Berlin}}
shards: 4
""",
    )
    assert check_config_file(path) == []
    config = load_config(path, {})
    assert config.pat == Secret(PAT)
    assert config.projects.matches("Payments") and not config.projects.matches("SandboxA")
    assert config.intervals == Intervals(60, 60, 300, 1800, 120, 30, 600)


# ------------------------------------------------------------------------------------------ hosts


def test_hosts_derived_for_dev_azure_com() -> None:
    config = load_config(None, {**BASE_ENV, "AZDO_ORG_URL": "https://dev.azure.com/contoso/"})
    assert config.organization_url == "https://dev.azure.com/contoso"
    assert config.organization == "contoso"
    assert config.release_url == "https://vsrm.dev.azure.com/contoso"
    assert config.audit_url == "https://auditservice.dev.azure.com/contoso"


def test_server_collection_url_keeps_every_api_under_it() -> None:
    url = "https://tfs.example.com/tfs/DefaultCollection"
    config = load_config(None, {**BASE_ENV, "AZDO_ORG_URL": url + "/"})
    assert config.organization_url == url
    assert config.organization == "DefaultCollection"
    assert config.release_url == url
    assert config.audit_url == url


def test_release_and_audit_urls_can_be_overridden(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "organization_url: http://127.0.0.1:8080/tfs/Sim\n"
        "release_url: http://127.0.0.1:8081/Sim/\n"
        "audit_url: http://127.0.0.1:8082/Sim\n",
    )
    config = load_config(path, BASE_ENV)
    assert config.release_url == "http://127.0.0.1:8081/Sim"
    assert config.audit_url == "http://127.0.0.1:8082/Sim"
    assert config.organization == "Sim"


def test_config_constructed_directly_derives_urls() -> None:
    config = Config("https://dev.azure.com/acme/")
    assert (config.organization, config.release_url, config.audit_url) == (
        "acme",
        "https://vsrm.dev.azure.com/acme",
        "https://auditservice.dev.azure.com/acme",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dev.azure.com/contoso", "expected an http(s) URL"),
        ("https://dev.azure.com/contoso/ProjectX", "the organization only, no project"),
        ("https://dev.azure.com/", "the organization only, no project"),
        ("https://tfs.example.com", "expected an organization or collection URL"),
        ("https://dev.azure.com/contoso?x=1", "query string"),
    ],
)
def test_bad_organization_urls(url: str, message: str) -> None:
    errors = errors_of(None, {**BASE_ENV, "AZDO_ORG_URL": url})
    assert len(errors) == 1
    assert errors[0].startswith("env AZDO_ORG_URL: ")
    assert message in errors[0]


# ------------------------------------------------------------------------------------------ errors


def test_file_with_many_mistakes_reports_all_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
organization_url: https://dev.azure.com/contoso
projects: {include: ["*"], exclud: ["Sandbox*"]}
lookback: 3x
intervals:
  builds: abc
  pullrequests: 5m
  audit: -5m
branches: [main, refs/pull/*]
broken_results: [failed, succeeded, partially_succeeded, bogus]
production_environments: ["(?i)prod", "(unclosed"]
listen: "::9862"
log_level: verbose
max_retries: 2.5
lookbak: 1d
request_timeout: 0
""",
    )
    errors = errors_of(path, {**BASE_ENV, "AZDO_LOG_FORMAT": "xml"}, {"listen": "nope"})
    assert errors == [
        f"{path}:2:28: projects.exclud: unknown key (did you mean 'exclude'?)",
        f"{path}:3:11: lookback: invalid duration '3x' (use e.g. 90s, 5m, 1h, 30d)",
        f"{path}:5:11: intervals.builds: invalid duration 'abc' (use e.g. 90s, 5m, 1h, 30d)",
        f"{path}:6:3: intervals.pullrequests: unknown area (did you mean 'pull_requests'?); "
        "areas: builds, tests, pull_requests, policies, deployments, agent_pools, audit",
        f"{path}:7:10: intervals.audit: invalid duration '-5m': must not be negative",
        f"{path}:8:18: branches[1]: 'refs/pull/*': only branches are tracked (refs/heads/…); "
        "pull requests and tags never are",
        f"{path}:9:26: broken_results[1]: 'succeeded' cannot count as broken; use failed and/or partiallySucceeded",
        f"{path}:9:58: broken_results[3]: unknown result 'bogus'; use failed and/or partiallySucceeded",
        f"{path}:10:39: production_environments[1]: invalid regular expression '(unclosed': "
        "missing ), unterminated subpattern at position 0",
        f"{path}:11:9: listen: invalid listen address '::9862': put IPv6 addresses in brackets, e.g. [::]:9862",
        f"{path}:12:12: log_level: invalid log level 'verbose'; use one of DEBUG, INFO, WARNING, ERROR",
        f"{path}:13:14: max_retries: '2.5': expected a whole number (0 or more)",
        f"{path}:14:1: lookbak: unknown key (did you mean 'lookback'?)",
        f"{path}:15:18: request_timeout: '0': must be greater than 0",
        "env AZDO_LOG_FORMAT: invalid log format 'xml'; use text or json",
        "--listen: invalid listen address 'nope' (use HOST:PORT, e.g. 0.0.0.0:9862, :9862 or [::]:9862)",
    ]
    assert check_config_file(path) == [e for e in errors if e.startswith(path)]


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, f"organization_url: {ORG}\nprojects: [a, b\nlookback: 1d\n")
    errors = check_config_file(path)
    assert len(errors) == 1
    assert re.match(rf"{re.escape(path)}:3:\d+: invalid YAML: ", errors[0]), errors[0]
    # no pile of follow-up errors (missing organization_url, credentials) after a broken file
    assert errors_of(path, {}) == errors


def test_yaml_structure_errors(tmp_path: Path) -> None:
    assert check_config_file(write(tmp_path, "- a\n- b\n")) == [
        f"{tmp_path}/config.yaml:1:1: top level: expected a mapping of keys to values, got a list"
    ]
    path = write(
        tmp_path,
        f"organization_url: {ORG}\nlookback: 1d\nlookback: 2d\nprojects: [a]\nbranches: {{a: b}}\n"
        "intervals: 5m\nlog_level:\n",
    )
    assert check_config_file(path) == [
        f"{path}:3:1: lookback: duplicate key (first given on line 2)",
        f"{path}:4:11: projects: expected a mapping of keys to values, got a list",
        f"{path}:5:11: branches: expected a list",
        f"{path}:6:12: intervals: expected a mapping of keys to values, got '5m'",
        f"{path}:7:11: log_level: no value given",
    ]


def test_missing_file_and_missing_required_settings(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert check_config_file(missing) == [f"{missing}: cannot read the configuration file: No such file or directory"]
    errors = errors_of(None, {})
    assert errors[0].startswith("configuration: organization_url: required (in the file or as AZDO_ORG_URL)")
    assert errors[1].startswith("configuration: credentials: none given; set one of AZDO_PAT")
    # an empty file is a valid (empty) file: the settings may all come from the environment
    empty = write(tmp_path, "")
    assert load_config(empty, {**BASE_ENV, "AZDO_ORG_URL": ORG}).organization == "contoso"


def test_shadowed_invalid_values_are_reported_too(tmp_path: Path) -> None:
    path = write(tmp_path, f"organization_url: {ORG}\nlookback: forever\n")
    assert errors_of(path, {**BASE_ENV, "AZDO_LOOKBACK": "7d"}) == [
        f"{path}:2:11: lookback: invalid duration 'forever' (use e.g. 90s, 5m, 1h, 30d)"
    ]


def test_empty_lists_that_make_no_sense(tmp_path: Path) -> None:
    path = write(tmp_path, f"organization_url: {ORG}\nprojects: {{include: []}}\nbroken_results: []\n")
    assert check_config_file(path) == [
        f"{path}:2:21: projects.include: the include list is empty, so nothing would be collected "
        '(use ["*"] for everything)',
        f"{path}:3:17: broken_results: empty; at least one of failed, partiallySucceeded is needed",
    ]


# ------------------------------------------------------------------------------------- credentials


def test_exactly_one_credential(tmp_path: Path) -> None:
    pat_file = write(tmp_path, PAT, "pat")
    path = write(tmp_path, f"organization_url: {ORG}\npat_file: {pat_file}\n")
    errors = errors_of(path, {"AZDO_BEARER_TOKEN": "tok"})
    assert errors == [
        f"{path}: credentials: more than one given ({path}:2:11: pat_file, env AZDO_BEARER_TOKEN); "
        "set exactly one of AZDO_PAT, pat_file, AZDO_BEARER_TOKEN, bearer_token_file, auth: entra"
    ]
    # the same key from a higher-precedence source is not a second credential
    other = write(tmp_path, "other", "pat2")
    config = load_config(path, {"AZDO_PAT_FILE": other})
    assert config.pat_file == other and config.pat == Secret("other")


def test_credential_files_must_be_readable(tmp_path: Path) -> None:
    token_file = write(tmp_path, "eyJ0eXAi.token\n", "token")
    config = load_config(None, {"AZDO_ORG_URL": ORG, "AZDO_BEARER_TOKEN_FILE": token_file})
    assert config.bearer_token_file == token_file
    assert config.pat is None

    missing = str(tmp_path / "missing")
    assert errors_of(None, {"AZDO_ORG_URL": ORG, "AZDO_PAT_FILE": missing}) == [
        f"env AZDO_PAT_FILE: cannot read '{missing}': No such file or directory"
    ]
    empty = write(tmp_path, "\n", "empty")
    assert errors_of(None, {"AZDO_ORG_URL": ORG, "AZDO_BEARER_TOKEN_FILE": empty}) == [
        f"env AZDO_BEARER_TOKEN_FILE: '{empty}' is empty"
    ]


def test_credentials_not_required_when_told(tmp_path: Path) -> None:
    config = load_config(None, {"AZDO_ORG_URL": ORG}, require_credentials=False)
    assert config.pat is None and config.bearer_token is None
    path = write(tmp_path, f"organization_url: {ORG}\n")
    assert check_config_file(path) == []


# -------------------------------------------------------------------------------------------- misc


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:9862", "0.0.0.0", 9862),
        (":9000", "0.0.0.0", 9000),
        ("[::]:9862", "::", 9862),
        ("localhost:0", "localhost", 0),
    ],
)
def test_listen(listen: str, host: str, port: int) -> None:
    config = load_config(None, {"AZDO_ORG_URL": ORG, **BASE_ENV}, {"listen": listen})
    assert (config.listen_host, config.listen_port) == (host, port)


@pytest.mark.parametrize("listen", ["9862", "host:99999", "[zz]:1", "a b:1", "host:"])
def test_bad_listen(listen: str) -> None:
    errors = errors_of(None, {"AZDO_ORG_URL": ORG, **BASE_ENV}, {"listen": listen})
    assert len(errors) == 1 and errors[0].startswith(f"--listen: invalid listen address '{listen}'")


def test_broken_results_normalised() -> None:
    env = {"AZDO_ORG_URL": ORG, **BASE_ENV, "AZDO_BROKEN_RESULTS": "FAILED,PartiallySucceeded,partially-succeeded"}
    assert load_config(None, env).broken_results == frozenset({"failed", "partiallySucceeded"})


def test_branch_patterns_drop_refs_heads() -> None:
    env = {"AZDO_ORG_URL": ORG, **BASE_ENV, "AZDO_BRANCHES": "refs/heads/main,hotfix/*"}
    assert load_config(None, env).branches == ("main", "hotfix/*")


def test_branch_tracked() -> None:
    config = Config(ORG)
    assert config.branch_tracked("main", "main") is True
    assert config.branch_tracked("develop", "develop") is True  # the pipeline's default branch
    assert config.branch_tracked("refs/heads/develop", "refs/heads/develop") is True
    assert config.branch_tracked("develop", "main") is False
    assert config.branch_tracked("master", None) is True
    assert config.branch_tracked("release/2024.1", "main") is True
    assert config.branch_tracked("release/2024.1/hotfix", "main") is True
    assert config.branch_tracked("feature/x", "main") is False
    assert config.branch_tracked("releases/1", "main") is False
    assert config.branch_tracked("refs/pull/42/merge", "main") is False
    assert config.branch_tracked("refs/pull/42/merge", "refs/pull/42/merge") is False
    assert config.branch_tracked("refs/tags/v1.0", "main") is False
    assert config.branch_tracked("", "main") is False

    only_default = Config(ORG, branches=())
    assert only_default.branch_tracked("trunk", "trunk") is True
    assert only_default.branch_tracked("main", "trunk") is False


def test_production_environment_regexes() -> None:
    config = Config(ORG)
    assert config.production_environment("Production") is True
    assert config.production_environment("staging") is False
    custom = Config(ORG, production_environments=(re.compile("^live-"),))
    assert custom.production_environment("live-eu") is True
    assert custom.production_environment("prod") is False


def test_close_misspelt_environment_variable_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    env = {"AZDO_ORG_URL": ORG, **BASE_ENV, "AZDO_LOOKBAK": "1d", "AZDO_UNRELATED_TOOL": "x"}
    with caplog.at_level("WARNING", logger="exporter.config.settings"):
        config = load_config(None, env)
    assert config.lookback == 30 * 86400
    assert [r.getMessage() for r in caplog.records] == [
        "ignoring unknown environment variable AZDO_LOOKBAK (did you mean AZDO_LOOKBACK?)"
    ]


def test_config_error_from_single_string() -> None:
    err = ConfigError("x: y")
    assert err.errors == ["x: y"] and str(err) == "x: y"


# ---------------------------------------------------------------------------------- settings table


def test_readme_configuration_tables_are_generated_from_the_settings_table() -> None:
    """README.md's configuration tables are the table's; run `python -m exporter.config.reference` after a change."""
    from exporter.config.reference import PAGES, README, groups_in, update_readme
    from exporter.config.table import GROUPS

    assert groups_in(README.read_text(encoding="utf-8")) == list(GROUPS)
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert groups_in(text), page
        assert update_readme(text) == text, f"{page} is stale: run .venv/bin/python -m exporter.config.reference"


def test_every_setting_has_its_own_environment_variable_and_a_doc() -> None:
    from exporter.config.table import BY_ENV, SETTINGS

    assert len(BY_ENV) == len(SETTINGS)
    for setting in SETTINGS:
        assert setting.env.startswith("AZDO_"), setting.key
        assert setting.doc.endswith((".", "…")), setting.key
        assert "\n" not in setting.doc, setting.key


def test_dataclass_defaults_are_the_table_defaults() -> None:
    from exporter.config.table import default

    config = Config(ORG)
    assert config.lookback == default("lookback") == 30 * 86400
    assert config.request_timeout == default("request_timeout") == 30.0
    assert config.max_retries == default("max_retries") == 3
    assert config.branches == default("branches") == ("main", "master", "release/*")
    assert config.broken_results == default("broken_results") == frozenset({"failed"})
    assert [p.pattern for p in config.production_environments] == ["(?i)prod"]
    assert (config.listen_host, config.listen_port) == default("listen") == ("0.0.0.0", 9862)
    assert (config.log_level, config.log_format) == (default("log_level"), default("log_format")) == ("INFO", "text")
    assert config.shard == default("shard")
    assert config.intervals == Intervals(**{a: default(f"intervals.{a}") for a in (
        "builds", "tests", "pull_requests", "policies", "deployments", "agent_pools", "audit")})
    assert config.digest.days == default("digest.days") == (0,)
    assert str(config.digest.time) == "09:00:00" and config.digest.time_zone == default("digest.time_zone") == "UTC"
    for name in ("projects", "pipelines", "repositories"):
        assert getattr(config, name) == NameFilter(default(f"{name}.include"), default(f"{name}.exclude"))
    # and the loader gives the same defaults as the dataclass
    assert load_config(None, {"AZDO_ORG_URL": ORG, **BASE_ENV}) == Config(ORG, pat=Secret(PAT))


def test_every_setting_is_read_from_its_environment_variable() -> None:
    from exporter.config.sources import read_env
    from exporter.config.table import SETTINGS

    values = read_env({s.env: f"value-of-{s.key}" for s in SETTINGS})
    assert {key: raw.where for key, raw in values.items()} == {s.key: f"env {s.env}" for s in SETTINGS}


def test_overrides_are_named_by_their_flag() -> None:
    overrides: dict[str, object] = {"log_level": "loud", "web_config_file": "/nonexistent"}
    errors = errors_of(None, {"AZDO_ORG_URL": ORG, **BASE_ENV}, overrides)
    assert errors == [
        "--log-level: invalid log level 'loud'; use one of DEBUG, INFO, WARNING, ERROR",
        "--web.config.file: cannot read '/nonexistent': No such file or directory",
    ]


def test_entra_settings_read_the_environment_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AZDO_ORG_URL": ORG, "AZDO_AUTH": "entra", "AZDO_AUTH_CREDENTIAL": "client_secret"}
    # the process environment is not the configuration's: a secret there must not satisfy the check
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "from-the-process")
    monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", "/from/the/process.pem")
    assert errors_of(None, env) == [
        "env AZDO_AUTH: auth.credential client_secret needs auth.client_secret_file (or AZURE_CLIENT_SECRET)"
    ]
    cert = {**env, "AZDO_AUTH_CREDENTIAL": "client_certificate"}
    assert errors_of(None, cert) == [
        "env AZDO_AUTH: auth.credential client_certificate needs auth.client_certificate_file "
        "(or AZURE_CLIENT_CERTIFICATE_PATH)"
    ]
    # ... and one in the given environment does
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    monkeypatch.delenv("AZURE_CLIENT_CERTIFICATE_PATH")
    config = load_config(None, {**env, "AZURE_CLIENT_SECRET": "given"})
    assert config.entra is not None and config.entra.credential == "client_secret"
    config = load_config(None, {**cert, "AZURE_CLIENT_CERTIFICATE_PATH": "/given.pem"})
    assert config.entra is not None and config.entra.credential == "client_certificate"


# ------------------------------------------------------------------------------------------ bounds
# Values that check-config used to accept and that broke at run time (issue 12): each is rejected
# by load_config (and so by check-config) with the allowed range in the message.

INTERVAL_RANGE = "allowed: 0 (off), or 5s to 1w (from 100ms when organization_url is on this machine)"
LOCAL_ORG = "http://127.0.0.1:8081/contoso"


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("AZDO_INTERVAL_BUILDS", "1ms", INTERVAL_RANGE),
        ("AZDO_INTERVAL_AGENT_POOLS", "4.9s", INTERVAL_RANGE),
        ("AZDO_INTERVAL_AUDIT", "16000w", INTERVAL_RANGE),
        ("AZDO_INTERVAL_POLICIES", "8d", INTERVAL_RANGE),
        ("AZDO_LOOKBACK", "401d", "allowed: 1h to 400d"),
        ("AZDO_LOOKBACK", "999999999d", "allowed: 1h to 400d"),
        ("AZDO_LOOKBACK", "30m", "allowed: 1h to 400d"),
        ("AZDO_REQUEST_TIMEOUT", "11m", "allowed: 100ms to 10m"),
        ("AZDO_REQUEST_TIMEOUT", "100000000000000", "allowed: 100ms to 10m"),
        ("AZDO_REQUEST_TIMEOUT", "10ms", "allowed: 100ms to 10m"),
        ("AZDO_MAX_RETRIES", "11", "allowed: 0 to 10"),
        ("AZDO_MAX_RETRIES", "99999999999999999999", "allowed: 0 to 10"),
    ],
)
def test_out_of_range_values_are_rejected_with_the_allowed_range(setting: str, value: str, allowed: str) -> None:
    assert errors_of(None, {"AZDO_ORG_URL": ORG, **BASE_ENV, setting: value}) == [
        f"env {setting}: '{value}' is out of range; {allowed}"
    ]


def test_check_config_rejects_out_of_range_values_in_the_file_with_lines(tmp_path: Path) -> None:
    path = write(tmp_path, f"organization_url: {ORG}\nlookback: 100000w\nrequest_timeout: 1d\n"
                           "intervals: {builds: 1ms, tests: 0}\nmax_retries: 1000\n")
    assert check_config_file(path) == [
        f"{path}:2:11: lookback: '100000w' is out of range; allowed: 1h to 400d",
        f"{path}:3:18: request_timeout: '1d' is out of range; allowed: 100ms to 10m",
        f"{path}:4:21: intervals.builds: '1ms' is out of range; {INTERVAL_RANGE}",
        f"{path}:5:14: max_retries: '1000' is out of range; allowed: 0 to 10",
    ]


def test_range_limits_themselves_are_allowed() -> None:
    env = {"AZDO_ORG_URL": ORG, **BASE_ENV, "AZDO_INTERVAL_BUILDS": "5s", "AZDO_INTERVAL_AUDIT": "1w",
           "AZDO_INTERVAL_TESTS": "0", "AZDO_LOOKBACK": "400d", "AZDO_REQUEST_TIMEOUT": "10m", "AZDO_MAX_RETRIES": "10"}
    config = load_config(None, env)
    assert (config.intervals.builds, config.intervals.audit, config.intervals.tests) == (5, 7 * 86400, 0)
    assert config.intervals.enabled("tests") is False  # 0 still turns an area off
    assert (config.lookback, config.request_timeout, config.max_retries) == (400 * 86400, 600, 10)


def test_short_intervals_only_against_a_simulator_on_this_machine() -> None:
    for org in (LOCAL_ORG, "http://localhost:8081/contoso", "http://[::1]:8081/contoso"):
        config = load_config(None, {"AZDO_ORG_URL": org, **BASE_ENV, "AZDO_INTERVAL_BUILDS": "1s"})
        assert config.intervals.builds == 1 and config.warnings == ()
    assert errors_of(None, {"AZDO_ORG_URL": LOCAL_ORG, **BASE_ENV, "AZDO_INTERVAL_BUILDS": "1ms"}) == [
        f"env AZDO_INTERVAL_BUILDS: '1ms' is out of range; {INTERVAL_RANGE}"
    ]
    assert errors_of(None, {"AZDO_ORG_URL": "https://tfs.example.com/tfs/Default", **BASE_ENV,
                            "AZDO_INTERVAL_BUILDS": "1s"}) == [
        f"env AZDO_INTERVAL_BUILDS: '1s' is out of range; {INTERVAL_RANGE}"
    ]


def test_a_duration_too_long_for_a_float_is_an_error_not_infinity() -> None:
    huge = "9" * 400
    with pytest.raises(ValueError, match="too large"):
        parse_duration(huge)
    with pytest.raises(ValueError, match="too large"):
        parse_duration(f"{huge}s")
    errors = errors_of(None, {"AZDO_ORG_URL": ORG, **BASE_ENV, "AZDO_LOOKBACK": huge})
    assert errors == [f"env AZDO_LOOKBACK: invalid duration '{'9' * 40}…': too large"]


# ------------------------------------------------------------------------------------ bounded files


def _secret_file_settings(path: str) -> list[dict[str, str]]:
    return [{"AZDO_PAT_FILE": path}, {"AZDO_BEARER_TOKEN_FILE": path},
            {**BASE_ENV, "AZDO_DIGEST_WEBHOOK_URL_FILE": path}]


def test_secret_files_must_be_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in ((str(fifo), "a FIFO (named pipe)"), ("/dev/zero", "a character device"),
                       (str(tmp_path), "a directory")):
        for env in _secret_file_settings(path):
            var = next(k for k in env if k.endswith("_FILE"))
            # returns at once: a FIFO is never waited on, /dev/zero never read
            assert errors_of(None, {"AZDO_ORG_URL": ORG, **env}) == [
                f"env {var}: cannot read '{path}': it is {kind}, not a regular file"
            ]


def test_secret_files_are_read_up_to_64_kib(tmp_path: Path) -> None:
    big = write(tmp_path, "x" * (64 * 1024 + 1), "big")
    for env in _secret_file_settings(big):
        var = next(k for k in env if k.endswith("_FILE"))
        assert errors_of(None, {"AZDO_ORG_URL": ORG, **env}) == [
            f"env {var}: cannot read '{big}': it is larger than 64 KiB (65537 bytes)"
        ]
    fits = write(tmp_path, "y" * (64 * 1024), "fits")
    config = load_config(None, {"AZDO_ORG_URL": ORG, "AZDO_PAT_FILE": fits})
    assert config.pat == Secret("y" * 64 * 1024)


def test_other_named_files_must_be_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {"AZDO_ORG_URL": ORG, "AZDO_AUTH": "entra", "AZDO_AUTH_CLIENT_SECRET_FILE": str(fifo),
           "AZDO_WEB_CONFIG_FILE": "/dev/zero"}
    assert errors_of(None, env) == [
        f"env AZDO_AUTH_CLIENT_SECRET_FILE: cannot read '{fifo}': it is a FIFO (named pipe), not a regular file",
        "env AZDO_WEB_CONFIG_FILE: cannot read '/dev/zero': it is a character device, not a regular file",
    ]


def test_the_configuration_file_must_be_a_regular_file_of_at_most_1_mib(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert check_config_file(str(fifo)) == [
        f"{fifo}: cannot read the configuration file: it is a FIFO (named pipe), not a regular file"
    ]
    assert check_config_file("/dev/zero") == [
        "/dev/zero: cannot read the configuration file: it is a character device, not a regular file"
    ]
    big = write(tmp_path, f"organization_url: {ORG}\n" + "#" * (1024 * 1024) + "\n", "big.yaml")
    assert check_config_file(big) == [
        f"{big}: cannot read the configuration file: it is larger than 1 MiB ({os.path.getsize(big)} bytes)"
    ]


def test_deeply_nested_yaml_is_an_error_with_its_location(tmp_path: Path) -> None:
    deep = write(tmp_path, f"organization_url: {ORG}\nprojects: " + "[" * 600 + "]" * 600 + "\n")
    assert check_config_file(deep) == [
        f"{deep}:2:30: the file nests more than 20 levels deep (a configuration needs 3)"
    ]
    blocks = write(tmp_path, "".join(f"{'  ' * i}k{i}:\n" for i in range(600)), "blocks.yaml")
    errors = check_config_file(blocks)
    assert len(errors) == 1 and errors[0].startswith(f"{blocks}:21:")
    assert errors[0].endswith("the file nests more than 20 levels deep (a configuration needs 3)")


# ----------------------------------------------------------------------------------------- warnings


def test_plain_http_to_another_machine_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "organization_url: http://tfs.example.com/tfs/DefaultCollection\n"
                           "release_url: http://rm.example.com/tfs/DefaultCollection\n")
    config = load_config(path, BASE_ENV)
    assert config.warnings == (
        f"{path}:1:19: organization_url: 'http://tfs.example.com/tfs/DefaultCollection' is plain http://, so the "
        "credential and the data cross the network unencrypted; use https://",
        f"{path}:2:14: release_url: 'http://rm.example.com/tfs/DefaultCollection' is plain http://, so the "
        "credential and the data cross the network unencrypted; use https://",
    )
    from exporter.config.settings import check_config

    found = check_config(path)
    assert found.errors == [] and found.warnings == list(config.warnings)
    assert load_config(None, {"AZDO_ORG_URL": ORG, **BASE_ENV}).warnings == ()
    assert load_config(None, {"AZDO_ORG_URL": LOCAL_ORG, **BASE_ENV}).warnings == ()  # the simulator


def test_a_configuration_that_collects_nothing_is_a_warning(tmp_path: Path) -> None:
    from exporter.config.settings import check_config

    path = write(tmp_path, f"organization_url: {ORG}\nintervals: {{builds: 0, tests: 0, pull_requests: 0, "
                           "policies: 0, deployments: 0, agent_pools: 0, audit: 0}\n")
    found = check_config(path)
    assert found.errors == []
    assert found.warnings == [f"{path}: intervals: every area is 0 (off), so nothing is collected; set at least one "
                              "interval, e.g. intervals.builds: 60s"]
    assert load_config(path, {**BASE_ENV, "AZDO_INTERVAL_AUDIT": "10m"}).warnings == ()


def test_warnings_are_kept_when_there_are_errors_too(tmp_path: Path) -> None:
    from exporter.config.settings import check_config

    path = write(tmp_path, "organization_url: http://tfs.example.com/tfs/DefaultCollection\nlookback: 1000d\n")
    found = check_config(path)
    assert found.errors == [f"{path}:2:11: lookback: '1000d' is out of range; allowed: 1h to 400d"]
    assert len(found.warnings) == 1 and "is plain http://" in found.warnings[0]


def test_max_response_bytes_defaults_to_64_mib_and_refuses_tiny_values() -> None:
    from exporter.config.settings import load_config

    env = {"AZDO_ORG_URL": "https://dev.azure.com/contoso", "AZDO_PAT": "x" * 20}
    assert load_config(None, env).max_response_bytes == 64 * 1024 * 1024
    assert load_config(None, {**env, "AZDO_MAX_RESPONSE_BYTES": "2048"}).max_response_bytes == 2048
    with pytest.raises(ConfigError) as caught:
        load_config(None, {**env, "AZDO_MAX_RESPONSE_BYTES": "10"})
    assert "AZDO_MAX_RESPONSE_BYTES" in str(caught.value) and "1024 to" in str(caught.value)

"""Microsoft Entra ID: tokens from an (injected) azure-identity credential, refreshed before they expire, and
a 401 from Azure DevOps answered by one refresh and one retry — against the simulator, which accepts
bearer tokens."""

from __future__ import annotations

import sys
from collections import namedtuple
from typing import Any

import pytest

from exporter.app import Exporter, make_credential
from exporter.azdo.auth import CredentialError
from exporter.azdo.entra import AZURE_DEVOPS_SCOPE, EntraCredential, token_credential
from exporter.cli import demo_config
from exporter.config.settings import ConfigError, EntraConfig, load_config
from exporter.metrics import catalogue as m
from exporter.simulator.server import SimulatorServer
from tests.conftest import PAT, FakeClock

AccessToken = namedtuple("AccessToken", "token expires_on")
ENV = {"AZDO_ORG_URL": "https://dev.azure.com/contoso"}
BUILDS_ONLY = {"builds": "60s", "tests": "60s", "pull_requests": 0, "policies": 0, "deployments": 0,
               "agent_pools": 0, "audit": 0}


class FakeTokenCredential:
    """Stands in for an azure-identity credential: hands out tok-1, tok-2, ... each valid for `lifetime`."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []
        self.fail_with: Exception | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if self.fail_with is not None:
            raise self.fail_with
        self.scopes.append(scopes)
        return AccessToken(f"tok-{len(self.scopes)}", int(self.clock() + self.lifetime))


def _bearer_requests(sim: SimulatorServer) -> list[int]:
    return [r.status for r in sim.requests if r.headers.get("Authorization", "").startswith("Bearer")]


@pytest.fixture
def entra_exporter(sim: SimulatorServer, clock: FakeClock):
    fake = FakeTokenCredential(clock)
    credential = EntraCredential(fake, clock=clock)
    exporter = Exporter(demo_config(sim.base_url, {"request_timeout": "5s", "max_retries": 0,
                                                   "intervals": BUILDS_ONLY},
                                    pat=PAT), clock=clock, credential=credential)
    yield exporter, credential, fake
    exporter.close()


def test_token_for_the_azure_devops_scope_sent_as_bearer(sim: SimulatorServer, entra_exporter) -> None:
    exporter, credential, fake = entra_exporter
    sim.bearer_tokens = {"tok-1"}
    assert exporter.refresh_all_once() == {"builds": None}
    assert fake.scopes == [(AZURE_DEVOPS_SCOPE,)]
    assert AZURE_DEVOPS_SCOPE == "499b84ac-1321-427f-aa17-267ca6975798/.default"
    assert _bearer_requests(sim) and set(_bearer_requests(sim)) == {200}
    assert credential.secrets() == ["tok-1"]


def test_token_is_refreshed_five_minutes_before_it_expires(sim: SimulatorServer, clock: FakeClock,
                                                           entra_exporter) -> None:
    exporter, credential, fake = entra_exporter
    sim.bearer_tokens = {"tok-1"}
    assert exporter.refresh_all_once() == {"builds": None}
    clock.advance(3600 - 350)  # still more than 5 minutes left: the cached token is used
    assert exporter.refresh_all_once() == {"builds": None}
    assert credential.fetches == 1
    clock.advance(60)  # less than 5 minutes left: a new token before the old one expires
    sim.bearer_tokens = {"tok-1", "tok-2"}
    assert exporter.refresh_all_once() == {"builds": None}
    assert credential.fetches == 2 and fake.scopes == [(AZURE_DEVOPS_SCOPE,)] * 2
    sim.bearer_tokens = {"tok-2"}  # the old token is no longer used at all
    clock.advance(60)
    assert exporter.refresh_all_once() == {"builds": None}
    assert credential.fetches == 2
    assert 401 not in _bearer_requests(sim)


def test_a_401_fetches_a_new_token_and_retries_once(sim: SimulatorServer, clock: FakeClock,
                                                     entra_exporter) -> None:
    exporter, credential, fake = entra_exporter
    sim.bearer_tokens = {"tok-1"}
    assert exporter.refresh_all_once() == {"builds": None}
    sim.clear_requests()
    clock.advance(60)  # past the project listing's cache
    sim.bearer_tokens = {"tok-2"}  # tok-1 revoked long before its expiry
    assert exporter.refresh_all_once() == {"builds": None}
    statuses = _bearer_requests(sim)
    assert statuses[0] == 401 and set(statuses[1:]) == {200}, statuses
    assert credential.fetches == 2
    assert exporter.registry.get_sample_value(m.EXPORTER_REFRESH_SUCCESS.name, {"collector": "builds"}) == 1


def test_a_token_that_is_refused_again_fails_after_one_retry(sim: SimulatorServer, entra_exporter) -> None:
    exporter, credential, fake = entra_exporter
    sim.bearer_tokens = {"never-issued"}
    errors = exporter.refresh_all_once()
    assert errors["builds"] and "access denied (HTTP 401)" in errors["builds"]
    assert _bearer_requests(sim) == [401, 401]  # the first request, then one retry with a new token
    assert credential.fetches == 2
    assert exporter.registry.get_sample_value(m.EXPORTER_REFRESH_ERRORS.total,
                                              {"collector": "builds", "reason": "auth"}) == 1


def test_a_credential_that_cannot_sign_in_fails_the_refresh_with_reason_auth(sim: SimulatorServer,
                                                                              entra_exporter) -> None:
    exporter, credential, fake = entra_exporter
    fake.fail_with = RuntimeError("AADSTS700016: Application not found in the directory")
    errors = exporter.refresh_all_once()
    assert "Microsoft Entra ID: no token for Azure DevOps (RuntimeError: AADSTS700016" in errors["builds"]
    assert exporter.registry.get_sample_value(m.EXPORTER_REFRESH_ERRORS.total,
                                              {"collector": "builds", "reason": "auth"}) == 1
    assert sim.requests == []


def test_pat_credentials_are_not_retried_on_401(sim: SimulatorServer, make_exporter) -> None:
    exporter = make_exporter(sim, pat="wrong-pat", max_retries=0, intervals=BUILDS_ONLY)
    exporter.refresh_all_once()
    first = sim.requests[0]
    assert [r.status for r in sim.requests if r.path == first.path] == [401]


# ---------------------------------------------------------------------------------------- configuration


def test_auth_entra_from_environment_and_file(tmp_path) -> None:
    config = load_config(None, {**ENV, "AZDO_AUTH": "entra"})
    assert config.entra == EntraConfig() and config.pat is None
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"auth:\n  method: entra\n  credential: client_secret\n  client_id: app\n  tenant_id: t\n"
                    f"  client_secret_file: {secret}\n")
    config = load_config(str(path), ENV)
    assert config.entra == EntraConfig("client_secret", "app", "t", str(secret), None)
    path.write_text("auth: entra\n")
    assert load_config(str(path), {**ENV, "AZDO_AUTH_CREDENTIAL": "workload-identity"}).entra == \
        EntraConfig("workload_identity")


def test_auth_entra_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"credentials: more than one given \(env AZDO_PAT, env AZDO_AUTH\)"):
        load_config(None, {**ENV, "AZDO_AUTH": "entra", "AZDO_PAT": "x"})
    path = tmp_path / "c.yaml"
    path.write_text("auth:\n  method: entar\n  credential: magic\n  client_secret: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), ENV)
    text = str(info.value)
    assert f"{path}:2:11: auth.method: unknown auth method 'entar' (did you mean 'entra'?)" in text
    assert f"{path}:3:15: auth.credential: unknown Entra ID credential 'magic'" in text
    assert f"{path}:4:3: auth.client_secret: secrets are not read from the configuration file" in text
    with pytest.raises(ConfigError, match="auth.client_id is set but auth.method is not entra"):
        load_config(None, {**ENV, "AZDO_PAT": "x", "AZDO_AUTH_CLIENT_ID": "app"})


def test_real_azure_identity_credentials_are_built_without_network(tmp_path) -> None:
    pytest.importorskip("azure.identity")
    from azure import identity

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    built = token_credential(EntraConfig("client_secret", "app", "tenant", str(secret)), {})
    assert isinstance(built, identity.ClientSecretCredential)
    assert isinstance(token_credential(EntraConfig("managed_identity", "mi-client"), {}),
                      identity.ManagedIdentityCredential)
    token_file = tmp_path / "token"
    token_file.write_text("jwt")
    assert isinstance(token_credential(EntraConfig("workload_identity"),
                                       {"AZURE_CLIENT_ID": "a", "AZURE_TENANT_ID": "t",
                                        "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}),
                      identity.WorkloadIdentityCredential)
    assert isinstance(token_credential(EntraConfig(), {}), identity.DefaultAzureCredential)
    with pytest.raises(CredentialError, match="needs auth.client_id and auth.tenant_id"):
        token_credential(EntraConfig("client_secret"), {})
    config = load_config(None, {**ENV, "AZDO_AUTH": "entra"})
    assert isinstance(make_credential(config), EntraCredential)


def test_a_missing_azure_identity_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    monkeypatch.setitem(sys.modules, "azure", None)
    with pytest.raises(CredentialError, match=r"pip install 'azdo-exporter\[entra\]'"):
        token_credential(EntraConfig())

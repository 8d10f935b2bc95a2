"""Microsoft Entra ID sign-in for Azure DevOps through azure-identity (the optional `entra` extra).

`auth: {method: entra}` (or `AZDO_AUTH=entra`) asks azure-identity for an access token for Azure DevOps
(scope `499b84ac-1321-427f-aa17-267ca6975798/.default`) and sends it as `Authorization: Bearer`. The
token is fetched again 5 minutes before it expires, and at once when Azure DevOps answers 401 (the
client calls `invalidate()` and retries the request one time).

Which azure-identity credential is used (`auth.credential`):
- `default`: DefaultAzureCredential: environment (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET or
  AZURE_CLIENT_CERTIFICATE_PATH), workload identity (AZURE_FEDERATED_TOKEN_FILE, set by the AKS webhook),
  managed identity, Azure CLI, ...
- `managed_identity`, `workload_identity`, `client_secret`, `client_certificate`, `environment`, `azure_cli`.
`auth.client_id` / `auth.tenant_id` override AZURE_CLIENT_ID / AZURE_TENANT_ID; a client secret is read
from `auth.client_secret_file` (never from the configuration file itself).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from exporter.azdo.auth import CredentialError
from exporter.config.settings import EntraConfig

log = logging.getLogger(__name__)

AZURE_DEVOPS_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
REFRESH_MARGIN = 300.0  # fetch a new token this many seconds before the current one expires
MISSING = ("auth method entra needs the azure-identity package, which is not installed: "
           "pip install 'azdo-exporter[entra]' (the container image has it)")


class TokenCredential(Protocol):
    """What azure-identity's credentials provide: `get_token(scope)` -> an object with `token`, `expires_on`."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        ...


class EntraCredential:
    """Bearer tokens from an azure-identity credential, cached until 5 minutes before they expire."""

    def __init__(self, token_credential: TokenCredential, *, scope: str = AZURE_DEVOPS_SCOPE,
                 clock: Callable[[], float] = time.time, margin: float = REFRESH_MARGIN) -> None:
        self._credential = token_credential
        self._scope = scope
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on = 0.0
        self._seen: list[str] = []
        self.fetches = 0

    def _fetch(self) -> None:
        try:
            access = self._credential.get_token(self._scope)
            token, expires_on = str(access.token), float(access.expires_on)
        except Exception as error:  # azure-identity raises many kinds; none may take the exporter down
            message = str(error).splitlines()[0][:300] if str(error) else ""
            for secret in self.secrets():
                message = message.replace(secret, "********")
            raise CredentialError(f"Microsoft Entra ID: no token for Azure DevOps ({type(error).__name__}: "
                                  f"{message or 'no message'}); check the identity and that it was added to the "
                                  "Azure DevOps organization") from None
        if not token:
            raise CredentialError("Microsoft Entra ID: the credential returned an empty token")
        self._token, self._expires_on = token, expires_on
        self._seen = [t for t in [token, *self._seen] if t][:4]
        self.fetches += 1
        log.debug("got a Microsoft Entra ID token for Azure DevOps, valid for %.0fs", expires_on - self._clock())

    def authorization_header(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_on - self._margin:
                self._fetch()
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Forget the current token (Azure DevOps refused it); the next request fetches a new one."""
        with self._lock:
            self._token = None

    def secrets(self) -> list[str]:
        return list(self._seen)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise CredentialError(f"cannot read {path}: {error.strerror}") from None


def token_credential(settings: EntraConfig, environ: dict[str, str] | None = None) -> TokenCredential:
    """The azure-identity credential that `settings` names (CredentialError if azure-identity is missing)."""
    try:
        from azure import identity
    except ImportError:
        raise CredentialError(MISSING) from None
    env = dict(os.environ if environ is None else environ)
    client_id = settings.client_id or env.get("AZURE_CLIENT_ID")
    tenant_id = settings.tenant_id or env.get("AZURE_TENANT_ID")
    kind = settings.credential
    if kind == "default":
        return identity.DefaultAzureCredential(managed_identity_client_id=settings.client_id,
                                               workload_identity_client_id=settings.client_id,
                                               workload_identity_tenant_id=settings.tenant_id)
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=client_id) if client_id else \
            identity.ManagedIdentityCredential()
    if kind == "workload_identity":
        return identity.WorkloadIdentityCredential(client_id=client_id, tenant_id=tenant_id,
                                                   token_file_path=env.get("AZURE_FEDERATED_TOKEN_FILE"))
    if kind == "environment":
        return identity.EnvironmentCredential()
    if kind == "azure_cli":
        return identity.AzureCliCredential(tenant_id=tenant_id) if tenant_id else identity.AzureCliCredential()
    if not client_id or not tenant_id:
        raise CredentialError(f"auth.credential {kind} needs auth.client_id and auth.tenant_id "
                              "(or AZURE_CLIENT_ID and AZURE_TENANT_ID)")
    if kind == "client_secret":
        secret = _read(settings.client_secret_file) if settings.client_secret_file else env.get("AZURE_CLIENT_SECRET")
        if not secret:
            raise CredentialError("auth.credential client_secret needs auth.client_secret_file or AZURE_CLIENT_SECRET")
        return identity.ClientSecretCredential(tenant_id, client_id, secret)
    if kind == "client_certificate":
        path = settings.client_certificate_file or env.get("AZURE_CLIENT_CERTIFICATE_PATH")
        if not path:
            raise CredentialError("auth.credential client_certificate needs auth.client_certificate_file or "
                                  "AZURE_CLIENT_CERTIFICATE_PATH")
        return identity.CertificateCredential(tenant_id, client_id, certificate_path=path)
    raise CredentialError(f"unknown Entra ID credential '{kind}'")


def make_entra_credential(settings: EntraConfig) -> EntraCredential:
    return EntraCredential(token_credential(settings))

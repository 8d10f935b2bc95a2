"""Credentials for Azure DevOps: a personal access token or a Microsoft Entra ID bearer token.

A token given as a file is re-read when the file changes, so a rotated secret (a Kubernetes secret
update, a sidecar refreshing an Entra ID token) is picked up without a restart.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Protocol


class CredentialError(Exception):
    """The credential cannot be read (the message never contains the secret)."""


class Credential(Protocol):
    def authorization_header(self) -> str:
        """The value of the Authorization header for the next request."""
        ...

    def secrets(self) -> list[str]:
        """Every secret string this credential may send, for redaction checks."""
        ...


class _TokenSource:
    """A token given directly or read from a file, re-read when the file's mtime or size changes."""

    def __init__(self, token: str | None = None, path: str | None = None) -> None:
        if (token is None) == (path is None):
            raise ValueError("give exactly one of token or path")
        self._token = token.strip() if token is not None else ""
        self._path = path
        self._stamp: tuple[float, int] | None = None
        self._lock = threading.Lock()
        self._previous: list[str] = []

    def get(self) -> str:
        if self._path is None:
            return self._token
        with self._lock:
            try:
                stat = os.stat(self._path)
                stamp = (stat.st_mtime, stat.st_size)
                if stamp != self._stamp:
                    with open(self._path, encoding="utf-8") as handle:
                        token = handle.read().strip()
                    if self._token and token != self._token:
                        self._previous.append(self._token)
                        del self._previous[:-3]
                    self._token, self._stamp = token, stamp
            except OSError as error:
                if not self._token:
                    raise CredentialError(f"cannot read token file {self._path}: {error.strerror}") from None
            if not self._token:
                raise CredentialError(f"token file {self._path} is empty")
            return self._token

    def secrets(self) -> list[str]:
        return [t for t in [self._token, *self._previous] if t]


class PatCredential:
    """Personal access token, sent as HTTP Basic with an empty user name."""

    def __init__(self, token: str | None = None, path: str | None = None) -> None:
        self._source = _TokenSource(token, path)

    def authorization_header(self) -> str:
        encoded = base64.b64encode(f":{self._source.get()}".encode()).decode("ascii")
        return f"Basic {encoded}"

    def secrets(self) -> list[str]:
        out: list[str] = []
        for token in self._source.secrets():
            out += [token, base64.b64encode(f":{token}".encode()).decode("ascii")]
        return out


class BearerCredential:
    """Microsoft Entra ID access token, sent as `Authorization: Bearer`."""

    def __init__(self, token: str | None = None, path: str | None = None) -> None:
        self._source = _TokenSource(token, path)

    def authorization_header(self) -> str:
        return f"Bearer {self._source.get()}"

    def secrets(self) -> list[str]:
        return self._source.secrets()

"""The web configuration as the HTTP server applies it: TLS contexts, basic auth checks, reloads.

The parsing and checking of `--web.config.file` is exporter/config/web_config.py; this module holds the
loaded generation of those settings, reloads it when its files change and fails closed: a file that
becomes empty, unreadable or invalid keeps the last good settings (TLS and authentication stay on) and
is reported as an ERROR and through the `on_reload` callback (the self-metric
EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL of exporter/metrics/catalogue.py). Only a valid file that
says so turns them off.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from exporter.config.web_config import BCRYPT_MISSING, WebConfig, WebConfigError, bcrypt_module, load_web_config

log = logging.getLogger(__name__)

__all__ = ["BasicAuth", "WebServing"]

DEFAULT_BCRYPT_COST = 10


def _cost(hashed: bytes) -> int:
    """The cost (log2 rounds) of a bcrypt hash such as `$2b$12$...`."""
    try:
        return min(31, max(4, int(hashed[4:6])))
    except ValueError:
        return DEFAULT_BCRYPT_COST


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, as slowly for unknown users as for known ones.

    bcrypt is slow on purpose (tens to hundreds of milliseconds); like exporter-toolkit, successful checks
    are cached so that a scraper sending the same credentials every 15 s costs one bcrypt check, not one
    per scrape. The cache key is an HMAC (with a per-process random key) of user, password and hash: the
    password is not kept, and a changed hash never matches an old entry. An unknown user is checked
    against a dummy hash of the highest configured cost, so the answer time does not tell which user
    names exist.
    """

    CACHE_SIZE = 100

    def __init__(self, users: dict[str, str]) -> None:
        self._bcrypt = bcrypt_module()
        if self._bcrypt is None:
            raise RuntimeError(BCRYPT_MISSING)
        self._users = {u.encode("utf-8"): h.encode("ascii") for u, h in users.items()}
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        cost = max((_cost(h) for h in self._users.values()), default=DEFAULT_BCRYPT_COST)
        self._dummy = self._bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), self._bcrypt.gensalt(rounds=cost))

    def check(self, header: str | None, *, cached_only: bool = False) -> bool | None:
        """True when `header` holds valid credentials. With `cached_only`, None when deciding needs a
        bcrypt check (the caller runs `check(header)` off the event loop); malformed headers are False."""
        if not header or not header[:6].lower() == "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        if not sep:
            return False
        hashed = None
        for known, known_hash in self._users.items():  # compare every name: no early exit
            if hmac.compare_digest(known, user):
                hashed = known_hash
        cache_key = hmac.new(self._key, b"\0".join([user, password, hashed or b""]), hashlib.sha256).digest()
        with self._lock:
            if hashed is not None and cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return True
        if cached_only:
            return None
        try:
            ok = bool(self._bcrypt.checkpw(password, hashed or self._dummy)) and hashed is not None
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                self._cache[cache_key] = None
                while len(self._cache) > self.CACHE_SIZE:
                    self._cache.popitem(last=False)
        return ok


class Active:
    """One loaded generation of the settings."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.context = config.tls.context() if config.tls else None
        self.auth = BasicAuth(config.users) if config.users else None

    def allowed_peer(self, cert: dict[str, Any] | None) -> bool:
        """False when client_allowed_sans is set and the verified client certificate names none of them."""
        tls = self.config.tls
        if tls is None or not tls.client_allowed_sans:
            return True
        names = {str(pair[1]) for pair in (cert or {}).get("subjectAltName", ())
                 if pair[0] in ("DNS", "IP Address", "URI", "email")}
        return bool(names & set(tls.client_allowed_sans))


class WebServing:
    """The current web settings, checked for changes at most once per RECHECK_SECONDS."""

    RECHECK_SECONDS = 1.0

    def __init__(self, config: WebConfig, on_reload: Callable[[bool], None] | None = None) -> None:
        self._active = Active(config)
        self._stamps = self._stat(config)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self._on_reload = on_reload or (lambda ok: None)
        self._on_reload(True)

    @staticmethod
    def _stat(config: WebConfig) -> tuple[tuple[float, int, int] | None, ...]:
        out: list[tuple[float, int, int] | None] = []
        for path in config.files():
            try:
                st = os.stat(path)
                out.append((st.st_mtime, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    @property
    def active(self) -> Active:
        """The settings in force, without looking for changes (cheap; for the event loop)."""
        return self._active

    def due(self) -> bool:
        """True when `current()` would look at the files again."""
        return time.monotonic() - self._checked >= self.RECHECK_SECONDS

    def current(self) -> Active:
        """The settings in force after reloading changed files (may parse files and hash: not for the
        event loop)."""
        if not self.due():
            return self._active
        with self._lock:
            if not self.due():
                return self._active
            active = self._active
            stamps = self._stat(active.config)
            if stamps != self._stamps:
                self._stamps = stamps
                self._reload(active.config.path)
            self._checked = time.monotonic()
            return self._active

    def _reload(self, path: str) -> None:
        try:
            config = load_web_config(path)
            if config.empty:
                # A non-atomic rewrite (truncate, then write) passes through an empty file: never read
                # that as "no TLS, no authentication". Turning them off takes a file that says so (`{}`).
                raise WebConfigError([f"{path}: the web configuration became empty (write `{{}}` to turn "
                                      "TLS and authentication off)"])
            self._active = Active(config)
        except (WebConfigError, OSError, ssl.SSLError, ValueError, RuntimeError) as exc:
            log.error("web config %s changed but cannot be used; keeping the previous settings: %s",
                      path, str(exc).replace("\n", "; "))
            self._on_reload(False)
            return
        log.info("web config %s reloaded", path)
        self._on_reload(True)

    @property
    def tls(self) -> bool:
        return self._active.context is not None

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._active.config.headers

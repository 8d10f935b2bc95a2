"""`--web.config.file`: TLS, client certificates and basic auth in the Prometheus exporter-toolkit format.

The file has the shape that every Prometheus exporter reads, so existing setups work unchanged:

    tls_server_config:
      cert_file: server.crt            # paths are relative to this file's folder
      key_file: server.key
      client_ca_file: ca.crt           # optional: client certificates
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12               # default TLS12
      max_version: TLS13
      client_allowed_sans: [prometheus.monitoring.svc]
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Like exporter-toolkit, the web configuration protects every path (also /healthz and /readyz). This
module only parses and checks the file; applying it (TLS handshakes, basic auth checks, reloading when
the files change) is exporter/serve/web_serving.py.

Differences from exporter-toolkit, due to Python's ssl module: `RequestClientCert` requests nothing
(a certificate that is not verified is never used anyway), `RequireAnyClientCert` is refused (Python
cannot require a certificate without verifying it), and `curve_preferences` is accepted but OpenSSL's
default groups stay in force. Inline `cert`/`key` are not supported; use `cert_file`/`key_file`.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from typing import Any

import yaml

log = logging.getLogger(__name__)

__all__ = ["TlsSettings", "WebConfig", "WebConfigError", "bcrypt_module", "load_web_config"]

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's cipher suite names (crypto/tls) -> OpenSSL's (TLS 1.2 and below; TLS 1.3 suites are not configurable).
GO_CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
CURVES = ("CurveP256", "CurveP384", "CurveP521", "X25519")
# The response headers exporter-toolkit lets a web configuration set.
ALLOWED_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "X-XSS-Protection",
                   "Content-Security-Policy")
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
             "cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans", "cert",
             "key")
_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_HTTP_KEYS = ("http2", "headers")
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
BCRYPT_MISSING = ("basic_auth_users needs the bcrypt package, which is not installed: "
                  "pip install 'azdo-exporter[web]' (the container image has it)")


class WebConfigError(Exception):
    """An invalid web configuration; `errors` lists every problem with its location."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] = ()

    def context(self) -> ssl.SSLContext:
        """A server-side SSLContext (raises OSError/ssl.SSLError when a file cannot be loaded)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
            assert self.client_ca_file is not None
            ctx.load_verify_locations(cafile=self.client_ca_file)
            ctx.verify_mode = (ssl.CERT_REQUIRED if self.client_auth_type == "RequireAndVerifyClientCert"
                               else ssl.CERT_OPTIONAL)
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if self.cipher_suites:
            ctx.set_ciphers(":".join(dict.fromkeys(GO_CIPHER_SUITES[s] for s in self.cipher_suites
                                                   if s in GO_CIPHER_SUITES)))
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        return ctx

    def files(self) -> list[str]:
        return [f for f in (self.cert_file, self.key_file, self.client_ca_file) if f]


@dataclass(frozen=True)
class WebConfig:
    """A parsed web configuration file."""

    path: str
    tls: TlsSettings | None = None
    users: dict[str, str] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    empty: bool = False  # the file holds nothing at all (blank or only comments), not even `{}`

    def files(self) -> list[str]:
        return [self.path, *(self.tls.files() if self.tls else [])]


# ----------------------------------------------------------------------------------------------- parsing


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.base = os.path.dirname(os.path.abspath(path))
        self.errors: list[str] = []

    def error(self, node: yaml.Node, label: str, message: str) -> None:
        self.errors.append(f"{self.path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}: {label}: {message}")

    def mapping(self, node: yaml.Node, label: str, keys: tuple[str, ...] | None) -> dict[str, yaml.Node]:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, label, "expected a mapping")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            full = f"{label}.{key}" if label else key
            if key in out:
                self.error(key_node, full, "duplicate key")
            elif keys is not None and key not in keys:
                self.error(key_node, full, f"unknown key; known keys: {', '.join(keys)}")
            else:
                out[key] = value
        return out

    def text(self, node: yaml.Node, label: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or _is_null(node) or not str(node.value).strip():
            self.error(node, label, "expected a value")
            return None
        return str(node.value).strip()

    def strings(self, node: yaml.Node, label: str) -> list[tuple[str, yaml.Node]]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, label, "expected a list")
            return []
        out = []
        for i, item in enumerate(node.value):
            value = self.text(item, f"{label}[{i}]")
            if value is not None:
                out.append((value, item))
        return out

    def boolean(self, node: yaml.Node, label: str) -> bool | None:
        value = (self.text(node, label) or "").lower()
        if value in ("true", "yes", "on"):
            return True
        if value in ("false", "no", "off"):
            return False
        if value:
            self.error(node, label, "expected true or false")
        return None

    def file(self, node: yaml.Node, label: str) -> str | None:
        value = self.text(node, label)
        if value is None:
            return None
        path = value if os.path.isabs(value) else os.path.join(self.base, value)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            self.error(node, label, f"cannot read '{value}': {exc.strerror or type(exc).__name__}")
            return None
        return path


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _tls(r: _Reader, node: yaml.Node) -> TlsSettings | None:
    label = "tls_server_config"
    entries = r.mapping(node, label, _TLS_KEYS)
    if not entries:
        return None
    for inline in ("cert", "key"):
        if inline in entries:
            r.error(entries[inline], f"{label}.{inline}", f"inline certificates are not supported; "
                    f"use {inline}_file")
    cert = r.file(entries["cert_file"], f"{label}.cert_file") if "cert_file" in entries else None
    key = r.file(entries["key_file"], f"{label}.key_file") if "key_file" in entries else None
    if "cert_file" not in entries:
        r.error(node, label, "cert_file is required")
    if "key_file" not in entries:
        r.error(node, label, "key_file is required")
    ca = r.file(entries["client_ca_file"], f"{label}.client_ca_file") if "client_ca_file" in entries else None
    auth = "RequireAndVerifyClientCert" if "client_ca_file" in entries else "NoClientCert"
    if "client_auth_type" in entries:
        given = r.text(entries["client_auth_type"], f"{label}.client_auth_type")
        if given is not None and given not in CLIENT_AUTH_TYPES:
            r.error(entries["client_auth_type"], f"{label}.client_auth_type",
                    f"unknown '{given}'; use one of {', '.join(CLIENT_AUTH_TYPES)}")
        elif given == "RequireAnyClientCert":
            r.error(entries["client_auth_type"], f"{label}.client_auth_type",
                    "RequireAnyClientCert (a certificate required but not verified) is not supported; use "
                    "RequireAndVerifyClientCert with client_ca_file")
        elif given is not None:
            auth = given
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and "client_ca_file" not in entries:
        r.error(entries.get("client_auth_type", node), f"{label}.client_auth_type",
                f"{auth} needs client_ca_file (the CA that signs the client certificates)")
    versions: dict[str, str | None] = {"min_version": "TLS12", "max_version": None}
    for name in versions:
        if name in entries:
            given = r.text(entries[name], f"{label}.{name}")
            if given is not None and given not in TLS_VERSIONS:
                r.error(entries[name], f"{label}.{name}", f"unknown '{given}'; use one of {', '.join(TLS_VERSIONS)}")
            elif given is not None:
                versions[name] = given
    low, high = versions["min_version"], versions["max_version"]
    if low and high and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        r.error(entries["max_version"], f"{label}.max_version", f"{high} is below min_version {low}")
    suites: list[str] = []
    if "cipher_suites" in entries:
        for name, item in r.strings(entries["cipher_suites"], f"{label}.cipher_suites"):
            if name in GO_CIPHER_SUITES:
                suites.append(name)
            elif name not in TLS13_SUITES:
                r.error(item, f"{label}.cipher_suites", f"unknown or insecure cipher suite '{name}'")
    if "curve_preferences" in entries:
        for name, item in r.strings(entries["curve_preferences"], f"{label}.curve_preferences"):
            if name not in CURVES:
                r.error(item, f"{label}.curve_preferences", f"unknown curve '{name}'; use {', '.join(CURVES)}")
        log.warning("web config: curve_preferences is accepted but not applied (OpenSSL's defaults are used)")
    prefer = True
    if "prefer_server_cipher_suites" in entries:
        prefer = r.boolean(entries["prefer_server_cipher_suites"], f"{label}.prefer_server_cipher_suites") is not False
    sans = tuple(s for s, _ in r.strings(entries["client_allowed_sans"], f"{label}.client_allowed_sans")) \
        if "client_allowed_sans" in entries else ()
    if sans and auth != "RequireAndVerifyClientCert" and auth != "VerifyClientCertIfGiven":
        r.error(entries["client_allowed_sans"], f"{label}.client_allowed_sans",
                "needs verified client certificates (client_ca_file)")
    if cert is None or key is None:
        return None
    settings = TlsSettings(cert, key, ca, auth, low or "TLS12", high, tuple(suites), prefer, sans)
    if not r.errors:
        try:
            settings.context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            r.error(node, label, f"cannot load the certificate, key or CA: {_ssl_reason(exc)}")
    return settings


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.strerror or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _users(r: _Reader, node: yaml.Node) -> dict[str, str]:
    users: dict[str, str] = {}
    for user, value in r.mapping(node, "basic_auth_users", None).items():
        label = f"basic_auth_users.{user}"
        hashed = r.text(value, label)
        if hashed is None:
            continue
        if not hashed.startswith(_BCRYPT_PREFIXES) or len(hashed) != 60:
            r.error(value, label, "expected a bcrypt hash ($2y$..., 60 characters), e.g. from "
                    "`htpasswd -nBC 12 \"\" | tr -d ':\\n'` (the value is not shown)")
            continue
        if ":" in user:
            r.error(value, label, "a user name must not contain ':'")
            continue
        users[user] = hashed
    if users and bcrypt_module() is None:
        r.error(node, "basic_auth_users", BCRYPT_MISSING)
    return users


def _headers(r: _Reader, node: yaml.Node) -> tuple[tuple[str, str], ...]:
    out = []
    entries = r.mapping(node, "http_server_config", _HTTP_KEYS)
    if "http2" in entries:
        r.boolean(entries["http2"], "http_server_config.http2")  # accepted; this server speaks HTTP/1.1
    if "headers" in entries:
        allowed = {h.lower(): h for h in ALLOWED_HEADERS}
        for name, value in r.mapping(entries["headers"], "http_server_config.headers", None).items():
            label = f"http_server_config.headers.{name}"
            if name.lower() not in allowed:
                r.error(value, label, f"this header cannot be set; allowed: {', '.join(ALLOWED_HEADERS)}")
                continue
            text = r.text(value, label)
            if text is not None and ("\r" in text or "\n" in text):
                r.error(value, label, "a header value must be one line")
            elif text is not None:
                out.append((allowed[name.lower()], text))
    return tuple(out)


def load_web_config(path: str) -> WebConfig:
    """Parse and check a web configuration file (raises WebConfigError listing every problem)."""
    r = _Reader(path)
    try:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle.read(), Loader=yaml.SafeLoader)
    except OSError as exc:
        raise WebConfigError([f"{path}: cannot read the web configuration: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise WebConfigError([f"{path}: the web configuration is not UTF-8 text"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise WebConfigError([f"{where}: invalid YAML: {exc.problem or 'syntax error'}"]) from None
    except yaml.YAMLError as exc:
        raise WebConfigError([f"{path}: invalid YAML: {type(exc).__name__}"]) from None
    if root is None:
        return WebConfig(path=path, empty=True)
    top = r.mapping(root, "", _TOP_KEYS)
    tls = _tls(r, top["tls_server_config"]) if "tls_server_config" in top else None
    users = _users(r, top["basic_auth_users"]) if "basic_auth_users" in top else {}
    headers = _headers(r, top["http_server_config"]) if "http_server_config" in top else ()
    if r.errors:
        raise WebConfigError(r.errors)
    return WebConfig(path=path, tls=tls, users=users, headers=headers)


def bcrypt_module() -> Any:
    try:
        import bcrypt
    except ImportError:
        return None
    return bcrypt

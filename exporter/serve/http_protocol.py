"""HTTP/1.1 message handling for the exporter's server: request heads in, response heads out.

Only what the exporter needs: GET and HEAD without bodies, keep-alive, pipelining. Pure functions on
bytes, so they are easy to test and cost nothing while the event loop waits on sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

from exporter import __version__

MAX_REQUEST_LINE = 8192
# The server names itself and its version, never the Python running it.
SERVER = f"azdo-exporter/{__version__}"

_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class BadRequest(Exception):
    """A request the server answers with `status` and closes the connection after."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Request:
    method: str
    target: str
    version: tuple[int, int]
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


def find_head(buffer: bytes) -> int:
    """The length of the request head (request line and headers with the blank line) at the start of
    `buffer`, or -1 when it is not complete yet. Lines may end in CRLF or a bare LF (RFC 9112 2.2)."""
    match = _END_OF_HEAD.search(buffer)
    return match.end() if match else -1


def parse_head(head: bytes) -> Request:
    """Parse a complete request head (raises BadRequest)."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    request_line = lines[0]
    if len(request_line) > MAX_REQUEST_LINE:
        raise BadRequest(414, "request line too long\n")
    try:
        text = request_line.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "bad request line\n") from None
    parts = text.split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest(400, "bad request line\n")
    method, target, version_text = parts
    version = _VERSION.fullmatch(version_text)
    if version is None:
        raise BadRequest(400, "bad request line\n")
    major, minor = int(version.group(1)), int(version.group(2))
    if major != 1:
        raise BadRequest(505, "HTTP version not supported\n")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        if not raw:
            continue  # the blank line(s) ending the head
        if raw[:1] in (b" ", b"\t"):
            raise BadRequest(400, "folded header lines are not accepted\n")
        name_bytes, sep, value_bytes = raw.partition(b":")
        name = name_bytes.decode("latin-1")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest(400, "bad header line\n")
        key = name.lower()
        value = value_bytes.decode("latin-1").strip(" \t")
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                if headers[key] != value:
                    raise BadRequest(400, f"conflicting {name} headers\n")
                continue
            value = f"{headers[key]}, {value}"
        headers[key] = value
    request = Request(method, target, (major, minor), headers)
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
        raise BadRequest(413, "request bodies are not accepted\n")
    return request


def accepts_gzip(accept_encoding: str) -> bool:
    """True when Accept-Encoding lists gzip with a quality above 0 (`gzip;q=0` refuses it)."""
    for item in accept_encoding.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:
                    return False
        return True
    return False


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """The status line and headers of an answer (Server and Date first), ending with the blank line."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}", f"Server: {SERVER}", f"Date: {formatdate(usegmt=True)}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

"""One process-wide scrubber: removes every configured secret from text before it leaves the process.

Upstream answers can echo what they were sent (an `Authorization` header in a 401 message, a webhook URL
in an error), and exception texts carry whatever their authors put in them. Every text that leaves the
process (client error messages, the scheduler's recorded errors, log records through `ScrubFilter`)
passes through `SCRUBBER.scrub` first.

It is fed with secret *sources*: callables that return the secrets in use right now, so a rotated token
file is covered as soon as the credential has read it. For each secret it removes the raw value and the
forms it travels in: base64 of `:secret` (a PAT in HTTP Basic), base64 of the secret itself, both also
without padding, and the URL-quoted secret. For a secret URL (a webhook) also its path and query, where
the secret part of such a URL lives, which an answer may echo without the host.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, urlsplit

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter strings would blank out ordinary words; no real token is this short
MIN_URL_PART_LENGTH = 16  # a URL's path or query shorter than this (`/webhook`) is no secret of its own

SecretSource = Callable[[], Iterable[str]]


def secret_forms(secret: str) -> list[str]:
    """The strings to remove for one secret, longest first (so a longer form is never half-replaced)."""
    forms = {secret, quote(secret, safe="")}
    for raw in (f":{secret}", secret):
        encoded = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        forms.update((encoded, encoded.rstrip("=")))
    if secret.startswith(("https://", "http://")):
        try:
            parts = urlsplit(secret)
        except ValueError:
            parts = None
        if parts is not None:
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            forms.update(p for p in (tail, parts.query) if len(p) >= MIN_URL_PART_LENGTH)
    return sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class Scrubber:
    """Replaces every form of every known secret with `[redacted]`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[SecretSource] = []
        self._static: set[str] = set()

    def add_secret(self, *secrets: str | None) -> None:
        """Remember fixed secrets (a webhook URL, a password); empty values are ignored."""
        with self._lock:
            self._static.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def add_source(self, source: SecretSource) -> None:
        """Remember a callable that returns the secrets in use now (a credential's `secrets`)."""
        with self._lock:
            self._sources.append(source)

    def remove_source(self, source: SecretSource) -> None:
        with self._lock:
            self._sources = [s for s in self._sources if s != source]

    def _secrets(self) -> set[str]:
        with self._lock:
            sources, found = list(self._sources), set(self._static)
        for source in sources:
            try:
                found.update(s for s in source() if s and len(s) >= MIN_SECRET_LENGTH)
            except Exception:  # a source that cannot answer must not stop the scrubbing of the others
                continue
        return found

    def scrub(self, text: str) -> str:
        """`text` with every form of every known secret replaced by `[redacted]`."""
        if not text:
            return text
        forms = sorted({f for s in self._secrets() for f in secret_forms(s)}, key=len, reverse=True)
        for form in forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


SCRUBBER = Scrubber()


def scrub(text: str) -> str:
    """`SCRUBBER.scrub(text)`: the one call sites use."""
    return SCRUBBER.scrub(text)


class ScrubFilter(logging.Filter):
    """A handler filter that scrubs a record's message, exception and stack text before it is formatted.

    The message is rendered once (msg % args) and replaced by its scrubbed text; the traceback is
    rendered into `exc_text`, which every `logging.Formatter` uses instead of formatting `exc_info` again.
    """

    def __init__(self, scrubber: Scrubber = SCRUBBER) -> None:
        super().__init__()
        self._scrubber = scrubber
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as it always does
            return True
        record.msg, record.args = self._scrubber.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._scrubber.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self._scrubber.scrub(record.stack_info)
        return True

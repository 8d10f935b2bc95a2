"""The secret scrubber and the log filter that applies it to every record."""

from __future__ import annotations

import base64
import io
import json
import logging

from exporter.azdo.auth import PatCredential
from exporter.azdo.scrub import REDACTED, Scrubber, ScrubFilter
from exporter.logging_setup import JsonFormatter

PAT = "pat-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_every_form_of_a_secret_is_replaced() -> None:
    scrubber = Scrubber()
    scrubber.add_source(PatCredential(token=PAT).secrets)
    basic = base64.b64encode(f":{PAT}".encode()).decode()
    plain = base64.b64encode(PAT.encode()).decode()
    text = f"raw {PAT} | Authorization: Basic {basic} | b64 {plain} | unpadded {basic.rstrip('=')}x"
    scrubbed = scrubber.scrub(text)
    assert scrubbed == (f"raw {REDACTED} | Authorization: Basic {REDACTED} | b64 {REDACTED} | unpadded "
                        f"{REDACTED}x")


def test_fixed_secrets_and_sources_are_both_used_and_a_source_can_be_removed() -> None:
    scrubber = Scrubber()
    hook = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"
    scrubber.add_secret(hook, "", None, "ab")  # empty and too-short values are ignored
    tokens = ["first-token-1234"]
    source = tokens.copy
    scrubber.add_source(source)
    assert scrubber.scrub(f"posting to {hook} with first-token-1234 about ab") == (
        f"posting to {REDACTED} with {REDACTED} about ab")
    scrubber.remove_source(source)
    assert scrubber.scrub("first-token-1234") == "first-token-1234"


def test_a_failing_source_does_not_stop_the_others() -> None:
    scrubber = Scrubber()

    def broken() -> list[str]:
        raise RuntimeError("no")

    scrubber.add_source(broken)
    scrubber.add_secret("secret-value")
    assert scrubber.scrub("a secret-value here") == f"a {REDACTED} here"


def test_log_filter_scrubs_message_arguments_and_traceback_in_text_and_json() -> None:
    scrubber = Scrubber()
    scrubber.add_secret(PAT)
    for formatter in (logging.Formatter("%(levelname)s %(message)s"), JsonFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(ScrubFilter(scrubber))
        logger = logging.getLogger(f"test_scrub.{type(formatter).__name__}")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            try:
                raise ValueError(f"upstream said {PAT}")
            except ValueError:
                logger.exception("refresh failed with %s", PAT)
        finally:
            logger.removeHandler(handler)
        out = stream.getvalue()
        assert PAT not in out
        assert out.count(REDACTED) == 2  # the message and the exception text
        if isinstance(formatter, JsonFormatter):
            entry = json.loads(out)
            assert entry["message"] == f"refresh failed with {REDACTED}"
            assert f"ValueError: upstream said {REDACTED}" in entry["exception"]


def test_a_secret_url_loses_its_path_and_query_too_but_short_ones_stay() -> None:
    scrubber = Scrubber()
    scrubber.add_secret("https://contoso.webhook.office.com/webhookb2/abc-123-def-456?sig=0123456789abcdef")
    scrubber.add_secret("https://example.com/hook")
    text = ("posted to /webhookb2/abc-123-def-456?sig=0123456789abcdef, signature sig=0123456789abcdef, "
            "other /hook")
    assert scrubber.scrub(text) == f"posted to {REDACTED}, signature {REDACTED}, other /hook"

"""The team digest: a summary sent to Slack, Teams or any webhook, on a schedule or by hand.

- `azdo-exporter digest --to slack|teams|webhook|stdout [--config FILE]` refreshes every collector once
  (like `--once`) and sends one digest now (`stdout` prints it as Markdown and records nothing).
- The running exporter sends it on the `digest:` schedule when `digest.to` is set (`DigestService`).

Delivery retries with exponential backoff and jitter (5xx, 429, timeouts, connection errors); other
4xx answers are not retried. A failure is logged, counted in
`azdo_exporter_digest_deliveries_total{result="failure"}`, and the exporter keeps serving. The state
file records the last slot sent, written atomically right after delivery, so a restart never
sends the same digest twice. The webhook URL is a secret: it never appears in logs or messages.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from exporter.azdo.scrub import scrub
from exporter.config.settings import Config
from exporter.metrics import catalogue as m
from exporter.team.digest_formats import render
from exporter.team.digest_model import Digest, DigestState, compose, load_state, next_state, save_state
from exporter.team.digest_schedule import latest_slot, slot_id
from exporter.team.digest_snapshot import TeamSnapshot, read_snapshot

log = logging.getLogger(__name__)

__all__ = ["DeliveryError", "DigestService", "build_digest", "deliver"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
USER_AGENT = "azdo-exporter-digest"
# A slot missed by more than this (exporter down, not ready) is skipped rather than sent late.
MISFIRE_GRACE = 3600.0
# After a failed delivery, the same slot is tried again this much later (while within the grace).
RETRY_SLOT_AFTER = 300.0
POLL_SECONDS = 20.0


class DeliveryError(Exception):
    """The digest could not be delivered; the message never holds the webhook URL."""


def deliver(url: str, payload: dict[str, Any], *, attempts: int = 5, backoff: float = 2.0, max_backoff: float = 60.0,
            timeout: float = 15.0, session: requests.Session | None = None,
            sleep: Callable[[float], Any] = time.sleep) -> int:
    """POST `payload` as JSON to `url`; retry 5xx, 429 and network errors with exponential backoff and jitter.

    Returns the number of attempts made. Raises DeliveryError (without the URL) when it gives up.
    """
    http = session or requests.Session()
    last = "no attempt"
    try:
        for attempt in range(1, attempts + 1):
            wait = min(max_backoff, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
            try:
                response = http.post(url, json=payload, timeout=timeout, allow_redirects=False,
                                     headers={"User-Agent": USER_AGENT})
            except requests.Timeout:
                last = "timeout"
            except requests.RequestException as error:
                last = f"connection error ({type(error).__name__})"  # str(error) would show the URL
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return attempt
                detail = " ".join(scrub(response.text)[:200].split())  # scrubbed first: a cut URL would leak
                last = f"HTTP {status}" + (f": {detail}" if detail else "")
                if status == 429 or status >= 500:
                    retry_after = response.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        wait = min(max_backoff, float(retry_after))
                else:
                    raise DeliveryError(f"the webhook refused the digest ({last}); not retried")
            if attempt < attempts:
                log.warning("digest delivery attempt %d of %d failed (%s); retrying in %.1fs", attempt, attempts,
                            last, wait)
                sleep(wait)
    finally:
        if session is None:
            http.close()
    raise DeliveryError(f"gave up after {attempts} attempts; last: {last}")


class DigestService:
    """Sends the digest on the configured schedule from the exporter's snapshot (a thread, or `tick()`).

    `source` is what the snapshot is read from (the exporter's registry); the deliveries counter is
    registered on `registry` (the same registry in the exporter).
    """

    def __init__(self, config: Config, source: Collector, registry: CollectorRegistry, ready: Callable[[], bool],
                 *, clock: Callable[[], float] | None = None, attempts: int = 5, backoff: float = 2.0,
                 sleep: Callable[[float], None] | None = None) -> None:
        if config.digest.to is None or config.digest.state_file is None:
            raise ValueError("the scheduled digest needs digest.to and digest.state_file")
        self.config = config
        self.digest_config = config.digest
        self.source = source
        self.ready = ready
        self.clock: Callable[[], float] = clock or (lambda: time.time())  # looked up per call (freezegun)
        self.attempts = attempts
        self.backoff = backoff
        self.instance = uuid.uuid4().hex
        self.deliveries = m.EXPORTER_DIGEST_DELIVERIES.live_counter(registry)
        for result in ("success", "failure"):
            self.deliveries.labels(result=result)
        self._stop = threading.Event()
        self._sleep: Callable[[float], Any] = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self._failed: tuple[str, float] | None = None  # slot, when to try it again

    def snapshot(self) -> TeamSnapshot:
        return read_snapshot(self.source, organization=self.config.organization,
                             organization_url=self.config.organization_url, now=self.clock(),
                             is_production=self.config.production_environment)

    def due_slot(self, now: float) -> str | None:
        d = self.digest_config
        slot = latest_slot(datetime.fromtimestamp(now, tz=UTC), d.days, d.time, d.zone)
        if now - slot.timestamp() > MISFIRE_GRACE:
            return None
        return slot_id(slot)

    def tick(self) -> str:
        """Send the digest if a slot is due and not sent yet: `sent`, `failed`, `not_due`, `already_sent`,
        `waiting` (no completed refresh yet) or `retry_later`."""
        now = self.clock()
        slot = self.due_slot(now)
        if slot is None:
            return "not_due"
        state_file = self.digest_config.state_file
        assert state_file is not None
        previous = load_state(state_file)
        if previous.last_slot is not None and previous.last_slot >= slot:
            return "already_sent"
        if self._failed is not None and self._failed[0] == slot and now < self._failed[1]:
            return "retry_later"
        if not self.ready():
            return "waiting"
        snapshot = self.snapshot()
        digest = compose(snapshot, previous, time_zone=self.digest_config.time_zone, instance=self.instance)
        target = self.digest_config.to
        assert target is not None
        url = self.digest_config.webhook_url
        try:
            if url is None:
                raise DeliveryError("no webhook URL configured")
            attempts = deliver(url.reveal(), render(digest, target), attempts=self.attempts, backoff=self.backoff,
                               sleep=self._sleep)
        except DeliveryError as error:
            self.deliveries.labels(result="failure").inc()
            self._failed = (slot, now + RETRY_SLOT_AFTER)
            log.error("digest for %s not delivered to %s: %s", slot, target, error)
            return "failed"
        self._failed = None
        try:
            save_state(state_file, next_state(snapshot, digest, slot=slot, instance=self.instance, previous=previous))
        except OSError as error:
            log.error("digest for %s delivered, but the state file %s could not be written (%s): it may be sent "
                      "again after a restart", slot, state_file, error.strerror or type(error).__name__)
        self.deliveries.labels(result="success").inc()
        log.info("digest for %s delivered to %s (%d attempt(s)): %d broken, %d fixed", slot, target, attempts,
                 len(digest.broken), len(digest.fixed))
        return "sent"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the digest must never take the exporter down
                log.exception("digest scheduler error")
            self._stop.wait(POLL_SECONDS)

    def start(self) -> None:
        d = self.digest_config
        log.info("digest to %s scheduled on %s at %s %s", d.to, ",".join(
            ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[i] for i in d.days), d.time.strftime("%H:%M"),
            d.time_zone)
        self._thread = threading.Thread(target=self._run, name="digest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def build_digest(config: Config, source: Collector, now: float, previous: DigestState) -> tuple[TeamSnapshot, Digest]:
    snapshot = read_snapshot(source, organization=config.organization, organization_url=config.organization_url,
                             now=now, is_production=config.production_environment)
    return snapshot, compose(snapshot, previous, time_zone=config.digest.time_zone)

"""The Azure DevOps REST client: one HTTP session, auth, retries, throttling, paging, self-metrics.

Every request goes through `AzureDevOpsClient.get`, which applies the timeout (a total deadline for
connect, headers and the whole body, see transport.py) and a maximum answer size, the credential,
`X-TFS-FedAuthRedirect: Suppress`, retries with exponential backoff and full jitter on 5xx, timeouts
and connection errors, waits as told by `Retry-After` (also on a 200), and records self-metrics under
a fixed endpoint name. Failures raise `ApiError` with one of the reasons of
`azdo_exporter_refresh_errors_total`. No message built here contains a credential, and every
`ApiError` message passes through the secret scrubber (an upstream may echo the `Authorization` header).
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from exporter import __version__
from exporter.azdo.auth import Credential, CredentialError
from exporter.azdo.scrub import scrub
from exporter.azdo.transport import Watchdog, watched_session
from exporter.metrics.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

API_VERSION = "7.1"
API_VERSION_PREVIEW = "7.1-preview.1"

MAX_PAGES = 10_000  # a guard against a server that pages forever with fresh tokens
MAX_RETRY_AFTER = 300.0  # never sleep longer than this on one Retry-After
SELF_THROTTLE_MAX = 30.0  # the longest pause taken after an answer that reports X-RateLimit-Delay
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # default cap on one answer's (decoded) body
READ_CHUNK = 64 * 1024


class ApiError(Exception):
    """A request to Azure DevOps failed; `reason` is one of selfmetrics.ERROR_REASONS."""

    def __init__(self, reason: str, message: str, *, endpoint: str = "", status: int | None = None) -> None:
        super().__init__(scrub(message))
        self.reason = reason
        self.endpoint = endpoint
        self.status = status


class NotFoundError(ApiError):
    """HTTP 404: the project, pipeline or resource does not exist (or is hidden from the token)."""


@dataclass(frozen=True)
class Response:
    body: Any
    headers: Mapping[str, str]


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_message(response: requests.Response, content: bytes | bytearray) -> str:
    """The `message` of an Azure DevOps WrappedException body, scrubbed, then shortened, or a generic text.

    Scrubbed before shortening: a cut made first could leave half a secret that no longer matches.
    """
    message = response.reason or "no message"
    try:
        body = json.loads(content)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = str(body["message"])
    except ValueError:
        pass
    return scrub(message)[:300]


def _tls_problem(error: BaseException) -> str | None:
    """What went wrong in TLS, from the ssl error somewhere in `error`'s chain; None if TLS is not involved."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate not trusted: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return str(current.reason or type(current).__name__)
        pending += [a for a in current.args if isinstance(a, BaseException)]
        pending += [e for e in (getattr(current, "reason", None), current.__cause__, current.__context__)
                    if isinstance(e, BaseException)]
    return "handshake failed" if isinstance(error, requests.exceptions.SSLError) else None


def next_token(endpoint: str, token: str, seen: set[str]) -> str:
    """The continuation token to ask with next; a token seen before raises ApiError(bad_response) instead
    of letting a listing loop forever."""
    if token in seen:
        raise ApiError("bad_response", f"{endpoint}: continuation token repeated; stopping the listing to avoid "
                       "an endless loop", endpoint=endpoint)
    seen.add(token)
    return token


class AzureDevOpsClient:
    """A client for one Azure DevOps organization (or Azure DevOps Server collection)."""

    def __init__(
        self,
        credential: Credential,
        metrics: SelfMetrics,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._credential = credential
        self._metrics = metrics
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_response_bytes = max_response_bytes
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._session = session or watched_session()
        self._watchdog = Watchdog()
        self._session.headers.update(
            {
                "Accept": "application/json",
                "User-Agent": f"azdo-exporter/{__version__}",
                "X-TFS-FedAuthRedirect": "Suppress",
            }
        )
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._not_before = 0.0  # monotonic time before which no request is sent (Retry-After)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()

    # -- single requests -------------------------------------------------------------------------

    def get(self, endpoint: str, url: str, params: Mapping[str, Any] | None = None,
            api_version: str = API_VERSION) -> Response:
        """GET `url` and return its JSON body; retry transient failures; raise ApiError otherwise."""
        query = dict(params or {})
        query["api-version"] = api_version
        attempt = 0
        token_renewed = False
        while True:
            self._wait_for_retry_after()
            try:
                return self._get_once(endpoint, url, query)
            except ApiError as error:
                # A refused token (expired early, revoked): a credential that can fetch a new one (Entra ID)
                # drops it, and the request is sent once more with a fresh token.
                invalidate = getattr(self._credential, "invalidate", None)
                if (error.reason == "auth" and error.status in (401, 203) and not token_renewed
                        and callable(invalidate)):
                    token_renewed = True
                    log.info("%s: Azure DevOps refused the token (HTTP %s); fetching a new one and retrying once",
                             endpoint, error.status)
                    invalidate()
                    continue
                retryable = error.reason in ("http_5xx", "timeout", "connection", "bad_response", "throttled")
                if not retryable or attempt >= self._max_retries:
                    raise
                attempt += 1
                if error.reason != "throttled":  # throttling already set _not_before from Retry-After
                    delay = self._rng.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt))
                    log.debug("retrying %s in %.2fs after %s", endpoint, delay, error)
                    self._sleep(delay)

    def _wait_for_retry_after(self) -> None:
        with self._lock:
            wait = self._not_before - self._monotonic()
        if wait > 0:
            self._metrics.rate_limit_delay.inc(wait)
            self._sleep(wait)

    def _note_retry_after(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, self._monotonic() + min(seconds, MAX_RETRY_AFTER))

    def _get_once(self, endpoint: str, url: str, query: dict[str, Any]) -> Response:
        try:
            authorization = self._credential.authorization_header()
        except CredentialError as error:
            raise ApiError("auth", str(error), endpoint=endpoint) from None
        started = self._monotonic()

        def timed_out() -> ApiError:
            return ApiError("timeout", f"{endpoint}: no complete answer within {self._timeout:g}s",
                            endpoint=endpoint)

        with self._watchdog.watching(self._timeout) as watch:
            try:
                # Redirects are never followed: Azure DevOps API calls need none, and a redirect to another
                # host must not receive the credential (a 3xx is reported as an auth problem below).
                response = self._session.get(
                    url, params=query, headers={"Authorization": authorization}, timeout=self._timeout,
                    allow_redirects=False, stream=True,
                )
                try:
                    content = self._read_body(endpoint, response, started)
                finally:
                    response.close()
            except requests.Timeout:
                self._record(endpoint, "timeout", started)
                raise timed_out() from None
            except requests.RequestException as error:
                if watch.expired:  # the watchdog cut the connection at the deadline
                    self._record(endpoint, "timeout", started)
                    raise timed_out() from None
                self._record(endpoint, "connection", started)
                problem = _tls_problem(error)
                if problem is not None:
                    raise ApiError("connection", f"{endpoint}: TLS failed ({problem}); check the organization "
                                   "URL and the trusted CA certificates", endpoint=endpoint) from None
                raise ApiError("connection", f"{endpoint}: connection failed ({type(error).__name__})",
                               endpoint=endpoint) from None
        if watch.expired:  # a body cut at the deadline can look complete (an answer without a length)
            self._record(endpoint, "timeout", started)
            raise timed_out()
        self._record(endpoint, str(response.status_code), started)
        self._read_rate_limit_headers(response)
        return self._interpret(endpoint, response, content)

    def _read_body(self, endpoint: str, response: requests.Response, started: float) -> bytearray:
        """The whole (decoded) body, read piece by piece; ApiError(bad_response) past the size cap."""
        limit = self._max_response_bytes

        def too_large() -> ApiError:
            self._record(endpoint, str(response.status_code), started)
            return ApiError("bad_response", f"{endpoint}: answer larger than {limit} bytes (HTTP "
                            f"{response.status_code}); not read further", endpoint=endpoint,
                            status=response.status_code)

        try:
            declared = int(response.headers.get("Content-Length", "0"))
        except ValueError:
            declared = 0
        if declared > limit:
            raise too_large()
        content = bytearray()
        for chunk in response.iter_content(READ_CHUNK):
            if len(content) + len(chunk) > limit:
                raise too_large()
            content += chunk
        return content

    def _record(self, endpoint: str, code: str, started: float) -> None:
        self._metrics.api_requests.labels(endpoint, code).inc()
        self._metrics.api_request_duration.labels(endpoint).observe(max(0.0, self._monotonic() - started))

    def _read_rate_limit_headers(self, response: requests.Response) -> None:
        headers = response.headers
        remaining = headers.get("X-RateLimit-Remaining")
        if remaining is not None:
            try:
                self._metrics.set_rate_limit_remaining(headers.get("X-RateLimit-Resource", "unknown"),
                                                       float(remaining))
            except ValueError:
                pass
        delay = headers.get("X-RateLimit-Delay")
        if delay:
            try:
                seconds = max(0.0, float(delay))
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                self._metrics.rate_limit_delay.inc(seconds)
                # Azure DevOps is already slowing us down: pause as long before the next request, so the
                # exporter's own pace drops instead of piling more delayed requests onto the identity.
                self._note_retry_after(min(seconds, SELF_THROTTLE_MAX))
        retry_after = _retry_after_seconds(headers.get("Retry-After"))
        if retry_after is not None:
            self._note_retry_after(retry_after)

    def _interpret(self, endpoint: str, response: requests.Response, content: bytes | bytearray) -> Response:
        status = response.status_code
        if status == 429:
            self._metrics.throttled.inc()
            if _retry_after_seconds(response.headers.get("Retry-After")) is None:
                self._note_retry_after(min(self._backoff_max, 10.0))
            raise ApiError("throttled", f"{endpoint}: throttled by Azure DevOps (HTTP 429): "
                           f"{_error_message(response, content)}", endpoint=endpoint, status=status)
        if status in (401, 403):
            raise ApiError("auth", f"{endpoint}: access denied (HTTP {status}): {_error_message(response, content)}; "
                           "check the token, its expiry and its scopes", endpoint=endpoint, status=status)
        if status >= 500:
            raise ApiError("http_5xx", f"{endpoint}: server error HTTP {status}", endpoint=endpoint,
                           status=status)
        if status == 404:
            raise NotFoundError("http_4xx", f"{endpoint}: not found (HTTP 404): {_error_message(response, content)}",
                                endpoint=endpoint, status=status)
        if 300 <= status < 400:
            raise ApiError("auth", f"{endpoint}: redirected (HTTP {status}), probably to a sign-in page; "
                           "check the token", endpoint=endpoint, status=status)
        if status >= 400:
            raise ApiError("http_4xx", f"{endpoint}: HTTP {status}: {_error_message(response, content)}",
                           endpoint=endpoint, status=status)
        content_type = response.headers.get("Content-Type", "")
        text_start = bytes(content[:64]).lstrip()[:1]
        if status == 203 or "json" not in content_type.lower() or text_start == b"<":
            raise ApiError("auth", f"{endpoint}: Azure DevOps answered with a sign-in page (HTTP {status}, "
                           f"{content_type.split(';')[0] or 'no content type'}) instead of JSON: the token is "
                           "invalid or expired", endpoint=endpoint, status=status)
        try:
            body = json.loads(content)
        except ValueError:
            raise ApiError("bad_response", f"{endpoint}: malformed or truncated JSON in the answer "
                           f"({len(content)} bytes)", endpoint=endpoint, status=status) from None
        return Response(body, response.headers)

    # -- lists -----------------------------------------------------------------------------------

    @staticmethod
    def _values(endpoint: str, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise ApiError("bad_response", f"{endpoint}: expected a list answer with 'value'", endpoint=endpoint)
        return [item for item in body["value"] if isinstance(item, dict)]

    def pages_by_token(self, endpoint: str, url: str, params: Mapping[str, Any] | None = None,
                       api_version: str = API_VERSION) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of a list paged with the `x-ms-continuationtoken` header.

        Every page is requested with the same parameters plus the token. A token seen before raises
        ApiError(bad_response) instead of looping forever.
        """
        query = dict(params or {})
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            response = self.get(endpoint, url, query, api_version)
            yield self._values(endpoint, response.body)
            token = response.headers.get("x-ms-continuationtoken")
            if not token:
                return
            query["continuationToken"] = next_token(endpoint, token, seen)
        raise ApiError("bad_response", f"{endpoint}: more than {MAX_PAGES} pages", endpoint=endpoint)

    def pages_by_skip(self, endpoint: str, url: str, params: Mapping[str, Any] | None = None,
                      page_size: int = 100, api_version: str = API_VERSION) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of a list paged with `$top`/`$skip`, until a page is shorter than `$top`."""
        query = dict(params or {})
        for page_number in range(MAX_PAGES):
            query["$top"] = page_size
            query["$skip"] = page_number * page_size
            values = self._values(endpoint, self.get(endpoint, url, query, api_version).body)
            yield values
            if len(values) < page_size:
                return
        raise ApiError("bad_response", f"{endpoint}: more than {MAX_PAGES} pages", endpoint=endpoint)

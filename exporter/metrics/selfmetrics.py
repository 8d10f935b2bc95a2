"""The exporter's own metrics: refreshes, API requests, throttling.

These are live prometheus_client objects on the exporter's registry (they describe the exporter's
behaviour, not proxied Azure DevOps data), created once per process and passed to whoever updates them.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__

ERROR_REASONS = ("auth", "throttled", "http_5xx", "http_4xx", "timeout", "connection", "bad_response")

REFRESH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# A misbehaving server could send a new X-RateLimit-Resource value on every answer; keep the label bounded.
MAX_RATE_LIMIT_RESOURCES = 20


class SelfMetrics:
    """Counters, gauges and histograms about the exporter itself."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.build_info = Gauge(
            "azdo_exporter_build_info",
            "Version of azdo-exporter and of the Python running it (always 1).",
            ["version", "python_version"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.lookback_seconds = Gauge(
            "azdo_exporter_lookback_seconds",
            "Length of the history window that the *_window_* metrics cover.",
            registry=registry,
        )
        self.refresh_success = Gauge(
            "azdo_exporter_refresh_success",
            "1 if the last refresh of the collector succeeded completely, 0 if any part failed.",
            ["collector"],
            registry=registry,
        )
        self.last_refresh_success = Gauge(
            "azdo_exporter_last_refresh_success_timestamp_seconds",
            "Unix time of the last refresh of the collector that succeeded completely.",
            ["collector"],
            registry=registry,
        )
        self.refresh_duration = Histogram(
            "azdo_exporter_refresh_duration_seconds",
            "Wall time of collector refreshes.",
            ["collector"],
            buckets=REFRESH_BUCKETS,
            registry=registry,
        )
        self.refresh_errors = Counter(
            "azdo_exporter_refresh_errors",
            "Refresh failures by collector and reason.",
            ["collector", "reason"],
            registry=registry,
        )
        self.api_requests = Counter(
            "azdo_exporter_api_requests",
            "HTTP requests sent to Azure DevOps by fixed endpoint name and status code "
            "(code is 'timeout' or 'connection' when no answer came).",
            ["endpoint", "code"],
            registry=registry,
        )
        self.api_request_duration = Histogram(
            "azdo_exporter_api_request_duration_seconds",
            "Duration of HTTP requests to Azure DevOps.",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.rate_limit_remaining = Gauge(
            "azdo_exporter_rate_limit_remaining",
            "X-RateLimit-Remaining of the last answer: throughput units left before Azure DevOps delays requests.",
            ["resource"],
            registry=registry,
        )
        self.throttled = Counter(
            "azdo_exporter_throttled",
            "Answers with HTTP 429 (request blocked by Azure DevOps rate limiting).",
            registry=registry,
        )
        self.rate_limit_delay = Counter(
            "azdo_exporter_rate_limit_delay_seconds",
            "Seconds of delay from rate limiting: X-RateLimit-Delay reported by Azure DevOps plus the "
            "time the exporter waited as told by Retry-After.",
            registry=registry,
        )
        self._resources: set[str] = set()

    def register_collector(self, collector: str) -> None:
        """Create every series of a collector at start-up, so rate() and alerts see them from 0."""
        self.refresh_success.labels(collector)
        self.last_refresh_success.labels(collector)
        self.refresh_duration.labels(collector)
        for reason in ERROR_REASONS:
            self.refresh_errors.labels(collector, reason)

    def set_rate_limit_remaining(self, resource: str, remaining: float) -> None:
        """Record X-RateLimit-Remaining, with a bounded set of resource names."""
        resource = resource[:64]
        if resource not in self._resources:
            if len(self._resources) >= MAX_RATE_LIMIT_RESOURCES:
                resource = "other"
            self._resources.add(resource)
        self.rate_limit_remaining.labels(resource).set(remaining)

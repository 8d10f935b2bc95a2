"""The exporter's own metrics: refreshes, API requests, throttling.

These are live prometheus_client objects on the exporter's registry (they describe the exporter's
behaviour, not proxied Azure DevOps data), created once per process and passed to whoever updates them.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.metrics import catalogue as m

# `internal`: a refresh raised something unexpected (a bug); the loop logs it, counts it and goes on.
ERROR_REASONS = ("auth", "throttled", "http_5xx", "http_4xx", "timeout", "connection", "bad_response", "internal")

REFRESH_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# A misbehaving server could send a new X-RateLimit-Resource value on every answer; keep the label bounded.
MAX_RATE_LIMIT_RESOURCES = 20


class SelfMetrics:
    """Counters, gauges and histograms about the exporter itself."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.build_info = m.EXPORTER_BUILD_INFO.live_gauge(registry)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.lookback_seconds = m.EXPORTER_LOOKBACK_SECONDS.live_gauge(registry)
        self.refresh_success = m.EXPORTER_REFRESH_SUCCESS.live_gauge(registry)
        self.last_refresh_success = m.EXPORTER_LAST_REFRESH_SUCCESS_TIMESTAMP_SECONDS.live_gauge(registry)
        self.refresh_duration = m.EXPORTER_REFRESH_DURATION_SECONDS.live_histogram(registry, REFRESH_BUCKETS)
        self.refresh_errors = m.EXPORTER_REFRESH_ERRORS.live_counter(registry)
        self.api_requests = m.EXPORTER_API_REQUESTS.live_counter(registry)
        self.api_request_duration = m.EXPORTER_API_REQUEST_DURATION_SECONDS.live_histogram(registry, REQUEST_BUCKETS)
        self.rate_limit_remaining = m.EXPORTER_RATE_LIMIT_REMAINING.live_gauge(registry)
        self.throttled = m.EXPORTER_THROTTLED.live_counter(registry)
        self.rate_limit_delay = m.EXPORTER_RATE_LIMIT_DELAY_SECONDS.live_counter(registry)
        # Registered by the HTTP server only when a web config is in use (without one nothing is reloaded).
        self.web_config_last_reload_successful = m.EXPORTER_WEB_CONFIG_LAST_RELOAD_SUCCESSFUL.live_gauge(None)
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

"""What every area shares: the refresh contract the scheduler drives, and the error a refresh raises."""

from __future__ import annotations

from typing import Protocol

from prometheus_client.metrics_core import Metric


class RefreshError(Exception):
    """A refresh failed in whole or in part; `reasons` has one entry per failure (self-metric reasons)."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class Area(Protocol):
    """A unit of refresh: builds, pull requests, deployments, ..."""

    name: str
    interval: float

    def refresh(self) -> None:
        """Update state from Azure DevOps and publish new families; raise RefreshError or ApiError."""
        ...

    def families(self) -> list[Metric]:
        """The families of the last published refresh (never mutated after publication)."""
        ...

"""What the alerts, the dashboards and their tests share about the monitoring side of the exporter.

alerts/generate.py (rules and their dashboard links), grafana/generate.py (the dashboards) and the
tests of both read these from here, so a dashboard uid, the Prometheus job selector, the production
environment rule or a collector name is written once. It sits beside the metric catalogue because it
is the same kind of fact: what the exporter's exposition means to Prometheus and Grafana. (It is not
imported by the running exporter except for the production rule's default.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.metrics import catalogue as m

# The Prometheus job (or jobs: `azdo-exporter-shard-0`, ...) that scrapes the exporter; `up` and the
# exporter's self-metrics are selected by it.
JOB = "azdo-exporter"
JOB_SELECTOR = f'job=~"{JOB}.*"'

# Environments that count as production for DORA: the exporter's default `production_environments`
# (matched with re.search), and the same rule as a PromQL matcher (=~ is anchored, hence the `.*`).
PRODUCTION_ENVIRONMENT_REGEX = "(?i)prod"


def search_matcher(label: str, regex: str) -> str:
    """A PromQL matcher that matches `label` where `re.search(regex, value)` would."""
    flags = re.match(r"\(\?[a-z]+\)", regex)
    prefix = flags.group(0) if flags else ""
    return f'{label}=~"{prefix}.*{regex[len(prefix):]}.*"'


PRODUCTION_SELECTOR = search_matcher("environment", PRODUCTION_ENVIRONMENT_REGEX)

# The `collector` label values of the self-metrics (one per area the scheduler refreshes). Data alerts
# carry the collector that feeds them, so a failing collector inhibits only its own alerts.
COLLECTORS: tuple[str, ...] = (m.AREA_BUILDS, m.AREA_DEPLOYMENTS, m.AREA_AGENT_POOLS, m.AREA_PULL_REQUESTS,
                               m.AREA_POLICIES, m.AREA_AUDIT)


@dataclass(frozen=True)
class Dashboard:
    """A Grafana dashboard of grafana/: Grafana finds it by uid; the slug in its URL is cosmetic."""

    uid: str
    title: str

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")

    @property
    def path(self) -> str:
        return f"/d/{self.uid}/{self.slug}"


PIPELINE_HEALTH = Dashboard("azdo-pipeline-health", "Pipeline health")
PIPELINE_DETAIL = Dashboard("azdo-pipeline-detail", "Pipeline detail")
CODE_REVIEW = Dashboard("azdo-code-review", "Code review and compliance")
DELIVERY = Dashboard("azdo-delivery", "Delivery and DORA")
EXPORTER = Dashboard("azdo-exporter", "Exporter")
DASHBOARDS: tuple[Dashboard, ...] = (PIPELINE_HEALTH, PIPELINE_DETAIL, CODE_REVIEW, DELIVERY, EXPORTER)

# The project's home; the alerts' runbook_url point into its docs/alerts.md (one heading per alert).
PROJECT_URL = "https://github.com/azdo-exporter/azdo-exporter"
RUNBOOK_BASE_URL = f"{PROJECT_URL}/blob/main/docs/alerts.md"

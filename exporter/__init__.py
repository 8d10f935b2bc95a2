"""azdo-exporter: Prometheus exporter for the health of Azure DevOps delivery pipelines."""

__version__ = "0.1.0"

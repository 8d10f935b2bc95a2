"""Metric families: shared histogram helpers and the exporter's own metrics."""

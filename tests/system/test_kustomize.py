"""deploy/kubernetes and the kube-prometheus-stack overlay build with kustomize (kubectl kustomize), and
the overlay's release label lands on the ServiceMonitor and the PrometheusRule only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.system_tools import require_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _build(directory: Path) -> dict[str, dict]:
    kubectl = require_binary("kubectl")
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {doc["kind"]: doc for doc in yaml.safe_load_all(proc.stdout) if doc}


def test_the_base_and_the_overlay_build_and_differ_only_by_the_release_label() -> None:
    base = _build(DEPLOY / "kubernetes")
    overlay = _build(DEPLOY / "kube-prometheus-stack")
    assert set(base) == set(overlay) >= {"StatefulSet", "Service", "ServiceMonitor", "PrometheusRule"}
    assert all(o["metadata"]["namespace"] == "azdo-exporter" for k, o in base.items() if k != "Namespace")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert base[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert overlay[kind]["metadata"]["labels"]["release"] == "prometheus"
        overlay[kind]["metadata"]["labels"]["release"] = "kube-prometheus-stack"
    assert overlay == base

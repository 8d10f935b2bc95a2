"""deploy/: every Kubernetes and Compose file parses, and everything they refer to exists and agrees — local
files and mounts, ports (container ↔ Service ↔ ServiceMonitor ↔ 9862), names, labels, image build
arguments, the secure pod spec, shards ↔ replicas, and the PrometheusRule equals the one generated
from alerts/."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.system_tools import require_binary
from tests.unit.test_deploy_files import DEPLOY


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    proc = subprocess.run([promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

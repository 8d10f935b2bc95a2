"""The golden exposition and the README metric table match what the code produces."""

from __future__ import annotations

import subprocess

from tests.golden import GOLDEN
from tests.system_tools import require_binary


def test_golden_file_passes_promtool_check_metrics() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(), capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""  # no findings

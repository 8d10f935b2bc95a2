"""check-config and the start of the exporter on out-of-range values, hostile files and warnings (issue 12)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import run_cli

ORG = "https://dev.azure.com/contoso"
# A FIFO or /dev/zero used to hang check-config or eat memory: run_cli's timeout turns such a
# regression into a failure, not a hang.


def test_check_config_rejects_out_of_range_values_with_the_allowed_range(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"organization_url: {ORG}\nrequest_timeout: 100000000000000s\nlookback: 100000000d\n"
                      "intervals:\n  builds: 1ms\n  audit: 20000w\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{config}: 4 problem(s):",
        f"  {config}:2:18: request_timeout: '100000000000000s' is out of range; allowed: 100ms to 10m",
        f"  {config}:3:11: lookback: '100000000d' is out of range; allowed: 1h to 400d",
        f"  {config}:5:11: intervals.builds: '1ms' is out of range; allowed: 0 (off), or 5s to 1w (from 100ms when "
        "organization_url is on this machine)",
        f"  {config}:6:10: intervals.audit: '20000w' is out of range; allowed: 0 (off), or 5s to 1w (from 100ms when "
        "organization_url is on this machine)",
    ]


def test_the_exporter_does_not_start_with_an_out_of_range_value() -> None:
    result = run_cli("--once", env={"AZDO_ORG_URL": ORG, "AZDO_PAT": "x", "AZDO_REQUEST_TIMEOUT": "99999999999"})
    assert result.returncode == 2
    assert "env AZDO_REQUEST_TIMEOUT: '99999999999' is out of range; allowed: 100ms to 10m" in result.stderr


def test_check_config_refuses_a_fifo_and_dev_zero_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pat"
    os.mkfifo(fifo)
    config = tmp_path / "config.yaml"
    config.write_text(f"organization_url: {ORG}\npat_file: {fifo}\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    assert f"{config}:2:11: pat_file: cannot read '{fifo}': it is a FIFO (named pipe), not a regular file" \
        in result.stderr
    config.write_text(f"organization_url: {ORG}\ndigest:\n  webhook_url_file: /dev/zero\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    assert "digest.webhook_url_file: cannot read '/dev/zero': it is a character device, not a regular file" \
        in result.stderr


def test_yaml_nested_600_deep_is_a_config_error_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "deep.yaml"
    config.write_text(f"organization_url: {ORG}\nbranches: " + "[" * 600 + "]" * 600 + "\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{config}: 1 problem(s):",
        f"  {config}:2:30: the file nests more than 20 levels deep (a configuration needs 3)",
    ]
    result = run_cli("--config", str(config), env={"AZDO_PAT": "x"})
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_check_config_prints_warnings_and_passes(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("organization_url: http://tfs.example.com/tfs/DefaultCollection\n"
                      "intervals: {builds: 0, tests: 0, pull_requests: 0, policies: 0, deployments: 0, agent_pools: 0, "
                      "audit: 0}\n", encoding="utf-8")
    result = run_cli("check-config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{config}: OK (2 warning(s))\n"
    assert result.stderr.splitlines() == [
        f"  warning: {config}:1:19: organization_url: 'http://tfs.example.com/tfs/DefaultCollection' is plain "
        "http://, so the credential and the data cross the network unencrypted; use https://",
        f"  warning: {config}: intervals: every area is 0 (off), so nothing is collected; set at least one interval, "
        "e.g. intervals.builds: 60s",
    ]

"""`azdo-exporter digest --to …`: refresh once, compose the team digest and send it now."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from exporter.app import Exporter
from exporter.azdo.scrub import scrub
from exporter.config.settings import ConfigError, load_config
from exporter.logging_setup import setup_logging
from exporter.team.digest import DeliveryError, build_digest, deliver
from exporter.team.digest_formats import render, render_markdown
from exporter.team.digest_model import load_state, next_state, save_state

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="azdo-exporter digest",
                                     description="Refresh once and send the team digest now.")
    parser.add_argument("--to", required=True, choices=["slack", "teams", "webhook", "stdout"],
                        help="where to send it (stdout prints Markdown and records nothing)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    parser.add_argument("--log-format", choices=["text", "json"])
    return parser


def digest_main(argv: Sequence[str]) -> int:
    """`azdo-exporter digest --to …`: 0 sent, 1 refresh or delivery failed, 2 bad configuration."""
    args = _parser().parse_args(list(argv))
    overrides = {k: v for k, v in (("log_level", args.log_level), ("log_format", args.log_format)) if v}
    try:
        config = load_config(args.config, os.environ, overrides)
    except ConfigError as error:
        print(f"azdo-exporter: invalid configuration:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)
    if args.to != "stdout" and config.digest.webhook_url is None:
        print(f"azdo-exporter digest: --to {args.to} needs a webhook URL: set AZDO_DIGEST_WEBHOOK_URL or "
              "digest.webhook_url_file", file=sys.stderr)
        return EXIT_CONFIG
    exporter = Exporter(config)
    try:
        errors = exporter.refresh_all_once()
        failed = {name: reason for name, reason in errors.items() if reason}
        for name, reason in failed.items():
            print(f"azdo-exporter: collector {name} failed: {reason}", file=sys.stderr)
        previous = load_state(config.digest.state_file)
        snapshot, digest = build_digest(config, exporter.registry, time.time(), previous)
    finally:
        exporter.close()
    if args.to == "stdout":
        sys.stdout.write(render_markdown(digest))
        sys.stdout.flush()
        return EXIT_FAILED if failed else EXIT_OK
    if failed:
        print("azdo-exporter digest: not sent, because the refresh failed (the digest would be wrong)",
              file=sys.stderr)
        return EXIT_FAILED
    assert config.digest.webhook_url is not None
    try:
        deliver(config.digest.webhook_url.reveal(), render(digest, args.to))
    except DeliveryError as error:
        print(f"azdo-exporter digest: not delivered to {args.to}: {scrub(str(error))}", file=sys.stderr)
        return EXIT_FAILED
    if config.digest.state_file:
        try:
            save_state(config.digest.state_file, next_state(snapshot, digest, slot=None, instance=None,
                                                            previous=previous))
        except OSError as error:
            print(f"azdo-exporter digest: sent, but the state file could not be written: "
                  f"{error.strerror or type(error).__name__}", file=sys.stderr)
    print(f"azdo-exporter digest: sent to {args.to}: {len(digest.broken)} broken, {len(digest.fixed)} fixed",
          file=sys.stderr)
    return EXIT_OK

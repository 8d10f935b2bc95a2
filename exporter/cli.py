"""Command line: run the exporter, `--demo`, `--once`, `check-config FILE`, `simulate`, `digest`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client.exposition import generate_latest

from exporter import __version__
from exporter.azdo.auth import CredentialError
from exporter.config.settings import Config, ConfigError, check_config, load_config
from exporter.interrupts import run_interruptible
from exporter.logging_setup import setup_logging

if TYPE_CHECKING:
    from exporter.app import Exporter

log = logging.getLogger("exporter")

DEMO_LISTEN = "127.0.0.1:9862"
DEMO_PAT = "demo-pat-not-a-secret"
DEMO_BANNER = """\
============================================================================
 azdo-exporter DEMO MODE: the data below comes from a SIMULATED Azure DevOps
 organization served on {url}
 (seed {seed}, scale {scale}). Nothing here talks to a real Azure DevOps.
 Metrics: http://{listen}/metrics
============================================================================"""

# Exit codes.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azdo-exporter",
        description="Prometheus exporter for the health of Azure DevOps delivery pipelines.",
        epilog="Other commands: `azdo-exporter check-config FILE`, `azdo-exporter simulate --help`, "
               "`azdo-exporter digest --help`.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (settings also come from "
                        "AZDO_* environment variables)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default 0.0.0.0:9862; "
                        "demo: 127.0.0.1:9862)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    parser.add_argument("--log-format", choices=["text", "json"])
    parser.add_argument("--demo", action="store_true", help="run against a built-in simulated organization")
    parser.add_argument("--once", action="store_true", help="refresh every collector once, print the "
                        "exposition to stdout and exit (1 if a collector failed)")
    parser.add_argument("--shard", metavar="INDEX/COUNT", help="collect only this replica's share of the "
                        "projects (0-based, e.g. 0/3); organization-wide areas run on shard 0 only")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                        help="exporter-toolkit web configuration (TLS, client certificates, basic auth)")
    parser.add_argument("--version", action="version", version=f"azdo-exporter {__version__}")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.listen:
        out["listen"] = args.listen
    if args.log_level:
        out["log_level"] = args.log_level
    if args.log_format:
        out["log_format"] = args.log_format
    if getattr(args, "shard", None):
        out["shard"] = args.shard
    if getattr(args, "web_config_file", None):
        out["web_config_file"] = args.web_config_file
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check-config":
        return _check_config(argv[1:])
    if argv and argv[0] == "simulate":
        return _simulate(argv[1:])
    if argv and argv[0] == "digest":
        from exporter.digest_cli import digest_main

        prometheus_client.disable_created_metrics()
        return run_interruptible(lambda: digest_main(argv[1:]), "digest")
    args = _run_parser().parse_args(argv)
    prometheus_client.disable_created_metrics()  # *_created series add nothing to these metrics
    if args.demo:
        return run_interruptible(lambda: _demo(args), "--demo --once") if args.once else _demo(args)
    try:
        config = load_config(args.config, os.environ, _overrides(args))
    except ConfigError as error:
        print(f"azdo-exporter: invalid configuration:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)
    for warning in config.warnings:
        log.warning("configuration: %s", warning)
    if args.once:
        return run_interruptible(lambda: _once(config), "--once")
    return _serve(config)


def _check_config(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="azdo-exporter check-config",
                                     description="Validate a configuration file; list every problem; exit 2 "
                                                 "if there is any.")
    parser.add_argument("file")
    args = parser.parse_args(argv)
    found = check_config(args.file, os.environ)
    if found.errors:
        print(f"{args.file}: {len(found.errors)} problem(s):", file=sys.stderr)
        for line in found.errors:
            print(f"  {line}", file=sys.stderr)
    for line in found.warnings:  # warnings do not stop the exporter, so they do not fail the check
        print(f"  warning: {line}", file=sys.stderr)
    if found.errors:
        return EXIT_CONFIG
    print(f"{args.file}: OK" + (f" ({len(found.warnings)} warning(s))" if found.warnings else ""))
    return EXIT_OK


def _simulate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="azdo-exporter simulate",
                                     description="Serve the simulated Azure DevOps organization alone.")
    parser.add_argument("--listen", default="127.0.0.1:8081", metavar="HOST:PORT")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale", choices=["small", "medium", "large"], default="small")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time runs this many times faster")
    parser.add_argument("--pat", default="sim-pat", help="the personal access token the simulator accepts")
    args = parser.parse_args(argv)
    from exporter.simulator.server import serve_forever

    setup_logging("INFO", "text")
    serve_forever(args.listen, seed=args.seed, scale=args.scale, speed=args.speed, pat=args.pat)
    return EXIT_OK


def _exporter(config: Config) -> Exporter | None:
    """The composed exporter, or None once it is said on stderr why its credential is unusable."""
    from exporter.app import Exporter

    try:
        return Exporter(config)
    except CredentialError as problem:
        print(f"azdo-exporter: {problem}", file=sys.stderr)
        return None


def _once(config: Config) -> int:
    exporter = _exporter(config)
    if exporter is None:
        return EXIT_CONFIG
    try:
        errors = exporter.refresh_all_once()
        sys.stdout.write(generate_latest(exporter.registry).decode("utf-8"))
        sys.stdout.flush()
    finally:
        exporter.close()
    failed = {name: error for name, error in errors.items() if error}
    for name, error in failed.items():
        print(f"azdo-exporter: collector {name} failed: {error}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _serve(config: Config, extra_shutdown: list[Any] | None = None) -> int:
    from exporter.serve.http_server import ExporterHTTPServer, start_server
    from exporter.team.radiator import status_page

    exporter = _exporter(config)
    if exporter is None:
        return EXIT_CONFIG
    try:
        server = ExporterHTTPServer((config.listen_host, config.listen_port), exporter.registry,
                                    exporter.scheduler.ready, lambda: dict(exporter.scheduler.status),
                                    extra_pages={"/status": lambda: status_page(exporter.registry, config)},
                                    web_config=config.web_config,
                                    reload_gauge=exporter.metrics.web_config_last_reload_successful)
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", config.listen_host, config.listen_port, error.strerror)
        exporter.close()
        return EXIT_FAILED
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start_server(server)
    exporter.scheduler.start()
    digest = None
    if config.digest.to:
        from exporter.team.digest import DigestService

        digest = DigestService(config, exporter.registry, exporter.registry, exporter.scheduler.ready)
        digest.start()
    scheme = "https" if config.web_config is not None and config.web_config.tls is not None else "http"
    log.info("azdo-exporter %s serving on %s://%s:%s/metrics for %s%s", __version__, scheme, config.listen_host,
             config.listen_port, config.organization_url,
             f" (shard {config.shard})" if config.shard.sharded else "")
    stop.wait()
    if digest is not None:
        digest.stop()
    server.shutdown()
    server.server_close()
    exporter.close()
    for closer in extra_shutdown or []:
        closer()
    log.info("stopped")
    return EXIT_OK


def demo_config(organization_url: str, overrides: Mapping[str, Any], pat: str = DEMO_PAT) -> Config:
    """The configuration the demo runs with: the simulator, short intervals, loopback listener."""
    env = {"AZDO_ORG_URL": organization_url, "AZDO_PAT": pat}
    settings: dict[str, Any] = {"listen": DEMO_LISTEN,
                                "intervals": {"builds": "15s", "tests": "15s", "pull_requests": "30s",
                                              "policies": "60s", "deployments": "30s", "agent_pools": "15s",
                                              "audit": "30s"}}
    settings.update(overrides)
    return load_config(None, env, settings)


def _demo(args: argparse.Namespace) -> int:
    from exporter.simulator.model import Organization
    from exporter.simulator.server import SimulatorServer

    seed, scale = 1, "small"
    simulator = SimulatorServer(Organization.generate(seed=seed, scale=scale), pat=DEMO_PAT)
    simulator.start()
    try:
        config = demo_config(simulator.base_url, _overrides(args))
    except ConfigError as error:
        simulator.stop()
        print(f"azdo-exporter: invalid demo settings:\n{error}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_format)
    print(DEMO_BANNER.format(url=simulator.base_url, seed=seed, scale=scale,
                             listen=f"{config.listen_host}:{config.listen_port}"), file=sys.stderr, flush=True)
    if args.once:
        try:
            return _once(config)
        finally:
            simulator.stop()
    return _serve(config, extra_shutdown=[simulator.stop])

"""The command line the Dapr way: `dapr run`'s flags on `mecha run`, `mecha list`, `mecha stop`.

Only argument parsing and printing live here; what the flags mean is proxy/dapr_run.py's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from proxy.dapr_run import APP_PROTOCOLS, RunFlags
from runtime.local_registry import Instance, Registry, RegistryError, default_path

LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
              "error": "ERROR", "fatal": "CRITICAL", "panic": "CRITICAL"}  # fmt: skip
"""Dapr's names, and mecha's `warning`."""


def add_run_flags(run: argparse.ArgumentParser) -> None:
    dapr = run.add_argument_group("Dapr's flags (as `dapr run` takes them)")
    add = dapr.add_argument
    add("-a", "--app-id", help="the app's id (env APP_ID); a run with one gets free ports")
    add("-p", "--app-port", type=int, help="the port the app listens on (env APP_PORT)")
    add("-P", "--app-protocol", choices=APP_PROTOCOLS, help="how mecha calls the app")
    add("--app-channel-address", metavar="HOST", help="the app's address (default 127.0.0.1)")
    add("-H", "--dapr-http-port", type=int, metavar="PORT", help="env DAPR_HTTP_PORT")
    add("-G", "--dapr-grpc-port", type=int, metavar="PORT", help="env DAPR_GRPC_PORT")
    add("-I", "--dapr-internal-grpc-port", type=int, metavar="PORT",
        help="where other sidecars send this app's invocations")  # fmt: skip
    add("-M", "--metrics-port", type=int, metavar="PORT",
        help="the admin endpoint's port (its /metrics)")  # fmt: skip
    add("-d", "--resources-path", "--components-path", action="append", type=Path, default=[],
        dest="resources_paths", metavar="DIR",
        help="a folder of Dapr resource files (repeatable; default $HOME/.dapr/components "
        "when it exists)")  # fmt: skip
    add("--log-as-json", action="store_true", help="log lines as JSON, as Dapr's")
    add("--enable-api-logging", action="store_true", help="a log line per API call")
    add("--app-max-concurrency", type=int, metavar="N", help="requests sent to the app at once")
    add("--enable-app-health-check", action="store_true")
    add("--app-health-check-path", metavar="PATH", help="default /healthz")
    add("--app-health-probe-interval", type=int, metavar="SECONDS")
    add("--app-health-probe-timeout", type=int, metavar="MS")
    add("--app-health-threshold", type=int, metavar="N")
    add("-u", "--unix-domain-socket", type=Path, metavar="DIR")
    run.add_argument("app_command", nargs="*", metavar="-- COMMAND",
                     help="the app to run beside mecha, after --")  # fmt: skip


def run_flags(args: argparse.Namespace) -> RunFlags:
    return RunFlags(
        config=args.config, app_id=args.app_id, app_port=args.app_port,
        app_protocol=args.app_protocol, app_channel_address=args.app_channel_address,
        dapr_http_port=args.dapr_http_port, dapr_grpc_port=args.dapr_grpc_port,
        dapr_internal_grpc_port=args.dapr_internal_grpc_port, metrics_port=args.metrics_port,
        resources_paths=tuple(args.resources_paths), enable_api_logging=args.enable_api_logging,
        app_max_concurrency=args.app_max_concurrency,
        enable_app_health_check=args.enable_app_health_check,
        app_health_check_path=args.app_health_check_path,
        app_health_probe_interval=args.app_health_probe_interval,
        app_health_probe_timeout=args.app_health_probe_timeout,
        app_health_threshold=args.app_health_threshold,
        unix_domain_socket=args.unix_domain_socket, command=tuple(args.app_command),
    )  # fmt: skip


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=LOG_LEVELS[level], handlers=[handler])


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with Dapr's field names."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "type": "log", "scope": record.name,
            "msg": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# -- mecha list / mecha stop ------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser("list", help="the mecha runs on this machine")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.add_argument("--registry", default=None, help=argparse.SUPPRESS)
    stop = commands.add_parser("stop", help="stop the mecha runs of an app id (and their apps)")
    stop.add_argument("-a", "--app-id", action="append", required=True, dest="app_ids")
    stop.add_argument("--registry", default=None, help=argparse.SUPPRESS)


def list_runs(args: argparse.Namespace) -> int:
    try:
        found = Registry(args.registry or default_path()).instances()
    except RegistryError as error:
        print(f"mecha: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps([_entry(instance) for instance in found], indent=2))
        return 0
    rows = [("APP ID", "HTTP PORT", "GRPC PORT", "APP PORT", "COMMAND", "AGE", "PID")]
    rows += [(i.app_id, str(i.http_port), str(i.grpc_port), str(i.app_port or ""), i.command,
              _age(i.started), str(i.pid)) for i in found]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


def stop_runs(args: argparse.Namespace) -> int:
    registry = Registry(args.registry or default_path())
    status = 0
    for app_id in args.app_ids:
        try:
            found = registry.instances(app_id)
        except RegistryError as error:
            print(f"mecha: {error}", file=sys.stderr)
            return 1
        if not found:
            print(f"mecha: no app with id {app_id!r} runs on this machine", file=sys.stderr)
            status = 1
        for instance in found:
            try:
                os.kill(instance.pid, signal.SIGTERM)
            except OSError as error:
                print(f"mecha: cannot stop {app_id} (pid {instance.pid}): {error}",
                      file=sys.stderr)  # fmt: skip
                status = 1
                continue
            print(f"app stopped successfully: {app_id}")
    return status


def _entry(instance: Instance) -> dict[str, Any]:
    return {"appId": instance.app_id, "httpPort": instance.http_port,
            "grpcPort": instance.grpc_port, "appPort": instance.app_port,
            "command": instance.command, "age": _age(instance.started),
            "created": time.strftime("%Y-%m-%d %H:%M.%S", time.localtime(instance.started)),
            "pid": instance.pid, "admin": instance.admin,
            "internal": instance.internal_address}  # fmt: skip


def _age(started: float) -> str:
    seconds = int(time.time() - started)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

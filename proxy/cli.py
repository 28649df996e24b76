"""The `mecha` command: run a config, or validate one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import resources
from pathlib import Path

import uvloop

from proxy.config.parse import load_config
from proxy.config.reader import ConfigError
from proxy.listener import BindError
from proxy.server import Server

LOG_LEVELS = ("debug", "info", "warning", "error")


def default_config_path() -> Path:
    """The embedded default config (no external service needed)."""
    return Path(str(resources.files("configs").joinpath("default.yaml")))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mecha", description="A sidecar: service-mesh proxy and application runtime."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run mecha on a config file")
    run.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="config file (default: the embedded configs/default.yaml)",
    )
    run.add_argument("-l", "--log-level", choices=LOG_LEVELS, default="info")
    validate = commands.add_parser("validate", help="check a config file and exit")
    validate.add_argument("-c", "--config", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        return validate(args.config)
    return run(args.config or default_config_path(), args.log_level)


def validate(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as error:
        _report(path, error)
        return 1
    print(f"{path}: ok ({len(config.listeners)} listeners, {len(config.clusters)} clusters)")
    return 0


def run(path: Path, log_level: str) -> int:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(path)
    except ConfigError as error:
        _report(path, error)
        return 1
    server = Server(config, source=str(path))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(server.run())
    except BindError as error:
        print(f"mecha: {error}", file=sys.stderr)
        return 1
    return 0


def _report(path: Path, error: ConfigError) -> None:
    print(f"mecha: {path}: invalid config", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

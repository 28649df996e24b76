"""The `mecha` command: run a config, or validate one."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from importlib import metadata, resources
from pathlib import Path
from typing import TypeVar

import uvloop

from protocols.grpc import dapr_messages
from proxy import dapr_cli
from proxy.accesslog import AccessLogError
from proxy.app_process import RunInfo, serve_with_app
from proxy.config.parse import load_config
from proxy.config.reader import ConfigError
from proxy.dapr_run import Built, RunFlags, build_config
from proxy.listener import BindError
from proxy.server import Server
from runtime.local_registry import default_path
from runtime.runtime import RuntimeStartError

log = logging.getLogger("mecha")
T = TypeVar("T")


def default_config_path() -> Path:
    """The embedded default config (no external service needed)."""
    return Path(str(resources.files("configs").joinpath("default.yaml")))


DISTRIBUTION = "mecha-sidecar"
"""The name mecha is published and installed under (`mecha` on PyPI is another project's)."""


def version() -> str:
    """The installed distribution's version (pyproject.toml's, for an editable install)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mecha", description="A sidecar: service-mesh proxy and application runtime."
    )
    parser.add_argument("-V", "--version", action="version", version=f"mecha {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run mecha on a config file")
    run.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="a mecha config file (default: the embedded configs/default.yaml), or a Dapr "
        "Configuration file, applied to the embedded default",
    )
    run.add_argument("-l", "--log-level", choices=dapr_cli.LOG_LEVELS, default="info")
    run.add_argument("--version", action="version", version=f"mecha {version()}")
    _process_arguments(run)
    dapr_cli.add_run_flags(run)
    validate = commands.add_parser("validate", help="check a config file and exit")
    validate.add_argument("-c", "--config", type=Path, required=True)
    validate.add_argument("--strict", action="store_true",
                          help="refuse what mecha would read past and warn about (unknown "
                          "kinds and keys in Dapr resource files)")  # fmt: skip
    _iptables_parser(commands)
    dapr_cli.add_commands(commands)
    twemproxy = commands.add_parser(
        "twemproxy", help="print the mecha config equivalent to a twemproxy nutcracker.yml"
    )
    twemproxy.add_argument("file", type=Path, help="a nutcracker.yml")
    return parser


def _process_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="N worker processes sharing the listeners (SO_REUSEPORT) under "
                     "a supervisor that serves the admin endpoint (default 1)")  # fmt: skip
    run.add_argument("--hot-restart-from", type=Path, default=None, metavar="SOCKET",
                     help="take the listening sockets over from the mecha serving SOCKET, "
                     "then make it drain and exit")  # fmt: skip
    run.add_argument("--hot-restart-socket", type=Path, default=None, metavar="SOCKET",
                     help="where to hand the listening sockets over to a successor "
                     "(default: mecha/hot-restart-<admin port>.sock in $XDG_RUNTIME_DIR "
                     "or /tmp/mecha-<uid>; none when the admin port is 0)")  # fmt: skip
    run.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--worker-admin", default=None, help=argparse.SUPPRESS)
    run.add_argument("--worker-port", action="append", default=[], help=argparse.SUPPRESS)


def _iptables_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from proxy.iptables import parse_cidrs, parse_ports

    def checked(parse: Callable[[str], T]) -> Callable[[str], T]:
        def convert(text: str) -> T:
            try:
                return parse(text)
            except ValueError as exc:  # argparse would only name the function
                raise argparse.ArgumentTypeError(str(exc)) from None

        return convert

    def all_or(parse: Callable[[str], T]) -> Callable[[str], T | None]:
        return checked(lambda text: None if text.strip() == "*" else parse(text))

    ports, cidrs = all_or(parse_ports), all_or(parse_cidrs)
    port_list, cidr_list = checked(parse_ports), checked(parse_cidrs)

    parser = commands.add_parser(
        "iptables",
        help="print (or --apply) the nat rules that redirect TCP to mecha",
        description="Print the iptables nat rules that send outbound TCP to the outbound "
        "listener and inbound TCP to the inbound listener (read the original destination "
        "with the original_dst listener filter); --apply runs them, --remove undoes them.",
    )
    parser.add_argument("--outbound-port", type=int, default=15001, metavar="PORT")
    parser.add_argument("--inbound-port", type=int, default=15006, metavar="PORT")
    parser.add_argument("--uid", action="append", default=[], metavar="UID",
                        help="mecha's user id or name; its connections are not redirected "
                        "(repeatable; required unless outbound is off)")  # fmt: skip
    parser.add_argument("--gid", action="append", default=[], metavar="GID",
                        help="a group id or name whose connections are not redirected")  # fmt: skip
    parser.add_argument("--inbound-ports", type=ports, default=None, metavar="PORTS",
                        help="comma-separated ports to redirect inbound; * (default) for all, "
                        "'' for no inbound redirection")  # fmt: skip
    parser.add_argument("--exclude-inbound-ports", type=port_list, default=(), metavar="PORTS")
    parser.add_argument("--exclude-outbound-ports", type=port_list, default=(), metavar="PORTS")
    parser.add_argument("--outbound-cidrs", type=cidrs, default=None, metavar="CIDRS",
                        help="destinations to redirect outbound; * (default) for all, "
                        "'' for no outbound redirection")  # fmt: skip
    parser.add_argument("--exclude-outbound-cidrs", type=cidr_list, default=(), metavar="CIDRS")
    parser.add_argument("--ipv6", action="store_true", help="also ip6tables rules")
    parser.add_argument("--remove", action="store_true", help="the commands that undo the rules")
    parser.add_argument("--apply", action="store_true", help="run the commands instead of "
                        "printing them (needs root, iptables and ip6tables)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dapr_messages.use_bare_packages()  # before the runtime gRPC filter imports them
    if args.command == "validate":
        return validate(args.config, args.strict)
    if args.command == "iptables":
        return iptables(args)
    if args.command == "twemproxy":
        return twemproxy(args.file)
    if args.command == "list":
        return dapr_cli.list_runs(args)
    if args.command == "stop":
        return dapr_cli.stop_runs(args)
    return run(args)


def validate(path: Path, strict: bool = False) -> int:
    """The same check `mecha run` makes before it starts anything."""
    try:
        config = load_config(path)
    except ConfigError as error:
        _report(path, error)
        return 1
    if strict and config.warnings:
        _report(path, ConfigError(config.warnings))
        return 1
    for warning in config.warnings:
        print(f"mecha: {path}: warning: {warning}", file=sys.stderr)
    print(f"{path}: ok ({len(config.listeners)} listeners, {len(config.clusters)} clusters)")
    return 0


def twemproxy(path: Path) -> int:
    """Print the mecha config that serves a nutcracker.yml's Redis pools (keys where they are)."""
    from filters.network.redis_proxy import twemproxy as converter

    try:
        config, notes = converter.convert(path.read_text())
    except (OSError, converter.TwemproxyError) as error:
        print(f"mecha: {path}: {error}", file=sys.stderr)
        return 1
    print(converter.render(config, notes, str(path)), end="")
    return 0


def iptables(args: argparse.Namespace) -> int:
    from proxy import iptables as rules

    if args.remove:
        if not args.apply:
            print(rules.script(rules.remove_commands(args.ipv6)), end="")
            return 0
        return _failed(rules.remove(args.ipv6))
    spec = rules.Interception(
        outbound_port=args.outbound_port, inbound_port=args.inbound_port,
        uids=tuple(args.uid), gids=tuple(args.gid), inbound_ports=args.inbound_ports,
        exclude_inbound_ports=args.exclude_inbound_ports,
        exclude_outbound_ports=args.exclude_outbound_ports, outbound_cidrs=args.outbound_cidrs,
        exclude_outbound_cidrs=args.exclude_outbound_cidrs, ipv6=args.ipv6,
    )  # fmt: skip
    if spec.outbound and not spec.uids and not spec.gids:
        print("mecha: iptables: --uid (or --gid) is required: mecha's own connections must "
              "not be redirected back to it", file=sys.stderr)  # fmt: skip
        return 2
    if not args.apply:
        print(rules.script(rules.install_commands(spec)), end="")
        return 0
    return _failed(rules.apply(spec))


def _failed(errors: list[str]) -> int:
    for error in errors:
        print(f"mecha: iptables: {error}", file=sys.stderr)
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    from proxy import hot_restart, workers

    dapr_cli.setup_logging(args.log_level, args.log_as_json)
    flags = dapr_cli.run_flags(args)
    dapr_style = flags.dapr_style(os.environ)
    path: Path = args.config or default_config_path()
    try:
        if dapr_style:
            built = _build(flags)
            config, path = built.config, Path(built.source)
        else:
            config = load_config(path)
    except ConfigError as error:
        _report(path if not dapr_style or args.config else "command line", error)
        return 1
    for warning in config.warnings:
        logging.getLogger("mecha.config").warning("%s", warning)
    if args.worker is None and args.workers != 1:
        if dapr_style:
            print("mecha: --workers does not combine with Dapr's flags", file=sys.stderr)
            return 2
        return workers.supervise(path, config, args)
    server: Server | None = None
    try:
        takeover = None
        if args.worker is not None:
            config = workers.worker_config(config, args.worker, args.worker_port)
            handover_path = None
        else:
            handover_path = args.hot_restart_socket or hot_restart.default_socket_path(config)
            if args.hot_restart_from is not None:
                takeover = hot_restart.Takeover.connect(args.hot_restart_from)
        server = Server(config, source=str(path))
        if dapr_style:
            server.reloader.load = lambda _: _build(flags).config
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            if args.worker is not None:
                share = (args.worker, args.worker_port)
                runner.run(workers.serve_worker(server, args.worker_admin, *share))
            elif dapr_style:
                info = _run_info(_build(flags), flags)
                return runner.run(serve_with_app(server, handover_path, takeover, info))
            else:
                runner.run(hot_restart.serve(server, handover_path, takeover))
    except (BindError, AccessLogError, hot_restart.HotRestartError, RuntimeStartError) as error:
        print(f"mecha: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if server is not None and server.live.is_set():
            raise  # a fault while serving is a bug: its traceback says where
        # Any other start-up failure is one line too; -l debug has the traceback.
        log.debug("start-up failed", exc_info=error)
        print(f"mecha: start-up failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


def _build(flags: RunFlags) -> Built:
    return build_config(flags, os.environ, Path.home(), default_config_path(), default_path())


def _run_info(built: Built, flags: RunFlags) -> RunInfo:
    runtime = built.config.runtime
    assert runtime is not None, "Dapr's flags always make a runtime"
    return RunInfo(
        app_id=runtime.app_id, app_port=runtime.app_port, app_protocol=runtime.app_protocol,
        app_host=runtime.app_host, command=flags.command, listeners=built.listeners,
        registry=built.registry,
    )  # fmt: skip


def _report(path: Path | str, error: ConfigError) -> None:
    print(f"mecha: {path}: invalid config", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

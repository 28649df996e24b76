"""`mecha run` with Dapr's flags: flags, Dapr's environment variables and files -> a config.

`build_config` is a function of its inputs only (the flags, an environment mapping, the
home directory and the files they name), so the CLI parses arguments and calls it, and the
unit tests call it the same way. Precedence is Dapr's: a flag, else its environment
variable (`APP_ID`, `APP_PORT`, `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `DAPR_API_TOKEN`,
`APP_API_TOKEN`), else the base config: the embedded default, or the mecha config given
with `-c`. `-c` / `--config` naming a Dapr `kind: Configuration` file means what it means
to `dapr run`: the Configuration is applied on the embedded default.

Like `dapr run`, a run with an app (`--app-id` or a command) takes free ports for the APIs
and the admin it is not given (the embedded default's fixed ports would make a second app
on the machine fail), and reads `$HOME/.dapr/components` and `$HOME/.dapr/config.yaml` when
no resources path or Configuration is given and they exist. Every problem names the flag,
the variable, or the file and key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.config.loader import load_document, parse_yaml, read_source
from proxy.config.model import Config
from proxy.config.parse import parse_config
from proxy.config.reader import ConfigError, Problem
from proxy.dapr_configuration import apply_configuration, is_dapr_configuration

DAPR_VARIABLES = ("APP_ID", "APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_API_TOKEN")
APP_PROTOCOLS = ("http", "grpc", "https", "grpcs", "h2c")
SUPPORTED_APP_PROTOCOLS = ("http", "grpc", "h2c")
API_FILTERS = {"http": "runtime_api", "grpc": "runtime_grpc"}
INTERNAL_LISTENER = "runtime-internal"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class RunFlags:
    """`dapr run`'s flags as given (None: not given)."""

    config: Path | None = None
    app_id: str | None = None
    app_port: int | None = None
    app_protocol: str | None = None
    app_channel_address: str | None = None
    dapr_http_port: int | None = None
    dapr_grpc_port: int | None = None
    dapr_internal_grpc_port: int | None = None
    metrics_port: int | None = None
    resources_paths: tuple[Path, ...] = ()
    enable_api_logging: bool = False
    app_max_concurrency: int | None = None
    enable_app_health_check: bool = False
    app_health_check_path: str | None = None
    app_health_probe_interval: int | None = None
    """Seconds, as Dapr counts it."""
    app_health_probe_timeout: int | None = None
    """Milliseconds, as Dapr counts it."""
    app_health_threshold: int | None = None
    unix_domain_socket: Path | None = None
    command: tuple[str, ...] = ()

    def dapr_style(self, environ: Mapping[str, str]) -> bool:
        """Whether any of Dapr's flags or variables is given: without, `mecha run` serves its
        config file as it is."""
        given = any(getattr(self, field.name) not in (None, False, ())
                    for field in dataclasses.fields(self) if field.name != "config")  # fmt: skip
        return given or any(environ.get(name) for name in DAPR_VARIABLES)

    def runs_app(self, environ: Mapping[str, str]) -> bool:
        """A Dapr-style run: an app id or a command; free ports for what is not given."""
        return bool(self.app_id or environ.get("APP_ID") or self.command)


@dataclass(frozen=True, slots=True)
class Built:
    config: Config
    source: str
    """What the config was made from, for messages ("the embedded default", a path)."""
    registry: str | None
    """The local registry file this run joins (None: none)."""
    listeners: dict[str, str]
    """"http", "grpc", "internal" -> the listener that serves it, to tell the app its port."""


def build_config(flags: RunFlags, environ: Mapping[str, str], home: Path, default: Path,
                 registry: str | None = None) -> Built:  # fmt: skip
    """The config `mecha run` serves; ConfigError naming each flag, variable, file and key
    that is wrong. `default` is the embedded default config, `registry` the default registry
    file of this machine (used when the run has an app)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    base_path, dapr_files = _base(flags, home, default)
    document = load_document(base_path, environ)
    if not isinstance(document, dict):
        raise ConfigError([Problem("", f"{base_path}: the config must be a mapping")])
    document = copy.deepcopy(document)
    embedded = base_path == default
    runtime = document.setdefault("runtime", {})
    if not isinstance(runtime, dict):
        raise ConfigError([Problem("runtime", f"{base_path}: expected a mapping")])
    app = flags.runs_app(environ)
    _app_settings(runtime, flags, environ, problems)
    _tokens(runtime, environ)
    names = _listeners(document, flags, environ, problems, fresh_ports=app and embedded)
    _resources(runtime, flags, home, embedded, problems)
    if app and registry is not None:
        runtime.setdefault("invoke", {}).setdefault("registry", registry)
    for path in dapr_files:
        apply_configuration(document, path, problems, warnings)
    if problems:
        raise ConfigError(problems)
    config = parse_config(document, base_path.resolve().parent)
    digest = hashlib.sha256(read_source(base_path)).hexdigest()
    config = dataclasses.replace(
        config, warnings=(*config.warnings, *warnings), source_digest=digest
    )
    found = config.runtime.invoke_registry if config.runtime is not None else None
    return Built(config, str(base_path), found if app else None, names)


def _base(flags: RunFlags, home: Path, default: Path) -> tuple[Path, list[Path]]:
    """The mecha config to start from and the Dapr Configuration files to apply."""
    given = flags.config
    if given is None:
        dapr_default = home / ".dapr" / "config.yaml"
        return default, [dapr_default] if _is_configuration(dapr_default) else []
    text = read_source(given)  # ConfigError naming the file when it cannot be read
    document = parse_yaml(text.decode("utf-8", "replace"), str(given))
    if is_dapr_configuration(document):
        return default, [given]
    return given, []


def _is_configuration(path: Path) -> bool:
    try:
        return is_dapr_configuration(parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    except (OSError, ConfigError, UnicodeDecodeError):
        return False


# -- the app ----------------------------------------------------------------------------------


def _app_settings(runtime: dict[str, Any], flags: RunFlags, environ: Mapping[str, str],
                  problems: list[Problem]) -> None:  # fmt: skip
    app_id = flags.app_id or environ.get("APP_ID")
    if app_id is not None:
        if not app_id or "." in app_id:
            where = "--app-id" if flags.app_id else "APP_ID"
            problems.append(Problem(where, f"{app_id!r}: an app id is not empty and has no dots"))
        runtime["app_id"] = app_id
    port = _port(flags.app_port, "--app-port", environ, "APP_PORT", problems)
    if port:
        runtime["app_port"] = port
        runtime["wait_for_app"] = True
    if flags.app_protocol is not None:
        runtime["app_protocol"] = _app_protocol(flags.app_protocol, problems)
    if flags.app_channel_address is not None:
        runtime["app_host"] = flags.app_channel_address
    if flags.app_max_concurrency is not None and flags.app_max_concurrency > 0:
        runtime["app_max_concurrency"] = flags.app_max_concurrency
    health = _app_health(flags, problems)
    if health is not None:
        runtime["app_health"] = health


def _app_protocol(value: str, problems: list[Problem]) -> str:
    if value not in APP_PROTOCOLS:
        problems.append(Problem("--app-protocol", f"{value!r}: expected one of "
                                f"{', '.join(APP_PROTOCOLS)}"))  # fmt: skip
    elif value not in SUPPORTED_APP_PROTOCOLS:
        supported = ", ".join(SUPPORTED_APP_PROTOCOLS)
        problems.append(Problem("--app-protocol", f"{value!r}: mecha does not call apps over "
                                f"TLS yet (supported: {supported})"))  # fmt: skip
    return value


def _app_health(flags: RunFlags, problems: list[Problem]) -> dict[str, Any] | None:
    probes = (flags.app_health_check_path, flags.app_health_probe_interval,
              flags.app_health_probe_timeout, flags.app_health_threshold)  # fmt: skip
    if not flags.enable_app_health_check:
        if any(value is not None for value in probes):
            why = "the app-health flags need --enable-app-health-check"
            problems.append(Problem("--enable-app-health-check", why))
        return None
    health: dict[str, Any] = {"path": flags.app_health_check_path or "/healthz"}
    for flag, key, value, unit in (
        ("--app-health-probe-interval", "interval", flags.app_health_probe_interval, "s"),
        ("--app-health-probe-timeout", "timeout", flags.app_health_probe_timeout, "ms"),
        ("--app-health-threshold", "threshold", flags.app_health_threshold, ""),
    ):
        if value is None:
            continue
        if value <= 0:
            problems.append(Problem(flag, f"{value}: expected a positive number"))
        health[key] = f"{value}{unit}" if unit else value
    return health


def _tokens(runtime: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Dapr's tokens: the app must send DAPR_API_TOKEN; mecha sends the app APP_API_TOKEN."""
    if environ.get("DAPR_API_TOKEN"):
        runtime["api_token"] = environ["DAPR_API_TOKEN"]
    if environ.get("APP_API_TOKEN"):
        runtime["app_token"] = environ["APP_API_TOKEN"]


# -- listeners --------------------------------------------------------------------------------


def _listeners(document: dict[str, Any], flags: RunFlags, environ: Mapping[str, str],
               problems: list[Problem], fresh_ports: bool) -> dict[str, str]:  # fmt: skip
    """Ports from flags and variables; the names of the listeners that serve each API."""
    names: dict[str, str] = {}
    if flags.unix_domain_socket is not None:
        problems.append(Problem("--unix-domain-socket", "mecha's API listeners are TCP only: "
                                "use --dapr-http-port and --dapr-grpc-port"))  # fmt: skip
    listeners = document.setdefault("listeners", [])
    if not isinstance(listeners, list):
        return names  # parse_config names it
    ports = {
        "http": _port(flags.dapr_http_port, "--dapr-http-port", environ, "DAPR_HTTP_PORT",
                      problems),
        "grpc": _port(flags.dapr_grpc_port, "--dapr-grpc-port", environ, "DAPR_GRPC_PORT",
                      problems),
    }  # fmt: skip
    for api, filter_name in API_FILTERS.items():
        port = ports[api] if ports[api] is not None else (0 if fresh_ports else None)
        found = [item for item in listeners if _serves(item, filter_name)]
        if not found:
            found = [{"name": f"runtime-{api}", "filters": [{"name": filter_name}]}]
            listeners.append(found[0])
            port = 0 if port is None else port
        names[api] = str(found[0].get("name", ""))
        for listener in found:
            if port is not None:
                listener["address"] = _with_port(listener.get("address"), port)
            if flags.enable_api_logging:
                _api_logging(listener, filter_name)
    metrics = _port(flags.metrics_port, "--metrics-port", {}, "", problems)
    admin = document.get("admin")
    if (fresh_ports or metrics is not None) and admin is not False:
        admin = document["admin"] = admin if isinstance(admin, dict) else {}
        admin["address"] = _with_port(admin.get("address"), metrics or 0)
    internal = _port(flags.dapr_internal_grpc_port, "--dapr-internal-grpc-port", {}, "", problems)
    if fresh_ports or internal is not None:
        _internal_listener(listeners, internal or 0)
        names["internal"] = INTERNAL_LISTENER
    return names


def _internal_listener(listeners: list[Any], port: int) -> None:
    """Where other sidecars send invocations of this app (Dapr's internal gRPC port)."""
    for listener in listeners:
        if isinstance(listener, dict) and listener.get("name") == INTERNAL_LISTENER:
            listener["address"] = _with_port(listener.get("address"), port)
            return
    listeners.append({
        "name": INTERNAL_LISTENER,
        "address": f"{LOOPBACK}:{port}",
        "filters": [{"name": "runtime_api", "config": {"internal": True}}],
    })  # fmt: skip


def _serves(listener: Any, filter_name: str) -> bool:
    if not isinstance(listener, dict) or listener.get("name") == INTERNAL_LISTENER:
        return False
    filters = listener.get("filters")
    return isinstance(filters, list) and any(
        isinstance(item, dict) and item.get("name") == filter_name for item in filters
    )


def _api_logging(listener: dict[str, Any], filter_name: str) -> None:
    """Dapr's --enable-api-logging: one line per API call, to mecha's output."""
    for item in listener.get("filters", []):
        if isinstance(item, dict) and item.get("name") == filter_name:
            config = item.setdefault("config", {})
            if isinstance(config, dict):
                config.setdefault("access_log", "stderr")


def _with_port(address: Any, port: int) -> str:
    host = LOOPBACK
    if isinstance(address, str) and ":" in address:
        host = address.rpartition(":")[0]
    return f"{host}:{port}"


def _port(flag: int | None, flag_name: str, environ: Mapping[str, str], variable: str,
          problems: list[Problem]) -> int | None:  # fmt: skip
    """A port from its flag, else its environment variable; None: neither (Dapr's -1 too)."""
    if flag is not None:
        if flag < 0:
            return None
        if flag > 65535:
            problems.append(Problem(flag_name, f"{flag}: expected a port (0-65535)"))
            return None
        return flag
    text = environ.get(variable, "").strip() if variable else ""
    if not text:
        return None
    if not text.isdigit() or int(text) > 65535:
        problems.append(Problem(variable, f"{text!r}: expected a port (0-65535)"))
        return None
    return int(text)


# -- resources --------------------------------------------------------------------------------


def _resources(runtime: dict[str, Any], flags: RunFlags, home: Path, embedded: bool,
               problems: list[Problem]) -> None:  # fmt: skip
    """--resources-path (repeatable), else Dapr's default folder when it exists. On the
    embedded default they replace its in-memory components, as a Dapr user expects: the
    folder is the whole set."""
    paths = list(flags.resources_paths)
    if not paths:
        default = home / ".dapr" / "components"
        paths = [default] if default.is_dir() else []
    problems.extend(Problem("--resources-path", f"{path} is not a directory")
                    for path in flags.resources_paths if not path.is_dir())  # fmt: skip
    if not paths:
        return
    if embedded:
        runtime["components"] = []
    existing = runtime.get("components_path")
    listed = existing if isinstance(existing, list) else [existing] if existing else []
    runtime["components_path"] = [*listed, *(str(path.resolve()) for path in paths)]

"""Dapr's flags, variables and files -> mecha's config (proxy/dapr_run.py), and what is
refused, with the flag, the variable or the file and key named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import default_config_path
from proxy.config.model import Config
from proxy.config.reader import ConfigError
from proxy.dapr_run import Built, RunFlags, build_config
from runtime.access_control import AccessControl

REGISTRY = "/run/mecha/registry.db"
COMPONENT = {
    "apiVersion": "dapr.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "orders"},
    "spec": {"type": "state.in-memory", "version": "v1"},
}


def build(flags: RunFlags, home: Path, **environ: str) -> Built:
    return build_config(flags, environ, home, default_config_path(), REGISTRY)


def problems(flags: RunFlags, home: Path, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        build(flags, home, **environ)
    return [str(problem) for problem in raised.value.problems]


def listener(config: Config, name: str) -> str:
    return next(str(li.address) for li in config.listeners if li.name == name)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def dapr_configuration(path: Path, spec: dict[str, Any]) -> Path:
    return write(path, {"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
                        "metadata": {"name": "appconfig"}, "spec": spec})  # fmt: skip


def runtime_of(built: Built) -> Any:
    assert built.config.runtime is not None
    return built.config.runtime


def test_no_flag_and_no_variable_is_not_a_dapr_run() -> None:
    assert not RunFlags().dapr_style({})
    assert not RunFlags(config=Path("x.yaml")).dapr_style({"HOME": "/root"})
    assert RunFlags(app_port=8080).dapr_style({})
    assert RunFlags().dapr_style({"DAPR_HTTP_PORT": "3600"})


def test_an_app_id_gets_free_ports_a_registry_and_an_internal_listener(tmp_path: Path) -> None:
    built = build(RunFlags(app_id="orders", app_port=8080), tmp_path)
    runtime = runtime_of(built)
    assert (runtime.app_id, runtime.app_port, runtime.wait_for_app) == ("orders", 8080, True)
    for name in ("runtime-http", "runtime-grpc", "runtime-internal"):
        assert listener(built.config, name) == "127.0.0.1:0"
    assert built.config.admin is not None and built.config.admin.address.port == 0
    assert built.registry == REGISTRY == runtime.invoke_registry
    assert built.listeners == {"http": "runtime-http", "grpc": "runtime-grpc",
                               "internal": "runtime-internal"}  # fmt: skip


def test_flags_beat_variables_and_variables_beat_the_default(tmp_path: Path) -> None:
    environ = {"APP_ID": "env-app", "APP_PORT": "7000", "DAPR_HTTP_PORT": "3600",
               "DAPR_GRPC_PORT": "50101", "DAPR_API_TOKEN": "t1",
               "APP_API_TOKEN": "t2"}  # fmt: skip
    built = build(RunFlags(dapr_grpc_port=50201), tmp_path, **environ)
    runtime = runtime_of(built)
    assert (runtime.app_id, runtime.app_port) == ("env-app", 7000)
    assert (runtime.api_token, runtime.app_token) == ("t1", "t2")
    assert listener(built.config, "runtime-http") == "127.0.0.1:3600"
    assert listener(built.config, "runtime-grpc") == "127.0.0.1:50201"


def test_ports_without_an_app_keep_the_default_admin(tmp_path: Path) -> None:
    built = build(RunFlags(dapr_http_port=3601), tmp_path)
    assert listener(built.config, "runtime-http") == "127.0.0.1:3601"
    assert listener(built.config, "runtime-grpc") == "127.0.0.1:50001"
    assert built.config.admin is not None and built.config.admin.address.port == 15000
    assert built.registry is None


def test_app_settings(tmp_path: Path) -> None:
    flags = RunFlags(app_id="a", app_port=9000, app_protocol="h2c", app_channel_address="10.0.0.5",
                     app_max_concurrency=4, enable_app_health_check=True,
                     app_health_check_path="/ready", app_health_probe_interval=2,
                     app_health_probe_timeout=300, app_health_threshold=5,
                     metrics_port=9090)  # fmt: skip
    built = build(flags, tmp_path)
    runtime = runtime_of(built)
    assert (runtime.app_protocol, runtime.app_host, runtime.app_max_concurrency) == (
        "h2c", "10.0.0.5", 4)  # fmt: skip
    health = runtime.app_health
    assert (health.path, health.interval, health.timeout, health.threshold) == (
        "/ready", 2.0, 0.3, 5)  # fmt: skip
    assert built.config.admin is not None and built.config.admin.address.port == 9090


def test_api_logging_logs_each_api_call(tmp_path: Path) -> None:
    built = build(RunFlags(app_id="a", enable_api_logging=True), tmp_path)
    document = built.config.document
    api = [li for li in document["listeners"] if li["name"] in ("runtime-http", "runtime-grpc")]
    assert [li["filters"][0]["config"]["access_log"] for li in api] == ["stderr", "stderr"]


def test_resources_paths_replace_the_embedded_components(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    write(first / "orders.yaml", COMPONENT)
    write(second / "cart.yaml", {**COMPONENT, "metadata": {"name": "cart"}})
    built = build(RunFlags(app_id="a", resources_paths=(first, second)), tmp_path)
    assert [c.name for c in runtime_of(built).components] == ["orders", "cart"]


def test_daprs_default_folders_are_read_when_they_exist(tmp_path: Path) -> None:
    folder = tmp_path / ".dapr" / "components"
    folder.mkdir(parents=True)
    write(folder / "orders.yaml", COMPONENT)
    scopes = [{"storeName": "s", "defaultAccess": "deny"}]
    dapr_configuration(tmp_path / ".dapr" / "config.yaml", {"secrets": {"scopes": scopes}})
    runtime = runtime_of(build(RunFlags(app_id="a"), tmp_path))
    assert [c.name for c in runtime.components] == ["orders"]
    assert not runtime.secret_allowed("s", "anything")


def test_a_mecha_config_is_kept_and_its_api_ports_overridden(tmp_path: Path) -> None:
    config = write(tmp_path / "mecha.yaml", {
        "admin": {"address": "127.0.0.1:15123"},
        "listeners": [{"name": "api", "address": "127.0.0.2:3500",
                       "filters": [{"name": "runtime_api"}]}],
        "runtime": {"app_id": "file-app"},
    })  # fmt: skip
    built = build(RunFlags(config=config, dapr_http_port=3700, app_port=5000), tmp_path)
    assert listener(built.config, "api") == "127.0.0.2:3700"
    assert listener(built.config, "runtime-grpc") == "127.0.0.1:0"  # added: the flags need it
    assert runtime_of(built).app_id == "file-app"
    assert built.config.admin is not None and built.config.admin.address.port == 15123


def test_a_dapr_configuration_given_with_c_applies_to_the_embedded_default(tmp_path: Path) -> None:
    path = dapr_configuration(tmp_path / "config.yaml", {
        "tracing": {"samplingRate": "1"},
        "metric": {"enabled": True},
        "nameResolution": {"component": "sqlite", "configuration": {"connectionString": "nr.db"}},
        "secrets": {"scopes": [{"storeName": "vault", "defaultAccess": "deny",
                                "allowedSecrets": ["db"]}]},
        "accessControl": {"defaultAction": "deny", "policies": [
            {"appId": "checkout", "defaultAction": "deny",
             "operations": [{"name": "/orders/*", "httpVerb": ["POST"], "action": "allow"}]}]},
        "api": {"allowed": [{"name": "state", "version": "v1.0", "protocol": "HTTP"}],
                "denied": [{"name": "invoke", "version": "v1"}]},
        "someFutureKey": {},
    })  # fmt: skip
    built = build(RunFlags(config=path, app_id="orders"), tmp_path)
    runtime = runtime_of(built)
    assert built.registry == "nr.db"
    assert runtime.secret_allowed("vault", "db") and not runtime.secret_allowed("vault", "other")
    assert runtime.secret_allowed("another-store", "x")
    control = runtime.access_control
    assert isinstance(control, AccessControl)
    assert control.allows("checkout", "/orders/1", "POST")
    assert not control.allows("checkout", "/orders/1", "GET")
    assert not control.allows("unknown", "/orders/1", "POST")
    api = runtime.api_access
    assert api.allows("http", "state", "v1.0") and not api.allows("http", "publish", "v1.0")
    assert api.allows("grpc", "publish", "v1") and not api.allows("grpc", "invoke", "v1")
    warned = [str(w) for w in built.config.warnings]
    assert any(f"{path}: spec.tracing: tracing is not done by mecha" in w for w in warned)
    assert any(f"{path}: spec.someFutureKey: unknown key" in w for w in warned)


def test_policies_mecha_cannot_enforce_are_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = dapr_configuration(tmp_path / "config.yaml", {
        "mtls": {"enabled": True},
        "appHttpPipeline": {"handlers": [{"name": "oauth", "type": "middleware.http.oauth2"}]},
        "nameResolution": {"component": "consul"},
        "secrets": {"scopes": [{"storeName": "s", "defaultAccess": "maybe"}]},
    })  # fmt: skip
    found = problems(RunFlags(config=path), tmp_path)
    assert any(p.startswith(f"{path}: spec.mtls: mTLS between sidecars") for p in found)
    assert any(p.startswith(f"{path}: spec.appHttpPipeline: middleware") for p in found)
    assert any(p.startswith(f"{path}: spec.nameResolution.component: 'consul'") for p in found)
    assert any(p.startswith(f"{path}: spec.secrets.scopes[0].defaultAccess: 'maybe'")
               for p in found)  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        (RunFlags(app_port=70000), {}, "--app-port: 70000: expected a port"),
        (RunFlags(app_id="a"), {"APP_PORT": "eighty"}, "APP_PORT: 'eighty': expected a port"),
        (RunFlags(), {"DAPR_HTTP_PORT": "-3"}, "DAPR_HTTP_PORT: '-3': expected a port"),
        (RunFlags(dapr_grpc_port=65536), {}, "--dapr-grpc-port: 65536: expected a port"),
        (RunFlags(app_id="my.app"), {}, "--app-id: 'my.app': an app id is not empty and has no"),
        (RunFlags(app_protocol="https"), {}, "--app-protocol: 'https': mecha does not call apps"),
        (RunFlags(app_protocol="smtp"), {}, "--app-protocol: 'smtp': expected one of"),
        (RunFlags(unix_domain_socket=Path("/tmp")), {}, "--unix-domain-socket: mecha's API"),
        (RunFlags(app_health_threshold=3), {}, "--enable-app-health-check: the app-health flags"),
        (RunFlags(enable_app_health_check=True, app_health_probe_interval=0), {},
         "--app-health-probe-interval: 0: expected a positive number"),
        (RunFlags(resources_paths=(Path("/nonexistent/components"),)), {},
         "--resources-path: /nonexistent/components is not a directory"),
    ],
)  # fmt: skip
def test_bad_flags_and_variables_are_named(flags: RunFlags, environ: dict[str, str],
                                           expected: str, tmp_path: Path) -> None:  # fmt: skip
    assert any(problem.startswith(expected) for problem in problems(flags, tmp_path, **environ))


def test_a_bad_resource_file_is_named_with_its_key(tmp_path: Path) -> None:
    folder = tmp_path / "components"
    folder.mkdir()
    write(folder / "bad.yaml", {**COMPONENT, "spec": {"type": "state.nonexistent"}})
    found = problems(RunFlags(app_id="a", resources_paths=(folder,)), tmp_path)
    assert any(f"{folder / 'bad.yaml'}[0].spec.type: unknown component type" in p for p in found)


def test_an_unreadable_config_is_named(tmp_path: Path) -> None:
    found = problems(RunFlags(config=tmp_path / "missing.yaml", app_id="a"), tmp_path)
    assert any(f"cannot read {tmp_path / 'missing.yaml'}" in p for p in found)


def ratelimit(name: str, rate: str) -> dict[str, Any]:
    return {"apiVersion": "dapr.io/v1alpha1", "kind": "Component", "metadata": {"name": name},
            "spec": {"type": "middleware.http.ratelimit", "version": "v1",
                     "metadata": [{"name": "maxRequestsPerSecond", "value": rate}]}}  # fmt: skip


def test_an_http_pipeline_puts_mechas_filter_before_the_api(tmp_path: Path) -> None:
    folder = tmp_path / "components"
    folder.mkdir()
    write(folder / "limit.yaml", ratelimit("limit", "10"))
    path = dapr_configuration(tmp_path / "config.yaml", {"httpPipeline": {"handlers": [
        {"name": "limit", "type": "middleware.http.ratelimit"}]}})  # fmt: skip
    built = build(RunFlags(config=path, app_id="a", resources_paths=(folder,)), tmp_path)
    http = next(li for li in built.config.document["listeners"] if li["name"] == "runtime-http")
    assert http["filters"][0]["config"]["http_filters"] == [{"name": "local_ratelimit", "config": {
        "max_tokens": 10, "tokens_per_fill": 10, "fill_interval": "1s"}}]  # fmt: skip
    internal = [li for li in built.config.document["listeners"] if li["name"] == "runtime-internal"]
    assert "http_filters" not in internal[0]["filters"][0]["config"]
    assert [c.name for c in runtime_of(built).components] == []  # a middleware is no component


def test_middleware_mecha_has_no_filter_for_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "components"
    folder.mkdir()
    write(folder / "limit.yaml", ratelimit("limit", "fast"))
    oauth = {**ratelimit("oauth", "1"), "spec": {"type": "middleware.http.oauth2"}}
    write(folder / "oauth.yaml", oauth)
    handlers = [{"name": "limit"}, {"name": "oauth"}, {"name": "nowhere"}]
    path = dapr_configuration(tmp_path / "config.yaml", {"httpPipeline": {"handlers": handlers}})
    found = problems(RunFlags(config=path, app_id="a", resources_paths=(folder,)), tmp_path)
    assert (
        f"{folder / 'limit.yaml'}: spec.metadata.maxRequestsPerSecond: 'fast': expected"
        " a whole number of at least 1" in found
    )
    assert any(p.startswith(f"{path}: spec.httpPipeline.handlers[1]: middleware.http.oauth2")
               for p in found)  # fmt: skip
    assert (
        f"{path}: spec.httpPipeline.handlers[2].name: 'nowhere': no middleware component "
        "of that name in the resources paths" in found
    )

"""The deployment examples under deploy/ parse, and say what mecha accepts."""

from __future__ import annotations

import configparser
import contextlib
import io
import ipaddress
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main
from proxy.config.model import Config
from proxy.config.parse import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
ADMIN_PORT = 15000
HEALTH_PORT = 15021


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            objects[document["kind"]] = document
    return objects


def pod_spec() -> dict[str, Any]:
    return dict(manifests()["Deployment"]["spec"]["template"]["spec"])


def container(spec: dict[str, Any], name: str, section: str = "containers") -> dict[str, Any]:
    return next(c for c in spec[section] if c["name"] == name)


def sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    return container(spec, "mecha", "initContainers")


def test_kinds() -> None:
    objects = manifests()
    assert set(objects) == {"ConfigMap", "Deployment"}
    assert objects["Deployment"]["apiVersion"] == "apps/v1"
    assert objects["ConfigMap"]["apiVersion"] == "v1"


def sidecar_config(tmp_path: Path) -> Config:
    path = tmp_path / "mecha.yaml"
    path.write_text(manifests()["ConfigMap"]["data"]["mecha.yaml"])
    return load_config(path, environ={})


def test_the_configmap_holds_a_valid_config(tmp_path: Path) -> None:
    config = sidecar_config(tmp_path)
    assert config.admin is not None and config.admin.address.port == ADMIN_PORT
    ports = {listener.name: listener.address.port for listener in config.listeners}
    assert ports["outbound"] == 15001 and ports["inbound"] == 15006


SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_keeps_the_admin_on_loopback(path: Path) -> None:
    config = load_config(path, environ={})
    assert config.admin is not None
    assert ipaddress.ip_address(config.admin.address.host).is_loopback
    assert config.admin.allow_mutations_from == ()


def test_the_sidecar_admin_is_on_loopback_and_probes_use_the_health_listener(
    tmp_path: Path,
) -> None:
    config = sidecar_config(tmp_path)
    assert config.admin is not None and config.admin.allow_mutations_from == ()
    assert ipaddress.ip_address(config.admin.address.host).is_loopback
    assert config.health is not None
    assert (config.health.address.host, config.health.address.port) == ("0.0.0.0", HEALTH_PORT)
    mecha = sidecar(pod_spec())
    exposed = {port["containerPort"] for port in mecha["ports"]}
    assert exposed == {HEALTH_PORT}  # the admin port is not declared to the pod network


def test_the_sidecar_mounts_the_configmap_and_runs_it() -> None:
    spec = pod_spec()
    mecha = sidecar(spec)
    mount = next(m for m in mecha["volumeMounts"] if m["name"] == "mecha-config")
    volume = next(v for v in spec["volumes"] if v["name"] == "mecha-config")
    assert volume["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    assert mecha["command"][:3] == ["mecha", "run", "-c"]
    config_path = Path(mecha["command"][3])
    assert config_path.parent == Path(mount["mountPath"])
    assert config_path.name in manifests()["ConfigMap"]["data"]


def probe_port(mecha: dict[str, Any], port: int | str) -> int:
    """A probe's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in mecha["ports"] if p["name"] == port))


def test_probes_ask_the_health_listener() -> None:
    mecha = sidecar(pod_spec())
    ready, live = mecha["readinessProbe"]["httpGet"], mecha["livenessProbe"]["httpGet"]
    assert (ready["path"], probe_port(mecha, ready["port"])) == ("/healthz/ready", HEALTH_PORT)
    assert (live["path"], probe_port(mecha, live["port"])) == ("/healthz/live", HEALTH_PORT)


def test_the_init_container_applies_rules_mecha_iptables_accepts() -> None:
    spec = pod_spec()
    init = container(spec, "mecha-init", "initContainers")
    argv = [*init["command"], *init["args"]]
    assert argv[:2] == ["mecha", "iptables"] and "--apply" in argv
    assert "NET_ADMIN" in init["securityContext"]["capabilities"]["add"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([a for a in argv[1:] if a != "--apply"]) == 0  # print instead of apply
    rules = printed.getvalue()
    proxy_uid = sidecar(spec)["securityContext"]["runAsUser"]
    assert f"--uid-owner {proxy_uid} -j RETURN" in rules
    assert f"--dport {HEALTH_PORT} -j RETURN" in rules  # the kubelet's probes are not redirected
    assert f"--dport {ADMIN_PORT} -j RETURN" not in rules  # the admin is not reachable


def test_the_grace_period_outlasts_the_drain(tmp_path: Path) -> None:
    drain = sidecar_config(tmp_path).drain_timeout
    assert pod_spec()["terminationGracePeriodSeconds"] > drain


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / "mecha.service")
    return parser


def test_systemd_unit_runs_validates_and_reloads() -> None:
    service = unit()["Service"]
    start = shlex.split(service["ExecStart"])
    assert Path(start[0]).name == "mecha" and start[1:3] == ["run", "-c"]
    assert shlex.split(service["ExecStartPre"])[1:] == ["validate", "-c", start[3]]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Type"] in ("simple", "exec", "notify")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_stops_after_the_drain_and_is_hardened(tmp_path: Path) -> None:
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    default_drain = load_config(_minimal(tmp_path), environ={}).drain_timeout
    assert float(service["TimeoutStopSec"]) > default_drain
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["User"] != "root"


def _minimal(tmp_path: Path) -> Path:
    path = tmp_path / "minimal.yaml"
    path.write_text("listeners: []\nclusters: []\n")
    return path


def test_mecha_is_a_native_sidecar_started_after_the_rules_and_before_the_app() -> None:
    spec = pod_spec()
    assert [c["name"] for c in spec["initContainers"]] == ["mecha-init", "mecha"]
    assert sidecar(spec)["restartPolicy"] == "Always"  # runs beside the app, stops after it
    assert "restartPolicy" not in container(spec, "mecha-init", "initContainers")
    assert [c["name"] for c in spec["containers"]] == ["app"]


STATEFUL = ("state", "pubsub", "lock", "sequencer", "configuration")


def test_replicas_share_their_components(tmp_path: Path) -> None:
    """More than one replica: no building block may keep its data in one pod's memory."""
    assert manifests()["Deployment"]["spec"]["replicas"] > 1
    runtime = sidecar_config(tmp_path).runtime
    assert runtime is not None and runtime.components
    for component in runtime.components:
        if component.block in STATEFUL:
            assert not component.type.endswith(".in-memory"), component.name


def dockerfile_stages() -> dict[str, list[str]]:
    """Each stage of the Dockerfile by name: its instructions, continuation lines joined."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = stages.setdefault(line.split()[-1], [])
        current.append(line)
    return stages


def test_the_image_is_small_and_non_root_and_iptables_is_in_the_init_image_only() -> None:
    stages = dockerfile_stages()
    final = list(stages)[-1]
    assert final == "mecha"  # `docker build .` makes the sidecar
    sidecar_lines = stages["mecha"]
    assert sidecar_lines[0].startswith("FROM python:3.12-slim ")
    user = next(line for line in sidecar_lines if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert user.split()[1] == "1337:1337"  # the uid the init container's rules exclude
    assert not any("iptables" in line for line in sidecar_lines + stages["build"])
    assert any("install" in line and "iptables" in line for line in stages["init"])
    assert any("--require-hashes" in line and "requirements/run.lock" in line
               for line in stages["build"])  # fmt: skip
    init = container(pod_spec(), "mecha-init", "initContainers")
    assert init["image"].startswith("mecha-init:")
    assert sidecar(pod_spec())["image"].startswith("mecha:")

"""Dapr resource files through the real `mecha` command: scopes honoured, what mecha reads
past said out loud, and `validate` refusing exactly what `run` refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from dapr.clients import DaprClient
from dapr.proto.runtime.v1 import dapr_pb2_grpc, metadata_pb2

from tests.support.dapr_http import DaprHttp
from tests.support.mecha import ROOT, mecha_argv, run_mecha, write_config

pytestmark = pytest.mark.e2e


def mecha(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mecha_argv(*args), capture_output=True, text=True, timeout=30,
                          cwd=ROOT)  # fmt: skip


def component(name: str, kind: str, scopes: list[str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "dapr.io/v1alpha1", "kind": "Component", "metadata": {"name": name},
        "spec": {"type": kind, "version": "v1", "metadata": []},
    }  # fmt: skip
    return {**document, "scopes": scopes} if scopes else document


def subscription(topic: str, scopes: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "dapr.io/v2alpha1", "kind": "Subscription", "metadata": {"name": topic},
        "spec": {"pubsubname": "pubsub", "topic": topic,
                 "routes": {"default": f"/{topic}"}, **spec},
    }  # fmt: skip
    return {**document, "scopes": scopes} if scopes else document


def runtime_config(app_id: str = "orders") -> dict[str, Any]:
    return {
        "listeners": [
            {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]},
            {"name": "grpc", "address": "127.0.0.1:0", "filters": [{"name": "runtime_grpc"}]},
        ],
        "runtime": {"app_id": app_id, "components_path": "components"},
    }


def write_resources(workdir: Path, *documents: dict[str, Any]) -> Path:
    folder = workdir / "components"
    folder.mkdir(exist_ok=True)
    path = folder / "resources.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def test_scopes_decide_what_this_app_loads_and_subscribes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_resources(
        tmp_path,
        component("pubsub", "pubsub.in-memory"),
        component("checkout-state", "state.in-memory", scopes=["checkout"]),
        component("orders-state", "state.in-memory", scopes=["orders", "checkout"]),
        subscription("checkout-only", scopes=["checkout"]),
        subscription("orders-too", scopes=["checkout", "orders"]),
        subscription("everyone"),
    )
    with run_mecha(tmp_path, runtime_config()) as proc:
        metadata = DaprHttp(proc.port("api")).get("/v1.0/metadata").json()
        assert {c["name"] for c in metadata["components"]} == {"pubsub", "orders-state"}
        assert {s["topic"] for s in metadata["subscriptions"]} == {"orders-too", "everyone"}
        monkeypatch.setenv("DAPR_HTTP_PORT", str(proc.port("api")))
        monkeypatch.setenv("DAPR_GRPC_PORT", str(proc.port("grpc")))
        with DaprClient() as client:  # the SDK sees the same runtime
            names = {c.name for c in client.get_metadata().registered_components}
            assert names == {"pubsub", "orders-state"}
        with grpc.insecure_channel(f"127.0.0.1:{proc.port('grpc')}") as channel:
            answer = dapr_pb2_grpc.DaprStub(channel).GetMetadata(
                metadata_pb2.GetMetadataRequest(), timeout=5
            )
            assert {s.topic for s in answer.subscriptions} == {"orders-too", "everyone"}
        assert "component 'checkout-state' is scoped to checkout: not loaded" in proc.logs()


CONFLICTS = [
    pytest.param(
        subscription("orders", pubsubname="nowhere"),
        "spec.pubsubname: pubsub 'nowhere' is not declared (pub/sub components: pubsub)",
        id="missing-pubsub",
    ),
    pytest.param(
        subscription("orders", routes={"rules": [{"match": "event.type in ['a']", "path": "/a"}]}),
        "spec.routes.rules[0].match: cannot read rule \"event.type in ['a']\" at \" in ['a']\"",
        id="rule-outside-the-cel-subset",
    ),
]


@pytest.mark.parametrize(("declared", "problem"), CONFLICTS)
def test_validate_refuses_what_run_refuses(
    tmp_path: Path, declared: dict[str, Any], problem: str
) -> None:
    file = write_resources(tmp_path, component("pubsub", "pubsub.in-memory"), declared)
    path = write_config(tmp_path, runtime_config(), admin_port=None)
    expected = f"  {file}[1].{problem}"
    checked = mecha("validate", "-c", str(path))
    ran = mecha("run", "-c", str(path))
    for result in (checked, ran):
        assert result.returncode == 1
        assert result.stderr.splitlines()[-2:] == [f"mecha: {path}: invalid config", expected]
        assert "Traceback" not in result.stderr
    assert "listening" not in ran.stderr  # refused before anything bound


def test_unknown_kinds_and_keys_are_warnings_and_errors_when_strict(tmp_path: Path) -> None:
    odd = component("pubsub", "pubsub.in-memory")
    odd["spec"]["retries"] = 3
    resiliency = {"apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", "spec": {}}
    file = write_resources(tmp_path, odd, resiliency)
    path = write_config(tmp_path, runtime_config(), admin_port=None)
    kind = f"{file}[1].kind: kind 'Resiliency' is not supported by mecha: ignored"
    key = f"{file}[0].spec.retries: unknown key"
    lenient = mecha("validate", "-c", str(path))
    assert lenient.returncode == 0 and lenient.stdout.startswith(f"{path}: ok")
    assert f"mecha: {path}: warning: {kind}" in lenient.stderr.splitlines()
    assert key in lenient.stderr
    strict = mecha("validate", "--strict", "-c", str(path))
    assert strict.returncode == 1
    assert f"  {kind}" in strict.stderr.splitlines() and key in strict.stderr
    with run_mecha(tmp_path, runtime_config()) as proc:
        assert f"WARNING mecha.config: {kind}" in proc.logs()


def test_known_resources_run_without_a_warning(tmp_path: Path) -> None:
    write_resources(tmp_path, component("pubsub", "pubsub.in-memory"), subscription("t"))
    with run_mecha(tmp_path, runtime_config()) as proc:
        assert DaprHttp(proc.port("api")).get("/v1.0/metadata").json()["subscriptions"]
        assert "WARNING" not in proc.logs()

"""Every way `mecha run` can fail to start ends the same: one line on stderr naming what
failed and where it is declared, exit status 1, no traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dapr_http import DaprHttp
from tests.support.mecha import ROOT, mecha_argv, run_mecha, tcp_proxy_config, write_config
from tests.support.net import free_port

pytestmark = pytest.mark.e2e


def runtime(*components: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {
        "listeners": [
            {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]}
        ],
        "runtime": {"app_id": "orders", "components": list(components), **settings},
    }


def secrets_in_a_dapr_file(workdir: Path) -> tuple[dict[str, Any], str]:
    folder = workdir / "components"
    folder.mkdir()
    missing = workdir / "secrets.json"
    (folder / "secrets.yaml").write_text(yaml.safe_dump({
        "apiVersion": "dapr.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "localsecretstore"},
        "spec": {"type": "secretstores.local.file", "version": "v1",
                 "metadata": [{"name": "secretsFile", "value": str(missing)}]},
    }))  # fmt: skip
    return runtime(components_path="components"), (
        f"mecha: component 'localsecretstore' (secretstores.local.file, "
        f"{folder / 'secrets.yaml'}[0]) failed to start: metadata 'secretsFile': cannot read "
        f"{missing}: No such file or directory"
    )


def sqlite_in_a_missing_folder(workdir: Path) -> tuple[dict[str, Any], str]:
    path = workdir / "no" / "such" / "state.db"
    store = {"name": "st", "type": "state.sqlite", "metadata": {"connectionString": str(path)}}
    return runtime(store), (
        "mecha: component 'st' (state.sqlite, runtime.components[0]) failed to start: "
        f"metadata 'connectionString': cannot open the database: sqlite {path}: "
        "unable to open database file"
    )


def redis_not_there(workdir: Path) -> tuple[dict[str, Any], str]:
    port = free_port()
    cache = {"name": "cache", "type": "state.redis", "metadata": {"redisHost": f"127.0.0.1:{port}"}}
    return runtime(cache), (
        "mecha: component 'cache' (state.redis, runtime.components[0]) failed to start: redis: "
    )


def nats_with_credentials_unreachable(workdir: Path) -> tuple[dict[str, Any], str]:
    url = f"nats://app:pw-4e1d@127.0.0.1:{free_port()}"
    bus = {"name": "bus", "type": "pubsub.jetstream",
           "metadata": {"natsURL": url, "connectTimeout": "1s"}}  # fmt: skip
    return runtime(bus), (  # the line names the server, never its password
        "mecha: component 'bus' (pubsub.jetstream, runtime.components[0]) failed to start: "
        f"jetstream: cannot connect to {url.replace('pw-4e1d', '[redacted]')}: "
    )


def bad_metadata(workdir: Path) -> tuple[dict[str, Any], str]:
    backoff = {"redeliverInitialInterval": "2s", "redeliverMaxInterval": "1s"}
    odd = {"name": "pubsub", "type": "pubsub.in-memory", "metadata": backoff}
    return runtime(odd), (
        "mecha: component 'pubsub' (pubsub.in-memory, runtime.components[0]) failed to start: "
        "metadata 'redeliverMaxInterval': less than redeliverInitialInterval"
    )


def unwritable_access_log(workdir: Path) -> tuple[dict[str, Any], str]:
    path = workdir / "no" / "such" / "access.log"
    config = tcp_proxy_config([6379], tcp_proxy={"access_log": str(path)})
    return config, f"mecha: cannot open access log {path}: No such file or directory"


def admin_port_taken(workdir: Path, taken: int) -> tuple[dict[str, Any], str]:
    config = {**tcp_proxy_config([6379]), "admin": {"address": f"127.0.0.1:{taken}"}}
    return config, f"mecha: cannot listen on 127.0.0.1:{taken} for admin: address already in use"


def listener_port_taken(workdir: Path, taken: int) -> tuple[dict[str, Any], str]:
    config = tcp_proxy_config([6379], listener={"address": f"127.0.0.1:{taken}"})
    return (
        config,
        f"mecha: cannot listen on 127.0.0.1:{taken} for listener 'tcp': address already in use",
    )


Case = Callable[[Path], tuple[dict[str, Any], str]]
CASES: dict[str, Case] = {
    "secrets-file-missing": secrets_in_a_dapr_file,
    "sqlite-folder-missing": sqlite_in_a_missing_folder,
    "redis-unreachable": redis_not_there,
    "nats-unreachable": nats_with_credentials_unreachable,
    "bad-metadata": bad_metadata,
    "access-log-unwritable": unwritable_access_log,
}
TAKEN: dict[str, Callable[[Path, int], tuple[dict[str, Any], str]]] = {
    "admin-port-taken": admin_port_taken,
    "listener-port-taken": listener_port_taken,
}


def failed_start(
    workdir: Path, config: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    path = write_config(workdir, config, admin_port=free_port())
    return subprocess.run(mecha_argv("run", "-c", str(path), *args), capture_output=True,
                          text=True, timeout=60, cwd=ROOT)  # fmt: skip


def assert_one_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    said = [
        line for line in result.stderr.splitlines() if line.startswith("mecha:") or "ERROR" in line
    ]
    assert len(said) == 1, result.stderr
    assert said[0].startswith(expected), said[0]


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_a_failed_start_is_one_line(tmp_path: Path, case: Case) -> None:
    config, expected = case(tmp_path)
    assert_one_line(failed_start(tmp_path, config), expected)


@pytest.mark.parametrize("case", TAKEN.values(), ids=list(TAKEN))
def test_a_port_taken_is_one_line(
    tmp_path: Path, case: Callable[[Path, int], tuple[dict[str, Any], str]]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config, expected = case(tmp_path, taken.getsockname()[1])
        assert_one_line(failed_start(tmp_path, config), expected)


def test_a_takeover_from_nobody_is_one_line(tmp_path: Path) -> None:
    nobody = tmp_path / "nobody.sock"
    result = failed_start(tmp_path, tcp_proxy_config([6379]), "--hot-restart-from", str(nobody))
    assert_one_line(result, f"mecha: cannot take over from {nobody}: ")


def test_a_worker_that_cannot_start_stops_the_supervisor_without_a_traceback(
    tmp_path: Path,
) -> None:
    config, expected = sqlite_in_a_missing_folder(tmp_path)
    result = failed_start(tmp_path, config, "--workers", "2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert expected in result.stderr.splitlines()


def test_ignore_errors_starts_without_the_component(tmp_path: Path) -> None:
    failing = {"name": "cache", "type": "state.redis", "ignore_errors": True,
               "metadata": {"redisHost": f"127.0.0.1:{free_port()}"}}  # fmt: skip
    config = runtime(failing, {"name": "statestore", "type": "state.in-memory"})
    with run_mecha(tmp_path, config) as proc:
        assert proc.get("/ready") == (200, b"LIVE\n")
        components = DaprHttp(proc.port("api")).get("/v1.0/metadata").json()["components"]
        assert [c["name"] for c in components] == ["statestore"]
        warned = [line for line in proc.logs().splitlines() if "WARNING" in line]
        assert any("component 'cache' (state.redis" in line and "ignored" in line
                   for line in warned), warned  # fmt: skip

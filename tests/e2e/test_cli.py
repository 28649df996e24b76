"""The `mecha` command as an operator uses it: validate, run, admin, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.dapr_http import DaprHttp
from tests.support.mecha import ROOT, mecha_argv, run_mecha, tcp_proxy_config, write_config
from tests.support.net import free_port, is_closed_by_peer, wait_for_port
from tests.support.peers import echo, tcp_server

pytestmark = pytest.mark.e2e

EXPECTED_METRICS = (
    "mecha_listener_downstream_cx_total",
    "mecha_listener_downstream_cx_active",
    "mecha_cluster_upstream_cx_connect_fail_total",
    "mecha_cluster_membership_healthy",
    "mecha_cluster_health_check_total",
    "process_resident_memory_bytes",
)
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def mecha(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mecha_argv(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_example_config_validates(path: Path) -> None:
    result = mecha("validate", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{path}: ok")


def test_validate_names_the_yaml_path_of_each_problem(tmp_path: Path) -> None:
    config = tcp_proxy_config([6379])
    config["listeners"][0]["filters"][0]["config"]["cluster"] = "x"
    config["listeners"][0]["address"] = "127.0.0.1:99999"
    path = write_config(tmp_path, config, admin_port=None)
    result = mecha("validate", "-c", str(path))
    assert result.returncode == 1
    assert "listeners[0].filters[0].config.cluster: unknown cluster 'x'" in result.stderr
    assert "listeners[0].address: port must be 0-65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_bad_config_without_starting(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"listeners": [{"name": "l", "address": "nowhere"}]}, None)
    result = mecha("run", "-c", str(path))
    assert result.returncode == 1
    assert "listeners[0].address: expected host:port" in result.stderr
    assert "listeners[0]: a listener needs exactly one of: filters, filter_chains" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_overrides_example_defaults(redis_port: int) -> None:
    listen, admin = free_port(), free_port()
    env = {"MECHA_LISTEN": f"127.0.0.1:{listen}", "MECHA_UPSTREAM": f"127.0.0.1:{redis_port}",
           "MECHA_ADMIN": f"127.0.0.1:{admin}"}  # fmt: skip
    process = subprocess.Popen(
        mecha_argv("run", "-c", "configs/tcp-proxy.yaml"), cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port(listen)
        ping = subprocess.run(
            ["redis-cli", "-p", str(listen), "ping"], capture_output=True, text=True
        )
        assert ping.stdout.strip() == "PONG"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"listener 'tcp' listening on 127.0.0.1:{listen}" in stderr.decode()


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tcp_proxy_config([6379], listener={"address": f"127.0.0.1:{port}"})
        path = write_config(tmp_path, config, admin_port=free_port())
        result = mecha("run", "-c", str(path))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "mecha:" in line]
    assert errors == [
        f"mecha: cannot listen on 127.0.0.1:{port} for listener 'tcp': address already in use"
    ]
    assert "Traceback" not in result.stderr


def test_default_config_serves_the_runtime_api(tmp_path: Path) -> None:
    admin, api_port = free_port(), free_port()
    env = {**os.environ, "MECHA_ADMIN": f"127.0.0.1:{admin}",
           "MECHA_HTTP_API": f"127.0.0.1:{api_port}"}  # fmt: skip
    process = subprocess.Popen(mecha_argv("run"), cwd=tmp_path, stderr=subprocess.PIPE, env=env)
    try:
        wait_for_port(api_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready") as response:
            assert response.read() == b"LIVE\n"
        api = DaprHttp(api_port)
        assert api.post("/v1.0/state/statestore", [{"key": "k", "value": [1, 2]}]).status == 204
        assert api.get("/v1.0/state/statestore/k").json() == [1, 2]
        names = {c["name"] for c in api.get("/v1.0/metadata").json()["components"]}
        assert {"statestore", "pubsub", "lockstore", "sequencer", "configstore"} <= names
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_admin_endpoints(tmp_path: Path, redis_port: int) -> None:
    with run_mecha(tmp_path, tcp_proxy_config([redis_port])) as proc:
        status, metrics = proc.get("/metrics")
        assert status == 200
        for name in EXPECTED_METRICS:
            assert name.encode() in metrics
        dump = proc.json("/config_dump")
        assert len(dump["version"]) == 12
        assert dump["config"]["clusters"][0]["name"] == "upstream"
        text = proc.get("/clusters")[1].decode()
        assert f"upstream::127.0.0.1:{redis_port}::health::healthy" in text
        assert proc.get("/nope")[0] == 404
        assert proc.json("/listeners")[0]["name"] == "tcp"


def test_sigterm_drains_open_connections_then_exits_zero(tmp_path: Path) -> None:
    with tcp_server(echo) as upstream, run_mecha(tmp_path, tcp_proxy_config([upstream])) as proc:
        port = proc.port("tcp")
        sock = socket.create_connection(("127.0.0.1", port))
        proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while proc.get("/ready")[0] != 503:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.sendall(b"still served")  # the open connection keeps working while draining
        assert sock.recv(64) == b"still served"
        sock.close()
        assert proc.wait(timeout=10) == 0
        assert "SIGTERM: draining" in proc.logs()


def test_drain_timeout_closes_what_is_left(tmp_path: Path) -> None:
    config = {**tcp_proxy_config([0]), "drain_timeout": "500ms"}
    with tcp_server(echo) as upstream:
        config["clusters"][0]["endpoints"] = [f"127.0.0.1:{upstream}"]
        with run_mecha(tmp_path, config) as proc:
            sock = socket.create_connection(("127.0.0.1", proc.port("tcp")))
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            started = time.monotonic()
            proc.signal(signal.SIGTERM)
            assert is_closed_by_peer(sock, timeout=5)
            assert proc.wait(timeout=10) == 0
            assert 0.4 < time.monotonic() - started < 5
            assert "drain timeout: closing 1 connections" in proc.logs()
            sock.close()


def test_config_dump_round_trips_as_yaml(tmp_path: Path, redis_port: int) -> None:
    with run_mecha(tmp_path, tcp_proxy_config([redis_port])) as proc:
        dumped = proc.json("/config_dump")["config"]
    path = tmp_path / "dumped.yaml"
    path.write_text(yaml.safe_dump(dumped))
    assert mecha("validate", "-c", str(path)).returncode == 0

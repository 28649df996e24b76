"""What the admin gives away and to whom, through the real `mecha` command: /config_dump
without secrets, mutations only from loopback (or allowed peers), and the read-only health
listener that probes use instead of the admin."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.mecha import Mecha, run_mecha, tcp_proxy_config
from tests.support.net import free_port, free_ports, local_address
from tests.support.peers import echo, tcp_server

pytestmark = pytest.mark.e2e

TOKEN = "tok-7c1f3b2a9e"
REDIS_PASSWORD = "redis-pw-5d8e"
DB_SECRET = "db-secret-91ab"


def request(host: str, port: int, method: str, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_config_dump_redacts_tokens_passwords_urls_and_resolved_secrets(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        **tcp_proxy_config([6379]),
        "runtime": {
            "app_id": "orders",
            "api_token": "${MECHA_TEST_TOKEN}",
            "components": [
                {"name": "vault", "type": "secretstores.local.env",
                 "metadata": {"prefix": "TEST_OPS_SECRET_"}},
                {"name": "cache", "type": "state.in-memory", "secret_store": "vault",
                 "metadata": {"password": {"secretKeyRef": {"name": "DB"}},
                              "upstream": f"redis://app:{REDIS_PASSWORD}@db:6379/0",
                              "note": "${TEST_OPS_SECRET_DB}"}},
            ],
        },
    }  # fmt: skip
    env = {"MECHA_TEST_TOKEN": TOKEN, "TEST_OPS_SECRET_DB": DB_SECRET}
    with run_mecha(tmp_path, config, env=env) as proc:
        status, body = proc.get("/config_dump")
    assert status == 200
    for secret in (TOKEN, REDIS_PASSWORD, DB_SECRET):
        assert secret.encode() not in body
    dumped = json.loads(body)["config"]["runtime"]
    assert dumped["api_token"] == "[redacted]"
    metadata = dumped["components"][1]["metadata"]
    assert metadata["upstream"] == "redis://app:[redacted]@db:6379/0"
    assert metadata["password"] == {"secretKeyRef": {"name": "DB"}}  # a name, not the secret
    assert metadata["note"] == "[redacted]"  # the value that secretKeyRef resolved to


def reload_from(proc: Mecha, host: str) -> int:
    return request(host, proc.admin_port, "POST", "/reload")[0]


@pytest.fixture
def off_loopback() -> str:
    address = local_address()
    if address is None:
        pytest.skip("this host has no address besides loopback")
    return address


def test_mutations_are_refused_off_loopback_unless_allowed(
    tmp_path: Path, off_loopback: str
) -> None:
    admin = free_port()
    config = {**tcp_proxy_config([6379]), "admin": {"address": f"0.0.0.0:{admin}"}}
    with run_mecha(tmp_path, config) as proc:
        assert reload_from(proc, off_loopback) == 403
        assert "admin: refused POST /reload from" in proc.logs()
        assert request(off_loopback, admin, "GET", "/ready")[0] == 200  # reading stays open
        assert reload_from(proc, "127.0.0.1") == 200
    allowed = {"address": f"0.0.0.0:{admin}", "allow_mutations_from": [f"{off_loopback}/32"]}
    with run_mecha(tmp_path, {**config, "admin": allowed}) as proc:
        assert reload_from(proc, off_loopback) == 200


def test_the_health_listener_answers_probes_and_nothing_else(tmp_path: Path) -> None:
    health, admin = free_ports(2)
    config = {**tcp_proxy_config([0]), "health": {"address": f"127.0.0.1:{health}"},
              "admin": {"address": f"127.0.0.1:{admin}"}, "drain_timeout": "10s"}  # fmt: skip
    with tcp_server(echo) as upstream:
        config["clusters"][0]["endpoints"] = [f"127.0.0.1:{upstream}"]
        with run_mecha(tmp_path, config) as proc:
            assert request("127.0.0.1", health, "GET", "/healthz/ready") == (200, b"LIVE\n")
            assert request("127.0.0.1", health, "GET", "/healthz/live") == (200, b"LIVE\n")
            for path in ("/config_dump", "/metrics", "/clusters", "/ready", "/"):
                assert request("127.0.0.1", health, "GET", path)[0] == 404, path
            assert request("127.0.0.1", health, "POST", "/reload")[0] == 404
            assert request("127.0.0.1", health, "POST", "/healthz/ready")[0] == 405
            held = socket.create_connection(("127.0.0.1", proc.port("tcp")))
            proc.signal(signal.SIGTERM)  # draining while `held` stays open
            deadline = time.monotonic() + 5
            while request("127.0.0.1", health, "GET", "/healthz/ready")[0] != 503:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert request("127.0.0.1", health, "GET", "/healthz/live")[0] == 200
            held.close()
            assert proc.wait() == 0

"""`mecha run --workers 2`: real worker processes on SO_REUSEPORT under a supervisor."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.mecha import ROOT, Mecha, mecha_argv, run_mecha, tcp_proxy_config
from tests.support.net import free_ports
from tests.support.peers import echo, echo_once, tcp_server

pytestmark = pytest.mark.integration

CONNECTIONS = 60


def workers(mecha: Mecha) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = mecha.json("/workers")
    return listed


def wait_until(condition: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met after {timeout}s")
        time.sleep(0.1)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_share_a_listener_sum_metrics_restart_and_stop(tmp_path: Path) -> None:
    with (
        tcp_server(echo) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream]), args=("--workers", "2")) as mecha,
    ):
        port = mecha.port("tcp")
        for i in range(CONNECTIONS):
            assert echo_once(port, b"ping %d" % i) == b"ping %d" % i

        # One admin for both: counters are summed across the workers.
        mecha.wait_metric("mecha_listener_downstream_cx_total", CONNECTIONS, listener="tcp")
        mecha.wait_metric("mecha_cluster_upstream_cx_total", CONNECTIONS, cluster="upstream")
        listed = workers(mecha)
        assert len(listed) == 2 and all(w["alive"] for w in listed)
        assert len({w["pid"] for w in listed}) == 2
        accepted = [w["downstream_cx"] for w in listed]
        assert sum(accepted) == CONNECTIONS and min(accepted) > 0, accepted

        # A worker that dies is started again, on the same port.
        killed = listed[1]["pid"]
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: (w := workers(mecha)[1])["restarts"] == 1 and w["alive"],
            what="worker 1 restarted",
        )
        wait_until(lambda: mecha.get("/ready")[0] == 200, what="ready again")
        assert "worker 1 exited with -9" in mecha.logs()
        for i in range(20):
            assert echo_once(port, b"again %d" % i) == b"again %d" % i

        # A changed file (watched, and SIGHUP forwarded) is reloaded by every worker, each
        # into its share (same port, same listeners).
        config = yaml.safe_load((tmp_path / "mecha.yaml").read_text())
        config["clusters"][0]["connect_timeout"] = "2s"
        (tmp_path / "mecha.yaml").write_text(yaml.safe_dump(config))
        mecha.signal(signal.SIGHUP)
        mecha.wait_metric("mecha_config_reload_total", 2, timeout=10, result="applied")
        assert all(w["alive"] for w in workers(mecha)) and mecha.port("tcp") == port
        for i in range(10):
            assert echo_once(port, b"reloaded %d" % i) == b"reloaded %d" % i

        # POST /reload on the supervisor's admin reloads every worker and answers each outcome.
        config["clusters"][0]["connect_timeout"] = "3s"
        (tmp_path / "mecha.yaml").write_text(yaml.safe_dump(config))
        status, outcomes = mecha.post("/reload")
        assert status == 200, outcomes
        assert sorted(o["worker"] for o in outcomes) == [0, 1]
        assert {o["outcome"]["result"] for o in outcomes} <= {"applied", "unchanged"}

        # SIGTERM stops the supervisor and every worker; all drain and exit 0.
        pids = [w["pid"] for w in workers(mecha)]
        mecha.signal(signal.SIGTERM)
        assert mecha.wait(timeout=25) == 0
        wait_until(lambda: not any(pid_exists(pid) for pid in pids), 5, "workers gone")


def runtime_and_proxy_config(upstream: int) -> dict[str, Any]:
    config = tcp_proxy_config([upstream])
    config["listeners"].append(
        {"name": "api", "address": "127.0.0.1:0", "filters": [{"name": "runtime_api"}]}
    )
    config["runtime"] = {
        "app_id": "workers-test",
        "components": [{"name": "statestore", "type": "state.in-memory"}],
    }
    return config


def save_state(port: int, value: int) -> None:
    body = json.dumps([{"key": "counter", "value": value}]).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1.0/state/statestore", data=body, method="POST",
        headers={"content-type": "application/json", "connection": "close"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 204


def read_state(port: int) -> Any:
    url = f"http://127.0.0.1:{port}/v1.0/state/statestore/counter"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_in_memory_runtime_is_pinned_to_worker_zero(tmp_path: Path) -> None:
    """Every runtime API connection reaches the one in-memory store (worker 0's), while
    the mesh listener is still spread over both workers."""
    with (
        tcp_server(echo) as upstream,
        run_mecha(tmp_path, runtime_and_proxy_config(upstream), args=("--workers", "2")) as m,
    ):
        api = m.port("api")
        for value in range(1, 21):
            save_state(api, value)
            assert read_state(api) == value  # a new connection each time
        for i in range(30):
            assert echo_once(m.port("tcp"), b"x%d" % i) == b"x%d" % i
        m.wait_metric("mecha_listener_downstream_cx_total", 40, listener="api")
        accepted = [w["downstream_cx"] for w in workers(m)]
        # worker 1 took only tcp connections; worker 0 all 40 API ones and its tcp share
        assert accepted[0] >= 40 and accepted[1] > 0 and sum(accepted) == 70, accepted


def test_workers_flag_is_checked(tmp_path: Path) -> None:
    config = tmp_path / "mecha.yaml"
    config.write_text("listeners: []\nclusters: []\n")
    done = subprocess.run(
        mecha_argv("run", "-c", str(config), "--workers", "0"),
        capture_output=True, cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert b"--workers must be at least 1" in done.stderr


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tcp_proxy_config([1], listener={"address": f"127.0.0.1:{port}"})
        path = tmp_path / "mecha.yaml"
        path.write_text(yaml.safe_dump(config))
        done = subprocess.run(
            mecha_argv("run", "-c", str(path), "--workers", "2"),
            capture_output=True, cwd=ROOT, timeout=40,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}".encode() in done.stderr
    assert b"a worker exited while starting" in done.stderr


def test_the_supervisor_serves_the_health_listener(tmp_path: Path) -> None:
    """Probes ask the supervisor, which is ready when every worker is; mutations stay on the
    admin, and on loopback."""
    health, admin = free_ports(2)
    config = {**tcp_proxy_config([1]), "health": {"address": f"127.0.0.1:{health}"},
              "admin": {"address": f"127.0.0.1:{admin}"}}  # fmt: skip
    with run_mecha(tmp_path, config, args=("--workers", "2")) as mecha:
        url = f"http://127.0.0.1:{health}/healthz/ready"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"LIVE\n"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{health}/workers", timeout=5)
        assert missing.value.code == 404
        missing.value.close()
        assert mecha.post("/reload")[0] == 200

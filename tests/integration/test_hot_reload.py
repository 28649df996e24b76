"""Hot reload of a running `mecha run`: SIGHUP and file changes, applied as a diff."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.dapr_http import DaprHttp
from tests.support.http_backend import http_backend
from tests.support.mecha import Mecha, run_mecha, tcp_proxy_config, write_config
from tests.support.net import free_port
from tests.support.peers import identify, tcp_server

pytestmark = pytest.mark.integration


class KeepAlive:
    """One HTTP/1.1 connection reused for several requests."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def get(self, path: str, close: bool = False) -> tuple[int, bytes]:
        extra = b"connection: close\r\n" if close else b""
        self.sock.sendall(b"GET %s HTTP/1.1\r\nhost: test\r\n%s\r\n" % (path.encode(), extra))
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(head.split(b" ", 2)[1]), body

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by mecha")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    client = KeepAlive(port)
    try:
        return client.get(path, close=True)
    finally:
        client.close()


def direct_listener(name: str, body: str, address: str = "127.0.0.1:0") -> dict[str, Any]:
    """An http listener answering every path with `body`, without an upstream."""
    route = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}
    manager = {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                   "routes": [route]}]}}  # fmt: skip
    return {"name": name, "address": address, "filters": [{"name": "http", "config": manager}]}


def direct_config(*listeners: dict[str, Any]) -> dict[str, Any]:
    return {"listeners": list(listeners), "clusters": []}


def rewrite(mecha: Mecha, config: dict[str, Any] | str) -> None:
    write_config(mecha.workdir, config, mecha.admin_port)


def rewrite_behind_the_watcher(mecha: Mecha, config: dict[str, Any]) -> None:
    """Same size and mtime as before: only SIGHUP can tell that the file changed."""
    path = mecha.workdir / "mecha.yaml"
    deadline = time.monotonic() + 5
    while mecha.json("/config_dump")["reload"]["watching"] != str(path):
        assert time.monotonic() < deadline, "mecha does not watch its config file"
        time.sleep(0.02)
    before = path.stat()
    rewrite(mecha, config)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def reloads(mecha: Mecha, result: str) -> float:
    return mecha.metric("mecha_config_reload_total", result=result)


def reload_with_sighup(mecha: Mecha, config: dict[str, Any] | str, result: str = "applied") -> None:
    before = reloads(mecha, result)
    rewrite(mecha, config)
    mecha.signal(signal.SIGHUP)
    mecha.wait_metric("mecha_config_reload_total", before + 1, result=result)


def test_sighup_applies_a_route_change_and_open_connections_keep_theirs(tmp_path: Path) -> None:
    with run_mecha(tmp_path, direct_config(direct_listener("web", "one"))) as mecha:
        port = mecha.port("web")
        old_version = mecha.json("/config_dump")["version"]
        established = KeepAlive(port)
        assert established.get("/") == (200, b"one")
        rewrite_behind_the_watcher(mecha, direct_config(direct_listener("web", "two")))
        mecha.signal(signal.SIGHUP)
        mecha.wait_metric("mecha_config_reload_total", 1, result="applied")
        assert get(port, "/") == (200, b"two")
        assert mecha.port("web") == port  # the same socket: never closed and rebound
        assert established.get("/") == (200, b"one")  # its filter chain stays
        dump = mecha.json("/config_dump")
        assert dump["version"] != old_version
        assert dump["reload"]["last"]["result"] == "applied"
        assert re.search(r"config reloaded \(SIGHUP\), version \w+: listeners: ~web", mecha.logs())
        established.close()


def test_the_admin_reloads_on_post_and_answers_the_outcome(tmp_path: Path) -> None:
    with run_mecha(tmp_path, direct_config(direct_listener("web", "one"))) as mecha:
        rewrite_behind_the_watcher(mecha, direct_config(direct_listener("web", "two")))
        status, outcome = mecha.post("/reload")
        assert (status, outcome["result"], outcome["trigger"]) == (200, "applied", "admin")
        assert outcome["summary"] == "listeners: ~web"
        assert get(mecha.port("web"), "/") == (200, b"two")
        assert mecha.get("/reload")[0] == 405
        rewrite(mecha, "listeners: 3\n")
        status, outcome = mecha.post("/reload")
        assert (status, outcome["result"]) == (400, "rejected")
        assert outcome["version"] == mecha.json("/config_dump")["version"]


def test_sighup_moves_tcp_proxy_to_a_changed_cluster(tmp_path: Path) -> None:
    with tcp_server(identify("A")) as a, tcp_server(identify("B")) as b:
        config = tcp_proxy_config([a])
        with run_mecha(tmp_path, config) as mecha:
            port = mecha.port("tcp")
            before = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert before.recv(1) == b"A"
            config["clusters"][0]["endpoints"] = [f"127.0.0.1:{b}"]
            reload_with_sighup(mecha, config)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as after:
                assert after.recv(1) == b"B"
            before.sendall(b"still here")  # the old cluster's connection keeps going
            assert before.recv(64) == b"still here"
            before.close()
            assert "clusters: ~upstream; rebuilt for changed clusters: tcp" in mecha.logs()


def test_a_changed_file_is_picked_up_without_a_signal(tmp_path: Path) -> None:
    with run_mecha(tmp_path, direct_config(direct_listener("web", "one"))) as mecha:
        rewrite(mecha, direct_config(direct_listener("web", "two")))
        mecha.wait_metric("mecha_config_reload_total", 1, timeout=5, result="applied")
        assert get(mecha.port("web"), "/") == (200, b"two")
        assert "config reloaded (file change)" in mecha.logs()


def test_a_broken_file_is_rejected_and_the_old_config_keeps_serving(tmp_path: Path) -> None:
    good = direct_config(direct_listener("web", "one"))
    with run_mecha(tmp_path, good) as mecha:
        version = mecha.json("/config_dump")["version"]
        broken = direct_config(direct_listener("web", "two", address="127.0.0.1:99999"))
        broken["listeners"][0]["filters"][0]["config"]["route_config"]["virtual_hosts"][0][
            "routes"][0]["direct_response"]["status"] = 999  # fmt: skip
        reload_with_sighup(mecha, broken, result="rejected")
        logs = mecha.logs()
        assert re.search(r"ERROR mecha.reload: config reload \(.+\) rejected", logs)
        assert "listeners[0].address: port must be 0-65535" in logs
        assert ".routes[0].direct_response.status:" in logs
        assert get(mecha.port("web"), "/") == (200, b"one")
        dump = mecha.json("/config_dump")
        assert dump["version"] == version
        assert dump["reload"]["last"]["problems"]
        (mecha.workdir / "mecha.yaml").write_text("listeners: [unclosed\n")
        mecha.signal(signal.SIGHUP)
        mecha.wait_metric("mecha_config_reload_total", 2, result="rejected")
        assert "invalid YAML" in mecha.logs()
        reload_with_sighup(mecha, "", result="rejected")  # a write caught half-way
        assert "mecha.yaml is empty" in mecha.logs()
        assert get(mecha.port("web"), "/") == (200, b"one")


def test_a_taken_port_rejects_the_whole_reload(tmp_path: Path) -> None:
    config = direct_config(direct_listener("web", "one"))
    with socket.socket() as taken, run_mecha(tmp_path, config) as mecha:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = f"127.0.0.1:{taken.getsockname()[1]}"
        config = direct_config(direct_listener("web", "two"), direct_listener("new", "x", blocked))
        reload_with_sighup(mecha, config, result="rejected")
        assert "address already in use" in mecha.logs()
        assert get(mecha.port("web"), "/") == (200, b"one")
        assert [entry["name"] for entry in mecha.json("/listeners")] == ["web"]


def test_listeners_are_added_and_removed_ones_drain(tmp_path: Path) -> None:
    web = direct_listener("web", "web")
    with run_mecha(tmp_path, direct_config(web)) as mecha:
        reload_with_sighup(mecha, direct_config(web, direct_listener("extra", "extra")))
        extra = mecha.port("extra")
        open_before = KeepAlive(extra)
        assert open_before.get("/") == (200, b"extra")
        reload_with_sighup(mecha, direct_config(web))
        assert [entry["name"] for entry in mecha.json("/listeners")] == ["web"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", extra), timeout=2).close()
        # Drained, not cut: the idle kept-alive connection is closed cleanly (FIN, no reset).
        assert open_before.sock.recv(1) == b""
        open_before.close()
        deadline = time.monotonic() + 5
        while mecha.json("/config_dump")["reload"]["draining_listeners"]:
            assert time.monotonic() < deadline, "the drained listener was not retired"
            time.sleep(0.05)
        assert "listeners: -extra" in mecha.logs()


def test_a_renamed_listener_takes_over_the_socket_without_refusing(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    port = int(address.rsplit(":", 1)[1])
    with run_mecha(tmp_path, direct_config(direct_listener("old", "old", address))) as mecha:
        refused = []
        stop = threading.Event()

        def knock() -> None:
            while not stop.is_set():
                try:
                    get(port, "/")
                except OSError as error:
                    refused.append(error)

        knocker = threading.Thread(target=knock)
        knocker.start()
        try:
            reload_with_sighup(mecha, direct_config(direct_listener("new", "new", address)))
            time.sleep(0.3)
        finally:
            stop.set()
            knocker.join()
        assert refused == []
        assert get(port, "/") == (200, b"new")


def runtime_config(*components: dict[str, Any]) -> dict[str, Any]:
    return {
        "listeners": [{"name": "api", "address": "127.0.0.1:0",
                       "filters": [{"name": "runtime_api"}]}],
        "clusters": [],
        "runtime": {"app_id": "shop", "components": list(components)},
    }  # fmt: skip


def test_runtime_components_are_added_recreated_and_removed(tmp_path: Path) -> None:
    store = {"name": "statestore", "type": "state.in-memory"}
    extra = {"name": "extra", "type": "state.in-memory"}
    with run_mecha(tmp_path, runtime_config(store)) as mecha:
        api = DaprHttp(mecha.port("api"))
        assert api.post("/v1.0/state/statestore", [{"key": "k", "value": "v1"}]).status == 204
        reload_with_sighup(mecha, runtime_config(store, extra))
        assert api.post("/v1.0/state/extra", [{"key": "k", "value": "x"}]).status == 204
        assert api.get("/v1.0/state/statestore/k").json() == "v1"  # unchanged: kept as it was
        changed = {**store, "metadata": {"keyPrefix": "name"}}
        reload_with_sighup(mecha, runtime_config(changed))
        assert api.get("/v1.0/state/statestore/k").status == 204  # a new, empty instance
        missing = api.get("/v1.0/state/extra/k")
        assert (missing.status, missing.error_code) == (400, "ERR_STATE_STORE_NOT_FOUND")
        assert "components: ~statestore -extra" in mecha.logs()


def test_reloads_under_wrk_load_fail_no_request(tmp_path: Path) -> None:
    with http_backend("blue") as blue, http_backend("green") as green:

        def routed_to(cluster: str) -> dict[str, Any]:
            route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
            manager = {"route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                           "routes": [route]}]}}  # fmt: skip
            return {
                "listeners": [{"name": "web", "address": "127.0.0.1:0",
                               "filters": [{"name": "http", "config": manager}]}],
                "clusters": [
                    {"name": "blue", "endpoints": [f"127.0.0.1:{blue.port}"]},
                    {"name": "green", "endpoints": [f"127.0.0.1:{green.port}"]},
                ],
            }  # fmt: skip

        with run_mecha(tmp_path, routed_to("blue")) as mecha:
            url = f"http://127.0.0.1:{mecha.port('web')}/"
            # Half the connections are kept alive (their chain stays), half are new per
            # request (they get whichever chain is in force).
            loads = [
                subprocess.Popen(["wrk", "-t1", "-c4", "-d3s", *extra, url],
                                 stdout=subprocess.PIPE, text=True)
                for extra in ([], ["-H", "Connection: close"])
            ]  # fmt: skip
            time.sleep(0.5)
            for cluster in ("green", "blue", "green"):
                reload_with_sighup(mecha, routed_to(cluster))
                time.sleep(0.5)
            outputs = [load.communicate(timeout=15)[0] for load in loads]
        for output in outputs:
            assert re.search(r"\d+ requests in", output), output
            assert "Socket errors" not in output, output
            assert "Non-2xx" not in output, output
        assert blue.count > 0 and green.count > 0

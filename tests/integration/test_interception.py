"""Transparent interception in network namespaces: `mecha iptables --apply`, original_dst.

Two namespaces joined by a veth pair: `app` (10.213.0.1) runs mecha as user `nobody` (the uid
the rules exclude) with the clients, `peer` (10.213.0.2 and .3) runs an HTTP server on each
address, a TCP echo server, redis-server, mosquitto and a msgpack-RPC server. Clients address
the peers' real addresses; the nat rules send their connections to mecha's outbound listener,
which reads the original destination, sniffs the protocol and forwards: HTTP through the
`http` filter to an `original_dst` cluster, Redis through `redis_proxy`, MQTT through
`mqtt_proxy`, msgpack-RPC through `rpc_proxy`, anything else through `tcp_proxy`.
Inbound connections from the peer to the app's address go through the inbound listener.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mecha import ROOT
from tests.support.netns import Netns, unsupported_reason, veth_pair

pytestmark = pytest.mark.integration

APP, WEB, API = "10.213.0.1", "10.213.0.2", "10.213.0.3"
NOBODY = "65534"
PYTHON = sys.executable


def sidecar_config() -> dict[str, Any]:
    def listener(name: str, port: int, cluster: str) -> dict[str, Any]:
        route = {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}
        routes = {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]}
        return {
            "name": name, "address": f"0.0.0.0:{port}",
            "listener_filters": [{"name": "original_dst"}, {"name": "protocol_sniffer"}],
            "listener_filters_timeout": "1s",
            "filter_chains": [
                {"name": "redis", "match": {"protocol": "redis", "destination_port": 6379},
                 "filters": [{"name": "redis_proxy", "config": {"cluster": "redis"}}]},
                {"name": "http", "match": {"protocol": ["http1", "http2"]},
                 "filters": [{"name": "http", "config": {"route_config": routes}}]},
                {"name": "mqtt", "match": {"protocol": "mqtt"},
                 "filters": [{"name": "mqtt_proxy", "config": {"cluster": cluster}}]},
                {"name": "rpc", "match": {"protocol": "msgpack_rpc"},
                 "filters": [{"name": "rpc_proxy", "config": {"codec": "msgpack_rpc", "routes": [
                     {"match": {"prefix": ""}, "cluster": cluster, "timeout": "5s"}]}}]},
                {"name": "tcp", "filters": [{"name": "tcp_proxy", "config": {"cluster": cluster}}]},
            ],
        }  # fmt: skip

    return {
        "admin": {"address": "127.0.0.1:15000"},
        "listeners": [listener("outbound", 15001, "passthrough"),
                      listener("inbound", 15006, "inbound")],
        "clusters": [
            {"name": "passthrough", "type": "original_dst", "connect_timeout": "2s"},
            {"name": "inbound", "type": "original_dst", "connect_timeout": "2s"},
            {"name": "redis", "lb_policy": "ketama", "endpoints": [f"{API}:6379"]},
        ],
    }  # fmt: skip


@dataclass
class Sidecar:
    app: Netns
    peer: Netns
    workdir: Path

    def curl(self, *args: str, namespace: Netns | None = None) -> str:
        done = (namespace or self.app).run(["curl", "-sS", "--max-time", "10", *args])
        return done.stdout.decode()

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = self.curl("http://127.0.0.1:15000/metrics")
        return {(sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}  # fmt: skip

    def metric(self, name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(value for (sample, got), value in self.metrics().items()
                   if sample == name and wanted <= got)  # fmt: skip

    def access_log(self) -> str:
        return (self.workdir / "mecha.stdout").read_text()

    def logs(self) -> str:
        return (self.workdir / "mecha.stderr").read_text()

    def tcp_exchange(self, host: str, port: int, payload: bytes) -> bytes:
        """Connect from the app namespace, send, half-close, return everything read."""
        script = (
            "import socket,sys\n"
            f"s = socket.create_connection(({host!r}, {port}), 5)\n"
            "chunks = []\n"
            "try:\n"  # a refused connection may be gone before we are done sending
            "    s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR)\n"
            "    while data := s.recv(65536): chunks.append(data)\n"
            "except OSError: pass\n"
            "sys.stdout.buffer.write(b''.join(chunks))\n"
        )
        return self.app.run([PYTHON, "-c", script], input=payload).stdout


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    reason = unsupported_reason()
    if reason is not None:
        pytest.skip(f"interception test: {reason}")
    workdir = Path(tempfile.mkdtemp(prefix="mecha-netns-"))
    workdir.chmod(0o755)  # mecha runs as nobody and reads its config from here
    try:
        with veth_pair("mecha", [f"{APP}/24"], [f"{WEB}/24", f"{API}/24"]) as (app, peer):
            _start_peers(app, peer, workdir)
            applied = app.run([PYTHON, "-m", "proxy", "iptables", "--uid", NOBODY, "--apply"],
                              check=False)  # fmt: skip
            assert applied.returncode == 0, applied.stderr.decode()
            config = workdir / "mecha.yaml"
            config.write_text(yaml.safe_dump(sidecar_config(), sort_keys=False))
            config.chmod(0o644)
            with (workdir / "mecha.stdout").open("wb") as out, \
                    (workdir / "mecha.stderr").open("wb") as err:  # fmt: skip
                argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        PYTHON, "-m", "proxy", "run", "-c", str(config), "-l", "debug"]  # fmt: skip
                mecha = app.start(argv, stdout=out, stderr=err, cwd=ROOT)
            sidecar = Sidecar(app, peer, workdir)
            try:
                app.wait_for_port("127.0.0.1", 15000)
            except TimeoutError:
                raise AssertionError(f"mecha did not start (exit {mecha.poll()}): "
                                     f"{sidecar.logs()}") from None  # fmt: skip
            yield sidecar
            assert mecha.poll() is None, f"mecha exited: {sidecar.logs()}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_peers(app: Netns, peer: Netns, workdir: Path) -> None:
    servers = PYTHON, "-m", "tests.support.tiny_servers"
    peer.start([*servers, "http", WEB, "8080", "web"], cwd=ROOT)
    peer.start([*servers, "http", API, "8081", "api"], cwd=ROOT)
    peer.start([*servers, "echo", WEB, "7000"], cwd=ROOT)
    peer.start([*servers, "rpc", API, "7100"], cwd=ROOT)
    mosquitto = workdir / "mosquitto.conf"
    mosquitto.write_text(f"listener 1883 {API}\nallow_anonymous true\npersistence false\n")
    mosquitto.chmod(0o644)
    peer.start(["mosquitto", "-c", str(mosquitto)])
    peer.start(["redis-server", "--bind", API, "--port", "6379", "--save", "", "--appendonly",
                "no", "--protected-mode", "no", "--dir", str(workdir)])  # fmt: skip
    app.start([*servers, "http", APP, "9090", "app"], cwd=ROOT)
    for host, port in ((WEB, 8080), (API, 8081), (WEB, 7000), (API, 6379), (API, 7100),
                       (API, 1883)):  # fmt: skip
        peer.wait_for_port(host, port)
    app.wait_for_port(APP, 9090)  # local traffic: not redirected


def test_http_to_original_destinations_goes_through_mecha(sidecar: Sidecar) -> None:
    assert sidecar.curl(f"http://{WEB}:8080/one") == f"web {WEB}:8080 /one\n"
    assert sidecar.curl(f"http://{API}:8081/two") == f"api {API}:8081 /two\n"
    # HTTP/2 from the client, HTTP/1.1 to the original destination.
    h2 = sidecar.curl("--http2-prior-knowledge", f"http://{API}:8081/h2")
    assert h2 == f"api {API}:8081 /h2\n"
    log = sidecar.access_log()
    for path, destination in (("/one", f"{WEB}:8080"), ("/two", f"{API}:8081"),
                              ("/h2", f"{API}:8081")):  # fmt: skip
        line = next(line for line in log.splitlines() if f'"GET {path} ' in line)
        assert f'"{destination}" route=all/0 cluster=passthrough' in line, line
    assert sidecar.metric("mecha_cluster_upstream_rq_total", cluster="passthrough") >= 3
    # One endpoint per original destination.
    clusters = json.loads(sidecar.curl("http://127.0.0.1:15000/clusters?format=json"))
    assert f"{WEB}:8080" in json.dumps(clusters) and f"{API}:8081" in json.dumps(clusters)


def test_redis_gets_the_redis_proxy(sidecar: Sidecar) -> None:
    redis = ["redis-cli", "-h", API, "-p", "6379"]
    assert sidecar.app.run([*redis, "SET", "intercepted", "yes"]).stdout.strip() == b"OK"
    assert sidecar.app.run([*redis, "GET", "intercepted"]).stdout.strip() == b"yes"
    assert sidecar.metric("mecha_redis_commands_total", listener="outbound", command="set") == 1
    assert sidecar.metric("mecha_redis_commands_total", listener="outbound", command="get") == 1


def test_mqtt_gets_the_mqtt_proxy(sidecar: Sidecar) -> None:
    publish = ["mosquitto_pub", "-h", API, "-p", "1883", "-q", "1", "-r", "-t", "intercepted",
               "-m", "via mecha"]  # fmt: skip
    sidecar.app.run(publish)
    accepted = {"listener": "outbound", "outcome": "accepted"}
    assert sidecar.metric("mecha_mqtt_connections_total", **accepted) >= 1
    # The retained message is at the broker: read it there, from the peer's side.
    receive = ["mosquitto_sub", "-h", API, "-p", "1883", "-t", "intercepted", "-C", "1", "-W", "5"]
    assert sidecar.peer.run(receive).stdout.strip() == b"via mecha"


def test_msgpack_rpc_gets_the_rpc_proxy(sidecar: Sidecar) -> None:
    script = (
        "import socket,msgpack\n"
        f"s = socket.create_connection(({API!r}, 7100), 5)\n"
        "s.sendall(msgpack.packb([0, 41, 'whoami', []]))\n"
        "print(msgpack.unpackb(s.recv(65536)))\n"
    )
    answer = sidecar.app.run([PYTHON, "-c", script]).stdout.decode().strip()
    assert answer == f"[1, 41, None, '{API}:7100 whoami']"
    assert sidecar.metric("mecha_rpc_calls_total", listener="outbound", method="whoami") == 1


def test_other_tcp_gets_the_tcp_proxy(sidecar: Sidecar) -> None:
    payload = b"\x00\x01 not a protocol mecha knows\n" * 100
    assert sidecar.tcp_exchange(WEB, 7000, payload) == payload
    assert f"upstream={WEB}:7000 cluster=passthrough" in sidecar.access_log()


def test_inbound_connections_reach_the_app_through_mecha(sidecar: Sidecar) -> None:
    assert sidecar.curl(f"http://{APP}:9090/in", namespace=sidecar.peer) == f"app {APP}:9090 /in\n"
    assert f'"{APP}:9090"' in sidecar.access_log()
    assert sidecar.metric("mecha_cluster_upstream_rq_total", cluster="inbound") >= 1


def test_a_connection_to_the_listener_itself_is_closed_not_looped(sidecar: Sidecar) -> None:
    before = sidecar.metric("mecha_listener_filter_events_total", event="original_dst_loop")
    assert sidecar.tcp_exchange(APP, 15001, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n") == b""
    after = sidecar.metric("mecha_listener_filter_events_total", event="original_dst_loop")
    assert after == before + 1
    assert "original_dst: no original destination" in sidecar.logs()
    # Still serving.
    assert sidecar.curl(f"http://{WEB}:8080/after") == f"web {WEB}:8080 /after\n"


def test_ipv6_interception_reads_ip6t_so_original_dst() -> None:
    reason = unsupported_reason() or _no_ip6tables_nat()
    if reason is not None:
        pytest.skip(f"interception test: {reason}")
    app_address, peer_address = "fd00:213::1", "fd00:213::2"
    workdir = Path(tempfile.mkdtemp(prefix="mecha-netns6-"))
    workdir.chmod(0o755)
    try:
        with veth_pair("mecha6", [f"{app_address}/64"], [f"{peer_address}/64"]) as (app, peer):
            _wait_for_dad(app, peer)
            peer.start([PYTHON, "-m", "tests.support.tiny_servers", "echo", peer_address, "7000"],
                       cwd=ROOT)  # fmt: skip
            peer.wait_for_port(peer_address, 7000)
            app.run([PYTHON, "-m", "proxy", "iptables", "--uid", NOBODY, "--ipv6",
                     "--inbound-ports", "", "--apply"])  # fmt: skip
            sidecar = Sidecar(app, peer, workdir)
            _start_mecha(sidecar, _ipv6_config())
            payload = b"over IPv6\n" * 10
            assert sidecar.tcp_exchange(peer_address, 7000, payload) == payload
            assert f"upstream=[{peer_address}]:7000 cluster=passthrough" in sidecar.access_log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ipv6_config() -> dict[str, Any]:
    return {
        "admin": {"address": "127.0.0.1:15000"},
        "listeners": [{
            "name": "outbound", "address": "[::]:15001",
            "listener_filters": [{"name": "original_dst"}],
            "filters": [{"name": "tcp_proxy", "config": {"cluster": "passthrough"}}],
        }],
        "clusters": [{"name": "passthrough", "type": "original_dst", "connect_timeout": "2s"}],
    }  # fmt: skip


def _start_mecha(sidecar: Sidecar, config: dict[str, Any]) -> None:
    path = sidecar.workdir / "mecha.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o644)
    with (sidecar.workdir / "mecha.stdout").open("wb") as out, \
            (sidecar.workdir / "mecha.stderr").open("wb") as err:  # fmt: skip
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                PYTHON, "-m", "proxy", "run", "-c", str(path), "-l", "debug"]  # fmt: skip
        sidecar.app.start(argv, stdout=out, stderr=err, cwd=ROOT)
    sidecar.app.wait_for_port("127.0.0.1", 15000)


def _no_ip6tables_nat() -> str | None:
    if shutil.which("ip6tables") is None:
        return "ip6tables is not installed"
    return None


def _wait_for_dad(*namespaces: Netns, timeout: float = 10.0) -> None:
    """IPv6 addresses cannot be bound until duplicate address detection is over."""
    deadline = time.monotonic() + timeout
    for namespace in namespaces:
        while namespace.run(["ip", "-6", "addr", "show", "tentative"]).stdout.strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"IPv6 addresses still tentative in {namespace.name}")
            time.sleep(0.1)


def test_iptables_apply_is_idempotent_and_remove_cleans_up() -> None:
    reason = unsupported_reason()
    if reason is not None:
        pytest.skip(f"interception test: {reason}")
    with veth_pair("mechaipt", ["10.214.0.1/24"], ["10.214.0.2/24"]) as (app, _):
        mecha = [PYTHON, "-m", "proxy", "iptables", "--uid", NOBODY, "--exclude-outbound-ports",
                 "22", "--apply"]  # fmt: skip
        for _attempt in range(2):
            done = app.run(mecha, check=False)
            assert done.returncode == 0, done.stderr.decode()
        rules = app.run(["iptables", "-t", "nat", "-S"]).stdout.decode()
        assert rules.count("-A OUTPUT -p tcp -j MECHA_OUTPUT") == 1, rules
        assert "-A MECHA_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules
        assert "--uid-owner 65534 -j RETURN" in rules
        removed = app.run([PYTHON, "-m", "proxy", "iptables", "--remove", "--apply"], check=False)
        assert removed.returncode == 0, removed.stderr.decode()
        assert "MECHA" not in app.run(["iptables", "-t", "nat", "-S"]).stdout.decode()
        # Removing again finds nothing to remove, which is not an error.
        again = app.run([PYTHON, "-m", "proxy", "iptables", "--remove", "--apply"], check=False)
        assert again.returncode == 0, again.stderr.decode()

"""redis_proxy in front of a real six-node Redis Cluster: slots, MOVED, resharding, failover."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests.support.mecha import Mecha, run_mecha
from tests.support.redis import ClusterNodes, redis_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[ClusterNodes]:
    with redis_cluster(tmp_path) as cluster:
        yield cluster


def config(seed: int) -> dict[str, Any]:
    return {
        "listeners": [{"name": "redis", "address": "127.0.0.1:0", "filters": [
            {"name": "redis_proxy", "config": {"cluster": "rc", "timeout": "2s"}}]}],
        "clusters": [{"name": "rc", "type": "redis_cluster", "connect_timeout": "500ms",
                      "endpoints": [f"127.0.0.1:{seed}"],
                      "redis_cluster": {"refresh_interval": "1s"}}],
    }  # fmt: skip


def proxy(mecha: Mecha) -> redis.Redis:
    return redis.Redis(port=mecha.port("redis"), socket_timeout=10)


def test_plain_client_reaches_every_slot(tmp_path: Path, nodes: ClusterNodes) -> None:
    with run_mecha(tmp_path, config(nodes.ports[0])) as mecha:
        client = proxy(mecha)
        for i in range(500):
            client.set(f"key:{i}", i)
        direct = RedisCluster(host="127.0.0.1", port=nodes.ports[0])
        assert [direct.get(f"key:{i}") for i in range(500)] == [str(i).encode() for i in range(500)]
        expected = [str(i).encode() for i in range(100)]
        assert client.mget([f"key:{i}" for i in range(100)]) == expected
        assert client.delete(*[f"key:{i}" for i in range(50)]) == 50
        with pytest.raises(redis.ResponseError, match="don't hash to the same slot"):
            client.rename("key:100", "key:101")
        client.set("{t}:a", 1)
        assert client.rename("{t}:a", "{t}:b") and client.get("{t}:b") == b"1"
        assert len(mecha.json("/clusters?format=json")["clusters"][0]["endpoints"]) == 3


def _keep_going(mecha: Mecha, stop: threading.Event, errors: list[str], done: list[int]) -> None:
    client = proxy(mecha)
    i = 0
    while not stop.is_set():
        key = f"live:{i % 300}"
        try:
            client.set(key, i)
            if client.get(key) != str(i).encode():
                errors.append(f"{key} lost its value")
        except redis.RedisError as error:
            errors.append(str(error))
        i += 1
    done.append(i)


def test_resharding_while_clients_keep_going(tmp_path: Path, nodes: ClusterNodes) -> None:
    with run_mecha(tmp_path, config(nodes.ports[0])) as mecha:
        stop, errors, done = threading.Event(), [], []  # type: ignore[var-annotated]
        worker = threading.Thread(target=_keep_going, args=(mecha, stop, errors, done))
        worker.start()
        time.sleep(0.5)
        ids = _master_ids(nodes.ports[0])
        source, target = ids[0], ids[1]
        subprocess.run(
            ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{nodes.ports[0]}",
             "--cluster-from", source, "--cluster-to", target, "--cluster-slots", "2000",
             "--cluster-yes", "--cluster-pipeline", "50"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        time.sleep(1.0)
        stop.set()
        worker.join(30)
        assert done and done[0] > 100
        assert errors == [], errors[:5]


def _master_ids(port: int) -> list[str]:
    argv = ["redis-cli", "-p", str(port), "cluster", "nodes"]
    lines = subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.splitlines()
    return [line.split()[0] for line in lines if "master" in line.split()[2]]


def test_failover_is_survived(tmp_path: Path, nodes: ClusterNodes) -> None:
    with run_mecha(tmp_path, config(nodes.ports[0])) as mecha:
        client = proxy(mecha)
        for i in range(300):
            client.set(f"f:{i}", i)
        time.sleep(1.0)  # let replicas catch up
        victim = nodes.masters()[-1]
        nodes.kill(victim)
        deadline = time.monotonic() + 20
        last = ""
        while True:
            try:
                values = client.mget([f"f:{i}" for i in range(300)])
                if values == [str(i).encode() for i in range(300)]:
                    break
            except redis.RedisError as error:
                last = str(error)
            else:
                last = f"wrong values: {values[:3]}"
            assert time.monotonic() < deadline, f"no way around the failover: {last}"
            time.sleep(0.25)
        assert client.set("after", "failover") and client.get("after") == b"failover"

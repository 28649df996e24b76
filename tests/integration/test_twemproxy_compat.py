"""mecha as a drop-in for twemproxy: the same nutcracker.yml, the same server for each key.

Real nutcracker runs a pool per hash and distribution over three private redis-servers
(weights 1, 2, 3; half the pools with server names); `mecha twemproxy` converts the same
file and mecha runs it. Thousands of keys (with hash tags and bytes above 0x7f) are set
through nutcracker, each server's keys listed, everything flushed, then the same through
mecha: every key must land on the same server. Random distribution: every key lands on
exactly one server, through both. With auto_eject_hosts, a dead server is left out by both
and the keys it would have had go where nutcracker sends them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
import yaml

from filters.network.redis_proxy.twemproxy import convert
from protocols.redis.encode import encode_command
from tests.support.mecha import run_mecha
from tests.support.net import free_port, wait_for_port
from tests.support.redis import redis_server

pytestmark = pytest.mark.integration

HASHES = ("one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64",
          "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins")  # fmt: skip
KEYS = 1500


def keys(prefix: str) -> list[bytes]:
    base = prefix.encode()
    out = [b"%s:%d" % (base, i) for i in range(KEYS)]
    out += [b"%s:{user%d}:x%d" % (base, i % 50, i) for i in range(KEYS // 10)]
    out += [b"%s:\xe9\xff\x80:%d" % (base, i) for i in range(KEYS // 10)]  # signed chars
    return out


def pool(port: int, servers: list[int], hash_name: str, distribution: str, named: bool,
         **extra: Any) -> dict[str, Any]:  # fmt: skip
    lines = [f"127.0.0.1:{p}:{w}" + (f" s{i}" if named else "")
             for i, (p, w) in enumerate(zip(servers, (1, 2, 3), strict=True))]  # fmt: skip
    config = {"listen": f"127.0.0.1:{port}", "hash": hash_name, "distribution": distribution,
              "redis": True, "servers": lines, **extra}  # fmt: skip
    if named:
        config["hash_tag"] = "{}"
    return config


@contextmanager
def nutcracker(workdir: Path, pools: dict[str, Any]) -> Iterator[None]:
    if shutil.which("nutcracker") is None:
        raise RuntimeError("nutcracker is not installed; scripts/setup.sh --test installs it")
    config = workdir / "nutcracker.yml"
    config.write_text(yaml.safe_dump(pools))
    log, pid = workdir / "nutcracker.log", workdir / "nutcracker.pid"
    argv = ["nutcracker", "-c", str(config), "-s", str(free_port()), "-a", "127.0.0.1",
            "-o", str(log), "-p", str(pid)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for entry in pools.values():
            wait_for_port(int(entry["listen"].rsplit(":", 1)[1]))
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def mecha_config(pools: dict[str, Any]) -> dict[str, Any]:
    config, _ = convert(yaml.safe_dump(pools))
    for listener in config["listeners"]:
        listener["address"] = "127.0.0.1:0"
    return config


def call_all(port: int, commands: list[list[bytes]]) -> list[Any]:
    """Commands pipelined on one raw connection (no client handshake, which nutcracker
    would refuse); replies decoded by hiredis, errors as ReplyError values."""
    reader = hiredis.Reader()
    replies: list[Any] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for start in range(0, len(commands), 500):
            batch = commands[start : start + 500]
            sock.sendall(b"".join(encode_command(c) for c in batch))
            wanted = len(replies) + len(batch)
            while len(replies) < wanted:
                while (reply := reader.gets()) is not False:
                    replies.append(reply)
                if len(replies) < wanted:
                    data = sock.recv(1 << 16)
                    assert data, "connection closed"
                    reader.feed(data)
    return replies


def fill(port: int, name: str) -> list[Any]:
    return call_all(port, [[b"SET", key, b"1"] for key in keys(name)])


def placement(servers: list[int]) -> dict[bytes, int]:
    """Which server holds each key; flushes them all."""
    where: dict[bytes, int] = {}
    for index, port in enumerate(servers):
        client = redis.Redis(port=port)
        for key in client.scan_iter(count=1000):
            assert key not in where, f"{key!r} on two servers"
            where[key] = index
        client.flushall()
        client.close()
    return where


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[int]]:
    with ExitStack() as stack:
        ports = []
        for i in range(3):
            (tmp_path / f"r{i}").mkdir()
            ports.append(stack.enter_context(redis_server(tmp_path / f"r{i}")))
        yield ports


def test_every_hash_and_distribution_puts_keys_where_twemproxy_does(
    tmp_path: Path, servers: list[int]
) -> None:
    pools = {f"{h}_{d}": pool(free_port(), servers, h, d, named=i % 2 == 0)
             for i, h in enumerate(HASHES) for d in ("ketama", "modula")}  # fmt: skip
    pools["rand"] = pool(free_port(), servers, "fnv1a_64", "random", named=False)
    with nutcracker(tmp_path, pools), run_mecha(tmp_path, mecha_config(pools)) as mecha:
        for name, entry in pools.items():
            assert set(fill(int(entry["listen"].rsplit(":", 1)[1]), name)) == {b"OK"}
        by_twemproxy = placement(servers)
        for name in pools:
            assert set(fill(mecha.port(name), name)) == {b"OK"}
        by_mecha = placement(servers)
    assert set(by_mecha) == set(by_twemproxy)
    for name in pools:
        mine = {k: by_mecha[k] for k in keys(name)}
        if name == "rand":
            assert set(mine.values()) == {0, 1, 2}  # every key on one server, all used
            continue
        theirs = {k: by_twemproxy[k] for k in keys(name)}
        moved = sum(1 for k in mine if mine[k] != theirs[k])
        sample = [(k, mine[k], theirs[k]) for k in list(mine)[:6]]
        assert moved == 0, f"{name}: {moved} of {len(mine)} keys on another server {sample}"
        if name != "crc32_ketama":  # (15-bit hashes all fall before the ring's first points)
            assert len(set(theirs.values())) == 3, name


def test_auto_eject_hosts_leaves_a_dead_server_out_as_twemproxy_does(
    tmp_path: Path, servers: list[int]
) -> None:
    dead = free_port()  # nothing listens: connections fail at once
    live = servers[:2]
    eject = {"auto_eject_hosts": True, "server_failure_limit": 1, "server_retry_timeout": 60000}
    pools = {"ej": pool(free_port(), [*live, dead], "fnv1a_64", "ketama", named=True, **eject)}
    names = keys("ej")
    with nutcracker(tmp_path, pools), run_mecha(tmp_path, mecha_config(pools)) as mecha:
        placements = []
        for port in (int(pools["ej"]["listen"].rsplit(":", 1)[1]), mecha.port("ej")):
            first = fill(port, "ej")  # the first commands for the dead server fail, then it is out
            assert any(isinstance(reply, hiredis.ReplyError) for reply in first), port
            placement(live)  # (flushed: keys set before the ring changed may have moved)
            assert fill(port, "ej") == [b"OK"] * len(names), port
            placements.append(placement(live))
    by_twemproxy, by_mecha = placements
    assert len(by_twemproxy) == len(by_mecha) == len(names)
    assert by_mecha == by_twemproxy

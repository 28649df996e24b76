"""mecha as a real process: started from a config, probed through its admin endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


class Mecha:
    def __init__(self, process: subprocess.Popen[bytes], admin_port: int, workdir: Path):
        self.process = process
        self.admin_port = admin_port
        self.workdir = workdir

    # -- admin ------------------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str) -> tuple[int, Any]:
        """POST to an admin view that answers JSON (e.g. /reload)."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        request = urllib.request.Request(url, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def port(self, listener: str) -> int:
        for entry in self.json("/listeners"):
            if entry["name"] == listener:
                return int(entry["bound"].rsplit(":", 1)[1])
        raise KeyError(listener)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample; 0.0 when it has not been exported."""
        _, body = self.get("/metrics")
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def wait_metric(self, name: str, value: float, timeout: float = 5.0, **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.metric(name, **labels)) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} is {current}, expected {value}")
            time.sleep(0.05)

    # -- process ----------------------------------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "mecha.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "mecha.stderr"

    def access_log(self) -> list[str]:
        return [line for line in self.stdout_path.read_text().splitlines() if line.strip()]

    def wait_access_log(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(lines := self.access_log()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(lines)} access-log lines, expected {count}: {lines}")
            time.sleep(0.05)
        return lines

    def logs(self) -> str:
        return self.stderr_path.read_text()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout=timeout)


def mecha_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", *args]


def write_config(workdir: Path, config: dict[str, Any] | str, admin_port: int | None) -> Path:
    if isinstance(config, dict):
        config = dict(config)
        if admin_port is not None:
            config.setdefault("admin", {"address": f"127.0.0.1:{admin_port}"})
        config = yaml.safe_dump(config, sort_keys=False)
    path = workdir / "mecha.yaml"
    path.write_text(config)
    return path


@contextmanager
def run_mecha(
    workdir: Path,
    config: dict[str, Any] | str,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[Mecha]:
    """Start mecha on `config` (a dict without an admin address gets a free admin port) and
    wait until /ready."""
    admin_port = _admin_port(config) or free_port()
    path = write_config(workdir, config, admin_port)
    with (workdir / "mecha.stdout").open("wb") as out, (workdir / "mecha.stderr").open("wb") as err:
        process = subprocess.Popen(
            mecha_argv("run", "-c", str(path), "-l", "debug", *args),
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=ROOT,
        )
    mecha = Mecha(process, admin_port, workdir)
    try:
        _wait_ready(mecha)
        yield mecha
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _admin_port(config: dict[str, Any] | str) -> int | None:
    """The port of an admin address the config sets itself (on any host: probed on
    127.0.0.1)."""
    admin = config.get("admin") if isinstance(config, dict) else None
    if isinstance(admin, dict) and "address" in admin:
        return int(str(admin["address"]).rsplit(":", 1)[1])
    return None


def _wait_ready(mecha: Mecha, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mecha.process.poll() is not None:
            raise RuntimeError(f"mecha exited {mecha.process.returncode}: {mecha.logs()}")
        try:
            if mecha.get("/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"mecha not ready after {timeout}s: {mecha.logs()}")


def tcp_proxy_config(
    upstreams: list[int] | str,
    listener: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    tcp_proxy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A one-listener, one-cluster tcp_proxy config; the listener binds a free port."""
    endpoints = upstreams if isinstance(upstreams, str) else [f"127.0.0.1:{p}" for p in upstreams]
    return {
        "listeners": [{
            "name": "tcp", "address": "127.0.0.1:0",
            "filters": [{"name": "tcp_proxy",
                         "config": {"cluster": "upstream", **(tcp_proxy or {})}}],
            **(listener or {}),
        }],
        "clusters": [{"name": "upstream", "connect_timeout": "1s", "endpoints": endpoints,
                      **(cluster or {})}],
    }  # fmt: skip


def http_config(
    clusters: dict[str, list[int]],
    routes: list[dict[str, Any]] | None = None,
    http_filters: list[dict[str, Any]] | None = None,
    manager: dict[str, Any] | None = None,
    cluster_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One `http` listener on a free port; routes default to everything -> the first cluster."""
    first = next(iter(clusters))
    routes = routes or [{"match": {"prefix": "/"}, "route": {"cluster": first}}]
    config: dict[str, Any] = {
        "route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": routes}]},
        **(manager or {}),
    }
    if http_filters is not None:
        config["http_filters"] = http_filters
    return {
        "listeners": [{"name": "http", "address": "127.0.0.1:0",
                       "filters": [{"name": "http", "config": config}]}],
        "clusters": [
            {"name": name, "connect_timeout": "1s",
             "endpoints": [f"127.0.0.1:{port}" for port in ports],
             **(cluster_options or {}).get(name, {})}
            for name, ports in clusters.items()
        ],
    }  # fmt: skip


HTTP1_PATHS = ("as-bytes", "parsed", "filters")


def http1_paths_config(
    port: int, access_log: bool = True, options: dict[str, Any] | None = None,
    listener_options: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One listener per HTTP/1 path, named after it, all sending everything to the cluster
    `upstream` (127.0.0.1:`port`): `as-bytes` forwards requests as bytes, `parsed` from the
    parsed head (its route adds a header), `filters` through the stream filters (a
    header_mutation filter before the router). `options` go into each connection manager's
    config, `listener_options` into each listener's."""
    via = {"name": "x-via", "value": "mecha"}

    def listener(path: str) -> dict[str, Any]:
        route: dict[str, Any] = {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
        if path == "parsed":
            route["request_headers_to_add"] = [via]
        manager: dict[str, Any] = {
            "access_log": "stdout" if access_log else False,
            "route_config": {"virtual_hosts": [{"name": "vh", "domains": ["*"],
                                                "routes": [route]}]},
            **(options or {}),
        }  # fmt: skip
        if path == "filters":
            manager["http_filters"] = [
                {"name": "header_mutation", "config": {"request": {"add": [via]}}},
                {"name": "router"},
            ]
        return {"name": path, "address": "127.0.0.1:0", **(listener_options or {}),
                "filters": [{"name": "http", "config": manager}]}  # fmt: skip

    return {
        "listeners": [listener(path) for path in HTTP1_PATHS],
        "clusters": [{"name": "upstream", "connect_timeout": "1s",
                      "endpoints": [f"127.0.0.1:{port}"]}],
    }  # fmt: skip


def redis_proxy_config(
    shards: list[int] | str, proxy: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One redis_proxy listener on a free port in front of `shards` (ketama)."""
    endpoints = shards if isinstance(shards, str) else [f"127.0.0.1:{p}" for p in shards]
    return {
        "listeners": [{"name": "redis", "address": "127.0.0.1:0", "filters": [
            {"name": "redis_proxy", "config": {"cluster": "shards", **(proxy or {})}}]}],
        "clusters": [{"name": "shards", "lb_policy": "ketama", "connect_timeout": "500ms",
                      "endpoints": endpoints, **(cluster or {})}],
    }  # fmt: skip


def rpc_proxy_config(
    routes: list[dict[str, Any]], clusters: dict[str, list[int]],
    proxy: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One rpc_proxy listener on a free port."""
    return {
        "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "filters": [
            {"name": "rpc_proxy", "config": {"codec": "msgpack_rpc", "routes": routes,
                                             **(proxy or {})}}]}],
        "clusters": [{"name": name, "connect_timeout": "500ms",
                      "endpoints": [f"127.0.0.1:{p}" for p in ports]}
                     for name, ports in clusters.items()],
    }  # fmt: skip


def mqtt_proxy_config(broker: int, proxy: dict[str, Any] | None = None) -> dict[str, Any]:
    """One mqtt_proxy listener on a free port in front of one broker."""
    return {
        "listeners": [{"name": "mqtt", "address": "127.0.0.1:0", "filters": [
            {"name": "mqtt_proxy", "config": {"cluster": "brokers", **(proxy or {})}}]}],
        "clusters": [{"name": "brokers", "connect_timeout": "500ms",
                      "endpoints": [f"127.0.0.1:{broker}"]}],
    }  # fmt: skip

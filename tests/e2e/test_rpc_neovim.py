"""Neovim behind rpc_proxy, driven by pynvim: names as msgpack bin, calls both ways.

pynvim packs every method name as bin and Neovim calls its clients back (`rpcrequest()`,
`rpcnotify()`), so this is the peer that shows whether the proxy is as lenient as the server
behind it and whether messages cross it in both directions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import pynvim
import pytest

from tests.support.mecha import Mecha, rpc_proxy_config, run_mecha
from tests.support.neovim import attached, neovim_server

pytestmark = pytest.mark.e2e

CLIENTS = 8
T = TypeVar("T")


@pytest.fixture
def nvim_port() -> Iterator[int]:
    with neovim_server() as port:
        yield port


def proxied(tmp_path: Path, nvim_port: int, mode: str) -> Any:
    routes = [{"match": {"prefix": ""}, "cluster": "nvim"}]
    config = rpc_proxy_config(routes, {"nvim": [nvim_port]}, {"upstream_connections": mode})
    return run_mecha(tmp_path, config)


def attach(mecha: Mecha) -> AbstractContextManager[pynvim.Nvim]:
    return attached(mecha.port("rpc"))


def at_once(work: Callable[[int], T]) -> list[T]:
    """`work(i)` for every client i, all running together, each in its own thread."""
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(work, range(CLIENTS)))


def plain_calls(nvim: pynvim.Nvim, i: int) -> None:
    """eval, a function call, a notification (nvim_command sent async_), then reading back
    what the notification did: it is forwarded ahead of the request that follows it."""
    assert nvim.eval(f"{i} * 3 + 1") == i * 3 + 1
    assert nvim.call("abs", -i) == i
    assert nvim.call("toupper", f"client {i}") == f"CLIENT {i}"
    nvim.command(f"let g:note_{i} = {i}", async_=True)
    assert nvim.vars[f"note_{i}"] == i


def test_many_pynvim_clients_over_the_shared_connection(tmp_path: Path, nvim_port: int) -> None:
    with proxied(tmp_path, nvim_port, "shared") as mecha:

        def client(i: int) -> int:
            with attach(mecha) as nvim:
                plain_calls(nvim, i)
                return int(nvim.channel_id)

        channels = at_once(client)
        assert len(set(channels)) == 1  # one upstream connection: one Neovim channel
        assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="nvim") == 1
        assert mecha.metric("mecha_rpc_protocol_errors_total", listener="rpc") == 0
        assert mecha.metric("mecha_rpc_notifications_total", listener="rpc") >= CLIENTS
        with attach(mecha) as nvim:  # Neovim calling back has no one client to reach here
            with pytest.raises(pynvim.NvimError, match="upstream_connections: per_client"):
                nvim.call("rpcrequest", nvim.channel_id, "anyone", 1)
            assert nvim.eval("1 + 1") == 2  # and the shared connection carries on


def test_per_client_connections_carry_neovim_calling_back(tmp_path: Path, nvim_port: int) -> None:
    with proxied(tmp_path, nvim_port, "per_client") as mecha:
        at_once(lambda i: callbacks(mecha, i))
        assert mecha.metric("mecha_cluster_upstream_cx_total", cluster="nvim") == CLIENTS
        assert mecha.metric("mecha_rpc_server_requests_total", listener="rpc") == CLIENTS * 2
        assert mecha.metric("mecha_rpc_server_notifications_total", listener="rpc") >= CLIENTS
        mecha.wait_metric("mecha_cluster_upstream_cx_active", 0, cluster="nvim")  # closed with them
        with attach(mecha) as nvim:
            rpc_channels = [c for c in nvim.api.list_chans() if c.get("mode") == "rpc"]
            assert [c["id"] for c in rpc_channels] == [nvim.channel_id]


def callbacks(mecha: Mecha, i: int) -> None:
    """One client: its own Neovim channel; Neovim's requests (rpcrequest, nested inside the
    client's own call) and notifications (rpcnotify) reach it through the proxy."""
    heard: list[tuple[str, list[Any]]] = []

    def on_request(name: str, args: list[Any]) -> Any:
        if name == "double":
            return args[0] * 2
        if name == "ask_back":  # a request from Neovim that makes a call to Neovim
            return nvim.eval(f"{args[0]} + 100")
        raise ValueError(f"unexpected request {name}")

    failures: list[BaseException] = []

    def setup() -> None:  # runs inside pynvim's loop, which would only log a failure
        try:
            plain_calls(nvim, i)
            assert nvim.call("rpcrequest", nvim.channel_id, "double", i) == 2 * i
            assert nvim.call("rpcrequest", nvim.channel_id, "ask_back", i) == i + 100
            nvim.call("rpcnotify", nvim.channel_id, "hello", i)
            for _ in range(50):  # the notification came before the answer to rpcnotify
                if heard:
                    break
                nvim.eval("0")
            assert heard == [("hello", [i])]
        except BaseException as failure:
            failures.append(failure)
        finally:
            nvim.stop_loop()

    with attach(mecha) as nvim:
        mine = nvim.channel_id
        assert mine == nvim.api.get_api_info()[0]
        nvim.run_loop(on_request, lambda name, args: heard.append((name, args)), setup)
    if failures:
        raise failures[0]
    assert heard == [("hello", [i])]

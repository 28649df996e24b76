"""rpc_proxy's answer to a suspect (filters/network/rpc_proxy/upstreams.py): set apart on a
connection of its own for a while, cut off if that one is closed on it too, and no more
than MAX_ON_PROBATION callers apart at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from filters.network.rpc_proxy import upstreams
from filters.network.rpc_proxy.filter import RpcShared
from filters.network.rpc_proxy.stats import RpcStats
from filters.network.rpc_proxy.upstreams import CallerUpstreams, Verdict
from proxy.config.parse import parse_config
from proxy.upstream.cluster import ClusterManager
from proxy.upstream.rpc_pool import RpcConnection


@pytest.fixture
async def shared() -> AsyncIterator[RpcShared]:
    document = {
        "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "filters": [
            {"name": "rpc_proxy", "config": {"routes": [{"cluster": "app"}]}}]}],
        "clusters": [{"name": "app", "endpoints": ["127.0.0.1:1"]}],
    }  # fmt: skip
    config = parse_config(document)
    rpc = config.listeners[0].filter_chains[0].filters[0].config
    made = RpcShared(rpc, ClusterManager(config.clusters), "rpc", RpcStats("rpc"), None)
    yield made
    for pool in made._pools.values():  # the shared pools live as long as the listener
        pool.close()


def pick(caller: CallerUpstreams, shared: RpcShared) -> RpcConnection:
    return caller.pick(shared.config.routes[0], [])[1]


async def test_a_suspect_goes_apart_for_a_while_then_back(
    shared: RpcShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstreams, "PROBATION", 0.05)
    caller = CallerUpstreams(shared, None)
    common = pick(caller, shared)
    assert pick(CallerUpstreams(shared, None), shared) is common  # everyone's connection
    assert caller.suspected(common) is Verdict.PROBATION
    own = pick(caller, shared)
    assert own is not common and shared.on_probation == 1
    assert caller.suspected(common) is Verdict.NONE  # again on a shared one: stays apart
    await asyncio.sleep(0.1)
    assert not caller.on_probation and shared.on_probation == 0
    assert pick(caller, shared).pool is common.pool  # (port 1 refused: a new connection)
    caller.close()


async def test_a_suspect_whose_own_connection_is_closed_on_it_is_cut_off(
    shared: RpcShared,
) -> None:
    caller = CallerUpstreams(shared, None)
    assert caller.suspected(pick(caller, shared)) is Verdict.PROBATION
    assert caller.suspected(pick(caller, shared)) is Verdict.CUT_OFF
    caller.close()
    assert shared.on_probation == 0


async def test_no_more_than_the_bound_are_set_apart(
    shared: RpcShared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstreams, "MAX_ON_PROBATION", 2)
    callers = [CallerUpstreams(shared, None) for _ in range(3)]
    common = pick(callers[0], shared)
    assert [c.suspected(common) for c in callers] == [Verdict.PROBATION] * 2 + [Verdict.NONE]
    assert shared.stats.probation_overflow == 1 and shared.stats.probations == 2
    for caller in callers:
        caller.close()
    assert shared.on_probation == 0

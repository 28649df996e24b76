"""Conformance suites: the contract of each building block (runtime/components/api.py), run
against every backend registered for that block in BACKENDS below.

Each test module names its block (`BLOCK = "state"`); a test that takes the `backend` fixture
runs once per backend of that block and gets an initialised component, closed after the test.
Tests without it are about the in-memory reference only, and say so in their names.

Adding a backend: write a factory, an async context manager that takes the pytest request and
yields an initialised component (and closes it on exit), then add a `Backend(factory, ...)`
line to BACKENDS[block] with the flags that state what the backend promises; the suites
derive their expectations from those flags and from the component's declared `features`.
A factory that needs a server gets it from a fixture of its own, e.g.
`request.getfixturevalue("redis_port")` (tests/conftest.py: a private redis-server per test).
Such fixtures are per test, so opening the factory twice in one test reaches the same server:
that is how the suites check what survives a re-init (`persistent`). A factory never skips:
a missing server binary is an error, not a pass.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from runtime.components.api import (
    Component,
    ConfigurationStore,
    DeleteRequest,
    LockStore,
    Metadata,
    PubSub,
    SecretStore,
    Sequencer,
    SetRequest,
    StateItem,
    StateOperation,
    StateStore,
)
from runtime.components.configuration.memory import InMemoryConfigurationStore
from runtime.components.configuration.redis import RedisConfigurationStore
from runtime.components.lock.memory import InMemoryLockStore
from runtime.components.lock.redis import RedisLockStore
from runtime.components.pubsub.jetstream import JetStreamPubSub
from runtime.components.pubsub.memory import InMemoryPubSub
from runtime.components.pubsub.mqtt import MqttPubSub
from runtime.components.pubsub.redis import RedisStreamsPubSub
from runtime.components.secrets.env import EnvSecretStore
from runtime.components.secrets.file import FileSecretStore
from runtime.components.sequencer.memory import InMemorySequencer
from runtime.components.sequencer.redis import RedisSequencer
from runtime.components.sequencer.sqlite import SqliteSequencer
from runtime.components.state.memory import InMemoryStateStore
from runtime.components.state.redis import RedisStateStore
from runtime.components.state.sqlite import SqliteStateStore
from tests.support.mqtt import mosquitto
from tests.support.net import free_port, wait_for_port
from tests.support.redis import ClusterNodes, redis_cluster

Factory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Any]]
C = TypeVar("C", bound=Component)
ConfigWriter = Callable[[pytest.FixtureRequest, Any, str, str], Awaitable[None]]


@dataclass(frozen=True)
class Backend:
    factory: Factory
    persistent: bool = False
    """Data outlives the component: a second instance opened by the factory in the same test
    sees what the first one wrote (state items, sequencer ids, pub/sub groups)."""
    ordered: bool = False
    """pub/sub: one subscriber gets the first deliveries of a topic in publish order."""
    min_ttl: float = 1.0
    """state TTL and lock expiry: the shortest time, in seconds, the backend honours."""
    write_config: ConfigWriter | None = None
    """configuration: change (or add) an item the way its operator would."""


SECRETS = {"DB_PASSWORD": "s3cr3t", "API_KEY": "k-123", "GREETING": "grüße ✓ 秘密"}
"""What every secret store factory must hold (single-valued: secret `k` = {k: v})."""


# -- in-memory (and local) backends --------------------------------------------------------------


@asynccontextmanager
async def opened(component: C, metadata: Mapping[str, str]) -> AsyncIterator[C]:
    await component.init(metadata)
    try:
        yield component
    finally:
        await component.close()


def memory_state(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[StateStore]:
    return opened(InMemoryStateStore(), {"cleanupInterval": "50ms"})


def memory_pubsub(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[PubSub]:
    metadata = {"redeliverInitialInterval": "10ms", "redeliverMaxInterval": "40ms"}
    return opened(InMemoryPubSub(), metadata)


def memory_lock(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[LockStore]:
    return opened(InMemoryLockStore(), {"cleanupInterval": "50ms"})


def memory_sequencer(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Sequencer]:
    return opened(InMemorySequencer(), {})


def memory_configuration(
    request: pytest.FixtureRequest,
) -> AbstractAsyncContextManager[ConfigurationStore]:
    return opened(InMemoryConfigurationStore(), {})


async def write_memory_configuration(
    request: pytest.FixtureRequest, store: Any, key: str, value: str
) -> None:
    assert isinstance(store, InMemoryConfigurationStore)
    await store.set(key, value)


def env_secrets(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[SecretStore]:
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    prefix = f"CONFORMANCE_{uuid.uuid4().hex[:8].upper()}_"
    for name, value in SECRETS.items():
        monkeypatch.setenv(prefix + name, value)
    return opened(EnvSecretStore(), {"prefix": prefix})


def file_secrets(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[SecretStore]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(SECRETS), encoding="utf-8")
    return opened(FileSecretStore(), {"secretsFile": str(path)})


# -- SQLite, NATS JetStream, MQTT ----------------------------------------------------------------


@contextlib.contextmanager
def nats_server(workdir: Path, port: int | None = None) -> Iterator[int]:
    """A private `nats-server -js` on a free port (or `port`), its store in `workdir`."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        raise RuntimeError("nats-server is not installed; scripts/setup.sh --test installs it")
    port = port or free_port()
    argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(workdir)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


_SERVERS = pytest.StashKey[dict[str, int]]()


def private_server(
    request: pytest.FixtureRequest, name: str, start: Callable[[Path], AbstractContextManager[int]]
) -> int:
    """The port of this test's `name` server, started by the first factory that asks (so a
    second instance opened in the same test reaches the same server); stopped after the test."""
    servers: dict[str, int] = request.node.stash.setdefault(_SERVERS, {})
    if name not in servers:
        workdir = request.getfixturevalue("tmp_path") / name
        workdir.mkdir()
        stack = contextlib.ExitStack()
        servers[name] = stack.enter_context(start(workdir))
        request.addfinalizer(stack.close)
    return servers[name]


def sqlite_state(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[StateStore]:
    path = request.getfixturevalue("tmp_path") / "state.db"
    return opened(SqliteStateStore(), {"connectionString": str(path), "cleanupInterval": "50ms"})


def sqlite_sequencer(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Sequencer]:
    path = request.getfixturevalue("tmp_path") / "sequencer.db"
    return opened(SqliteSequencer(), {"connectionString": str(path)})


RETRY_FAST = {"redeliverInitialInterval": "10ms", "redeliverMaxInterval": "40ms"}


def jetstream_pubsub(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[PubSub]:
    port = private_server(request, "nats", nats_server)
    return opened(JetStreamPubSub(), {"natsURL": f"nats://127.0.0.1:{port}", **RETRY_FAST})


def mqtt_pubsub(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[PubSub]:
    port = private_server(request, "mosquitto", mosquitto)
    metadata = {"url": f"tcp://127.0.0.1:{port}", "consumerID": "conformance", **RETRY_FAST}
    return opened(MqttPubSub(), metadata)


# -- Redis (a private redis-server per test; one Redis Cluster for the session) ------------------

REDIS_FAST = {"timeout": "2s", "processingTimeout": "500ms", "redeliverInterval": "100ms"}
_REDIS_CLUSTER = pytest.StashKey[ClusterNodes]()
_REDIS_FLUSHED = pytest.StashKey[bool]()


def redis_node(request: pytest.FixtureRequest) -> dict[str, str]:
    return {"redisHost": f"127.0.0.1:{request.getfixturevalue('redis_port')}", **REDIS_FAST}


def redis_cluster_of_session(request: pytest.FixtureRequest) -> dict[str, str]:
    """The session's six-node cluster (built once: that takes seconds), emptied before the
    first factory of each test opens, so a second instance in the same test sees the data."""
    nodes = request.config.stash.get(_REDIS_CLUSTER, None)
    if nodes is None:
        workdir = request.getfixturevalue("tmp_path_factory").mktemp("redis-cluster")
        stack = contextlib.ExitStack()
        nodes = request.config.stash[_REDIS_CLUSTER] = stack.enter_context(redis_cluster(workdir))
        request.config.add_cleanup(stack.close)
    if not request.node.stash.get(_REDIS_FLUSHED, False):
        for port in nodes.masters():
            redis.Redis(port=port).flushall()
        request.node.stash[_REDIS_FLUSHED] = True
    seeds = ",".join(f"127.0.0.1:{port}" for port in nodes.ports)
    return {"redisHost": seeds, "redisType": "cluster", **REDIS_FAST}


class OneSlotStateStore(RedisStateStore):
    """The Redis state store on a cluster with every key under one {hash tag}: a cluster
    transaction needs its keys in one slot (runtime/components/state/redis.py), which an
    app gets by tagging its keys; the suites use plain keys, so this tags them."""

    TAG = "{conformance}"

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        return _untag(await super().get(self.TAG + key, metadata))

    async def bulk_get(self, keys: Sequence[str], metadata: Metadata) -> list[StateItem]:
        return [_untag(i) for i in await super().bulk_get([self.TAG + k for k in keys], metadata)]

    async def set(self, request: SetRequest) -> None:
        await super().set(replace(request, key=self.TAG + request.key))

    async def delete(self, request: DeleteRequest) -> None:
        await super().delete(replace(request, key=self.TAG + request.key))

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        await super().bulk_set([replace(r, key=self.TAG + r.key) for r in requests])

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        await super().bulk_delete([replace(r, key=self.TAG + r.key) for r in requests])

    async def transact(self, operations: Sequence[StateOperation], metadata: Metadata) -> None:
        await super().transact([replace(o, key=self.TAG + o.key) for o in operations], metadata)


def _untag(item: StateItem) -> StateItem:
    return replace(item, key=item.key.removeprefix(OneSlotStateStore.TAG))


def redis_state(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[StateStore]:
    return opened(RedisStateStore(), redis_node(request))


def redis_cluster_state(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[StateStore]:
    return opened(OneSlotStateStore(), redis_cluster_of_session(request))


def redis_pubsub(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[PubSub]:
    return opened(RedisStreamsPubSub(), redis_node(request))


def redis_cluster_pubsub(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[PubSub]:
    return opened(RedisStreamsPubSub(), redis_cluster_of_session(request))


def redis_lock(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[LockStore]:
    return opened(RedisLockStore(), redis_node(request))


def redis_cluster_lock(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[LockStore]:
    return opened(RedisLockStore(), redis_cluster_of_session(request))


def redis_sequencer(request: pytest.FixtureRequest) -> AbstractAsyncContextManager[Sequencer]:
    return opened(RedisSequencer(), redis_node(request))


def redis_cluster_sequencer(
    request: pytest.FixtureRequest,
) -> AbstractAsyncContextManager[Sequencer]:
    return opened(RedisSequencer(), redis_cluster_of_session(request))


def redis_configuration(
    request: pytest.FixtureRequest,
) -> AbstractAsyncContextManager[ConfigurationStore]:
    return opened(RedisConfigurationStore(), redis_node(request))


async def write_redis_configuration(
    request: pytest.FixtureRequest, store: Any, key: str, value: str
) -> None:
    """As an operator would: SET the key (Dapr's layout, `value` or `value||version`)."""
    client = redis.asyncio.Redis(port=request.getfixturevalue("redis_port"))
    try:
        await client.set(key, value)
    finally:
        await client.aclose()


BACKENDS: dict[str, dict[str, Backend]] = {
    "state": {
        "in-memory": Backend(memory_state, min_ttl=0.2),
        "sqlite": Backend(sqlite_state, persistent=True, min_ttl=0.2),
        "redis": Backend(redis_state, persistent=True, min_ttl=0.2),
        "redis-cluster": Backend(redis_cluster_state, persistent=True, min_ttl=0.2),
    },
    "pubsub": {
        "in-memory": Backend(memory_pubsub, ordered=True),
        "jetstream": Backend(jetstream_pubsub, persistent=True, ordered=True),
        "mqtt3": Backend(mqtt_pubsub, persistent=True, ordered=True),
        "redis": Backend(redis_pubsub, persistent=True),
        "redis-cluster": Backend(redis_cluster_pubsub, persistent=True),
    },
    "lock": {
        "in-memory": Backend(memory_lock, min_ttl=0.2),
        "redis": Backend(redis_lock, min_ttl=0.2),
        "redis-cluster": Backend(redis_cluster_lock, min_ttl=0.2),
    },
    "sequencer": {
        "in-memory": Backend(memory_sequencer),
        "sqlite": Backend(sqlite_sequencer, persistent=True),
        "redis": Backend(redis_sequencer, persistent=True),
        "redis-cluster": Backend(redis_cluster_sequencer, persistent=True),
    },
    "configuration": {
        "in-memory": Backend(memory_configuration, write_config=write_memory_configuration),
        "redis": Backend(redis_configuration, write_config=write_redis_configuration),
    },
    "secretstores": {
        "local.env": Backend(env_secrets),
        "local.file": Backend(file_secrets),
    },
}


# -- fixtures ------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        block: str = metafunc.module.BLOCK
        metafunc.parametrize("backend_name", list(BACKENDS[block]))


@pytest.fixture
def backend_spec(request: pytest.FixtureRequest, backend_name: str) -> Backend:
    return BACKENDS[request.module.BLOCK][backend_name]


@pytest.fixture
async def backend(request: pytest.FixtureRequest, backend_spec: Backend) -> AsyncIterator[Any]:
    async with backend_spec.factory(request) as component:
        yield component

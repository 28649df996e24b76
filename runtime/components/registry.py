"""Component types by Dapr's names (`state.redis`, `pubsub.in-memory`, ...), loaded lazily.

Adding a backend: a module with a class implementing the block's Protocol (api.py), a
no-argument constructor, and `init(metadata)`; then one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

TYPES: dict[str, str] = {
    "state.in-memory": "runtime.components.state.memory:InMemoryStateStore",
    "state.redis": "runtime.components.state.redis:RedisStateStore",
    "state.sqlite": "runtime.components.state.sqlite:SqliteStateStore",
    "pubsub.in-memory": "runtime.components.pubsub.memory:InMemoryPubSub",
    "pubsub.redis": "runtime.components.pubsub.redis:RedisStreamsPubSub",
    "pubsub.jetstream": "runtime.components.pubsub.jetstream:JetStreamPubSub",
    "pubsub.mqtt3": "runtime.components.pubsub.mqtt:MqttPubSub",
    "lock.in-memory": "runtime.components.lock.memory:InMemoryLockStore",
    "lock.redis": "runtime.components.lock.redis:RedisLockStore",
    "sequencer.in-memory": "runtime.components.sequencer.memory:InMemorySequencer",
    "sequencer.redis": "runtime.components.sequencer.redis:RedisSequencer",
    "sequencer.sqlite": "runtime.components.sequencer.sqlite:SqliteSequencer",
    "configuration.in-memory": "runtime.components.configuration.memory:InMemoryConfigurationStore",
    "configuration.redis": "runtime.components.configuration.redis:RedisConfigurationStore",
    "secretstores.local.env": "runtime.components.secrets.env:EnvSecretStore",
    "secretstores.local.file": "runtime.components.secrets.file:FileSecretStore",
    "bindings.http": "runtime.components.bindings.http:HttpOutputBinding",
    "bindings.redis": "runtime.components.bindings.redis:RedisOutputBinding",
    "bindings.mqtt3": "runtime.components.bindings.mqtt:MqttBinding",
    "bindings.cron": "runtime.components.bindings.cron:CronInputBinding",
}
ALIASES = {"pubsub.mqtt": "pubsub.mqtt3", "bindings.mqtt": "bindings.mqtt3",
           "pubsub.nats": "pubsub.jetstream"}  # fmt: skip

BLOCKS = ("state", "pubsub", "lock", "sequencer", "configuration", "secretstores", "bindings")


def block_of(component_type: str) -> str:
    return component_type.split(".", 1)[0]


def canonical(component_type: str) -> str:
    return ALIASES.get(component_type, component_type)


def known(component_type: str) -> bool:
    return canonical(component_type) in TYPES


def create(component_type: str) -> Any:
    """A new, not yet initialised component of `component_type`."""
    module, _, name = TYPES[canonical(component_type)].partition(":")
    return getattr(importlib.import_module(module), name)()

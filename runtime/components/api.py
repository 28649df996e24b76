"""The contract of every building block: typed requests, results and a Protocol each.

A component is created from its declaration (`runtime/components/registry.py`) with its
metadata as plain strings, as Dapr components are; `init()` connects and validates, and
raises BadMetadata naming the key at fault. Every operation is a coroutine that either
returns or raises a ComponentError subclass — a backend outage becomes an error, never a
hang (operations carry their own timeouts). `ping()` backs /v1.0/healthz/outbound.
Features are declared so the API can refuse what a backend cannot do (TTL, transactions,
ETags, query) instead of silently ignoring it.

A component class may set `runs_inline = True` when none of its operations needs a running
task before it first waits (no `asyncio.timeout()`, no `asyncio.current_task()` there): the
HTTP API then starts its calls outside a task and answers at once those that do not wait
(filters/http/runtime_api/inline.py). The in-memory components do; a backend with I/O and
deadlines does not, and loses nothing but that shortcut. One that never waits at all (its
data in memory) may also set `answers_at_once = True`: the HTTP API then answers a GET of it
from the request head alone, without a stream (filters/http/runtime_api/filter.py).

The in-memory implementation of each block is the reference: one conformance suite per
block (tests/conformance/) runs against every backend.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Metadata = Mapping[str, str]


class Component(Protocol):
    async def init(self, metadata: Metadata) -> None: ...

    async def ping(self) -> None:
        """Raise ComponentError when the backend cannot be reached."""

    async def close(self) -> None: ...


# -- state ------------------------------------------------------------------------------------


class StateFeature(enum.Flag):
    NONE = 0
    ETAG = enum.auto()
    TRANSACTIONAL = enum.auto()
    TTL = enum.auto()
    QUERY = enum.auto()


class Concurrency(enum.Enum):
    FIRST_WRITE = "first-write"
    """Writes must carry the current etag (a missing etag means "must not exist")."""
    LAST_WRITE = "last-write"
    """An etag, when given, is still checked (Dapr's behaviour); none means overwrite."""


@dataclass(frozen=True, slots=True)
class StateItem:
    key: str
    value: bytes | None
    """None: the key does not exist."""
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    """E.g. `ttlExpireTime` (RFC 3339) when the item expires."""


@dataclass(frozen=True, slots=True)
class SetRequest:
    key: str
    value: bytes
    etag: str | None = None
    concurrency: Concurrency = Concurrency.LAST_WRITE
    ttl: float | None = None
    """Seconds to live (metadata.ttlInSeconds); None: forever."""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    concurrency: Concurrency = Concurrency.LAST_WRITE
    metadata: Mapping[str, str] = field(default_factory=dict)


StateOperation = SetRequest | DeleteRequest


class StateStore(Component, Protocol):
    features: StateFeature

    async def get(self, key: str, metadata: Metadata) -> StateItem: ...

    async def bulk_get(self, keys: Sequence[str], metadata: Metadata) -> list[StateItem]:
        """In the order of `keys`; missing keys come back with value None."""

    async def set(self, request: SetRequest) -> None:
        """Raises EtagMismatch / EtagInvalid per the request's concurrency and etag."""

    async def delete(self, request: DeleteRequest) -> None: ...

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        """Not atomic; every item is tried, the first error is raised after."""

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None: ...

    async def transact(self, operations: Sequence[StateOperation], metadata: Metadata) -> None:
        """All or nothing (TRANSACTIONAL stores only): any etag mismatch aborts the lot."""


# -- pub/sub -------------------------------------------------------------------------------------


class Delivery(enum.Enum):
    """What a subscriber answered for one message (Dapr's SUCCESS / RETRY / DROP)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    data: bytes
    """What the publisher handed over (usually a CloudEvent JSON document)."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/cloudevents+json"
    id: str = ""
    """The backend's message id, when it has one (for logs)."""
    attempt: int = 1
    """1 for the first delivery; more when the backend redelivers."""


MessageHandler = Callable[[Message], Awaitable[Delivery]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop delivering; messages not yet acknowledged stay with the backend."""


class PubSubFeature(enum.Flag):
    NONE = 0
    AT_LEAST_ONCE = enum.auto()
    """Unacknowledged messages are redelivered, also after the subscriber restarts."""
    DURABLE = enum.auto()
    """Published messages survive a restart of mecha."""


class PubSub(Component, Protocol):
    features: PubSubFeature

    async def publish(self, topic: str, data: bytes, metadata: Metadata) -> None: ...

    async def subscribe(
        self, topic: str, handler: MessageHandler, metadata: Metadata
    ) -> Subscription:
        """Deliver every message of `topic` to `handler` until cancelled. SUCCESS and DROP
        acknowledge; RETRY (or an exception) leaves the message to be redelivered after a
        backoff. `metadata` may carry `consumerGroup` / `queueGroup` (competing consumers)."""


# -- locks ------------------------------------------------------------------------------------


class UnlockStatus(enum.IntEnum):
    """Dapr's numbers."""

    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


@dataclass(frozen=True, slots=True)
class LockResult:
    success: bool
    fencing_token: int = 0
    """Strictly increasing per resource across grants: pass it to the protected resource."""


class LockStore(Component, Protocol):
    async def try_lock(self, resource_id: str, owner: str, expiry: float) -> LockResult: ...

    async def unlock(self, resource_id: str, owner: str) -> UnlockStatus: ...

    async def renew(self, resource_id: str, owner: str, expiry: float) -> UnlockStatus:
        """Extend a held lock (beyond Dapr): SUCCESS, or why not."""


# -- sequencer (Layotto) ---------------------------------------------------------------------


class Sequencer(Component, Protocol):
    async def next_id(self, key: str, metadata: Metadata) -> int:
        """Strictly increasing per key (across restarts where the backend persists)."""


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigurationItem:
    value: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


ConfigurationHandler = Callable[[dict[str, ConfigurationItem]], Awaitable[None]]


class ConfigurationStore(Component, Protocol):
    async def get(self, keys: Sequence[str], metadata: Metadata) -> dict[str, ConfigurationItem]:
        """Every key that exists (all keys when `keys` is empty)."""

    async def subscribe(
        self, keys: Sequence[str], handler: ConfigurationHandler, metadata: Metadata
    ) -> Subscription:
        """Call `handler` with the changed items whenever one of `keys` (all if empty) changes."""


# -- secrets ------------------------------------------------------------------------------------


class SecretStore(Component, Protocol):
    async def get(self, key: str, metadata: Metadata) -> dict[str, str]:
        """Raises NotFound."""

    async def bulk_get(self, metadata: Metadata) -> dict[str, dict[str, str]]: ...


# -- bindings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BindingResponse:
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


class OutputBinding(Component, Protocol):
    operations: tuple[str, ...]

    async def invoke(self, operation: str, data: bytes, metadata: Metadata) -> BindingResponse: ...


@dataclass(frozen=True, slots=True)
class BindingEvent:
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


BindingHandler = Callable[[BindingEvent], Awaitable[None]]


class InputBinding(Component, Protocol):
    async def read(self, handler: BindingHandler) -> Subscription:
        """Call `handler` for every event until cancelled; an exception from the handler
        means "not handled" and the binding retries where its backend allows."""

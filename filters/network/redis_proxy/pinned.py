"""A client's own upstream connections: transactions and blocking commands (Envoy's way).

MULTI/EXEC, WATCH and blocking commands (BLPOP, BLMOVE, XREAD BLOCK, ...) change the state
of the connection they run on, so they cannot share one with other clients. A session that
uses them gets connections of its own, one per shard (a pool of one, owned by the session
and closed with it), and is pinned to the shard of its keys:

- MULTI is answered at once; it goes upstream, ahead of the first queued command, on the
  session's connection to that command's shard (or the shard WATCH chose). Every later
  command must live on the same shard: one that does not, or that Redis would refuse at
  queue time (unknown, wrong arity, refused by the proxy), is answered with its error and
  makes EXEC answer -EXECABORT, as Redis does. EXEC / DISCARD end the pinning.
- A blocking command goes on the session's connection to its shard (no timeout while it
  waits); the client's commands behind it wait in the session, in order, as they would
  behind a blocked Redis connection, and are dispatched when its reply comes.
- (P|S)SUBSCRIBE puts the client in subscribed mode on a connection of its own to the shard
  of its channels (routed as keys, by hash tag; PUBLISH goes the same way), whose every
  reply and message goes to the client (subscriber.py). A pattern must have a fixed hash
  tag unless the cluster has one endpoint. A client stays subscribed until RESET or it
  leaves (Redis lets one that unsubscribed from everything run other commands again).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from filters.network.redis_proxy.commands import CROSS_SHARD, Kind, Spec
from filters.network.redis_proxy.local import LOCAL
from filters.network.redis_proxy.replies import Reply
from filters.network.redis_proxy.subscriber import SubscriberConnection, SubscriberPool
from protocols.redis.encode import encode_command, error_span
from proxy.upstream.redis_pool import RedisConnection, RedisPool

if TYPE_CHECKING:
    from filters.network.redis_proxy.session import RedisSession
    from proxy.upstream.endpoint import Endpoint

WAIT_TIMEOUT = 365 * 86400.0
"""A blocked command makes no progress by design: the client's idle timeout bounds it."""
MAX_HELD = 10_000
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
MULTI = encode_command((b"MULTI",))
DISCARD = encode_command((b"DISCARD",))
TRANSACTION_LOCAL = frozenset((b"PING", b"ECHO"))
UNSUBSCRIBING = frozenset(("unsubscribe", "punsubscribe", "sunsubscribe"))
PATTERNS = frozenset(("psubscribe", "punsubscribe"))
PUSH = b"PUSH"
"""The stats label of what a subscribed client receives."""
"""Answered by the proxy outside a transaction, queued upstream inside one."""


class _Swallowed:
    """The reply to a command the proxy sent for the client but answered itself (MULTI)."""

    __slots__ = ()

    def complete(self, reply: bytes) -> None:
        pass

    def refused(self) -> None:
        pass


SWALLOWED = _Swallowed()


@dataclass(slots=True)
class Transaction:
    connection: RedisConnection | None = None
    endpoint: Endpoint | None = None
    dirty: bool = False


class BlockingReply(Reply):
    """Releases the client's held commands once the blocking command is answered."""

    __slots__ = ()

    def complete(self, reply: bytes) -> None:
        super().complete(reply)
        pinning = self.session.pinning
        if pinning is not None:
            pinning.unblock()


class Pinning:
    __slots__ = ("awaiting", "blocked", "channels", "held", "pools", "session", "subscriber",
                 "transaction", "watching")  # fmt: skip
    # (a session's own: at most one connection per shard, closed with the session)

    def __init__(self, session: RedisSession) -> None:
        self.session = session
        self.pools: dict[Endpoint, RedisPool] = {}
        self.transaction: Transaction | None = None
        self.watching: tuple[Endpoint, RedisConnection] | None = None
        self.blocked = False
        self.held: deque[list[bytes]] = deque()
        self.subscriber: tuple[Endpoint, SubscriberConnection, SubscriberPool] | None = None
        self.awaiting: deque[Reply] = deque()
        """Places in the client's reply order for the subscribed connection's replies."""
        self.channels: dict[str, set[bytes]] = {"": set(), "p": set(), "s": set()}
        """What the client is subscribed to, by kind: how many replies an UNSUBSCRIBE
        without arguments draws."""

    @property
    def engaged(self) -> bool:
        """Whether the session's commands must come here first."""
        return (self.blocked or self.transaction is not None or self.watching is not None
                or self.subscriber is not None)  # fmt: skip

    def close(self) -> None:
        for pool in self.pools.values():
            pool.abort()
        self.session.shared.stats.pinned_connections -= len(self.pools)
        self.pools.clear()
        self._unsubscribe_all()
        self.held.clear()

    def hold(self, args: list[bytes]) -> bool:
        """Keep a command that arrived behind a blocked one (True: kept). Past MAX_HELD
        the client is not read until the block ends."""
        if not self.blocked:
            return False
        self.held.append(args)
        if len(self.held) == MAX_HELD:
            self.session.shared.stats.held_limit += 1
            self.session.callbacks.read_disable(True)
        return True

    # -- dispatch -----------------------------------------------------------------------------

    def dispatch(self, spec: Spec, args: list[bytes], started: float) -> None:
        if self.subscriber is not None:
            self._subscribed(spec, args, started)
        elif spec.kind is Kind.PUBSUB:
            self.subscribe(spec, args, started)
        elif spec.kind is Kind.TRANSACTION:
            self._transaction_command(spec, args, started)
        elif self.transaction is None:
            self.session.dispatch_other(spec, args, started)
        else:
            self._queue(spec, args, started)

    def block(self, spec: Spec, args: list[bytes], started: float) -> None:
        endpoint = self._endpoint(spec, args, started)
        if endpoint is None:
            return
        session = self.session
        reply = BlockingReply(session, spec.name, started)
        session.queue.append(reply)
        self.blocked = True
        session.pinned = True
        self._pool(endpoint).send(encode_command(args), reply)

    def unblock(self) -> None:
        self.blocked = False
        self.session.pinned = self.engaged
        held, self.held = list(self.held), deque()
        if len(held) >= MAX_HELD:
            self.session.callbacks.read_disable(False)
        if held:
            self.session.dispatch_held(held)

    # -- subscribed mode ----------------------------------------------------------------------

    def subscribe(self, spec: Spec, args: list[bytes], started: float) -> None:
        if self.subscriber is None and spec.full in UNSUBSCRIBING:
            self.session.forward_anywhere(spec.name, args, started)  # (nothing to leave)
            return
        endpoint = self._channels(spec, args, started)
        if endpoint is None:
            return
        subscriber = self.subscriber
        if subscriber is None:
            shared = self.session.shared
            settings = shared.settings[self.session.resp3]
            pool = SubscriberPool(shared.cluster, endpoint, settings, self._message, self._lost)
            subscriber = self.subscriber = (endpoint, pool.connection(), pool)
            shared.stats.pinned_connections += 1
            self.session.pinned = True
        elif subscriber[0] is not endpoint:
            self._answer(spec, started, CROSS_SHARD)
            return
        self._expect(spec, self._replies(spec.full, args[1:]), started)
        subscriber[1].subscribe(encode_command(args))

    def _replies(self, name: str, channels: list[bytes]) -> int:
        """Redis answers each channel, and an UNSUBSCRIBE of all with one per channel it
        had (one if none); the client's subscriptions follow."""
        kind = name[:1] if name[:1] in ("p", "s") else ""
        known = self.channels[kind]
        if name.endswith("unsubscribe"):
            count = len(channels) or max(len(known), 1)
            if channels:
                known.difference_update(channels)
            else:
                known.clear()
            return count
        known.update(channels)
        return len(channels)

    def _expect(self, spec: Spec, count: int, started: float) -> None:
        for _ in range(count):
            reply = Reply(self.session, spec.name, started)
            self.session.queue.append(reply)
            self.awaiting.append(reply)

    def _subscribed(self, spec: Spec, args: list[bytes], started: float) -> None:
        assert self.subscriber is not None
        if spec.kind is Kind.PUBSUB:
            self.subscribe(spec, args, started)
        elif spec.name == b"PING":
            self._expect(spec, 1, started)
            self.subscriber[1].subscribe(encode_command(args))
        elif spec.name == b"RESET":
            self._unsubscribe_all()
            self._answer(spec, started, LOCAL.run(self.session, spec.name, args))
        elif spec.name == b"QUIT" or self.session.resp3:  # (RESP3: any command, as Redis)
            self.session.dispatch_other(spec, args, started)
        else:
            self._answer(spec, started, error_span(
                f"Can't execute '{spec.full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / "
                "QUIT / RESET are allowed in this context"))  # fmt: skip

    def _channels(self, spec: Spec, args: list[bytes], started: float) -> Endpoint | None:
        """The one shard of the channels (patterns: of their fixed hash tag)."""
        shared = self.session.shared
        several = len(shared.cluster.endpoints) > 1
        endpoints = set()
        for channel in args[1:]:
            if spec.full in PATTERNS and several and not _fixed_tag(channel):
                self._answer(spec, started, error_span(
                    f"{spec.full.upper()} patterns need a fixed {{hash tag}} (before any * ? "
                    "or [) to find the shard of the channels they match"))  # fmt: skip
                return None
            endpoints.add(shared.ring.choose_hash(shared.hash(shared.tag(channel))))
        if len(endpoints) > 1:
            self._answer(spec, started, CROSS_SHARD)
            return None
        if endpoints:
            endpoint = endpoints.pop()
        elif self.subscriber is not None:
            endpoint = self.subscriber[0]
        else:
            endpoint = shared.any_endpoint()
        if endpoint is None:
            self._answer(spec, started, error_span("the cluster has no endpoints"))
        return endpoint

    def _message(self, span: bytes) -> None:
        """A reply takes its place in the client's order; a message goes out as it comes."""
        if self.awaiting and not _is_message(span):
            self.awaiting.popleft().complete(span)
        else:
            self.session.answer(PUSH, self.session.loop_time(), span)

    def _lost(self, reason: str) -> None:
        """The subscribed connection went: the client's subscriptions with it."""
        if self.subscriber is None:
            return
        self._unsubscribe_all()
        session = self.session
        session.answer(PUSH, session.loop_time(), error_span(f"upstream: {reason}"))
        session.close_after_replies()

    def _unsubscribe_all(self) -> None:
        subscriber, self.subscriber = self.subscriber, None
        for kind in self.channels.values():
            kind.clear()
        awaiting, self.awaiting = self.awaiting, deque()
        for reply in awaiting:  # (their connection is gone: they are answered now)
            reply.complete(error_span("the subscribed connection was closed"))
        if subscriber is not None:
            subscriber[2].abort()
            self.session.shared.stats.pinned_connections -= 1
        self.session.pinned = self.engaged

    # -- MULTI ... EXEC -----------------------------------------------------------------------

    def _transaction_command(self, spec: Spec, args: list[bytes], started: float) -> None:
        handler = {"multi": self._multi, "exec": self._exec, "discard": self._discard,
                   "watch": self._watch, "unwatch": self._unwatch}.get(spec.full)  # fmt: skip
        if handler is None:
            self._answer(spec, started, error_span(f"{spec.full.upper()} is not supported"))
            return
        handler(spec, args, started)

    def _multi(self, spec: Spec, args: list[bytes], started: float) -> None:
        if self.transaction is not None:
            self._answer(spec, started, error_span("MULTI calls can not be nested"))
            return
        self.transaction = Transaction()
        self.session.pinned = True
        if self.watching is not None:
            endpoint, connection = self.watching
            self._start(endpoint, connection)
        self._answer(spec, started, b"+OK\r\n")

    def _start(self, endpoint: Endpoint, connection: RedisConnection) -> None:
        assert self.transaction is not None
        self.transaction.endpoint, self.transaction.connection = endpoint, connection
        connection.send(MULTI, SWALLOWED)

    def _exec(self, spec: Spec, args: list[bytes], started: float) -> None:
        transaction = self._end()
        if transaction is None:
            self._answer(spec, started, error_span("EXEC without MULTI"))
        elif transaction.dirty:
            if transaction.connection is not None:
                transaction.connection.send(DISCARD, SWALLOWED)
            self._answer(spec, started, EXECABORT)
        elif transaction.connection is None:
            self._answer(spec, started, b"*0\r\n")
        else:
            self._send(transaction.connection, spec, args, started)

    def _discard(self, spec: Spec, args: list[bytes], started: float) -> None:
        transaction = self._end()
        if transaction is None:
            self._answer(spec, started, error_span("DISCARD without MULTI"))
        elif transaction.connection is None:
            self._answer(spec, started, b"+OK\r\n")
        else:
            self._send(transaction.connection, spec, args, started)

    def _end(self) -> Transaction | None:
        """The transaction (and any WATCH) ends: EXEC, DISCARD."""
        transaction, self.transaction = self.transaction, None
        self.watching = None
        self.session.pinned = self.engaged
        return transaction

    def _watch(self, spec: Spec, args: list[bytes], started: float) -> None:
        if self.transaction is not None:
            self._answer(spec, started, error_span("WATCH inside MULTI is not allowed"))
            return
        endpoint = self._endpoint(spec, args, started)
        if endpoint is None:
            return
        if self.watching is not None and self.watching[0] is not endpoint:
            self._answer(spec, started, CROSS_SHARD)
            return
        connection = self.watching[1] if self.watching else self._pool(endpoint).pick()
        self.watching = (endpoint, connection)
        self.session.pinned = True
        self._send(connection, spec, args, started)

    def _unwatch(self, spec: Spec, args: list[bytes], started: float) -> None:
        if self.transaction is not None:
            self._queue(spec, args, started)
            return
        watching, self.watching = self.watching, None
        self.session.pinned = self.engaged
        if watching is None:
            self._answer(spec, started, b"+OK\r\n")
        else:
            self._send(watching[1], spec, args, started)

    def _queue(self, spec: Spec, args: list[bytes], started: float) -> None:
        """A command inside MULTI: queued on the transaction's shard, or refused."""
        transaction = self.transaction
        assert transaction is not None
        refusal = self._refusal(spec, args)
        if refusal is not None:
            transaction.dirty = True
            self._answer(spec, started, refusal)
            return
        endpoint = self._endpoint(spec, args, started, transaction.endpoint)
        if endpoint is None:
            transaction.dirty = True
            return
        if transaction.connection is None:
            self._start(endpoint, self._pool(endpoint).pick())
        elif endpoint is not transaction.endpoint:
            transaction.dirty = True
            self._answer(spec, started, CROSS_SHARD)
            return
        assert transaction.connection is not None
        self._send(transaction.connection, spec, args, started)

    def _refusal(self, spec: Spec, args: list[bytes]) -> bytes | None:
        kind = spec.kind
        if kind is Kind.LOCAL and spec.name not in TRANSACTION_LOCAL:
            return error_span(f"{spec.name.decode()} inside MULTI is not supported by the proxy")
        if kind is Kind.REFUSED:
            shown = spec.full.replace("|", " ").upper()
            return error_span(f"{shown} is not supported by the proxy: {spec.reason}")
        shared = self.session.shared
        if shared.filtering and not shared.allows(spec.name):
            return error_span(f"{spec.name.decode()} is not allowed by the proxy")
        if kind is not Kind.LOCAL and not spec.arity_ok(len(args)):
            return error_span(f"wrong number of arguments for '{spec.full}' command")
        return None

    # -- helpers ------------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        """A command Redis would refuse at queue time (unknown): EXEC will abort."""
        if self.transaction is not None:
            self.transaction.dirty = True

    def _endpoint(self, spec: Spec, args: list[bytes], started: float,
                  keyless: Endpoint | None = None) -> Endpoint | None:  # fmt: skip
        """The one shard of the command's keys (keyless: `keyless`, or any), or None
        after answering why not."""
        session = self.session
        shared = session.shared
        positions = spec.positions(args) if spec.key_specs or spec.finder else []
        if isinstance(positions, bytes):
            self._answer(spec, started, positions)
            return None
        endpoints = {shared.ring.choose_hash(shared.hash(shared.tag(args[p]))) for p in positions}
        if len(endpoints) > 1:
            self._answer(spec, started, CROSS_SHARD)
            return None
        endpoint = endpoints.pop() if endpoints else keyless or shared.any_endpoint()
        if endpoint is None:
            self._answer(spec, started, error_span("the cluster has no endpoints"))
        return endpoint

    def _pool(self, endpoint: Endpoint) -> RedisPool:
        pool = self.pools.get(endpoint)
        if pool is None or pool.closed:
            shared = self.session.shared
            shared.stats.pinned_connections += pool is None
            settings = replace(shared.settings[self.session.resp3], connections=1,
                               timeout=WAIT_TIMEOUT)  # fmt: skip
            pool = self.pools[endpoint] = RedisPool(shared.cluster, endpoint, settings)
        return pool

    def _send(self, connection: RedisConnection, spec: Spec, args: list[bytes],
              started: float) -> None:  # fmt: skip
        reply = Reply(self.session, spec.name, started)
        self.session.queue.append(reply)
        connection.send(encode_command(args), reply)

    def _answer(self, spec: Spec, started: float, data: bytes) -> None:
        self.session.answer(spec.name, started, data)


def _fixed_tag(pattern: bytes) -> bool:
    """Every channel the pattern matches has the same hash tag: one fixed before any glob."""
    start = pattern.find(b"{")
    end = pattern.find(b"}", start + 1) if start >= 0 else -1
    return end > start + 1 and not any(c in pattern[: end + 1] for c in b"*?[\\")


MESSAGES = (b"$7\r\nmessage\r\n", b"$8\r\npmessage\r\n", b"$8\r\nsmessage\r\n")


def _is_message(span: bytes) -> bool:
    """A published message (`*3` or `>3` then "message", `*4` "pmessage", ...), not a
    reply to the client's (UN)SUBSCRIBE or PING."""
    header_end = span.find(b"\r\n")
    return span[header_end + 2 : header_end + 16].startswith(MESSAGES)

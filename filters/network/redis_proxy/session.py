"""One client connection of redis_proxy: parse commands, route them, answer in order."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import deque
from typing import TYPE_CHECKING

from filters.network.api import (
    CONTINUE,
    STOP,
    ConnectionCallbacks,
    FilterStatus,
    NetworkFilter,
)
from filters.network.redis_proxy.commands import (
    CROSS_SHARD,
    CROSS_SLOT,
    Kind,
    Spec,
    arity_error,
    hash_tag,
    unknown_command,
)
from filters.network.redis_proxy.local import LOCAL
from filters.network.redis_proxy.pinned import Pinning
from filters.network.redis_proxy.replies import (
    ClusterReply,
    Part,
    Reply,
    Split,
    cluster_slot,
)
from filters.network.redis_proxy.stats import OTHER
from protocols.redis.encode import encode_command, error_span
from protocols.redis.errors import RespError
from protocols.redis.requests import RequestParser

if TYPE_CHECKING:
    from filters.network.redis_proxy.filter import RedisShared
    from proxy.upstream.endpoint import Endpoint
    from proxy.upstream.redis_pool import RedisPool

log = logging.getLogger("mecha.redis_proxy")

MAX_QUEUED = 10_000
"""Replies a client may have outstanding before the proxy stops reading its commands."""


class RedisSession(NetworkFilter):
    __slots__ = ("_closing", "_dispatching", "_flush_scheduled", "_loop", "_out", "_paused",
                 "_unread",
                 "authenticated", "callbacks", "name", "parser", "pinned", "pinning", "queue",
                 "resp3", "shared")  # fmt: skip

    def __init__(self, shared: RedisShared, callbacks: ConnectionCallbacks) -> None:
        self.shared = shared
        self.callbacks = callbacks
        self.parser = RequestParser(shared.config.limits)
        self.queue: deque[Reply] = deque()
        self.authenticated = shared.config.password is None
        self.resp3 = False
        self.name: bytes | None = None
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._dispatching = False
        self._closing = False
        self._paused = False
        self._unread: int | None = None
        """Reply bytes written since the write buffer passed its high watermark (None:
        below it): what the client has not taken, for client_output_buffer_limit."""
        self.pinning: Pinning | None = None
        """Connections of this client's own (transactions, blocking), made on first use."""
        self.pinned = False
        """Its commands go through `pinning` first (in a transaction, WATCH or blocked)."""

    @property
    def closing(self) -> bool:
        return self._closing

    # -- network filter ---------------------------------------------------------------------

    def on_new_connection(self) -> FilterStatus:
        self.callbacks.set_idle_timeout(self.shared.config.idle_timeout)
        return CONTINUE

    def on_data(self, data: bytes, end_stream: bool) -> FilterStatus:
        if data and not self._closing:
            broken: RespError | None = None
            try:
                commands = self.parser.feed(data)
            except RespError as error:
                broken, commands = error, error.commands  # Redis runs what came before
            self._dispatch_all(commands)
            if self.shared.retired:  # its cluster went: the client reconnects to the new one
                self.close_after_replies()
            if broken is not None:
                self.shared.stats.protocol_errors += 1
                self.answer(OTHER, self._loop.time(), broken.reply)
                self.close_after_replies()
                return STOP
            if len(self.queue) > MAX_QUEUED and not self._paused:
                self._paused = True
                self.callbacks.read_disable(True)
        if end_stream:
            if self.pinning is not None and self.pinning.blocked:
                self.callbacks.close()  # it would wait forever: Redis drops such a client too
            else:
                self.close_after_replies()
        return STOP

    def _dispatch_all(self, commands: list[list[bytes]]) -> None:
        loop_time = self._loop.time()
        self._dispatching = True  # answers made while dispatching leave in one write
        try:
            for args in commands:
                if self.closing:  # QUIT
                    break
                self.dispatch(args, loop_time)
        finally:
            self._dispatching = False
        if self._out:
            self._flush()

    def on_above_write_buffer_high_watermark(self) -> None:
        self._unread = 0
        self.callbacks.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self._unread = None
        self.callbacks.read_disable(False)

    # -- routing -------------------------------------------------------------------------------

    def dispatch_held(self, held: list[list[bytes]]) -> None:
        """Commands that waited behind a blocking one, dispatched now it is answered."""
        if not self._closing:
            self._dispatch_all(held)

    def dispatch(self, args: list[bytes], started: float) -> None:
        if self.pinned:
            self._dispatch_pinned(args, started)
            return
        shared = self.shared
        spec = shared.commands.lookup(args[0])
        if spec is None:
            self.answer(OTHER, started, unknown_command(args))
            return
        name = spec.name
        if not self.authenticated and name not in (b"AUTH", b"HELLO", b"QUIT"):
            self.answer(name, started, b"-NOAUTH Authentication required.\r\n")
            return
        if spec.single_key and len(args) > 1 and shared.hashed_by_tag:
            # The hot path: one key, sharded by the hash of its {hash tag}.
            if shared.filtering and not shared.allows(name):
                self.answer(
                    name, started, error_span(f"{name.decode()} is not allowed by the proxy")
                )
                return
            endpoint = shared.ring.choose_hash(shared.hash(hash_tag(args[1])))
            if endpoint is None:
                self.answer(name, started, error_span("the cluster has no endpoints"))
                return
            reply = Reply(self, name, started)
            self.queue.append(reply)
            shared.pools[self.resp3](endpoint).send(encode_command(args), reply)
            return
        if spec.kind is Kind.CONTAINER:
            sub = spec.subcommand(args)
            if isinstance(sub, bytes):
                self.answer(name, started, sub)
                return
            spec = sub
        self.dispatch_other(spec, args, started)

    def _dispatch_pinned(self, args: list[bytes], started: float) -> None:
        """In a transaction, under WATCH or blocked: `pinning` decides (see pinned.py)."""
        pinning = self.pinning
        assert pinning is not None
        if pinning.hold(args):
            return
        spec = self.shared.commands.lookup(args[0])
        if spec is None:
            pinning.mark_dirty()
            self.answer(OTHER, started, unknown_command(args))
            return
        if not self.authenticated and spec.name not in (b"AUTH", b"HELLO", b"QUIT"):
            self.answer(spec.name, started, b"-NOAUTH Authentication required.\r\n")
            return
        if spec.kind is Kind.CONTAINER:
            sub = spec.subcommand(args)
            if isinstance(sub, bytes):
                pinning.mark_dirty()
                self.answer(spec.name, started, sub)
                return
            spec = sub
        pinning.dispatch(spec, args, started)

    def dispatch_other(self, spec: Spec, args: list[bytes], started: float) -> None:
        name, kind = spec.name, spec.kind
        if kind is Kind.TRANSACTION or kind is Kind.PUBSUB or spec.blocks(args):
            self._pin(spec, args, started)
        elif kind is Kind.LOCAL:
            self.answer(name, started, LOCAL.run(self, name, args))
        elif kind is Kind.REFUSED:
            shown = spec.full.replace("|", " ").upper()
            reason = f"{shown} is not supported by the proxy: {spec.reason}"
            self.answer(name, started, error_span(reason))
        elif self.shared.filtering and not self.shared.allows(name):
            self.answer(name, started, error_span(f"{name.decode()} is not allowed by the proxy"))
        elif not spec.arity_ok(len(args)):
            self.answer(name, started, arity_error(spec.full))
        elif kind is Kind.ANY:
            self._forward_anywhere(name, args, started)
        else:
            self._forward_keyed(name, spec, args, started)

    def _pin(self, spec: Spec, args: list[bytes], started: float) -> None:
        """A transaction or a blocking command: on a connection of this client's own."""
        if self.shared.slot_map is not None:
            reason = (
                "transactions and blocking commands need a sharded (not redis_cluster) upstream"
            )
            self.answer(spec.name, started, error_span(f"{spec.full.upper()} is not supported "
                                                       f"by the proxy: {reason}"))  # fmt: skip
            return
        if self.shared.filtering and not self.shared.allows(spec.name):
            self.answer(spec.name, started, error_span(
                f"{spec.name.decode()} is not allowed by the proxy"))  # fmt: skip
            return
        if not spec.arity_ok(len(args)):
            self.answer(spec.name, started, arity_error(spec.full))
            return
        if self.pinning is None:
            self.pinning = Pinning(self)
        if spec.kind is Kind.TRANSACTION or spec.kind is Kind.PUBSUB:
            self.pinning.dispatch(spec, args, started)
        else:
            self.pinning.block(spec, args, started)

    def _forward_keyed(self, name: bytes, spec: Spec, args: list[bytes], started: float) -> None:
        positions = spec.positions(args)
        if isinstance(positions, bytes):
            self.answer(name, started, positions)
            return
        if not positions:  # (EVAL with no keys; or bad arguments, which any shard refuses)
            self._forward_anywhere(name, args, started)
            return
        shared = self.shared
        if shared.slot_map is not None:
            self._forward_cluster(name, spec, args, positions, started)
            return
        groups: dict[Endpoint, list[int]] = {}
        for index, position in enumerate(positions):
            endpoint = shared.ring.choose_hash(shared.hash(shared.tag(args[position])))
            if endpoint is None:
                self.answer(name, started, error_span("the cluster has no endpoints"))
                return
            groups.setdefault(endpoint, []).append(index)
        if len(groups) == 1:
            self._send(name, args, started, shared.pools[self.resp3](next(iter(groups))))
        elif spec.kind is Kind.SPLIT:
            self._split(name, spec, args, positions, groups, started)
        else:
            self.answer(name, started, CROSS_SHARD)

    def _send(self, name: bytes, args: list[bytes], started: float, pool: RedisPool | None) -> None:
        if pool is None:
            self.answer(name, started, error_span("no upstream for this key"))
            return
        reply = Reply(self, name, started)
        self.queue.append(reply)
        pool.send(encode_command(args), reply)

    def loop_time(self) -> float:
        return self._loop.time()

    def forward_anywhere(self, name: bytes, args: list[bytes], started: float) -> None:
        self._forward_anywhere(name, args, started)

    def _forward_anywhere(self, name: bytes, args: list[bytes], started: float) -> None:
        endpoint = self.shared.any_endpoint()
        pool = self.shared.pools[self.resp3](endpoint) if endpoint is not None else None
        self._send(name, args, started, pool)

    def _split(self, name: bytes, spec: Spec, args: list[bytes], positions: list[int],
               groups: dict[Endpoint, list[int]], started: float) -> None:  # fmt: skip
        split = Split(self, name, started, len(groups), spec.merge)
        self.queue.append(split)
        for index, (endpoint, keys) in enumerate(groups.items()):
            completion = Part(self, split.part(index, keys))
            command = encode_command(_part_args(args, spec, positions, keys))
            self.shared.pools[self.resp3](endpoint).send(command, completion)

    def _forward_cluster(self, name: bytes, spec: Spec, args: list[bytes], positions: list[int],
                         started: float) -> None:  # fmt: skip
        slots: dict[int, list[int]] = {}
        for index, position in enumerate(positions):
            slots.setdefault(cluster_slot(args[position]), []).append(index)
        shared = self.shared
        if len(slots) == 1:
            slot = next(iter(slots))
            command = encode_command(args)
            reply = ClusterReply(self, name, started, command, slot)
            self.queue.append(reply)
            shared.send_to_slot(slot, command, reply, self.resp3)
            return
        if spec.kind is not Kind.SPLIT:
            self.answer(name, started, CROSS_SLOT)
            return
        split = Split(self, name, started, len(slots), spec.merge)
        self.queue.append(split)
        for index, (slot, keys) in enumerate(slots.items()):
            command = encode_command(_part_args(args, spec, positions, keys))
            part = ClusterReply(self, name, started, command, slot, split.part(index, keys))
            shared.send_to_slot(slot, command, part, self.resp3)

    # -- answering ------------------------------------------------------------------------------

    def answer(self, name: bytes, started: float, data: bytes) -> None:
        """A reply the proxy makes itself, in order with the forwarded ones."""
        reply = Reply(self, name, started)
        reply.data = data
        self.queue.append(reply)
        self.reply_ready()

    def reply_ready(self) -> None:
        queue = self.queue
        if not queue or queue[0].data is None:
            return
        out = self._out
        record = self.shared.record
        now = self._loop.time()
        while queue and (data := queue[0].data) is not None:
            reply = queue.popleft()
            out.append(data)
            record(reply, data, now)
        if not queue and not self._dispatching:
            self._flush()  # nothing else is coming for this client: write now
        elif not self._flush_scheduled and not self._dispatching:
            self._flush_scheduled = True  # more replies due: gather them for one write
            self._loop.call_soon(self._flush)
        if self._paused and len(queue) < MAX_QUEUED // 2:
            self._paused = False
            self.callbacks.read_disable(False)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out:
            out, self._out = self._out, []
            data = out[0] if len(out) == 1 else b"".join(out)
            if self._unread is not None and self._over_output_limit(len(data)):
                return
            self.callbacks.write(data)
        if self._closing and not self.queue:
            self.callbacks.close()

    def _over_output_limit(self, size: int) -> bool:
        """Replies keep coming for commands sent before the client stopped reading: past the
        limit, it is closed (what it sent is dropped with it, as Redis does)."""
        assert self._unread is not None
        self._unread += size
        limit = self.shared.config.client_output_buffer_limit
        if not limit or self._unread <= limit:
            return False
        self.shared.stats.output_buffer_closed += 1
        log.warning("%s: closing %s: over client_output_buffer_limit (%d bytes of replies "
                    "unread)", self.shared.stats.listener, self.callbacks.info.downstream_remote,
                    self._unread)  # fmt: skip
        self.callbacks.close(abort=True)
        self.on_close()  # (now: replies still due in this loop turn are dropped)
        return True

    def refused_by_upstream(self) -> None:
        """Redis answered one of this client's commands with a protocol error and closed
        the shared connection (only this client's command was lost): close this client, as
        Redis would have, once its replies are out."""
        if self._closing:
            return
        self.shared.stats.protocol_errors += 1
        log.warning("%s: closing %s: a command of its made the upstream close its connection "
                    "with a protocol error", self.shared.stats.listener,
                    self.callbacks.info.downstream_remote)  # fmt: skip
        self.close_after_replies()

    def close_after_replies(self) -> None:
        self._closing = True
        if not self.queue and not self._flush_scheduled:
            self._flush()

    def close_if_idle(self) -> bool:
        """No reply due and no command partly received: close (the client reconnects)."""
        if self._closing or self.queue or self._out or self.parser.buffered:
            return False
        self.close_after_replies()
        return True

    def on_close(self) -> None:
        self._closing = True
        self.queue.clear()  # replies still on their way are dropped by their completions
        if self.pinning is not None:
            self.pinning.close()
            self.pinning = None

    # -- authentication (used by LocalCommands) ----------------------------------------------

    def check_password(self, username: bytes | None, password: bytes) -> bool:
        config = self.shared.config
        expected_user = (config.username or "default").encode()
        user_ok = hmac.compare_digest(username or b"default", expected_user)
        password_ok = hmac.compare_digest(password, (config.password or "").encode())
        return user_ok and password_ok


def _part_args(args: list[bytes], spec: Spec, positions: list[int], keys: list[int]) -> list[bytes]:
    """The command for one shard of a split: its keys (with their values, MSET's
    keystep 2), in the order they came."""
    step = spec.keystep
    part = args[: positions[0]]
    for key in keys:
        position = positions[key]
        part.extend(args[position : position + step])
    return part

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
from filters.network.redis_proxy.commands import Kind, Spec, hash_tag, keys_of, lookup
from filters.network.redis_proxy.local import LOCAL
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
                 "authenticated", "callbacks", "name", "parser", "queue", "resp3",
                 "shared")  # fmt: skip

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
        self.callbacks.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        self.callbacks.read_disable(False)

    # -- routing -------------------------------------------------------------------------------

    def dispatch(self, args: list[bytes], started: float) -> None:
        spec = lookup(args[0])
        if spec is None:
            self.answer(OTHER, started, error_span(f"unknown command '{_text(args[0])}'"))
            return
        name = spec.name
        if not self.authenticated and name not in (b"AUTH", b"HELLO", b"QUIT"):
            self.answer(name, started, b"-NOAUTH Authentication required.\r\n")
            return
        shared = self.shared
        if spec.single_key and len(args) > 1 and shared.slot_map is None:
            # The hot path: one key, sharded by hash.
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
        kind = spec.kind
        if kind is Kind.LOCAL:
            self.answer(name, started, LOCAL.run(self, name, args))
        elif kind is Kind.REFUSED:
            reason = f"{name.decode()} is not supported by the proxy: {spec.reason}"
            self.answer(name, started, error_span(reason))
        elif shared.filtering and not shared.allows(name):
            self.answer(name, started, error_span(f"{name.decode()} is not allowed by the proxy"))
        elif kind is Kind.ANY:
            self._forward_anywhere(name, args, started)
        else:
            self._forward_keyed(name, spec, args, started)

    def _forward_keyed(self, name: bytes, spec: Spec, args: list[bytes], started: float) -> None:
        keys = keys_of(spec, args)
        if not keys:
            if spec.kind is Kind.EVAL and len(args) >= 3 and args[2] == b"0":
                self._forward_anywhere(name, args, started)
                return
            self.answer(name, started, error_span(
                f"wrong number of arguments for '{name.decode().lower()}' command"))  # fmt: skip
            return
        shared = self.shared
        if shared.slot_map is not None:
            self._forward_cluster(name, spec, args, keys, started)
            return
        groups: dict[Endpoint, list[int]] = {}
        for index, key in enumerate(keys):
            endpoint = shared.ring.choose_hash(shared.hash(hash_tag(key)))
            if endpoint is None:
                self.answer(name, started, error_span("the cluster has no endpoints"))
                return
            groups.setdefault(endpoint, []).append(index)
        if len(groups) == 1:
            self._send(name, args, started, shared.pools[self.resp3](next(iter(groups))))
        elif spec.kind is Kind.SPLIT:
            self._split(name, spec, args, groups, started)
        else:
            self.answer(name, started, error_span(_cross_shard(name)))

    def _send(self, name: bytes, args: list[bytes], started: float, pool: RedisPool | None) -> None:
        if pool is None:
            self.answer(name, started, error_span("no upstream for this key"))
            return
        reply = Reply(self, name, started)
        self.queue.append(reply)
        pool.send(encode_command(args), reply)

    def _forward_anywhere(self, name: bytes, args: list[bytes], started: float) -> None:
        endpoint = self.shared.any_endpoint()
        pool = self.shared.pools[self.resp3](endpoint) if endpoint is not None else None
        self._send(name, args, started, pool)

    def _split(self, name: bytes, spec: Spec, args: list[bytes],
               groups: dict[Endpoint, list[int]], started: float) -> None:  # fmt: skip
        split = Split(self, name, started, len(groups))
        self.queue.append(split)
        per_key = spec.step
        for index, (endpoint, positions) in enumerate(groups.items()):
            part_args = [name]
            for position in positions:
                start = spec.first + position * per_key
                part_args.extend(args[start : start + per_key])
            completion = Part(self, split.part(index, positions))
            self.shared.pools[self.resp3](endpoint).send(encode_command(part_args), completion)

    def _forward_cluster(self, name: bytes, spec: Spec, args: list[bytes], keys: list[bytes],
                         started: float) -> None:  # fmt: skip
        slots: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            slots.setdefault(cluster_slot(key), []).append(index)
        shared = self.shared
        if len(slots) == 1:
            slot = next(iter(slots))
            command = encode_command(args)
            reply = ClusterReply(self, name, started, command, slot)
            self.queue.append(reply)
            shared.send_to_slot(slot, command, reply, self.resp3)
            return
        if spec.kind is not Kind.SPLIT:
            self.answer(
                name, started, b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
            )
            return
        split = Split(self, name, started, len(slots))
        self.queue.append(split)
        for index, (slot, positions) in enumerate(slots.items()):
            part_args = [name]
            for position in positions:
                start = spec.first + position * spec.step
                part_args.extend(args[start : start + spec.step])
            command = encode_command(part_args)
            part = ClusterReply(self, name, started, command, slot, split.part(index, positions))
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
            self.callbacks.write(out[0] if len(out) == 1 else b"".join(out))
        if self._closing and not self.queue:
            self.callbacks.close()

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

    # -- authentication (used by LocalCommands) ----------------------------------------------

    def check_password(self, username: bytes | None, password: bytes) -> bool:
        config = self.shared.config
        expected_user = (config.username or "default").encode()
        user_ok = hmac.compare_digest(username or b"default", expected_user)
        password_ok = hmac.compare_digest(password, (config.password or "").encode())
        return user_ok and password_ok


def _text(name: bytes) -> str:
    return name[:64].decode("utf-8", "replace")


def _cross_shard(name: bytes) -> str:
    return (f"{name.decode()} keys live on different shards; the proxy cannot run it across "
            "shards (use {hash tags} to keep them together)")  # fmt: skip

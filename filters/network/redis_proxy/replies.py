"""What stands in a client's reply queue: one object per command, answered in order.

`Reply` is filled by an upstream connection (it is the pool's Completion) or at once by
the proxy. `ClusterReply` follows MOVED / ASK. `Split` fans a multi-key command out to
several shards and merges the answers in key order.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING

from filters.network.redis_proxy.commands import hash_tag
from protocols.redis.encode import encode_array, encode_integer, error_span
from protocols.redis.replies import array_elements, reply_integer, reply_is_error
from proxy.config.units import parse_address

if TYPE_CHECKING:
    from filters.network.redis_proxy.session import RedisSession

OK = b"+OK\r\n"
MAX_REDIRECTS = 5


class Reply:
    __slots__ = ("data", "name", "session", "started")

    def __init__(self, session: RedisSession, name: bytes, started: float) -> None:
        self.session = session
        self.name = name
        self.started = started
        self.data: bytes | None = None

    def complete(self, reply: bytes) -> None:
        self.data = reply
        self.session.reply_ready()

    def refused(self) -> None:
        self.session.refused_by_upstream()


class ClusterReply(Reply):
    """A command to a Redis Cluster node: follows redirections before answering.

    With `on_final` it is one part of a Split and hands its final answer there instead.
    """

    __slots__ = ("command", "on_final", "redirects", "slot")

    def __init__(
        self, session: RedisSession, name: bytes, started: float, command: bytes, slot: int,
        on_final: Callable[[bytes], None] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(session, name, started)
        self.command = command
        self.slot = slot
        self.redirects = 0
        self.on_final = on_final

    def complete(self, reply: bytes) -> None:
        if reply[:1] == b"-" and self.redirects < MAX_REDIRECTS and self._redirect(reply):
            return
        if self.on_final is not None:
            self.on_final(reply)
        else:
            super().complete(reply)

    def _redirect(self, reply: bytes) -> bool:
        words = reply[1:].split()
        if len(words) < 3 or words[0] not in (b"MOVED", b"ASK"):
            if words and words[0] in (b"TRYAGAIN", b"CLUSTERDOWN"):
                self.session.shared.refresh_cluster()
            return False
        try:
            address = parse_address(words[2].decode())
        except (UnicodeDecodeError, ValueError):
            return False
        self.redirects += 1
        shared = self.session.shared
        if words[0] == b"MOVED":
            endpoint = shared.moved(int(words[1]), address)
            shared.pools[self.session.resp3](endpoint).send(self.command, self)
        else:
            endpoint = shared.endpoint_at(address)
            shared.pools[self.session.resp3](endpoint).send_asking(self.command, self)
        return True


def cluster_slot(key: bytes) -> int:
    """Redis Cluster's slot: CRC16 (XMODEM, i.e. crc_hqx) of the hash tag, mod 16384."""
    return binascii.crc_hqx(hash_tag(key), 0) & 16383


class Split(Reply):
    """A command Redis lets a client split per shard (MGET, MSET, DEL, UNLINK, EXISTS,
    TOUCH: request_policy multi_shard) over keys living on several shards; `merge` says how
    the parts' replies combine: "sum" (agg_sum), "ok" (all_succeeded), "array" (in key
    order)."""

    __slots__ = ("_answers", "_merge_by", "_missing", "_positions")

    def __init__(
        self, session: RedisSession, name: bytes, started: float, parts: int, merge: str
    ) -> None:
        super().__init__(session, name, started)
        self._merge_by = merge
        self._answers: list[bytes | None] = [None] * parts
        self._positions: list[list[int]] = [[] for _ in range(parts)]
        self._missing = parts

    def part(self, index: int, positions: list[int]) -> Callable[[bytes], None]:
        """The completion for part `index`, whose keys sit at `positions` of the command."""
        self._positions[index] = positions

        def complete(reply: bytes) -> None:
            self._answers[index] = reply
            self._missing -= 1
            if self._missing == 0:
                Reply.complete(self, self._merge())

        return complete

    def _merge(self) -> bytes:
        answers = [a for a in self._answers if a is not None]
        for answer in answers:
            if reply_is_error(answer):
                return answer
        if self._merge_by == "ok":
            return answers[0]
        if self._merge_by == "array":
            return self._merge_arrays(answers)
        total = 0
        for answer in answers:
            count = reply_integer(answer)
            if count is None:
                return error_span(f"unexpected reply to {self.name.decode()} from a shard")
            total += count
        return encode_integer(total)

    def _merge_arrays(self, answers: list[bytes]) -> bytes:
        size = sum(len(p) for p in self._positions)
        merged: list[bytes] = [b""] * size
        for answer, positions in zip(answers, self._positions, strict=True):
            elements = array_elements(answer)
            if elements is None or len(elements) != len(positions):
                return error_span(f"unexpected reply to {self.name.decode()} from a shard")
            for position, element in zip(positions, elements, strict=True):
                merged[position] = element
        return encode_array(merged)


class Part:
    """A Completion that hands its reply to a Split."""

    __slots__ = ("complete", "session")

    def __init__(self, session: RedisSession, complete: Callable[[bytes], None]) -> None:
        self.session = session
        self.complete = complete

    def refused(self) -> None:
        self.session.refused_by_upstream()

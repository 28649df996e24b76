"""Learning the upstream's commands: `COMMAND` asked once, when the first client connects.

What a server says of its commands (key specs, flags, tips) replaces the built-in table's
entries, so the commands of a newer Redis are routed without a change to the proxy. An
upstream older than 7 describes keys only by first/last/step: from it the proxy takes just
the commands it did not know, by those. Until an answer comes, or when the upstream
refuses (an ACL without +command), the built-in table serves; a failure is retried on a
later connection, at most every RETRY seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import hiredis

from filters.network.redis_proxy.commands import BUILTIN
from filters.network.redis_proxy.keyspecs import CommandInfo, KeySpec, from_reply
from protocols.redis.encode import encode_command

if TYPE_CHECKING:
    from filters.network.redis_proxy.filter import RedisShared

log = logging.getLogger("mecha.redis_proxy")

RETRY = 30.0
COMMAND = encode_command((b"COMMAND",))


class CommandLearner:
    """The pool's Completion for the proxy's own COMMAND; owned by its RedisShared."""

    __slots__ = ("_retry_at", "_state", "shared")

    def __init__(self, shared: RedisShared) -> None:
        self.shared = shared
        self._state = "new"  # new, asking, learned
        self._retry_at = 0.0

    @property
    def learned(self) -> bool:
        return self._state == "learned"

    def start(self) -> None:
        """Ask an upstream, unless asked already or a failure is too recent."""
        if self._state != "new" or asyncio.get_running_loop().time() < self._retry_at:
            return
        endpoint = self.shared.any_endpoint()
        if endpoint is None:
            return
        self._state = "asking"
        self.shared.pools[0](endpoint).send(COMMAND, self)

    def complete(self, reply: bytes) -> None:
        try:
            infos = parse(reply)
        except ValueError as error:
            self._state = "new"
            self._retry_at = asyncio.get_running_loop().time() + RETRY
            log.warning("%s: could not learn the upstream's commands (the built-in table of "
                        "Redis 7.0 serves): %s", self.shared.stats.listener, error)  # fmt: skip
            return
        self._state = "learned"
        table = self.shared.commands
        new = sorted(set(infos) - set(table.infos))
        self.shared.commands = table.learned(infos)
        log.info("%s: learned %d commands from the upstream%s", self.shared.stats.listener,
                 len(infos), f" (new: {' '.join(new)})" if new else "")  # fmt: skip

    def refused(self) -> None:
        pass


def parse(reply: bytes) -> dict[str, CommandInfo]:
    """A raw COMMAND reply -> the commands to learn from it (see the module doc)."""
    reader = hiredis.Reader()
    try:
        reader.feed(reply)
        value = reader.gets()
    except hiredis.ProtocolError as error:
        raise ValueError(f"COMMAND answered bad RESP: {error}") from error
    if isinstance(value, hiredis.ReplyError):
        raise ValueError(f"COMMAND answered {value}")
    if not isinstance(value, list):
        raise ValueError("COMMAND answered something other than an array")
    if any(isinstance(entry, list) and len(entry) > 8 for entry in value):
        return from_reply(value)
    return _legacy(value)


def _legacy(reply: list[Any]) -> dict[str, CommandInfo]:
    """Redis < 7: keys as first, last, step (last negative: counted from the end)."""
    infos = {}
    for entry in reply:
        info = next(iter(from_reply([entry]).values()))
        if info.name in BUILTIN.infos:
            continue
        try:
            first, last, step = int(entry[3]), int(entry[4]), int(entry[5])
        except (TypeError, ValueError):
            continue
        specs: tuple[KeySpec, ...] = ()
        if first > 0:
            movable = frozenset({"incomplete"} if "movablekeys" in info.flags else ())
            lastkey = last - first if last >= 0 else last
            specs = (KeySpec(movable, "index", index=first, find="range", lastkey=lastkey,
                             keystep=step),)  # fmt: skip
        infos[info.name] = CommandInfo(info.name, info.arity, info.flags, info.categories,
                                       info.tips, specs)  # fmt: skip
    return infos

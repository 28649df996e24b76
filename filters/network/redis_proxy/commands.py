"""What the proxy knows about Redis commands: where the keys are, and what it cannot do.

Every command is classified from Redis's own description of it (`COMMAND`: flags, ACL
categories, tips and key specs; see keyspecs.py), so a command a newer Redis adds is routed
without a change here. The built-in table comes from redis-server 7.0 (command_data.py);
the proxy replaces it with what its upstream says when it first connects (`CommandTable`).

A command is one of:
- LOCAL: answered by the proxy (PING, ECHO, SELECT 0, AUTH, HELLO, CLIENT ..., QUIT, INFO);
- ANY: keyless, sent to any one shard (COMMAND, TIME, ...), the answer being the same;
- KEYED: routed by its keys, which must all live on one shard;
- SPLIT: keyed, and Redis's tips say it may be split per shard (request_policy:multi_shard)
  with replies the proxy knows how to merge (MGET, MSET, DEL, EXISTS, UNLINK, TOUCH);
- CONTAINER: the subcommand (XGROUP CREATE, OBJECT ENCODING, ...) decides;
- TRANSACTION (MULTI, EXEC, DISCARD, WATCH, UNWATCH) and BLOCKING (BLPOP, XREAD BLOCK, ...):
  keyed, run on a connection of the client's own (pinned.py);
- REFUSED: cannot work across shards or on a shared connection; answered with -ERR and
  the reason, never forwarded.
A command in no table is refused as unknown: forwarding a command whose keys the proxy
cannot see could send it to the wrong shard.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from filters.network.redis_proxy.command_data import COMMANDS
from filters.network.redis_proxy.keyspecs import CommandInfo, KeySpec, from_lines, key_positions
from protocols.redis.encode import error_span


class Kind(enum.Enum):
    LOCAL = "local"
    ANY = "any"
    KEYED = "keyed"
    SPLIT = "split"
    CONTAINER = "container"
    TRANSACTION = "transaction"
    BLOCKING = "blocking"
    PUBSUB = "pubsub"
    REFUSED = "refused"


Positions = Callable[["Spec", Sequence[bytes]], "list[int] | bytes"]
"""Where a command's keys are (indexes into its arguments), or the error to answer."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: bytes
    """The command's upper-case name (a subcommand's container's), also the stats label."""
    kind: Kind
    full: str = ""
    """Redis's full lower-case name (`xgroup|create`), for error texts."""
    arity: int = 0
    key_specs: tuple[KeySpec, ...] = ()
    reason: str = ""
    merge: str = ""
    """SPLIT: how the parts' replies combine (sum, ok, array)."""
    subcommands: Mapping[bytes, Spec] = field(default_factory=dict)
    finder: Positions | None = None
    """A command whose key specs Redis leaves incomplete (SORT): finds its keys by hand."""
    block_keyword: bytes = b""
    """BLOCKING only with this option before STREAMS (XREAD BLOCK); empty: always."""
    single_key: bool = field(default=False, init=False)
    """The common case, routed without slicing: exactly one key, at index 1."""

    def __post_init__(self) -> None:
        specs = self.key_specs
        single = (self.kind is Kind.KEYED and len(specs) == 1 and specs[0].complete
                  and specs[0].begin == "index" and specs[0].index == 1
                  and specs[0].find == "range" and specs[0].lastkey == 0)  # fmt: skip
        object.__setattr__(self, "single_key", single and self.finder is None)

    @property
    def keystep(self) -> int:
        """Arguments per key (MSET: key and value), for splitting."""
        return self.key_specs[0].keystep if self.key_specs else 1

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def blocks(self, args: Sequence[bytes]) -> bool:
        if self.kind is not Kind.BLOCKING:
            return False
        if not self.block_keyword:
            return True
        for arg in args[1:]:
            word = arg.upper()
            if word == b"STREAMS":
                return False
            if word == self.block_keyword:
                return True
        return False

    def positions(self, args: Sequence[bytes]) -> list[int] | bytes:
        if self.finder is not None:
            return self.finder(self, args)
        return key_positions(self.key_specs, args)

    def subcommand(self, args: Sequence[bytes]) -> Spec | bytes:
        """A CONTAINER's subcommand named by args[1], or Redis's error."""
        sub = self.subcommands.get(args[1].lower() if len(args) > 1 else b"")
        if sub is None and len(args) < 2:
            return arity_error(self.full)
        if sub is None:
            text = args[1][:128].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
            return error_span(
                f"unknown subcommand '{text}'. Try {self.name.decode()} HELP."
            )  # fmt: skip
        return sub


def arity_error(full: str) -> bytes:
    return error_span(f"wrong number of arguments for '{full}' command")


def unknown_command(args: Sequence[bytes]) -> bytes:
    """Redis's own text (server.c processCommand), line breaks made spaces."""
    listed = ""
    for arg in args[1:]:
        if len(listed) >= 128:
            break
        listed += "'" + arg[: 128 - len(listed)].decode("utf-8", "replace") + "' "
    text = f"unknown command '{args[0][:128].decode('utf-8', 'replace')}', "
    text += f"with args beginning with: {listed}"
    return error_span(text.replace("\r", " ").replace("\n", " "))


# -- policy: what the proxy does with a command, from what Redis says of it -------------------

LOCAL = frozenset(("ping", "echo", "select", "auth", "hello", "client", "quit", "info", "reset"))

_SHARED = "it would block or change the shared upstream connection"
_CROSS = "it spans every shard"
_ADMIN = "it is an administrative command"
_PUBSUB = "publish/subscribe needs a connection of its own on every shard"
_HIDDEN = "the proxy cannot find all of its keys"

REFUSED = {
    # Decided by name where the description alone would say otherwise.
    **dict.fromkeys(("readonly", "readwrite", "asking"), _SHARED),
    **dict.fromkeys(("cluster", "restore-asking", "lastsave", "monitor", "migrate"), _ADMIN),
    "move": "the proxy serves database 0 only",
    **dict.fromkeys(("script", "function"), _CROSS),
}  # fmt: skip
ANY = frozenset(("command", "time", "lolwut"))
SUBSCRIBING = frozenset(("subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
                         "sunsubscribe"))  # fmt: skip
"""On a connection of the client's own, on the shard of its channels (pinned.py)."""
PUBLISHING = frozenset(("publish", "spublish"))
"""Routed by channel, as a key: to the shard where that channel's subscribers are."""
"""Keyless commands Redis files under @connection or @dangerous that any shard answers."""

MERGES = {"agg_sum": "sum", "all_succeeded": "ok", "": "array"}
"""Response policies of multi_shard commands whose parts the proxy can merge; the rest
(MSETNX's agg_min: all or nothing across shards) must keep their keys on one shard."""


def classify(info: CommandInfo, finders: Mapping[str, Positions]) -> Spec:
    if info.name in LOCAL:
        return _spec(info, Kind.LOCAL)
    if info.name in SUBSCRIBING:
        return _spec(info, Kind.PUBSUB)
    if info.name in PUBLISHING:
        channel = KeySpec(frozenset({"channel"}), "index", index=1, find="range")
        return replace(_spec(info, Kind.KEYED), key_specs=(channel,))
    reason = REFUSED.get(info.name) or _refusal(info, finders)
    if not reason and "@transaction" in info.categories:
        return _spec(info, Kind.TRANSACTION)
    if not reason and _blocking(info):
        return _spec(info, Kind.BLOCKING, block_keyword=BLOCK_KEYWORDS.get(info.name, b""))
    if reason:
        return _spec(info, Kind.REFUSED, reason=reason)
    if info.subcommands:
        subs = {n.encode(): classify(i, finders) for n, i in info.subcommands.items()}
        if info.arity == -1 and info.name in ANY:  # bare COMMAND: a command of its own
            subs[b""] = _spec(info, Kind.ANY)
        return _spec(info, Kind.CONTAINER, subcommands=subs)
    if not info.key_specs:
        return _spec(info, Kind.ANY)
    response = info.tip("response_policy")
    if info.tip("request_policy") == "multi_shard" and response in MERGES:
        return _spec(info, Kind.SPLIT, merge=MERGES[response])
    return _spec(info, Kind.KEYED, finder=finders.get(info.name))


def _spec(info: CommandInfo, kind: Kind, *, reason: str = "", merge: str = "",
          subcommands: Mapping[bytes, Spec] | None = None,
          finder: Positions | None = None, block_keyword: bytes = b"") -> Spec:  # fmt: skip
    return Spec(name=info.name.partition("|")[0].upper().encode(), kind=kind, full=info.name,
                arity=info.arity, key_specs=info.key_specs, reason=reason, merge=merge,
                subcommands=subcommands or {}, finder=finder,
                block_keyword=block_keyword)  # fmt: skip


def _blocking(info: CommandInfo) -> bool:
    """Keyed and blocking: pinned to a connection of the client's own while it waits."""
    blocking = "blocking" in info.flags or "@blocking" in info.categories
    return blocking and bool(info.key_specs) and all(s.complete for s in info.key_specs)


BLOCK_KEYWORDS = {"xread": b"BLOCK", "xreadgroup": b"BLOCK"}


def _refusal(info: CommandInfo, finders: Mapping[str, Positions]) -> str:
    """Why the proxy will not forward this command ("" when it will)."""
    flags, categories = info.flags, info.categories
    if "@transaction" in categories:
        return ""
    if "blocking" in flags or "@blocking" in categories:
        return "" if _blocking(info) else _SHARED
    if "@pubsub" in categories:
        return _PUBSUB
    if "admin" in flags or "@admin" in categories:
        return _ADMIN
    if info.subcommands or info.name.endswith("|help"):
        return ""
    if not info.key_specs:
        if info.tip("request_policy") in ("all_shards", "all_nodes", "special"):
            return _CROSS
        if "@keyspace" in categories:
            return _CROSS
        if info.name.partition("|")[0] in ANY:
            return ""
        if "@connection" in categories:
            return _SHARED
        if "@dangerous" in categories:
            return _ADMIN
        return ""
    if info.name not in finders and not all(spec.complete for spec in info.key_specs):
        return _HIDDEN
    return ""


# -- commands Redis describes with incomplete key specs ---------------------------------------


def _sort_positions(spec: Spec, args: Sequence[bytes]) -> list[int] | bytes:
    """SORT key [BY pattern] [GET pattern ...] [STORE destination]: the destination is a
    key; a BY / GET pattern names keys too, which can only be routed by a fixed hash tag
    (`weight_{user1}_*`), as Redis Cluster requires."""
    positions = [1] if len(args) > 1 else []
    index = 2
    while index < len(args) - 1:
        word = args[index].upper()
        if word == b"STORE":
            positions.append(index + 1)
        elif word in (b"BY", b"GET"):
            pattern = args[index + 1]
            if not _pattern_is_fixed(word, pattern):
                return error_span(
                    f"{word.decode()} option of SORT denied: the keys its pattern names may "
                    "live on different shards (give the pattern a {hash tag})"
                )
            if b"*" in pattern:
                positions.append(index + 1)
        index += 2 if word in (b"STORE", b"BY", b"GET", b"LIMIT") else 1
        if word == b"LIMIT":
            index += 1
    return positions


def _pattern_is_fixed(word: bytes, pattern: bytes) -> bool:
    if b"*" not in pattern or (word == b"GET" and pattern == b"#"):
        return True  # no key is looked up (BY nosort, GET #), or a constant one
    start = pattern.find(b"{")
    end = pattern.find(b"}", start + 1) if start >= 0 else -1
    return end > start + 1 and b"*" not in pattern[start + 1 : end]


FINDERS: dict[str, Positions] = {"sort": _sort_positions, "sort_ro": _sort_positions}


# -- tables -------------------------------------------------------------------------------------


class CommandTable:
    """Specs by name, in upper and lower case (clients usually send one of those: a
    dict lookup, no upper() per command)."""

    __slots__ = ("infos", "specs")

    def __init__(self, infos: Mapping[str, CommandInfo]) -> None:
        self.infos = dict(infos)
        specs: dict[bytes, Spec] = {}
        for name, info in self.infos.items():
            spec = classify(info, FINDERS)
            specs[name.encode()] = specs[name.upper().encode()] = spec
        self.specs = specs

    def lookup(self, name: bytes) -> Spec | None:
        spec = self.specs.get(name)
        return spec if spec is not None else self.specs.get(name.upper())

    def learned(self, infos: Mapping[str, CommandInfo]) -> CommandTable:
        """This table with what an upstream said of its commands in place of ours."""
        return CommandTable({**self.infos, **infos})


BUILTIN = CommandTable(from_lines(COMMANDS))
TABLE = BUILTIN.specs
lookup = BUILTIN.lookup


CROSS_SLOT = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
CROSS_SHARD = (b"-CROSSSLOT Keys in request don't hash to the same shard "
               b"(use {hash tags} to keep them together)\r\n")  # fmt: skip


def hash_tag(key: bytes) -> bytes:
    """The part of a key that decides its shard: the first non-empty `{...}`, as Redis does."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key

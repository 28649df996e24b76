"""redis_proxy's command table: keys found by Redis's key specs, classification, learning.

Tables of commands -> key positions (as Redis's COMMAND GETKEYS gives them; the integration
test checks routing against a real server), the policy for every kind of command, what an
upstream's COMMAND reply teaches (a newer Redis, an older one, garbage), and a fuzz of
the key finder and the reply parser: any input gives positions inside the arguments, an
error reply, or ValueError, nothing else.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.network.redis_proxy.commands import BUILTIN, Kind, Spec, unknown_command
from filters.network.redis_proxy.keyspecs import CommandInfo, KeySpec, from_lines
from filters.network.redis_proxy.learn import parse
from protocols.redis.encode import encode_bulk, encode_integer

EXAMPLES = int(os.environ.get("RESP_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec(name: str) -> Spec:
    found = BUILTIN.lookup(name.split("|")[0].encode())
    assert found is not None
    if "|" in name:
        return found.subcommands[name.split("|")[1].encode()]
    return found


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        ("GET k", [1]),
        ("MSET a 1 b 2 c 3", [1, 3, 5]),
        ("ZUNIONSTORE d 2 a b WEIGHTS 1 2", [1, 3, 4]),
        ("ZUNION 2 a b", [2, 3]),
        ("LMPOP 2 a b LEFT", [2, 3]),
        ("EVAL s 2 a b x", [3, 4]),
        ("EVAL s 0 x", []),
        ("EVAL s -1 x", []),
        ("SINTERCARD 3 a b c LIMIT 1", [2, 3, 4]),
        ("GEORADIUS g 1 2 3 km STORE d", [1, 7]),
        ("GEORADIUS g 1 2 3 km STOREDIST d", [1, 7]),
        ("GEORADIUS g 1 2 3 km", [1]),
        ("XREAD COUNT 2 STREAMS a b 0 0", [4, 5]),
        ("XREADGROUP GROUP g c STREAMS a >", [5]),
        ("XGROUP CREATE s g $", [2]),
        ("XINFO STREAM s", [2]),
        ("OBJECT ENCODING k", [2]),
        ("MEMORY USAGE k", [2]),
        ("SORT k", [1]),
        ("SORT k LIMIT 0 1 STORE d", [1, 6]),
        ("SORT k BY {t}w_* GET # GET {t}o_*", [1, 3, 7]),
        ("SORT k BY nosort", [1]),
        ("LMOVE a b LEFT RIGHT", [1, 2]),
        ("ZUNIONSTORE d 5 a", [1, 3]),  # numkeys past the end: Redis refuses, keys as found
    ],
)
def test_keys_are_found_by_key_specs(command: str, keys: list[int]) -> None:
    args = [word.encode() for word in command.split()]
    found = spec(args[0].decode().lower())
    if found.kind is Kind.CONTAINER:
        sub = found.subcommand(args)
        assert isinstance(sub, Spec)
        found = sub
    assert found.positions(args) == keys


def test_refusals_say_why() -> None:
    sort = spec("sort").positions([b"SORT", b"k", b"BY", b"w_*"])
    assert isinstance(sort, bytes) and b"{hash tag}" in sort


def test_xread_blocks_only_with_block() -> None:
    assert spec("xread").blocks([b"XREAD", b"BLOCK", b"0", b"STREAMS", b"a", b"0"])
    assert not spec("xread").blocks([b"XREAD", b"COUNT", b"1", b"STREAMS", b"block", b"0"])
    assert spec("blpop").blocks([b"BLPOP", b"q", b"0"]) and not spec("lpop").blocks([b"LPOP"])


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("get", Kind.KEYED), ("mget", Kind.SPLIT), ("mset", Kind.SPLIT), ("del", Kind.SPLIT),
        ("msetnx", Kind.KEYED), ("ping", Kind.LOCAL), ("client", Kind.LOCAL),
        ("time", Kind.ANY), ("command|count", Kind.ANY), ("object|help", Kind.ANY),
        ("xgroup", Kind.CONTAINER), ("xgroup|create", Kind.KEYED), ("multi", Kind.TRANSACTION),
        ("watch", Kind.TRANSACTION), ("blpop", Kind.BLOCKING), ("wait", Kind.REFUSED),
        ("keys", Kind.REFUSED), ("dbsize", Kind.REFUSED),
        ("subscribe", Kind.PUBSUB), ("publish", Kind.KEYED), ("pubsub|channels", Kind.REFUSED),
        ("config|set", Kind.REFUSED), ("move", Kind.REFUSED),
        ("migrate", Kind.REFUSED), ("readonly", Kind.REFUSED), ("xread", Kind.BLOCKING),
    ],
)  # fmt: skip
def test_policy_follows_what_redis_says_of_a_command(name: str, kind: Kind) -> None:
    assert spec(name).kind is kind


def test_hot_path_commands_are_single_key() -> None:
    assert spec("get").single_key and spec("set").single_key and spec("incr").single_key
    assert not spec("sort").single_key and not spec("lmove").single_key


def test_split_merges() -> None:
    assert {n: spec(n).merge for n in ("mget", "mset", "del", "exists", "touch", "unlink")} == {
        "mget": "array", "mset": "ok", "del": "sum", "exists": "sum", "touch": "sum",
        "unlink": "sum",
    }  # fmt: skip
    assert spec("mset").keystep == 2


def test_unknown_command_text_is_redis_own() -> None:
    assert unknown_command([b"FOO", b"a", b"b\r\nc"]) == (
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b  c' \r\n"
    )


def test_built_in_table_round_trips_through_its_lines() -> None:
    for info in BUILTIN.infos.values():
        assert CommandInfo.from_literal(info.to_literal()) == CommandInfo(
            info.name, info.arity, info.flags, info.categories, info.tips, info.key_specs
        )
    assert len(BUILTIN.infos) >= 240 and "xgroup" in BUILTIN.infos


# -- learning from an upstream ----------------------------------------------------------------


def entry(name: str, arity: int, first: int, last: int, step: int, flags: list[str],
          categories: list[str], specs: list[list[Any]] | None) -> bytes:  # fmt: skip
    """One COMMAND entry as Redis sends it (7: with tips, key specs and subcommands)."""
    parts: list[Any] = [name, arity, flags, first, last, step, categories]
    if specs is not None:
        parts += [[], specs, []]
    return _nested(parts)


def _nested(value: Any) -> bytes:
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_nested(v) for v in value)
    if isinstance(value, int):
        return encode_integer(value)
    return encode_bulk(value.encode())


NEW_SPEC = [["flags", ["RW"], "begin_search", ["type", "keyword", "spec",
             ["keyword", "INTO", "startfrom", 1]], "find_keys", ["type", "keynum", "spec",
             ["keynumidx", 0, "firstkey", 1, "keystep", 1]]]]  # fmt: skip


def test_a_newer_redis_teaches_its_commands() -> None:
    reply = b"*2\r\n" + entry("newmerge", -4, 0, 0, 0, ["write", "movablekeys"], ["@write"],
                              NEW_SPEC) + entry("get", 2, 1, 1, 1, ["readonly"], ["@read"],
                              [["flags", [], "begin_search", ["type", "index", "spec",
                               ["index", 1]], "find_keys", ["type", "range", "spec",
                               ["lastkey", 0, "keystep", 1, "limit", 0]]]])  # fmt: skip
    table = BUILTIN.learned(parse(reply))
    learned = table.lookup(b"NEWMERGE")
    assert learned is not None and learned.kind is Kind.KEYED
    assert learned.positions([b"NEWMERGE", b"x", b"INTO", b"2", b"a", b"b"]) == [4, 5]
    assert table.lookup(b"get") is not None and table.lookup(b"GET").single_key  # type: ignore[union-attr]
    assert table.lookup(b"xgroup") is not None  # the rest is kept


def test_an_older_redis_teaches_only_what_the_table_lacks() -> None:
    reply = (
        b"*2\r\n"
        + entry("get", 2, 0, 0, 0, [], [], None)
        + entry("oldcmd", 3, 1, 2, 1, ["write"], ["@write"], None)
    )
    learned = parse(reply)
    assert set(learned) == {"oldcmd"}
    assert learned["oldcmd"].key_specs == (
        KeySpec(frozenset(), "index", index=1, find="range", lastkey=1, keystep=1),
    )


@pytest.mark.parametrize(
    "reply", [b"-NOPERM no\r\n", b":1\r\n", b"*1\r\n:1\r\n", b"*1\r\n*1\r\n:1\r\n"]
)
def test_a_refusal_or_garbage_teaches_nothing(reply: bytes) -> None:
    with pytest.raises(ValueError):
        parse(reply)


# -- fuzz -------------------------------------------------------------------------------------

NAMES = sorted(n for n in (n.decode() for n in BUILTIN.specs) if n.islower())
WORDS = st.sampled_from([b"STORE", b"BY", b"GET", b"STREAMS", b"BLOCK", b"LIMIT", b"#", b"-1",
                         b"0", b"1", b"2", b"99999999999", b"{t}*", b"*", b"k"])  # fmt: skip
ARG = st.one_of(WORDS, st.binary(max_size=8))


@FUZZ
@given(name=st.sampled_from(NAMES), args=st.lists(ARG, max_size=12))
def test_any_arguments_give_keys_inside_them_or_an_error(name: str, args: list[bytes]) -> None:
    found = spec(name)
    command = [name.encode(), *args]
    if found.kind is Kind.CONTAINER:
        sub = found.subcommand(command)
        if isinstance(sub, bytes):
            assert sub.startswith(b"-ERR ")
            return
        found = sub
    positions = found.positions(command)
    if isinstance(positions, bytes):
        assert positions.startswith(b"-ERR ") and positions.endswith(b"\r\n")
    else:
        assert all(0 < p < len(command) for p in positions)


VALUES = st.recursive(
    st.one_of(st.integers(-5, 5), st.binary(max_size=6),
              st.sampled_from([b"type", b"index", b"keyword", b"range", b"keynum", b"spec"])),
    lambda inner: st.lists(inner, max_size=10), max_leaves=40,
)  # fmt: skip


@FUZZ
@given(value=st.lists(VALUES, max_size=4))
def test_any_command_reply_parses_or_raises_value_error(value: list[Any]) -> None:
    try:
        infos = parse(_nested_values(value))
    except ValueError:
        return
    BUILTIN.learned(infos)


def _nested_values(value: Any) -> bytes:
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_nested_values(v) for v in value)
    if isinstance(value, int):
        return encode_integer(value)
    return encode_bulk(value)


def test_lines_group_subcommands() -> None:
    infos = from_lines(
        [("c", -2, "", "", "", ()), ("c|s", 3, "", "", "", ("-|index 2|range 0 1 0",))]
    )
    assert infos["c"].subcommands["s"].key_specs[0].index == 2

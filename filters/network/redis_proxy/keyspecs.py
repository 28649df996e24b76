"""Redis's own description of its commands (COMMAND, Redis 7 key specifications).

A `CommandInfo` is one entry of `COMMAND`'s reply: arity, flags, ACL categories, tips and
key specs, subcommands included. It is read from a live server's reply (`from_reply`, what
the proxy learns from its upstream) or from the compact lines of the built-in table
(`from_line`, generated from redis-server 7.0 by scripts/gen-redis-commands).

`key_positions` finds a command's keys in its arguments the way Redis does
(db.c getKeysUsingKeySpecs): a spec's begin_search finds the first key (a fixed index, or
the argument after a keyword searched from a start index, backwards if negative), its
find_keys the rest (a range to a last index, or a count read from a numkeys argument).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Literal = tuple[str, int, str, str, str, tuple[str, ...]]
"""A line of the built-in table: name, arity, flags, ACL categories, tips, key specs."""


@dataclass(frozen=True, slots=True)
class KeySpec:
    flags: frozenset[str]
    begin: str
    """index, keyword or unknown."""
    index: int = 0
    keyword: bytes = b""
    startfrom: int = 0
    find: str = "unknown"
    """range, keynum or unknown."""
    lastkey: int = 0
    keystep: int = 1
    limit: int = 0
    keynumidx: int = 0
    firstkey: int = 0

    @property
    def complete(self) -> bool:
        """Every key this spec stands for can be found from the arguments alone."""
        return (
            "unknown" not in (self.begin, self.find)
            and not {"incomplete", "INCOMPLETE"} & self.flags
        )

    def to_text(self) -> str:
        flags = ",".join(sorted(self.flags)) or "-"
        if self.begin == "index":
            begin = f"index {self.index}"
        elif self.begin == "keyword":
            begin = f"keyword {self.keyword.decode()} {self.startfrom}"
        else:
            begin = "unknown"
        if self.find == "range":
            find = f"range {self.lastkey} {self.keystep} {self.limit}"
        elif self.find == "keynum":
            find = f"keynum {self.keynumidx} {self.firstkey} {self.keystep}"
        else:
            find = "unknown"
        return f"{flags}|{begin}|{find}"

    @classmethod
    def from_text(cls, text: str) -> KeySpec:
        flags, begin, find = text.split("|")
        b, f = begin.split(), find.split()
        options: dict[str, Any] = {"flags": frozenset(flags.split(",")) - {"-"}}
        options["begin"] = b[0]
        if b[0] == "index":
            options["index"] = int(b[1])
        elif b[0] == "keyword":
            options.update(keyword=b[1].encode(), startfrom=int(b[2]))
        options["find"] = f[0]
        if f[0] == "range":
            options.update(lastkey=int(f[1]), keystep=int(f[2]), limit=int(f[3]))
        elif f[0] == "keynum":
            options.update(keynumidx=int(f[1]), firstkey=int(f[2]), keystep=int(f[3]))
        return cls(**options)


@dataclass(frozen=True, slots=True)
class CommandInfo:
    name: str
    """Lower case; a subcommand is `container|sub`, as Redis names it."""
    arity: int
    flags: frozenset[str]
    categories: frozenset[str]
    tips: tuple[str, ...]
    key_specs: tuple[KeySpec, ...]
    subcommands: dict[str, CommandInfo] = field(default_factory=dict)

    def tip(self, prefix: str) -> str:
        """The value of tip `prefix:value` (request_policy, response_policy), or ""."""
        for tip in self.tips:
            if tip.startswith(prefix + ":"):
                return tip[len(prefix) + 1 :]
        return ""

    def to_literal(self) -> Literal:
        return (self.name, self.arity, " ".join(sorted(self.flags)),
                " ".join(sorted(self.categories)), " ".join(self.tips),
                tuple(spec.to_text() for spec in self.key_specs))  # fmt: skip

    @classmethod
    def from_literal(cls, line: Literal) -> CommandInfo:
        name, arity, flags, categories, tips, specs = line
        return cls(name, arity, frozenset(flags.split()), frozenset(categories.split()),
                   tuple(tips.split()), tuple(KeySpec.from_text(s) for s in specs))  # fmt: skip


def from_lines(lines: Sequence[Literal]) -> dict[str, CommandInfo]:
    """The built-in table: subcommands (`a|b`) go under their container."""
    commands: dict[str, CommandInfo] = {}
    for line in lines:
        info = CommandInfo.from_literal(line)
        container, _, sub = info.name.partition("|")
        if sub:
            commands[container].subcommands[sub] = info
        else:
            commands[info.name] = info
    return commands


# -- a live server's COMMAND reply (RESP2: maps are flat arrays of key, value) -----------------


def from_reply(reply: list[Any]) -> dict[str, CommandInfo]:
    """`COMMAND`'s reply, decoded by hiredis, as CommandInfo by name. Raises ValueError on
    a reply of another shape (an older Redis without key specs gives empty ones)."""
    commands = {}
    for entry in reply:
        try:
            info = _entry(entry)
        except (IndexError, KeyError, TypeError) as error:
            raise ValueError(f"unexpected COMMAND entry {entry!r:.80}") from error
        commands[info.name] = info
    return commands


def _entry(entry: list[Any]) -> CommandInfo:
    if not isinstance(entry, list) or len(entry) < 6:
        raise ValueError(f"unexpected COMMAND entry {entry!r:.80}")
    name = _text(entry[0]).lower()
    words = [_text(word) for word in entry[2]]
    categories = frozenset(_text(c) for c in entry[6]) if len(entry) > 6 else frozenset()
    tips = tuple(_text(t) for t in entry[7]) if len(entry) > 7 else ()
    specs = tuple(_key_spec(_pairs(s)) for s in entry[8]) if len(entry) > 8 else ()
    subs = entry[9] if len(entry) > 9 else []
    subcommands = {info.name.partition("|")[2]: info for info in map(_entry, subs)}
    return CommandInfo(name, int(entry[1]), frozenset(words), categories, tips, specs,
                       subcommands)  # fmt: skip


def _key_spec(spec: dict[str, Any]) -> KeySpec:
    flags = frozenset(_text(f) for f in spec.get("flags", []))
    begin = _pairs(spec["begin_search"])
    find = _pairs(spec["find_keys"])
    begin_spec, find_spec = _pairs(begin.get("spec", [])), _pairs(find.get("spec", []))
    options: dict[str, Any] = {"flags": flags, "begin": _text(begin["type"])}
    if options["begin"] == "index":
        options["index"] = int(begin_spec["index"])
    elif options["begin"] == "keyword":
        options["keyword"] = _bytes(begin_spec["keyword"])
        options["startfrom"] = int(begin_spec["startfrom"])
    else:
        options["begin"] = "unknown"
    options["find"] = _text(find["type"])
    if options["find"] == "range":
        options.update(lastkey=int(find_spec["lastkey"]), keystep=int(find_spec["keystep"]),
                       limit=int(find_spec["limit"]))  # fmt: skip
    elif options["find"] == "keynum":
        options.update(
            keynumidx=int(find_spec["keynumidx"]),
            firstkey=int(find_spec["firstkey"]),
            keystep=int(find_spec["keystep"]),
        )
    else:
        options["find"] = "unknown"
    return KeySpec(**options)


def _pairs(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    if not isinstance(value, list) or len(value) % 2:
        raise ValueError(f"expected a map, got {value!r:.80}")
    return {_text(value[i]): value[i + 1] for i in range(0, len(value), 2)}


def _text(value: Any) -> str:
    return _bytes(value).decode("utf-8", "replace")


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"expected a string, got {value!r:.80}")


# -- finding keys -----------------------------------------------------------------------------


def key_positions(specs: Sequence[KeySpec], args: Sequence[bytes]) -> list[int]:
    """Indexes of the key arguments, spec by spec, as Redis finds them (specs that cannot
    be used here, an unknown type or a bad numkeys, give none)."""
    positions: list[int] = []
    argc = len(args)
    for spec in specs:
        first = _first(spec, args)
        if first <= 0:
            continue
        span = _span(spec, args, first)
        if span is None:
            continue
        start, last, step = span
        positions.extend(range(start, min(last, argc - 1) + 1, max(step, 1)))
    return positions


def _first(spec: KeySpec, args: Sequence[bytes]) -> int:
    if spec.begin == "index":
        return spec.index
    if spec.begin != "keyword":
        return 0
    argc = len(args)
    start = spec.startfrom if spec.startfrom > 0 else argc + spec.startfrom
    keyword = spec.keyword.upper()
    indexes = range(start, argc) if spec.startfrom > 0 else range(start, 0, -1)
    for index in indexes:
        if 0 <= index < argc and args[index].upper() == keyword:
            return index + 1
    return 0


def _span(spec: KeySpec, args: Sequence[bytes], first: int) -> tuple[int, int, int] | None:
    argc = len(args)
    if spec.find == "range":
        if spec.lastkey >= 0:
            last = first + spec.lastkey
        elif not spec.limit:
            last = argc + spec.lastkey
        else:
            last = first + (argc - first) // spec.limit + spec.lastkey
        return first, last, spec.keystep
    if spec.find == "keynum":
        where = first + spec.keynumidx
        if where >= argc:
            return None
        raw = args[where]
        if not raw.isdigit() or len(raw) > 10:
            return None
        start = first + spec.firstkey
        return start, start + int(raw) - 1, spec.keystep
    return None

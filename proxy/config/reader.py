"""A path-aware view over parsed YAML that collects every problem instead of stopping at the first.

Parsers read typed values through a `Node`; a missing or malformed value records a
`Problem` naming its YAML path (`listeners[0].filters[0].config.cluster: ...`) and yields
a harmless placeholder, so one pass reports all mistakes in a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from proxy.config.units import Address, parse_address, parse_duration, parse_size

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Required:
    """The type of REQUIRED: the default that means "report it when missing"."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()


class Node:
    """One value in the document, with its path and the shared problem list."""

    __slots__ = ("path", "problems", "value")

    def __init__(self, value: object, path: str = "", problems: list[Problem] | None = None):
        self.value = value
        self.path = path
        self.problems: list[Problem] = [] if problems is None else problems

    # -- navigation ---------------------------------------------------------------------

    def _key_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def _mapping(self) -> dict[str, Any]:
        return self.value if isinstance(self.value, dict) else {}

    def has(self, key: str) -> bool:
        return self._mapping().get(key) is not None

    def child(self, key: str) -> Node:
        return Node(self._mapping().get(key), self._key_path(key), self.problems)

    def problem(self, message: str, key: str | None = None) -> None:
        path = self.path if key is None else self._key_path(key)
        self.problems.append(Problem(path, message))

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    # -- shape checks -------------------------------------------------------------------

    def expect_mapping(self) -> bool:
        if self.value is None or isinstance(self.value, dict):
            return True
        self.problem(f"expected a mapping, got {type(self.value).__name__}")
        return False

    def only(self, *allowed: str) -> None:
        """Report keys nobody reads: a typo must not silently fall back to a default."""
        for key in self._mapping():
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(f"unknown key (expected one of: {hint})", str(key))

    def section(self, key: str) -> Node:
        node = self.child(key)
        node.expect_mapping()
        return node

    def items(self, key: str, required: bool = False) -> list[Node]:
        node = self.child(key)
        if node.value is None:
            if required:
                node.problem("required list is missing")
            return []
        if not isinstance(node.value, list):
            node.problem(f"expected a list, got {type(node.value).__name__}")
            return []
        return [Node(item, node._key_path(i), self.problems) for i, item in enumerate(node.value)]

    # -- typed scalars ------------------------------------------------------------------

    def _read(
        self, key: str, default: T | Required, placeholder: T, convert: Callable[[object], T]
    ) -> T:
        raw = self._mapping().get(key)
        if raw is None:
            if isinstance(default, Required):
                self.problem("required value is missing", key)
                return placeholder
            return default
        try:
            return convert(raw)
        except (TypeError, ValueError) as exc:
            self.problem(str(exc), key)
            return placeholder

    def text(self, key: str, default: str | Required = REQUIRED) -> str:
        def convert(raw: object) -> str:
            if isinstance(raw, str | int | float) and not isinstance(raw, bool):
                return str(raw)
            raise ValueError(f"expected a string, got {type(raw).__name__}")

        return self._read(key, default, "", convert)

    def integer(
        self,
        key: str,
        default: int | Required = REQUIRED,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        def convert(raw: object) -> int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValueError(f"expected an integer, got {raw!r}")
            _check_range(raw, minimum, maximum)
            return raw

        return self._read(key, default, 0 if minimum is None else minimum, convert)

    def number(
        self,
        key: str,
        default: float | Required = REQUIRED,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        def convert(raw: object) -> float:
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"expected a number, got {raw!r}")
            _check_range(raw, minimum, maximum)
            return float(raw)

        return self._read(key, default, minimum or 0.0, convert)

    def flag(self, key: str, default: bool | Required = REQUIRED) -> bool:
        def convert(raw: object) -> bool:
            if not isinstance(raw, bool):
                raise ValueError(f"expected true or false, got {raw!r}")
            return raw

        return self._read(key, default, False, convert)

    def duration(
        self, key: str, default: float | Required = REQUIRED, positive: bool = False
    ) -> float:
        def convert(raw: object) -> float:
            seconds = parse_duration(raw)
            if positive and seconds <= 0:
                raise ValueError("must be greater than zero")
            return seconds

        return self._read(key, default, 1.0, convert)

    def size(self, key: str, default: int | Required = REQUIRED, minimum: int = 0) -> int:
        def convert(raw: object) -> int:
            size = parse_size(raw)
            _check_range(size, minimum, None)
            return size

        return self._read(key, default, max(minimum, 1), convert)

    def address(self, key: str, default: Address | Required = REQUIRED) -> Address:
        return self._read(key, default, Address("0.0.0.0", 0), parse_address)

    def choice(self, key: str, choices: Iterable[str], default: str | Required = REQUIRED) -> str:
        options = sorted(choices)

        def convert(raw: object) -> str:
            if raw not in options:
                raise ValueError(f"unknown value {raw!r} (expected one of: {', '.join(options)})")
            return str(raw)

        return self._read(key, default, options[0] if options else "", convert)


def _check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be at most {maximum}, got {value}")

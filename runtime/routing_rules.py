"""Dapr subscription routing rules: a small, safe subset of CEL over the CloudEvent.

Supported: `event.<field>[.<field>...]` compared with `==` or `!=` to a string, number,
true/false or null, combined with `&&`, `||` and parentheses. Anything else is refused
when the subscription is loaded, naming the rule (no silent "never matches").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from protocols import strict_json

Rule = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|&&|\|\||\(|\))|(?P<path>event(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"
    r'|(?P<literal>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|-?\d+(?:\.\d+)?|true|false|null))'
)


class RuleError(ValueError):
    pass


def compile_rule(text: str) -> Rule:
    tokens = _tokenize(text)
    parser = _Parser(tokens, text)
    rule = parser.expression()
    if parser.position != len(tokens):
        raise RuleError(f"unexpected {tokens[parser.position][1]!r} in rule {text!r}")
    return rule


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise RuleError(f"cannot read rule {text!r} at {text[position : position + 20]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise RuleError(f"rule {self.text!r} ends too early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expression(self) -> Rule:
        left = self._conjunction()
        while self._peek() == "||":
            self._take()
            right = self._conjunction()
            left = (lambda a, b: lambda event: a(event) or b(event))(left, right)
        return left

    def _conjunction(self) -> Rule:
        left = self._comparison()
        while self._peek() == "&&":
            self._take()
            right = self._comparison()
            left = (lambda a, b: lambda event: a(event) and b(event))(left, right)
        return left

    def _comparison(self) -> Rule:
        if self._peek() == "(":
            self._take()
            inner = self.expression()
            if self._take()[1] != ")":
                raise RuleError(f"missing ')' in rule {self.text!r}")
            return inner
        kind, path = self._take()
        if kind != "path":
            raise RuleError(f"expected event.<field> in rule {self.text!r}, got {path!r}")
        operator = self._take()[1]
        if operator not in ("==", "!="):
            raise RuleError(f"expected == or != in rule {self.text!r}")
        kind, literal = self._take()
        if kind != "literal":
            raise RuleError(f"expected a value in rule {self.text!r}")
        try:
            expected = strict_json.loads(
                literal.replace("'", '"') if literal[0] in "'\"" else literal
            )
        except strict_json.JsonError as error:
            raise RuleError(f"bad value {literal!r} in rule {self.text!r}: {error}") from None
        fields = path.split(".")[1:]
        equal = operator == "=="
        return lambda event: (_lookup(event, fields) == expected) is equal


def _lookup(event: dict[str, Any], fields: list[str]) -> Any:
    value: Any = event
    for name in fields:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value

"""protocols/strict_json.py: RFC 8259 JSON with a depth bound. Tables of what is refused and
what is read, and Hypothesis: any bytes give a value or JsonError, a value read is written
back as JSON any strict parser reads the same, and the depth bound is the real nesting."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.strict_json import MAX_DEPTH, JsonError, dumps, loads

REFUSED = [
    ("[" * 100_000, "nested deeper"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ('{"a":' * 200 + "1" + "}" * 200, "nested deeper"),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
    ('["]]]]]]",' + "[" * 200, "nested deeper"),  # closers in a string hide nothing
    ('"\\\\"' + "[" * 200, "nested deeper"),  # an escaped backslash ends no string
    ('"\\ud800"', "lone surrogate"),
    ('"\\udc00\\ud800"', "lone surrogate"),  # low then high is no pair
    ('{"\\uDBFF": 1}', "lone surrogate"),  # in a key too
    ('["a", "x\\ud83d"]', "lone surrogate"),
    ("NaN", "NaN"),
    ("[Infinity]", "Infinity"),
    ('{"a": -Infinity}', "-Infinity"),
    ("1e999999", "out of range"),
    ("-1e400", "out of range"),
    ("[1.8e308]", "out of range"),
    ("1" * 5000, "digits"),
    ("", "Expecting value"),
    ("[1,2", "Expecting"),
    ("[1,]", "Expecting value"),
    ("{'a': 1}", "Expecting property name"),
    ('"a\nb"', "control character"),
    ("[] []", "Extra data"),
    ("\ufeff[]", "Expecting value"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_refused(text: str, reason: str) -> None:
    for given_as in (text, text.encode()):
        with pytest.raises(JsonError, match=reason):
            loads(given_as)


def test_refused_bytes() -> None:
    with pytest.raises(JsonError, match="not UTF-8 at byte 2"):
        loads(b'"a\xff"')
    with pytest.raises(JsonError, match="not UTF-8"):
        loads(b'"\xed\xa0\x80"')  # a surrogate encoded as UTF-8
    with pytest.raises(JsonError, match="lone surrogate"):
        loads('"\ud800"')  # text that holds one


READ = [
    ("[" * MAX_DEPTH + "]" * MAX_DEPTH, 0),
    ('["' + "[" * 300 + '"]', ["[" * 300]),
    ('["\\"' + "[{" * 300 + '"]', ['"' + "[{" * 300]),
    ('"\\ud83d\\ude00"', "\U0001f600"),
    ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text
    ("1e-999", 0.0),
    ("-0", 0),
    ("1.7976931348623157e308", 1.7976931348623157e308),
    ("12345678901234567890123", 12345678901234567890123),
    (' {"a" : [true, false, null]} \n', {"a": [True, False, None]}),
    ('"caf\u00e9 \u4e2d"', "caf\u00e9 \u4e2d"),
]


@pytest.mark.parametrize(("text", "value"), READ)
def test_read(text: str, value: Any) -> None:
    got = loads(text.encode())
    if value == 0 and text.startswith("["):
        assert depth(got) == MAX_DEPTH
    else:
        assert got == value
    assert loads(dumps(got)) == got


def test_dumps_refuses_what_is_not_json() -> None:
    for value in (math.nan, math.inf, [-math.inf], {"a": "\udfff"}, {"\ud800": 1}):
        with pytest.raises(JsonError):
            dumps(value)
    assert dumps({"a": [1, 2.5, "\u00e9"], "b": None}) == '{"a":[1,2.5,"é"],"b":null}'.encode()


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def strict_stdlib(text: str) -> Any:
    """The standard library's reading, where it agrees with RFC 8259."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


# -- generated -------------------------------------------------------------------------------

NEAR_JSON = st.text(
    alphabet='[]{}",:\\/ 0123456789.eE+-tfnrualsNIy\u00e9\ud800\udc00u', max_size=60
)
TEXTS = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from('[]{}"\\'), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80) | NEAR_JSON.map(lambda t: t.encode(errors="surrogatepass")))
def test_any_bytes_give_a_value_or_json_error(data: bytes) -> None:
    try:
        value = loads(data)
    except JsonError:
        return
    written = dumps(value)
    assert strict_stdlib(written.decode()) == strict_stdlib(data.decode())
    assert loads(written) == value


@settings(max_examples=500, deadline=None)
@given(NEAR_JSON.map(lambda t: t.encode(errors="surrogatepass")), st.integers(0, 4))
def test_a_small_bound_refuses_exactly_what_nests_deeper(data: bytes, limit: int) -> None:
    """Whatever the input, broken or not: read with the bound when read without it and no
    deeper than it; refused otherwise (with JsonError, as ever)."""
    try:
        whole = loads(data)
    except JsonError:
        whole = JsonError
    try:
        bounded = loads(data, max_depth=limit)
    except JsonError:
        bounded = JsonError
    fits = whole is not JsonError and depth(whole) <= limit
    assert bounded == (whole if fits else JsonError)


@settings(max_examples=300, deadline=None)
@given(NEAR_JSON)
def test_what_the_standard_library_reads_strictly_is_read_the_same(text: str) -> None:
    try:
        expected = strict_stdlib(text)
        text.encode()
        json.dumps(expected, allow_nan=False, ensure_ascii=False).encode()
    except ValueError:  # NaN, inf, bad syntax, a lone surrogate: refused by both
        with pytest.raises(JsonError):
            loads(text)
        return
    assert loads(text) == expected


@settings(max_examples=300, deadline=None)
@given(VALUES, st.booleans())
def test_values_round_trip(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert loads(text) == value
    assert loads(dumps(value)) == value


@settings(max_examples=200, deadline=None)
@given(VALUES, st.integers(0, 8), st.integers(0, 6))
def test_the_depth_bound_is_the_real_nesting(value: Any, wrap: int, limit: int) -> None:
    for _ in range(wrap):
        value = [value, "]]}}"]  # brackets in strings count for nothing
    text = json.dumps(value)
    if depth(value) <= limit:
        assert loads(text, max_depth=limit) == value
    else:
        with pytest.raises(JsonError, match="nested deeper"):
            loads(text, max_depth=limit)

"""Typed metadata values: defaults for empty values, the key named in every refusal."""

from __future__ import annotations

import pytest

from runtime.components import metadata
from runtime.components.errors import BadMetadata


def test_empty_or_missing_values_take_the_default() -> None:
    values = {"blank": "  "}
    assert metadata.flag(values, "blank", True) is True
    assert metadata.integer(values, "missing", 7) == 7
    assert metadata.duration(values, "blank", 1.5) == 1.5
    assert metadata.size(values, "missing", 64) == 64
    assert metadata.text(values, "blank") is None
    assert metadata.choice(values, "missing", {"a": 1}, 2) == 2


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("y", True), ("off", False)])
def test_flag_accepts_dapr_truthy_words(raw: str, expected: bool) -> None:
    assert metadata.flag({"k": raw}, "k") is expected


def test_values_parse_with_units() -> None:
    values = {"d": "250ms", "s": "64KiB", "n": "-3", "c": "b"}
    assert metadata.duration(values, "d", 0) == pytest.approx(0.25)
    assert metadata.size(values, "s", 0) == 64 * 1024
    assert metadata.integer(values, "n", 0) == -3
    assert metadata.choice(values, "c", {"a": 1, "b": 2}, 0) == 2


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: metadata.flag({"k": "maybe"}, "k"), "expected true or false"),
        (lambda: metadata.integer({"k": "1.5"}, "k", 0), "expected an integer"),
        (lambda: metadata.integer({"k": "0"}, "k", 1, minimum=1), "at least 1"),
        (lambda: metadata.duration({"k": "soon"}, "k", 1), "'k'"),
        (lambda: metadata.duration({"k": "0s"}, "k", 1, positive=True), "must be positive"),
        (lambda: metadata.size({"k": "0"}, "k", 1), "must be positive"),
        (lambda: metadata.choice({"k": "z"}, "k", {"a": 1}, 0), "one of a"),
    ],
)
def test_bad_values_name_the_key(call: object, words: str) -> None:
    assert callable(call)
    with pytest.raises(BadMetadata) as raised:
        call()
    assert raised.value.key == "k"
    assert words in str(raised.value)

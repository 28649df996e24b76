"""JSON as the runtime API reads and writes it: RFC 8259 and nothing more, with a depth bound.

The standard library's json module is lenient where an API facing the network must not be:
- it reads NaN, Infinity and -Infinity, and a number too large for a float (`1e999999`)
  becomes inf; it writes all three back as NaN / Infinity, which no JSON parser accepts;
- a string may hold a lone surrogate (`"\\ud800"`), which no UTF-8 text can carry, so
  encoding it later raises UnicodeEncodeError;
- it recurses once per nesting level, so a document nested deeper than the interpreter's
  recursion limit raises RecursionError.

`loads` turns UTF-8 bytes (or text) into Python values or raises JsonError, and nothing else,
whatever the input; `dumps` writes compact UTF-8 JSON or raises JsonError. What one returns
the other accepts, so what the runtime stores and answers is valid JSON.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 128
"""Arrays and objects nested deeper are refused (serde_json's default limit)."""


class JsonError(ValueError):
    """Not JSON the runtime accepts (or a value it cannot write as JSON)."""


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise JsonError(f"number {text[:32]} is out of range")
    return number


def _constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# An escape that can stand for half of a surrogate pair (or a false alarm after `\\`).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(data: bytes | bytearray | memoryview | str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text (UTF-8 when bytes); JsonError for anything else."""
    raw, text = _utf8(data)
    _check_depth(raw, max_depth)
    try:
        value = _DECODER.decode(text)
    except JsonError:
        raise
    except ValueError as error:  # JSONDecodeError; an integer of too many digits
        raise JsonError(str(error)) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            _ENCODER.encode(value).encode()
        except UnicodeEncodeError:
            raise JsonError("a string holds a lone surrogate (\\ud800-\\udfff)") from None
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON for `value` (str, int, float, bool, None, lists and dicts of them)."""
    try:
        return _ENCODER.encode(value).encode()
    except ValueError as error:  # NaN or an infinity; UnicodeEncodeError: a lone surrogate
        raise JsonError(f"cannot be written as JSON: {error}") from None


def _utf8(data: bytes | bytearray | memoryview | str) -> tuple[bytes, str]:
    """The text both as UTF-8 bytes and as str."""
    try:
        if isinstance(data, str):
            return data.encode(), data
        raw = bytes(data)
        return raw, raw.decode()
    except UnicodeEncodeError:
        raise JsonError("the text holds a lone surrogate") from None
    except UnicodeDecodeError as error:
        raise JsonError(f"not UTF-8 at byte {error.start}") from None


def _check_depth(raw: bytes, max_depth: int) -> None:
    """Refuse nesting deeper than `max_depth` before the parser recurses into it.

    Brackets inside strings do not count: escapes go first (so `\\"` ends no string),
    then every other quote-separated part is inside a string (an unclosed last one too).
    UTF-8 never puts an ASCII byte inside a multi-byte character, so bytes are enough."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # too few openings to nest that deep: the usual case, and cheap
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    brackets = b"".join(raw.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth:
        raise JsonError(f"nested deeper than {max_depth} arrays and objects")

"""Request ids and W3C trace context (traceparent) as a proxy makes and checks them."""

from __future__ import annotations

import os
from binascii import hexlify
from random import getrandbits


def _new_ids() -> tuple[bytes, bytes]:
    """A UUID4-shaped request id and a W3C traceparent, from one random draw."""
    digits = hexlify(getrandbits(192).to_bytes(24, "little"))  # (= random.randbytes(24))
    request_id = b"-".join((digits[:8], digits[8:12], b"4" + digits[13:16],
                            b"a" + digits[17:20], digits[20:32]))  # fmt: skip
    return request_id, b"-".join((b"00", digits[:32], digits[32:], b"01"))


def valid_traceparent(value: bytes) -> bool:
    parts = value.split(b"-")
    return (
        len(parts) >= 4
        and len(parts[0]) == 2
        and parts[0] != b"ff"
        and len(parts[1]) == 32
        and parts[1] != b"0" * 32
        and len(parts[2]) == 16
        and parts[2] != b"0" * 16
        and len(parts[3]) == 2
        and all(_is_hex(part) for part in parts[:4])
    )


def _is_hex(value: bytes) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return value == value.lower()


new_ids = _new_ids
if not os.environ.get("MECHA_PURE_PYTHON"):
    try:
        from protocols.http import _ids_c
    except ImportError:  # not built here (scripts/build-native): the function above serves
        pass
    else:
        new_ids = _ids_c.new_ids

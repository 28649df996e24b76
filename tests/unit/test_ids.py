"""Request ids and trace context: the ids are well-formed, and the compiled twin of
`new_ids` makes the same ids from the same random bytes."""

from __future__ import annotations

import os
import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.http import ids

try:
    from protocols.http import _ids_c as native
except ImportError:  # not built: scripts/build-native (the test below says so)
    native = None  # type: ignore[assignment]


def test_the_compiled_twin_is_built_and_used() -> None:
    if os.environ.get("MECHA_PURE_PYTHON"):
        assert ids.new_ids is ids._new_ids
        return
    assert native is not None, "run scripts/build-native (scripts/setup.sh does)"
    assert ids.new_ids is native.new_ids


@pytest.mark.parametrize("new_ids", [ids._new_ids, getattr(native, "new_ids", ids._new_ids)])
def test_ids_are_a_uuid4_and_a_valid_traceparent(new_ids: object) -> None:
    assert callable(new_ids)
    for _ in range(200):
        request_id, traceparent = new_ids()
        parsed = uuid.UUID(request_id.decode())
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed).encode() == request_id
        assert ids.valid_traceparent(traceparent)
        assert traceparent[3:11] == request_id[:8]  # one random draw for both


@pytest.mark.skipif(native is None, reason="the compiled twin is not built")
@given(st.integers(min_value=0))
def test_the_twins_make_the_same_ids(seed: int) -> None:
    random.seed(seed)
    pure = ids._new_ids()
    random.seed(seed)
    assert native.new_ids() == pure


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", True),
        (b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", False),
        (b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        (b"00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        (b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        (b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01", False),
        (b"garbage", False),
    ],
)
def test_traceparent_validity(value: bytes, valid: bool) -> None:
    assert ids.valid_traceparent(value) is valid

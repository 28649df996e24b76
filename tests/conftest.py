"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# Hypothesis imports its optimiser lazily, deep inside a running test; compiling a module
# that deep trips a CPython 3.11 AST recursion-depth check, so import it up front.
import hypothesis.internal.conjecture.optimiser  # noqa: F401
import pytest

from tests.support.redis import redis_server


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A private redis-server for this test."""
    with redis_server(tmp_path) as port:
        yield port

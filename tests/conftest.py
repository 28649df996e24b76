"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis import redis_server


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A private redis-server for this test."""
    with redis_server(tmp_path) as port:
        yield port

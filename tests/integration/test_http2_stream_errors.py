"""One bad HTTP/2 stream costs that stream only: a real h2 client through mecha to an
HTTP/1.1 backend, where a `content-length` of 20 digits used to kill the connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h2.errors
import h2.events
import pytest

from tests.support.h2_client import Client
from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http_config, run_mecha

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Mecha, Backend]]:
    with (
        http_backend("web") as backend,
        run_mecha(tmp_path, http_config({"web": [backend.port]})) as mecha,
    ):
        yield mecha, backend


def test_a_twenty_digit_content_length_resets_its_stream_only(
    proxied: tuple[Mecha, Backend],
) -> None:
    mecha, backend = proxied
    client = Client(mecha.port("http"))
    try:
        bad = client.request("POST", [("content-length", "9" * 20)], b"x")
        good = client.request("GET", [])
        client.until_done(bad)
        client.until_done(good)
        assert client.reset_code(bad) == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert client.status(bad) is None
        assert client.status(good) == 200
        later = client.request("GET", [])  # the connection goes on
        client.until_done(later)
        assert client.status(later) == 200
        assert not [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
        assert backend.count == 2
        assert "Traceback" not in mecha.logs()
    finally:
        client.close()

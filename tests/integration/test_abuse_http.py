"""Abusive HTTP/1.1 clients against bounds: each test runs the abuse next to a bystander on
the same listener and asserts the bound (connections and descriptors freed, the error the
abuser gets, the bystander's round trips while it lasts)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.abuse import Bystander, Trickler
from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import Mecha, http1_paths_config, run_mecha

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 1.0
SLOWLORIS = 200
"""Connections trickling a request head one byte at a time (the issue saw 500 kept for 1h)."""


def descriptors(mecha: Mecha) -> int:
    return len(os.listdir(f"/proc/{mecha.process.pid}/fd"))


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    with http_backend() as running:
        yield running


def start(tmp_path: Path, backend: Backend, **options: Any) -> Any:
    config = http1_paths_config(backend.port, access_log=False, options=options)
    return run_mecha(tmp_path, config)


@pytest.mark.parametrize("path", ["as-bytes", "filters"])
def test_slowloris_heads_get_408_and_their_connections_go(
    tmp_path: Path, backend: Backend, path: str
) -> None:
    with start(tmp_path, backend, request_headers_timeout=f"{HEADER_TIMEOUT}s") as mecha:
        port = mecha.port(path)
        before = descriptors(mecha)
        trickler = Trickler(port, SLOWLORIS, b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n", every=0.3)
        try:
            with Bystander(port) as bystander:
                trickler.run(seconds=HEADER_TIMEOUT * 4)
            assert trickler.all_closed
            for peer in trickler.peers:
                assert peer.answer.startswith(b"HTTP/1.1 408 ")
                assert peer.closed_at is not None
                assert peer.closed_at - peer.first_byte_at < HEADER_TIMEOUT + 0.75
        finally:
            trickler.close()
        median, p99 = bystander.summary()
        assert bystander.failures == []
        assert median < 0.05 and p99 < 0.5, (median, p99)
        metric = "mecha_http_downstream_rq_header_timeout_total"
        assert mecha.metric(metric, listener=path) == SLOWLORIS
        mecha.wait_metric("mecha_listener_downstream_cx_active", 0, listener=path)
        assert descriptors(mecha) < before + 5  # (the bystander's upstream connection)

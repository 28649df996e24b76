"""Out of file descriptors: new clients wait in the backlog (not reset), each failed accept is
counted, the log says so at most once a second, and the listener serves again once
descriptors free up. mecha's limit is lowered from outside (prlimit) below every descriptor
it could open (3: only stdin, stdout and stderr fit)."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.support.mecha import Mecha, run_mecha, tcp_proxy_config
from tests.support.peers import echo, tcp_server

pytestmark = pytest.mark.integration

EXHAUSTED_FOR = 2.5
"""Seconds mecha runs without a free descriptor."""
METRIC = "mecha_listener_downstream_cx_accept_exhausted_total"


@contextmanager
def no_free_descriptors(pid: int) -> Iterator[None]:
    """mecha's soft RLIMIT_NOFILE lowered below its lowest free descriptor, then given back."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def waiting(client: socket.socket) -> bool:
    """Neither answered nor closed or reset: the connection is still in the backlog."""
    client.settimeout(0.2)
    try:
        return client.recv(64) != b""
    except TimeoutError:
        return True
    except OSError:
        return False
    finally:
        client.settimeout(5)


@pytest.mark.parametrize("overload", [False, True], ids=["acceptor alone", "overload manager"])
def test_clients_wait_for_descriptors_and_are_served_when_they_free_up(
    tmp_path: Path, overload: bool
) -> None:
    """Alone, the acceptor retries every 100 ms; with the overload manager (the default) the
    listener also stops accepting at its next check, until descriptors free up."""
    with (
        tcp_server(echo) as upstream,
        run_mecha(tmp_path, configured(upstream, overload)) as mecha,
        ExitStack() as clients,
    ):
        port = mecha.port("tcp")
        pid = mecha.process.pid
        with no_free_descriptors(pid):
            started = time.monotonic()
            sockets = []
            for index in range(3):
                client = clients.enter_context(socket.create_connection(("127.0.0.1", port)))
                client.sendall(b"hello %d\n" % index)
                sockets.append(client)
            time.sleep(EXHAUSTED_FOR)
            assert all(waiting(client) for client in sockets)
            exhausted_for = time.monotonic() - started
        for index, client in enumerate(sockets):
            assert client.recv(64) == b"hello %d\n" % index
        assert_counted_and_logged(mecha, exhausted_for)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as late:
            late.sendall(b"later\n")
            assert late.recv(64) == b"later\n"


def configured(upstream: int, overload: bool) -> dict[str, object]:
    config = tcp_proxy_config([upstream])
    if not overload:
        config["overload"] = False
    return config


def assert_counted_and_logged(mecha: Mecha, exhausted_for: float) -> None:
    failures = mecha.metric(METRIC, listener="tcp")
    assert failures >= 3  # retried every 100ms while the clients waited
    lines = [line for line in mecha.logs().splitlines() if "cannot accept connections" in line]
    assert 1 <= len(lines) <= exhausted_for + 1, lines
    assert "Too many open files" in lines[0]
    assert "Traceback" not in mecha.logs()

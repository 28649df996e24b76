"""An HTTP/1.1 client that goes away cancels its upstream request, on every HTTP/1 path.

The backend's /delay answers after 4s unless its client hangs up first, and notices when
it does; a request body the backend is still reading ends short. Clients give up in each
way a client can: curl --max-time 1, a socket closed (FIN) or reset (RST) while the answer
is awaited, and a socket closed while its body (content-length or chunked) is still being
sent. Each time the backend sees its connection closed long before it would have answered,
the access log line carries Envoy's DC flag and no 200, and mecha serves the next request
with nothing in its error log.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.http_backend import Backend, http_backend
from tests.support.mecha import HTTP1_PATHS, Mecha, http1_paths_config, run_mecha

pytestmark = pytest.mark.integration

ANSWER_AFTER = 4.0
"""Seconds the backend's /delay takes; every cancellation must reach it well before."""
NOTICED_WITHIN = 2.0
"""Seconds from the client's going to the backend's noticing, at most."""
LOG_LINE = re.compile(r'"(\S+) (\S+) HTTP/1\.1" (\d+) (\S+) \d+ \d+ (\d+) ')


@dataclass
class Running:
    mecha: Mecha
    backend: Backend
    log_mark: int = 0
    """How much of mecha's log earlier tests wrote."""

    def connect(self, path: str) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.mecha.port(path)), timeout=5)

    def cancelled(self, target: str, gone_at: float) -> None:
        """The backend saw the client of `target` hang up, in time; the access log says DC."""
        self.backend.wait_hangup(target, timeout=NOTICED_WITHIN)
        assert time.monotonic() - gone_at < NOTICED_WITHIN
        status, flags, duration = self.log_entry(target)
        assert status != 200 and "DC" in flags.split(","), (status, flags)
        assert duration < ANSWER_AFTER * 1000

    def log_entry(self, target: str, timeout: float = 5.0) -> tuple[int, str, int]:
        """(status, flags, duration in ms) of the access-log line for `target`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.mecha.access_log():
                found = LOG_LINE.search(line)
                if found and found.group(2) == target:
                    return int(found.group(3)), found.group(4), int(found.group(5))
            time.sleep(0.05)
        raise AssertionError(f"no access-log line for {target}: {self.mecha.access_log()}")

    def still_serves(self, path: str) -> None:
        url = f"http://127.0.0.1:{self.mecha.port(path)}/echo"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
        logs = self.mecha.logs()[self.log_mark :]
        assert " ERROR " not in logs and "Traceback" not in logs, logs[-4000:]


@pytest.fixture(scope="module")
def mecha_and_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("client-gone")
    with http_backend() as backend, run_mecha(workdir, http1_paths_config(backend.port)) as mecha:
        yield Running(mecha, backend)


@pytest.fixture
def running(mecha_and_backend: Running) -> Running:
    mecha_and_backend.log_mark = len(mecha_and_backend.mecha.logs())
    return mecha_and_backend


def delay_target(case: str, path: str) -> str:
    return f"/delay/{int(ANSWER_AFTER * 1000)}?{case}-{path}"


@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_curl_that_gives_up(running: Running, path: str) -> None:
    target = delay_target("curl", path)
    url = f"http://127.0.0.1:{running.mecha.port(path)}{target}"
    result = subprocess.run(["curl", "-sS", "--max-time", "1", url],
                            capture_output=True, text=True, timeout=10)  # fmt: skip
    gone_at = time.monotonic()
    assert result.returncode == 28, result  # curl's "operation timed out"
    running.cancelled(target, gone_at)
    running.still_serves(path)


@pytest.mark.parametrize("ending", ["close", "reset"])
@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_socket_that_goes_while_the_answer_is_awaited(
    running: Running, path: str, ending: str
) -> None:
    target = delay_target(ending, path)
    with running.connect(path) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
        running.backend.wait_started(target)
        if ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone_at = time.monotonic()
    running.cancelled(target, gone_at)
    running.still_serves(path)


BODIES = {
    "content-length": (b"content-length: 100000\r\n", b"0123456789"),
    "chunked": (b"transfer-encoding: chunked\r\n", b"a\r\n0123456789\r\n"),
}


@pytest.mark.parametrize("framing", BODIES)
@pytest.mark.parametrize("path", HTTP1_PATHS)
def test_socket_that_goes_while_its_body_is_sent(running: Running, path: str, framing: str) -> None:
    target = f"/echo?body-{framing}-{path}"
    field, body = BODIES[framing]
    with running.connect(path) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nhost: t\r\n%s\r\n%s" % (target.encode(), field, body))
        running.backend.wait_started(target)
    gone_at = time.monotonic()
    running.cancelled(target, gone_at)
    running.still_serves(path)

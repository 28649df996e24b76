"""Hot restart: a new mecha process takes the listening sockets of the running one over a
unix socket (SCM_RIGHTS); the old one drains and exits; no connection is refused."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.http_backend import http_backend
from tests.support.mecha import ROOT, Mecha, http_config, mecha_argv, run_mecha, tcp_proxy_config
from tests.support.net import free_ports
from tests.support.peers import echo, echo_once, tcp_server

pytestmark = pytest.mark.integration


@dataclass
class ClientLoop:
    """New connections, one after another, each echoing a line, until stopped."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            payload = b"hello %d\n" % self.ok
            try:
                received = echo_once(self.port, payload)
                if received != payload:
                    self.failures.append(f"echo {received!r}")
                else:
                    self.ok += 1
            except OSError as exc:
                self.failures.append(repr(exc))


@contextmanager
def successor(old: Mecha, handover: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A second mecha on the same config file that takes over from `old`."""
    config = old.workdir / "mecha.yaml"
    with (
        (old.workdir / "new.stdout").open("wb") as out,
        (old.workdir / "new.stderr").open("wb") as err,
    ):
        process = subprocess.Popen(
            mecha_argv("run", "-c", str(config), "-l", "debug", "--hot-restart-from",
                       str(handover), "--hot-restart-socket", str(handover)),
            stdout=out, stderr=err, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def web_config(backend: int) -> dict[str, Any]:
    """HTTP in front of a Python backend, whose small accept queue can drop a SYN under
    load (retransmitted after 1s): a connect timeout above that keeps it out of the count.
    The old process's kept-alive connections may last as long as the load does."""
    options = {"app": {"connect_timeout": "5s"}}
    return {**http_config({"app": [backend]}, cluster_options=options), "drain_timeout": "20s"}


def test_no_connection_refused_across_a_hot_restart(tmp_path: Path) -> None:
    handover = tmp_path / "hot-restart.sock"
    with (
        tcp_server(echo) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream]),
                  args=("--hot-restart-socket", str(handover))) as old,
    ):  # fmt: skip
        port = old.port("tcp")
        loop = ClientLoop(port)
        clients = threading.Thread(target=loop.run, name="clients")
        clients.start()
        try:
            time.sleep(0.5)
            with successor(old, handover) as new:
                assert old.wait(timeout=25) == 0, old.logs()
                before = loop.ok
                time.sleep(1.0)  # the new process alone serves now
                loop.stop.set()
                clients.join(10)
                assert new.poll() is None
                assert loop.failures == [], loop.failures[:5]
                assert loop.ok > before > 0
                # Same admin address, same listener port: now the new process answers.
                assert old.get("/ready")[0] == 200
                assert old.port("tcp") == port
                new_logs = (tmp_path / "new.stderr").read_text()
                assert "serving on 2 of 2 handed-over sockets" in new_logs
                assert "old process answered" in new_logs
                assert "hot restart: draining" in old.logs()
                assert handover.exists()  # the new process hands over in turn
                new.send_signal(signal.SIGTERM)
                assert new.wait(timeout=20) == 0
        finally:
            loop.stop.set()
            clients.join(10)


def test_a_failed_successor_leaves_the_old_process_serving(tmp_path: Path) -> None:
    handover = tmp_path / "hot-restart.sock"
    with (
        tcp_server(echo) as upstream,
        run_mecha(tmp_path, tcp_proxy_config([upstream]),
                  args=("--hot-restart-socket", str(handover))) as old,
    ):  # fmt: skip
        (tmp_path / "broken.yaml").write_text("listeners: [{name: x}]\n")
        done = subprocess.run(
            mecha_argv("run", "-c", str(tmp_path / "broken.yaml"), "--hot-restart-from",
                       str(handover)),
            capture_output=True, cwd=ROOT, timeout=30,
        )  # fmt: skip
        assert done.returncode == 1 and b"invalid config" in done.stderr
        missing = subprocess.run(
            mecha_argv("run", "-c", str(tmp_path / "mecha.yaml"), "--hot-restart-from",
                       str(tmp_path / "nobody.sock")),
            capture_output=True, cwd=ROOT, timeout=30,
        )  # fmt: skip
        assert missing.returncode == 1 and b"cannot take over from" in missing.stderr
        assert old.process.poll() is None and old.get("/ready")[0] == 200
        with socket.create_connection(("127.0.0.1", old.port("tcp")), timeout=5) as conn:
            conn.sendall(b"still here")
            assert conn.recv(100) == b"still here"


def wrk_round(url: str) -> list[str]:
    """Kept-alive connections (they stay with the old process until it has drained) and
    connections closed after each request (they land on whichever process accepts)."""
    loads = [
        subprocess.Popen(["wrk", "-t1", "-c4", "-d2s", *extra, url],
                         stdout=subprocess.PIPE, text=True)
        for extra in ([], ["-H", "Connection: close"])
    ]  # fmt: skip
    return [load.communicate(timeout=20)[0] for load in loads]


def test_hot_restart_under_wrk_load_fails_no_request(tmp_path: Path) -> None:
    handover = tmp_path / "hot-restart.sock"
    with (
        http_backend("app") as backend,
        run_mecha(tmp_path, web_config(backend.port),
                  args=("--hot-restart-socket", str(handover))) as old,
    ):  # fmt: skip
        url = f"http://127.0.0.1:{old.port('http')}/"
        outputs: list[str] = []
        with successor(old, handover) as new:
            # Rounds of load until the old process has gone, and one more: a successor
            # warms up in a time this shared machine decides.
            for _ in range(12):
                exited = old.process.poll() is not None
                outputs += wrk_round(url)
                if exited:
                    break
            assert old.wait(timeout=25) == 0
            assert new.poll() is None
        new_log = (tmp_path / "new.stdout").read_text()
    crossed = 0
    for output in outputs:
        assert re.search(r"\d+ requests in", output), output
        assert "Non-2xx" not in output, output
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                           output)  # fmt: skip
        if errors is not None:
            connect, read, write, timeout = map(int, errors.groups())
            assert (connect, write, timeout) == (0, 0, 0), output
            crossed += read
    # wrk counts a connection closed before its response as a read error and does not retry
    # (a client may: RFC 9112 §9.6). At most one such crossing in a whole hot restart is
    # tolerated (about 1 run in 5 shows one); more fail.
    assert crossed <= 1, outputs
    assert '"GET / HTTP/1.1" 200' in new_log  # the new process served part of the load


def test_the_successor_takes_the_health_listener_over(tmp_path: Path) -> None:
    """Probes keep getting answers while one process hands over to the next: the health
    listener's socket goes across like the others'."""
    handover = tmp_path / "hot-restart.sock"
    health, admin = free_ports(2)
    url = f"http://127.0.0.1:{health}/healthz/ready"
    answers: list[int | str] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    answers.append(response.status)
            except (OSError, urllib.error.HTTPError) as exc:
                answers.append(repr(exc))
            time.sleep(0.01)

    with tcp_server(echo) as upstream:
        config = {**tcp_proxy_config([upstream]), "health": {"address": f"127.0.0.1:{health}"},
                  "admin": {"address": f"127.0.0.1:{admin}"}}  # fmt: skip
        with run_mecha(tmp_path, config, args=("--hot-restart-socket", str(handover))) as old:
            prober = threading.Thread(target=probe, name="probes")
            prober.start()
            try:
                with successor(old, handover) as new:
                    assert old.wait(timeout=25) == 0, old.logs()
                    time.sleep(0.3)  # the new process alone answers now
                    stop.set()
                    prober.join(10)
                    new_logs = (tmp_path / "new.stderr").read_text()
                    assert "serving on 3 of 3 handed-over sockets" in new_logs
                    assert new.poll() is None
            finally:
                stop.set()
                prober.join(10)
    assert answers and set(answers) == {200}, [a for a in answers if a != 200][:5]

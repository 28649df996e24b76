"""A private nginx on a free port: its own prefix under the test's directory, reloadable.

nginx runs in the foreground (`daemon off`) with one worker, so the master is the process
we started and its children are the workers. `reload()` is a graceful reload (SIGHUP):
the master starts new workers, and the old ones finish the requests they are serving,
close their keep-alive connections and exit.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port, wait_for_port

BODY = "hello from nginx"

# Everything nginx writes (pid, logs, temp files) stays under the prefix. keepalive_requests
# is raised so that only the timeout and reloads close keep-alive connections.
CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_timeout {keepalive_timeout};
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            return 200 "{body}\\n";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    prefix: Path

    def workers(self) -> set[int]:
        """The master's children: its worker processes (old ones too, while they drain)."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(child) for child in children}

    def reload(self, timeout: float = 5.0) -> None:
        """A graceful reload: returns once a new worker has started."""
        before = self.workers()
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not self.workers() - before:
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx started no new worker {timeout}s after SIGHUP")
            time.sleep(0.01)

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text()


@contextmanager
def nginx_server(workdir: Path, keepalive_timeout: str = "75s") -> Iterator[Nginx]:
    """nginx answering `200 hello from nginx` to everything, on a free loopback port."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is not installed; scripts/setup.sh --test installs it")
    prefix = workdir / "nginx"
    prefix.mkdir()
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(prefix=prefix, port=port, body=BODY,
                                    keepalive_timeout=keepalive_timeout))  # fmt: skip
    argv = ["nginx", "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield Nginx(process, port, prefix)
    finally:
        process.terminate()  # fast shutdown: the master stops its workers, then exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

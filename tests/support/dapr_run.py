"""`mecha run --app-id ... -- app` as a Dapr user runs it: a real process, its output kept."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.mecha import ROOT, mecha_argv

APPS = ROOT / "tests" / "e2e" / "dapr_apps"


def run_env(workdir: Path) -> dict[str, str]:
    """A home and runtime dir of the test's own: no ~/.dapr of the machine, a registry shared
    only by this test's runs."""
    env = {**os.environ, "HOME": str(workdir), "XDG_RUNTIME_DIR": str(workdir / "run")}
    for name in ("APP_ID", "APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "DAPR_API_TOKEN",
                 "APP_API_TOKEN"):  # fmt: skip
        env.pop(name, None)
    return env


def dapr_run(workdir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`mecha run ARGS` to the end."""
    return subprocess.run(mecha_argv("run", *args), capture_output=True, text=True,
                          timeout=timeout, cwd=workdir, env=run_env(workdir))  # fmt: skip


def mecha_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mecha_argv(*args), capture_output=True, text=True, timeout=20,
                          cwd=workdir, env=run_env(workdir))  # fmt: skip


class Run:
    def __init__(self, process: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.process = process
        self.out = out
        self.err = err

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def logs(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0, in_logs: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (self.logs() if in_logs else self.output()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen; output:\n{self.output()}\nlogs:\n{self.logs()}")


@contextmanager
def running(
    workdir: Path, name: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[Run]:
    """`mecha run ARGS` in the background, stopped (SIGTERM, passed on to its app) at the end;
    `env` is added to its environment (and so to its app's)."""
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    environ = {**run_env(workdir), **(env or {})}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(mecha_argv("run", *args), stdout=stdout, stderr=stderr,
                                   cwd=workdir, env=environ)  # fmt: skip
    try:
        yield Run(process, out, err)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

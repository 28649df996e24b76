"""The app's environment, exit status and prefixed output (proxy/app_process.py), and the
machine's registry of runs (runtime/local_registry.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from proxy.app_process import (
    MAX_LINE,
    PREFIX,
    RunInfo,
    child_environment,
    exit_status,
    prefixed_lines,
)
from runtime.local_registry import STALE_AFTER, Instance, Registry

INFO = RunInfo(app_id="orders", app_port=8080, app_protocol="http", app_host="127.0.0.1",
               command=("python3", "app.py"), listeners={}, registry=None)  # fmt: skip


def test_the_app_gets_daprs_variables() -> None:
    env = child_environment({"PATH": "/bin", "APP_PORT": "1"}, INFO, {"http": 3501, "grpc": 50002})
    assert env == {"PATH": "/bin", "APP_ID": "orders", "APP_PORT": "8080", "APP_PROTOCOL": "http",
                   "DAPR_HTTP_PORT": "3501", "DAPR_GRPC_PORT": "50002"}  # fmt: skip


def test_an_app_without_a_port_gets_no_app_port() -> None:
    info = RunInfo(app_id="job", app_port=None, app_protocol="grpc", app_host="10.0.0.2",
                   command=(), listeners={}, registry=None)  # fmt: skip
    env = child_environment({"APP_PORT": "9"}, info, {"http": 1})
    assert "APP_PORT" not in env
    assert env["APP_CHANNEL_ADDRESS"] == "10.0.0.2"


def test_exit_status_is_the_shells() -> None:
    assert [exit_status(code) for code in (0, 3, -15, -9)] == [0, 3, 143, 137]


def test_output_is_prefixed_line_by_line() -> None:
    lines, rest = prefixed_lines(b"par", b"tial\nsecond\nthi")
    assert lines == [PREFIX + b"partial\n", PREFIX + b"second\n"]
    assert rest == b"thi"


def test_a_line_longer_than_the_bound_is_cut() -> None:
    lines, rest = prefixed_lines(b"", b"x" * (MAX_LINE * 2 + 10))
    assert lines == [PREFIX + b"x" * MAX_LINE + b"\n"] * 2
    assert rest == b"x" * 10


@given(st.lists(st.binary(max_size=3 * MAX_LINE // 2), max_size=6))
def test_output_passes_through_whole_and_bounded(chunks: list[bytes]) -> None:
    """Whatever the app writes comes out, in order, every piece prefixed; what is held back
    is less than a line's bound."""
    pending, out = b"", []
    for chunk in chunks:
        lines, pending = prefixed_lines(pending, chunk)
        assert len(pending) < MAX_LINE
        out += lines
    assert all(line.startswith(PREFIX) and line.endswith(b"\n") for line in out)
    passed = b"".join(line[len(PREFIX) :] for line in out) + pending
    assert passed.replace(b"\n", b"") == b"".join(chunks).replace(b"\n", b"")


def instance(run_id: str, app_id: str, pid: int, updated: float | None = None) -> Instance:
    now = time.time()
    return Instance(run_id, app_id, pid, "127.0.0.1:5000", 3500, 50001, 0, "", "app", now,
                    now if updated is None else updated)  # fmt: skip


def test_the_registry_lists_live_members_and_forgets_crashed_ones(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "sub" / "registry.db"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    registry.join(instance("a", "orders", os.getpid()))
    registry.join(instance("b", "orders", dead.pid))  # crashed without leaving
    registry.join(instance("c", "orders", os.getpid(), time.time() - STALE_AFTER - 1))  # silent
    registry.join(instance("d", "cart", os.getpid()))
    assert [i.run_id for i in registry.instances("orders")] == ["a"]
    assert [i.run_id for i in registry.instances()] == ["a", "d"]
    registry.leave("a")
    assert registry.instances("orders") == []

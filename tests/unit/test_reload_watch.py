"""The config file watcher: a reload when the content changes, not when only the stat does."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy import reload as reload_module
from proxy.config.parse import load_config
from proxy.reload import Reloader
from proxy.server import config_version

RUNNING = "listeners: []\nclusters: []\n"
BROKEN = "listeners: [{name: web, address: '127.0.0.1:99999'}]\n"


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_module, "WATCH_INTERVAL", 0.02)
    monkeypatch.setattr(reload_module, "SETTLE", 0.01)


def running(path: Path, text: str = RUNNING) -> Reloader:
    """A reloader for a server that runs `text` (a stand-in: no reload here gets applied)."""
    config = load_config(_written(path, text))
    server: Any = SimpleNamespace(state="live", config=config,
                                  version=config_version(config.document))  # fmt: skip
    return Reloader(server, path)


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def settled() -> None:
    """Several polls' time, for asserting that nothing happened."""
    await asyncio.sleep(0.2)


async def eventually(check: Callable[[], bool]) -> None:
    """Polled: the watcher has no hook to wait on."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5s")


async def test_a_touch_does_not_reload_a_broken_file_does(tmp_path: Path) -> None:
    watched = running(tmp_path / "mecha.yaml")
    watched.watch()
    try:
        await eventually(lambda: watched.status()["watching"] == str(watched.path))
        os.utime(watched.path, ns=(1, 1))  # type: ignore[arg-type]
        await settled()
        assert sum(watched.counts.values()) == 0
        _written(tmp_path / "mecha.yaml", BROKEN)
        await eventually(lambda: watched.counts["rejected"] == 1)
        assert watched.last is not None and watched.last.trigger == "file change"
        assert watched.last.problems[0].startswith("listeners[0].address: port must be 0-65535")
    finally:
        await watched.stop(0)


async def test_a_file_changed_before_watching_started_is_reloaded(tmp_path: Path) -> None:
    watched = running(tmp_path / "mecha.yaml")
    _written(tmp_path / "mecha.yaml", BROKEN)  # between start-up's load and the watch
    watched.watch()
    try:
        await eventually(lambda: watched.last is not None)
        await settled()
        assert watched.counts == {**dict.fromkeys(reload_module.RESULTS, 0), "rejected": 1}
    finally:
        await watched.stop(0)


async def test_the_same_config_written_differently_is_unchanged(tmp_path: Path) -> None:
    watched = running(tmp_path / "mecha.yaml")
    _written(tmp_path / "mecha.yaml", "# a comment\nclusters: []\nlisteners: []\n")
    outcome = await watched.reload("SIGHUP")
    assert (outcome.result, outcome.version) == ("unchanged", watched.server.version)


async def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    watched = running(tmp_path / "mecha.yaml")
    _written(tmp_path / "mecha.yaml", "  \n")
    outcome = await watched.reload("SIGHUP")
    assert outcome.result == "rejected"
    assert "is empty" in outcome.problems[0]


def test_requests_while_not_live_are_ignored(tmp_path: Path) -> None:
    watched = running(tmp_path / "mecha.yaml")
    watched.server.state = "draining"
    watched.request("SIGHUP")  # would need a running loop if it spawned anything
    assert watched.counts == dict.fromkeys(reload_module.RESULTS, 0)

"""The config file watcher: a reload when the content changes, not when only the stat does."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy import reload as reload_module
from proxy.config.model import Config
from proxy.config.reader import ConfigError, Problem
from proxy.reload import Reloader


class CountingLoader:
    """Stands for load_config: counts the loads and rejects each file, so no apply runs."""

    def __init__(self) -> None:
        self.loads = 0

    def __call__(self, path: Path) -> Config:
        self.loads += 1
        raise ConfigError([Problem("listeners[0].address", "port must be 0-65535")])


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload_module, "WATCH_INTERVAL", 0.02)
    monkeypatch.setattr(reload_module, "SETTLE", 0.01)


def reloader(path: Path, loader: CountingLoader) -> Reloader:
    server: Any = SimpleNamespace(state="live", version="v1", config=None)
    return Reloader(server, path, loader)


async def test_only_a_content_change_reloads(tmp_path: Path) -> None:
    path = tmp_path / "mecha.yaml"
    path.write_text("listeners: []\n")
    loader = CountingLoader()
    watched = reloader(path, loader)
    watched.watch()
    try:
        os.utime(path, ns=(1, 1))  # a touch: the stat changes, the content does not
        await asyncio.sleep(0.15)
        assert loader.loads == 0
        path.write_text("listeners: [x]\n")
        await asyncio.sleep(0.15)
        assert loader.loads == 1
        assert watched.counts["rejected"] == 1
        assert watched.last is not None
        assert watched.last.problems == ("listeners[0].address: port must be 0-65535",)
        assert watched.last.trigger == "file change"
    finally:
        await watched.stop(0)


async def test_an_empty_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "mecha.yaml"
    path.write_text("listeners: []\n")
    loader = CountingLoader()
    outcome = await reloader(path, loader).reload("SIGHUP")
    assert loader.loads == 1
    path.write_text("  \n")
    outcome = await reloader(path, loader).reload("SIGHUP")
    assert (outcome.result, loader.loads) == ("rejected", 1)
    assert "is empty" in outcome.problems[0]


def test_requests_while_not_live_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "mecha.yaml"
    path.write_text("listeners: []\n")
    watched = reloader(path, CountingLoader())
    watched.server.state = "draining"
    watched.request("SIGHUP")  # would need a running loop if it spawned anything
    assert watched.counts == dict.fromkeys(reload_module.RESULTS, 0)

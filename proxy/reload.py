"""Hot reload: on SIGHUP, and when the config file's content changes (polled every second).

The file is read and validated by the same parser as `mecha run`, in a thread (parsing is CPU
work). A file with problems is rejected: each problem is logged with its YAML path,
`mecha_config_reload_total{result="rejected"}` goes up, and the running config stays. A
valid file is compared with the running config and applied as a diff (proxy.reload_apply).
Reloads run one at a time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from proxy import heap
from proxy.config.model import Config
from proxy.config.parse import load_config
from proxy.config.reader import ConfigError
from proxy.config_diff import ConfigDiff, diff_configs
from proxy.listener import Listener
from proxy.reload_apply import (
    ApplyError,
    Swapped,
    component_grace,
    prepare,
    retire_cluster,
    retire_listener,
    start_listeners,
    swap,
)
from runtime import reconfigure

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from proxy.server import Server

log = logging.getLogger("mecha.reload")

RESULTS = ("applied", "rejected", "unchanged", "failed")
WATCH_INTERVAL = 1.0
SETTLE = 0.1
"""A changed file is read again this much later and must not have changed meanwhile, so a
half-written file is rarely seen (an empty one is refused anyway)."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    result: str
    trigger: str
    version: str
    """The version in force afterwards."""
    at: float = field(default_factory=time.time)
    summary: str = ""
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return {"result": self.result, "trigger": self.trigger, "version": self.version,
                "at": at, "summary": self.summary, "problems": list(self.problems)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a stat says about the file; a different stamp means: read and hash it again."""

    mtime_ns: int
    size: int
    inode: int


def file_stamp(path: Path) -> FileStamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return FileStamp(stat.st_mtime_ns, stat.st_size, stat.st_ino)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def digest(content: bytes | None) -> str | None:
    return hashlib.sha256(content).hexdigest() if content is not None else None


class Reloader:
    def __init__(
        self, server: Server, path: Path | None, load: Callable[[Path], Config] = load_config
    ) -> None:
        self.server = server
        self.path = path
        self.load = load
        self.counts = dict.fromkeys(RESULTS, 0)
        self.last: ReloadOutcome | None = None
        self.retiring: set[Listener] = set()
        """Listeners a reload removed or moved, still draining."""
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._stamp: FileStamp | None = None
        self._digest: str | None = None
        """The file as last read by a reload or found running; None: not known yet."""

    # -- triggers -----------------------------------------------------------------------------

    def request(self, trigger: str) -> None:
        """Reload soon (from a signal handler: nothing here may await)."""
        if self.server.state != "live":
            log.warning("config reload (%s) ignored: mecha is %s", trigger, self.server.state)
            return
        self._spawn(self.reload(trigger), f"reload ({trigger})", self._tasks)

    def watch(self) -> None:
        if self.path is not None and self._watcher is None:
            loop = asyncio.get_running_loop()
            self._watcher = loop.create_task(self._watch(self.path), name="config file watch")

    async def _watch(self, path: Path) -> None:
        await self._take_baseline(path)
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if not self._file_changed(path):
                continue
            await asyncio.sleep(SETTLE)
            if file_stamp(path) == self._stamp:  # else still being written: next poll
                await self.reload("file change")

    async def _take_baseline(self, path: Path) -> None:
        """Note the file as it is, if it is what runs (it may have changed since it was
        loaded at start-up: then the baseline stays unknown and the first poll reloads).
        The bytes tell: no second parse of what may be thousands of routes."""
        stamp, content = file_stamp(path), read_file(path)
        loaded = self.server.config.source_digest
        if self._digest is None and loaded is not None and digest(content) == loaded:
            self._stamp, self._digest = stamp, loaded

    def _file_changed(self, path: Path) -> bool:
        """A stat per poll; the content is read and hashed only when the stat differs."""
        stamp = file_stamp(path)
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        content = read_file(path)
        return content is not None and digest(content) != self._digest

    # -- reload -------------------------------------------------------------------------------

    async def reload(self, trigger: str) -> ReloadOutcome:
        async with self._lock:
            outcome = await self._reload(trigger)
        self.counts[outcome.result] += 1
        self.last = outcome
        return outcome

    async def _reload(self, trigger: str) -> ReloadOutcome:
        if self.path is None:
            return self._rejected(trigger, ["no config file to reload (the embedded default)"])
        content = read_file(self.path)
        self._digest = digest(content)
        if content is not None and not content.strip():
            return self._rejected(trigger, [f"{self.path} is empty (still being written?)"])
        try:
            config = await asyncio.to_thread(self.load, self.path)
        except ConfigError as error:
            return self._rejected(trigger, [str(problem) for problem in error.problems])
        for warning in config.warnings:
            log.warning("config reload (%s): %s", trigger, warning)
        diff = diff_configs(self.server.config, config)
        if diff.empty and not diff.restart_needed:
            log.info("config reload (%s): unchanged (version %s)", trigger, self.server.version)
            return ReloadOutcome("unchanged", trigger, self.server.version)
        try:
            await self._apply(config, diff)
        except ApplyError as error:
            return self._rejected(trigger, [str(error)])
        except Exception:  # a bug must not take the process down with it
            log.exception("config reload (%s) failed part-way", trigger)
            return ReloadOutcome("failed", trigger, self.server.version)
        return self._applied(trigger, diff)

    async def _apply(self, config: Config, diff: ConfigDiff) -> None:
        prepared = await prepare(self.server, config, diff)
        swapped = swap(self.server, prepared)
        await start_listeners(swapped)
        retiring = self._retire(swapped, config)
        if heap.unsettle():  # what is retired must be collectable when it goes
            self._spawn(self._settle_after(retiring), "settle the heap", self._tasks)
        runtime = self.server.runtime
        if runtime is not None:
            moved = (*diff.components.added, *diff.components.changed, *diff.components.removed)
            await reconfigure.rewire_delivery(runtime, moved)

    def _retire(self, swapped: Swapped, config: Config) -> list[asyncio.Task[Any]]:
        grace = config.drain_timeout
        tasks = []
        for listener in swapped.listeners:
            self.retiring.add(listener)
            task = self._spawn(retire_listener(listener, grace), f"drain {listener.name}",
                               self._draining)  # fmt: skip
            task.add_done_callback(functools.partial(self._drained, listener))
            tasks.append(task)
        for cluster in swapped.clusters:
            work = retire_cluster(cluster, grace)
            tasks.append(self._spawn(work, f"retire {cluster.name}", self._tasks))
        if swapped.components:
            closing = reconfigure.close_after(swapped.components, component_grace(config))
            tasks.append(self._spawn(closing, "close replaced components", self._tasks))
        return tasks

    @staticmethod
    async def _settle_after(retiring: list[asyncio.Task[Any]]) -> None:
        await asyncio.gather(*retiring, return_exceptions=True)
        heap.settle()

    def _drained(self, listener: Listener, _: asyncio.Task[None]) -> None:
        self.retiring.discard(listener)

    def _applied(self, trigger: str, diff: ConfigDiff) -> ReloadOutcome:
        version = self.server.version
        log.info("config reloaded (%s), version %s: %s", trigger, version, diff.summary())
        if diff.restart_needed:
            log.warning("config reload: %s changed; this takes effect on restart",
                        ", ".join(diff.restart_needed))  # fmt: skip
        return ReloadOutcome("applied", trigger, version, summary=diff.summary())

    def _rejected(self, trigger: str, problems: list[str]) -> ReloadOutcome:
        log.error("config reload (%s) rejected; version %s stays in force",
                  trigger, self.server.version)  # fmt: skip
        for problem in problems:
            log.error("  %s", problem)
        return ReloadOutcome("rejected", trigger, self.server.version, problems=tuple(problems))

    # -- bookkeeping --------------------------------------------------------------------------

    def _spawn(
        self, work: Coroutine[Any, Any, Any], name: str, tasks: set[asyncio.Task[Any]]
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def status(self) -> dict[str, Any]:
        watching = self._watcher is not None and self._digest is not None
        return {
            "watching": str(self.path) if watching else None,
            "counts": dict(self.counts),
            "last": self.last.as_dict() if self.last else None,
            "draining_listeners": sorted(listener.name for listener in self.retiring),
        }

    async def stop(self, grace: float) -> None:
        """Shutdown: stop watching; draining listeners get up to `grace`, the rest stops now."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        if self._draining:
            _, late = await asyncio.wait(self._draining, timeout=grace)
            for task in late:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._draining, *self._tasks, return_exceptions=True)


class ReloadCollector(Collector):
    """mecha_config_reload_total{result} and the version in force."""

    def __init__(self, reloader: Reloader) -> None:
        self._reloader = reloader

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "mecha_config_reload", "Config reloads by result", labels=["result"]
        )
        for result, count in self._reloader.counts.items():
            total.add_metric([result], count)
        yield total
        info = GaugeMetricFamily(
            "mecha_config_info", "The config version in force", labels=["version"]
        )
        info.add_metric([self._reloader.server.version], 1)
        yield info


def config_path(source: str | None) -> Path | None:
    """The file a reload reads: the one `mecha run -c` was given, resolved now, since the
    process may change directory later."""
    return Path(os.path.abspath(source)) if source else None

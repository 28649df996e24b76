"""Access-log sinks: lines are batched and written once per event-loop iteration."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

log = logging.getLogger("mecha.accesslog")


class AccessLogError(Exception):
    """An access-log file cannot be opened; the message is one line for the operator."""


class AccessLogSink:
    """Collects lines and flushes them together from a `call_soon` callback."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stream: TextIO | None = None
        self._pending: list[str] = []
        self._scheduled = False

    def write(self, line: str) -> None:
        self._pending.append(line)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            stream = self.open()
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except OSError as exc:
            log.warning("access log %s: %s (%d lines lost)", self.path, exc, len(lines))

    def open(self) -> TextIO:
        if self._stream is None:
            if self.path == "stdout":
                self._stream = sys.stdout
            elif self.path == "stderr":
                self._stream = sys.stderr
            else:
                self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return self._stream

    def close(self) -> None:
        self.flush()
        if self._stream is not None and self._stream not in (sys.stdout, sys.stderr):
            self._stream.close()
        self._stream = None


class AccessLogs:
    """One sink per destination, shared by every filter that logs there."""

    def __init__(self) -> None:
        self._sinks: dict[str, AccessLogSink] = {}

    def sink(self, path: str) -> AccessLogSink:
        if path not in self._sinks:
            self._sinks[path] = AccessLogSink(path)
        return self._sinks[path]

    def open(self) -> None:
        """Open every file now: a path mecha cannot write to stops the start-up (as Envoy's
        does) instead of losing the lines of every request that follows."""
        for sink in self._sinks.values():
            try:
                sink.open()
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise AccessLogError(f"cannot open access log {sink.path}: {reason}") from None

    def close(self) -> None:
        for sink in self._sinks.values():
            sink.close()

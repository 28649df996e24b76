"""The machine's registry of running `mecha run`s: `mecha list`, `mecha stop`, and app ids
resolved to sidecars, as Dapr's SQLite name resolver does on one machine.

One SQLite file under the runtime directory; a run joins it once its listeners are bound,
refreshes its row every HEARTBEAT seconds and leaves it when it stops. A member that
crashed leaves a row behind: a row counts only while its process is alive and its
heartbeat is recent, and the rows that do not are deleted by whoever reads them next.
Every call is blocking (sqlite3): callers on the event loop run it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT = 2.0
STALE_AFTER = 5 * HEARTBEAT
BUSY_TIMEOUT = 2.0
SCHEMA = """CREATE TABLE IF NOT EXISTS instances (
    run_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, pid INTEGER NOT NULL,
    internal_address TEXT NOT NULL, http_port INTEGER NOT NULL, grpc_port INTEGER NOT NULL,
    app_port INTEGER NOT NULL, admin TEXT NOT NULL, command TEXT NOT NULL,
    started REAL NOT NULL, updated REAL NOT NULL)"""
COLUMNS = ("run_id, app_id, pid, internal_address, http_port, grpc_port, app_port, admin, "
           "command, started, updated")  # fmt: skip


def default_path(environ: dict[str, str] | None = None) -> str:
    """mecha/registry.db in $XDG_RUNTIME_DIR, else in /tmp/mecha-<uid> (as hot restart's)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(),
                                                      f"mecha-{os.getuid()}")  # fmt: skip
    return os.path.join(base, "mecha", "registry.db")


@dataclass(frozen=True, slots=True)
class Instance:
    run_id: str
    app_id: str
    pid: int
    internal_address: str
    """host:port where other sidecars send this app's invocations ('' for none)."""
    http_port: int
    grpc_port: int
    app_port: int
    admin: str
    command: str
    started: float
    updated: float


class RegistryError(Exception):
    """The registry file cannot be used; one line naming it."""


class Registry:
    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise RegistryError(f"registry {self.path}: {error}") from None
        try:
            db.execute(SCHEMA)
            yield db
        except sqlite3.Error as error:
            raise RegistryError(f"registry {self.path}: {error}") from None
        finally:
            db.close()

    def join(self, instance: Instance) -> None:
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO instances ({COLUMNS}) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(instance))  # fmt: skip

    def leave(self, run_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM instances WHERE run_id = ?", (run_id,))

    def instances(self, app_id: str | None = None) -> list[Instance]:
        """The live members (of `app_id`), oldest first; rows of dead members are deleted."""
        with self._db() as db:
            query = f"SELECT {COLUMNS} FROM instances"
            rows = (db.execute(query + " WHERE app_id = ?", (app_id,)) if app_id is not None
                    else db.execute(query)).fetchall()  # fmt: skip
            found = [Instance(*row) for row in rows]
            dead = [(i.run_id,) for i in found if not _live(i)]
            if dead:
                db.executemany("DELETE FROM instances WHERE run_id = ?", dead)
        return sorted((i for i in found if _live(i)), key=lambda i: i.started)


def _row(instance: Instance) -> tuple[object, ...]:
    return (instance.run_id, instance.app_id, instance.pid, instance.internal_address,
            instance.http_port, instance.grpc_port, instance.app_port, instance.admin,
            instance.command, instance.started, instance.updated)  # fmt: skip


def _live(instance: Instance) -> bool:
    if time.time() - instance.updated > STALE_AFTER:
        return False
    try:
        os.kill(instance.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process, alive
    return True

"""`sequencer.sqlite`: Layotto's sequencer on one SQLite database file.

Each sequence is a row `(key, value)`; `next_id` is one UPSERT ... RETURNING statement (its
own transaction), so ids are strictly increasing per key, starting at 1, also across
processes sharing the file, and they survive restarts (WAL mode, `synchronous=FULL`).

Metadata: `connectionString` (required: a file path, a `file:` URI or `:memory:`),
`tableName` (default `sequencer`), `timeout`, `busyTimeout`, `disableWAL` as for
`state.sqlite` (runtime/components/state/sqlite.py, whose database thread this reuses).
"""

from __future__ import annotations

import sqlite3

from runtime.components.api import Metadata
from runtime.components.errors import ComponentError
from runtime.components.state.sqlite import SqliteDatabase, connection_settings, identifier


class SqliteSequencer:
    def __init__(self) -> None:
        self._db: SqliteDatabase | None = None
        self._table = "sequencer"

    async def init(self, metadata: Metadata) -> None:
        db = connection_settings(metadata)
        self._table = identifier(metadata, "tableName", "sequencer")
        await db.open()
        self._db = db
        try:
            await db.run(self._create_table)
        except ComponentError:
            await self.close()
            raise

    def _create_table(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._table}" '
            "(key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"
        )

    async def ping(self) -> None:
        await self._database().run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def next_id(self, key: str, metadata: Metadata) -> int:
        sql = (f'INSERT INTO "{self._table}" (key, value) VALUES (?, 1) '
               "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value")  # fmt: skip

        def increment(connection: sqlite3.Connection) -> int:
            # fetchall: the statement must run to its end, or its implicit transaction stays open
            rows = connection.execute(sql, (key,)).fetchall()
            return int(rows[0][0])

        return await self._database().run(increment)

    def _database(self) -> SqliteDatabase:
        if self._db is None:
            raise ComponentError("sqlite sequencer is not initialised (or closed)")
        return self._db

"""`state.sqlite`: a state store in one SQLite database file (Dapr's `state.sqlite`).

Metadata (Dapr's names):

| key | meaning |
| --- | --- |
| `connectionString` | a file path, a `file:` URI, or `:memory:` (required) |
| `tableName` | the table of items (default `state`) |
| `metadataTableName` | a key/value table for the etag counter (default `metadata`) |
| `cleanupInterval` | how often expired rows are deleted (default `1h`; `0`: never) |
| `timeout` | the longest one operation may take (default `20s`) |
| `busyTimeout` | how long a write waits for a lock held by another process (default `2s`) |
| `disableWAL` | `true` keeps the rollback journal (for file systems without shared memory) |
| `ttlInSeconds` | the default TTL of every write (absent or `-1`: forever) |

sqlite3 blocks, so the store's only connection lives on one dedicated worker thread
(`ThreadPoolExecutor(max_workers=1)`) and every statement runs there, one after another;
the event loop only awaits. The database runs in WAL mode with `synchronous=FULL`, so a
write that returned survives a crash of mecha (and of the machine).

Items: `(key, value BLOB, version, expiration, update_time)`. The etag is the version, an
integer drawn from one counter per table (kept in the metadata table), so an etag never
comes back after a delete and a re-create. Concurrency is the contract of api.py, as the
in-memory and Redis stores apply it: a given etag must equal the stored version (a missing
or expired item matches none; a non-integer etag raises EtagInvalid); first-write without an
etag means the item must not exist; last-write without one overwrites. A transaction is one
SQL transaction (`BEGIN IMMEDIATE` ... `COMMIT`): every operation is checked against the
state the earlier ones left, and any failure rolls back the lot.

TTL: `expiration` is a UNIX time; reads treat an expired row as missing (so do writes), and
the cleanup task deletes such rows every `cleanupInterval`.

Differences from Dapr: the table layout is mecha's (Dapr stores text values with an
`is_binary` flag and UUID etags), so the two cannot share a database file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from runtime.components.api import (
    Concurrency,
    DeleteRequest,
    Metadata,
    SetRequest,
    StateFeature,
    StateItem,
    StateOperation,
)
from runtime.components.errors import BadMetadata, ComponentError, EtagInvalid, EtagMismatch
from runtime.components.metadata import duration, flag

log = logging.getLogger(__name__)

T = TypeVar("T")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CHUNK = 500
"""Keys per `IN (...)` of a bulk read (SQLite allows 32766 parameters)."""


# -- the database thread ------------------------------------------------------------------------


class SqliteDatabase:
    """One SQLite connection owned by one worker thread: `run(fn)` calls `fn(connection)`
    there, in submission order, and turns sqlite3 errors and timeouts into ComponentError."""

    def __init__(self, path: str, timeout: float = 20.0, busy_timeout: float = 2.0,
                 wal: bool = True) -> None:  # fmt: skip
        self.path = path
        self.timeout = timeout
        self.busy_timeout = busy_timeout
        self.wal = wal
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        """BadMetadata naming `connectionString` when the database cannot be opened."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            self._connection = await self._submit(self._connect)
        except ComponentError as error:
            await self.close()  # the worker thread goes with the failed open
            raise BadMetadata("connectionString", f"cannot open the database: {error}") from None

    def _connect(self) -> sqlite3.Connection:
        uri = self.path.startswith("file:")
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, uri=uri,
                                     isolation_level=None)  # fmt: skip
        try:
            if self.wal and self.path != ":memory:":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        except BaseException:
            connection.close()
            raise
        return connection

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection
        if connection is None:
            raise ComponentError("sqlite: the database is not open (or closed)")
        return await self._submit(lambda: fn(connection))

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise ComponentError("sqlite: the database is not open (or closed)")
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        try:
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            raise ComponentError(f"sqlite {self.path}: no answer within {self.timeout}s") from None
        except sqlite3.Error as error:
            locked = isinstance(error, sqlite3.OperationalError) and "locked" in str(error)
            message = f"sqlite {self.path}: {error}"
            raise ComponentError(message, retryable=locked or _transient(error)) from None

    async def close(self) -> None:
        executor, connection = self._executor, self._connection
        self._connection = None
        if executor is None:
            return
        if connection is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(executor, connection.close)
            except sqlite3.Error as error:
                log.warning("sqlite %s: close failed: %s", self.path, error)
        self._executor = None
        executor.shutdown(wait=False)


def _transient(error: sqlite3.Error) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "disk I/O" in str(error)


def transaction(connection: sqlite3.Connection, body: Callable[[], T]) -> T:
    """Run `body` inside BEGIN IMMEDIATE ... COMMIT; roll back on any exception."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = body()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result


# -- metadata helpers (shared with the SQLite sequencer) -----------------------------------------


def connection_settings(metadata: Metadata) -> SqliteDatabase:
    """A (not yet open) database from `connectionString`, `timeout`, `busyTimeout`, `disableWAL`."""
    path = metadata.get("connectionString", "").strip()
    if not path:
        raise BadMetadata("connectionString", "required: a file path, a file: URI or :memory:")
    timeout = duration(metadata, "timeout", 20.0)
    if timeout <= 0:
        raise BadMetadata("timeout", "must be more than 0")
    busy = duration(metadata, "busyTimeout", 2.0)
    wal = not flag(metadata, "disableWAL", False)
    return SqliteDatabase(path, timeout=timeout, busy_timeout=busy, wal=wal)


def identifier(metadata: Metadata, key: str, default: str) -> str:
    name = metadata.get(key, "").strip() or default
    if not _IDENTIFIER.match(name):
        raise BadMetadata(key, f"{name!r} is not a table name (letters, digits, _)")
    return name


def _ttl(key: str, value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise BadMetadata(key, f"expected a number of seconds, got {value!r}") from None


# -- the store --------------------------------------------------------------------------------


class SqliteStateStore:
    features = StateFeature.ETAG | StateFeature.TRANSACTIONAL | StateFeature.TTL

    def __init__(self) -> None:
        self._db: SqliteDatabase | None = None
        self._table = "state"
        self._counter_table = "metadata"
        self._default_ttl: float | None = None
        self._cleanup: asyncio.Task[None] | None = None

    async def init(self, metadata: Metadata) -> None:
        db = connection_settings(metadata)
        self._table = identifier(metadata, "tableName", "state")
        self._counter_table = identifier(metadata, "metadataTableName", "metadata")
        self._default_ttl = _ttl("ttlInSeconds", metadata.get("ttlInSeconds"))
        interval = duration(metadata, "cleanupInterval", 3600.0)
        await db.open()
        self._db = db
        try:
            await db.run(self._create_schema)
        except ComponentError:
            await self.close()
            raise
        if interval > 0:
            name = f"sqlite-state-cleanup:{db.path}:{self._table}"
            self._cleanup = asyncio.create_task(self._cleanup_loop(interval), name=name)

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        table, counters = self._table, self._counter_table
        connection.executescript(f"""
            CREATE TABLE IF NOT EXISTS "{table}" (
                key TEXT NOT NULL PRIMARY KEY,
                value BLOB NOT NULL,
                version INTEGER NOT NULL,
                expiration REAL,
                update_time REAL NOT NULL
            );
            CREATE INDEX IF NOT EXISTS "{table}_expiration" ON "{table}" (expiration)
                WHERE expiration IS NOT NULL;
            CREATE TABLE IF NOT EXISTS "{counters}" (key TEXT NOT NULL PRIMARY KEY, value);
        """)  # fmt: skip

    async def ping(self) -> None:
        await self._database().run(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            await asyncio.gather(self._cleanup, return_exceptions=True)
            self._cleanup = None
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str, metadata: Metadata) -> StateItem:
        return (await self.bulk_get([key], metadata))[0]

    async def bulk_get(self, keys: Sequence[str], metadata: Metadata) -> list[StateItem]:
        if not keys:
            return []
        rows = await self._database().run(lambda c: self._read(c, list(dict.fromkeys(keys))))
        return [_item(key, rows.get(key)) for key in keys]

    def _read(self, connection: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[Any, ...]]:
        now = time.time()
        found: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            sql = (
                f'SELECT key, value, version, expiration FROM "{self._table}" '
                f"WHERE key IN ({marks}) AND (expiration IS NULL OR expiration > ?)"
            )
            for key, value, version, expiration in connection.execute(sql, (*chunk, now)):
                found[key] = (value, version, expiration)
        return found

    # -- writes -----------------------------------------------------------------------------

    async def set(self, request: SetRequest) -> None:
        await self.transact([request], {})

    async def delete(self, request: DeleteRequest) -> None:
        await self.transact([request], {})

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        await self._bulk(requests)

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        await self._bulk(requests)

    async def transact(self, operations: Sequence[StateOperation], metadata: Metadata) -> None:
        if not operations:
            return
        writes = [self._prepare(operation) for operation in operations]

        def body(connection: sqlite3.Connection) -> None:
            transaction(connection, partial(self._apply, connection, writes))

        await self._database().run(body)

    async def _bulk(self, requests: Sequence[StateOperation]) -> None:
        """Each item in its own transaction (not atomic); the first failure is raised after."""
        errors: list[ComponentError] = []
        writes: list[_Write] = []
        for request in requests:
            try:
                writes.append(self._prepare(request))
            except ComponentError as error:
                errors.append(error)

        def body(connection: sqlite3.Connection) -> list[ComponentError]:
            failed: list[ComponentError] = []
            for write in writes:
                try:
                    transaction(connection, partial(self._apply, connection, [write]))
                except ComponentError as error:
                    failed.append(error)
            return failed

        if writes:
            errors += await self._database().run(body)
        if errors:
            raise errors[0]

    def _prepare(self, operation: StateOperation) -> _Write:
        """Checks what needs no database (etag format, TTL) on the event loop."""
        etag = _etag(operation.key, operation.etag)
        first = operation.concurrency is Concurrency.FIRST_WRITE
        if isinstance(operation, SetRequest):
            ttl = operation.ttl
            if ttl is None:
                ttl = _ttl("ttlInSeconds", operation.metadata.get("ttlInSeconds"))
            if ttl is None:
                ttl = self._default_ttl
            return _Write(operation.key, etag, first, operation.value, ttl)
        if not isinstance(operation, DeleteRequest):
            raise ComponentError(f"not a state operation: {operation!r}", retryable=False)
        return _Write(operation.key, etag, first, None, None)

    def _apply(self, connection: sqlite3.Connection, writes: list[_Write]) -> None:
        """Inside a transaction, on the database thread."""
        table = self._table
        now = time.time()
        for write in writes:
            row = connection.execute(
                f'SELECT version, expiration FROM "{table}" WHERE key = ?', (write.key,)
            ).fetchone()
            current = row[0] if row is not None and (row[1] is None or row[1] > now) else None
            if write.etag is not None and write.etag != current:
                raise EtagMismatch(write.key)
            if write.etag is None and write.first_write and current is not None:
                raise EtagMismatch(write.key)
            if write.value is None:
                if row is not None:
                    connection.execute(f'DELETE FROM "{table}" WHERE key = ?', (write.key,))
                continue
            expiration = now + write.ttl if write.ttl is not None and write.ttl > 0 else None
            connection.execute(
                f'INSERT INTO "{table}" (key, value, version, expiration, update_time) '
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "version = excluded.version, expiration = excluded.expiration, "
                "update_time = excluded.update_time",
                (write.key, write.value, self._next_version(connection), expiration, now),
            )

    def _next_version(self, connection: sqlite3.Connection) -> int:
        rows = connection.execute(
            f'INSERT INTO "{self._counter_table}" (key, value) VALUES (?, 1) '
            "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value",
            (f"etag-counter:{self._table}",),
        ).fetchall()
        return int(rows[0][0])

    # -- expiry -----------------------------------------------------------------------------

    async def _cleanup_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                deleted = await self._database().run(self._delete_expired)
            except ComponentError as error:
                log.warning("sqlite state %s: cleanup of expired rows failed: %s", self._table,
                            error)  # fmt: skip
            else:
                if deleted:
                    log.debug("sqlite state %s: deleted %d expired rows", self._table, deleted)

    def _delete_expired(self, connection: sqlite3.Connection) -> int:
        cursor = connection.execute(
            f'DELETE FROM "{self._table}" WHERE expiration IS NOT NULL AND expiration <= ?',
            (time.time(),),
        )
        return cursor.rowcount

    def _database(self) -> SqliteDatabase:
        if self._db is None:
            raise ComponentError("sqlite state store is not initialised (or closed)")
        return self._db


class _Write:
    """One checked operation: `value` None deletes."""

    __slots__ = ("etag", "first_write", "key", "ttl", "value")

    def __init__(self, key: str, etag: int | None, first_write: bool, value: bytes | None,
                 ttl: float | None) -> None:  # fmt: skip
        self.key = key
        self.etag = etag
        self.first_write = first_write
        self.value = value
        self.ttl = ttl


def _etag(key: str, etag: str | None) -> int | None:
    if not etag:
        return None
    if not etag.isascii() or not etag.isdigit():
        raise EtagInvalid(key, etag)
    return int(etag)


def _item(key: str, row: tuple[Any, ...] | None) -> StateItem:
    if row is None:
        return StateItem(key=key, value=None)
    value, version, expiration = row
    metadata = {}
    if expiration is not None:
        expires = datetime.fromtimestamp(expiration, UTC)
        metadata["ttlExpireTime"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return StateItem(key=key, value=bytes(value), etag=str(version), metadata=metadata)

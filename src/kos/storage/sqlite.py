"""`sqlite:///path/state.db`: the embedded, durable default store.

Durability: a write is acknowledged only after its transaction has committed to
the write-ahead log with `synchronous=FULL`, so it survives `kill -9` of the
server (and a power cut). Throughput: concurrent writes are group-committed —
while one batch commits, the next accumulates — so many writers share each fsync,
as etcd batches raft entries. All SQLite work runs on one dedicated thread; the
event loop never blocks on disk.

One server per file, by the file's identity: an exclusive `flock` on the database
file itself (its inode, whatever name reaches it) is taken at open and held until
close, and SQLite opens the resolved name, so its `-wal`/`-shm` companions are the
same whatever spelling was given; a second server gets a clear error instead of
losing writes (`kos.storage.filelock` has why).

Schema: `kv` holds the live keys; `log` holds every change (with the previous
value) for watch replay after a restart, trimmed by compaction; `meta` holds the
store revision and the compacted revision.

Two classes, one per side of the thread: `_Database` is the file, used only on
the SQLite thread (reads, a batch's transaction, the log, compaction);
`SQLiteStore` is the Store on the event loop (group commit, watches through the
in-memory `EventLog`, opening and closing).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from kos.storage.eventlog import EventLog
from kos.storage.filelock import HeldFile, StoreInUse, hold
from kos.storage.interface import (
    Compacted,
    Deleted,
    Event,
    EventType,
    Guard,
    GuardFailed,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionMismatch,
    StoreError,
    Unavailable,
    guard_holds,
    initial_revision,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY, key TEXT NOT NULL, type INTEGER NOT NULL, value BLOB NOT NULL, prev BLOB
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclasses.dataclass(slots=True)
class _Op:
    kind: str  # "create" | "update" | "delete"
    key: str
    value: bytes
    expected: int | None
    future: asyncio.Future[Any]
    guards: Sequence[Guard] = ()


__all__ = ["SQLiteStore", "StoreInUse"]


class _Database:
    """The SQLite file, used only on the store's one thread: its connection, revision and compacted revision."""

    def __init__(self, *, sync: str, keep_revisions: int) -> None:
        self.sync = sync
        self.keep = keep_revisions
        self.conn: sqlite3.Connection | None = None
        self.rev = 0
        self.compacted = 0

    def open(self, path: str) -> None:
        """Open (creating the schema if new) and read the revisions; sqlite3.Error if it is no kos database."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'FULL' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        start = initial_revision()  # a new file: no revision of an earlier store at this path is ever reached again
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('revision', ?), ('compacted', ?)", (start, start))
        self.rev = self._meta("revision")
        self.compacted = self._meta("compacted")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _meta(self, name: str) -> int:
        assert self.conn is not None
        row = self.conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return int(row[0])

    def get(self, key: str) -> KeyValue | None:
        assert self.conn is not None
        row = self.conn.execute("SELECT value, create_rev, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else KeyValue(key, bytes(row[0]), row[1], row[2])

    def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        assert self.conn is not None
        rows = self.conn.execute(
            "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, _prefix_end(prefix)),
        ).fetchall()
        return [KeyValue(r[0], bytes(r[1]), r[2], r[3]) for r in rows], self.rev

    def apply(self, batch: builtins.list[_Op]) -> tuple[builtins.list[Any], builtins.list[Event]]:
        """Commit a batch in one transaction: per op its result (revision, Deleted or the error), and the events."""
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            rev, shadow, results, events = self._decide(batch)
            self._write(rev, shadow, events)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self.rev = rev
        return results, events

    def _decide(
        self, batch: builtins.list[_Op]
    ) -> tuple[int, dict[str, KeyValue | None], builtins.list[Any], builtins.list[Event]]:
        """Each op against the table, read through the batch's earlier writes (`shadow`: key → new value, None
        when deleted): (revision, shadow, results, events). Writes nothing."""
        rev = self.rev
        results: builtins.list[Any] = []
        events: builtins.list[Event] = []
        shadow: dict[str, KeyValue | None] = {}

        def current(key: str) -> KeyValue | None:
            return shadow[key] if key in shadow else self.get(key)

        for op in batch:
            cur = current(op.key)
            if op.kind == "create":
                if cur is not None:
                    results.append(KeyExists(op.key))
                    continue
                rev += 1
                shadow[op.key] = KeyValue(op.key, op.value, rev, rev)
                events.append(Event(EventType.ADDED, op.key, op.value, None, rev))
                results.append(rev)
            elif op.kind == "update":
                if cur is None:
                    results.append(KeyNotFound(op.key))
                    continue
                if cur.mod_revision != op.expected:
                    results.append(RevisionMismatch(op.key, op.expected or 0, cur))
                    continue
                if op.guards and (gf := _failed_guard(op, current)) is not None:
                    results.append(gf)
                    continue
                rev += 1
                shadow[op.key] = KeyValue(op.key, op.value, cur.create_revision, rev)
                events.append(Event(EventType.MODIFIED, op.key, op.value, cur.value, rev))
                results.append(rev)
            else:
                if cur is None:
                    results.append(KeyNotFound(op.key))
                    continue
                if op.expected is not None and cur.mod_revision != op.expected:
                    results.append(RevisionMismatch(op.key, op.expected, cur))
                    continue
                if op.guards and (gf := _failed_guard(op, current)) is not None:
                    results.append(gf)
                    continue
                rev += 1
                shadow[op.key] = None
                events.append(Event(EventType.DELETED, op.key, cur.value, cur.value, rev))
                results.append(Deleted(rev, cur))
        return rev, shadow, results, events

    def _write(self, rev: int, shadow: dict[str, KeyValue | None], events: builtins.list[Event]) -> None:
        """Inside the open transaction: the batch's writes, its log rows, the revision, compaction when due."""
        conn = self.conn
        assert conn is not None
        rows_kv: builtins.list[tuple[Any, ...]] = []
        for key, kv in shadow.items():
            if kv is None:
                conn.execute("DELETE FROM kv WHERE key=?", (key,))
            else:
                rows_kv.append((key, kv.value, kv.create_revision, kv.mod_revision))
        conn.executemany("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)", rows_kv)
        conn.executemany(
            "INSERT INTO log VALUES (?,?,?,?,?)",
            [(e.revision, e.key, int(e.type), e.value, e.prev_value) for e in events],
        )
        if rev != self.rev:
            conn.execute("UPDATE meta SET value=? WHERE name='revision'", (rev,))
            if self.keep and rev - self.compacted > self.keep + self.keep // 4:
                self._compact_locked(rev - self.keep)

    def read_log(self, after: int, upto: int) -> builtins.list[Event]:
        """The logged events in (after, upto]; Compacted if `after` is older than the log keeps."""
        assert self.conn is not None
        if after < self.compacted:
            raise Compacted(after, self.compacted)
        rows = self.conn.execute(
            "SELECT rev, key, type, value, prev FROM log WHERE rev > ? AND rev <= ? ORDER BY rev",
            (after, upto),
        ).fetchall()
        return [Event(EventType(r[2]), r[1], bytes(r[3]), None if r[4] is None else bytes(r[4]), r[0]) for r in rows]

    def compact(self, revision: int) -> None:
        """Drop the log up to `revision` (at most the current revision) in its own transaction."""
        assert self.conn is not None
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._compact_locked(min(revision, self.rev))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _compact_locked(self, revision: int) -> None:
        assert self.conn is not None
        if revision <= self.compacted:
            return
        self.conn.execute("DELETE FROM log WHERE rev <= ?", (revision,))
        self.conn.execute("UPDATE meta SET value=? WHERE name='compacted'", (revision,))
        self.compacted = revision


def _failed_guard(op: _Op, current: Callable[[str], KeyValue | None]) -> GuardFailed | None:
    """The first of the op's guards that does not hold against `current`, as the error; None if all hold."""
    for g in op.guards:
        kv = current(g.key)
        if not guard_holds(g, kv):
            return GuardFailed(g, kv)
    return None


class SQLiteStore:
    """The Store on the event loop over one `_Database`: writes group-committed, watches from the `EventLog`."""

    def __init__(self, path: str, *, history: int = 100_000, keep_revisions: int = 200_000, sync: str = "full"):
        self._path = path
        self._history = history
        self._db = _Database(sync=sync.upper(), keep_revisions=keep_revisions)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kos-sqlite")
        self._held: HeldFile | None = None
        self._pending: builtins.list[_Op] = []
        self._committer: asyncio.Task[None] | None = None
        self._log: EventLog | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str, **kwargs: Any) -> SQLiteStore:
        store = cls(path, **kwargs)
        await store._open()
        return store

    async def _open(self) -> None:
        self._held = hold(self._path)
        try:
            await self._run(self._db.open, self._held.path)
            self._held.hold_companions()
        except BaseException as e:
            await self._close_db()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{self._path}: cannot open it as a kos SQLite database: {e}") from e
            raise
        self._log = EventLog(revision=self._db.rev, capacity=self._history)
        self._log.floor = self._db.rev  # the in-memory log starts empty; older history comes from the table

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise Unavailable("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # --- reads ------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._run(self._db.get, key)  # type: ignore[no-any-return]

    async def list(self, prefix: str) -> tuple[builtins.list[KeyValue], int]:
        return await self._run(self._db.list, prefix)  # type: ignore[no-any-return]

    async def current_revision(self) -> int:
        if self._closed or self._log is None:
            raise Unavailable("store is closed")
        return self._log.revision

    # --- writes -----------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> int:
        return await self._submit("create", key, value, None)  # type: ignore[no-any-return]

    async def update(self, key: str, value: bytes, expected_revision: int, guards: Sequence[Guard] = ()) -> int:
        return await self._submit("update", key, value, expected_revision, guards)  # type: ignore[no-any-return]

    async def delete(self, key: str, expected_revision: int | None = None, guards: Sequence[Guard] = ()) -> Deleted:
        return await self._submit("delete", key, b"", expected_revision, guards)  # type: ignore[no-any-return]

    async def _submit(
        self, kind: str, key: str, value: bytes, expected: int | None, guards: Sequence[Guard] = ()
    ) -> Any:
        if self._closed:
            raise Unavailable("store is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(kind, key, value, expected, fut, guards))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop())
        return await fut

    async def _commit_loop(self) -> None:
        assert self._log is not None
        apply = self._db.apply
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results, events = await asyncio.get_running_loop().run_in_executor(self._thread, apply, batch)
            except BaseException as e:  # the transaction did not commit: nothing was acknowledged
                err = e if isinstance(e, StoreError) else Unavailable(f"sqlite commit failed: {e}")
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(err)
                if not isinstance(e, Exception):
                    raise
                continue
            self._log.publish(events)
            for op, res in zip(batch, results, strict=True):
                if op.future.done():
                    continue
                if isinstance(res, Exception):
                    op.future.set_exception(res)
                else:
                    op.future.set_result(res)

    # --- watch and compaction ---------------------------------------------------------------

    def watch(self, prefix: str, after_revision: int) -> AsyncIterator[builtins.list[Event]]:
        if self._log is None:
            raise Unavailable("store is closed")
        return self._log.watch(prefix, after_revision, older=self._older)

    async def _older(self, after: int, upto: int) -> builtins.list[Event]:
        return await self._run(self._db.read_log, after, upto)  # type: ignore[no-any-return]

    async def compact(self, revision: int) -> None:
        await self._run(self._db.compact, revision)
        if self._log is not None:
            self._log.compact(revision)

    async def close(self) -> None:
        if self._closed:
            return
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        self._closed = True
        if self._log is not None:
            self._log.close()
        await self._close_db()

    async def _close_db(self) -> None:
        """Close SQLite's connection, then release the file (in that order: see kos.storage.filelock)."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close)
        self._thread.shutdown(wait=True)
        if self._held is not None:
            self._held.release()
            self._held = None


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    if not prefix:
        return "\U0010ffff"
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)

"""A SQLite database driven from asyncio without blocking the loop.

One writer thread owns the only writing connection and commits every job that queued up while the
previous commit ran in one transaction (group commit: one fsync for many concurrent requests); each
job runs under a savepoint so a failing job rolls back alone. Readers use a small thread pool, each
thread with its own read-only connection (WAL lets them read while the writer writes).
"""

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
WriteJob = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 256  # jobs per commit; bounds the latency one commit adds to the first job
MAX_PENDING_WRITES = 4096  # back-pressure: writers wait on the semaphore, not on the thread


@dataclass(slots=True)
class _Job:
    fn: WriteJob
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = field(default=None)


def _connect(path: Path, *, readonly: bool, synchronous: str, cache_mib: int) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                               isolation_level=None)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")  # per connection: bounds the hub's memory
    return conn


class SQLiteEngine:
    """Owns one database file: migrations at start, `write` and `read` for the stages' SQL."""

    def __init__(self, path: Path, migrations: Sequence[str], *, readers: int = 4,
                 synchronous: str = "FULL", cache_mib: int = 16) -> None:
        self.path = path
        self._migrations = migrations
        self._synchronous = synchronous
        self._readers = readers
        self._cache_mib = cache_mib
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path, readonly=False, synchronous=self._synchronous, cache_mib=self._cache_mib)
        await asyncio.to_thread(self._migrate, conn)
        self._slots = asyncio.Semaphore(MAX_PENDING_WRITES)
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name=f"sqlite-writer:{self.path.name}",
                                        daemon=True)
        self._writer.start()
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix=f"sqlite-reader:{self.path.name}")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(self._migrations[version:], start=version + 1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._conns_lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer's transaction; returns once that transaction is committed."""
        if self._writer is None or self._slots is None:
            raise RuntimeError(f"{self.path.name}: engine is not running")
        loop = asyncio.get_running_loop()
        async with self._slots:
            job = _Job(fn=fn, loop=loop, future=loop.create_future())
            self._jobs.put(job)
            result: T = await job.future
            return result

    async def probe_write(self) -> None:
        """Commit a one-row write through the writer, for readiness: an open connection proves nothing about a
        full disk, a read-only file or a lock another process holds. The row lives in its own table."""
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS engine_probe (id INTEGER PRIMARY KEY CHECK (id = 1),"
                         " at INTEGER NOT NULL)")
            conn.execute("INSERT INTO engine_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE"
                         " SET at = excluded.at", (time.time_ns() // 1000,))

        await self.write(job)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise RuntimeError(f"{self.path.name}: engine is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True, synchronous=self._synchronous, cache_mib=self._cache_mib)
            self._local.conn = conn
            with self._conns_lock:
                self._read_conns.append(conn)
        conn.execute("BEGIN")  # one snapshot for everything fn reads
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        running = True
        while running:
            first = self._jobs.get()
            if first is None:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    running = False
                    break
                group.append(nxt)
            self._commit_group(conn, group)
        conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        commit_error: BaseException | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.fn(conn)
                    conn.execute("RELEASE job")
                except Exception as exc:
                    job.error = exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except Exception as exc:  # the commit itself failed: nothing in the group is durable
            commit_error = exc
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for job in group:
            error = commit_error or job.error
            job.loop.call_soon_threadsafe(_settle, job.future, job.result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def read_offline(path: Path, fn: Callable[[sqlite3.Connection], T], empty: T) -> T:
    """Read a stage's database file from another process (the CLI), read-only, whether the hub runs or not;
    `empty` when the file or its tables do not exist yet."""
    if not path.exists():
        return empty
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        return fn(conn)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return empty
        raise
    finally:
        conn.close()

"""The audit log: SQLite rows chained by SHA-256, guarded by triggers against UPDATE and DELETE.

Each row's hash covers the previous row's hash and the row's own fields, so changing, inserting or
removing any row breaks every link after it; `verify_chain` finds the first broken one.
"""

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgpack

from exchange.model.timestamps import now_micros
from exchange.store.sqlite.engine import SQLiteEngine

GENESIS = b"\x00" * 32

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE audit (
        seq       INTEGER PRIMARY KEY,
        at        INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        account   TEXT NOT NULL,
        subject   TEXT NOT NULL,
        payload   BLOB NOT NULL,
        hash      BLOB NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
)


class AuditKind(StrEnum):
    ENVELOPE_ACCEPTED = "envelope.accepted"  # raw envelope journaled: sha256 of the body, object count
    OBJECTS_STORED = "objects.stored"  # processed: (id, version, outcome) of every object
    OBJECTS_SERVED = "objects.served"  # a read returned these (id, version) to the account
    OBJECTS_DELETED = "objects.deleted"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    kind: AuditKind
    account: str
    subject: str  # usually a collection id
    payload: dict[str, Any]


def link_hash(prev: bytes, seq: int, at: int, kind: str, account: str, subject: str, payload: bytes) -> bytes:
    return hashlib.sha256(prev + msgpack.packb([seq, at, kind, account, subject, payload])).digest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=1, synchronous="FULL", cache_mib=4)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.close()

    async def append(self, *entries: AuditEntry) -> None:
        """Returns once the entries are committed; the chain head is read inside the writer's transaction."""
        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = row if row else (0, GENESIS)
            for entry in entries:
                seq += 1
                at = now_micros()
                payload = msgpack.packb(entry.payload)
                digest = link_hash(prev, seq, at, entry.kind.value, entry.account, entry.subject, payload)
                conn.execute("INSERT INTO audit (seq, at, kind, account, subject, payload, hash)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, at, entry.kind.value, entry.account, entry.subject, payload, digest))
                prev = digest

        await self._engine.write(job)


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries: int
    broken_at: int | None  # seq of the first row whose link does not verify
    reason: str


def verify_chain(path: Path) -> ChainReport:
    """Walk the log in order (synchronously: a CLI command, not the server's loop)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _verify_rows(conn.execute(
            "SELECT seq, at, kind, account, subject, payload, hash FROM audit ORDER BY seq"))
    finally:
        conn.close()


def _verify_rows(rows: Iterator[tuple[int, int, str, str, str, bytes, bytes]]) -> ChainReport:
    prev, expected_seq, count = GENESIS, 1, 0
    for seq, at, kind, account, subject, payload, digest in rows:
        if seq != expected_seq:
            return ChainReport(count, expected_seq, f"row {expected_seq} is missing (next row is {seq})")
        if link_hash(prev, seq, at, kind, account, subject, payload) != digest:
            return ChainReport(count, seq, f"row {seq} does not match its hash (altered, or a row before it was)")
        prev, expected_seq, count = digest, seq + 1, count + 1
    return ChainReport(count, None, "ok")


def read_entries(path: Path, *, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = "SELECT seq, at, kind, account, subject, payload FROM audit"
        args: tuple[Any, ...] = ()
        if kind:
            sql += " WHERE kind = ?"
            args = (kind,)
        rows = conn.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
    finally:
        conn.close()
    return [{"seq": s, "at": a, "kind": k, "account": acc, "subject": sub, "payload": msgpack.unpackb(p)}
            for s, a, k, acc, sub, p in reversed(rows)]

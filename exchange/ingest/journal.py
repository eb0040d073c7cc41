"""The journal: every accepted envelope, raw, committed (WAL, synchronous=FULL) before the 202.

The processor works from here; on restart whatever is not marked processed is replayed. Bodies stay
after processing so an operator can inspect exactly what a peer sent.
"""

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import msgpack

from exchange.ingest.peers import Garbage, PeerFailure, PeerProgress, PeerState, PeerSync
from exchange.store.sqlite.engine import SQLiteEngine, read_offline

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE envelopes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        status_id   TEXT NOT NULL UNIQUE,
        api_root    TEXT NOT NULL,
        collection  TEXT NOT NULL,
        account     TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        total       INTEGER NOT NULL,
        pending     BLOB NOT NULL,
        body        BLOB NOT NULL,
        processed   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX envelopes_unprocessed ON envelopes(seq) WHERE processed = 0;
    """,
    # 2: the peer poller (#4). One row per pulled peer collection: the cursor, written in the same
    # transaction as the page's envelope, and health. Garbage a peer sent goes to its own table, never
    # to `envelopes`, so the processor cannot trip over it.
    """
    CREATE TABLE peer_sync (
        peer           TEXT NOT NULL,
        collection     TEXT NOT NULL,
        cursor         TEXT,
        cursor_micros  INTEGER,
        in_round       INTEGER NOT NULL DEFAULT 0,
        tail           BLOB,
        objects_pulled INTEGER NOT NULL DEFAULT 0,
        pages_pulled   INTEGER NOT NULL DEFAULT 0,
        state          TEXT NOT NULL DEFAULT 'new',
        last_success   INTEGER,
        caught_up_at   INTEGER,
        last_error     TEXT,
        last_error_at  INTEGER,
        error_count    INTEGER NOT NULL DEFAULT 0,
        retry_at       INTEGER,
        PRIMARY KEY (peer, collection)
    );
    CREATE TABLE quarantine (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        peer         TEXT NOT NULL,
        collection   TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        reason       TEXT NOT NULL,
        url          TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body         BLOB NOT NULL
    );
    CREATE INDEX quarantine_by_peer ON quarantine(peer, collection, seq);
    """,
)
QUARANTINE_KEEP = 8  # garbage pages kept per peer collection: enough to diagnose, bounded on disk
_SYNC_COLUMNS = ("peer, collection, cursor, cursor_micros, in_round, tail, objects_pulled, pages_pulled, state,"
                 " last_success, caught_up_at, last_error, last_error_at, error_count, retry_at")


@dataclass(frozen=True, slots=True)
class Envelope:
    """An accepted TAXII envelope as the journal keeps it."""

    status_id: str
    api_root: str
    collection_id: str
    account: str
    received_at: int
    total: int
    pending: list[tuple[str, str]]  # (id, version) of each object, for the pending status view
    body: bytes
    seq: int = 0


class Journal:
    def __init__(self, path: Path) -> None:
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=2, synchronous="FULL", cache_mib=4)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.close()

    async def append(self, env: Envelope) -> int:
        """Commit one envelope durably; returns its sequence number."""
        return await self._engine.write(lambda conn: _insert(conn, env))

    async def append_with_cursor(self, env: Envelope | None, progress: PeerProgress) -> int:
        """Commit a pulled page and its peer cursor in one transaction (0 when there is no envelope).

        The cursor moves only if the page is durable, and the page is durable only with the cursor:
        a restart resumes exactly after the last journaled page.
        """
        def job(conn: sqlite3.Connection) -> int:
            seq = _insert(conn, env) if env is not None else 0
            _advance(conn, progress, pages=1 if env is not None else 0)
            return seq

        return await self._engine.write(job)

    async def record_peer_failure(self, failure: PeerFailure, garbage: Garbage | None = None) -> None:
        """Note a failed pull in the peer's health; garbage is kept (the last QUARANTINE_KEEP pages)."""
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO peer_sync (peer, collection, state, last_error, last_error_at, error_count, retry_at)"
                " VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (peer, collection) DO UPDATE SET state = excluded.state,"
                " last_error = excluded.last_error, last_error_at = excluded.last_error_at,"
                " error_count = error_count + 1, retry_at = excluded.retry_at",
                (failure.peer, failure.collection, failure.state.value, failure.message, failure.at,
                 failure.retry_at))
            if garbage is None:
                return
            conn.execute("INSERT INTO quarantine (peer, collection, received_at, reason, url, content_type, body)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (failure.peer, failure.collection, failure.at,
                                                           failure.message, garbage.url, garbage.content_type,
                                                           garbage.body))
            conn.execute("DELETE FROM quarantine WHERE peer = ? AND collection = ? AND seq NOT IN (SELECT seq FROM"
                         " quarantine WHERE peer = ? AND collection = ? ORDER BY seq DESC LIMIT ?)",
                         (failure.peer, failure.collection, failure.peer, failure.collection, QUARANTINE_KEEP))

        await self._engine.write(job)

    async def peer_sync(self) -> list[PeerSync]:
        """Every persisted peer collection row: cursors and health."""
        return await self._engine.read(_sync_rows)

    async def quarantined(self, peer: str, collection: str) -> list[tuple[str, str, bytes]]:
        """(reason, content type, body) of the garbage kept for a peer collection, oldest first."""
        rows = await self._engine.read(lambda c: c.execute(
            "SELECT reason, content_type, body FROM quarantine WHERE peer = ? AND collection = ? ORDER BY seq",
            (peer, collection)).fetchall())
        return [(r[0], r[1], r[2]) for r in rows]

    async def unprocessed(self, limit: int, *, after: int = 0) -> list[Envelope]:
        rows = await self._engine.read(lambda c: c.execute(
            "SELECT seq, status_id, api_root, collection, account, received_at, total, pending, body"
            " FROM envelopes WHERE processed = 0 AND seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall())
        return [_envelope(r) for r in rows]

    async def mark_processed(self, seqs: list[int]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE envelopes SET processed = 1 WHERE seq = ?", [(s,) for s in seqs])

        await self._engine.write(job)

    async def find(self, status_id: str) -> Envelope | None:
        row = await self._engine.read(lambda c: c.execute(
            "SELECT seq, status_id, api_root, collection, account, received_at, total, pending, x'' FROM envelopes"
            " WHERE status_id = ?", (status_id,)).fetchone())
        return _envelope(row) if row else None

    async def backlog(self) -> int:
        return await self._engine.read(lambda c: c.execute(
            "SELECT count(*) FROM envelopes WHERE processed = 0").fetchone()[0])

    async def oldest_unprocessed(self) -> int | None:
        """received_at of the oldest envelope not processed yet (readiness and metrics: is the journal draining)."""
        row = await self._engine.read(lambda c: c.execute(
            "SELECT received_at FROM envelopes WHERE processed = 0 ORDER BY seq LIMIT 1").fetchone())
        return int(row[0]) if row else None

    async def check_writable(self) -> None:
        await self._engine.probe_write()


def read_peer_sync(path: Path) -> list[PeerSync]:
    """Peer rows straight from the file, for `exchange peers` (the hub may be running or not); a journal from
    before migration 2 has no peer rows."""
    return read_offline(path, _sync_rows, [])


def _insert(conn: sqlite3.Connection, env: Envelope) -> int:
    cur = conn.execute(
        "INSERT INTO envelopes (status_id, api_root, collection, account, received_at, total, pending, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (env.status_id, env.api_root, env.collection_id, env.account, env.received_at, env.total,
         msgpack.packb(env.pending), env.body),
    )
    return int(cur.lastrowid or 0)


def _advance(conn: sqlite3.Connection, p: PeerProgress, *, pages: int) -> None:
    tail = msgpack.packb(p.tail) if p.tail is not None else None
    caught_up = None if p.in_round else p.at
    conn.execute(
        f"INSERT INTO peer_sync ({_SYNC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?, ?, NULL, NULL, 0, NULL)"
        " ON CONFLICT (peer, collection) DO UPDATE SET cursor = excluded.cursor,"
        " cursor_micros = excluded.cursor_micros, in_round = excluded.in_round,"
        " tail = coalesce(excluded.tail, tail), objects_pulled = objects_pulled + excluded.objects_pulled,"
        " pages_pulled = pages_pulled + excluded.pages_pulled, state = 'ok', last_success = excluded.last_success,"
        " caught_up_at = coalesce(excluded.caught_up_at, caught_up_at), retry_at = NULL",
        (p.peer, p.collection, p.cursor, p.cursor_micros, int(p.in_round), tail, p.objects, pages, p.at, caught_up))


def _sync_rows(conn: sqlite3.Connection) -> list[PeerSync]:
    rows = conn.execute(f"SELECT {_SYNC_COLUMNS} FROM peer_sync ORDER BY peer, collection").fetchall()
    return [PeerSync(peer=r[0], collection=r[1], cursor=r[2], cursor_micros=r[3], in_round=bool(r[4]),
                     tail=tuple((str(i), str(v)) for i, v in msgpack.unpackb(r[5])) if r[5] else (),
                     objects_pulled=r[6], pages_pulled=r[7], state=PeerState(r[8]), last_success=r[9],
                     caught_up_at=r[10], last_error=r[11], last_error_at=r[12], error_count=r[13], retry_at=r[14])
            for r in rows]


def _envelope(row: tuple[int, str, str, str, str, int, int, bytes, bytes]) -> Envelope:
    seq, status_id, api_root, collection, account, received_at, total, pending, body = row
    return Envelope(status_id=status_id, api_root=api_root, collection_id=collection, account=account,
                    received_at=received_at, total=total, pending=[tuple(p) for p in msgpack.unpackb(pending)],
                    body=body, seq=seq)

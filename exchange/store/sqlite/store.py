"""The SQLite implementation of the Store interface (objects, versions, status resources)."""

import sqlite3
from pathlib import Path

import msgpack

from exchange.dedup.claims import Claim, SightingClaim
from exchange.model.stix import StixRecord, read_record
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.store.base import (
    EnvelopeWrite,
    MergePolicy,
    ObjectQuery,
    ObjectResult,
    Outcome,
    Page,
    StatusRecord,
    StoredObject,
    VersionMatch,
)
from exchange.store.sqlite.claims import materialize, upsert_claim, upsert_sighting
from exchange.store.sqlite.engine import SQLiteEngine
from exchange.store.sqlite.schema import MIGRATIONS

_COLUMNS = "date_added, stix_id, type, spec_version, version"
_FLAGS = {VersionMatch.FIRST: "is_first", VersionMatch.LAST: "is_last"}
_MESSAGES = {
    Outcome.STORED: "stored",
    Outcome.DUPLICATE: "this version is already stored",
    Outcome.CONFLICT: "a different object with this id and modified is already stored; the first one stays "
                      "(a changed object needs a later modified)",
    Outcome.REJECTED: "a version of this object is revoked: STIX 2.1 section 3.6 allows no later version",
}


class SQLiteStore:
    def __init__(self, path: Path, *, synchronous: str = "FULL", merge: MergePolicy | None = None) -> None:
        self._engine = SQLiteEngine(path, MIGRATIONS, synchronous=synchronous, cache_mib=32)
        self._last_added = 0  # touched only inside writer jobs
        self._merge = merge

    async def start(self) -> None:
        await self._engine.start()
        self._last_added = await self._engine.read(
            lambda c: c.execute("SELECT coalesce(max(date_added), 0) FROM objects").fetchone()[0])

    async def close(self) -> None:
        await self._engine.close()

    async def check_writable(self) -> None:
        await self._engine.probe_write()

    def _next_added(self) -> int:
        # Monotonic even if the wall clock steps back: date_added is the key of every cursor.
        self._last_added = max(now_micros(), self._last_added + 1)
        return self._last_added

    async def write_envelopes(self, writes: list[EnvelopeWrite]) -> list[StatusRecord]:
        def job(conn: sqlite3.Connection) -> list[StatusRecord]:
            saved = self._last_added
            try:
                touched: set[str] = set()
                statuses = [self._write_envelope(conn, w, touched) for w in writes]
                self._materialize(conn, touched)
                return statuses
            except BaseException:
                self._last_added = saved
                raise

        return await self._engine.write(job)

    def _write_envelope(self, conn: sqlite3.Connection, write: EnvelopeWrite, touched: set[str]) -> StatusRecord:
        results = list(write.status.results)
        extremes = _version_extremes(conn, write.collection_id, {r.id for r in write.records})
        derived = write.derived or [()] * len(write.records)
        for record, claims in zip(write.records, derived, strict=True):
            outcome, date_added = self._insert(conn, write.collection_id, record, extremes)
            version = format_timestamp(record.version or date_added)
            message = _MESSAGES[outcome]
            if outcome is Outcome.STORED and claims:
                outcome, message = _record_claims(conn, claims, touched)
            elif outcome is Outcome.CONFLICT and claims and all(isinstance(c, Claim) and c.origin for c in claims):
                # Two peer hubs author the same canonical id and `modified` from the same claims, with different
                # bodies (each its own created_by_ref): the second copy conflicts verbatim, but the claims it
                # relays are still news.
                outcome, message = _record_claims(conn, claims, touched)
                message += "; the verbatim copy was not kept (another hub's version has this id and modified)"
            results.append(ObjectResult(id=record.id, version=version, outcome=outcome, message=message))
        status = StatusRecord(id=write.status.id, api_root=write.status.api_root, account=write.status.account,
                              request_timestamp=write.status.request_timestamp, total=write.status.total,
                              results=tuple(results))
        conn.execute(
            "INSERT OR REPLACE INTO statuses (id, api_root, account, request_timestamp, total, results) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (status.id, status.api_root, status.account, status.request_timestamp, status.total,
             msgpack.packb([[r.id, r.version, r.outcome.value, r.message] for r in status.results])),
        )
        return status

    def _materialize(self, conn: sqlite3.Connection, touched: set[str]) -> None:
        if self._merge is None or not touched:
            return
        by_collection: dict[str, list[StixRecord]] = {}
        for indicator_id in sorted(touched):
            for collection, record in materialize(conn, indicator_id, self._merge):
                by_collection.setdefault(collection, []).append(record)
        for collection, records in by_collection.items():
            self._insert_all(conn, collection, records)

    def _insert_all(self, conn: sqlite3.Connection, collection_id: str, records: list[StixRecord]) -> None:
        extremes = _version_extremes(conn, collection_id, {r.id for r in records})
        for record in records:
            self._insert(conn, collection_id, record, extremes)

    async def install(self, collection_id: str, objects: list[dict[str, object]]) -> None:
        """Put fixed objects (the hub's identity, extension definitions) into a collection, once."""
        records = [read_record(o) for o in objects]

        await self._engine.write(lambda conn: self._insert_all(conn, collection_id, records))

    def _insert(self, conn: sqlite3.Connection, collection: str, rec: StixRecord,
                extremes: dict[str, tuple[int, int, bool]]) -> tuple[Outcome, int]:
        lowest, highest, revoked = extremes.get(rec.id, (None, None, False))
        if revoked and highest is not None and rec.version > highest:
            return Outcome.REJECTED, 0
        is_first = lowest is None or rec.version < lowest
        is_last = highest is None or rec.version > highest
        date_added = self._next_added()
        cur = conn.execute(
            "INSERT INTO objects (date_added, collection, stix_id, type, spec_version, version, is_first, is_last,"
            " revoked, content_hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (collection, stix_id, version) DO NOTHING",
            (date_added, collection, rec.id, rec.type, rec.spec_version, rec.version, is_first, is_last,
             rec.revoked, rec.content_hash, rec.body),
        )
        if cur.rowcount == 0:
            existing = conn.execute(
                "SELECT date_added, content_hash FROM objects WHERE collection = ? AND stix_id = ? AND version = ?",
                (collection, rec.id, rec.version),
            ).fetchone()
            # STIX 2.1 section 3.6: one id and `modified` name one content. A different body under them is a
            # producer error; the first stays. Unversioned objects (SCOs) have no `modified` to bump.
            if rec.version and existing[1] != rec.content_hash:
                return Outcome.CONFLICT, existing[0]
            return Outcome.DUPLICATE, existing[0]
        if is_last and highest is not None:
            conn.execute("UPDATE objects SET is_last = 0 WHERE collection = ? AND stix_id = ? AND is_last = 1"
                         " AND date_added != ?", (collection, rec.id, date_added))
        if is_first and lowest is not None:
            conn.execute("UPDATE objects SET is_first = 0 WHERE collection = ? AND stix_id = ? AND is_first = 1"
                         " AND date_added != ?", (collection, rec.id, date_added))
        extremes[rec.id] = (min(rec.version, lowest if lowest is not None else rec.version),
                            max(rec.version, highest if highest is not None else rec.version), revoked or rec.revoked)
        return Outcome.STORED, date_added

    async def query_objects(self, query: ObjectQuery, *, with_body: bool = True) -> Page:
        where, params = _where(query)
        columns = _COLUMNS + (", body" if with_body else "")
        sql = f"SELECT {columns} FROM {_source(query)} WHERE {where} ORDER BY date_added LIMIT ?"

        def run(conn: sqlite3.Connection) -> list[tuple[int, str, str, str, int, bytes]]:
            return conn.execute(sql, (*params, query.limit + 1)).fetchall()

        rows = await self._engine.read(run)
        more = len(rows) > query.limit
        items = [StoredObject(date_added=r[0], id=r[1], type=r[2], spec_version=r[3], version=r[4],
                              body=r[5] if with_body else b"") for r in rows[: query.limit]]
        return Page(items=items, more=more)

    async def delete_objects(self, query: ObjectQuery) -> int:
        where, params = _where(query)

        def job(conn: sqlite3.Connection) -> int:
            doomed = conn.execute(f"SELECT DISTINCT stix_id FROM {_source(query)} WHERE {where}", params).fetchall()
            count = conn.execute(f"DELETE FROM {_source(query)} WHERE {where}", params).rowcount
            for (stix_id,) in doomed:  # the survivors' first/last flags move to the remaining extremes
                for flag, pick in (("is_first", "min"), ("is_last", "max")):
                    conn.execute(
                        f"UPDATE objects SET {flag} = (version = (SELECT {pick}(version) FROM objects"
                        f" WHERE collection = ?1 AND stix_id = ?2)) WHERE collection = ?1 AND stix_id = ?2",
                        (query.collection_id, stix_id),
                    )
            return count

        return await self._engine.write(job)

    async def get_status(self, status_id: str) -> StatusRecord | None:
        return (await self.get_statuses([status_id])).get(status_id)

    async def get_statuses(self, status_ids: list[str]) -> dict[str, StatusRecord]:
        sql = ("SELECT id, api_root, account, request_timestamp, total, results FROM statuses"
               f" WHERE id IN ({', '.join('?' * len(status_ids))})")
        rows = await self._engine.read(lambda c: c.execute(sql, status_ids).fetchall()) if status_ids else []
        return {row[0]: _status(row) for row in rows}

    async def count_objects(self, collection_id: str) -> int:
        return await self._engine.read(lambda c: c.execute(
            "SELECT count(*) FROM objects WHERE collection = ?", (collection_id,)).fetchone()[0])


def _record_claims(conn: sqlite3.Connection, claims: tuple[Claim | SightingClaim, ...],
                   touched: set[str]) -> tuple[Outcome, str]:
    """Upsert what one stored object claims; a peer hub's indicator may carry several claims."""
    outcome, messages = Outcome.STORED, []
    for claim in claims:
        if isinstance(claim, Claim):
            joined, message = upsert_claim(conn, claim, touched)
            outcome = Outcome.MERGED if joined else outcome
        else:
            message = upsert_sighting(conn, claim, touched)
        messages.append(message)
    return outcome, messages[0] if len(messages) == 1 else f"{len(messages)} relayed claims; " + "; ".join(
        messages[:3]) + ("; ..." if len(messages) > 3 else "")


def _status(row: tuple[str, str, str, int, int, bytes]) -> StatusRecord:
    results = tuple(ObjectResult(id=i, version=v, outcome=Outcome(o), message=m)
                    for i, v, o, m in msgpack.unpackb(row[5]))
    return StatusRecord(id=row[0], api_root=row[1], account=row[2], request_timestamp=row[3], total=row[4],
                        results=results)


def _version_extremes(conn: sqlite3.Connection, collection: str,
                      ids: set[str]) -> dict[str, tuple[int, int, bool]]:
    """Lowest and highest stored version of each id, and whether one is revoked, in one query per envelope
    instead of one per object."""
    found: dict[str, tuple[int, int, bool]] = {}
    id_list = list(ids)
    for start in range(0, len(id_list), 500):  # stay under SQLite's host-parameter limit
        chunk = id_list[start:start + 500]
        rows = conn.execute(
            f"SELECT stix_id, min(version), max(version), max(revoked) FROM objects INDEXED BY objects_by_version"
            f" WHERE collection = ? AND stix_id IN ({', '.join('?' * len(chunk))}) GROUP BY stix_id",
            (collection, *chunk)).fetchall()
        found.update((r[0], (r[1], r[2], bool(r[3]))) for r in rows)
    return found


def _source(query: ObjectQuery) -> str:
    # By id, the (collection, stix_id, version) index is a few rows; without the hint the planner may
    # walk the whole collection in date_added order instead, which is linear in the collection size.
    return "objects INDEXED BY objects_by_version" if query.ids else "objects"


def _in(column: str, values: tuple[object, ...]) -> tuple[str, list[object]]:
    if len(values) == 1:
        return f"{column} = ?", list(values)
    return f"{column} IN ({', '.join('?' * len(values))})", list(values)


def _where(query: ObjectQuery) -> tuple[str, list[object]]:
    clauses = ["collection = ?"]
    params: list[object] = [query.collection_id]
    lower = max(query.added_after or 0, query.after_key or 0)
    if lower:
        clauses.append("date_added > ?")
        params.append(lower)
    for column, values in (("stix_id", query.ids), ("type", query.types), ("spec_version", query.spec_versions)):
        if values:
            clause, extra = _in(column, values)
            clauses.append(clause)
            params.extend(extra)
    version_clause = _version_clause(query, params)
    if version_clause:
        clauses.append(version_clause)
    return " AND ".join(clauses), params


def _version_clause(query: ObjectQuery, params: list[object]) -> str:
    if VersionMatch.ALL in query.version_matches:
        return ""
    options = [f"{_FLAGS[m]} = 1" for m in query.version_matches]
    if query.version_times:
        clause, extra = _in("version", query.version_times)
        options.append(clause)
        params.extend(extra)
        # An object without modified/created is listed with its date_added as its version.
        clause, extra = _in("date_added", query.version_times)
        options.append(f"(version = 0 AND {clause})")
        params.extend(extra)
    if not options:
        return ""
    return options[0] if len(options) == 1 else "(" + " OR ".join(options) + ")"

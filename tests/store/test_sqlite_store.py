"""The SQLite store on its own: versions and first/last flags, delete, keyset paging, statuses, and reads
that are index range scans (EXPLAIN QUERY PLAN of the SQL the store runs)."""

import sqlite3
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

import exchange.store.sqlite.store as store_module
from exchange.model.stix import StixRecord, read_record
from exchange.model.timestamps import format_timestamp, parse_timestamp
from exchange.store.base import (
    EnvelopeWrite,
    ObjectQuery,
    ObjectResult,
    Outcome,
    Page,
    StatusRecord,
    VersionMatch,
)
from exchange.store.sqlite.schema import MIGRATIONS
from exchange.store.sqlite.store import _COLUMNS, SQLiteStore, _source, _where

INBOX, OTHER = "inbox", "other"
V1, V2, V3 = (parse_timestamp(f"2026-0{m}-01T00:00:00Z") for m in (1, 2, 3))
FIRST, LAST, ALL = (VersionMatch.FIRST,), (VersionMatch.LAST,), (VersionMatch.ALL,)
_status_ids = count()


def oid(n: int, type_: str = "indicator") -> str:
    return f"{type_}--00000000-0000-4000-8000-{n:012d}"


def rec(n: int, version: int | None = V1, *, type_: str = "indicator", spec_version: str = "2.1") -> StixRecord:
    obj: dict[str, Any] = {"type": type_, "spec_version": spec_version, "id": oid(n, type_)}
    if version is not None:
        obj["created"] = "2025-01-01T00:00:00Z"
        obj["modified"] = format_timestamp(version)
    return read_record(obj)


async def write(store: SQLiteStore, *records: StixRecord, collection: str = INBOX,
                rejected: tuple[ObjectResult, ...] = ()) -> StatusRecord:
    status = StatusRecord(id=f"status-{next(_status_ids)}", api_root="api", account="alice", request_timestamp=1,
                          total=len(records) + len(rejected), results=rejected)
    [written] = await store.write_envelopes([EnvelopeWrite(collection_id=collection, records=list(records),
                                                           status=status)])
    return written


async def query(store: SQLiteStore, collection: str = INBOX, limit: int = 100, **filters: Any) -> Page:
    return await store.query_objects(ObjectQuery(collection_id=collection, limit=limit, **filters))


def ids_versions(page: Page) -> list[tuple[str, int]]:
    return [(item.id, item.version) for item in page.items]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()


def flags(path: Path, collection: str = INBOX) -> dict[int, tuple[int, int]]:
    """version → (is_first, is_last) of every row of oid(1), straight from the table."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT version, is_first, is_last FROM objects WHERE collection = ? AND stix_id = ?",
                            (collection, oid(1))).fetchall()
    finally:
        conn.close()
    return {v: (f, last) for v, f, last in rows}


# --- versions -------------------------------------------------------------------------------------------------------


async def test_first_and_last_follow_versions_not_arrival_order(store: SQLiteStore, tmp_path: Path) -> None:
    await write(store, rec(1, V2))
    await write(store, rec(1, V1))  # older, arrives later
    await write(store, rec(1, V3))
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 0), V3: (0, 1)}
    assert ids_versions(await query(store, version_matches=LAST)) == [(oid(1), V3)]
    assert ids_versions(await query(store, version_matches=FIRST)) == [(oid(1), V1)]
    assert ids_versions(await query(store, version_matches=ALL)) == [(oid(1), V2), (oid(1), V1), (oid(1), V3)]
    both = await query(store, version_matches=(VersionMatch.FIRST, VersionMatch.LAST))
    assert ids_versions(both) == [(oid(1), V1), (oid(1), V3)]
    explicit = await query(store, version_matches=(), version_times=(V2,))
    assert ids_versions(explicit) == [(oid(1), V2)]
    mixed = await query(store, version_matches=LAST, version_times=(V2,))
    assert ids_versions(mixed) == [(oid(1), V2), (oid(1), V3)]


async def test_versions_inside_one_envelope_get_the_same_flags(store: SQLiteStore, tmp_path: Path) -> None:
    await write(store, rec(1, V3), rec(1, V1), rec(1, V2), rec(2, None))
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 0), V3: (0, 1)}
    assert ids_versions(await query(store)) == [(oid(1), V3), (oid(2), 0)]


async def test_versions_across_envelopes_of_one_batch(store: SQLiteStore, tmp_path: Path) -> None:
    """The processor writes up to 32 envelopes per call, in one transaction."""
    writes = [EnvelopeWrite(collection_id=INBOX, records=records,
                            status=StatusRecord(id=f"batch-{i}", api_root="api", account="alice", request_timestamp=1,
                                                total=len(records), results=()))
              for i, records in enumerate([[rec(1, V2)], [rec(1, V1), rec(1, V1)], [rec(1, V3)], [rec(1, V2)]])]
    statuses = await store.write_envelopes(writes)
    assert [[r.outcome for r in s.results] for s in statuses] == [
        [Outcome.STORED], [Outcome.STORED, Outcome.DUPLICATE], [Outcome.STORED], [Outcome.DUPLICATE]]
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 0), V3: (0, 1)}
    assert [await store.get_status(f"batch-{i}") for i in range(4)] == statuses


async def test_a_repeated_version_is_a_duplicate_and_stores_nothing(store: SQLiteStore, tmp_path: Path) -> None:
    first = await write(store, rec(1, V1), rec(1, V2))
    again = await write(store, rec(1, V2), rec(2, V1))
    assert [r.outcome for r in first.results] == [Outcome.STORED, Outcome.STORED]
    assert [(r.id, r.outcome) for r in again.results] == [(oid(1), Outcome.DUPLICATE), (oid(2), Outcome.STORED)]
    assert "already stored" in again.results[0].message
    assert again.results[0].version == format_timestamp(V2)
    assert (again.success_count, again.failure_count) == (2, 0)
    assert await store.count_objects(INBOX) == 3
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 1)}


async def test_an_unversioned_object_reports_its_date_added_as_version(store: SQLiteStore) -> None:
    status = await write(store, rec(5, None))
    [item] = (await query(store)).items
    assert item.version == 0 and item.effective_version == item.date_added
    assert status.results[0].version == format_timestamp(item.date_added)


async def test_collections_are_independent(store: SQLiteStore) -> None:
    await write(store, rec(1, V1), rec(1, V3))
    await write(store, rec(1, V2), collection=OTHER)
    assert ids_versions(await query(store)) == [(oid(1), V3)]
    assert ids_versions(await query(store, OTHER)) == [(oid(1), V2)]
    assert (await store.count_objects(INBOX), await store.count_objects(OTHER)) == (2, 1)
    assert await store.count_objects("nowhere") == 0


# --- statuses -------------------------------------------------------------------------------------------------------


async def test_status_combines_rejections_with_stored_results(store: SQLiteStore) -> None:
    rejected = (ObjectResult(id="", version="", outcome=Outcome.REJECTED, message="objects[1]: not a JSON object"),)
    written = await write(store, rec(1), rec(2), rejected=rejected)
    assert (written.total, written.success_count, written.failure_count) == (3, 2, 1)
    loaded = await store.get_status(written.id)
    assert loaded == written
    assert await store.get_status("no-such-status") is None


# --- filters --------------------------------------------------------------------------------------------------------


async def test_filters_combine(store: SQLiteStore) -> None:
    await write(store, rec(1), rec(2, type_="malware"), rec(3, spec_version="2.0"), rec(4, type_="malware"))
    everything = await query(store)
    assert [i.id for i in everything.items] == [oid(1), oid(2, "malware"), oid(3), oid(4, "malware")]
    assert [i.id for i in (await query(store, types=("malware",))).items] == [oid(2, "malware"), oid(4, "malware")]
    assert [i.id for i in (await query(store, ids=(oid(3), oid(4, "malware")))).items] == [oid(3), oid(4, "malware")]
    assert [i.id for i in (await query(store, spec_versions=("2.0",))).items] == [oid(3)]
    assert (await query(store, types=("malware",), spec_versions=("2.0",))).items == []
    cut = everything.items[1].date_added
    assert [i.id for i in (await query(store, added_after=cut)).items] == [oid(3), oid(4, "malware")]  # strict >


async def test_bodies_are_returned_only_when_asked(store: SQLiteStore) -> None:
    record = rec(1)
    await write(store, record)
    assert (await query(store)).items[0].body == record.body
    bare = await store.query_objects(ObjectQuery(collection_id=INBOX, limit=10), with_body=False)
    assert bare.items[0].body == b""


# --- delete ---------------------------------------------------------------------------------------------------------


async def test_deleting_the_last_version_makes_the_previous_one_last(store: SQLiteStore, tmp_path: Path) -> None:
    await write(store, rec(1, V1), rec(1, V2), rec(1, V3), rec(2, V1))
    assert await store.delete_objects(ObjectQuery(INBOX, 1, ids=(oid(1),), version_matches=LAST)) == 1
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 1)}
    assert ids_versions(await query(store)) == [(oid(1), V2), (oid(2), V1)]


async def test_deleting_the_first_version_makes_the_next_one_first(store: SQLiteStore, tmp_path: Path) -> None:
    await write(store, rec(1, V1), rec(1, V2), rec(1, V3))
    assert await store.delete_objects(ObjectQuery(INBOX, 1, ids=(oid(1),), version_matches=(),
                                                  version_times=(V1,))) == 1
    assert flags(tmp_path / "store.db") == {V2: (1, 0), V3: (0, 1)}
    assert ids_versions(await query(store, version_matches=FIRST)) == [(oid(1), V2)]


async def test_deleting_every_version_leaves_other_objects_and_collections(store: SQLiteStore) -> None:
    await write(store, rec(1, V1), rec(1, V2), rec(2, V1))
    await write(store, rec(1, V1), collection=OTHER)
    assert await store.delete_objects(ObjectQuery(INBOX, 1, ids=(oid(1),), version_matches=ALL)) == 2
    assert ids_versions(await query(store, version_matches=ALL)) == [(oid(2), V1)]
    assert ids_versions(await query(store, OTHER)) == [(oid(1), V1)]
    assert await store.delete_objects(ObjectQuery(INBOX, 1, ids=(oid(9),), version_matches=ALL)) == 0


async def test_a_version_reposted_after_delete_is_stored_again(store: SQLiteStore, tmp_path: Path) -> None:
    await write(store, rec(1, V1), rec(1, V2))
    await store.delete_objects(ObjectQuery(INBOX, 1, ids=(oid(1),), version_matches=LAST))
    status = await write(store, rec(1, V2))
    assert status.results[0].outcome is Outcome.STORED
    assert flags(tmp_path / "store.db") == {V1: (1, 0), V2: (0, 1)}


# --- keyset paging and date_added ------------------------------------------------------------------------------------


async def test_keyset_pages_cover_everything_once_in_order(store: SQLiteStore) -> None:
    await write(store, *(rec(n) for n in range(25)))
    seen: list[str] = []
    after: int | None = None
    mores = []
    while True:
        page = await store.query_objects(ObjectQuery(INBOX, 10, after_key=after))
        seen += [i.id for i in page.items]
        mores.append(page.more)
        if not page.more:
            break
        after = page.items[-1].date_added
        if len(seen) == 10:  # written between two pages: lands after the cursor, so it is not skipped
            await write(store, rec(99))
    assert mores == [True, True, False]
    assert seen == [oid(n) for n in range(25)] + [oid(99)]


async def test_after_key_and_added_after_combine_as_the_larger_bound(store: SQLiteStore) -> None:
    await write(store, *(rec(n) for n in range(6)))
    added = [i.date_added for i in (await query(store)).items]
    page = await query(store, added_after=added[1], after_key=added[3])
    assert [i.id for i in page.items] == [oid(4), oid(5)]
    page = await query(store, added_after=added[3], after_key=added[1])
    assert [i.id for i in page.items] == [oid(4), oid(5)]


async def test_an_exact_page_has_no_more(store: SQLiteStore) -> None:
    await write(store, *(rec(n) for n in range(4)))
    assert (await query(store, limit=4)).more is False
    assert (await query(store, limit=3)).more is True


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The store's clock, set by the test (it may stand still or step back)."""
    now = [V3]
    monkeypatch.setattr(store_module, "now_micros", lambda: now[0])
    yield now


async def test_date_added_increases_even_when_the_clock_steps_back(tmp_path: Path, frozen_clock: list[int]) -> None:
    first = SQLiteStore(tmp_path / "store.db")
    await first.start()
    await write(first, rec(1), rec(2))
    frozen_clock[0] = V1  # the wall clock jumps back a month
    await write(first, rec(3))
    await first.close()

    second = SQLiteStore(tmp_path / "store.db")  # a restart with the clock still behind
    await second.start()
    try:
        await write(second, rec(4))
        added = [i.date_added for i in (await query(second)).items]
    finally:
        await second.close()
    assert added[0] == V3
    assert added == sorted(set(added)) and len(added) == 4


# --- query plans ------------------------------------------------------------------------------------------------------


PLANNED = {
    "last": ObjectQuery(INBOX, 100),
    "first": ObjectQuery(INBOX, 100, version_matches=FIRST),
    "all": ObjectQuery(INBOX, 100, version_matches=ALL),
    "first-and-last": ObjectQuery(INBOX, 100, version_matches=(VersionMatch.FIRST, VersionMatch.LAST)),
    "type-last": ObjectQuery(INBOX, 100, types=("malware",)),
    "type-all": ObjectQuery(INBOX, 100, types=("malware",), version_matches=ALL),
    "types-last": ObjectQuery(INBOX, 100, types=("malware", "indicator")),
    "spec-version": ObjectQuery(INBOX, 100, spec_versions=("2.0",)),
    "after-cursor": ObjectQuery(INBOX, 100, after_key=V1, added_after=V1),
    "explicit-version": ObjectQuery(INBOX, 100, version_matches=(), version_times=(V2,)),
    "id": ObjectQuery(INBOX, 100, ids=(oid(7),)),
    "ids-all": ObjectQuery(INBOX, 100, ids=(oid(7), oid(8, "malware")), version_matches=ALL),
}


@pytest.fixture
async def filled_store(store: SQLiteStore) -> SQLiteStore:
    for collection in (INBOX, OTHER):
        await write(store, *(r for n in range(60) for r in (rec(n, V1), rec(n, V2, type_="malware"),
                                                            rec(n, V3, type_="malware"))), collection=collection)
    return store


@pytest.mark.parametrize("name", list(PLANNED))
async def test_reads_are_index_range_scans(filled_store: SQLiteStore, tmp_path: Path, name: str) -> None:
    query_ = PLANNED[name]
    where, params = _where(query_)
    sql = f"SELECT {_COLUMNS}, body FROM {_source(query_)} WHERE {where} ORDER BY date_added LIMIT ?"
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (*params, query_.limit + 1))]
        assert conn.execute(sql, (*params, query_.limit + 1)).fetchall() is not None  # the SQL is what runs
    finally:
        conn.close()
    text = " | ".join(plan)
    assert "SEARCH objects USING" in text and ("USING INDEX" in text or "USING COVERING INDEX" in text), text
    assert "SCAN objects" not in text, text
    if not query_.ids:  # date_added is the rowid: a per-collection index yields rows already in order
        assert "TEMP B-TREE" not in text, text
    page = await filled_store.query_objects(query_)
    assert [i.date_added for i in page.items] == sorted(i.date_added for i in page.items)


async def test_views_continue_their_own_modified_sequence_from_the_shared_one(tmp_path: Path) -> None:
    # Migration 4: before it, every view of an indicator followed indicators.modified, which is at or after each
    # view's last version; each view's own sequence must start there, or a view could go back in time.
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {'; '.join(MIGRATIONS[:3])}; PRAGMA user_version=3; COMMIT;")
    conn.execute("INSERT INTO indicators (id, pattern, created, modified, merged_hash) VALUES (?, ?, ?, ?, ?)",
                 (oid(1), "[ipv4-addr:value = '192.0.2.1']", V1, V3, b"h"))
    conn.execute("INSERT INTO canonical_views (collection, indicator_id, created, merged_hash) VALUES (?, ?, ?, ?)",
                 ("amber", oid(1), V1, b"a"))
    conn.execute("INSERT INTO canonical_views (collection, indicator_id, created, merged_hash) VALUES (?, ?, ?, ?)",
                 ("amber", oid(2), V1, b"b"))  # no indicators row: cannot happen, but must not fail the upgrade
    conn.close()
    store = SQLiteStore(path)
    await store.start()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT indicator_id, modified FROM canonical_views ORDER BY indicator_id").fetchall()
        assert rows == [(oid(1), V3), (oid(2), 0)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()

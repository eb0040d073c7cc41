"""The ingest stage after a crash: journaled envelopes are replayed at startup, exactly once, and audited.

Each test builds the files a hub killed at one particular point would leave behind, then starts a real hub
on them; `prepare` (envelope → records and rejections) is checked on its own as the pure step it is.
"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import requests

from exchange.audit.log import AuditEntry, AuditKind, AuditLog, read_entries, verify_chain
from exchange.ingest.journal import Envelope, Journal
from exchange.ingest.processor import prepare
from exchange.model.timestamps import now_micros
from exchange.store.base import Outcome
from exchange.store.sqlite.store import SQLiteStore
from tests.hubs import INBOX, PASSWORDS, Hub, thread_hub

TAXII = "application/taxii+json;version=2.1"
HEADERS = {"Accept": TAXII}
ALICE = ("alice", PASSWORDS["alice"])


def indicator(n: int, **overrides: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern": f"[ipv4-addr:value = '198.51.100.{n}']", "pattern_type": "stix",
           "valid_from": "2026-01-01T00:00:00Z"}
    return obj | overrides


def envelope(objects: list[Any], account: str = "alice") -> Envelope:
    return Envelope(status_id=str(uuid.uuid4()), api_root="api", collection_id=INBOX, account=account,
                    received_at=now_micros(), total=len(objects),
                    pending=[(o.get("id", ""), o.get("modified", "")) if isinstance(o, dict) else ("", "")
                             for o in objects],
                    body=orjson.dumps({"objects": objects}))


async def leave_behind(data_dir: Path, env: Envelope, *, stored: bool, audited: bool) -> None:
    """The files of a hub killed after the 202 of `env`: journaled, optionally written to the store
    (killed before the audit entry), optionally also audited (killed before marking it processed)."""
    journal, store, audit = Journal(data_dir / "journal.db"), SQLiteStore(data_dir / "store.db"), \
        AuditLog(data_dir / "audit.db")
    for resource in (journal, store, audit):
        await resource.start()
    try:
        await journal.append(env)
        await audit.append(AuditEntry(AuditKind.ENVELOPE_ACCEPTED, env.account, env.collection_id,
                                      {"status_id": env.status_id, "objects": env.total}))
        if stored:
            [status] = await store.write_envelopes([prepare(env)])
            if audited:
                await audit.append(AuditEntry(AuditKind.OBJECTS_STORED, status.account, env.collection_id, {
                    "status_id": status.id,
                    "objects": [[r.id, r.version, r.outcome.value] for r in status.results]}))
    finally:
        for resource in (audit, store, journal):
            await resource.close()


def drain(hub: Hub) -> None:
    hub.call(lambda svc: asyncio.wait_for(svc.processor.wait_idle(), 30))


def get_status(hub: Hub, status_id: str) -> dict[str, Any]:
    response = requests.get(f"{hub.api}status/{status_id}/", auth=ALICE, headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def stored_entries(hub: Hub, status_id: str) -> list[dict[str, Any]]:
    return [e for e in read_entries(hub.data_dir / "audit.db", kind="objects.stored", limit=10_000)
            if e["payload"]["status_id"] == status_id]


def test_an_envelope_acknowledged_but_never_processed_is_replayed(tmp_path: Path) -> None:
    env = envelope([indicator(1), indicator(2), indicator(3, spec_version="3.0")])
    asyncio.run(leave_behind(tmp_path / "data", env, stored=False, audited=False))
    with thread_hub(tmp_path) as hub:
        drain(hub)
        status = get_status(hub, env.status_id)
        assert (status["status"], status["success_count"], status["failure_count"]) == ("complete", 2, 1)
        for n in (1, 2):
            response = requests.get(hub.collection_url() + f"objects/{indicator(n)['id']}/", auth=ALICE,
                                    headers=HEADERS, timeout=10)
            assert response.json()["objects"] == [indicator(n)]
        assert len(stored_entries(hub, env.status_id)) == 1
        assert hub.call(lambda svc: svc.journal.backlog()) == 0
        assert verify_chain(hub.data_dir / "audit.db").broken_at is None


def test_replay_after_the_audit_entry_stores_nothing_twice_and_marks_the_repeat(tmp_path: Path) -> None:
    """The hub cannot tell whether the audit append before the crash committed, so it audits again
    (at-least-once), marking the repeat as replayed; the objects themselves are not stored twice."""
    env = envelope([indicator(1), indicator(2)])
    asyncio.run(leave_behind(tmp_path / "data", env, stored=True, audited=True))
    with thread_hub(tmp_path) as hub:
        drain(hub)
        assert hub.call(lambda svc: svc.journal.backlog()) == 0
        assert hub.call(lambda svc: svc.store.count_objects(INBOX)) == 2
        entries = stored_entries(hub, env.status_id)
        assert [e["payload"].get("replayed", False) for e in entries] == [False, True]
        assert entries[0]["payload"]["objects"] == entries[1]["payload"]["objects"]
        assert get_status(hub, env.status_id)["success_count"] == 2


def test_replay_after_the_store_commit_still_audits_the_stored_objects(tmp_path: Path) -> None:
    """Killed between the store transaction and the audit append: the objects are in the store, so the
    audit log (every object in and out, never optional) must record them after the restart."""
    env = envelope([indicator(1), indicator(2)])
    asyncio.run(leave_behind(tmp_path / "data", env, stored=True, audited=False))
    with thread_hub(tmp_path) as hub:
        drain(hub)
        assert hub.call(lambda svc: svc.journal.backlog()) == 0
        assert hub.call(lambda svc: svc.store.count_objects(INBOX)) == 2
        entries = stored_entries(hub, env.status_id)
        assert len(entries) == 1, "stored objects without an objects.stored audit entry"
        assert sorted(i for i, _, _ in entries[0]["payload"]["objects"]) == [indicator(1)["id"], indicator(2)["id"]]


def test_envelopes_left_behind_are_replayed_in_journal_order(tmp_path: Path) -> None:
    """Two versions of one object in two envelopes, the newer one journaled first: date_added follows the
    journal, while `modified` alone decides which version is the last."""
    older = indicator(1, modified="2026-01-01T00:00:00.000Z")
    newer = indicator(1, modified="2026-02-01T00:00:00.000Z")
    first, second = envelope([newer]), envelope([older])

    async def both() -> None:
        await leave_behind(tmp_path / "data", first, stored=False, audited=False)
        await leave_behind(tmp_path / "data", second, stored=False, audited=False)

    asyncio.run(both())
    with thread_hub(tmp_path) as hub:
        drain(hub)
        response = requests.get(hub.collection_url() + f"objects/{older['id']}/versions/", auth=ALICE,
                                headers=HEADERS, timeout=10)
        assert response.json()["versions"] == ["2026-02-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z"]
        last = requests.get(hub.collection_url() + f"objects/{older['id']}/", auth=ALICE, headers=HEADERS,
                            timeout=10)
        assert last.json()["objects"] == [newer]


# --- prepare: the pure step -----------------------------------------------------------------------------------------


def test_prepare_splits_records_from_rejections() -> None:
    env = envelope([indicator(1), "text", indicator(2, id="indicator--nope"), indicator(3, created="yesterday",
                                                                                     modified=None)])
    write = prepare(env)
    assert write.collection_id == INBOX
    assert [r.id for r in write.records] == [indicator(1)["id"]]
    assert orjson.loads(write.records[0].body) == indicator(1)
    rejected = write.status.results
    assert [r.outcome for r in rejected] == [Outcome.REJECTED] * 3
    assert [r.message.split(":")[0] for r in rejected] == ["objects[1]", "objects[2]", "objects[3]"]
    assert [r.id for r in rejected] == ["", "indicator--nope", indicator(3)["id"]]
    assert (write.status.id, write.status.total, write.status.account) == (env.status_id, 4, "alice")


def test_prepare_keeps_a_bad_journal_body_as_one_rejection() -> None:
    env = Envelope(status_id="s", api_root="api", collection_id=INBOX, account="alice", received_at=0, total=1,
                   pending=[("", "")], body=b"{not json")
    write = prepare(env)
    assert write.records == []
    [result] = write.status.results
    assert result.outcome is Outcome.REJECTED and "bad envelope" in result.message

"""The audit stage: appends form a SHA-256 chain, tampering is found at the first altered entry, the hub
records every object in and out, and `exchange audit verify` reports it."""

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from exchange.audit.log import GENESIS, AuditEntry, AuditKind, AuditLog, link_hash, read_entries, verify_chain
from tests.hubs import INBOX, PASSWORDS, TOKEN, Hub, thread_hub, write_config

ROOT = Path(__file__).resolve().parents[2]
TAXII = "application/taxii+json;version=2.1"
HEADERS = {"Content-Type": TAXII, "Accept": TAXII}
ALICE = ("alice", PASSWORDS["alice"])


def entry(n: int, kind: AuditKind = AuditKind.OBJECTS_SERVED) -> AuditEntry:
    return AuditEntry(kind, f"account-{n % 3}", INBOX, {"n": n, "objects": [[f"indicator--{n}", "v"]]})


@pytest.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(tmp_path / "audit.db")
    await log.start()
    try:
        yield log
    finally:
        await log.close()


async def filled(log: AuditLog, count: int) -> Path:
    await log.append(*(entry(n) for n in range(1, count + 1)))
    return log.path


def tamper(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """What an attacker with file access does: drop the guards, then rewrite history."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        for sql, args in statements:
            conn.execute(sql, args)
        conn.commit()
    finally:
        conn.close()


# --- the chain ---------------------------------------------------------------------------------------------------


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    async def create() -> None:
        log = AuditLog(tmp_path / "audit.db")
        await log.start()
        await log.close()

    asyncio.run(create())
    report = verify_chain(tmp_path / "audit.db")
    assert (report.entries, report.broken_at) == (0, None)


async def test_appends_chain_and_verify_counts_them(audit_log: AuditLog) -> None:
    await audit_log.append(entry(1), entry(2))
    await audit_log.append(entry(3))
    await asyncio.gather(*(audit_log.append(entry(n), entry(n + 100)) for n in range(4, 54)))  # group commits
    report = verify_chain(audit_log.path)  # readable while the log is open (WAL)
    assert (report.entries, report.broken_at, report.reason) == (103, None, "ok")

    conn = sqlite3.connect(audit_log.path)
    rows = conn.execute("SELECT seq, at, kind, account, subject, payload, hash FROM audit ORDER BY seq").fetchall()
    conn.close()
    assert [r[0] for r in rows] == list(range(1, 104))
    prev = GENESIS
    for seq, at, kind, account, subject, payload, digest in rows:
        assert digest == link_hash(prev, seq, at, kind, account, subject, payload)
        prev = digest
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


async def test_reopening_the_log_continues_the_chain(tmp_path: Path) -> None:
    for round_ in range(3):
        log = AuditLog(tmp_path / "audit.db")
        await log.start()
        await log.append(entry(round_), entry(round_ + 10))
        await log.close()
    report = verify_chain(tmp_path / "audit.db")
    assert (report.entries, report.broken_at) == (6, None)


async def test_a_failing_append_rolls_back_alone(audit_log: AuditLog) -> None:
    await audit_log.append(entry(1))
    unpackable = AuditEntry(AuditKind.OBJECTS_SERVED, "alice", INBOX, {"objects": {object()}})
    results = await asyncio.gather(audit_log.append(entry(2)), audit_log.append(entry(3), unpackable),
                                   audit_log.append(entry(4)), return_exceptions=True)
    assert isinstance(results[1], TypeError)
    assert results[0] is None and results[2] is None
    await audit_log.append(entry(5))
    report = verify_chain(audit_log.path)
    assert (report.entries, report.broken_at) == (4, None)  # entry(3) went with the unpackable one
    assert [e["payload"]["n"] for e in read_entries(audit_log.path)] == [1, 2, 4, 5]


@pytest.mark.parametrize("seq", [1, 3, 5])
async def test_an_altered_payload_breaks_the_chain_at_that_entry(audit_log: AuditLog, seq: int) -> None:
    path = await filled(audit_log, 5)
    await audit_log.close()
    tamper(path, ("UPDATE audit SET payload = ? WHERE seq = ?", (b"\x80", seq)))
    report = verify_chain(path)
    assert (report.broken_at, report.entries) == (seq, seq - 1)
    assert f"row {seq}" in report.reason and "hash" in report.reason


@pytest.mark.parametrize(("column", "value"), [("kind", "objects.deleted"), ("account", "mallory"),
                                               ("subject", "another-collection"), ("at", 0)])
async def test_any_altered_field_is_found(audit_log: AuditLog, column: str, value: object) -> None:
    path = await filled(audit_log, 4)
    await audit_log.close()
    tamper(path, (f"UPDATE audit SET {column} = ? WHERE seq = 2", (value,)))
    assert verify_chain(path).broken_at == 2


async def test_a_deleted_middle_entry_breaks_the_chain_there(audit_log: AuditLog) -> None:
    path = await filled(audit_log, 5)
    await audit_log.close()
    tamper(path, ("DELETE FROM audit WHERE seq = ?", (3,)))
    report = verify_chain(path)
    assert (report.broken_at, report.entries) == (3, 2)
    assert "missing" in report.reason


async def test_a_rehashed_entry_still_breaks_the_next_link(audit_log: AuditLog) -> None:
    """Rewriting a row and fixing its own hash moves the break to the row after it."""
    path = await filled(audit_log, 4)
    await audit_log.close()
    conn = sqlite3.connect(path)
    prev, (seq, at, kind, account, subject) = conn.execute("SELECT hash FROM audit WHERE seq = 1").fetchone()[0], \
        conn.execute("SELECT seq, at, kind, account, subject FROM audit WHERE seq = 2").fetchone()
    conn.close()
    forged = b"\x81\xa1n\x00"  # msgpack {"n": 0}
    tamper(path, ("UPDATE audit SET payload = ?, hash = ? WHERE seq = 2",
                  (forged, link_hash(prev, seq, at, kind, account, subject, forged))))
    assert verify_chain(path).broken_at == 3


async def test_update_and_delete_are_refused_while_the_triggers_stand(audit_log: AuditLog) -> None:
    path = await filled(audit_log, 3)
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET account = 'mallory' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        conn.rollback()
    finally:
        conn.close()
    assert verify_chain(path).entries == 3
    assert [e["account"] for e in read_entries(path)] == ["account-1", "account-2", "account-0"]


# --- what the hub records -------------------------------------------------------------------------------------------


def indicator(n: int, **overrides: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
           "created": "2026-01-01T00:00:00.000Z", "modified": f"2026-01-0{n % 9 + 1}T00:00:00.000Z",
           "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
           "valid_from": "2026-01-01T00:00:00Z"}
    return obj | overrides


def drain(hub: Hub) -> None:
    hub.call(lambda svc: asyncio.wait_for(svc.processor.wait_idle(), 30))


def entries_of(hub: Hub, kind: AuditKind) -> list[dict[str, Any]]:
    return read_entries(hub.data_dir / "audit.db", kind=kind.value, limit=10_000)


def test_the_hub_audits_what_comes_in_and_what_goes_out(hub: Hub) -> None:
    good = [indicator(1), indicator(2), indicator(3)]
    bad = indicator(4, spec_version="3.0")
    body = orjson.dumps({"objects": [*good, bad]})
    response = requests.post(hub.collection_url() + "objects/", data=body, auth=ALICE, headers=HEADERS, timeout=10)
    assert response.status_code == 202, response.text
    status_id = response.json()["id"]
    drain(hub)

    [accepted] = entries_of(hub, AuditKind.ENVELOPE_ACCEPTED)
    assert (accepted["account"], accepted["subject"]) == ("alice", INBOX)
    assert accepted["payload"] == {"status_id": status_id, "api_root": "api", "objects": 4,
                                   "sha256": hashlib.sha256(body).hexdigest()}

    [stored] = entries_of(hub, AuditKind.OBJECTS_STORED)
    assert (stored["account"], stored["subject"], stored["payload"]["status_id"]) == ("alice", INBOX, status_id)
    outcomes = {ident: outcome for ident, _, outcome in stored["payload"]["objects"]}
    # All three carry the same pattern: the first makes the canonical indicator, the others merge into it.
    assert outcomes == {good[0]["id"]: "stored", good[1]["id"]: "merged", good[2]["id"]: "merged",
                        bad["id"]: "rejected"}
    versions = {ident: version for ident, version, _ in stored["payload"]["objects"]}
    assert versions[good[0]["id"]].startswith(good[0]["modified"][:19])

    listing = requests.get(hub.collection_url() + "objects/", auth=ALICE, headers=HEADERS, timeout=10)
    one = requests.get(hub.collection_url() + f"objects/{good[1]['id']}/",
                       headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert listing.status_code == one.status_code == 200
    served = entries_of(hub, AuditKind.OBJECTS_SERVED)
    assert [(e["account"], e["subject"]) for e in served] == [("alice", INBOX), ("tokenbot", INBOX)]
    assert [ident for ident, _ in served[0]["payload"]["objects"]] == [o["id"] for o in good]
    assert served[1]["payload"]["objects"] == [[good[1]["id"], versions[good[1]["id"]]]]
    assert served[1]["payload"]["path"].endswith(f"/objects/{good[1]['id']}/")

    deleted = requests.delete(hub.collection_url() + f"objects/{good[2]['id']}/", auth=ALICE, headers=HEADERS,
                              timeout=10)
    assert deleted.status_code == 200, deleted.text
    [gone] = entries_of(hub, AuditKind.OBJECTS_DELETED)
    assert (gone["account"], gone["payload"]["id"], gone["payload"]["versions_deleted"]) == \
        ("alice", good[2]["id"], 1)

    report = verify_chain(hub.data_dir / "audit.db")
    assert (report.entries, report.broken_at) == (5, None)


def test_an_empty_read_records_nothing_served(hub: Hub) -> None:
    response = requests.get(hub.collection_url() + "objects/", auth=ALICE, headers=HEADERS, timeout=10)
    assert response.status_code == 200
    assert entries_of(hub, AuditKind.OBJECTS_SERVED) == []


# --- `exchange audit verify` ---------------------------------------------------------------------------------------


def audit_verify(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exchange", "audit", "verify", "--config", str(config),
                           "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_audit_verify_command_reports_intact_then_broken(tmp_path: Path) -> None:
    with thread_hub(tmp_path) as hub:
        for n in range(3):
            response = requests.post(hub.collection_url() + "objects/", data=orjson.dumps({"objects": [indicator(n)]}),
                                     auth=ALICE, headers=HEADERS, timeout=10)
            assert response.status_code == 202
        drain(hub)
        config, data_dir = hub.config, hub.data_dir
    total = verify_chain(data_dir / "audit.db").entries
    assert total == 6

    intact = audit_verify(config, data_dir)
    assert intact.returncode == 0, intact.stderr
    assert f"{total} entries, chain intact" in intact.stdout

    tamper(data_dir / "audit.db", ("UPDATE audit SET account = 'mallory' WHERE seq = 4", ()))
    broken = audit_verify(config, data_dir)
    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    assert "BROKEN at entry 4" in broken.stdout
    assert "3 entries verified before it" in broken.stdout


def test_audit_verify_without_a_log_is_a_usage_error(tmp_path: Path) -> None:
    result = audit_verify(write_config(tmp_path), tmp_path / "empty")
    assert result.returncode == 2
    assert "no audit log" in result.stderr

"""Payloads stored once in the delivery queue: shared per view, pruned with their last entry, and the migration
of a queue file written before payloads were shared."""

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import msgspec

from exchange.fanout import (
    IDEMPOTENCY_HEADER,
    DeliveryQueue,
    DeliveryState,
    QueueLimits,
    RetryPolicy,
    WebhookDispatcher,
    plan,
    publish,
    verify,
)
from exchange.fanout.queue_sql import MIGRATIONS
from exchange.fanout.signing import idempotency_key
from exchange.policy.tlp import Tlp
from tests.fanout.helpers import SECRET, Clock, Receiver, indicator, member, notice, receivers, subscription, webhook

HOOK = webhook("http://127.0.0.1:1/hook")


def payload_rows(path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, body FROM payloads ORDER BY id").fetchall()


async def test_subscribers_with_the_same_view_share_one_payload_and_other_entitlements_get_theirs(
        tmp_path: Path) -> None:
    path = tmp_path / "fanout.db"
    queue = DeliveryQueue(path)
    await queue.start()
    try:
        alert = notice(1, indicators=[indicator(1, Tlp.GREEN), indicator(2, Tlp.AMBER)])
        members = [member("green-a", subscription("green-a-hook", HOOK), max_tlp=Tlp.GREEN),
                   member("green-b", subscription("green-b-hook", HOOK), max_tlp=Tlp.GREEN),
                   member("amber", subscription("amber-hook", HOOK), max_tlp=Tlp.AMBER)]
        added = {d.subscription_id: d for d in await publish(queue, members, alert)}
        rows = payload_rows(path)
        assert len(rows) == 2  # one per view, not one per subscriber
        assert {bytes(body) for _, body in rows} == {d.body for d in added.values()}
        green_a, green_b, amber = added["green-a-hook"], added["green-b-hook"], added["amber-hook"]
        assert green_a.body == green_b.body != amber.body
        assert green_a.idempotency_key != green_b.idempotency_key  # what differs per subscriber still does
        assert [(await queue.get(d.id)) for d in added.values()] == list(added.values())  # bodies read back
        # A new version of the alert is a new payload; the same version again adds nothing.
        await publish(queue, members, notice(1, version="2026-03-05T00:00:00.000Z",
                                             indicators=[indicator(1, Tlp.GREEN), indicator(2, Tlp.AMBER)]))
        await publish(queue, members, alert)
        assert len(payload_rows(path)) == 4
    finally:
        await queue.close()


async def test_prune_deletes_a_payload_with_the_last_entry_that_references_it(tmp_path: Path) -> None:
    path, clock = tmp_path / "fanout.db", Clock()
    queue = DeliveryQueue(path, QueueLimits(delivered_retention=60, dead_retention=600), now=clock)
    await queue.start()
    try:
        members = [member(name, subscription(f"{name}-hook", HOOK)) for name in ("a", "b")]
        a1, b1 = await publish(queue, members, notice(1))
        await publish(queue, members, notice(2))
        await queue.mark_delivered(a1.id)
        await queue.mark_dead(b1.id, "gave up")
        clock.advance(61)
        assert await queue.prune() == 1
        assert len(payload_rows(path)) == 2  # b's dead letter still needs alert 1's payload
        clock.advance(600)
        assert await queue.prune() == 1
        assert [bytes(body) for _, body in payload_rows(path)] == [d.body for d in await queue.entries("a-hook")]
    finally:
        await queue.close()


def old_queue_file(path: Path, url_subscription: str, body: bytes) -> int:
    """A queue file as the hub wrote it before payloads were shared (schema 1): one pending entry with its body
    inline, after a pruned one (the AUTOINCREMENT high mark is past the ids left). Returns the pending id."""
    alert, version = "report--00000000-0000-5000-8000-000000000001", "2026-03-02T00:00:00.000000Z"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version=1; COMMIT;")
        conn.execute("INSERT INTO streams (subscription, last_seq, pending) VALUES (?, 2, 1)", (url_subscription,))
        conn.execute("INSERT INTO deliveries (id, subscription, seq, channel, alert_id, version, idem_key, body,"
                     " created_at, queued_at, next_attempt_at) VALUES (6, ?, 2, 'webhook', ?, ?, ?, ?, 1, 1, 1)",
                     (url_subscription, alert, version, idempotency_key(url_subscription, alert, version), body))
        conn.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'deliveries'")
    finally:
        conn.close()
    return 6


async def test_entries_queued_before_the_upgrade_are_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "fanout.db"
    body = b'{"type":"bundle","id":"bundle--00000000-0000-5000-8000-000000000001","objects":[]}'
    async with receivers(Receiver()) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        old_id = old_queue_file(path, sub.id, body)
        queue = DeliveryQueue(path)
        await queue.start()
        dispatcher = WebhookDispatcher(queue, [sub], policy=RetryPolicy(base=0.01, cap=0.05, recheck=0.5),
                                       rng=random.Random(7))
        await dispatcher.start()
        try:
            async with asyncio.timeout(10):
                await rx.until(lambda r: len(r.delivered) == 1)
                await dispatcher.wait_idle()
            [got] = rx.delivered
            assert got.body == body and verify(SECRET, got.headers, got.body, now=time.time())
            assert got.headers[IDEMPOTENCY_HEADER] == idempotency_key(sub.id, "report--00000000-0000-5000-8000-"
                                                                      "000000000001", "2026-03-02T00:00:00.000000Z")
            entry = await queue.get(old_id)
            assert entry is not None and entry.state is DeliveryState.DELIVERED
            # New entries share payloads, keep the sequence going and never reuse a pruned entry's id.
            [new] = await publish(queue, [member("acme", sub)], notice(2))
            assert (new.seq, new.id) == (3, 10)
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
                assert conn.execute("SELECT count(*) FROM payloads").fetchone()[0] == 2
        finally:
            await dispatcher.stop()
            await queue.close()


async def test_a_queue_file_of_schema_2_keeps_its_entries_and_its_queued_once_key(tmp_path: Path) -> None:
    # Schema 3 rebuilt the deliveries table with the queued-once key led by the alert version (fewer pages
    # written per enqueue); every entry, sequence, state and the AUTOINCREMENT high mark come through.
    path, version = tmp_path / "fanout.db", "2026-03-02T00:00:00.000000Z"
    members = [member(name, subscription(f"{name}-hook", HOOK)) for name in ("a", "b")]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(f"BEGIN; {MIGRATIONS[0]}; {MIGRATIONS[1]}; PRAGMA user_version=2; COMMIT;")
        conn.execute("INSERT INTO payloads (id, digest, body) VALUES (1, NULL, x'7b7d')")
        rows = [(4, "a-hook", 1, "report--1", "delivered"), (5, "b-hook", 1, "report--1", "dead"),
                (6, "a-hook", 2, "report--2", "pending"), (7, "b-hook", 2, "report--2", "pending")]
        for id_, sub, seq, alert, state in rows:
            conn.execute("INSERT INTO deliveries (id, subscription, seq, channel, alert_id, version, idem_key,"
                         " payload, state, created_at, queued_at, next_attempt_at) VALUES (?, ?, ?, 'webhook', ?, ?,"
                         " ?, 1, ?, 1, 1, 1)", (id_, sub, seq, alert, version, idempotency_key(sub, alert, version),
                                                state))
        conn.executemany("INSERT INTO streams (subscription, last_seq, pending) VALUES (?, 2, 1)",
                         [("a-hook",), ("b-hook",)])
        conn.execute("UPDATE sqlite_sequence SET seq = 20 WHERE name = 'deliveries'")  # as if 8-20 were pruned
    finally:
        conn.close()
    queue = DeliveryQueue(path)
    await queue.start()
    try:
        got = [(d.id, d.subscription_id, d.seq, d.alert_id, d.state) for sub in ("a-hook", "b-hook")
               for d in await queue.entries(sub)]
        assert sorted(got) == rows
        assert [d.id for d in await queue.entries("a-hook", DeliveryState.PENDING)] == [6]
        again = [msgspec.structs.replace(o, alert_id=alert) for alert in ("report--1", "report--2")
                 for o in plan(members, notice(1, version=version))]
        assert await queue.enqueue(again) == []  # queued once, as before the upgrade
        a3, b3 = await publish(queue, members, notice(3))
        assert (a3.id, a3.seq, b3.id, b3.seq) == (21, 3, 22, 3)
        assert [(s.pending, s.delivered, s.dead) for s in await queue.stats()] == [(2, 1, 0), (2, 0, 1)]
    finally:
        await queue.close()

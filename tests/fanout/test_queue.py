"""The durable delivery queue on real SQLite files: idempotent enqueue, sequences, cap, replay, restart."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.fanout import (
    BACKLOG_CAP_REASON,
    ChannelKind,
    DeliveryQueue,
    DeliveryState,
    Outgoing,
    QueueLimits,
    SseChannel,
    publish,
)
from exchange.fanout.queue import Listener, StreamEnded
from exchange.fanout.signing import idempotency_key
from tests.fanout.helpers import Clock, member, notice, subscription, webhook

HOOK = webhook("http://127.0.0.1:1/hook")


def outgoing(sub: str, n: int, version: str = "2026-03-02T00:00:00.000000Z",
             channel: ChannelKind = ChannelKind.WEBHOOK) -> Outgoing:
    alert = f"report--{n}"
    return Outgoing(subscription_id=sub, channel=channel, alert_id=alert, version=version,
                    idempotency_key=idempotency_key(sub, alert, version), body=b'{"n":%d}' % n)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[DeliveryQueue]:
    q = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(backlog_cap=5))
    await q.start()
    yield q
    await q.close()


async def test_enqueue_is_idempotent_per_subscription_alert_and_version(queue: DeliveryQueue) -> None:
    first = await queue.enqueue([outgoing("a", 1), outgoing("b", 1)])
    assert [(d.subscription_id, d.seq, d.state) for d in first] == [("a", 1, "pending"), ("b", 1, "pending")]
    again = await queue.enqueue([outgoing("a", 1), outgoing("a", 2), outgoing("a", 1, "2026-03-03T00:00:00Z")])
    assert [(d.alert_id, d.seq) for d in again] == [("report--2", 2), ("report--1", 3)]  # a new version is new
    assert [d.seq for d in await queue.entries("a")] == [1, 2, 3]
    assert (await queue.position("a")).last_seq == 3


async def test_publish_plans_and_enqueues_once(queue: DeliveryQueue) -> None:
    members = [member("acme", subscription("acme-hook", HOOK), subscription("acme-sse", SseChannel()))]
    added = await publish(queue, members, notice(1))
    assert {d.subscription_id for d in added} == {"acme-hook", "acme-sse"}
    assert await publish(queue, members, notice(1)) == []
    assert len(await publish(queue, members, notice(1, version="2026-03-05T00:00:00.000Z"))) == 2


async def test_transitions_and_stats(queue: DeliveryQueue) -> None:
    a1, a2, a3 = await queue.enqueue([outgoing("a", 1), outgoing("a", 2), outgoing("a", 3)])
    assert await queue.head("a") == a1
    await queue.mark_retry(a1.id, "HTTP 500", a1.next_attempt_at + 10)
    retried = await queue.get(a1.id)
    assert retried is not None and (retried.attempts, retried.last_error) == (1, "HTTP 500")
    await queue.mark_delivered(a1.id)
    await queue.mark_dead(a2.id, "gave up")
    assert await queue.head("a") == a3
    [stats] = await queue.stats()
    assert (stats.subscription_id, stats.pending, stats.delivered, stats.dead, stats.last_seq) == ("a", 1, 1, 1, 3)
    assert stats.oldest_pending_at == a3.queued_at
    # Settled entries do not move back by accident.
    await queue.mark_dead(a1.id, "late failure")
    await queue.mark_retry(a2.id, "late retry", 0)
    assert [(d.state, d.last_error) for d in await queue.entries("a")][:2] == [("delivered", None), ("dead", "gave up")]


async def test_marks_made_together_settle_together(tmp_path: Path) -> None:
    # A thousand receivers answering at once: their marks share one write, and every count stays right.
    queue = DeliveryQueue(tmp_path / "fanout.db")
    await queue.start()
    try:
        entries = await queue.enqueue([outgoing(f"s{n % 7}", n) for n in range(700)])
        await queue.mark_dead(entries[0].id, "evicted while in flight")  # it arrived all the same
        await queue.mark_delivered(entries[1].id)  # settled before: marking it again changes nothing
        await asyncio.gather(*(queue.mark_delivered(e.id) for e in [*entries, entries[2]]))
        stats = await queue.stats()
        assert {(s.pending, s.delivered, s.dead) for s in stats} == {(0, 100, 0)}
        assert sum(s.last_seq for s in stats) == 700
        settled = {d.id: (d.state, d.attempts, d.last_error) for d in await queue.entries("s0")}
        assert settled.pop(entries[0].id) == ("delivered", 2, None)  # one failed attempt, then this one
        assert set(settled.values()) == {("delivered", 1, None)}
        assert (await queue.get(entries[1].id)).attempts == 1  # type: ignore[union-attr]
    finally:
        await queue.close()


async def test_dead_letters_and_replay(queue: DeliveryQueue) -> None:
    a1, a2 = await queue.enqueue([outgoing("a", 1), outgoing("a", 2)])
    b1 = (await queue.enqueue([outgoing("b", 1)]))[0]
    for entry in (a1, a2, b1):
        await queue.mark_dead(entry.id, "HTTP 500")
    assert [d.id for d in await queue.dead_letters()] == [a1.id, a2.id, b1.id]
    assert [d.id for d in await queue.dead_letters("a")] == [a1.id, a2.id]
    assert [d.id for d in await queue.dead_letters(limit=2, after_id=a1.id)] == [a2.id, b1.id]
    announced: list[set[str]] = []
    queue.watch(lambda entries: announced.append({e.subscription_id for e in entries}))
    replayed = await queue.replay(a1.id)
    assert replayed is not None
    assert (replayed.id, replayed.seq, replayed.state, replayed.attempts, replayed.last_error) == (
        a1.id, 3, DeliveryState.PENDING, 0, None)  # same id, a new place at the end of the queue
    assert await queue.replay(a1.id) is None  # not dead any more
    assert [d.id for d in await queue.replay_subscription("b")] == [b1.id]
    assert announced == [{"a"}, {"b"}]
    assert [d.id for d in await queue.dead_letters()] == [a2.id]


async def test_backlog_cap_dead_letters_the_oldest(queue: DeliveryQueue) -> None:
    await queue.enqueue([outgoing("a", n) for n in range(1, 5)])
    await queue.enqueue([outgoing("b", 1)])
    added = await queue.enqueue([outgoing("a", n) for n in range(5, 9)])  # 8 pending, the cap is 5
    assert [d.alert_id for d in added] == ["report--5", "report--6", "report--7", "report--8"]
    dead = await queue.dead_letters("a")
    assert [d.alert_id for d in dead] == ["report--1", "report--2", "report--3"]
    assert all(d.last_error is not None and d.last_error.startswith(BACKLOG_CAP_REASON) for d in dead)
    assert len(await queue.entries("a", DeliveryState.PENDING)) == 5
    assert len(await queue.entries("b", DeliveryState.PENDING)) == 1  # other subscribers are not touched
    # A batch larger than the cap keeps its newest entries.
    added = await queue.enqueue([outgoing("c", n) for n in range(1, 9)])
    assert [d.alert_id for d in added] == [f"report--{n}" for n in range(4, 9)]
    # Replaying into a full queue applies the cap too: the backlog never grows past it.
    await queue.replay_subscription("a")
    assert len(await queue.entries("a", DeliveryState.PENDING)) == 5


async def test_restart_loses_nothing_pending(tmp_path: Path) -> None:
    path = tmp_path / "fanout.db"
    q = DeliveryQueue(path)
    await q.start()
    added = await q.enqueue([outgoing("a", n) for n in range(1, 4)])
    await q.mark_retry(added[0].id, "HTTP 503", 123)
    await q.mark_delivered(added[1].id)
    await q.close()
    reopened = DeliveryQueue(path)
    await reopened.start()
    try:
        entries = await reopened.entries("a")
        assert [(d.seq, d.state, d.attempts, d.body) for d in entries] == [
            (1, "pending", 1, b'{"n":1}'), (2, "delivered", 1, b'{"n":2}'), (3, "pending", 0, b'{"n":3}')]
        assert (await reopened.enqueue([outgoing("a", 4)]))[0].seq == 4  # sequences continue
        assert await reopened.enqueue([outgoing("a", 1)]) == []  # and so does idempotency
    finally:
        await reopened.close()


async def test_acknowledge_settles_what_an_sse_client_has(queue: DeliveryQueue) -> None:
    await queue.enqueue([outgoing("a", n, channel=ChannelKind.SSE) for n in range(1, 5)])
    await queue.enqueue([outgoing("hook", 1)])
    assert await queue.acknowledge("hook", 1) == 0  # only a webhook's receiver says what it got
    assert await queue.acknowledge("a", 2) == 2
    assert await queue.acknowledge("a", 2) == 0
    assert [d.state for d in await queue.entries("a")] == ["delivered", "delivered", "pending", "pending"]
    assert (await queue.position("a")).acked_seq == 2
    assert [d.seq for d in await queue.after("a", 1, 10)] == [2, 3, 4]
    assert [(s.subscription_id, s.pending) for s in await queue.stats()] == [("a", 2), ("hook", 1)]


async def test_prune_forgets_settled_entries_after_their_retention(tmp_path: Path) -> None:
    clock = Clock()
    q = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(delivered_retention=60, dead_retention=600), now=clock)
    await q.start()
    try:
        a1, a2, _ = await q.enqueue([outgoing("a", n) for n in range(1, 4)])
        await q.mark_delivered(a1.id)
        await q.mark_dead(a2.id, "gave up")
        assert await q.prune() == 0
        clock.advance(61)
        assert await q.prune() == 1
        clock.advance(600)
        assert await q.prune() == 1
        assert [d.state for d in await q.entries("a")] == ["pending"]
    finally:
        await q.close()


async def test_a_listener_is_bounded() -> None:
    listener = Listener(maxsize=2)
    assert await listener.take(0.01) == []
    for _ in range(3):
        listener.push(None)  # type: ignore[arg-type]
    with pytest.raises(StreamEnded, match="more than 2 entries behind"):
        await listener.take(0.01)


async def test_noted_marks_are_written_together_after_the_delay(tmp_path: Path) -> None:
    # A webhook worker notes its mark and goes on: the marks of a whole fan-out share a write a moment later.
    queue = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(mark_delay=0.2))
    await queue.start()
    try:
        entries = await queue.enqueue([outgoing(f"s{n % 3}", n) for n in range(30)])
        for entry in entries[:20]:
            queue.note_delivered(entry.id)
        await asyncio.sleep(0.05)
        assert {d.state for d in await queue.entries("s0")} == {"pending"}  # not yet: within the delay
        async with asyncio.timeout(5):
            assert await queue.marks_written()
        states = [(await queue.get(e.id)).state for e in entries]  # type: ignore[union-attr]
        assert states == ["delivered"] * 20 + ["pending"] * 10
        assert sorted((s.pending, s.delivered) for s in await queue.stats()) == [(3, 7), (3, 7), (4, 6)]
        assert await queue.marks_written()  # nothing noted since: at once
    finally:
        await queue.close()


async def test_an_awaited_mark_does_not_wait_for_the_delay(tmp_path: Path) -> None:
    queue = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(mark_delay=60))
    await queue.start()
    try:
        first, second = await queue.enqueue([outgoing("a", 1), outgoing("a", 2)])
        queue.note_delivered(first.id)
        async with asyncio.timeout(5):
            await queue.mark_delivered(second.id)  # takes the noted one along
        assert [d.state for d in await queue.entries("a")] == ["delivered", "delivered"]
    finally:
        await queue.close()


async def test_close_writes_the_noted_marks(tmp_path: Path) -> None:
    queue = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(mark_delay=60))
    await queue.start()
    first, _ = await queue.enqueue([outgoing("a", 1), outgoing("a", 2)])
    queue.note_delivered(first.id)
    async with asyncio.timeout(5):
        await queue.close()
    reopened = DeliveryQueue(tmp_path / "fanout.db")
    await reopened.start()
    try:
        assert [d.state for d in await reopened.entries("a")] == ["delivered", "pending"]
    finally:
        await reopened.close()

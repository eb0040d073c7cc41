"""Webhook delivery against real receivers on loopback: signatures, retries, dead letters, isolation, restart."""

import asyncio
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec

from exchange.fanout import (
    IDEMPOTENCY_HEADER,
    ChannelKind,
    DeliveryQueue,
    DeliveryState,
    Member,
    QueueLimits,
    RetryPolicy,
    Subscription,
    WebhookDispatcher,
    plan,
    publish,
    verify,
)
from exchange.fanout.records import Delivery
from exchange.fanout.webhooks import FRESH_MAX, STIX_MEDIA_TYPE, next_attempt_at
from tests.fanout.helpers import SECRET, Clock, Receiver, member, notice, receivers, subscription, webhook

FAST = RetryPolicy(base=0.01, cap=0.05, recheck=0.5)


@asynccontextmanager
async def hub(tmp_path: Path, subs: Iterable[Subscription], clock: Clock | None = None,
              policy: RetryPolicy = FAST) -> AsyncIterator[tuple[DeliveryQueue, WebhookDispatcher, list[Member]]]:
    subs = list(subs)
    clock = clock or Clock()
    queue = DeliveryQueue(tmp_path / "fanout.db", now=clock)
    await queue.start()
    dispatcher = WebhookDispatcher(queue, subs, policy=policy, now=clock, rng=random.Random(7))
    await dispatcher.start()
    try:
        yield queue, dispatcher, [member("acme", *subs)]
    finally:
        await dispatcher.stop()
        await queue.close()


async def test_delivery_is_signed_and_carries_the_bundle(tmp_path: Path) -> None:
    clock = Clock()
    async with receivers(Receiver()) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        async with hub(tmp_path, [sub], clock) as (queue, dispatcher, members):
            alert = notice(1)
            [entry] = await publish(queue, members, alert)
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            [got] = rx.requests
            assert got.headers["Content-Type"] == STIX_MEDIA_TYPE
            assert verify(SECRET, got.headers, got.body, now=clock() / 1e6)
            assert got.headers[IDEMPOTENCY_HEADER] == entry.idempotency_key
            assert got.headers["X-Exchange-Event-Id"] == str(entry.id)
            assert got.headers["X-Exchange-Attempt"] == "1"
            assert got.bundle["type"] == "bundle" and got.bundle["objects"] == list(alert.objects)
            delivered = await queue.get(entry.id)
            assert delivered is not None and (delivered.state, delivered.attempts) == (DeliveryState.DELIVERED, 1)


async def test_two_failures_then_success_is_delivered_once(tmp_path: Path) -> None:
    async with receivers(Receiver(script=[500, 500])) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        async with hub(tmp_path, [sub]) as (queue, dispatcher, members):
            [entry] = await publish(queue, members, notice(1))
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            assert [r.status for r in rx.requests] == [500, 500, 200]
            assert len(rx.delivered) == 1
            assert {r.headers[IDEMPOTENCY_HEADER] for r in rx.requests} == {entry.idempotency_key}
            assert {r.body for r in rx.requests} == {entry.body}  # every attempt sends the same bytes
            assert [r.headers["X-Exchange-Attempt"] for r in rx.requests] == ["1", "2", "3"]
            done = await queue.get(entry.id)
            assert done is not None and (done.state, done.attempts) == ("delivered", 3)


async def test_a_receiver_that_always_fails_ends_in_dead_letters_and_replay_delivers(tmp_path: Path) -> None:
    clock = Clock()
    async with receivers(Receiver(status=500)) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url, max_retry=3600))
        async with hub(tmp_path, [sub], clock) as (queue, dispatcher, members):
            [first] = await publish(queue, members, notice(1))
            [second] = await publish(queue, members, notice(2))
            async with asyncio.timeout(10):
                await rx.until(lambda r: len(r.requests) >= 3)  # backing off on the first entry
            assert {r.headers[IDEMPOTENCY_HEADER] for r in rx.requests} == {first.idempotency_key}  # in order
            clock.advance(3600)  # the hour of retries is over
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            dead = await queue.dead_letters("acme-hook")
            assert [d.id for d in dead] == [first.id, second.id]
            assert all(d.last_error is not None and "HTTP 500: receiver says no" in d.last_error for d in dead)
            assert dead[1].attempts == 1  # past its budget too: one last try, no backoff
            rx.status = 200
            before = len(rx.requests)
            replayed = await queue.replay(first.id)
            assert replayed is not None
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            assert [r.headers[IDEMPOTENCY_HEADER] for r in rx.requests[before:]] == [first.idempotency_key]
            assert len(rx.delivered) == 1
            assert [d.id for d in await queue.dead_letters()] == [second.id]


async def test_a_hanging_receiver_does_not_delay_a_healthy_one(tmp_path: Path) -> None:
    async with receivers(Receiver(hang=True), Receiver()) as [stuck, healthy]:
        subs = [subscription("stuck", webhook(stuck.url, timeout=30)), subscription("healthy", webhook(healthy.url))]
        async with hub(tmp_path, subs) as (queue, dispatcher, members):
            for n in range(1, 21):
                await publish(queue, members, notice(n))
            async with asyncio.timeout(5):  # far less than the stuck receiver's 30 s timeout
                await dispatcher.wait_idle(["healthy"])
            assert len(healthy.delivered) == 20
            assert stuck.requests == []  # still hanging on the first
            assert len(await queue.entries("stuck", DeliveryState.PENDING)) == 20


async def test_a_timeout_is_a_failed_attempt(tmp_path: Path) -> None:
    async with receivers(Receiver(hang=True)) as [stuck]:
        sub = subscription("stuck", webhook(stuck.url, timeout=0.2, max_retry=0.5))
        async with hub(tmp_path, [sub]) as (queue, dispatcher, members):
            [entry] = await publish(queue, members, notice(1))
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            dead = await queue.get(entry.id)
            assert dead is not None and dead.state == DeliveryState.DEAD and dead.attempts >= 2
            assert dead.last_error is not None and dead.last_error.endswith(": no answer within 0.2s")


async def test_a_restart_loses_nothing_pending(tmp_path: Path) -> None:
    async with receivers(Receiver(status=503)) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        async with hub(tmp_path, [sub]) as (queue, _, members):
            published = [(await publish(queue, members, notice(n)))[0] for n in range(1, 4)]
            async with asyncio.timeout(10):
                await rx.until(lambda r: len(r.requests) >= 2)
        # The hub is down; the receiver recovers; the hub comes back on the same file.
        rx.status = 200
        async with hub(tmp_path, [sub]) as (queue, dispatcher, _):
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            assert [r.headers[IDEMPOTENCY_HEADER] for r in rx.delivered] == [d.idempotency_key for d in published]
            assert [d.state for d in await queue.entries("acme-hook")] == ["delivered"] * 3


async def test_bursts_are_delivered_in_order_once_each(tmp_path: Path) -> None:
    # Some failures among the successes, and one burst larger than a worker keeps in memory (FRESH_MAX):
    # every path between the in-memory announcements and the file is taken.
    async with receivers(Receiver(script=([200] * 6 + [500]) * 40)) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        async with hub(tmp_path, [sub]) as (queue, dispatcher, members):
            published: list[Delivery] = []
            for n in range(1, 41):
                published += await publish(queue, members, notice(n))
            published += await queue.enqueue([o for n in range(41, 141) for o in plan(members, notice(n))])
            async with asyncio.timeout(20):
                await dispatcher.wait_idle()
            keys = [r.headers[IDEMPOTENCY_HEADER] for r in rx.delivered]
            assert keys == [d.idempotency_key for d in published]
            assert any(r.status == 500 for r in rx.requests)


async def test_subscriptions_can_change_while_running(tmp_path: Path) -> None:
    async with receivers(Receiver(), Receiver()) as [old, new]:
        first = subscription("acme-hook", webhook(old.url))
        async with hub(tmp_path, [first]) as (queue, dispatcher, _):
            moved = subscription("acme-hook", webhook(new.url))
            dispatcher.set_subscriptions([moved])
            await publish(queue, [member("acme", moved)], notice(1))
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            assert (len(old.requests), len(new.delivered)) == (0, 1)


async def test_entries_another_process_queued_are_sent_at_the_periodic_look(tmp_path: Path) -> None:
    async with receivers(Receiver()) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        async with hub(tmp_path, [sub]) as (_, dispatcher, members):
            # The CLI's queue on the same file: the dispatcher hears nothing of what it adds.
            other = DeliveryQueue(tmp_path / "fanout.db")
            await other.start()
            try:
                [entry] = await publish(other, members, notice(1))
            finally:
                await other.close()
            async with asyncio.timeout(10):  # FAST.recheck is half a second
                await rx.until(lambda r: len(r.delivered) == 1)
                await dispatcher.wait_idle()
            assert rx.delivered[0].headers[IDEMPOTENCY_HEADER] == entry.idempotency_key


class Highest(random.Random):
    """Full jitter at its ceiling: the longest wait the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_retry_schedule_stays_within_the_budget() -> None:
    entry = Delivery(id=1, subscription_id="s", seq=1, channel=ChannelKind.WEBHOOK, alert_id="a", version="v",
                     idempotency_key="k", body=b"", state=DeliveryState.PENDING, attempts=0, created_at=0,
                     queued_at=0, next_attempt_at=0, last_error=None, settled_at=None)
    policy = RetryPolicy(base=2.0, cap=600.0)
    assert next_attempt_at(entry, 1_000_000, 3600, policy, Highest()) == 5_000_000  # within 2 * base
    late = msgspec.structs.replace(entry, attempts=20)
    assert next_attempt_at(late, 1_000_000, 3600, policy, Highest()) == 601_000_000  # capped
    assert next_attempt_at(late, 3_599_000_000, 3600, policy, Highest()) == 3_600_000_000  # last try at the deadline
    assert next_attempt_at(late, 3_600_000_000, 3600, policy, Highest()) is None
    jittered = {next_attempt_at(entry, 0, 3600, policy, random.Random(seed)) for seed in range(20)}
    assert len(jittered) == 20 and all(0 <= t <= 4_000_000 for t in jittered if t is not None)  # type: ignore[operator]


async def test_a_worker_reading_its_file_waits_for_its_marks_and_sends_nothing_twice(tmp_path: Path) -> None:
    # More entries than a worker keeps in memory: past FRESH_MAX it reads the file, whose marks of the entries
    # already delivered are still gathering (a long mark delay). It must wait for them, not send those again.
    count = FRESH_MAX + 16
    async with receivers(Receiver()) as [rx]:
        sub = subscription("acme-hook", webhook(rx.url))
        queue = DeliveryQueue(tmp_path / "fanout.db", QueueLimits(mark_delay=0.3))
        await queue.start()
        dispatcher = WebhookDispatcher(queue, [sub], policy=FAST, rng=random.Random(7))
        await dispatcher.start()
        try:
            added = await queue.enqueue([msgspec.structs.replace(o, alert_id=f"report--{n}") for n, o in enumerate(
                plan([member("acme", sub)], notice(1)) * count)])
            async with asyncio.timeout(10):
                await dispatcher.wait_idle()
            assert [r.headers["X-Exchange-Event-Id"] for r in rx.requests] == [str(d.id) for d in added]
            assert {d.state for d in await queue.entries(sub.id)} == {DeliveryState.DELIVERED}  # wait_idle waited
        finally:
            await dispatcher.stop()
            await queue.close()

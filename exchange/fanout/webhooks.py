"""Webhook delivery (fan-out stage): one worker task per webhook subscription POSTs its queue, in order.

A worker holds at most one request in flight, so a slow or dead receiver only ever delays its own queue;
nothing awaits one subscriber on behalf of the others. At-least-once: an entry leaves `pending` only after
a 2xx (or when its retry budget is spent), and the idempotency key lets the receiver drop repeats.
"""

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from exchange import __version__
from exchange.fanout.http1 import ConnectionPool, ProtocolError
from exchange.fanout.queue import DeliveryQueue
from exchange.fanout.records import Delivery, Subscription, WebhookChannel
from exchange.fanout.signing import delivery_headers
from exchange.model.timestamps import now_micros
from exchange.policy.backoff import backoff_delay

log = logging.getLogger(__name__)
# The payload is a STIX 2.1 bundle, so it says so (STIX 2.1 section 1.6 / TAXII media type). Receivers must
# read the raw body to verify the signature anyway; docs/members.md says to parse it as JSON whatever the
# content type.
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
USER_AGENT = f"exchange/{__version__} (alert webhook)"
FRESH_MAX = 64  # announced entries a worker keeps in memory; beyond, it reads them from the file
ERROR_SNIPPET = 512  # bytes of a failed answer kept in last_error: enough to see the receiver's complaint


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 2.0  # seconds: the first retry comes within 2 * base
    cap: float = 600.0  # the longest wait between two attempts: a recovered receiver hears within 10 min
    recheck: float = 30.0  # idle workers look at their queues anyway: replays made by another process (CLI)
    error_pause: float = 5.0  # after an unexpected error (the queue file, a bug) before the worker goes on


def next_attempt_at(entry: Delivery, now: int, max_retry: float, policy: RetryPolicy,
                    rng: random.Random) -> int | None:
    """When to try a failed entry again (micros), or None when its retry budget is spent.

    The budget counts from when the entry was queued (or replayed), not from its first attempt: behind a
    receiver that is down, later alerts wait their turn, and an alert older than the budget is stale.
    The last try is made at the deadline itself.
    """
    deadline = entry.queued_at + int(max_retry * 1e6)
    if now >= deadline:
        return None
    delay = backoff_delay(entry.attempts + 1, policy.base, policy.cap, rng)
    return min(now + int(delay * 1e6), deadline)


async def post_delivery(client: ConnectionPool, channel: WebhookChannel, entry: Delivery,
                        timestamp: int) -> str | None:
    """POST one entry, signed at `timestamp` (unix seconds); None on a 2xx, else what went wrong."""
    headers = {"Content-Type": STIX_MEDIA_TYPE, "User-Agent": USER_AGENT,
               **delivery_headers(channel.secret, entry.body, timestamp=timestamp, key=entry.idempotency_key,
                                  event_id=entry.id, attempt=entry.attempts + 1)}
    try:
        # No redirects: a POST that is redirected is a misconfigured URL, and following it would send the
        # signed alert somewhere the member did not register. The client follows none.
        answer = await client.post(channel.url, entry.body, headers, timeout=channel.timeout, keep=ERROR_SNIPPET)
    except TimeoutError:
        return f"no answer within {channel.timeout:g}s"
    except (OSError, ProtocolError, ValueError) as exc:  # ValueError: a URL that is not http(s) with a host
        return f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status < 300:
        return None
    snippet = answer.body.decode("utf-8", "replace").strip()
    return f"HTTP {answer.status}" + (f": {snippet}" if snippet else "")


class _Worker:
    """Delivers one subscription's queue; never raises (one broken receiver must not stop the others).

    The queue file is the truth; reading its head costs a trip through the engine's reader threads, which
    for a thousand subscribers is a good part of an alert's latency. So while the worker knows the file holds
    nothing older (its last read found nothing pending), the entries the queue announces after each commit
    are delivered straight from memory, in order, at most FRESH_MAX of them; any doubt (a failure, an
    overflow, an announcement that came during a read) sends it back to reading the file.
    """

    def __init__(self, sub: Subscription, channel: WebhookChannel, queue: DeliveryQueue,
                 client: ConnectionPool, policy: RetryPolicy, now: Callable[[], int],
                 rng: random.Random) -> None:
        self.sub = sub
        self.channel = channel
        self._queue = queue
        self._client = client
        self._policy = policy
        self._now = now
        self._rng = rng
        self.outcome: Callable[[str, str], None] = _ignore  # (subscription, delivered|failed|dead): metrics
        self._poke = asyncio.Event()
        self.idle = asyncio.Event()  # set when the queue had nothing pending at the last look
        self._generation = 0  # bumped by every wake: an idle verdict from an older look does not count
        self._fresh: deque[Delivery] = deque()  # announced entries, valid only while _caught_up
        self._caught_up = False  # the file had nothing pending at the last read, and nothing was missed since
        self._reading = False
        self._missed = False  # an announcement came during a read: the read may not have seen it
        self._unwritten = False  # delivered marks noted and maybe not committed yet
        self._waiting_idle = False

    def wake(self) -> None:
        self._generation += 1
        self.idle.clear()
        self._poke.set()

    def offer(self, entry: Delivery) -> None:
        """An entry the queue has just committed for this subscription."""
        if self._caught_up and len(self._fresh) < FRESH_MAX:
            self._fresh.append(entry)
        else:
            self._forget()
            self._missed = self._missed or self._reading
        self.wake()

    def _forget(self) -> None:
        self._caught_up = False
        self._fresh.clear()

    def recheck(self) -> None:
        """The periodic look (the dispatcher's): the file may hold entries another process (the CLI) added."""
        if self._waiting_idle:
            self._forget()
            self.wake()

    async def run(self) -> None:
        while True:
            generation = self._generation
            try:
                wait = await self.step()
            except Exception:
                log.exception("webhook %s: unexpected error", self.sub.id)
                self._forget()
                wait = self._policy.error_pause
            if wait is None:
                if generation == self._generation:
                    self.idle.set()
                # No timer of its own while idle: the dispatcher's periodic recheck() stands in for a thousand.
                self._waiting_idle = True
                try:
                    await self._poke.wait()
                finally:
                    self._waiting_idle = False
            elif wait > 0:
                # asyncio.timeout, not wait_for: no task per wait
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._poke.wait()
            self._poke.clear()

    async def step(self) -> float | None:
        """Try the head of the queue if it is due; returns seconds to wait (None: nothing pending)."""
        if self._unwritten and not self._fresh and not self._caught_up:
            # Before the file is read, its marks must be committed, now: it would still show a delivered entry
            # pending, and that would be sent twice. (Going idle needs no wait: wait_idle waits for the marks.)
            self._unwritten = False
            await self._queue.marks_written(now=True)  # failed: the entries are pending, the read resends them
        if self._fresh:
            entry: Delivery | None = self._fresh[0]
        elif self._caught_up:  # nothing in the file, nothing announced since
            return None
        else:
            entry = await self._read_head()
        if entry is None:
            return None
        now = self._now()
        if entry.next_attempt_at > now:
            return (entry.next_attempt_at - now) / 1e6
        error = await post_delivery(self._client, self.channel, entry, timestamp=now // 1_000_000)
        if error is None:
            self._queue.note_delivered(entry.id)  # committed shortly, with the other workers' marks
            self._unwritten = True
            self.outcome(self.sub.id, "delivered")
            self._settled(entry)
            return 0.0
        self._forget()  # the entry stays at the head of the file with a new schedule: read it from there
        now = self._now()
        retry_at = next_attempt_at(entry, now, self.channel.max_retry, self._policy, self._rng)
        if retry_at is None:
            log.warning("webhook %s: delivery %d dead after %d attempts: %s", self.sub.id, entry.id,
                        entry.attempts + 1, error)
            await self._queue.mark_dead(entry.id, f"gave up after {entry.attempts + 1} attempts: {error}")
            self.outcome(self.sub.id, "dead")
            return 0.0
        await self._queue.mark_retry(entry.id, error, retry_at)
        self.outcome(self.sub.id, "failed")
        return (retry_at - now) / 1e6

    async def _read_head(self) -> Delivery | None:
        self._caught_up = self._missed = False
        self._reading = True
        try:
            entry = await self._queue.head(self.sub.id)
        finally:
            self._reading = False
        if entry is None:
            self._caught_up = not self._missed
        return entry

    def _settled(self, entry: Delivery) -> None:
        if self._fresh and self._fresh[0].id == entry.id:
            self._fresh.popleft()


class WebhookDispatcher:
    """Owns the webhook workers (a TaskGroup inside `run`) and their HTTP connections (`client`, unless given).

    Wiring: `start()` in a cleanup_ctx and `stop()` after its yield, or run `run()` in a TaskGroup of your own;
    stop it before closing the queue. The queue's watch hook wakes the right workers after every enqueue or
    replay; `wake()` is public too.
    """

    def __init__(self, queue: DeliveryQueue, subscriptions: Iterable[Subscription], *,
                 policy: RetryPolicy = RetryPolicy(), now: Callable[[], int] = now_micros,
                 rng: random.Random | None = None, client: ConnectionPool | None = None) -> None:
        self._queue = queue
        self._subs = _webhooks(subscriptions)
        self.outcome: Callable[[str, str], None] = _ignore  # set before start(): told every attempt's outcome
        self._policy = policy
        self._now = now
        self._rng = rng or random.Random()
        self._given_client = client
        self._client: ConnectionPool | None = None
        self._group: asyncio.TaskGroup | None = None
        self._workers: dict[str, tuple[_Worker, asyncio.Task[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Run in a task of its own; returns once every worker is started."""
        self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            await self._task  # run() failed at startup: raise that here

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Deliver until cancelled."""
        # One in-flight request per subscription already bounds the connections: a cap on them would let a
        # few hanging receivers starve every other subscriber. The client keeps no cookies: a receiver's must
        # not ride along to the next member on the same host.
        client = self._given_client or ConnectionPool()
        unwatch = self._queue.watch(self._offer)
        try:
            async with asyncio.TaskGroup() as group:
                self._client, self._group = client, group
                for sub in self._subs.values():
                    self._spawn(sub)
                self._ready.set()
                await self._recheck()  # the workers run in the group until cancellation
        finally:
            unwatch()
            self._ready.clear()
            self._group = None
            self._workers.clear()
            if self._given_client is None:
                await client.close()

    async def _recheck(self) -> None:
        """Now and then, idle workers whose subscription has entries pending in the file look at it again (one
        query here rather than a timer and a read per worker: a thousand idle workers after every alert)."""
        while True:
            await asyncio.sleep(self._policy.recheck)
            try:
                pending = await self._queue.pending_subscriptions()
            except Exception:  # the file's trouble shows in the workers' own reads; try again next time
                log.exception("webhook recheck failed")
                continue
            for sub_id in pending:
                if (found := self._workers.get(sub_id)) is not None:
                    found[0].recheck()

    def set_subscriptions(self, subscriptions: Iterable[Subscription]) -> None:
        """Follow a changed configuration: workers of removed or changed subscriptions stop (an entry in
        flight stays pending and is sent again), new ones start."""
        new = _webhooks(subscriptions)
        for sub_id in [i for i, (w, _) in self._workers.items() if new.get(i) != w.sub]:
            self._workers.pop(sub_id)[1].cancel()
        self._subs = new
        if self._group is not None:
            for sub in new.values():
                if sub.id not in self._workers:
                    self._spawn(sub)

    def wake(self, subscription_ids: Collection[str] | None = None) -> None:
        """Look at these subscriptions' queues now (all when None); ids without a webhook worker are ignored."""
        for sub_id, (worker, _) in self._workers.items():
            if subscription_ids is None or sub_id in subscription_ids:
                worker.wake()

    def _offer(self, entries: Sequence[Delivery]) -> None:
        for entry in entries:
            found = self._workers.get(entry.subscription_id)
            if found is not None:
                found[0].offer(entry)

    async def wait_idle(self, subscription_ids: Collection[str] | None = None) -> None:
        """Until these subscriptions (all when None) have nothing pending: every entry delivered or dead.

        For tests and benchmarks instead of sleeps; wrap it in a timeout, a failing receiver keeps its queue
        busy for as long as its retry budget. Entries added by another process are seen at the workers' next
        periodic look (RetryPolicy.recheck), not here.
        """
        workers = [w for i, (w, _) in self._workers.items() if subscription_ids is None or i in subscription_ids]
        for worker in workers:
            worker.wake()  # a new verdict: an idle flag set before the caller's last enqueue does not count
        await asyncio.gather(*(w.idle.wait() for w in workers))
        await self._queue.marks_written(now=True)  # and the file says so

    def _spawn(self, sub: Subscription) -> None:
        assert self._group is not None and self._client is not None and isinstance(sub.channel, WebhookChannel)
        worker = _Worker(sub, sub.channel, self._queue, self._client, self._policy, self._now, self._rng)
        worker.outcome = self.outcome
        task = self._group.create_task(worker.run(), name=f"webhook:{sub.id}")
        self._workers[sub.id] = (worker, task)


def _ignore(subscription: str, outcome: str) -> None:
    pass


def _webhooks(subscriptions: Iterable[Subscription]) -> dict[str, Subscription]:
    return {s.id: s for s in subscriptions if isinstance(s.channel, WebhookChannel)}

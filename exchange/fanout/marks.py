"""Delivered marks of the delivery queue (fan-out stage): gathered in memory and committed together.

A webhook worker that got a 2xx notes the mark and goes on; the marks are committed a short delay later, many
in one write. Delivery is at-least-once, so a mark lost in a crash costs one repeated POST (which the receiver
drops by its idempotency key), never a lost alert. Committing each answer's mark at once instead cost the
event loop about a third of its time per alert to a thousand subscribers (issue #5): dozens of small writes
whose thread hops and GIL hand-offs land while the loop is busy with the other receivers.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Batch:
    """Marks that share one write, and its outcome."""

    done: asyncio.Future[None]
    ids: list[int] = field(default_factory=list)
    urgent: bool = False  # someone awaits it: written at the next turn, not after the delay


class DeliveredMarks:
    """One write of marks at a time; those noted meanwhile gather for the next, which starts `delay` seconds
    after the first of them (or at once, when urgent), so a fan-out to a thousand subscribers makes a few
    writes, not one per answer."""

    def __init__(self, write: Callable[[list[int]], Awaitable[None]], delay: float) -> None:
        self._write = write
        self._delay = delay
        self._gathering: _Batch | None = None
        self._inflight: _Batch | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def note(self, delivery_id: int, *, urgent: bool = False) -> asyncio.Future[None]:
        """Gather a mark; the future of the write that will hold it (never cancel it: others share it)."""
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch(asyncio.get_running_loop().create_future())
        batch.ids.append(delivery_id)
        batch.urgent = batch.urgent or urgent
        self._schedule()
        return batch.done

    async def written(self, *, now: bool = False) -> bool:
        """Until every mark noted so far is committed (`now`: without waiting for the delay); False when a write
        of them failed (those entries are still pending in the file, and are sent again)."""
        futures = [b.done for b in (self._inflight, self._gathering) if b is not None]
        if not futures:
            return True
        if now and self._gathering is not None:
            self._gathering.urgent = True
            self._schedule()
        await asyncio.wait(futures)  # unlike gather, a cancelled waiter leaves the shared futures alone
        return all(not f.cancelled() and f.exception() is None for f in futures)

    async def close(self) -> None:
        """Write what has gathered now, and wait for every write."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._task is not None or self._gathering is not None:
            if self._task is None:
                self._start()
            assert self._task is not None
            await asyncio.wait({self._task})

    def _schedule(self) -> None:
        if self._task is not None or self._gathering is None:
            return  # the write under way schedules the next when it ends
        loop = asyncio.get_running_loop()
        at = loop.time() + (0.0 if self._gathering.urgent else self._delay)
        if self._timer is not None:
            if self._timer.when() <= at:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._start)

    def _start(self) -> None:
        self._timer = None
        batch, self._gathering = self._gathering, None
        if batch is None:
            return
        self._inflight = batch
        self._task = asyncio.ensure_future(self._write(batch.ids))
        self._task.add_done_callback(lambda task: self._ended(task, batch))

    def _ended(self, task: "asyncio.Task[None]", batch: _Batch) -> None:
        self._task = self._inflight = None
        if task.cancelled():
            batch.done.cancel()
        elif (error := task.exception()) is not None:
            log.error("%d delivered marks not committed (the entries stay pending and are sent again): %s",
                      len(batch.ids), error)
            batch.done.set_exception(error)
            batch.done.exception()  # logged here; a caller that awaits the future still gets the error
        else:
            batch.done.set_result(None)
        self._schedule()

"""Liveness and readiness (observability): is the store writable, is the journal draining.

/healthz says only that the process answers HTTP. /readyz says whether the hub can do its job: a real
write commits in the store and in the journal, and the journal processor keeps up with what arrives.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from exchange.model.timestamps import now_micros

PROBE_TIMEOUT = 3.0  # seconds for one write probe; a write queued behind a busy group commit still fits
CACHE_FOR = 1.0  # seconds a verdict is reused: /readyz is unauthenticated, so hammering it must stay cheap


class Writable(Protocol):
    async def check_writable(self) -> None: ...


class JournalView(Protocol):
    async def backlog(self) -> int: ...

    async def oldest_unprocessed(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # check name -> "ok" or why not

    def payload(self) -> dict[str, object]:
        return {"ready": self.ready, "checks": self.checks}


def drain_verdict(backlog: int, oldest: int | None, last_progress: int, now: int, stall: float) -> str | None:
    """Why the journal is not draining, or None. Stalled means: envelopes wait, the oldest has waited more
    than `stall` seconds, and the processor finished nothing for as long (a long backlog that is being
    worked through is not a stall, and neither is a burst that has just arrived)."""
    if backlog == 0 or oldest is None:
        return None
    waited, idle = (now - oldest) / 1e6, (now - last_progress) / 1e6
    if waited <= stall or idle <= stall:
        return None
    return (f"stalled: {backlog} envelope(s) unprocessed, the oldest for {waited:.1f}s, "
            f"nothing processed for {idle:.1f}s")


async def _probe(name: str, target: Writable) -> str:
    try:
        await asyncio.wait_for(target.check_writable(), PROBE_TIMEOUT)
    except TimeoutError:
        return f"{name} write did not commit within {PROBE_TIMEOUT:.0f}s (locked or overloaded)"
    except Exception as exc:  # whatever the backend raises, the answer is "not writable, because ..."
        return f"{name} not writable: {type(exc).__name__}: {exc}"
    return "ok"


@dataclass(slots=True)
class ReadinessCheck:
    """Owns the processor's progress mark and a short-lived cached verdict (one probe for concurrent asks)."""

    stall: float
    clock: Callable[[], int] = now_micros
    last_progress: int = field(default_factory=now_micros)  # the hub's start counts as progress
    _cached: tuple[float, Readiness] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def progress(self) -> None:
        """The processor committed a batch."""
        self.last_progress = self.clock()

    async def check(self, store: Writable, journal: Writable, view: JournalView) -> Readiness:
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_FOR:
                return self._cached[1]
            verdict = await self._evaluate(store, journal, view)
            self._cached = (time.monotonic(), verdict)
            return verdict

    async def _evaluate(self, store: Writable, journal: Writable, view: JournalView) -> Readiness:
        store_state, journal_state, drain = await asyncio.gather(
            _probe("store", store), _probe("journal", journal), self._drain(view))
        checks = {"store": store_state, "journal": journal_state, "processing": drain}
        return Readiness(ready=all(v == "ok" for v in checks.values()), checks=checks)

    async def _drain(self, view: JournalView) -> str:
        async def read() -> tuple[int, int | None]:
            return await view.backlog(), await view.oldest_unprocessed()

        try:
            backlog, oldest = await asyncio.wait_for(read(), PROBE_TIMEOUT)
        except Exception as exc:
            return f"journal not readable: {type(exc).__name__}: {exc}"
        return drain_verdict(backlog, oldest, self.last_progress, self.clock(), self.stall) or "ok"

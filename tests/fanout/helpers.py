"""Fan-out test kit: alert notices, members, a clock the test moves, and webhook receivers on loopback."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from exchange.fanout import Filters, Member, Notice, Subscription, WebhookChannel
from exchange.fanout.records import Channel
from exchange.model.timestamps import now_micros
from exchange.policy.tlp import Tlp, marking_id

SECRET = "s3cret-shared-with-the-member"


def indicator(n: int, tlp: Tlp | None = Tlp.GREEN, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2026-03-01T00:00:00.000Z", "modified": "2026-03-01T00:00:00.000Z",
        "pattern": f"[ipv4-addr:value = '198.51.100.{n}']", "pattern_type": "stix",
        "valid_from": "2026-03-01T00:00:00Z", "indicator_types": ["malicious-activity"], **extra}
    if tlp is not None:
        obj["object_marking_refs"] = [marking_id(tlp)]
    return obj


def notice(n: int = 1, *, version: str = "2026-03-02T00:00:00.000Z", level: int = 1, tlp: Tlp = Tlp.GREEN,
           countries: tuple[str, ...] = ("DE", "FR", "IT"), families: tuple[str, ...] = ("WannaCry",),
           indicator_types: tuple[str, ...] = ("malicious-activity",),
           indicators: Iterable[dict[str, Any]] | None = None, **alert_extra: Any) -> Notice:
    """Alert number `n` at `version`: a STIX report referencing its indicators."""
    objects = list(indicators) if indicators is not None else [indicator(n)]
    alert_id = f"report--00000000-0000-5000-8000-{n:012d}"
    alert = {"type": "report", "spec_version": "2.1", "id": alert_id, "created": "2026-03-01T00:00:00.000Z",
             "modified": version, "name": f"alert {n}", "published": version, "report_types": ["threat-report"],
             "object_refs": [o["id"] for o in objects], "object_marking_refs": [marking_id(tlp)], **alert_extra}
    return Notice(alert_id=alert_id, version=version, level=level, level_name=f"level-{level}", tlp=tlp,
                  countries=countries, families=families, indicator_types=indicator_types,
                  objects=(alert, *objects))


def member(name: str = "acme", *subscriptions: Subscription, max_tlp: Tlp = Tlp.AMBER,
           country: str = "DE") -> Member:
    return Member(name=name, account=f"{name}-user", country=country, max_tlp=max_tlp, sectors=("energy",),
                  subscriptions=subscriptions)


def subscription(sub_id: str, channel: Channel, **filters: Any) -> Subscription:
    return Subscription(id=sub_id, channel=channel, filters=Filters(**filters))


def webhook(url: str, *, max_retry: float = 3600.0, timeout: float = 5.0) -> WebhookChannel:
    return WebhookChannel(url=url, secret=SECRET, max_retry=max_retry, timeout=timeout)


class Clock:
    """Real time plus an offset the test moves forward: retry budgets expire without waiting for them."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_micros() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += int(seconds * 1e6)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def bundle(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A member's webhook endpoint: answers from `script` (statuses in order, then `status`), or hangs."""

    status: int = 200
    script: list[int] = field(default_factory=list)
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            await asyncio.sleep(3600)
        status = self.script.pop(0) if self.script else self.status
        self.requests.append(Received(headers=dict(request.headers), body=body, status=status))
        self.changed.set()
        return web.Response(status=status, text="ok" if status < 300 else "receiver says no")

    async def until(self, condition: Callable[["Receiver"], bool]) -> None:
        """Wait for the requests so far to satisfy `condition` (callers bound the wait)."""
        while not condition(self):
            self.changed.clear()
            await self.changed.wait()


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    # A short shutdown: a hanging receiver's handler is cancelled instead of waited for.
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def receivers(*behaviours: Receiver) -> AsyncIterator[list[Receiver]]:
    """Each receiver on its own path of one loopback server."""
    app = web.Application()
    for index, receiver in enumerate(behaviours):
        app.router.add_post(f"/hook/{index}", receiver.handle)
    async with serve(app) as base:
        for index, receiver in enumerate(behaviours):
            receiver.url = f"{base}/hook/{index}"
        yield list(behaviours)

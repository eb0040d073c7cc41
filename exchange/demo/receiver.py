"""A member organization's webhook endpoint, inside the demo process: verifies each signed POST the way
docs/members.md tells members to, records it, and answers 204 at once."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from exchange.fanout.signing import ATTEMPT_HEADER, EVENT_ID_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify


@dataclass(frozen=True, slots=True)
class Received:
    """One webhook POST as the member got it."""

    received_at: float  # unix seconds
    idempotency_key: str
    event_id: str
    attempt: str
    signature: str
    signature_valid: bool
    body: bytes
    repeat: bool  # its idempotency key was seen before: a member processes it once

    @property
    def bundle(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value

    @property
    def alert(self) -> dict[str, Any] | None:
        return next((o for o in self.bundle.get("objects", []) if o.get("type") == "grouping"), None)


@dataclass
class Receiver:
    secret: str
    on_delivery: Callable[[Received], None] = lambda _: None
    deliveries: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        """Serve on a free port; returns the webhook URL to register."""
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/hooks/{member}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{host}:{port}/hooks/example-bank"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers them, not a re-serialization
        valid = verify(self.secret, request.headers, body, time.time())
        if not valid:
            return web.Response(status=401, text="bad signature")
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        entry = Received(received_at=time.time(), idempotency_key=key,
                         event_id=request.headers.get(EVENT_ID_HEADER, ""),
                         attempt=request.headers.get(ATTEMPT_HEADER, ""),
                         signature=request.headers.get(SIGNATURE_HEADER, ""), signature_valid=valid, body=body,
                         repeat=any(d.idempotency_key == key for d in self.deliveries))
        self.deliveries.append(entry)
        self.on_delivery(entry)
        return web.Response(status=204)

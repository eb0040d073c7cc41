"""The SSE stream on a real aiohttp app and client: backlog, live entries, resume, heartbeats, slow readers."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from exchange.fanout import (
    ChannelKind,
    DeliveryQueue,
    DeliveryState,
    Member,
    Outgoing,
    SseChannel,
    SseOptions,
    plan,
    publish,
    stream_alerts,
)
from exchange.taxii.errors import error_middleware
from tests.fanout.helpers import member, notice, serve, subscription

SUB = "acme-sse"
QUIET = SseOptions(heartbeat=5.0)


@dataclass
class Event:
    id: str | None
    event: str | None
    data: Any


@asynccontextmanager
async def sse_hub(tmp_path: Path, options: SseOptions = QUIET) -> AsyncIterator[
        tuple[DeliveryQueue, str, list[Member]]]:
    queue = DeliveryQueue(tmp_path / "fanout.db")
    await queue.start()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_alerts(request, queue, request.match_info["sub"], options)

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/alerts/{sub}", handler)
    try:
        async with serve(app) as base:
            yield queue, base, [member("acme", subscription(SUB, SseChannel()))]
    finally:
        await queue.close()


async def read_block(resp: aiohttp.ClientResponse) -> list[str] | None:
    """The lines of the next block (up to a blank line); None when the stream has ended."""
    lines: list[str] = []
    while True:
        raw = await resp.content.readline()
        if not raw:
            return None
        line = raw.decode().rstrip("\n")
        if not line:
            return lines
        lines.append(line)


async def next_event(resp: aiohttp.ClientResponse) -> Event | None:
    """The next `alert` event, skipping the retry field and heartbeat comments."""
    while (block := await read_block(resp)) is not None:
        fields = dict(line.split(": ", 1) for line in block if not line.startswith((":", "retry:")))
        if fields:
            return Event(id=fields.get("id"), event=fields.get("event"), data=orjson.loads(fields["data"]))
    return None


async def events(resp: aiohttp.ClientResponse, count: int) -> list[Event]:
    out = []
    async with asyncio.timeout(10):
        for _ in range(count):
            event = await next_event(resp)
            assert event is not None
            out.append(event)
    return out


async def test_backlog_then_live_then_resume_with_last_event_id(tmp_path: Path) -> None:
    async with sse_hub(tmp_path) as (queue, base, members), aiohttp.ClientSession() as client:
        for n in (1, 2):
            await publish(queue, members, notice(n))
        async with client.get(f"{base}/alerts/{SUB}") as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            first = await events(resp, 2)  # the backlog
            await publish(queue, members, notice(3))
            first += await events(resp, 1)  # live
        assert [(e.id, e.event) for e in first] == [("1", "alert"), ("2", "alert"), ("3", "alert")]
        assert first[2].data["type"] == "bundle"
        assert first[2].data["objects"][0]["id"] == notice(3).alert_id
        # Disconnected: two more alerts come while the client is away.
        for n in (4, 5):
            await publish(queue, members, notice(n))
        async with client.get(f"{base}/alerts/{SUB}", headers={"Last-Event-ID": "3"}) as resp:
            rest = await events(resp, 2)
        assert [e.id for e in rest] == ["4", "5"]
        assert [e.data["objects"][0]["id"] for e in rest] == [notice(4).alert_id, notice(5).alert_id]
        # Resuming after 3 said the client had 1-3; 4 and 5 stay pending until a later resume says so.
        states = [d.state for d in await queue.entries(SUB)]
        assert states == [DeliveryState.DELIVERED] * 3 + [DeliveryState.PENDING] * 2
        # The query parameter works as the header does (EventSource cannot set headers on its first try).
        async with client.get(f"{base}/alerts/{SUB}?last_event_id=4") as resp:
            assert [e.id for e in await events(resp, 1)] == ["5"]


async def test_without_last_event_id_the_stream_starts_after_the_last_acknowledged(tmp_path: Path) -> None:
    async with sse_hub(tmp_path) as (queue, base, members), aiohttp.ClientSession() as client:
        for n in (1, 2, 3):
            await publish(queue, members, notice(n))
        await queue.acknowledge(SUB, 2)
        async with client.get(f"{base}/alerts/{SUB}") as resp:
            assert [e.id for e in await events(resp, 1)] == ["3"]
        # An id this queue never gave out (another hub's, a restored file) is treated the same way.
        async with client.get(f"{base}/alerts/{SUB}", headers={"Last-Event-ID": "999"}) as resp:
            assert [e.id for e in await events(resp, 1)] == ["3"]


async def test_heartbeats_while_idle(tmp_path: Path) -> None:
    async with sse_hub(tmp_path, SseOptions(heartbeat=0.05)) as (_, base, _members), \
            aiohttp.ClientSession() as client, client.get(f"{base}/alerts/{SUB}") as resp:
        async with asyncio.timeout(5):
            assert await read_block(resp) == ["retry: 3000"]
            assert await read_block(resp) == [": keepalive"]


async def test_a_reader_that_falls_behind_is_closed_and_resumes(tmp_path: Path) -> None:
    async with sse_hub(tmp_path, SseOptions(heartbeat=0.1, buffer=2)) as (queue, base, members), \
            aiohttp.ClientSession() as client:
        async with client.get(f"{base}/alerts/{SUB}") as resp:
            assert await read_block(resp) == ["retry: 3000"]
            # A heartbeat comes only once the (empty) backlog is read: entries committed before that would be read
            # from the queue, not pushed through the connection's buffer, and nothing would overflow.
            async with asyncio.timeout(10):
                assert await read_block(resp) == [": keepalive"]
            # Five entries in one commit: more than the connection's buffer of two.
            await queue.enqueue([o for n in range(1, 6) for o in _plan(members, n)])
            async with asyncio.timeout(10):
                assert await next_event(resp) is None  # the server closed the stream
        async with client.get(f"{base}/alerts/{SUB}", headers={"Last-Event-ID": "0"}) as resp:
            assert [e.id for e in await events(resp, 5)] == ["1", "2", "3", "4", "5"]


async def test_shutdown_ends_open_streams(tmp_path: Path) -> None:
    async with sse_hub(tmp_path) as (queue, base, _members), aiohttp.ClientSession() as client, \
            client.get(f"{base}/alerts/{SUB}") as resp:
        assert await read_block(resp) == ["retry: 3000"]
        assert queue.end_streams() == 1
        async with asyncio.timeout(5):
            assert await next_event(resp) is None


async def test_a_bad_last_event_id_is_a_bad_request(tmp_path: Path) -> None:
    async with sse_hub(tmp_path) as (_, base, _members), aiohttp.ClientSession() as client, \
            client.get(f"{base}/alerts/{SUB}", headers={"Last-Event-ID": "abc"}) as resp:
        assert resp.status == 400


def _plan(members: list[Member], n: int) -> list[Outgoing]:
    return plan(members, notice(n))


class LogSeen(logging.Handler):
    """Sets an event when a record containing `text` is logged (on the loop's thread, as the handler logs)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_a_reader_that_stops_reading_is_disconnected(tmp_path: Path) -> None:
    options = SseOptions(heartbeat=5.0, buffer=1000, write_timeout=0.2)
    sse_log = logging.getLogger("exchange.fanout.sse")
    watcher = LogSeen("stopped reading")
    sse_log.addHandler(watcher)
    sse_log.setLevel(logging.INFO)
    try:
        async with sse_hub(tmp_path, options) as (queue, base, _members):
            host, port = base.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /alerts/{SUB} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            await reader.readuntil(b"retry: 3000\n\n")
            # Then it reads nothing more, while 64 MiB of alerts come: the socket buffers fill, writes stall.
            big = b"[" + b"0," * (1 << 19) + b"0]"
            await queue.enqueue([Outgoing(subscription_id=SUB, channel=ChannelKind.SSE, alert_id=f"report--{n}",
                                          version="2026-03-02T00:00:00.000000Z", idempotency_key=f"k{n}", body=big)
                                 for n in range(64)])
            async with asyncio.timeout(10):
                await watcher.seen.wait()
            received = 0
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(1 << 20):
                    received += len(chunk)
            assert received < 64 * len(big)  # cut off, not buffered for it
            writer.close()
    finally:
        sse_log.removeHandler(watcher)
        sse_log.setLevel(logging.NOTSET)

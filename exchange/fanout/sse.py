"""Server-sent events (fan-out stage): a member subscription's alerts as one text/event-stream, resumable.

The stream is a view of the subscription's durable queue: on connect everything after `Last-Event-ID`, then
live entries; each event's id is the entry's per-subscription sequence. Resuming after an id acknowledges
every entry up to it (the only proof an SSE client gives that it got them), so entries a client never
resumed past stay pending, are sent again, and count against the backlog cap.

Written by hand rather than with aiohttp-sse: the format is a few lines (WHATWG HTML, "Server-sent events"),
and what matters here (resume from the queue, a bounded buffer, write timeouts) would be ours either way.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from exchange.errors import InvalidRequest
from exchange.fanout.queue import DeliveryQueue, StreamEnded
from exchange.fanout.records import Delivery

log = logging.getLogger(__name__)
EVENT_STREAM = "text/event-stream"  # always UTF-8 (the spec allows no other charset)


@dataclass(frozen=True, slots=True)
class SseOptions:
    heartbeat: float = 15.0  # seconds of silence before a comment line: keeps proxies from timing out
    buffer: int = 256  # live entries a connection may fall behind before it is closed (the client resumes)
    write_timeout: float = 10.0  # seconds one write may wait on a reader that does not read
    batch: int = 100  # entries per queue read while catching up
    retry_ms: int = 3000  # the client's reconnection delay (the `retry:` field)


class _SlowReader(Exception):
    pass


def last_event_id(request: web.Request) -> int | None:
    """The `Last-Event-ID` header, else the `last_event_id` query parameter (for clients that cannot set
    headers, such as a browser's first EventSource connection); None when neither is given."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
    raw = raw.strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest(f"Last-Event-ID must be an event id from this stream (a number), not {raw[:40]!r}")
    return int(raw)


def event_bytes(entry: Delivery) -> bytes:
    # The body is one line of JSON (subscriptions.bundle_body), as a single `data:` field needs.
    return b"id: %d\nevent: alert\ndata: %s\n\n" % (entry.seq, entry.body)


async def stream_alerts(request: web.Request, queue: DeliveryQueue, subscription_id: str,
                        options: SseOptions = SseOptions()) -> web.StreamResponse:
    """The SSE stream of one subscription; authentication and authorization happen before this is called."""
    resume = last_event_id(request)
    position = await queue.position(subscription_id)
    if resume is not None and resume <= position.last_seq:
        await queue.acknowledge(subscription_id, resume)
        cursor = resume
    else:
        # No id, or one this queue never gave out (another hub's, a queue file restored from a backup): start
        # after the last acknowledged entry, so nothing the subscription has not confirmed is skipped.
        cursor = position.acked_seq
    # Listen before reading the backlog: an entry committed in between is then in one or the other, never in
    # neither; the seq check below drops the ones that are in both.
    with queue.listen(subscription_id, options.buffer) as listener:
        response = web.StreamResponse(headers={
            "Content-Type": EVENT_STREAM,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx would otherwise hold events back in its buffer
        })
        await response.prepare(request)
        try:
            await _write(response, b"retry: %d\n\n" % options.retry_ms, options)
            cursor = await _catch_up(response, queue, subscription_id, cursor, options)
            await _follow(response, listener.take, cursor, options)
        except StreamEnded as exc:
            log.info("sse %s: closed the stream: %s", subscription_id, exc)
        except _SlowReader:
            log.info("sse %s: closed a reader that stopped reading", subscription_id)
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:  # the client went away: it will resume with Last-Event-ID
            pass
    return response


async def _catch_up(response: web.StreamResponse, queue: DeliveryQueue, subscription_id: str, cursor: int,
                    options: SseOptions) -> int:
    while True:
        entries = await queue.after(subscription_id, cursor, options.batch)
        for entry in entries:
            await _write(response, event_bytes(entry), options)
            cursor = entry.seq
        if len(entries) < options.batch:
            return cursor


async def _follow(response: web.StreamResponse, take: Callable[[float], Awaitable[list[Delivery]]], cursor: int,
                  options: SseOptions) -> None:
    while True:
        entries = await take(options.heartbeat)
        if not entries:
            await _write(response, b": keepalive\n\n", options)
            continue
        for entry in entries:
            if entry.seq > cursor:
                await _write(response, event_bytes(entry), options)
                cursor = entry.seq


async def _write(response: web.StreamResponse, data: bytes, options: SseOptions) -> None:
    try:
        await asyncio.wait_for(response.write(data), options.write_timeout)
    except TimeoutError:
        raise _SlowReader from None


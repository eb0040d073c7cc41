"""A lean HTTP/1.1 client for webhook POSTs (fan-out stage): keep-alive connections per origin, one write per
request, the answer's status and the first bytes of its body.

Why not aiohttp's client: with a thousand subscribers per alert, its request machinery (URL and header objects,
payload registry, tracing hooks, a response object with its own timers) was most of the hub's CPU on the
fan-out path (issue #5). A webhook POST needs none of it: no redirects, cookies, compression or proxies, and a
small body already in memory. Framing follows RFC 9112: Content-Length, chunked, or (neither) until close.
"""

import asyncio
import base64
import math
import ssl
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import yarl

MAX_HEAD = 64 * 1024  # bytes of status line and headers we read before calling the answer malformed
DRAIN_LIMIT = 64 * 1024  # body bytes read to keep a connection; a longer body costs the connection instead
IDLE_TIMEOUT = 60.0  # seconds an unused connection stays open: common servers keep theirs for 60-75 s
Origin = tuple[str, str, int]


class ProtocolError(Exception):
    """The answer is not HTTP/1.x this client can read."""


class Disconnected(ConnectionError):
    """The server closed the connection before its answer was complete."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # the first bytes of the body, as many as the caller asked to keep


@dataclass(frozen=True, slots=True)
class Target:
    origin: Origin  # (scheme, host, port)
    head: str  # request line and the Host (and Authorization) header, CRLF-terminated


@lru_cache(maxsize=4096)
def parse_target(url: str) -> Target:
    """ValueError when the URL is not an absolute http(s) URL with a host."""
    parsed = yarl.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or parsed.port is None:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    head = f"POST {parsed.raw_path_qs} HTTP/1.1\r\nHost: {parsed.host_port_subcomponent}\r\n"
    if parsed.user is not None:  # as aiohttp did: credentials in the URL become Basic auth (RFC 7617)
        token = base64.b64encode(f"{parsed.user}:{parsed.password or ''}".encode()).decode()
        head += f"Authorization: Basic {token}\r\n"
    return Target((parsed.scheme, parsed.raw_host, parsed.port), head)


class _Connection(asyncio.Protocol):
    """One socket and the bytes of the answer being read; bytes nobody asked for spoil it (a 408 that a
    server sends before closing an idle connection must not pass for the next request's answer)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.received = 0  # bytes of the current answer so far: none means a stale connection may be retried
        self.idle_since = 0.0
        self.deadline = math.inf  # loop time by which the current answer must be complete
        self._buffer = bytearray()
        self._ended = False
        self._timed_out = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def usable(self) -> bool:
        return not self._ended and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self.close()
            return
        self._buffer += data
        self.received += len(data)
        self._wake()

    def eof_received(self) -> None:
        self._ended = True
        self._wake()  # returning None lets the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()

    def close(self) -> None:
        self._ended = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def expire(self) -> None:
        """The answer is late: the request waiting for it raises TimeoutError; the connection is closed."""
        self._timed_out = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())
        self.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> bool:
        """Wait for bytes; False once the server has closed."""
        if self._timed_out:
            raise TimeoutError()
        if self._ended:
            return False
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        return True

    async def _until(self, separator: bytes, limit: int) -> bytes:
        start = 0
        while (end := self._buffer.find(separator, start)) < 0:
            if len(self._buffer) > limit:
                raise ProtocolError(f"no {separator!r} within {limit} bytes")
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._more():
                raise Disconnected("the server closed the connection before its answer was complete")
        out = bytes(self._buffer[:end])
        del self._buffer[:end + len(separator)]
        return out

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not await self._more():
                raise Disconnected("the server closed the connection before its answer was complete")
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    async def exchange(self, request: bytes, keep: int) -> tuple[Answer, bool]:
        """Send one request, read its answer: (answer, whether the connection can take another request)."""
        assert self.transport is not None
        self.busy, self.received = True, 0
        self.transport.write(request)
        while True:
            status, length, chunked, reusable = _parse_head(await self._until(b"\r\n\r\n", MAX_HEAD))
            if not 100 <= status < 200:
                break  # an interim answer (103 Early Hints) precedes the real one
        body = b""
        if status in (204, 304):
            pass
        elif chunked:
            body, drained = await self._chunks(keep)
            reusable = reusable and drained
        elif length is not None:
            body = await self._exactly(min(length, keep))
            if length - len(body) > DRAIN_LIMIT:
                reusable = False
            else:
                await self._exactly(length - len(body))
        else:  # delimited by the end of the connection (RFC 9112 section 6.3, last rule)
            while len(self._buffer) < keep and await self._more():
                pass
            body, reusable = bytes(self._buffer[:keep]), False
        self.busy = False
        return Answer(status, body), reusable and not self._buffer and self.usable

    async def _chunks(self, keep: int) -> tuple[bytes, bool]:
        """The chunked body's first `keep` bytes, and whether all of it was read within DRAIN_LIMIT."""
        kept, total = bytearray(), 0
        while True:
            size_line = await self._until(b"\r\n", 1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {size_line[:40]!r}") from None
            if size == 0:
                while await self._until(b"\r\n", MAX_HEAD):  # trailer fields, up to the empty line
                    pass
                return bytes(kept), True
            total += size
            if total > DRAIN_LIMIT + keep:
                return bytes(kept), False
            chunk = await self._exactly(size + 2)
            if chunk[size:] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            kept += chunk[:min(size, max(0, keep - len(kept)))]


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, Content-Length, chunked, keep-alive) of a status line and its header block."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if (not status_line.startswith(b"HTTP/1.") or status_line[8:9] != b" " or not status_line[9:12].isdigit()
            or status_line[12:13] not in (b"", b" ")):
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    status = int(status_line[9:12])
    if status == 101:
        raise ProtocolError("the server switched protocols unasked")
    length: int | None = None
    codings: list[bytes] = []
    tokens: set[bytes] = set()
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit() or (length is not None and length != int(value)):
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    keep_alive = b"keep-alive" in tokens if status_line[7:8] == b"0" else b"close" not in tokens  # 1.0 closes
    if codings:  # Transfer-Encoding overrides Content-Length; without chunked last, the body runs to the close
        chunked = codings[-1] == b"chunked"
        return status, None, chunked, keep_alive and chunked
    return status, length, False, keep_alive


class ConnectionPool:
    """Keep-alive connections per (scheme, host, port); one request at a time per connection.

    There is no cap on connections: the webhook workers hold one request each, which bounds them. Idle
    connections older than IDLE_TIMEOUT are closed by a timer, and ones the server closed are noticed and
    dropped. A request that finds its reused connection closed before any byte of the answer came (the
    server's idle timeout crossed our request) is sent once more on a new connection: receivers deduplicate
    on the idempotency key, and the alternative is a failed attempt and a backoff for nothing. Late answers
    are found by one timer for all requests, set for the earliest deadline, rather than a timer per request
    (asyncio.timeout): a thousand of those per alert cost a tenth of the fan-out's time on the event loop.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._busy: set[_Connection] = set()  # connections with a request in flight
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = math.inf
        self._closed = False

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, timeout: float,  # noqa: ASYNC109
                   keep: int = 0) -> Answer:
        """POST `body`; the answer's status and its body's first `keep` bytes. Raises TimeoutError when the
        answer is not complete within `timeout` seconds (connecting included), OSError (connecting, TLS, a
        connection lost: Disconnected), ProtocolError, or ValueError for a bad URL or header. Redirects are
        answers like any other. A connection whose request failed, timed out or was cancelled is closed."""
        target = parse_target(url)
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if fields.count("\n") != len(headers) or fields.count("\r") != len(headers):  # one pass each, in C
            raise ValueError("a header name or value holds a line break")  # it would smuggle in headers
        request = f"{target.head}{fields}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        deadline = asyncio.get_running_loop().time() + timeout
        conn = self._take(target.origin)
        reused = conn is not None
        while True:
            if conn is None:
                async with asyncio.timeout_at(deadline):  # a timer per new connection only
                    conn = await self._connect(target.origin)
            self._watch(conn, deadline)
            try:
                answer, reusable = await conn.exchange(request, keep)
            except ConnectionError:
                conn.close()
                if reused and conn.received == 0:
                    conn, reused = None, False
                    continue
                raise
            except BaseException:  # late, cancelled, a malformed answer: the stream's state is unknown
                conn.close()
                raise
            finally:
                self._busy.discard(conn)
            if reusable and not self._closed:
                self._give_back(target.origin, conn)
            else:
                conn.close()
            return answer

    def _watch(self, conn: _Connection, deadline: float) -> None:
        conn.deadline = deadline
        self._busy.add(conn)
        if deadline < self._expiry_at:  # with one timeout for all, later requests have later deadlines: no-op
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry_at = deadline
            self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry, self._expiry_at = None, math.inf
        now = asyncio.get_running_loop().time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            self._busy.discard(conn)
            conn.expire()
        if self._busy:
            earliest = min(c.deadline for c in self._busy)
            self._expiry_at = earliest
            self._expiry = asyncio.get_running_loop().call_at(earliest, self._expire)

    async def close(self) -> None:
        """Close every connection; a request still in flight ends with Disconnected."""
        self._closed = True
        for timer in (self._sweeper, self._expiry):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._expiry = None
        for conn in [*self._busy, *(c for idle in self._idle.values() for c in idle)]:
            conn.close()
        self._idle.clear()

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have timed out at the server
            if conn.usable:
                return conn
            conn.close()
        return None

    def _give_back(self, origin: Origin, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.setdefault(origin, deque()).append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._idle_timeout, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        expired = loop.time() - self._idle_timeout
        for origin, idle in list(self._idle.items()):
            while idle and (idle[0].idle_since <= expired or not idle[0].usable):  # oldest first
                idle.popleft().close()
            if not idle:
                del self._idle[origin]
        if self._idle:
            oldest = min(idle[0].idle_since for idle in self._idle.values())
            self._sweeper = loop.call_at(oldest + self._idle_timeout, self._sweep)

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        context = (self._ssl or _default_context()) if scheme == "https" else None
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection, host, port, ssl=context, server_hostname=host if context else None)
        return conn


@lru_cache(maxsize=1)
def _default_context() -> ssl.SSLContext:
    """The system's trust store and Python's secure defaults, as aiohttp used; built once (it is costly)."""
    return ssl.create_default_context()

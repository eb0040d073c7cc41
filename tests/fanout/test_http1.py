"""The webhook HTTP/1.1 client against real servers on loopback: aiohttp for what servers usually do, a raw
asyncio server for what they rarely do (closing a kept-alive connection as a request arrives, bytes nobody
asked for, HTTP/1.0)."""

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exchange.fanout.http1 import DRAIN_LIMIT, ConnectionPool, Disconnected, ProtocolError
from scripts.make_certs import make_ca, make_leaf

HEADERS = {"Content-Type": "application/json", "X-Test": "1"}


class Seen:
    """What the aiohttp server saw: per request, the client's port (one per connection), headers and body."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    async def record(self, request: web.Request) -> None:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.ports.append(peer[1] if peer else -1)


@asynccontextmanager
async def aiohttp_server(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                         ssl_context: ssl.SSLContext | None = None, **runner: Any) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    web_runner = web.AppRunner(app, shutdown_timeout=0.1, **runner)
    await web_runner.setup()
    site = web.TCPSite(web_runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await web_runner.cleanup()


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    client = ConnectionPool()
    yield client
    await client.close()


def answering(seen: Seen, status: int = 204, text: str | None = None,
              **headers: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        await seen.record(request)
        return web.Response(status=status, text=text, headers=headers)
    return handle


async def test_connections_are_kept_alive_and_the_request_arrives_whole(pool: ConnectionPool) -> None:
    seen = Seen()
    async with aiohttp_server({"/hook/{n}": answering(seen)}) as base:
        for n in range(3):
            answer = await pool.post(f"{base}/hook/{n}?x=1", b'{"n":%d}' % n, HEADERS, timeout=5)
            assert (answer.status, answer.body) == (204, b"")
    assert len(set(seen.ports)) == 1  # one connection for all three
    assert seen.bodies == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert seen.headers[0]["Content-Type"] == "application/json" and seen.headers[0]["X-Test"] == "1"
    assert seen.headers[0]["Host"] == base.removeprefix("http://")


async def test_an_error_answer_gives_its_status_and_the_first_bytes_of_its_body(pool: ConnectionPool) -> None:
    seen = Seen()
    async with aiohttp_server({"/no": answering(seen, 500, "receiver says no"),
                               "/moved": answering(seen, 301, Location="/elsewhere")}) as base:
        answer = await pool.post(f"{base}/no", b"{}", HEADERS, timeout=5, keep=12)
        assert (answer.status, answer.body) == (500, b"receiver say")
        moved = await pool.post(f"{base}/moved", b"{}", HEADERS, timeout=5, keep=512)
        assert moved.status == 301  # redirects are not followed
        assert (await pool.post(f"{base}/no", b"{}", HEADERS, timeout=5)).status == 500
    assert len(seen.bodies) == 3 and len(set(seen.ports)) == 1  # the rest of each body was read, not left behind


async def test_a_chunked_answer_is_read_to_its_end(pool: ConnectionPool) -> None:
    seen = Seen()

    async def chunked(request: web.Request) -> web.StreamResponse:
        await seen.record(request)
        response = web.StreamResponse(status=200)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"first ", b"second ", b"third"):
            await response.write(part)
        await response.write_eof()
        return response

    async with aiohttp_server({"/chunked": chunked}) as base:
        first = await pool.post(f"{base}/chunked", b"{}", HEADERS, timeout=5, keep=9)
        second = await pool.post(f"{base}/chunked", b"{}", HEADERS, timeout=5, keep=100)
    assert (first.status, first.body, second.body) == (200, b"first sec", b"first second third")
    assert len(set(seen.ports)) == 1


async def test_connection_close_is_honoured(pool: ConnectionPool) -> None:
    seen = Seen()
    async with aiohttp_server({"/close": answering(seen, 200, "bye", Connection="close")}) as base:
        assert (await pool.post(f"{base}/close", b"{}", HEADERS, timeout=5)).status == 200
        assert (await pool.post(f"{base}/close", b"{}", HEADERS, timeout=5)).status == 200
    assert len(set(seen.ports)) == 2


async def test_a_long_body_costs_the_connection_rather_than_a_long_read(pool: ConnectionPool) -> None:
    seen = Seen()
    async with aiohttp_server({"/big": answering(seen, 200, "x" * (DRAIN_LIMIT + 1000)),
                               "/small": answering(seen)}) as base:
        answer = await pool.post(f"{base}/big", b"{}", HEADERS, timeout=5, keep=3)
        assert (answer.status, answer.body) == (200, b"xxx")
        assert (await pool.post(f"{base}/small", b"{}", HEADERS, timeout=5)).status == 204
    assert len(set(seen.ports)) == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used(pool: ConnectionPool) -> None:
    seen = Seen()
    async with aiohttp_server({"/hook": answering(seen)}, keepalive_timeout=0.05) as base:
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
        await asyncio.sleep(0.3)  # the server's keep-alive timeout passes: it closes, the pool notices
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
    assert len(set(seen.ports)) == 2


async def test_a_timeout_closes_the_connection_and_the_next_request_gets_a_fresh_one(pool: ConnectionPool) -> None:
    seen = Seen()

    async def slow(request: web.Request) -> web.StreamResponse:
        await seen.record(request)
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    async with aiohttp_server({"/slow": slow, "/fast": answering(seen)}) as base:
        assert (await pool.post(f"{base}/fast", b"{}", HEADERS, timeout=5)).status == 204
        with pytest.raises(TimeoutError):
            await pool.post(f"{base}/slow", b"{}", HEADERS, timeout=0.2)
        assert (await pool.post(f"{base}/fast", b"{}", HEADERS, timeout=5)).status == 204
    assert seen.ports[0] == seen.ports[1] != seen.ports[2]  # the timed-out connection was not reused


async def test_each_request_keeps_its_own_deadline(pool: ConnectionPool) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await request.read()
        await asyncio.sleep(0.6)
        return web.Response(status=204)

    async with aiohttp_server({"/slow": slow}) as base:
        loop = asyncio.get_running_loop()
        started = loop.time()
        patient = asyncio.create_task(pool.post(f"{base}/slow", b"{}", HEADERS, timeout=5))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):  # a deadline earlier than the one the timer was set for
            await pool.post(f"{base}/slow", b"{}", HEADERS, timeout=0.2)
        assert loop.time() - started < 0.5
        assert (await patient).status == 204  # its 5 s were not cut short by the other's expiry
        with pytest.raises(TimeoutError):  # and the timer is set again for what comes after
            await pool.post(f"{base}/slow", b"{}", HEADERS, timeout=0.2)


async def test_closing_the_pool_ends_the_requests_in_flight() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await request.read()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    pool = ConnectionPool()
    async with aiohttp_server({"/slow": slow}) as base:
        waiting = asyncio.create_task(pool.post(f"{base}/slow", b"{}", HEADERS, timeout=30))
        await asyncio.sleep(0.1)
        await pool.close()
        with pytest.raises(Disconnected):
            async with asyncio.timeout(5):
                await waiting


async def test_bad_urls_and_header_injection_are_refused(pool: ConnectionPool) -> None:
    for url in ("ftp://127.0.0.1/x", "http:///x", "/relative", "http://127.0.0.1:99999/"):
        with pytest.raises(ValueError):
            await pool.post(url, b"{}", HEADERS, timeout=5)
    for evil in ({"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil": "a\nX-Injected: 1"}, {"X-Evil": "a\r"},
                 {"X-Evil\r\nX-Injected": "1"}, {"X-Ok": "1", "X-Evil\n": "1"}):
        with pytest.raises(ValueError):
            await pool.post("http://127.0.0.1:1/x", b"{}", evil, timeout=5)


async def test_nothing_listening_is_an_os_error(pool: ConnectionPool) -> None:
    async with aiohttp_server({}) as base:
        pass  # the port is free again
    with pytest.raises(OSError):
        await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)


async def test_https_with_the_given_ca_and_connections_kept(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    leaf = make_leaf(tmp_path, ca, "receiver")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(leaf.cert, leaf.key)
    client_ctx = ssl.create_default_context(cafile=str(ca.cert))
    seen = Seen()
    async with aiohttp_server({"/hook": answering(seen, 200, "ok")}, ssl_context=server_ctx) as base:
        trusting = ConnectionPool(client_ctx)
        try:
            for _ in range(2):
                answer = await trusting.post(f"{base}/hook", b'{"tls":1}', HEADERS, timeout=5, keep=10)
                assert (answer.status, answer.body) == (200, b"ok")
        finally:
            await trusting.close()
        default = ConnectionPool()  # the system's trust store knows nothing of the test CA
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await default.post(f"{base}/hook", b"{}", HEADERS, timeout=5)
        finally:
            await default.close()
    assert seen.bodies == [b'{"tls":1}'] * 2 and len(set(seen.ports)) == 1


# --- a raw server, for what aiohttp's server does not do --------------------------------------------------------

class Closing(bytes):
    """An answer after which the server closes the connection."""


# (connection number, request number on it) -> the answer; parts of a list are written 50 ms apart; None: close
Script = Callable[[int, int], bytes | list[bytes] | None]


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """Reads each request (headers and a Content-Length body) and writes what `script` says; yields the base URL
    and the number of requests each connection carried."""
    carried: list[int] = []
    open_writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(carried)
        carried.append(0)
        open_writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                carried[number] += 1
                answer = script(number, carried[number])
                if answer is None:
                    break
                for index, part in enumerate(answer if isinstance(answer, list) else [answer]):
                    if index:
                        await asyncio.sleep(0.05)
                    writer.write(part)
                    await writer.drain()
                if isinstance(answer, Closing):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", carried
    finally:
        server.close()
        for writer in list(open_writers):  # connections still kept alive: their handlers end on EOF
            writer.close()
        await asyncio.sleep(0.01)
        await server.wait_closed()


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_kept_connection_closed_as_the_request_arrives_is_retried_once_on_a_new_one(
        pool: ConnectionPool) -> None:
    # Each connection answers its first request and drops the second unanswered: a server whose idle timeout
    # fires just as our request arrives.
    async with raw_server(lambda _, request: NO_CONTENT if request == 1 else None) as (base, carried):
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
        again = await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)  # sent again on a new connection
        assert again.status == 204
    assert carried == [2, 1]


async def test_a_new_connection_closed_unanswered_is_an_error_not_a_retry(pool: ConnectionPool) -> None:
    async with raw_server(lambda connection, request: None) as (base, carried):
        with pytest.raises(Disconnected):
            await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)
    assert carried == [1]


async def test_a_second_drop_after_the_retry_is_an_error(pool: ConnectionPool) -> None:
    async with raw_server(lambda connection, request: NO_CONTENT if connection == 0 and request == 1 else None) as (
            base, carried):
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
        with pytest.raises(Disconnected):
            await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)
    assert carried == [2, 1]


@pytest.mark.parametrize("later", [False, True], ids=["with the answer", "while idle"])
async def test_bytes_after_the_answer_spoil_the_connection(pool: ConnectionPool, later: bool) -> None:
    # A 408 sent after the answer, before any new request (some servers do before closing idle connections):
    # it must not pass for the answer to the next request.
    timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    answer = [NO_CONTENT, timeout] if later else NO_CONTENT + timeout
    async with raw_server(lambda _, request: answer) as (base, carried):
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
        await asyncio.sleep(0.2)
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
    assert carried == [1, 1]


async def test_http_1_0_and_interim_answers(pool: ConnectionPool) -> None:
    answers = {0: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
               1: Closing(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                          b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
               2: Closing(b"HTTP/1.1 200 OK\r\n\r\nuntil the end"), 3: NO_CONTENT}
    async with raw_server(lambda connection, _: answers.get(connection)) as (base, carried):
        first = await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5, keep=10)
        assert (first.status, first.body) == (200, b"ok")  # HTTP/1.0 without keep-alive: closed after it
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 202
        last = await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5, keep=100)
        assert (last.status, last.body) == (200, b"until the end")  # no length: the body ends with the connection
        assert (await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)).status == 204
    assert carried == [1, 1, 1, 1]


async def test_a_malformed_answer_is_a_protocol_error(pool: ConnectionPool) -> None:
    async with raw_server(lambda _, __: b"SMTP ready\r\n\r\n") as (base, _):
        with pytest.raises(ProtocolError):
            await pool.post(f"{base}/hook", b"{}", HEADERS, timeout=5)

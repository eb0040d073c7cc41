"""The member organizations' webhook endpoints for the fan-out benchmark: servers in child processes, each serving a
share of the subscribers' paths, verifying every signature and recording each arrival (CLOCK_MONOTONIC, system-wide
on Linux, so the driver can subtract its own clock readings).

Two implementations of the same endpoints. `lean` (the default) is a bare asyncio protocol reading the HTTP/1.1
requests the hub sends (Content-Length bodies, keep-alive): the members' servers run on other machines in a real
deployment, while here they share the hub's 2 cores, and aiohttp's server framework needs ~165 ms of CPU for a
thousand POSTs, as much as the hub itself (measured with `--receiver aiohttp`, which is kept to compare with). Both
record an arrival once the whole body is in, then verify the signature over the raw bytes.

    python -m scripts.bench.webhook_receivers PORT [lean|aiohttp]   # one receiver process (the driver starts them)
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import requests

from scripts.medallion_peer import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"
KINDS = ("lean", "aiohttp")


class Recorder:
    """The receipts of one process, (n, idempotency key, arrival, signature ok), and the driver's waits on their
    number: woken once when the count it waits for is reached, not at every receipt (that would cost the receiver
    a task wake-up per POST while it is measured)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, float, bool]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def add(self, subscriber: int, key: str, arrived: float, signed: bool) -> None:
        self.records.append((subscriber, key, arrived, signed))
        if self._waiters:
            count = len(self.records)
            for _, future in [w for w in self._waiters if w[0] <= count]:
                if not future.done():
                    future.set_result(None)
            self._waiters = [w for w in self._waiters if w[0] > count]

    async def count(self, until: int, within: float) -> int:
        """The number of receipts, once there are at least `until` of them or `within` seconds passed."""
        if len(self.records) < until:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((until, future))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, within)
        return len(self.records)

    def since(self, index: int) -> bytes:
        return orjson.dumps(self.records[index:])


def serve_receivers(port: int, kind: str = "lean") -> None:
    """The members' endpoints: POST /hook/<n> records a receipt; the driver reads them with
    GET /receipts?since=<index> and waits for their number with GET /count?until=<n>&within=<s>."""
    recorder = Recorder()

    async def main() -> None:
        if kind == "aiohttp":
            await _start_aiohttp(recorder, port)
        else:
            # backlog: a thousand subscribers connect at once on the first alert.
            await asyncio.get_running_loop().create_server(lambda: _LeanHttp(recorder), HOST, port, backlog=4096)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class _LeanHttp(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive, which is what the hub's webhook client sends (and the
    driver's GETs). Anything else is answered 400 and the connection closed: the bench must not measure a
    misreading."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the driver's GETs being answered (a /count waits)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4:end + 4 + length])
            arrived = time.monotonic()
            del self._buffer[:end + 4 + length]
            method, target, _ = lines[0].split(" ", 2)
            if "chunked" in headers.get("transfer-encoding", ""):
                self._answer(400, b"chunked bodies are not read here", close=True)
            elif method == "POST" and target.startswith("/hook/"):
                self._hook(int(target[6:]), headers, body, arrived)
            elif method == "GET":
                task = asyncio.ensure_future(self._control(target))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._answer(404, b"")

    def _hook(self, subscriber: int, headers: dict[str, str], body: bytes, arrived: float) -> None:
        from exchange.fanout.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify

        signature = {SIGNATURE_HEADER: headers.get(SIGNATURE_HEADER.lower(), "")}
        ok = verify(SECRET, signature, body, time.time())
        self._recorder.add(subscriber, headers.get(IDEMPOTENCY_HEADER.lower(), ""), arrived, ok)
        self._answer(204, b"")

    async def _control(self, target: str) -> None:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/count":
            text = str(await self._recorder.count(int(query.get("until", "0")), float(query.get("within", "0"))))
            self._answer(200, text.encode())
        elif url.path == "/receipts":
            self._answer(200, self._recorder.since(int(query.get("since", "0"))))
        else:
            self._answer(404, b"")

    def _answer(self, status: int, body: bytes, *, close: bool = False) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        reason = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found"}[status]
        length = b"" if status == 204 else b"Content-Length: %d\r\n" % len(body)
        self._transport.write(b"HTTP/1.1 %d %s\r\n%s%s\r\n%s" % (
            status, reason.encode(), length, b"Connection: close\r\n" if close else b"", body))
        if close:
            self._transport.close()


async def _start_aiohttp(recorder: Recorder, port: int) -> None:
    from aiohttp import web

    from exchange.fanout.signing import IDEMPOTENCY_HEADER, verify

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.monotonic()
        ok = verify(SECRET, request.headers, body, time.time())
        recorder.add(int(request.match_info["n"]), request.headers.get(IDEMPOTENCY_HEADER, ""), arrived, ok)
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        until, within = int(request.query.get("until", "0")), float(request.query.get("within", "0"))
        return web.Response(text=str(await recorder.count(until, within)))

    async def receipts(request: web.Request) -> web.Response:
        return web.Response(body=recorder.since(int(request.query.get("since", "0"))),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    app.router.add_get("/count", count)
    app.router.add_get("/receipts", receipts)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=4096).start()


@dataclass(frozen=True, slots=True)
class Receipt:
    subscriber: int
    key: str
    arrived: float  # time.monotonic() in the receiver process
    signed: bool


class Receivers:
    """The receiver processes, each with its share of the subscribers' paths."""

    def __init__(self, count: int, workdir: Path, kind: str = "lean") -> None:
        self.kind = kind
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.seen = [0] * count  # receipts already read, per process
        for port in self.ports:
            log = (workdir / f"receiver-{port}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "scripts.bench.webhook_receivers", str(port), kind],
                                    cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=log, start_new_session=True)
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"a receiver did not start (see {workdir})")
        self.session = requests.Session()

    def url(self, subscriber: int) -> str:
        return f"http://{HOST}:{self.ports[subscriber % len(self.ports)]}/hook/{subscriber}"

    def counts(self) -> list[int]:
        return [int(self.session.get(f"http://{HOST}:{p}/count", timeout=10).text) for p in self.ports]

    def share(self, subscribers: int) -> list[int]:
        """How many of the subscribers each receiver process serves."""
        return [len(range(index, subscribers, len(self.ports))) for index in range(len(self.ports))]

    def wait(self, targets: list[int], within: float) -> None:
        """Until each receiver process holds its target number of receipts."""
        deadline = time.monotonic() + within
        for port, target in zip(self.ports, targets, strict=True):
            left = max(0.0, deadline - time.monotonic())
            got = int(self.session.get(f"http://{HOST}:{port}/count", params={"until": target, "within": left},
                                       timeout=left + 10).text)
            if got < target:
                raise TimeoutError(f"{got} of {target} deliveries at receiver {port} after {within:.0f}s")

    def take(self) -> list[Receipt]:
        """The receipts that arrived since the last take()."""
        out = []
        for index, port in enumerate(self.ports):
            rows = self.session.get(f"http://{HOST}:{port}/receipts", params={"since": self.seen[index]},
                                    timeout=30).json()
            self.seen[index] += len(rows)
            out += [Receipt(*row) for row in rows]
        return out

    def close(self) -> None:
        self.session.close()
        for proc in self.procs:
            stop_process_group(proc)


if __name__ == "__main__":
    serve_receivers(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "lean")

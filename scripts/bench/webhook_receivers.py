"""The member organizations' webhook endpoints for the fan-out benchmark: aiohttp servers in child processes, each
serving a share of the subscribers' paths, verifying every signature and recording each arrival (CLOCK_MONOTONIC,
system-wide on Linux, so the driver can subtract its own clock readings).

    python -m scripts.bench.webhook_receivers PORT     # one receiver process (the driver starts them)
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

from scripts.medallion_peer import free_port, stop_process_group

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
SECRET = "bench-webhook-secret"


def serve_receivers(port: int) -> None:
    """The members' endpoints: POST /hook/<n> records (n, idempotency key, arrival, signature ok); the driver
    reads the records with GET /receipts?since=<index> and counts them with GET /count."""
    import asyncio

    from aiohttp import web

    from exchange.fanout.signing import IDEMPOTENCY_HEADER, verify

    records: list[tuple[int, str, float, bool]] = []
    arrived_one = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.monotonic()
        ok = verify(SECRET, request.headers, body, time.time())
        records.append((int(request.match_info["n"]), request.headers.get(IDEMPOTENCY_HEADER, ""), arrived, ok))
        arrived_one.set()
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        """The number of receipts, once there are at least ?until= of them (or ?within= seconds passed): the
        driver waits here instead of polling, which would steal the receivers' time while they are measured."""
        until, within = int(request.query.get("until", "0")), float(request.query.get("within", "0"))
        deadline = time.monotonic() + within
        while True:
            arrived_one.clear()  # before the check: a receipt after it sets the event again
            if len(records) >= until or (left := deadline - time.monotonic()) <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived_one.wait(), left)
        return web.Response(text=str(len(records)))

    async def receipts(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(records[int(request.query.get("since", "0")):]),
                            content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook/{n}", hook)
        app.router.add_get("/count", count)
        app.router.add_get("/receipts", receipts)
        # backlog: a thousand subscribers connect at once on the first alert.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port, backlog=4096).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


@dataclass(frozen=True, slots=True)
class Receipt:
    subscriber: int
    key: str
    arrived: float  # time.monotonic() in the receiver process
    signed: bool


class Receivers:
    """The receiver processes, each with its share of the subscribers' paths."""

    def __init__(self, count: int, workdir: Path) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.seen = [0] * count  # receipts already read, per process
        for port in self.ports:
            log = (workdir / f"receiver-{port}.log").open("wb")
            proc = subprocess.Popen([sys.executable, "-m", "scripts.bench.webhook_receivers", str(port)], cwd=REPO,
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
    serve_receivers(int(sys.argv[1]))

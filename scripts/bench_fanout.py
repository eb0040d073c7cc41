"""Benchmark alert fan-out: ingest-to-delivery latency of one alert to N webhook subscribers, and alert versions/s.

Three kinds of process on loopback: the hub (`python -m exchange serve`, SQLite synchronous=FULL as it runs in
production), the receivers (aiohttp servers, N paths spread over --receivers processes; each POST's signature is
verified and its arrival time recorded) and this driver. N member organizations each have one webhook subscription.
Alerts open at two countries.

1. latency, per round: reporter DE posts a fresh domain; once the hub has published it in its canonical collection
   (and correlated it), the clock starts and reporter FR posts the same domain, which crosses the threshold. The
   latency of a subscriber is the time from just before that POST to the arrival of the alert at its receiver
   (CLOCK_MONOTONIC, system-wide on Linux). One round per alert: p50, p99 and max over the N subscribers. The
   first (cold) round opens the hub's N connections and is reported apart.
2. throughput, per round: the same with M fresh domains in one envelope: M alerts, M x N deliveries; alert
   versions/s = M / (time until the last subscriber has the last alert).

Figures are medians over the rounds with their spread ((max - min) / median). Target: p99 < 250 ms.

    python scripts/bench_fanout.py                      # N=1,000 subscribers, 7 latency rounds, 3 of M=20 alerts
    python scripts/bench_fanout.py --smoke              # N=20, 2 + 1 rounds of M=3: checks that it works
    python scripts/bench_fanout.py --receivers 2 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_fanout.py` from a checkout
    sys.path.insert(0, str(REPO))

from exchange.model.timestamps import format_timestamp, now_micros  # noqa: E402
from exchange.normalize.ids import indicator_id  # noqa: E402
from exchange.normalize.patterns import canonical_pattern  # noqa: E402
from exchange.policy.credentials import hash_password  # noqa: E402

HOST = "127.0.0.1"
TAXII = "application/taxii+json;version=2.1"
INBOX = "31110fdc-ecd0-46fd-994f-960c58b21925"
CANONICAL = "c7484c5c-18c8-4bcc-acb0-d4d778671765"
ALERTS = "2e708668-f712-4202-973a-8e410eea1a3a"
PASSWORD = "bench-password"
REPORTERS = {"rep-de": "DE", "rep-fr": "FR"}
SECRET = "bench-webhook-secret"
TARGET_P99 = 0.250  # seconds, issue #5
READY_TIMEOUT = 60.0


# --- receivers (a child process of this script) ----------------------------------------------------------------


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
            proc = subprocess.Popen([sys.executable, __file__, "--serve-receivers", str(port)], cwd=REPO,
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
            stop(proc)


# --- the hub ---------------------------------------------------------------------------------------------------


def hub_config(directory: Path, receivers: Receivers, subscribers: int) -> Path:
    """Inbox, canonical and alerts collections; two reporting CERTs; N members with one webhook each."""
    digest = hash_password(PASSWORD)  # one hash for every account: hashing is slow on purpose
    parts = [f"""
[hub]
title = "fan-out bench hub"
data_dir = "data"
canonical_collection = "canonical"
alerts_collection = "alerts"

[alerts]
levels = [{{ name = "large-scale", countries = 2 }}]
fast_growth = {{ new_countries = 0 }}

[[api_roots]]
path = "api"
default = true

[[api_roots.collections]]
id = "{INBOX}"
alias = "inbox"
title = "Inbox"

[[api_roots.collections]]
id = "{CANONICAL}"
alias = "canonical"
title = "Canonical"

[[api_roots.collections]]
id = "{ALERTS}"
alias = "alerts"
title = "Alerts"
"""]
    for user, country in REPORTERS.items():
        parts.append(f'\n[[accounts]]\nusername = "{user}"\nkind = "operator"\ncountry = "{country}"\n'
                     f'password_hash = "{digest}"\ncan_read = ["*"]\ncan_write = ["inbox"]\n')
    for n in range(subscribers):
        parts.append(f'\n[[accounts]]\nusername = "member-{n}"\nkind = "member"\npassword_hash = "{digest}"\n'
                     f'can_read = ["alerts"]\n')
        parts.append(f'\n[[members]]\nname = "Member {n}"\naccount = "member-{n}"\ncountry = "DE"\n'
                     f'subscriptions = [{{ id = "hook-{n}", channel = "webhook", url = "{receivers.url(n)}", '
                     f'secret_env = "BENCH_SECRET" }}]\n')
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hub.toml"
    path.write_text("".join(parts))
    return path


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; 0.0 where /proc is missing. Unlike the
    latencies, it does not depend on what else the machine is running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5) 14, 15)


@contextlib.contextmanager
def run_hub(config: Path) -> Iterator[tuple[str, int]]:
    """`python -m exchange serve` on a free port; yields its base URL and pid; SIGTERM (then SIGKILL) on exit."""
    port = free_port()
    log = (config.parent / "hub.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "exchange", "serve", "--config", str(config), "--port", str(port),
                             "--log-level", "warning"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "BENCH_SECRET": SECRET})
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited; see {config.parent / 'hub.log'}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub was not ready within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        stop(proc)
        log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- the driver ------------------------------------------------------------------------------------------------


def indicators(values: list[str]) -> list[dict[str, Any]]:
    stamp = format_timestamp(now_micros() - 60_000_000)
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}", "created": stamp,
             "modified": stamp, "pattern": f"[domain-name:value = '{v}']", "pattern_type": "stix",
             "valid_from": stamp, "indicator_types": ["malicious-activity"]} for v in values]


class Driver:
    def __init__(self, base: str, pid: int, receivers: Receivers, subscribers: int) -> None:
        self.base = base
        self.pid = pid
        self.hub_cpu = 0.0  # seconds the hub spent on the last alert() (the first report's share included)
        self.receivers = receivers
        self.subscribers = subscribers
        self.session = requests.Session()
        self.serial = 0

    def post(self, user: str, objects: list[dict[str, Any]]) -> None:
        response = self.session.post(f"{self.base}/api/collections/{INBOX}/objects/",
                                     data=orjson.dumps({"objects": objects}), auth=(user, PASSWORD),
                                     headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=60)
        if response.status_code != 202:
            raise RuntimeError(f"POST as {user}: HTTP {response.status_code} {response.text[:200]}")

    def published(self, value: str) -> bool:
        ident = indicator_id(canonical_pattern(f"[domain-name:value = '{value}']"))
        response = self.session.get(f"{self.base}/api/collections/{CANONICAL}/objects/{ident}/",
                                    auth=("rep-de", PASSWORD), headers={"Accept": TAXII}, timeout=10)
        return response.status_code == 200

    def alert(self, count: int) -> tuple[float, list[Receipt]]:
        """`count` new alerts: (seconds from the threshold-crossing POST to the last arrival, the arrivals as
        seconds since that POST)."""
        self.serial += 1
        cpu = cpu_seconds(self.pid)
        values = [f"threat-{self.serial}-{i}.bench.example" for i in range(count)]
        self.post("rep-de", indicators(values))  # one country: below the threshold
        deadline = time.monotonic() + 30
        while not all(self.published(v) for v in values[-1:]):
            if time.monotonic() > deadline:
                raise TimeoutError("the first report was not published")
            time.sleep(0.01)
        time.sleep(0.2)  # and correlated: the alerter runs right after the commit that published it
        expected = [had + count * share for had, share in zip(self.receivers.counts(),
                                                              self.receivers.share(self.subscribers), strict=True)]
        objects = indicators(values)  # made before the clock starts
        start = time.monotonic()
        self.post("rep-fr", objects)  # the second country: every one of these is an alert now
        self.receivers.wait(expected, within=120)
        receipts = [Receipt(r.subscriber, r.key, r.arrived - start, r.signed) for r in self.receivers.take()]
        time.sleep(0.1)  # the hub marks the last deliveries done after their receipt
        self.hub_cpu = cpu_seconds(self.pid) - cpu
        return max(r.arrived for r in receipts), receipts


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: p99 of 1,000 values is the 990th smallest."""
    ordered = sorted(values)
    rank = math.ceil(share * len(ordered))  # 1-based
    return ordered[min(len(ordered), max(rank, 1)) - 1]


@dataclass(slots=True)
class Series:
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        return (max(self.values) - min(self.values)) / self.median if self.median else 0.0

    def line(self, label: str, scale: float = 1.0, digits: int = 1) -> str:
        def f(v: float) -> str:
            return f"{v * scale:>10,.{digits}f}"

        return (f"{label:<28}{f(self.median)}{f(min(self.values))}{f(max(self.values))}{100 * self.spread:>9.1f}%"
                f"  {self.unit}")

    def summary(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "min": min(self.values), "max": max(self.values),
                "spread": self.spread, "runs": self.values}


def check(receipts: list[Receipt], subscribers: int, alerts: int, problems: list[str], where: str) -> None:
    """Every subscriber got each alert once, signed."""
    per_subscriber: dict[int, set[str]] = {}
    for r in receipts:
        per_subscriber.setdefault(r.subscriber, set()).add(r.key)
    if len(receipts) != subscribers * alerts or len(per_subscriber) != subscribers or any(
            len(keys) != alerts for keys in per_subscriber.values()):
        problems.append(f"{where}: {len(receipts)} deliveries to {len(per_subscriber)} subscribers; expected "
                        f"{alerts} to each of {subscribers}")
    if not all(r.signed for r in receipts):
        problems.append(f"{where}: {sum(not r.signed for r in receipts)} deliveries failed signature verification")


def machine() -> dict[str, Any]:
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text(errors="replace").splitlines()
                      if line.startswith("model name")), model)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "platform": platform.platform(),
            "python": platform.python_version()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=1_000, help="webhook subscribers (default 1,000)")
    p.add_argument("--receivers", type=int, default=1, help="receiver processes (default 1)")
    p.add_argument("--rounds", type=int, default=7, help="measured latency rounds, one alert each (default 7)")
    p.add_argument("--burst", type=int, default=20, help="alerts per throughput round (default 20)")
    p.add_argument("--burst-rounds", type=int, default=3, help="throughput rounds (default 3)")
    p.add_argument("--smoke", action="store_true", help="a tiny run that checks the bench works")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--check-target", action="store_true", help="exit 2 when the median p99 misses 250 ms")
    p.add_argument("--serve-receivers", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.subscribers, args.rounds, args.burst, args.burst_rounds = 20, 2, 3, 1
    if min(args.subscribers, args.receivers, args.rounds, args.burst, args.burst_rounds) < 1:
        p.error("every count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receivers:
        serve_receivers(args.serve_receivers)
        return 0
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); {info['platform']}; "
          f"python {info['python']}")
    print(f"{args.subscribers:,} webhook subscribers on {args.receivers} receiver process(es); {args.rounds} "
          f"latency rounds of 1 alert, {args.burst_rounds} throughput rounds of {args.burst} alerts", flush=True)
    p50, p99, worst, cpu = Series("ms"), Series("ms"), Series("ms"), Series("ms hub CPU per alert")
    rate, deliveries = Series("alert versions/s"), Series("deliveries/s")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        workdir = Path(tmp)
        receivers = Receivers(args.receivers, workdir)
        try:
            started = time.monotonic()
            with run_hub(hub_config(workdir, receivers, args.subscribers)) as (base, pid):
                print(f"hub ready in {time.monotonic() - started:.1f} s", flush=True)
                driver = Driver(base, pid, receivers, args.subscribers)
                cold_last, cold = driver.alert(1)
                check(cold, args.subscribers, 1, problems, "cold round")
                cold_times = [r.arrived for r in cold]
                print(f"cold round (connections opened): p50 {1e3 * percentile(cold_times, 0.5):.1f} ms, p99 "
                      f"{1e3 * percentile(cold_times, 0.99):.1f} ms, last {1e3 * cold_last:.1f} ms", flush=True)
                for n in range(1, args.rounds + 1):
                    last, receipts = driver.alert(1)
                    check(receipts, args.subscribers, 1, problems, f"round {n}")
                    times = [r.arrived for r in receipts]
                    p50.values.append(percentile(times, 0.5))
                    p99.values.append(percentile(times, 0.99))
                    worst.values.append(last)
                    cpu.values.append(driver.hub_cpu)
                    print(f"round {n}/{args.rounds}: p50 {1e3 * p50.values[-1]:.1f} ms, p99 {1e3 * p99.values[-1]:.1f} "
                          f"ms, last {1e3 * last:.1f} ms; hub CPU {1e3 * driver.hub_cpu:.0f} ms", flush=True)
                for n in range(1, args.burst_rounds + 1):
                    last, receipts = driver.alert(args.burst)
                    check(receipts, args.subscribers, args.burst, problems, f"burst {n}")
                    rate.values.append(args.burst / last)
                    deliveries.values.append(len(receipts) / last)
                    print(f"burst {n}/{args.burst_rounds}: {args.burst} alerts to every subscriber in {last:.2f} s: "
                          f"{rate.values[-1]:,.1f} alert versions/s, {deliveries.values[-1]:,.0f} deliveries/s",
                          flush=True)
        finally:
            receivers.close()
    print(f"\ningest-to-delivery, one alert to {args.subscribers:,} subscribers, {args.rounds} round(s)"
          f"\n{'':<28}{'median':>10}{'min':>10}{'max':>10}{'spread':>10}")
    print(p50.line("p50", 1e3))
    print(p99.line("p99", 1e3))
    print(worst.line("last subscriber", 1e3))
    print(cpu.line("hub CPU (both reports)", 1e3, 0))
    print(f"throughput, {args.burst} alerts at once, {args.burst_rounds} round(s)")
    print(rate.line("alert versions", 1.0, 1))
    print(deliveries.line("deliveries", 1.0, 0))
    met = p99.median < TARGET_P99
    print(f"target: p99 < {1e3 * TARGET_P99:.0f} ms {'met' if met else 'NOT met'}")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": info,
            "latency": {"p50": p50.summary(), "p99": p99.summary(), "last": worst.summary(), "hub_cpu": cpu.summary(),
                        "cold": {"p50": percentile(cold_times, 0.5), "p99": percentile(cold_times, 0.99),
                                 "last": cold_last}},
            "throughput": {"alert_versions": rate.summary(), "deliveries": deliveries.summary()},
            "target": {"p99": TARGET_P99, "met": met},
            "problems": problems,
        }, indent=2))
    if problems:
        return 1
    return 2 if args.check_target and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark alert fan-out: ingest-to-delivery latency of one alert to N webhook subscribers, and alert versions/s.

Three kinds of process on loopback: the hub (`python -m exchange serve`, SQLite synchronous=FULL as it runs in
production), the receivers (N paths spread over --receivers processes, a lean asyncio HTTP/1.1 server or, with
--receiver aiohttp, aiohttp's; each POST's signature is verified and its arrival time recorded) and this driver.
N member organizations each have one webhook subscription. Alerts open at two countries.

1. latency, per round: reporter DE posts a fresh domain; once the hub has published it in its canonical collection
   (and correlated it), the clock starts and reporter FR posts the same domain, which crosses the threshold. The
   latency of a subscriber is the time from just before that POST to the arrival of the alert at its receiver
   (CLOCK_MONOTONIC, system-wide on Linux). One round per alert: p50, p99 and max over the N subscribers. The
   first (cold) round opens the hub's N connections and is reported apart.
2. throughput, per round: the same with M fresh domains in one envelope: M alerts, M x N deliveries; alert
   versions/s = M / (time until the last subscriber has the last alert).

Figures are medians over the rounds with their spread ((max - min) / median). Target: p99 < 250 ms. The receivers
are scripts/bench/webhook_receivers.py; `python -m scripts.bench` runs run() with the other benchmarks.

    python scripts/bench_fanout.py                      # N=1,000 subscribers, 7 latency rounds, 3 of M=20 alerts
    python scripts/bench_fanout.py --smoke              # N=20, 2 + 1 rounds of M=3: checks that it works
    python scripts/bench_fanout.py --receivers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
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
from scripts.bench import stats  # noqa: E402
from scripts.bench.hub_process import serve_hub  # noqa: E402
from scripts.bench.machine import machine  # noqa: E402
from scripts.bench.procfs import cpu_seconds  # noqa: E402
from scripts.bench.profile import Sampler  # noqa: E402
from scripts.bench.stats import percentile  # noqa: E402
from scripts.bench.webhook_receivers import KINDS, SECRET, Receipt, Receivers  # noqa: E402

HOST = "127.0.0.1"
TAXII = "application/taxii+json;version=2.1"
INBOX = "31110fdc-ecd0-46fd-994f-960c58b21925"
CANONICAL = "c7484c5c-18c8-4bcc-acb0-d4d778671765"
ALERTS = "2e708668-f712-4202-973a-8e410eea1a3a"
PASSWORD = "bench-password"
REPORTERS = {"rep-de": "DE", "rep-fr": "FR"}
TARGET_P99 = 0.250  # seconds, issue #5
READY_TIMEOUT = 60.0


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subscribers", type=int, default=1_000, help="webhook subscribers (default 1,000)")
    p.add_argument("--receivers", type=int, default=1, help="receiver processes (default 1)")
    p.add_argument("--receiver", choices=KINDS, default="lean",
                   help="the receivers' HTTP server: lean (default) or aiohttp (as before 2026-11; ~3x their CPU)")
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


@dataclass(slots=True)
class Measured:
    """Seconds (ms for the CPU) of each latency round and alerts/s of each throughput round."""

    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    hub_cpu: list[float] = field(default_factory=list)
    alert_versions: list[float] = field(default_factory=list)
    deliveries: list[float] = field(default_factory=list)
    cold: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def measure(subscribers: int, receiver_count: int, rounds: int, burst: int, burst_rounds: int,
            sampler: Sampler | None = None, receiver: str = "lean") -> Measured:
    """One hub, one cold round, `rounds` latency rounds, `burst_rounds` throughput rounds; with a sampler, py-spy
    records the hub over as many extra latency rounds afterwards (not measured)."""
    m = Measured()
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        workdir = Path(tmp)
        receivers = Receivers(receiver_count, workdir, receiver)
        try:
            started = time.monotonic()
            config = hub_config(workdir, receivers, subscribers)
            with serve_hub(config, log_path=workdir / "hub.log", env={"BENCH_SECRET": SECRET}) as (base, hub):
                pid = hub.pid
                print(f"hub ready in {time.monotonic() - started:.1f} s", flush=True)
                driver = Driver(base, pid, receivers, subscribers)
                cold_last, cold = driver.alert(1)
                check(cold, subscribers, 1, m.problems, "cold round")
                times = [r.arrived for r in cold]
                m.cold = {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99), "last": cold_last}
                print(f"cold round (connections opened): p50 {1e3 * m.cold['p50']:.1f} ms, p99 "
                      f"{1e3 * m.cold['p99']:.1f} ms, last {1e3 * cold_last:.1f} ms", flush=True)
                for n in range(1, rounds + 1):
                    last, receipts = driver.alert(1)
                    check(receipts, subscribers, 1, m.problems, f"round {n}")
                    times = [r.arrived for r in receipts]
                    m.p50.append(percentile(times, 0.5))
                    m.p99.append(percentile(times, 0.99))
                    m.last.append(last)
                    m.hub_cpu.append(driver.hub_cpu)
                    print(f"round {n}/{rounds}: p50 {1e3 * m.p50[-1]:.1f} ms, p99 {1e3 * m.p99[-1]:.1f} ms, last "
                          f"{1e3 * last:.1f} ms; hub CPU {1e3 * driver.hub_cpu:.0f} ms", flush=True)
                for n in range(1, burst_rounds + 1):
                    last, receipts = driver.alert(burst)
                    check(receipts, subscribers, burst, m.problems, f"burst {n}")
                    m.alert_versions.append(burst / last)
                    m.deliveries.append(len(receipts) / last)
                    print(f"burst {n}/{burst_rounds}: {burst} alerts to every subscriber in {last:.2f} s: "
                          f"{m.alert_versions[-1]:,.1f} alert versions/s, {m.deliveries[-1]:,.0f} deliveries/s",
                          flush=True)
                if sampler and sampler.enabled:
                    with sampler.record(f"fanout-hub-{subscribers}", pid):
                        for _ in range(rounds):
                            driver.alert(1)
        finally:
            receivers.close()
    return m


def run(subscribers: int, rounds: int, *, receivers: int = 1, burst: int = 20, burst_rounds: int = 3,
        sampler: Sampler | None = None, receiver: str = "lean") -> dict[str, Any]:
    """The suite's entry: each latency round is one run of the whole path, ingest to the last webhook."""
    m = measure(subscribers, receivers, rounds, burst, burst_rounds, sampler, receiver)
    figures = {
        "p50": stats.summary([1e3 * v for v in m.p50], "ms", "p50 ingest-to-delivery", higher_is_better=False),
        "p99": stats.summary([1e3 * v for v in m.p99], "ms", "p99 ingest-to-delivery", higher_is_better=False),
        "last": stats.summary([1e3 * v for v in m.last], "ms", "last subscriber", higher_is_better=False),
        "hub_cpu": stats.summary([1e3 * v for v in m.hub_cpu], "ms", "hub CPU per alert (both reports)",
                                 higher_is_better=False),
        "alert_versions": stats.summary(m.alert_versions, "alerts/s", f"alert versions/s, {burst} at once"),
        "deliveries": stats.summary(m.deliveries, "deliveries/s", f"webhook deliveries/s, {burst} alerts at once"),
    }
    targets = [stats.target(f"p99 for one alert to {subscribers:,} webhook subscribers", figures["p99"], "<",
                            1e3 * TARGET_P99, "#5")]
    return stats.result("fanout", f"Fan-out: one alert to {subscribers:,} webhook subscribers",
                        {"subscribers": subscribers, "rounds": rounds, "receivers": receivers, "receiver": receiver,
                         "burst": burst,
                         "burst_rounds": burst_rounds}, figures, {}, targets, m.problems,
                        cold={k: 1e3 * v for k, v in m.cold.items()})


def line(label: str, values: list[float], unit: str, scale: float = 1.0, digits: int = 1) -> str:
    f = stats.summary([v * scale for v in values], unit)
    return "".join(f"{f[k]:>10,.{digits}f}" for k in ("median", "min", "max")).join(
        (f"{label:<28}", f"{100 * f['spread']:>9.1f}%  {unit}"))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_receivers:
        from scripts.bench.webhook_receivers import serve_receivers

        serve_receivers(args.serve_receivers, args.receiver)
        return 0
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); {info['platform']}; "
          f"python {info['python']}")
    print(f"{args.subscribers:,} webhook subscribers on {args.receivers} {args.receiver} receiver process(es); "
          f"{args.rounds} "
          f"latency rounds of 1 alert, {args.burst_rounds} throughput rounds of {args.burst} alerts", flush=True)
    m = measure(args.subscribers, args.receivers, args.rounds, args.burst, args.burst_rounds, receiver=args.receiver)
    print(f"\ningest-to-delivery, one alert to {args.subscribers:,} subscribers, {args.rounds} round(s)"
          f"\n{'':<28}{'median':>10}{'min':>10}{'max':>10}{'spread':>10}")
    print(line("p50", m.p50, "ms", 1e3))
    print(line("p99", m.p99, "ms", 1e3))
    print(line("last subscriber", m.last, "ms", 1e3))
    print(line("hub CPU (both reports)", m.hub_cpu, "ms hub CPU per alert", 1e3, 0))
    print(f"throughput, {args.burst} alerts at once, {args.burst_rounds} round(s)")
    print(line("alert versions", m.alert_versions, "alert versions/s"))
    print(line("deliveries", m.deliveries, "deliveries/s", 1.0, 0))
    met = statistics.median(m.p99) < TARGET_P99
    print(f"target: p99 < {1e3 * TARGET_P99:.0f} ms {'met' if met else 'NOT met'}")
    for problem in m.problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if args.json:
        def summary(values: list[float], unit: str) -> dict[str, Any]:
            return {k: v for k, v in stats.summary(values, unit).items() if k not in ("label", "q1", "q3",
                                                                                     "higher_is_better")}

        args.json.write_text(json.dumps({
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": info,
            "latency": {"p50": summary(m.p50, "ms"), "p99": summary(m.p99, "ms"), "last": summary(m.last, "ms"),
                        "hub_cpu": summary(m.hub_cpu, "ms hub CPU per alert"), "cold": m.cold},
            "throughput": {"alert_versions": summary(m.alert_versions, "alert versions/s"),
                           "deliveries": summary(m.deliveries, "deliveries/s")},
            "target": {"p99": TARGET_P99, "met": met},
            "problems": m.problems,
        }, indent=2))
    if m.problems:
        return 1
    return 2 if args.check_target and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())

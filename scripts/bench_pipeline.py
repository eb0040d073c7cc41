"""Benchmark the hub's normalize+dedup hot path (indicators/s, one process) against stix2.parse + dedup by id.

Generates N STIX 2.1 indicators from P peers (ipv4, ipv6, domain, url and sha256 values), a share of them
re-sending another peer's value in an equivalent spelling (domain case and trailing dot, pattern white space, hash
names such as SHA256 and 'SHA-256', IPv6 spellings, /32 and /128, URL case and default ports), every object under
its sender's own id. Then measures, in one process and side by side, for several runs:

1. hub: ``prepare()`` over every envelope, as the processor's worker thread runs it (decode; header check and
   verbatim record; claim: canonical pattern, deterministic id, TLP, times), in the processor's batches, keeping
   the claims; then the claims grouped by canonical id and ``merge()`` once per canonical indicator for the
   default canonical audience (TLP:GREEN), as the store materializes a first version. No SQL, no I/O.
2. baseline: ``stix2.parse(obj, allow_custom=True)`` for every object, deduplicated in a dict by id (newer
   ``modified`` wins). Each peer's objects carry their own ids, so it finds no duplicates at all: it is what reading
   STIX with the reference library costs, not an equivalent of (1).
3. for information, the durable path: ``prepare()`` and ``SQLiteStore.write_envelopes`` with a MergePolicy into a
   temporary directory (500-object envelopes, 32 envelopes per transaction as the processor writes them,
   synchronous=FULL as the hub runs it).

Both (1) and (2) start from the envelopes' JSON bytes. Every run starts with the hub's function caches emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import ipaddress
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_pipeline.py` from a checkout
    sys.path.insert(0, str(REPO))

from exchange.dedup.claims import Claim, Source, Warn  # noqa: E402
from exchange.dedup.merge import HubIdentity, merge  # noqa: E402
from exchange.ingest.journal import Envelope  # noqa: E402
from exchange.ingest.processor import BATCH, ClaimPolicy, prepare  # noqa: E402
from exchange.policy.tlp import TLP2_IDS, Tlp  # noqa: E402
from exchange.store.base import MergePolicy, Outcome  # noqa: E402

TARGET_RATE = 50_000  # indicators/s for (1), from issue #3
TARGET_RATIO = 25  # (1) / (2)
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
ENVELOPE = 500  # objects per envelope, as bench_taxii posts them
AUDIENCE = Tlp.GREEN  # the hub's default canonical_audience (schemas/config.schema.json)
HUB = HubIdentity("bench hub")
COUNTRIES = ("DE", "FR", "NL", "BE", "AT", "PL", "IT", "ES", "SE", "FI", "DK", "CZ", "PT", "IE", "LU")
KIND_WEIGHTS = {"ipv4": 25, "ipv6": 10, "domain": 25, "url": 20, "sha256": 20}  # shares of the distinct values
SCO_TYPES = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "domain": "domain-name", "url": "url"}
MARKINGS = ((TLP2_IDS[Tlp.GREEN], 55), (TLP2_IDS[Tlp.CLEAR], 15), (TLP2_IDS[Tlp.AMBER], 10), (None, 20))
HASH_KEYS = ("'SHA-256'", "SHA256", "sha256", "'sha-256'", "SHA_256")
# Pattern shapes: white space as peers write it (spaces and tabs, which the grammar skips).
SHAPES = ("[{p} = '{v}']", "[{p}='{v}']", "[ {p} = '{v}' ]", "[{p}\t=\t'{v}']", "  [{p}  =  '{v}'] ")
DOMAINS = ("example", "bad-host", "cdn-update", "login-secure")
TLDS = ("com", "net", "org", "ru", "info", "xyz")
URL_HOSTS = ("example.com", "files.example.net", "update.example.org")


# --- test data ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dataset:
    """The generated objects, already cut into each peer's envelopes (JSON bytes, as the journal holds them)."""

    n: int
    peers: int
    distinct: int  # canonical indicators the hub must end up with
    duplicates: int  # objects re-sending a value another peer sent
    envelopes: list[Envelope]
    kinds: dict[str, int]


def _stix_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _distinct_value(kind: str, i: int, rng: random.Random) -> str:
    """The i-th distinct value of a kind, in canonical form; unique per (kind, i)."""
    if kind == "ipv4":  # 11.0.0.0 upward: public addresses, unique for i < 2**24
        return f"{11 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if kind == "ipv6":
        return f"2001:db8:{(i >> 16) & 0xFFFF:x}:{i & 0xFFFF:x}::{rng.randrange(1, 0xFFFF):x}"
    if kind == "domain":
        return f"c2-{i:x}.{rng.choice(DOMAINS)}.{rng.choice(TLDS)}"
    if kind == "url":
        path = rng.choice(("/", f"/payload/{i}.bin", f"/gate.php?id={i}", f"/a/b/{i:x}/index.html"))
        return f"{rng.choice(('http', 'https'))}://dl{i:x}.{rng.choice(URL_HOSTS)}{path}"
    return f"{rng.getrandbits(256):064x}"


def _case(text: str, rng: random.Random) -> str:
    return rng.choice((text, text.upper(), text.title(), "".join(c.upper() if rng.random() < 0.5 else c for c in text)))


def _spelling(kind: str, value: str, rng: random.Random) -> tuple[str, str]:
    """(object path, value text) of one peer's spelling of a canonical value; half the values are spelled as is."""
    if kind == "sha256":
        return f"file:hashes.{rng.choice(HASH_KEYS)}", value.upper() if rng.random() < 0.5 else value
    path = f"{SCO_TYPES[kind]}:value"
    if rng.random() < 0.5:
        return path, value
    if kind == "ipv4":
        return path, f"{value}/32"
    if kind == "ipv6":
        exploded = ipaddress.IPv6Address(value).exploded
        return path, rng.choice((exploded, exploded.upper(), value.upper(), f"{value}/128"))
    if kind == "domain":
        return path, _case(value, rng) + rng.choice(("", "."))
    scheme, _, rest = value.partition("://")
    host, slash, tail = rest.partition("/")
    port = {"http": ":80", "https": ":443"}[scheme] if rng.random() < 0.5 else ""
    tail = "" if slash and not tail and rng.random() < 0.5 else slash + tail  # http://h is http://h/
    return path, f"{_case(scheme, rng)}://{_case(host, rng)}{port}{tail}"


def _indicator(rng: random.Random, peer: int, kind: str, value: str, serial: int) -> dict[str, Any]:
    path, text = _spelling(kind, value, rng)
    created = BASE_TIME + timedelta(seconds=serial, milliseconds=rng.randrange(1000))
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "created_by_ref": f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, f'peer{peer}.example')}",
        "created": _stix_time(created),
        "modified": _stix_time(created + timedelta(minutes=rng.choice((0, 0, 5, 60)))),
        "name": f"{kind} indicator from peer {peer}",
        "indicator_types": [rng.choice(("malicious-activity", "anomalous-activity", "compromised"))],
        "pattern": rng.choice(SHAPES).format(p=path, v=text),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": _stix_time(created),
    }
    if rng.random() < 0.3:
        obj["valid_until"] = _stix_time(created + timedelta(days=rng.choice((7, 30, 90))))
    if rng.random() < 0.7:
        obj["confidence"] = rng.choice((15, 30, 50, 70, 85, 100))
    if rng.random() < 0.5:
        obj["labels"] = rng.sample(("botnet", "phishing", "c2", "ransomware", "scanner", "apt"), rng.randrange(1, 3))
    if rng.random() < 0.3:
        phase = rng.choice(("command-and-control", "initial-access"))
        obj["kill_chain_phases"] = [{"kill_chain_name": "mitre-attack", "phase_name": phase}]
    marking = rng.choices([m for m, _ in MARKINGS], [w for _, w in MARKINGS])[0]
    if marking is not None:
        obj["object_marking_refs"] = [marking]
    return obj


def generate(n: int, peers: int, dup_rate: float, seed: int) -> Dataset:
    """N indicators: (1 - dup_rate) * N distinct values, each first sent by one peer, and dup_rate * N re-sends of
    them by other peers, in random order; each peer's objects cut into envelopes, the peers' envelopes interleaved."""
    rng = random.Random(seed)
    duplicates = round(n * dup_rate) if peers > 1 else 0
    distinct = n - duplicates
    kinds = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()), k=distinct)
    counters: Counter[str] = Counter()
    values: list[tuple[int, str, str]] = []  # origin peer, kind, canonical value
    for kind in kinds:
        values.append((rng.randrange(peers), kind, _distinct_value(kind, counters[kind], rng)))
        counters[kind] += 1
    sends = list(values)
    for _ in range(duplicates):
        origin, kind, value = rng.choice(values)
        sends.append(((origin + rng.randrange(1, peers)) % peers, kind, value))
    rng.shuffle(sends)
    per_peer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for serial, (peer, kind, value) in enumerate(sends):
        per_peer[peer].append(_indicator(rng, peer, kind, value, serial))
    chunks = {p: [objs[i:i + ENVELOPE] for i in range(0, len(objs), ENVELOPE)] for p, objs in per_peer.items()}
    envelopes = [
        Envelope(status_id=f"{peer}-{k}", api_root="api", collection_id="inbox", account=f"peer{peer}",
                 received_at=0, total=len(chunks[peer][k]), pending=[],
                 body=orjson.dumps({"objects": chunks[peer][k]}))
        for k in range(max(map(len, chunks.values()), default=0)) for peer in sorted(chunks) if k < len(chunks[peer])
    ]
    return Dataset(n=n, peers=peers, distinct=distinct, duplicates=duplicates, envelopes=envelopes,
                   kinds=dict(Counter(kinds)))


def claim_policy(peers: int, warn: Warn | None = None) -> ClaimPolicy:
    """Each peer an account with a country and a trust weight, as the hub's [sources] configure them."""
    sources = {f"peer{p}": Source(name=f"peer{p}", country=COUNTRIES[p % len(COUNTRIES)], trust=0.5 + (p % 5) / 10)
               for p in range(peers)}
    return ClaimPolicy(sources=sources, default_tlp=Tlp.GREEN, warn=warn)


# --- the measured paths -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HubRun:
    seconds: float
    prepare_seconds: float
    claims: int
    canonical: int  # distinct canonical ids among the claims
    published: int  # merged objects the audience sees (an indicator with only AMBER claims shows nothing)
    rejected: int


def run_hub(data: Dataset, policy: ClaimPolicy) -> HubRun:
    """(1): prepare() in the processor's batches, keeping only the claims (the records would go to the store),
    then group the claims by canonical id and merge each group once."""
    t0 = time.perf_counter()
    groups: dict[str, list[Claim]] = defaultdict(list)
    rejected = 0
    for start in range(0, len(data.envelopes), BATCH):
        for write in [prepare(env, policy) for env in data.envelopes[start:start + BATCH]]:
            rejected += len(write.status.results)
            for claims in write.derived:
                for claim in claims:
                    if isinstance(claim, Claim):
                        groups[claim.indicator_id].append(claim)
    t1 = time.perf_counter()
    published = sum(merge(group, audience=AUDIENCE, hub=HUB, created=None, previous_modified=0) is not None
                    for group in groups.values())
    t2 = time.perf_counter()
    return HubRun(seconds=t2 - t0, prepare_seconds=t1 - t0, claims=sum(map(len, groups.values())),
                  canonical=len(groups), published=published, rejected=rejected)


def run_baseline(data: Dataset, limit: int) -> tuple[float, int, int]:
    """(2): (seconds, objects parsed, distinct ids) for stix2.parse of each object and a newest-wins dict by id."""
    import stix2

    latest: dict[str, Any] = {}
    parsed = 0
    t0 = time.perf_counter()
    for env in data.envelopes:
        for obj in orjson.loads(env.body)["objects"]:
            if parsed == limit:
                break
            stix_obj = stix2.parse(obj, allow_custom=True)
            current = latest.get(stix_obj.id)
            if current is None or stix_obj.modified > current.modified:
                latest[stix_obj.id] = stix_obj
            parsed += 1
    return time.perf_counter() - t0, parsed, len(latest)


async def _durable(data: Dataset, policy: ClaimPolicy, workdir: Path) -> tuple[float, Counter[str]]:
    from exchange.store.sqlite.store import SQLiteStore

    store = SQLiteStore(workdir / "store.db",
                        merge=MergePolicy(collection_id="indicators", audience=AUDIENCE, hub=HUB))
    await store.start()
    outcomes: Counter[str] = Counter()
    try:
        t0 = time.perf_counter()
        for start in range(0, len(data.envelopes), BATCH):
            writes = [prepare(env, policy) for env in data.envelopes[start:start + BATCH]]
            for status in await store.write_envelopes(writes):
                outcomes.update(r.outcome.value for r in status.results)
        seconds = time.perf_counter() - t0
    finally:
        await store.close()
    return seconds, outcomes


def run_durable(data: Dataset, policy: ClaimPolicy) -> tuple[float, Counter[str]]:
    """(3): seconds to prepare and durably store every envelope, claims upserted, canonical objects materialized."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        return asyncio.run(_durable(data, policy, Path(tmp)))


def clear_caches() -> None:
    """Empty every functools cache in the hub's modules, so that no run profits from the one before it."""
    for name, module in list(sys.modules.items()):
        if name.startswith("exchange.") and module is not None:
            for attr in list(vars(module).values()):
                if callable(getattr(attr, "cache_clear", None)):
                    attr.cache_clear()


def fresh() -> None:
    clear_caches()
    gc.collect()


# --- report -----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Series:
    """One rate measured over the runs."""

    unit: str
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median."""
        return (max(self.rates) - min(self.rates)) / self.median

    def summary(self) -> dict[str, Any]:
        return {"unit": self.unit, "median": self.median, "min": min(self.rates), "max": max(self.rates),
                "spread": self.spread, "runs": self.rates}

    def line(self, label: str) -> str:
        return (f"{label:<34}{self.median:>12,.0f}{min(self.rates):>12,.0f}{max(self.rates):>12,.0f}"
                f"{100 * self.spread:>9.1f}%  {self.unit}")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """Where the figures come from: CPU, cores, interpreter, and the versions of what is measured."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10, check=False).stdout.strip() or "-"
    except OSError:
        commit = "-"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "platform": platform.platform(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})", "exchange": commit,
        "gc_thresholds": gc.get_threshold(),
        "versions": {d: _version(d) for d in ("stix2", "stix2-patterns", "antlr4-python3-runtime", "orjson",
                                               "msgpack", "idna")},
    }


# --- command line -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000, help="indicators to generate (default 100,000)")
    p.add_argument("--dup-rate", type=float, default=0.3, help="share of objects re-sending another peer's value")
    p.add_argument("--peers", type=int, default=10, help="sending peers (sources), default 10")
    p.add_argument("--runs", type=int, help="measured runs, reported as median and spread (default 3; 2 --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: N=2,000")
    p.add_argument("--baseline-n", type=int, help="objects the stix2.parse baseline parses per run (default: N)")
    p.add_argument("--no-durable", action="store_true", help="skip (3), the SQLite durable path")
    p.add_argument("--warninglists", action="store_true",
                   help="flag values with the MISP warninglists, as a hub that found them does (default: off)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--check-targets", action="store_true",
                   help=f"exit 2 when (1) is below {TARGET_RATE:,} indicators/s or {TARGET_RATIO}x the baseline")
    args = p.parse_args(argv)
    if args.quick:
        args.n = 2_000
    args.runs = args.runs or (2 if args.quick else 3)
    if args.n < 1 or args.peers < 1 or args.runs < 1 or not 0 <= args.dup_rate < 1:
        p.error("need --n >= 1, --peers >= 1, --runs >= 1 and 0 <= --dup-rate < 1")
    args.baseline_n = min(args.baseline_n or args.n, args.n)
    return args


def _warn(enabled: bool) -> Warn | None:
    if not enabled:
        return None
    from exchange.normalize.warninglists import default_warninglists

    return default_warninglists().match


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); {info['platform']}")
    print(f"python {info['python']}, gc thresholds {info['gc_thresholds']}; exchange {info['exchange']}; "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    t0 = time.perf_counter()
    data = generate(args.n, args.peers, args.dup_rate, args.seed)
    policy = claim_policy(args.peers, _warn(args.warninglists))
    print(f"data: {data.n:,} indicators from {data.peers} peers, {data.duplicates:,} re-sends "
          f"({100 * data.duplicates / data.n:.1f}%) of {data.distinct:,} distinct values "
          f"({', '.join(f'{k} {v:,}' for k, v in sorted(data.kinds.items()))}); {len(data.envelopes)} envelopes "
          f"of <= {ENVELOPE}; warninglists {'on' if args.warninglists else 'off'}; "
          f"made in {time.perf_counter() - t0:.1f} s", flush=True)
    import stix2  # noqa: F401  (its import stays out of the first baseline run)

    hub, base, durable = Series("indicators/s"), Series("objects/s"), Series("indicators/s")
    prepare_shares: list[float] = []
    ratios: list[float] = []
    problems: list[str] = []
    for run in range(1, args.runs + 1):
        fresh()
        h = run_hub(data, policy)
        hub.rates.append(data.n / h.seconds)
        prepare_shares.append(h.prepare_seconds / h.seconds)
        if h.rejected or h.claims != data.n or h.canonical != data.distinct:
            problems.append(f"run {run}: {h.rejected} rejected, {h.claims:,} claims, {h.canonical:,} canonical ids; "
                            f"expected 0, {data.n:,}, {data.distinct:,}")
        fresh()
        seconds, parsed, ids = run_baseline(data, args.baseline_n)
        base.rates.append(parsed / seconds)
        ratios.append(hub.rates[-1] / base.rates[-1])
        line = (f"run {run}/{args.runs}: (1) {hub.rates[-1]:,.0f} ind/s ({h.canonical:,} canonical, {h.published:,} "
                f"published to {AUDIENCE.label}; prepare {h.prepare_seconds:.2f} s, group+merge "
                f"{h.seconds - h.prepare_seconds:.2f} s)  (2) {base.rates[-1]:,.0f} obj/s ({ids:,} distinct ids of "
                f"{parsed:,})")
        if not args.no_durable:
            fresh()
            seconds, outcomes = run_durable(data, policy)
            durable.rates.append(data.n / seconds)
            if outcomes[Outcome.REJECTED] or sum(outcomes.values()) != data.n:
                problems.append(f"run {run}: durable outcomes {dict(outcomes)}")
            line += f"  (3) {durable.rates[-1]:,.0f} ind/s ({dict(outcomes)})"
        print(line, flush=True)

    ratio = hub.median / base.median
    print(f"\nnormalize+dedup of {data.n:,} indicators ({data.distinct:,} distinct), {args.runs} run(s), one process"
          f"\n{'':<34}{'median':>12}{'min':>12}{'max':>12}{'spread':>10}")
    print(hub.line("(1) hub prepare + group + merge"))
    print(base.line("(2) stix2.parse + dedup by id"))
    print(f"{'ratio (1)/(2)':<34}{ratio:>11,.1f}x{min(ratios):>11,.1f}x{max(ratios):>11,.1f}x"
          "   (medians; min and max of the runs' ratios)")
    if durable.rates:
        print(durable.line("(3) hub durable, SQLite FULL"))
    print(f"(1) spends {100 * statistics.median(prepare_shares):.0f}% in prepare(), the rest grouping and merging")
    fast, far = hub.median >= TARGET_RATE, ratio >= TARGET_RATIO
    print(f"targets: (1) >= {TARGET_RATE:,} indicators/s {'met' if fast else 'NOT met'}; "
          f">= {TARGET_RATIO}x the baseline {'met' if far else 'NOT met'}")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if args.json:
        doc = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": info,
            "data": {"n": data.n, "peers": data.peers, "distinct": data.distinct, "duplicates": data.duplicates,
                     "kinds": data.kinds, "envelopes": len(data.envelopes)},
            "hub": hub.summary() | {"prepare_share": statistics.median(prepare_shares)},
            "baseline": base.summary(),
            "ratio": {"of_medians": ratio, "runs": ratios},
            "durable": durable.summary() if durable.rates else None,
            "targets": {"rate": TARGET_RATE, "ratio": TARGET_RATIO, "rate_met": fast, "ratio_met": far},
            "problems": problems,
        }
        args.json.write_text(json.dumps(doc, indent=2))
    if problems:
        return 1
    return 2 if args.check_targets and not (fast and far) else 0


if __name__ == "__main__":
    raise SystemExit(main())

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

Both (1) and (2) start from the envelopes' JSON bytes, in one process under the cyclic collector thresholds a hub
runs with (GC_THRESHOLDS). Every run starts with the hub's function caches emptied.
The data is made by scripts/bench/pipeline_data.py; `python -m scripts.bench` runs run() with the other benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_pipeline.py` from a checkout
    sys.path.insert(0, str(REPO))

from exchange.dedup.claims import Claim, Warn  # noqa: E402
from exchange.dedup.merge import HubIdentity, merge  # noqa: E402
from exchange.ingest.processor import BATCH, GC_THRESHOLDS, ClaimPolicy, prepare  # noqa: E402
from exchange.policy.tlp import Tlp  # noqa: E402
from exchange.store.base import MergePolicy, Outcome  # noqa: E402
from scripts.bench import stats  # noqa: E402
from scripts.bench.machine import commit, machine, versions  # noqa: E402
from scripts.bench.pipeline_data import ENVELOPE, Dataset, claim_policy, generate  # noqa: E402
from scripts.bench.profile import cprofile  # noqa: E402

TARGET_RATE = 50_000  # indicators/s for (1), from issue #3
TARGET_RATIO = 25  # (1) / (2)
AUDIENCE = Tlp.GREEN  # the hub's default canonical_audience (schemas/config.schema.json)
HUB = HubIdentity("bench hub")


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


# --- measuring, for the command line and for the suite ------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    """The rates of every run: (1), (2) and (3), and what (1) spent in prepare()."""

    hub: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    # The same per CPU-second of this process: what another process on the machine does not move.
    hub_cpu: list[float] = field(default_factory=list)
    baseline_cpu: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    prepare_shares: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def measure(data: Dataset, policy: ClaimPolicy, runs: int, baseline_n: int, durable: bool) -> Measured:
    """(1), (2) and (3) back to back in each run, so that each run's ratio compares like with like."""
    import stix2  # noqa: F401  (its import stays out of the first baseline run)

    # Under the collector thresholds a hub runs with (app.serve), the baseline too: it gains as much from them.
    previous = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return _measure(data, policy, runs, baseline_n, durable)
    finally:
        gc.set_threshold(*previous)


def _measure(data: Dataset, policy: ClaimPolicy, runs: int, baseline_n: int, durable: bool) -> Measured:
    m = Measured()
    for run in range(1, runs + 1):
        fresh()
        cpu = time.process_time()
        h = run_hub(data, policy)
        m.hub_cpu.append(data.n / (time.process_time() - cpu))
        m.hub.append(data.n / h.seconds)
        m.prepare_shares.append(h.prepare_seconds / h.seconds)
        if h.rejected or h.claims != data.n or h.canonical != data.distinct:
            m.problems.append(f"run {run}: {h.rejected} rejected, {h.claims:,} claims, {h.canonical:,} canonical "
                              f"ids; expected 0, {data.n:,}, {data.distinct:,}")
        fresh()
        cpu = time.process_time()
        seconds, parsed, ids = run_baseline(data, baseline_n)
        m.baseline_cpu.append(parsed / (time.process_time() - cpu))
        m.baseline.append(parsed / seconds)
        line = (f"run {run}/{runs}: (1) {m.hub[-1]:,.0f} ind/s ({h.canonical:,} canonical, {h.published:,} "
                f"published to {AUDIENCE.label}; prepare {h.prepare_seconds:.2f} s, group+merge "
                f"{h.seconds - h.prepare_seconds:.2f} s)  (2) {m.baseline[-1]:,.0f} obj/s ({ids:,} distinct ids of "
                f"{parsed:,})")
        if durable:
            fresh()
            seconds, outcomes = run_durable(data, policy)
            m.durable.append(data.n / seconds)
            if outcomes[Outcome.REJECTED] or sum(outcomes.values()) != data.n:
                m.problems.append(f"run {run}: durable outcomes {dict(outcomes)}")
            line += f"  (3) {m.durable[-1]:,.0f} ind/s ({dict(outcomes)})"
        print(line, flush=True)
    return m


def run(size: int, runs: int, *, baseline_n: int | None = None, durable: bool = True, dup_rate: float = 0.3,
        peers: int = 10, seed: int = 1, profile_dir: Path | None = None) -> dict[str, Any]:
    """The suite's entry: N=size indicators, `runs` runs; with profile_dir, one more run of (1) under cProfile."""
    data = generate(size, peers, dup_rate, seed)
    policy = claim_policy(peers)
    baseline_n = min(baseline_n or size, size)
    m = measure(data, policy, runs, baseline_n, durable)
    figures = {"hub": stats.summary(m.hub, "indicators/s", "(1) hub: prepare + group + merge"),
               "baseline": stats.summary(m.baseline, "objects/s", "(2) stix2.parse + dedup by id")}
    if m.durable:
        figures["durable"] = stats.summary(m.durable, "indicators/s", "(3) hub durable: + SQLite, synchronous=FULL")
    figures["hub_cpu"] = stats.summary(m.hub_cpu, "indicators/CPU-s", "(1) hub, per CPU-second of the process")
    figures["baseline_cpu"] = stats.summary(m.baseline_cpu, "objects/CPU-s", "(2) baseline, per CPU-second")
    ratios = {"hub/baseline": stats.pair_ratios(m.hub, m.baseline, "(1) / (2)"),
              "hub/baseline cpu": stats.pair_ratios(m.hub_cpu, m.baseline_cpu, "(1) / (2), CPU time")}
    targets = [stats.target("(1) indicators/s", figures["hub"], ">=", TARGET_RATE, "#3"),
               stats.target("(1) / (2)", ratios["hub/baseline"], ">=", TARGET_RATIO, "#3")]
    profiles = {}
    if profile_dir is not None:
        fresh()
        _, profiles["pipeline-hub"] = cprofile(lambda: run_hub(data, policy), profile_dir / "pipeline-hub.prof")
    return stats.result("pipeline", "normalize + dedup: hub vs a stix2.parse baseline (one process)",
                        {"n": size, "runs": runs, "baseline_n": baseline_n, "dup_rate": dup_rate, "peers": peers,
                         "seed": seed, "durable": durable}, figures, ratios, targets, m.problems,
                        data={"n": data.n, "distinct": data.distinct, "duplicates": data.duplicates,
                              "kinds": data.kinds, "envelopes": len(data.envelopes)},
                        prepare_share=statistics.median(m.prepare_shares), profiles=profiles)


# --- command line -----------------------------------------------------------------------------------------------


def line(label: str, figure: dict[str, Any]) -> str:
    return (f"{label:<34}{figure['median']:>12,.0f}{figure['min']:>12,.0f}{figure['max']:>12,.0f}"
            f"{100 * figure['spread']:>9.1f}%  {figure['unit']}")


def legacy_machine() -> dict[str, Any]:
    info = machine()
    return {**info, "exchange": commit()["describe"], "versions": versions()}
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
    info = legacy_machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); {info['platform']}")
    print(f"python {info['python']}, gc thresholds {GC_THRESHOLDS} while measuring (the hub's; at start "
          f"{info['gc_thresholds']}); exchange {info['exchange']}; "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    t0 = time.perf_counter()
    data = generate(args.n, args.peers, args.dup_rate, args.seed)
    policy = claim_policy(args.peers, _warn(args.warninglists))
    print(f"data: {data.n:,} indicators from {data.peers} peers, {data.duplicates:,} re-sends "
          f"({100 * data.duplicates / data.n:.1f}%) of {data.distinct:,} distinct values "
          f"({', '.join(f'{k} {v:,}' for k, v in sorted(data.kinds.items()))}); {len(data.envelopes)} envelopes "
          f"of <= {ENVELOPE}; warninglists {'on' if args.warninglists else 'off'}; "
          f"made in {time.perf_counter() - t0:.1f} s", flush=True)
    m = measure(data, policy, args.runs, args.baseline_n, not args.no_durable)
    hub, base = stats.summary(m.hub, "indicators/s"), stats.summary(m.baseline, "objects/s")
    durable = stats.summary(m.durable, "indicators/s") if m.durable else None
    ratios = [h / b for h, b in zip(m.hub, m.baseline, strict=True)]
    ratio = hub["median"] / base["median"]
    print(f"\nnormalize+dedup of {data.n:,} indicators ({data.distinct:,} distinct), {args.runs} run(s), one process"
          f"\n{'':<34}{'median':>12}{'min':>12}{'max':>12}{'spread':>10}")
    print(line("(1) hub prepare + group + merge", hub))
    print(line("(2) stix2.parse + dedup by id", base))
    print(f"{'ratio (1)/(2)':<34}{ratio:>11,.1f}x{min(ratios):>11,.1f}x{max(ratios):>11,.1f}x"
          "   (medians; min and max of the runs' ratios)")
    if durable:
        print(line("(3) hub durable, SQLite FULL", durable))
    print(f"(1) spends {100 * statistics.median(m.prepare_shares):.0f}% in prepare(), the rest grouping and merging")
    fast, far = hub["median"] >= TARGET_RATE, ratio >= TARGET_RATIO
    print(f"targets: (1) >= {TARGET_RATE:,} indicators/s {'met' if fast else 'NOT met'}; "
          f">= {TARGET_RATIO}x the baseline {'met' if far else 'NOT met'}")
    for problem in m.problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if args.json:
        doc = {
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": info,
            "data": {"n": data.n, "peers": data.peers, "distinct": data.distinct, "duplicates": data.duplicates,
                     "kinds": data.kinds, "envelopes": len(data.envelopes)},
            "hub": hub | {"prepare_share": statistics.median(m.prepare_shares)},
            "baseline": base,
            "ratio": {"of_medians": ratio, "runs": ratios},
            "durable": durable,
            "targets": {"rate": TARGET_RATE, "ratio": TARGET_RATIO, "rate_met": fast, "ratio_met": far},
            "problems": m.problems,
        }
        args.json.write_text(json.dumps(doc, indent=2))
    if m.problems:
        return 1
    return 2 if args.check_targets and not (fast and far) else 0


if __name__ == "__main__":
    raise SystemExit(main())

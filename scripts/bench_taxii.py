"""Benchmark the hub's TAXII 2.1 ingest and read paths side by side with medallion (and OpenTAXII), then the hub
alone as the number of stored objects grows, with its peak resident memory.

Every server is a real subprocess on loopback (scripts/bench/taxii_servers.py), driven by taxii2-client, the test
suite's independent client. Ingest: first POST (500-object envelopes from 4 threads) until every status resource
says `complete`. Read: the whole collection paged back (limit 1000), every object exactly once.

    python scripts/bench_taxii.py                     # medallion vs hub at 4,000, then the hub at 10k, 100k, 1M
    python scripts/bench_taxii.py --quick             # medallion 200, hub 500 and 1,000
`python -m scripts.bench` runs run() and run_scaling() with the other benchmarks and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_taxii.py` from a checkout
    sys.path.insert(0, str(REPO))

from scripts.bench import stats  # noqa: E402
from scripts.bench.procfs import children, peak_rss_kib  # noqa: E402
from scripts.bench.profile import Sampler  # noqa: E402
from scripts.bench.taxii_phases import (  # noqa: E402
    RunResult,
    Settings,
    check_envelope_fits,
    describe_http_error,
    measure_ingest,
    measure_read,
)
from scripts.bench.taxii_servers import (  # noqa: E402
    Target,
    disk_bytes,
    hub_config,
    run_hub,
    run_medallion_target,
    run_opentaxii,
)

# Issue #2 names no figure for TAXII speed in this repository; the bar here is "not slower than medallion".
TARGET_RATIO = 1.0


def run_one(target: Target, n: int, s: Settings, sampler: Sampler | None = None, profile: str = "",
            read_budget: float | None = None) -> RunResult:
    """Ingest then read N objects on a fresh server; `profile` names the py-spy recordings of both phases."""
    result = RunResult(target=target.name, n=n)
    record = sampler.record if sampler and profile else (lambda *_: contextlib.nullcontext())
    try:
        check_envelope_fits(target, s)
        with record(f"{profile}-ingest", target.pid):
            measure_ingest(target, n, s, result)
        result.rss_after_ingest_kib = peak_rss_kib(target.pid)
        with record(f"{profile}-read", target.pid):
            measure_read(target, n, s, result, read_budget)
    except requests.HTTPError as exc:
        result.error = describe_http_error(exc)
    except Exception as exc:  # a failed run is reported in the table, the others still run
        result.error = f"{type(exc).__name__}: {exc}"
    result.peak_rss_kib = peak_rss_kib(target.pid)
    result.disk_bytes = disk_bytes(target.data_dir)
    result.children = len(children(target.pid))
    if result.error:  # the server's side of the story, before its temp dir goes away
        log = target.log_path.read_text(errors="replace")
        result.notes.append("server log tail:\n" + log[-1500:])
        if cause := first_exception(log):
            result.error += f" [server log: {cause}]"
    return result


def first_exception(log: str) -> str:
    """The first exception a server logged, from a traceback line or an inline repr (OpenTAXII's structlog)."""
    for line in log.splitlines():
        if m := re.match(r"\s*(\w+(?:Error|Exception): .*)", line):
            return m.group(1).strip()
        if m := re.search(r"(\w+(?:Error|Exception))\((['\"])(.+?)\2\)", line):
            return f"{m.group(1)}: {m.group(3)}"
    return ""


# --- one server, fresh for each run -------------------------------------------------------------------------------

SERVERS = ("medallion", "hub", "hub_full", "opentaxii")


@contextlib.contextmanager
def server(kind: str, workdir: Path, python: str, opentaxii_python: str | None) -> Iterator[Target]:
    if kind == "medallion":
        with run_medallion_target(workdir) as target:
            yield target
    elif kind == "opentaxii":
        assert opentaxii_python
        with run_opentaxii(workdir, opentaxii_python) as target:
            yield target
    else:
        config = hub_config(workdir, canonical=kind == "hub_full")
        with run_hub(workdir, python, config, name=kind) as target:
            yield target


def bench(kind: str, workdir: Path, n: int, s: Settings, *, python: str = sys.executable,
          opentaxii_python: str | None = None, sampler: Sampler | None = None, profile: str = "",
          read_budget: float | None = None) -> RunResult:
    label = f"{kind} N={n:,}"
    print(f"running {label} ...", file=sys.stderr, flush=True)
    try:
        with server(kind, workdir, python, opentaxii_python) as target:
            result = run_one(target, n, s, sampler, profile, read_budget)
    except RuntimeError as exc:  # did not start
        result = RunResult(target=kind, n=n, error=str(exc))
    if result.error:
        print(f"  FAILED: {result.error[:2000]}", *result.notes, sep="\n  ", file=sys.stderr, flush=True)
    else:
        print(f"  ingest {result.ingest_rate:,.0f} obj/s, read {result.read_rate:,.0f} obj/s"
              f"{' (' + result.read_stopped + ')' if result.read_stopped else ''}, peak RSS "
              f"{result.peak_rss_kib / 1024:,.0f} MiB", file=sys.stderr, flush=True)
    return result


# --- the suite's two entry points ---------------------------------------------------------------------------------


def _figures(results: dict[str, list[RunResult]]) -> dict[str, dict[str, Any]]:
    figures = {}
    for kind, runs in results.items():
        figures[f"ingest.{kind}"] = stats.summary([r.ingest_rate for r in runs], "objects/s", f"ingest, {kind}")
        figures[f"read.{kind}"] = stats.summary([r.read_rate for r in runs], "objects/s", f"read, {kind}")
        figures[f"rss.{kind}"] = stats.summary([r.peak_rss_kib / 1024 for r in runs if r.peak_rss_kib], "MiB",
                                               f"peak RSS, {kind}", higher_is_better=False)
    return figures


def run(size: int, runs: int, *, s: Settings | None = None, opentaxii_python: str | None = None,
        opentaxii_skipped: str = "", sampler: Sampler | None = None, python: str = sys.executable) -> dict[str, Any]:
    """Side by side at N=size: each run starts every server fresh, back to back, and ingests then reads N objects;
    ratios are run i of the hub over run i of the peer."""
    s = s or Settings()
    kinds = [k for k in SERVERS if k != "opentaxii" or opentaxii_python]
    results: dict[str, list[RunResult]] = {k: [] for k in kinds}
    skipped = {} if opentaxii_python else {"opentaxii": opentaxii_skipped or "no OpenTAXII interpreter given"}
    with tempfile.TemporaryDirectory(prefix="bench-taxii-") as tmp:
        for i in range(runs):
            for kind in [k for k in kinds if k not in skipped]:
                result = bench(kind, Path(tmp) / f"run{i}", size, s, python=python,
                               opentaxii_python=opentaxii_python, sampler=sampler)
                if kind == "opentaxii" and result.error:  # a peer that does not work is reported, not retried
                    skipped[kind] = f"failed: {result.error[:2500]}"
                    del results[kind]
                    continue
                results[kind].append(result)
    figures = _figures(results)
    ratios = {}
    for kind in ("hub", "hub_full"):
        for peer in ("medallion", "opentaxii"):
            if peer in results:
                for phase, rate in (("ingest", "ingest_rate"), ("read", "read_rate")):
                    ratios[f"{phase}.{kind}/{peer}"] = stats.pair_ratios(
                        [getattr(r, rate) for r in results[kind]], [getattr(r, rate) for r in results[peer]],
                        f"{phase}, {kind} / {peer}")
    targets = [stats.target(f"{phase}: hub (TAXII store) / medallion", ratios[f"{phase}.hub/medallion"], ">=",
                            TARGET_RATIO, "#2 (no figure named; bar: not slower than medallion)")
               for phase in ("ingest", "read")]
    problems = [f"{r.target} run {i + 1}: {r.error[:1500]}" for rs in results.values() for i, r in enumerate(rs)
                if r.error]
    return stats.result("taxii", "TAXII 2.1 ingest and read: hub vs medallion (and OpenTAXII)",
                        {"n": size, "runs": runs, **asdict(s)}, figures, ratios, targets, problems,
                        runs_detail={k: [r.as_json() for r in rs] for k, rs in results.items()}, skipped=skipped)


# --- the command line's tables --------------------------------------------------------------------------------------


def fmt(value: float, spec: str = ",.0f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def print_comparison(peer: RunResult, hub: RunResult) -> None:
    print(f"\nhub vs {peer.target} at N={hub.n:,}")
    print(f"{'':<16}{peer.target:>14}{'hub':>14}{'hub/' + peer.target:>18}")
    for label, m, h in (("ingest obj/s", peer.ingest_rate, hub.ingest_rate), ("read obj/s", peer.read_rate,
                                                                              hub.read_rate)):
        print(f"{label:<16}{fmt(m):>14}{fmt(h):>14}{fmt(h / m, ',.1f') + 'x':>18}")
    print(f"{'peak RSS MiB':<16}{peer.peak_rss_kib / 1024:>14,.0f}{hub.peak_rss_kib / 1024:>14,.0f}")
    for r in (peer, hub):
        if r.error:
            print(f"{r.target} FAILED: {r.error[:300]}")


def print_scaling(runs: list[RunResult]) -> None:
    print("\nhub alone (x smallest = per-object cost relative to the smallest size)")
    print(f"{'N':>10}{'ingest/s':>11}{'µs/obj':>9}{'x small':>9}{'read/s':>11}{'µs/obj':>9}{'x small':>9}"
          f"{'peak RSS MiB':>14}")
    ok = [r for r in runs if not r.error]
    for r in runs:
        if r.error:
            print(f"{r.n:>10,}  FAILED: {r.error[:200]}")
            continue
        ing_us, read_us = 1e6 * r.ingest_seconds / r.n, 1e6 * r.read_seconds / r.n
        ing_x = ing_us / (1e6 * ok[0].ingest_seconds / ok[0].n)
        read_x = read_us / (1e6 * ok[0].read_seconds / ok[0].n)
        print(f"{r.n:>10,}{r.ingest_rate:>11,.0f}{ing_us:>9.1f}{ing_x:>9.2f}{r.read_rate:>11,.0f}{read_us:>9.1f}"
              f"{read_x:>9.2f}{r.peak_rss_kib / 1024:>14,.0f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000", help="hub-only sizes, comma separated")
    p.add_argument("--medallion-n", type=int, default=4000, help="N for the medallion vs hub comparison")
    p.add_argument("--quick", action="store_true", help="smoke test: medallion 200, hub 500,1000")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=500, help="objects per POSTed envelope")
    p.add_argument("--threads", type=int, default=4, help="concurrent posting threads")
    p.add_argument("--page", type=int, default=1000, help="limit per GET objects page")
    p.add_argument("--http-timeout", type=float, default=600.0, help="seconds per HTTP call")
    p.add_argument("--status-timeout", type=float, default=1800.0, help="seconds for all statuses")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the hub")
    p.add_argument("--opentaxii-python", default=os.environ.get("EXCHANGE_BENCH_OPENTAXII"),
                   help="OpenTAXII's interpreter (its own venv), to compare it too; default $EXCHANGE_BENCH_OPENTAXII")
    p.add_argument("--skip-medallion", action="store_true")
    p.add_argument("--pipeline", choices=["taxii", "full"], default="taxii",
                   help="hub config for the scaling runs: TAXII store only, or with the canonical merge")
    args = p.parse_args(argv)
    if args.quick:
        args.medallion_n, args.sizes = 200, "500,1000"
    args.size_list = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings(seed=args.seed, batch=args.batch, threads=args.threads, page=args.page,
                 http_timeout=args.http_timeout, status_timeout=args.status_timeout)
    # SIGTERM must unwind through the context managers so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    side: dict[str, RunResult] = {}
    with tempfile.TemporaryDirectory(prefix="bench-taxii-") as tmp:
        workdir = Path(tmp)

        def at(kind: str, n: int) -> RunResult:
            return bench(kind, workdir, n, s, python=args.python, opentaxii_python=args.opentaxii_python)

        if not args.skip_medallion:
            side = {k: at(k, args.medallion_n) for k in SERVERS if k != "opentaxii" or args.opentaxii_python}
        scaling = [at("hub_full" if args.pipeline == "full" else "hub", n) for n in args.size_list]
    for kind, label in (("hub", "'taxii': the hub as a TAXII store, like medallion (journal, store, audit)"),
                        ("hub_full", "'full': plus normalization, claims and the canonical merge (issue #3)")):
        if kind in side:
            print(f"\n{label}")
            for peer in ("medallion", "opentaxii"):
                if peer in side:
                    print_comparison(side[peer], side[kind])
    print(f"\nscaling runs use the '{args.pipeline}' pipeline")
    print_scaling(scaling)
    if args.json:
        doc = {"settings": asdict(s), "cpus": os.cpu_count(),
               "comparison": {k: r.as_json() for k, r in side.items()} or None, "pipeline": args.pipeline,
               "scaling": [r.as_json() for r in scaling]}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 1 if any(r.error for r in (*side.values(), *scaling)) else 0


if __name__ == "__main__":
    raise SystemExit(main())

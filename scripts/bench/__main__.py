"""One command for every benchmark, side by side with its baselines, into results.json and report.md with plots:

    python -m scripts.bench                       # everything, full sizes (about half an hour on 2 cores)
    python -m scripts.bench --quick --runs 1      # tiny sizes: checks that every benchmark still works
    python -m scripts.bench --only taxii,pipeline --runs 5 --out /tmp/bench --profile
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.bench import plots, report
from scripts.bench.machine import REPO, commit, machine, versions
from scripts.bench.profile import Sampler
from scripts.bench.suite import BENCHMARKS, FULL, ORDER, QUICK, Context


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    p.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "bench-results", help="output directory (default bench-results/)")
    p.add_argument("--profile", action="store_true",
                   help="also profile each benchmark's hottest path (py-spy on server processes, cProfile in process)")
    p.add_argument("--opentaxii-python", help="OpenTAXII's interpreter; default $EXCHANGE_BENCH_OPENTAXII")
    p.add_argument("--check-targets", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--report-from", type=Path, metavar="RESULTS_JSON",
                   help="run nothing: redraw the plots and report.md of an earlier run, beside its results.json")
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(args.names) - set(ORDER)
    if unknown or not args.names or args.runs < 1:
        p.error(f"--only takes {','.join(ORDER)} (got {sorted(unknown) or 'nothing'}); --runs must be >= 1")
    return args


def write(doc: dict[str, Any], out: Path, final: bool) -> None:
    """results.json after every benchmark (a run that dies keeps what it measured); plots and report.md at the end."""
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if final:
        drawn, note = plots.draw(doc["benchmarks"], out)
        doc["plots"] = drawn
        (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (out / "report.md").write_text(report.render(doc, drawn, note))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_from:
        write(json.loads(args.report_from.read_text()), args.report_from.parent, final=True)
        print(f"wrote {args.report_from.parent / 'report.md'}")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so no server outlives the suite
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    profile_dir = out / "profiles" if args.profile else None
    sampler = Sampler(profile_dir)
    context = Context(plan=QUICK if args.quick else FULL, runs=args.runs, sampler=sampler, profile_dir=profile_dir,
                      opentaxii_python=args.opentaxii_python)
    started = time.monotonic()
    argv_shown = sys.argv[1:] if argv is None else argv
    doc: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "scripts.bench", *argv_shown]),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "duration_s": 0.0, "runs": args.runs,
        "quick": args.quick, "machine": machine(), "versions": versions(), "commit": commit(), "benchmarks": {},
    }
    if args.profile and not sampler.enabled:
        print("note: py-spy not found; server processes are not profiled", file=sys.stderr)
    for name in [n for n in ORDER if n in args.names]:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        before = set(sampler.profiles)
        try:
            res = BENCHMARKS[name](context)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            res = {"name": name, "title": name, "error": traceback.format_exc(), "problems": [repr(exc)],
                   "figures": {}, "targets": []}
        res.setdefault("profiles", {}).update({k: v for k, v in sampler.profiles.items() if k not in before})
        res["seconds"] = time.monotonic() - t0
        # Other work on the machine moves whole-process figures; the report shows how busy it was.
        res["load_average_after"] = os.getloadavg()
        doc["benchmarks"][name] = res
        doc["duration_s"] = time.monotonic() - started
        write(doc, out, final=False)
    doc["commit_at_start"], doc["commit"] = doc["commit"], commit()  # the tree may change while the suite runs
    doc["profile_errors"] = sampler.errors
    write(doc, out, final=True)
    print(f"\nwrote {out / 'results.json'} and {out / 'report.md'} in {doc['duration_s'] / 60:.1f} min")
    problems = [f"{n}: {p}" for n, r in doc["benchmarks"].items() for p in r.get("problems", [])]
    missed = [f"{n}: {t['label']}" for n, r in doc["benchmarks"].items() for t in r.get("targets", []) if not t["met"]]
    for line in problems:
        print(f"PROBLEM {line[:500]}", file=sys.stderr)
    for line in missed:
        print(f"target missed: {line}")
    if problems:
        return 1
    return 2 if args.check_targets and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

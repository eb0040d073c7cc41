"""Scaling curves: the hub's TAXII ingest and read at 10k, 100k and 1M stored objects, with its peak resident
memory at each size, and medallion where it finishes in minutes (its read is quadratic: a read budget stops it)."""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from scripts.bench import stats
from scripts.bench.profile import Sampler
from scripts.bench.taxii_phases import RunResult, Settings
from scripts.bench_taxii import bench

LINEAR = 1.25  # per-object cost at the largest size over the smallest: "linear" allowing for a noisy machine


def _point(server: str, n: int, runs: list[RunResult]) -> dict[str, Any]:
    ok = [r for r in runs if not r.error]
    return {
        "server": server, "n": n, "runs": len(runs), "errors": [r.error[:1500] for r in runs if r.error],
        "ingest": stats.summary([r.ingest_rate for r in ok], "objects/s", f"ingest, {server} at {n:,}"),
        "read": stats.summary([r.read_rate for r in ok], "objects/s", f"read, {server} at {n:,}"),
        "ingest_seconds": [r.ingest_seconds for r in ok], "read_seconds": [r.read_seconds for r in ok],
        # The client's CPU-seconds per second of each phase (1.0 = the client saturated a core).
        "client_busy": {"ingest": [r.ingest_client_cpu_s / r.ingest_seconds for r in ok],
                        "read": [r.read_client_cpu_s / r.read_seconds for r in ok if r.read_seconds]},
        "rss_mib": stats.summary([r.peak_rss_kib / 1024 for r in ok], "MiB", f"peak RSS, {server} at {n:,}",
                                 higher_is_better=False),
        "rss_after_ingest_mib": [r.rss_after_ingest_kib / 1024 for r in ok],
        "disk_mib": [r.disk_bytes / 2**20 for r in ok], "children": max((r.children for r in ok), default=0),
        "read_stopped": next((r.read_stopped for r in ok if r.read_stopped), ""),
    }


def _growth(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-object cost and memory at the largest size relative to the smallest, for the hub."""
    hub = sorted((p for p in points if p["server"] == "hub" and p["ingest"]["median"]), key=lambda p: p["n"])
    if len(hub) < 2:
        return {}
    small, large = hub[0], hub[-1]

    def cost(p: dict[str, Any], phase: str) -> float:
        return 1e6 / p[phase]["median"] if p[phase]["median"] else math.nan  # µs per object

    return {"from": small["n"], "to": large["n"], "objects_x": large["n"] / small["n"],
            "ingest_cost_x": cost(large, "ingest") / cost(small, "ingest"),
            "read_cost_x": cost(large, "read") / cost(small, "read"),
            "rss_x": large["rss_mib"]["median"] / small["rss_mib"]["median"]}


def medallion_projection(points: list[dict[str, Any]], sizes: list[int], page: int) -> str:
    """Why medallion stops where it does: its measured seconds per page at the largest size it read whole, and
    what a whole read would take at the sizes it was not run at (a lower bound: its cost grows faster still)."""
    med = [p for p in points if p["server"] == "medallion"]
    whole = [p for p in med if p["read"]["median"] and not p["read_stopped"]]
    if not whole:
        return ""
    last = max(whole, key=lambda p: p["n"])
    per_page = page / last["read"]["median"]
    text = (f"medallion reads {last['n']:,} stored objects at {last['read']['median']:,.1f} objects/s: "
            f"{per_page:,.0f} s per {page:,}-object page")
    # Each page walks the whole collection: it costs ~N/n times more, and there are N/n times more pages.
    largest = max(p["n"] for p in med)
    guesses = [f"{per_page * (n / last['n']) * math.ceil(n / page) / 3600:,.0f} hours at {n:,}"
               for n in sizes if n > largest]
    if guesses:
        text += (f". It was not run above {largest:,}: at that quadratic trend a whole read would take at least "
                 + " and ".join(guesses))
    return text


def run(sizes: list[int], runs: int, *, medallion_sizes: list[int], medallion_read_budget: float,
        once_from: int = 1_000_000, s: Settings | None = None, sampler: Sampler | None = None,
        profile_sizes: tuple[int, ...] = (), python: str = sys.executable) -> dict[str, Any]:
    """The hub (TAXII store configuration) fresh at each size, `runs` times below `once_from` and once from there
    on; medallion once at each of medallion_sizes, its read stopped after medallion_read_budget seconds."""
    s = s or Settings(status_timeout=4 * 3600)
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        for n in sorted(sizes):
            results = []
            profiled = bool(sampler and sampler.enabled and n in profile_sizes)
            for i in range(runs if n < once_from else 1):
                # A size run once is profiled in that run (py-spy samples without stopping the hub); smaller ones
                # get one more run, profiled and not measured.
                profile = f"taxii-hub-{n}" if profiled and n >= once_from else ""
                results.append(bench("hub", Path(tmp) / f"hub-{n}-{i}", n, s, python=python, sampler=sampler,
                                     profile=profile))
            points.append(_point("hub", n, results))
            if profiled and n < once_from:
                bench("hub", Path(tmp) / f"hub-{n}-profile", n, s, python=python, sampler=sampler,
                      profile=f"taxii-hub-{n}")
        for n in sorted(medallion_sizes):
            result = bench("medallion", Path(tmp) / f"medallion-{n}", n, s, read_budget=medallion_read_budget)
            points.append(_point("medallion", n, [result]))
    figures = {}
    for p in points:
        for key in ("ingest", "read", "rss_mib"):
            if p[key]["median"] is not None:  # a read stopped by its budget has a note instead
                figures[f"{key.removesuffix('_mib')}.{p['server']}@{p['n']}"] = p[key]
    growth = _growth(points)
    targets = []
    if growth:
        for phase in ("ingest", "read"):
            targets.append(stats.target(
                f"{phase}: cost per object at {growth['to']:,} over {growth['from']:,} (1 = linear)",
                {"median": growth[f"{phase}_cost_x"]}, "<=", LINEAR, "#7"))
        targets.append(stats.target(f"peak RSS at {growth['to']:,} over {growth['from']:,} (linear = the objects' "
                                    f"{growth['objects_x']:,.0f}x)", {"median": growth["rss_x"]}, "<=",
                                    growth["objects_x"], "#7"))
    notes = [note for note in (medallion_projection(points, sorted({*sizes, *medallion_sizes}), s.page),) if note]
    notes += [f"medallion at {p['n']:,}: read {p['read_stopped']}" for p in points if p["read_stopped"]]
    notes += [f"{p['server']} at {p['n']:,}: ran once, {p['ingest_seconds'][0] / 60:,.1f} min ingest and "
              f"{p['read_seconds'][0] / 60:,.1f} min read" for p in points
              if p["n"] >= once_from and p["ingest_seconds"]]
    problems = [f"{p['server']} at {p['n']:,}: {e}" for p in points for e in p["errors"]]
    return stats.result("scaling", "Scaling: the hub's TAXII ingest and read at growing sizes, with peak RSS",
                        {"sizes": sorted(sizes), "runs": runs, "once_from": once_from,
                         "medallion_sizes": sorted(medallion_sizes), "medallion_read_budget_s": medallion_read_budget,
                         "batch": s.batch, "threads": s.threads, "page": s.page}, figures, {}, targets, problems,
                        notes, points=points, growth=growth)

"""Figures over several runs: median and spread, ratios taken run by run, and targets met or missed."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: p99 of 1,000 values is the 990th smallest."""
    ordered = sorted(values)
    rank = math.ceil(share * len(ordered))  # 1-based
    return ordered[min(len(ordered), max(rank, 1)) - 1]


def summary(values: Sequence[float], unit: str, label: str = "", *, higher_is_better: bool = True) -> dict[str, Any]:
    """Every run's figure with its median, min, max and interquartile range; spread = (max - min) / median."""
    runs = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not runs:
        return {"label": label, "unit": unit, "runs": [], "median": None, "min": None, "max": None, "q1": None,
                "q3": None, "spread": None, "higher_is_better": higher_is_better}
    median = statistics.median(runs)
    q1, _, q3 = statistics.quantiles(runs, n=4, method="inclusive") if len(runs) > 1 else (runs[0],) * 3
    return {"label": label, "unit": unit, "runs": runs, "median": median, "min": min(runs), "max": max(runs),
            "q1": q1, "q3": q3, "spread": (max(runs) - min(runs)) / median if median else 0.0,
            "higher_is_better": higher_is_better}


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float], label: str) -> dict[str, Any]:
    """Run i of one side over run i of the other, then the median of those ratios: the two sides of a pair ran
    back to back, so load that comes and goes on the machine (2 cores, shared) touches both alike."""
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)
              if n is not None and d is not None and not math.isnan(n) and not math.isnan(d) and d]
    return summary(ratios, "x", label)


def target(label: str, figure: dict[str, Any], op: str, value: float, issue: str) -> dict[str, Any]:
    """A target of an issue against a figure's median (op `>=`, `<` or `<=`): met or not, and the margin: measured /
    wanted for `>=`, wanted / measured otherwise, so that above 1 is met and 0.8 is 20% short."""
    measured = figure.get("median")
    if measured is None:
        return {"label": label, "issue": issue, "op": op, "value": value, "measured": None, "met": False,
                "margin": None}
    met = {">=": measured >= value, "<": measured < value, "<=": measured <= value}[op]
    margin = measured / value if op == ">=" else (value / measured if measured else math.inf)
    return {"label": label, "issue": issue, "op": op, "value": value, "measured": measured, "met": met,
            "margin": margin}


def result(name: str, title: str, settings: dict[str, Any], figures: dict[str, dict[str, Any]],
           ratios: dict[str, dict[str, Any]] | None = None, targets: list[dict[str, Any]] | None = None,
           problems: list[str] | None = None, notes: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """One benchmark's entry in results.json; every benchmark's run() returns this shape."""
    return {"name": name, "title": title, "settings": settings, "figures": figures, "ratios": ratios or {},
            "targets": targets or [], "problems": problems or [], "notes": notes or [], **extra}

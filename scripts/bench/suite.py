"""What `python -m scripts.bench` runs: each benchmark's sizes for a full run and a --quick one, and how to call it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.bench.profile import Sampler

ORDER = ("taxii", "scaling", "pipeline", "federation", "fanout")
OPENTAXII_ENV = "EXCHANGE_BENCH_OPENTAXII"


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes for one suite run."""

    taxii_n: int
    scaling_sizes: tuple[int, ...]
    scaling_medallion: tuple[int, ...]
    medallion_read_budget: float  # seconds; medallion's read is quadratic
    pipeline_n: int
    pipeline_baseline_n: int  # stix2.parse's rate does not depend on N: a sample keeps each run short
    federation_n: int
    federation_pair_n: int
    fanout_subscribers: int
    fanout_burst: int
    fanout_burst_rounds: int


FULL = Plan(taxii_n=2_000, scaling_sizes=(10_000, 100_000, 1_000_000), scaling_medallion=(2_000, 10_000),
            medallion_read_budget=300.0, pipeline_n=100_000, pipeline_baseline_n=10_000, federation_n=20_000,
            federation_pair_n=2_000, fanout_subscribers=1_000, fanout_burst=20, fanout_burst_rounds=3)
QUICK = Plan(taxii_n=100, scaling_sizes=(200, 600), scaling_medallion=(200,), medallion_read_budget=30.0,
             pipeline_n=1_000, pipeline_baseline_n=200, federation_n=200, federation_pair_n=200,
             fanout_subscribers=10, fanout_burst=2, fanout_burst_rounds=1)


@dataclass(frozen=True, slots=True)
class Context:
    plan: Plan
    runs: int
    sampler: Sampler
    profile_dir: Path | None
    opentaxii_python: str | None


def opentaxii_python(given: str | None) -> tuple[str | None, str]:
    """OpenTAXII's interpreter (its own venv), or why it is skipped."""
    python = given or os.environ.get(OPENTAXII_ENV)
    if not python:
        return None, (f"not run: set {OPENTAXII_ENV} (or --opentaxii-python) to the python of a venv where "
                      "`pip install opentaxii` was run")
    if not Path(python).exists():
        return None, f"not run: {python} does not exist"
    return python, ""


def _taxii(c: Context) -> dict[str, Any]:
    from scripts import bench_taxii

    python, why = opentaxii_python(c.opentaxii_python)
    return bench_taxii.run(c.plan.taxii_n, c.runs, opentaxii_python=python, opentaxii_skipped=why)


def _scaling(c: Context) -> dict[str, Any]:
    from scripts.bench import scaling

    sizes = list(c.plan.scaling_sizes)
    return scaling.run(sizes, c.runs, medallion_sizes=list(c.plan.scaling_medallion),
                       medallion_read_budget=c.plan.medallion_read_budget, sampler=c.sampler,
                       profile_sizes=tuple(sizes[1:]))


def _pipeline(c: Context) -> dict[str, Any]:
    from scripts import bench_pipeline

    return bench_pipeline.run(c.plan.pipeline_n, c.runs, baseline_n=c.plan.pipeline_baseline_n,
                              profile_dir=c.profile_dir)


def _federation(c: Context) -> dict[str, Any]:
    from scripts import bench_federation

    return bench_federation.run(c.plan.federation_n, c.runs, pair_n=c.plan.federation_pair_n, sampler=c.sampler)


def _fanout(c: Context) -> dict[str, Any]:
    from scripts import bench_fanout

    # Each latency round is one run of the whole path; a few more than --runs, as p99 moves with the machine.
    return bench_fanout.run(c.plan.fanout_subscribers, max(c.runs, 2 * c.runs + 1), burst=c.plan.fanout_burst,
                            burst_rounds=c.plan.fanout_burst_rounds, sampler=c.sampler)


BENCHMARKS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "taxii": _taxii, "scaling": _scaling, "pipeline": _pipeline, "federation": _federation, "fanout": _fanout}

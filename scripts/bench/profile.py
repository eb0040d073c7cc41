"""Where the time goes: py-spy sampling a server process during one phase, cProfile for in-process benchmarks, and
both boiled down to their top frames for the report."""

from __future__ import annotations

import contextlib
import cProfile
import json
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
TOP = 12
# Inclusive time is listed for the hub's own functions only (the event loop and the entry points hold ~all of it).
OWN_CODE = "exchange/"
ENTRY_POINTS = ("exchange/cli.py", "exchange/__main__.py")


def own_code(label: str) -> bool:
    return OWN_CODE in label and not any(entry in label for entry in ENTRY_POINTS)


def short(file: str) -> str:
    """A frame's file as a reader knows it: from the package on, not the venv's path."""
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1].removeprefix(".11/")
    return file.rsplit("/", 3)[-1] if file.count("/") > 3 else file


def summarize_speedscope(path: Path, top: int = TOP) -> dict[str, Any]:
    """Self (leaf) shares of the sampled busy time per function over every thread, inclusive shares of the hub's own
    functions, and the threads' shares. py-spy weighs each sample in seconds (1 / rate)."""
    doc = json.loads(path.read_text())
    # py-spy makes one frame per (function, line): sum a function's lines into one row.
    names = [f"{f['name']} ({short(f.get('file') or '?')})" for f in doc["shared"]["frames"]]
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0.0
    for prof in doc["profiles"]:
        weights = prof.get("weights") or [1] * len(prof["samples"])
        thread = prof["name"].split('"')[1] if '"' in prof["name"] else prof["name"]
        for stack, weight in zip(prof["samples"], weights, strict=False):
            if not stack:
                continue
            total += weight
            threads[thread or "main"] += weight
            leaf[names[stack[-1]]] += weight  # speedscope stacks run from the root to the leaf
            for name in {names[index] for index in stack}:
                inclusive[name] += weight

    def shares(counter: Counter[str], keep: Callable[[str], bool] = bool) -> list[dict[str, Any]]:
        rows = [{"frame": k, "share": v / total} for k, v in counter.most_common() if keep(k)] if total else []
        return rows[:top]

    return {"file": path.name, "sampled_seconds": total, "threads": shares(threads), "self": shares(leaf),
            "inclusive": shares(inclusive, own_code)}


class Sampler:
    """py-spy record on a server process while a benchmark phase runs (off when out_dir is None or py-spy is
    missing); the summaries collect in `profiles` by phase name."""

    def __init__(self, out_dir: Path | None, rate: int = 100) -> None:
        self.out_dir = out_dir
        self.rate = rate
        self.py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        self.profiles: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        return self.out_dir is not None and self.py_spy is not None

    @contextlib.contextmanager
    def record(self, name: str, pid: int) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        assert self.out_dir is not None and self.py_spy is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.speedscope.json"
        log = self.out_dir / f"{name}.py-spy.log"
        with log.open("wb") as out:
            # --nonblocking: sample without pausing the process, so the profile costs it (almost) nothing.
            proc = subprocess.Popen([self.py_spy, "record", "--pid", str(pid), "--rate", str(self.rate),
                                     "--format", "speedscope", "--output", str(path), "--nonblocking"],
                                    stdout=out, stderr=subprocess.STDOUT)
        time.sleep(0.5)  # attaching takes a moment; the phase should not start unobserved
        started = time.monotonic()
        try:
            yield
        finally:
            wall = time.monotonic() - started
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on ^C
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if path.exists():
                self.profiles[name] = summarize_speedscope(path) | {"wall_seconds": wall}
            else:
                self.errors[name] = log.read_text(errors="replace")[-500:]


def cprofile(fn: Callable[[], T], out: Path | None, top: int = TOP) -> tuple[T, dict[str, Any]]:
    """Run fn under cProfile; its result and the functions with the most own time (and cumulative time)."""
    profiler = cProfile.Profile()
    value = profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        stats.dump_stats(out)
    total = stats.total_tt or 1.0  # type: ignore[attr-defined]
    rows = stats.stats  # type: ignore[attr-defined]

    def label(func: tuple[str, int, str]) -> str:
        file, line, name = func
        return f"{name} ({short(file)}:{line})" if line else name

    by_self = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    by_cum = [kv for kv in sorted(rows.items(), key=lambda kv: kv[1][3], reverse=True) if own_code(label(kv[0]))]
    return value, {"file": out.name if out else None, "seconds": total,
                   "self": [{"frame": label(f), "share": s[2] / total, "calls": s[1]} for f, s in by_self],
                   "inclusive": [{"frame": label(f), "share": min(1.0, s[3] / total)} for f, s in by_cum[:top]]}

"""Smoke test of the benchmark suite: `python -m scripts.bench --quick` runs every benchmark at a tiny size, end to
end, and writes results.json and report.md with its plots; the old per-benchmark commands still start."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = ("taxii", "scaling", "pipeline", "federation", "fanout")


def numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_every_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "scripts.bench", "--quick", "--runs", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["command"].startswith("python -m scripts.bench --quick")
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["memory_gib"] and doc["machine"]["cpu"]
    assert doc["versions"]["aiohttp"] != "-" and doc["versions"]["medallion"] != "-" and doc["commit"]["commit"]
    assert sorted(doc["benchmarks"]) == sorted(BENCHMARKS)
    for name, res in doc["benchmarks"].items():
        assert "error" not in res and res["problems"] == [], (name, res.get("error"), res["problems"])
        assert res["figures"], name
        for key, figure in res["figures"].items():
            assert figure["runs"] and all(numeric(v) for v in figure["runs"]), (name, key, figure)
            assert figure["min"] <= figure["median"] <= figure["max"], (name, key)
        for key, ratio in res["ratios"].items():
            assert ratio["runs"] and all(numeric(v) for v in ratio["runs"]), (name, key, ratio)
        for target in res["targets"]:
            assert isinstance(target["met"], bool) and numeric(target["measured"]), (name, target)
    assert {"ingest.hub/medallion", "read.hub/medallion"} <= set(doc["benchmarks"]["taxii"]["ratios"])
    assert "hub/baseline" in doc["benchmarks"]["pipeline"]["ratios"]
    assert {"p50", "p99"} <= set(doc["benchmarks"]["fanout"]["figures"])
    assert {p["server"] for p in doc["benchmarks"]["scaling"]["points"]} == {"hub", "medallion"}
    assert all(p["rss_mib"]["median"] > 10 for p in doc["benchmarks"]["scaling"]["points"])  # VmHWM was read

    report = (out / "report.md").read_text()
    for res in doc["benchmarks"].values():
        assert res["title"] in report
    if importlib.util.find_spec("matplotlib") is None:
        assert "no plots: matplotlib is not installed" in report
        return
    pngs = [png for names in doc["plots"].values() for png in names]
    assert set(doc["plots"]) >= {*BENCHMARKS, "ratios"} and len(pngs) >= len(BENCHMARKS) + 1
    for png in pngs:
        assert f"]({png})" in report, png  # referenced relatively: the directory is self-contained
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


@pytest.mark.parametrize("script", ["bench_taxii.py", "bench_pipeline.py", "bench_federation.py", "bench_fanout.py"])
def test_each_benchmark_script_still_starts_on_its_own(script: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / script), "--help"], cwd=REPO / "scripts",
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_bench_pipeline_quick_prints_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_pipeline.py"), "--quick", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("machine:", "(1) hub prepare + group + merge", "(2) stix2.parse + dedup by id", "ratio (1)/(2)",
                   "(3) hub durable, SQLite FULL", "indicators/s", "objects/s", "targets:"):
        assert figure in proc.stdout, f"{figure!r} missing from:\n{proc.stdout}"
    doc = json.loads(out.read_text())
    assert doc["data"] == {**doc["data"], "n": 2_000, "distinct": 1_400, "duplicates": 600}
    assert doc["hub"]["median"] > 0 and doc["baseline"]["median"] > 0 and doc["durable"]["median"] > 0
    assert doc["ratio"]["of_medians"] == doc["hub"]["median"] / doc["baseline"]["median"]
    assert doc["problems"] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's per-process CPU clock and /proc")
def test_a_servers_cpu_time_is_read_finer_than_a_clock_tick() -> None:
    # bench_fanout charges the hub's CPU per alert; a small alert costs less than /proc's 10 ms tick.
    from scripts.bench.procfs import cpu_seconds

    busy = subprocess.Popen([sys.executable, "-c", "import sys, time\nend = time.process_time() + 0.013\n"
                             "while time.process_time() < end: pass\nprint(flush=True)\nsys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline() == "\n"  # it has spent its 13 ms
        spent = cpu_seconds(busy.pid)
        assert 0.013 <= spent < 5
        assert spent * 1000 % 10 != 0  # not a whole number of ticks: nanoseconds
    finally:
        busy.kill()
        busy.wait()
    assert cpu_seconds(busy.pid) == 0.0  # gone

"""Smoke test of scripts/bench_pipeline.py: it runs at a tiny size and prints (and writes) its figures."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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


def test_bench_fanout_smoke_delivers_every_alert_and_prints_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_fanout.py"), "--smoke", "--receivers", "2", "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("machine:", "cold round", "p50", "p99", "last subscriber", "alert versions", "deliveries/s",
                   "target: p99 < 250 ms"):
        assert figure in proc.stdout, f"{figure!r} missing from:\n{proc.stdout}"
    doc = json.loads(out.read_text())
    assert doc["problems"] == []  # every subscriber got each alert once, signed
    assert doc["settings"]["subscribers"] == 20 and len(doc["latency"]["p99"]["runs"]) == 2
    latency = doc["latency"]
    assert 0 < latency["p50"]["median"] <= latency["p99"]["median"] <= latency["last"]["median"]
    assert doc["throughput"]["alert_versions"]["median"] > 0

"""Where the figures come from: the machine, the versions of everything measured, the exact commit."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("exchange", "aiohttp", "orjson", "msgpack", "stix2", "stix2-patterns", "antlr4-python3-runtime",
            "medallion", "flask", "taxii2-client", "requests", "matplotlib", "py-spy")


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "-"
    return out.stdout.strip() or "-"


def commit() -> dict[str, Any]:
    """The commit measured, and whether the work tree differed from it (the files that did)."""
    changed = [line for line in _git("diff", "--name-only", "HEAD").splitlines() if line and line != "-"]
    return {"commit": _git("rev-parse", "HEAD"), "describe": _git("describe", "--always", "--dirty"),
            "dirty_files": changed}


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def machine() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable, "memory_gib": _memory_gib(),
        "os": _os_name(), "platform": platform.platform(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "gc_thresholds": gc.get_threshold(), "load_average_at_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{dist: version(dist) for dist in PACKAGES}}

"""What Linux's /proc says about a benchmarked server process: peak resident memory and CPU time."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def peak_rss_kib(pid: int) -> int:
    """VmHWM (the peak resident set since the process started) in KiB; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far; 0.0 where it cannot be read. Unlike a
    latency, it does not depend on what else the machine is running."""
    try:
        # The process's POSIX CPU-time clock, to the nanosecond: /proc's utime and stime count 10 ms ticks, and a
        # small alert costs less than one.
        return time.clock_gettime(_process_cpu_clock(pid))
    except (OSError, OverflowError):
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5) 14, 15)


def _process_cpu_clock(pid: int) -> int:
    # What clock_getcpuclockid(3) returns on Linux: ~pid << 3 | CPUCLOCK_SCHED (include/linux/posix-timers.h).
    if not sys.platform.startswith("linux"):
        raise OSError("a process's CPU clock id is only known on Linux")
    return (~pid << 3) | 2


def children(pid: int) -> list[int]:
    """The direct children of a process (a hub that forked workers would hold memory outside its own VmHWM)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []

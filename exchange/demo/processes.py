"""The processes `exchange demo` starts (hubs, medallion): each in its own process group, stopped with SIGTERM
then SIGKILL, whatever way the demo ends."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp

from exchange.errors import ExchangeError

STOP_GRACE = 5.0  # seconds a hub gets to drain (cancel its tasks, close its databases) after SIGTERM
# On Linux a child can ask the kernel for a signal when its parent dies, so even a SIGKILLed demo leaves no
# hub behind. Set between fork and exec by a tiny launcher rather than preexec_fn, which may deadlock in a
# process that has threads (the demo converts feeds in worker threads while it starts processes).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before prctl took effect
    "    sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    proc: "subprocess.Popen[bytes]"
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""


class ProcessError(ExchangeError):
    """A child did not start (or died): the message carries the end of its log."""


class Children:
    """Owns the demo's child processes. A context manager: leaving it (normally, on an error, on Ctrl-C) stops
    every child; stop_all() may also be called earlier and is idempotent."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def __enter__(self) -> "Children":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    @property
    def children(self) -> tuple[Child, ...]:
        return tuple(self._children)

    def spawn(self, name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Child:
        """Start argv in a new session (its own process group), output to log_path. Call it from the main
        thread: the parent-death signal fires when the thread that forked the child ends."""
        if sys.platform == "linux":
            argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        child = Child(name, proc, log_path)
        self._children.append(child)
        return child

    def stop_all(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM every child's process group at once, give them `grace` seconds together, then SIGKILL."""
        running = [c for c in self._children if c.proc.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in self._children:
            # Also after the leader exited: anything it started still holds the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=grace)


async def wait_ready(session: aiohttp.ClientSession, child: Child, url: str, auth: aiohttp.BasicAuth, *,
                     within: float = 60.0) -> float:
    """Poll a TAXII discovery URL until it answers 200; returns the seconds it took. ProcessError with the
    child's log when it exits first or does not answer in time."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < within:
        if child.proc.poll() is not None:
            raise ProcessError(f"{child.name} exited with code {child.proc.returncode} before answering; "
                               f"its log ({child.log_path}) ends with:\n{child.log_tail()}")
        try:
            async with session.get(url, auth=auth, headers={"Accept": "application/taxii+json;version=2.1"},
                                   timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = type(exc).__name__
        await asyncio.sleep(0.1)
    raise ProcessError(f"{child.name} did not answer {url} within {within:.0f} s (last: {last}); its log "
                       f"({child.log_path}) ends with:\n{child.log_tail()}")


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts until its parent reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

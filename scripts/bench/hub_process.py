"""One hub as a subprocess for the benchmarks: `python -m exchange serve` on a free port, ready when its /readyz
says so, stopped with SIGTERM (then SIGKILL) on exit."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from scripts.medallion_peer import free_port, stop_process_group

HOST = "127.0.0.1"
READY_TIMEOUT = 60.0  # seconds: a cold start imports jsonschema and loads the warninglists
REPO = Path(__file__).resolve().parent.parent.parent


@contextlib.contextmanager
def serve_hub(config: Path, *, log_path: Path, python: str = sys.executable, args: Sequence[str] = (),
              env: Mapping[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yields the hub's base URL (http://127.0.0.1:PORT) and its process; `args` go to `exchange serve`."""
    port = free_port()
    cmd = [python, "-m", "exchange", "serve", "--config", str(config), "--port", str(port), "--log-level",
           "warning", *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})
    base = f"http://{HOST}:{port}"
    try:
        try:
            _wait_ready(base, proc)
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"hub did not start ({' '.join(cmd)}): {exc}\n--- hub log tail ---\n{tail}") from exc
        yield base, proc
    finally:
        stop_process_group(proc)


def _wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2.0) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {READY_TIMEOUT:.0f} s (last: {last})")

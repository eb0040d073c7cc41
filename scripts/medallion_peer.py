"""A real medallion 3.0.0 TAXII 2.1 server (memory backend) on loopback, as a subprocess.

The reference peer for benchmarks and interop runs; `python scripts/medallion_peer.py` serves one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

HOST = "127.0.0.1"
API_ROOT = "api"
COLLECTION_ID = "7e0ee6ad-67b6-4a2e-9d7b-2f7ad1c5b8a1"
USER = "bench"
PASSWORD = "bench-password"
TAXII_ACCEPT = "application/taxii+json;version=2.1"
# medallion pops `next` sessions after 30 s and caps pages at 100 unless told otherwise; a benchmark
# that pages through thousands of objects needs both raised (backend.session_timeout, taxii.max_page_size).
SESSION_TIMEOUT_S = 3600
MAX_PAGE_SIZE = 1000
# 500 STIX indicators are ~250 kB; leave room for much bigger envelopes.
MAX_CONTENT_LENGTH = 64 * 1024 * 1024
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class MedallionPeer:
    """Where a running medallion answers, and how to log in."""

    port: int
    pid: int
    discovery_url: str
    api_root_url: str
    collection_id: str
    user: str
    password: str
    log_path: Path

    @property
    def collection_url(self) -> str:
        return f"{self.api_root_url}collections/{self.collection_id}/"


def free_port() -> int:
    """A port the kernel just handed out on loopback (racy by nature, so callers retry on failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def build_data(port: int) -> dict[str, object]:
    """The memory backend's whole world: discovery, one API root, one read/write collection."""
    base = f"http://{HOST}:{port}"
    return {
        # medallion's backend finds an API root by walking the data in sorted key order, so keep
        # "/discovery" (sorts first) small and the root name plain.
        "/discovery": {
            "title": "medallion reference peer",
            "description": "Benchmark and interoperability peer",
            "default": f"{base}/{API_ROOT}/",
            "api_roots": [f"{base}/{API_ROOT}/"],
        },
        API_ROOT: {
            "information": {
                "title": "Benchmark API root",
                "versions": [TAXII_ACCEPT],
                "max_content_length": MAX_CONTENT_LENGTH,
            },
            "status": [],
            "collections": [
                {
                    "id": COLLECTION_ID,
                    "title": "Benchmark collection",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    # Present from the start: medallion creates "objects" lazily on first POST, mutating a
                    # dict that concurrent request threads may be iterating.
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }


def build_config(data_path: Path) -> dict[str, object]:
    """medallion's JSON config: backend, users and TAXII options."""
    return {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_path),
            "session_timeout": SESSION_TIMEOUT_S,
            "check_interval": 10,
        },
        "users": {USER: PASSWORD},
        "taxii": {"max_page_size": MAX_PAGE_SIZE},
    }


def wait_until_ready(
    url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll a TAXII discovery URL until it answers 200; fail fast if the process died."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            resp = requests.get(url, auth=auth, headers={"Accept": TAXII_ACCEPT}, timeout=2.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s (last: {last})")


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the child's whole process group, then SIGKILL whatever is left after the grace period."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # The leader may be gone while children it spawned still hold the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _spawn(workdir: Path, port: int, python: str) -> tuple[subprocess.Popen[bytes], Path]:
    data_path = workdir / "medallion-data.json"
    config_path = workdir / "medallion-config.json"
    log_path = workdir / f"medallion-{port}.log"
    data_path.write_text(json.dumps(build_data(port), indent=2))
    config_path.write_text(json.dumps(build_config(data_path), indent=2))
    cmd = [python, "-m", "medallion.scripts.run", "--host", HOST, "--port", str(port), str(config_path)]
    with log_path.open("wb") as log:
        # Own session = own process group, so stop_process_group reaches any children too.
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, log_path


@contextlib.contextmanager
def run_medallion(tmpdir: str | os.PathLike[str], python: str | None = None) -> Iterator[MedallionPeer]:
    """Start medallion on a free loopback port, yield where it is, always kill it on exit."""
    workdir = Path(tmpdir) / f"medallion-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    python = python or sys.executable
    for attempt in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        proc, log_path = _spawn(workdir, port, python)
        peer = MedallionPeer(
            port=port,
            pid=proc.pid,
            discovery_url=f"http://{HOST}:{port}/taxii2/",
            api_root_url=f"http://{HOST}:{port}/{API_ROOT}/",
            collection_id=COLLECTION_ID,
            user=USER,
            password=PASSWORD,
            log_path=log_path,
        )
        try:
            wait_until_ready(peer.discovery_url, (USER, PASSWORD), proc)
        except (RuntimeError, TimeoutError) as exc:
            stop_process_group(proc)
            if attempt == 2:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"medallion did not start: {exc}\n--- log tail ---\n{tail}") from exc
            continue
        try:
            yield peer
        finally:
            stop_process_group(proc)
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.0, help="serve this long, then stop (0 = until ^C)")
    args = parser.parse_args(argv)
    # Turn SIGTERM into an exception so the context manager's cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="medallion-peer-") as tmp, run_medallion(tmp) as peer:
        print(f"discovery   {peer.discovery_url}")
        print(f"api root    {peer.api_root_url}")
        print(f"collection  {peer.collection_url}")
        print(f"login       {peer.user} / {peer.password}   (pid {peer.pid}, log {peer.log_path})")
        sys.stdout.flush()
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
        with contextlib.suppress(KeyboardInterrupt):
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

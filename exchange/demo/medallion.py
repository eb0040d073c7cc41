"""A real medallion 3.0.0 TAXII 2.1 server (the OASIS reference implementation, memory backend) on loopback,
as a subprocess: the peer of `exchange demo`, the benchmarks and the interoperability tests.

medallion is an optional dependency (the `demo` and `dev` extras); only spawning it needs it installed.
`python scripts/medallion_peer.py` serves one from a checkout.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def build_data(port: int, *, title: str = "medallion reference peer",
               collection_title: str = "Benchmark collection") -> dict[str, object]:
    """The memory backend's whole world: discovery, one API root, one read/write collection."""
    base = f"http://{HOST}:{port}"
    return {
        # medallion's backend finds an API root by walking the data in sorted key order, so keep
        # "/discovery" (sorts first) small and the root name plain.
        "/discovery": {
            "title": title,
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
                    "title": collection_title,
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


def build_config(data_path: Path, *, user: str = USER, password: str = PASSWORD) -> dict[str, object]:
    """medallion's JSON config: backend, users and TAXII options."""
    return {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(data_path),
            "session_timeout": SESSION_TIMEOUT_S,
            "check_interval": 10,
        },
        "users": {user: password},
        "taxii": {"max_page_size": MAX_PAGE_SIZE},
    }


def write_files(workdir: Path, port: int, *, title: str = "medallion reference peer",
                collection_title: str = "Benchmark collection", user: str = USER,
                password: str = PASSWORD) -> Path:
    """medallion's data and config files in `workdir`; returns the config's path."""
    data_path = workdir / "medallion-data.json"
    config_path = workdir / "medallion-config.json"
    data_path.write_text(json.dumps(build_data(port, title=title, collection_title=collection_title), indent=2))
    config_path.write_text(json.dumps(build_config(data_path, user=user, password=password), indent=2))
    return config_path


def command(config_path: Path, port: int, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "medallion.scripts.run", "--host", HOST, "--port", str(port),
            str(config_path)]


def wait_until_ready(
    url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Poll a TAXII discovery URL until it answers 200; fail fast if the process died."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, headers={"Accept": TAXII_ACCEPT, "Authorization": f"Basic {token}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(request, timeout=2.0) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read(200)!r}"
        except (OSError, urllib.error.URLError) as exc:
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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _spawn(workdir: Path, port: int, python: str) -> tuple[subprocess.Popen[bytes], Path]:
    config_path = write_files(workdir, port)
    log_path = workdir / f"medallion-{port}.log"
    with log_path.open("wb") as log:
        # Own session = own process group, so stop_process_group reaches any children too.
        proc = subprocess.Popen(command(config_path, port, python), cwd=workdir, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
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

"""The TAXII 2.1 servers the TAXII benchmark drives, each a subprocess on loopback: this hub (`exchange serve` on a
generated config), medallion 3.0.0 (memory backend) and, when its interpreter is given, OpenTAXII (SQLite)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from exchange.policy.credentials import hash_password
from scripts.bench.hub_process import serve_hub
from scripts.medallion_peer import HOST, free_port, run_medallion, stop_process_group, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
HUB_API_ROOT = "api"
HUB_COLLECTION_ID = "31110fdc-ecd0-46fd-994f-960c58b21925"
HUB_CANONICAL_ID = "8bfc07ea-b3e4-4f90-8e5c-0c340a092b3c"
HUB_USER, HUB_PASSWORD = "bench", "bench-password"
OPENTAXII_SERVER = Path(__file__).resolve().parent / "opentaxii_server.py"


@dataclass(frozen=True, slots=True)
class Target:
    """A TAXII server under test: where its collection is, how to log in, which process to measure."""

    name: str
    api_root_url: str
    collection_id: str
    user: str
    password: str
    pid: int
    log_path: Path
    data_dir: Path | None = None

    @property
    def collection_url(self) -> str:
        return f"{self.api_root_url}collections/{self.collection_id}/"


def hub_config(workdir: Path, *, canonical: bool) -> Path:
    """The hub as a TAXII store (an inbox; journal, store and audit, like medallion plus durability), or with the
    canonical collection too (normalization, claims and the merge of every indicator, issue #3)."""
    name = "hub-full.toml" if canonical else "hub-taxii.toml"
    canonical_hub = 'canonical_collection = "indicators"\n' if canonical else ""
    canonical_coll = (f'\n[[api_roots.collections]]\nid = "{HUB_CANONICAL_ID}"\nalias = "indicators"\n'
                      'title = "Canonical indicators"\n') if canonical else ""
    text = f"""[hub]
title = "benchmark hub"
data_dir = "data"
max_content_length = 67108864
{canonical_hub}
[[api_roots]]
path = "{HUB_API_ROOT}"
default = true

[[api_roots.collections]]
id = "{HUB_COLLECTION_ID}"
alias = "inbox"
title = "Inbox"
{canonical_coll}
[[accounts]]
username = "{HUB_USER}"
kind = "operator"
password_hash = "{hash_password(HUB_PASSWORD)}"
can_read = ["*"]
can_write = ["inbox"]
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(text)
    return path


@contextlib.contextmanager
def run_hub(workdir: Path, python: str, config: Path, name: str = "hub") -> Iterator[Target]:
    """The hub under `python` with a fresh data dir; SIGTERM, then SIGKILL, on exit."""
    data_dir = workdir / f"{name}-data-{len(list(workdir.glob(f'{name}-data-*')))}"
    data_dir.mkdir(parents=True)
    log_path = data_dir.with_suffix(".log")
    started: subprocess.Popen[bytes] | None = None
    try:
        with serve_hub(config, log_path=log_path, python=python, args=("--data-dir", str(data_dir))) as (base, proc):
            started = proc
            yield Target(name=name, api_root_url=f"{base}/{HUB_API_ROOT}/", collection_id=HUB_COLLECTION_ID,
                         user=HUB_USER, password=HUB_PASSWORD, pid=proc.pid, log_path=log_path, data_dir=data_dir)
    finally:
        if started is not None and started.returncode not in (0, -signal.SIGTERM):
            print(f"  note: hub exit code {started.returncode} on shutdown (log {log_path})", file=sys.stderr)


@contextlib.contextmanager
def run_medallion_target(workdir: Path) -> Iterator[Target]:
    with run_medallion(workdir) as peer:
        yield Target(name="medallion", api_root_url=peer.api_root_url, collection_id=peer.collection_id,
                     user=peer.user, password=peer.password, pid=peer.pid, log_path=peer.log_path)


@contextlib.contextmanager
def run_opentaxii(workdir: Path, python: str) -> Iterator[Target]:
    """OpenTAXII under its own interpreter (its own venv: its pins are not the hub's)."""
    port = free_port()
    home = workdir / f"opentaxii-{port}"
    home.mkdir(parents=True)
    log_path = home / "opentaxii.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([python, str(OPENTAXII_SERVER), str(home), str(port)], cwd=home, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        try:
            wait_until_ready(f"http://{HOST}:{port}/taxii2/", ("bench", "bench-password"), proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"OpenTAXII did not start: {exc}\n--- log tail ---\n{tail}") from exc
        ids = json.loads((home / "opentaxii-ids.json").read_text())
        yield Target(name="opentaxii", api_root_url=f"http://{HOST}:{port}/taxii2/{ids['api_root']}/",
                     collection_id=ids["collection"], user="bench", password="bench-password", pid=proc.pid,
                     log_path=log_path)
    finally:
        stop_process_group(proc)


def disk_bytes(directory: Path | None) -> int:
    """What a server keeps on disk (the hub's data dir: journal, store, audit, with their WAL files)."""
    if directory is None or not directory.exists():
        return 0
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())

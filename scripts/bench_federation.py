"""Benchmark pull federation: objects/s for a hub (B) pulling N objects from a peer (A), end to end.

1. hub → hub: hub A (a subprocess) is seeded with N indicators by POST; then hub B (another subprocess) is
   started with A as a peer; the clock runs from B's launch (so it includes B's startup; the first-page time
   shows how much) until B's journal holds all N (pulled and durable) and until B's store holds all N in its
   inbox (processed: checked, stored, claims merged into the canonical collection).
2. medallion → hub: the same with a medallion 3.0.0 peer seeded with --medallion-n objects (medallion's
   read path is quadratic, so larger counts measure medallion, not the hub).

    python scripts/bench_federation.py                       # N=20,000 from a hub, 5,000 from medallion
    python scripts/bench_federation.py --n 100000 --skip-medallion
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_federation.py` from a checkout
    sys.path.insert(0, str(REPO))

from exchange.policy.credentials import hash_password  # noqa: E402
from scripts.medallion_peer import free_port, run_medallion, stop_process_group, wait_until_ready  # noqa: E402

HOST = "127.0.0.1"
TAXII = "application/taxii+json;version=2.1"
INBOX = "31110fdc-ecd0-46fd-994f-960c58b21925"
CANONICAL = "c7484c5c-18c8-4bcc-acb0-d4d778671765"
USER, PASSWORD = "bench", "bench-password"
PEER_USER, PEER_PASSWORD = "hub-b", "hub-b-password"
PEER_ACCOUNT = "peer:a"


def hub_config(directory: Path, peer: str = "") -> Path:
    """One API root with an inbox and a canonical collection; `bench` writes, `hub-b` reads the inbox."""
    text = f"""
[hub]
title = "bench hub"
data_dir = "data"
max_content_length = 67108864
canonical_collection = "canonical"

[[api_roots]]
path = "api"
default = true

[[api_roots.collections]]
id = "{INBOX}"
alias = "inbox"
title = "Inbox"

[[api_roots.collections]]
id = "{CANONICAL}"
alias = "canonical"
title = "Canonical"

[[accounts]]
username = "{USER}"
password_hash = "{hash_password(PASSWORD)}"
can_read = ["*"]
can_write = ["inbox"]

[[accounts]]
username = "{PEER_USER}"
password_hash = "{hash_password(PEER_PASSWORD)}"
can_read = ["inbox"]
{peer}"""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hub.toml"
    path.write_text(text)
    return path


def peer_toml(api_root: str, collection: str, user: str, page_size: int) -> str:
    return f"""
[[peers]]
id = "a"
name = "peer A"
country = "DE"
api_root = "{api_root}"
pull = ["{collection}"]
pull_into = "inbox"
auth = {{ username = "{user}", password_env = "BENCH_PEER_PASSWORD" }}
poll_interval = 0.5
page_size = {page_size}
timeout = 120
"""


@contextlib.contextmanager
def run_hub(config: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m exchange serve` on a free port; SIGTERM (then SIGKILL) on exit."""
    port = free_port()
    log = (config.parent / f"hub-{port}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "exchange", "serve", "--config", str(config), "--port", str(port),
                             "--log-level", "warning"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})})
    try:
        wait_until_ready(f"http://{HOST}:{port}/taxii2/", (USER, PASSWORD), proc)
        yield f"http://{HOST}:{port}/api/", proc
    finally:
        stop_process_group(proc)
        log.close()


def indicators(n: int) -> list[dict[str, object]]:
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{i:012d}",
             "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
             "pattern": f"[domain-name:value = 'h{i}.bench.example']", "pattern_type": "stix",
             "valid_from": "2026-01-01T00:00:00Z"} for i in range(n)]


def post(collection_url: str, objects: list[dict[str, object]], auth: tuple[str, str], *, batch: int,
         threads: int = 4) -> None:
    """POST in envelopes of `batch` objects from a few threads; every one must be accepted."""
    chunks = [objects[i:i + batch] for i in range(0, len(objects), batch)]
    errors: list[str] = []

    def worker(k: int) -> None:
        with requests.Session() as session:
            for chunk in chunks[k::threads]:
                r = session.post(collection_url + "objects/", data=orjson.dumps({"objects": chunk}), auth=auth,
                                 headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=600)
                if r.status_code not in (200, 202):
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(f"seeding failed: {errors[0]}")


def count(db: Path, sql: str, *args: object) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql, args).fetchone()[0] or 0)
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        conn.close()


def stored(data_dir: Path) -> int:
    return count(data_dir / "store.db", "SELECT count(*) FROM objects WHERE collection = ?", INBOX)


def journaled(data_dir: Path) -> int:
    return count(data_dir / "journal.db", "SELECT sum(total) FROM envelopes WHERE account = ?", PEER_ACCOUNT)


def wait(check: object, target: int, within: float, what: str) -> float:
    """Seconds until check() reaches target (polled every 20 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if check() >= target:  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{what}: {check()} of {target} after {within:.0f}s")  # type: ignore[operator]


@dataclass
class Result:
    label: str
    n: int
    first_page_s: float  # B's process start to its first journaled page: startup and the peer's first answer
    journal_s: float
    stored_s: float

    def show(self) -> str:
        def rate(until: float) -> str:
            # From launch (startup included), and from the first page on (the pull itself).
            steady = self.n / (until - self.first_page_s) if until > self.first_page_s else float("inf")
            return f"{until:6.2f}s: {self.n / until:>7,.0f}/s, {steady:>7,.0f}/s after the first page"

        return (f"{self.label} N={self.n:,}: first page at {self.first_page_s:.2f}s\n"
                f"  all journaled      at {rate(self.journal_s)}\n"
                f"  all stored+merged  at {rate(self.stored_s)}")


def pull_with_b(workdir: Path, api_root: str, collection: str, user: str, password: str, n: int,
                page_size: int, label: str) -> Result:
    config = hub_config(workdir / "b", peer_toml(api_root, collection, user, page_size))
    data_dir = workdir / "b" / "data"
    start = time.monotonic()  # pollers start with the hub: the clock includes B's startup
    with run_hub(config, {"BENCH_PEER_PASSWORD": password}):
        first = wait(lambda: journaled(data_dir), 1, 1800, "B's first page")
        journal_done = wait(lambda: journaled(data_dir), n, 1800, "B journaling")
        stored_done = wait(lambda: stored(data_dir), n, 1800, "B storing")
    return Result(label, n, first - start, journal_done - start, stored_done - start)


def bench_hub(workdir: Path, n: int, page_size: int) -> Result:
    a_config = hub_config(workdir / "a")
    with run_hub(a_config) as (a_api, _):
        t = time.monotonic()
        post(f"{a_api}collections/{INBOX}/", indicators(n), (USER, PASSWORD), batch=1000)
        wait(lambda: stored(workdir / "a" / "data"), n, 1800, "A storing the seed")
        print(f"  seeded hub A with {n:,} objects in {time.monotonic() - t:.1f}s", flush=True)
        return pull_with_b(workdir, a_api, INBOX, PEER_USER, PEER_PASSWORD, n, page_size, "hub -> hub")


def bench_medallion(workdir: Path, n: int) -> Result:
    with run_medallion(workdir) as peer:
        t = time.monotonic()
        post(peer.collection_url, indicators(n), (peer.user, peer.password), batch=500, threads=1)
        print(f"  seeded medallion with {n:,} objects in {time.monotonic() - t:.1f}s", flush=True)
        # medallion caps pages at its max_page_size (1000 in scripts/medallion_peer.py).
        return pull_with_b(workdir, peer.api_root_url, peer.collection_id, peer.user, peer.password, n, 1000,
                           "medallion -> hub")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="objects pulled from hub A (default %(default)s)")
    p.add_argument("--medallion-n", type=int, default=5_000, help="objects pulled from medallion")
    p.add_argument("--page-size", type=int, default=1000, help="B's page_size for hub A (default %(default)s)")
    p.add_argument("--skip-medallion", action="store_true")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind so no server outlives the benchmark
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        print(f"hub -> hub, N={args.n:,}", flush=True)
        results.append(bench_hub(Path(tmp) / "hubs", args.n, args.page_size))
        if not args.skip_medallion:
            print(f"medallion -> hub, N={args.medallion_n:,}", flush=True)
            results.append(bench_medallion(Path(tmp) / "medallion", args.medallion_n))
    print()
    for r in results:
        print(r.show())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

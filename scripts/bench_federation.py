"""Benchmark pull federation: objects/s for a hub (B) pulling N objects from a peer (A), end to end.

1. hub → hub: hub A (a subprocess) is seeded with N indicators by POST; then hub B (another subprocess) is
   started with A as a peer; the clock runs from B's launch (so it includes B's startup; the first-page time
   shows how much) until B's journal holds all N (pulled and durable) and until B's store holds all N in its
   inbox (processed: checked, stored, claims merged into the canonical collection).
2. medallion → hub: the same with a medallion 3.0.0 peer seeded with --medallion-n objects (medallion's
   read path is quadratic, so larger counts measure medallion, not the hub).

    python scripts/bench_federation.py                       # N=20,000 from a hub, 5,000 from medallion
    python scripts/bench_federation.py --n 100000 --skip-medallion
`python -m scripts.bench` runs run(): several runs, each pulling N from a hub and, side by side, a smaller N
from a hub and from medallion, for run-by-run ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import math
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
from typing import Any

import orjson
import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python scripts/bench_federation.py` from a checkout
    sys.path.insert(0, str(REPO))

from exchange.policy.credentials import hash_password  # noqa: E402
from scripts.bench import stats  # noqa: E402
from scripts.bench.hub_process import serve_hub  # noqa: E402
from scripts.bench.profile import Sampler  # noqa: E402
from scripts.medallion_peer import run_medallion  # noqa: E402

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
    """A hub of the benchmark; yields its API root URL and its process."""
    with serve_hub(config, log_path=config.parent / "hub.log", env=env) as (base, proc):
        yield f"{base}/api/", proc


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

    @property
    def overall_rate(self) -> float:
        """Objects stored and merged per second from B's launch (its startup included)."""
        return self.n / self.stored_s

    @property
    def pull_rate(self) -> float:
        """Objects journaled per second from the first page on: the pull itself."""
        return self.n / (self.journal_s - self.first_page_s) if self.journal_s > self.first_page_s else math.nan

    def show(self) -> str:
        def rate(until: float) -> str:
            # From launch (startup included), and from the first page on (the pull itself).
            steady = self.n / (until - self.first_page_s) if until > self.first_page_s else float("inf")
            return f"{until:6.2f}s: {self.n / until:>7,.0f}/s, {steady:>7,.0f}/s after the first page"

        return (f"{self.label} N={self.n:,}: first page at {self.first_page_s:.2f}s\n"
                f"  all journaled      at {rate(self.journal_s)}\n"
                f"  all stored+merged  at {rate(self.stored_s)}")


def pull_with_b(workdir: Path, api_root: str, collection: str, user: str, password: str, n: int,
                page_size: int, label: str, sampler: Sampler | None = None) -> Result:
    """B pulls from the peer; with a sampler, py-spy records B for the whole pull (the run is then not a measured
    one: attaching costs the driver half a second)."""
    config = hub_config(workdir / "b", peer_toml(api_root, collection, user, page_size))
    data_dir = workdir / "b" / "data"
    start = time.monotonic()  # pollers start with the hub: the clock includes B's startup
    with run_hub(config, {"BENCH_PEER_PASSWORD": password}) as (_, proc), \
            (sampler.record(f"federation-hub-b-{n}", proc.pid) if sampler else contextlib.nullcontext()):
        first = wait(lambda: journaled(data_dir), 1, 1800, "B's first page")
        journal_done = wait(lambda: journaled(data_dir), n, 1800, "B journaling")
        stored_done = wait(lambda: stored(data_dir), n, 1800, "B storing")
    return Result(label, n, first - start, journal_done - start, stored_done - start)


def bench_hub(workdir: Path, n: int, page_size: int, sampler: Sampler | None = None) -> Result:
    a_config = hub_config(workdir / "a")
    with run_hub(a_config) as (a_api, _):
        t = time.monotonic()
        post(f"{a_api}collections/{INBOX}/", indicators(n), (USER, PASSWORD), batch=1000)
        wait(lambda: stored(workdir / "a" / "data"), n, 1800, "A storing the seed")
        print(f"  seeded hub A with {n:,} objects in {time.monotonic() - t:.1f}s", flush=True)
        return pull_with_b(workdir, a_api, INBOX, PEER_USER, PEER_PASSWORD, n, page_size, "hub -> hub", sampler)


def bench_medallion(workdir: Path, n: int) -> Result:
    with run_medallion(workdir) as peer:
        t = time.monotonic()
        post(peer.collection_url, indicators(n), (peer.user, peer.password), batch=500, threads=1)
        print(f"  seeded medallion with {n:,} objects in {time.monotonic() - t:.1f}s", flush=True)
        # medallion caps pages at its max_page_size (1000 in scripts/medallion_peer.py).
        return pull_with_b(workdir, peer.api_root_url, peer.collection_id, peer.user, peer.password, n, 1000,
                           "medallion -> hub")


def run(size: int, runs: int, *, pair_n: int = 2_000, page_size: int = 1000,
        sampler: Sampler | None = None) -> dict[str, Any]:
    """Each run: B pulls N=size from hub A, then pair_n from a hub and pair_n from medallion, back to back; the
    ratio is run i's hub -> hub over run i's medallion -> hub at pair_n, both from B's launch (B's startup is in
    both). With a sampler, one more pull of N is profiled."""
    big: list[Result] = []
    pairs: dict[str, list[Result]] = {"hub": [], "medallion": []}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        for i in range(runs):
            work = Path(tmp) / f"run{i}"
            try:
                print(f"run {i + 1}/{runs}: hub -> hub, N={size:,}", flush=True)
                big.append(bench_hub(work / "big", size, page_size))
                print(big[-1].show(), flush=True)
                print(f"run {i + 1}/{runs}: hub -> hub and medallion -> hub, N={pair_n:,}", flush=True)
                # The same pull as the big one when the sizes agree (--quick): no need to time it twice.
                same = pair_n == size and page_size == 1000
                pairs["hub"].append(big[-1] if same else bench_hub(work / "pair-hub", pair_n, 1000))
                pairs["medallion"].append(bench_medallion(work / "pair-medallion", pair_n))
                print(pairs["hub"][-1].show(), pairs["medallion"][-1].show(), sep="\n", flush=True)
            except (RuntimeError, TimeoutError) as exc:
                problems.append(f"run {i + 1}: {type(exc).__name__}: {exc}")
        if sampler and sampler.enabled:
            print(f"profile: hub -> hub, N={size:,}, py-spy on B", flush=True)
            bench_hub(Path(tmp) / "profile", size, page_size, sampler)
    runs_ok = min(len(pairs["hub"]), len(pairs["medallion"]))
    figures = {
        "pull.hub": stats.summary([r.pull_rate for r in big], "objects/s", f"hub -> hub, N={size:,}: journaled "
                                  "per second after the first page"),
        "stored.hub": stats.summary([r.overall_rate for r in big], "objects/s", f"hub -> hub, N={size:,}: stored "
                                    "and merged per second from B's launch"),
        "first_page.hub": stats.summary([r.first_page_s for r in big], "s", f"hub -> hub, N={size:,}: B's launch "
                                        "to its first journaled page", higher_is_better=False),
    }
    for peer, results in pairs.items():
        figures[f"stored.{peer}@pair"] = stats.summary(
            [r.overall_rate for r in results], "objects/s",
            f"{peer} -> hub, N={pair_n:,}: stored and merged per second from B's launch")
    ratios = {"stored.hub/medallion@pair": stats.pair_ratios(
        [r.overall_rate for r in pairs["hub"][:runs_ok]], [r.overall_rate for r in pairs["medallion"][:runs_ok]],
        f"N={pair_n:,} from B's launch: hub -> hub / medallion -> hub")}
    return stats.result("federation", "Federation: a hub pulling from a peer hub and from medallion",
                        {"n": size, "pair_n": pair_n, "runs": runs, "page_size": page_size}, figures, ratios, [],
                        problems, runs_detail={"big": [vars(r) for r in big],
                                               **{k: [vars(r) for r in v] for k, v in pairs.items()}})


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

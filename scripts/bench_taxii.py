"""Benchmark the hub's TAXII 2.1 ingest and read paths against medallion, then the hub alone as N grows.

Both servers are real subprocesses on loopback, driven by taxii2-client, the suite's independent client.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from taxii2client.v21 import Collection, Status, as_pages

try:
    from scripts.medallion_peer import HOST, free_port, run_medallion, stop_process_group, wait_until_ready
except ImportError:  # run as `python scripts/bench_taxii.py`: scripts/ itself is on sys.path
    from medallion_peer import (  # type: ignore[no-redef]
        HOST,
        free_port,
        run_medallion,
        stop_process_group,
        wait_until_ready,
    )

REPO = Path(__file__).resolve().parent.parent
HUB_CONFIG = REPO / "examples" / "hub.toml"
HUB_API_ROOT = "api"
HUB_COLLECTION_ID = "31110fdc-ecd0-46fd-994f-960c58b21925"
HUB_USER = HUB_PASSWORD = "demo"
TAXII_MEDIA = "application/taxii+json;version=2.1"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


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

    @property
    def collection_url(self) -> str:
        return f"{self.api_root_url}collections/{self.collection_id}/"


@dataclass(slots=True)
class RunResult:
    target: str
    n: int
    ingest_seconds: float = math.nan
    read_seconds: float = math.nan
    posts: int = 0
    status_polls: int = 0
    peak_rss_kib: int = 0
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ingest_rate(self) -> float:
        return self.n / self.ingest_seconds

    @property
    def read_rate(self) -> float:
        return self.n / self.read_seconds

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ingest_objects_per_s"] = self.ingest_rate
        out["read_objects_per_s"] = self.read_rate
        out["ingest_us_per_object"] = 1e6 * self.ingest_seconds / self.n
        out["read_us_per_object"] = 1e6 * self.read_seconds / self.n
        # NaN (a phase that never finished) is not JSON.
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Settings:
    seed: int
    batch: int
    threads: int
    page: int
    http_timeout: float
    status_timeout: float


# --- test data ------------------------------------------------------------------------------------


def stix_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def indicator(i: int, seed: int) -> dict[str, Any]:
    """The i-th benchmark indicator: id and pattern unique per i, the same on every run with this seed."""
    digest = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).digest()
    ts = stix_time(BASE_TIME + timedelta(milliseconds=i))
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"  # distinct for i < 2**24
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(bytes=digest, version=4)}",
        "created": ts,
        "modified": ts,
        "name": f"bench indicator {i}",
        "description": "Synthetic indicator for the TAXII benchmark.",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '{ip}']",
        "pattern_type": "stix",
        "valid_from": ts,
    }


def envelope_bytes(batch_no: int, n: int, s: Settings) -> bytes:
    """Envelope number batch_no of the N objects, serialized; built on demand so 1M never sit in RAM."""
    start = batch_no * s.batch
    objects = [indicator(i, s.seed) for i in range(start, min(start + s.batch, n))]
    return orjson.dumps({"objects": objects})


# --- HTTP plumbing ----------------------------------------------------------------------------------


class _TimeoutAdapter(HTTPAdapter):
    """taxii2-client never passes a timeout to requests; this adapter supplies one to every call."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def open_collection(target: Target, s: Settings) -> Collection:
    coll = Collection(target.collection_url, user=target.user, password=target.password)
    # Collection owns its requests.Session privately; mounting is the only way to bound its calls.
    coll._conn.session.mount("http://", _TimeoutAdapter(s.http_timeout))
    return coll


def describe_http_error(exc: requests.HTTPError) -> str:
    """Request line and response (status, headers, body head): what a hub bug report needs."""
    resp = exc.response
    if resp is None:
        return repr(exc)
    req = resp.request
    return (
        f"{req.method} {req.url} -> HTTP {resp.status_code} "
        f"content-type={resp.headers.get('Content-Type')!r} body={resp.text[:600]!r}"
    )


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in KiB; 0 if it is gone. Both servers are one process each."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def check_envelope_fits(target: Target, s: Settings) -> None:
    """Fail early, with a clear message, if one envelope would exceed the API root's max_content_length."""
    resp = requests.get(
        target.api_root_url,
        auth=(target.user, target.password),
        headers={"Accept": TAXII_MEDIA},
        timeout=s.http_timeout,
    )
    resp.raise_for_status()
    limit = int(resp.json()["max_content_length"])
    size = len(envelope_bytes(0, s.batch, s))
    if size > limit:
        raise RuntimeError(f"{target.name}: {s.batch}-object envelope is {size} B > max_content_length {limit}")


# --- the two measured phases ----------------------------------------------------------------------------


def open_collections(target: Target, s: Settings, count: int) -> list[Collection]:
    """Collections with their metadata already fetched, so the timed phases measure only object traffic."""
    colls = [open_collection(target, s) for _ in range(count)]
    for coll in colls:
        coll.refresh()
    return colls


def post_all(colls: list[Collection], n: int, s: Settings) -> list[Status]:
    """POST every envelope, one thread (and session) per collection handle; statuses in POST order."""
    batches = math.ceil(n / s.batch)
    statuses: list[Status | None] = [None] * batches

    def post_share(k: int) -> None:
        for batch_no in range(k, batches, len(colls)):  # envelopes are all alike: static split is fair
            body = envelope_bytes(batch_no, n, s)
            statuses[batch_no] = colls[k].add_objects(body, wait_for_completion=False)

    with ThreadPoolExecutor(max_workers=len(colls), thread_name_prefix="poster") as pool:
        for future in [pool.submit(post_share, k) for k in range(len(colls))]:
            future.result()  # re-raise a poster's exception here
    return [st for st in statuses if st is not None]


def wait_all_complete(statuses: list[Status], s: Settings) -> tuple[int, list[str]]:
    """Refresh each status until `complete`, oldest first (work finishes roughly in order)."""
    deadline = time.monotonic() + s.status_timeout
    polls = 0
    problems: list[str] = []
    for status in statuses:
        while status.status != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{status.url} still {status.status!r} after {s.status_timeout} s")
            time.sleep(0.005)
            status.refresh()  # shares the poster thread's session, idle by now
            polls += 1
        if status.failure_count or status.success_count != status.total_count:
            problems.append(
                f"status {status.url}: total={status.total_count} success={status.success_count}"
                f" failure={status.failure_count} failures={str(status.failures)[:300]}"
            )
    return polls, problems


def measure_ingest(target: Target, n: int, s: Settings, result: RunResult) -> None:
    """Ingest time: first POST until every status resource says `complete`."""
    colls = open_collections(target, s, s.threads)
    t0 = time.perf_counter()
    statuses = post_all(colls, n, s)
    result.status_polls, problems = wait_all_complete(statuses, s)
    result.ingest_seconds = time.perf_counter() - t0
    result.posts = len(statuses)
    succeeded = sum(int(st.success_count or 0) for st in statuses)
    if succeeded != n:
        problems.append(f"success_count summed over statuses is {succeeded}, expected {n}")
    if problems:
        result.notes.extend(problems[:5])
        raise RuntimeError(f"{target.name}: ingest of {n} objects not clean: {problems[0]}")


def measure_read(target: Target, n: int, s: Settings, result: RunResult) -> None:
    """Read time: page the whole collection back with limit=s.page; every object exactly once."""
    (coll,) = open_collections(target, s, 1)
    max_pages = 2 * math.ceil(n / s.page) + 10  # bound the loop even if `more` never turns false
    seen: set[str] = set()
    count = pages = 0
    t0 = time.perf_counter()
    for envelope in as_pages(coll.get_objects, per_request=s.page):
        objects = envelope.get("objects", [])
        count += len(objects)
        seen.update(obj["id"] for obj in objects)
        pages += 1
        if pages > max_pages:
            raise RuntimeError(f"{target.name}: more than {max_pages} pages for {n} objects; `more` stuck?")
    result.read_seconds = time.perf_counter() - t0
    if count != n or len(seen) != n:
        raise AssertionError(f"{target.name}: read {count} objects ({len(seen)} distinct) in {pages} pages, want {n}")


def run_one(target: Target, n: int, s: Settings) -> RunResult:
    result = RunResult(target=target.name, n=n)
    try:
        check_envelope_fits(target, s)
        measure_ingest(target, n, s, result)
        measure_read(target, n, s, result)
    except requests.HTTPError as exc:
        result.error = describe_http_error(exc)
    except Exception as exc:  # a failed run is reported in the table, the others still run
        result.error = f"{type(exc).__name__}: {exc}"
    result.peak_rss_kib = peak_rss_kib(target.pid)
    if result.error:  # the server's side of the story, before its temp dir goes away
        result.notes.append("server log tail:\n" + target.log_path.read_text(errors="replace")[-1500:])
    return result


# --- servers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_hub(workdir: Path, python: str, config: Path) -> Iterator[Target]:
    """Start `python -m exchange serve` on a free port with a fresh data dir; SIGTERM, SIGKILL on exit."""
    port = free_port()
    data_dir = workdir / f"hub-data-{port}"
    data_dir.mkdir(parents=True)
    log_path = workdir / f"hub-{port}.log"
    cmd = [
        python,
        "-m",
        "exchange",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        try:
            wait_until_ready(f"http://{HOST}:{port}/taxii2/", (HUB_USER, HUB_PASSWORD), proc)
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_text(errors="replace")[-3000:]
            msg = f"hub did not start ({' '.join(cmd)}): {exc}\n--- hub log tail ---\n{tail}"
            raise RuntimeError(msg) from exc
        yield Target(
            name="hub",
            api_root_url=f"http://{HOST}:{port}/{HUB_API_ROOT}/",
            collection_id=HUB_COLLECTION_ID,
            user=HUB_USER,
            password=HUB_PASSWORD,
            pid=proc.pid,
            log_path=log_path,
        )
    finally:
        stop_process_group(proc)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"  note: hub exit code {proc.returncode} on shutdown (log {log_path})", file=sys.stderr)


def bench_medallion(workdir: Path, n: int, s: Settings) -> RunResult:
    try:
        with run_medallion(workdir) as peer:
            target = Target(
                name="medallion",
                api_root_url=peer.api_root_url,
                collection_id=peer.collection_id,
                user=peer.user,
                password=peer.password,
                pid=peer.pid,
                log_path=peer.log_path,
            )
            return run_one(target, n, s)
    except RuntimeError as exc:  # did not start
        return RunResult(target="medallion", n=n, error=str(exc))


def taxii_only_config(workdir: Path, config: Path) -> Path:
    """The same hub without the canonical collection: a durable TAXII store like medallion, no dedup work."""
    text = "\n".join(line for line in config.read_text().splitlines()
                     if not line.strip().startswith("canonical_collection"))
    path = workdir / "hub-taxii-only.toml"
    # data_dir in the example is relative to its file; --data-dir overrides it anyway.
    path.write_text(text)
    return path


def bench_hub(workdir: Path, n: int, s: Settings, python: str, config: Path) -> RunResult:
    try:
        with run_hub(workdir, python, config) as target:
            return run_one(target, n, s)
    except RuntimeError as exc:
        return RunResult(target="hub", n=n, error=str(exc))


def announce(label: str, run: Callable[[], RunResult]) -> RunResult:
    print(f"running {label} ...", file=sys.stderr, flush=True)
    result = run()
    if result.error:
        print(f"  FAILED: {result.error}", *result.notes, sep="\n  ", file=sys.stderr, flush=True)
    else:
        print(
            f"  ingest {result.ingest_rate:,.0f} obj/s, read {result.read_rate:,.0f} obj/s, "
            f"peak RSS {result.peak_rss_kib / 1024:,.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return result


# --- report ----------------------------------------------------------------------------------------


def fmt(value: float, spec: str = ",.0f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def print_comparison(med: RunResult, hub: RunResult) -> None:
    print(f"\nhub vs medallion at N={med.n:,} (medallion) / N={hub.n:,} (hub)")
    print(f"{'':<16}{'medallion':>14}{'hub':>14}{'hub/medallion':>16}")
    for label, m, h in (
        ("ingest obj/s", med.ingest_rate, hub.ingest_rate),
        ("read obj/s", med.read_rate, hub.read_rate),
    ):
        print(f"{label:<16}{fmt(m):>14}{fmt(h):>14}{fmt(h / m, ',.1f') + 'x':>16}")
    print(f"{'peak RSS MiB':<16}{med.peak_rss_kib / 1024:>14,.0f}{hub.peak_rss_kib / 1024:>14,.0f}")
    for r in (med, hub):
        if r.error:
            print(f"{r.target} FAILED: {r.error[:300]}")


def print_scaling(runs: list[RunResult]) -> None:
    print("\nhub alone (x smallest = per-object cost relative to the smallest size)")
    print(
        f"{'N':>10}{'ingest/s':>11}{'µs/obj':>9}{'x small':>9}{'read/s':>11}{'µs/obj':>9}{'x small':>9}"
        f"{'peak RSS MiB':>14}"
    )
    ok = [r for r in runs if not r.error]
    base = ok[0] if ok else None
    for r in runs:
        if r.error:
            print(f"{r.n:>10,}  FAILED: {r.error[:200]}")
            continue
        assert base is not None
        ing_us, read_us = 1e6 * r.ingest_seconds / r.n, 1e6 * r.read_seconds / r.n
        ing_x = ing_us / (1e6 * base.ingest_seconds / base.n)
        read_x = read_us / (1e6 * base.read_seconds / base.n)
        print(
            f"{r.n:>10,}{r.ingest_rate:>11,.0f}{ing_us:>9.1f}{ing_x:>9.2f}{r.read_rate:>11,.0f}{read_us:>9.1f}"
            f"{read_x:>9.2f}{r.peak_rss_kib / 1024:>14,.0f}"
        )


# --- command line ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="10000,100000,1000000", help="hub-only sizes, comma separated")
    p.add_argument("--medallion-n", type=int, default=4000, help="N for the medallion vs hub comparison")
    p.add_argument("--quick", action="store_true", help="smoke test: medallion 200, hub 500,1000")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=500, help="objects per POSTed envelope")
    p.add_argument("--threads", type=int, default=4, help="concurrent posting threads")
    p.add_argument("--page", type=int, default=1000, help="limit per GET objects page")
    p.add_argument("--http-timeout", type=float, default=600.0, help="seconds per HTTP call")
    p.add_argument("--status-timeout", type=float, default=1800.0, help="seconds for all statuses")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs the hub and medallion")
    p.add_argument("--hub-config", type=Path, default=HUB_CONFIG)
    p.add_argument("--skip-medallion", action="store_true")
    p.add_argument("--pipeline", choices=["taxii", "full"], default="taxii",
                   help="hub config for the scaling runs: TAXII store only, or with the canonical merge")
    args = p.parse_args(argv)
    if args.quick:
        args.medallion_n, args.sizes = 200, "500,1000"
    args.size_list = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings(
        seed=args.seed,
        batch=args.batch,
        threads=args.threads,
        page=args.page,
        http_timeout=args.http_timeout,
        status_timeout=args.status_timeout,
    )
    # SIGTERM must unwind through the context managers so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bench-taxii-") as tmp:
        workdir = Path(tmp)
        med = hub_same = None

        taxii_only = taxii_only_config(workdir, args.hub_config)
        pipeline = args.hub_config if args.pipeline == "full" else taxii_only

        def hub_at(n: int, config: Path = pipeline, label: str = args.pipeline) -> RunResult:
            return announce(f"hub ({label}) N={n:,}", lambda: bench_hub(workdir, n, s, args.python, config))

        hub_full = None
        if not args.skip_medallion:
            m = args.medallion_n
            med = announce(f"medallion N={m:,}", lambda: bench_medallion(workdir, m, s))
            hub_same = hub_at(m, taxii_only, "taxii")
            hub_full = hub_at(m, args.hub_config, "full")
        scaling = [hub_at(n) for n in args.size_list]
    if med and hub_same:
        print("\n'taxii': the hub as a TAXII store, like medallion (journal, store, audit; no canonical collection)")
        print_comparison(med, hub_same)
    if med and hub_full:
        print("\n'full': plus normalization, claims and the canonical merge of every indicator (issue #3)")
        print_comparison(med, hub_full)
    print(f"\nscaling runs use the '{args.pipeline}' pipeline")
    print_scaling(scaling)
    if args.json:
        doc = {
            "settings": asdict(s),
            "cpus": os.cpu_count(),
            "comparison": ({"medallion": med.as_json(), "hub": hub_same.as_json(),
                            "hub_full": hub_full.as_json() if hub_full else None} if med and hub_same else None),
            "pipeline": args.pipeline,
            "scaling": [r.as_json() for r in scaling],
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    runs = [r for r in (med, hub_same, hub_full, *scaling) if r is not None]
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())

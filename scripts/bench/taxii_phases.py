"""The client side of the TAXII benchmark: the test data (streamed, so 1M objects never sit in memory), taxii2-client
with timeouts, and the two measured phases, ingest and read."""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter
from taxii2client.v21 import Collection, Status, as_pages

from scripts.bench.taxii_servers import Target

TAXII_MEDIA = "application/taxii+json;version=2.1"
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class RunResult:
    target: str
    n: int
    ingest_seconds: float = math.nan
    read_seconds: float = math.nan
    read_n: int = 0  # objects read back: n, or fewer when a read budget stopped a slow server
    read_stopped: str = ""  # why the read stopped before n
    posts: int = 0
    status_polls: int = 0
    rss_after_ingest_kib: int = 0
    peak_rss_kib: int = 0
    disk_bytes: int = 0
    children: int = 0  # child processes of the server (their memory is not in peak_rss_kib)
    # CPU the benchmark's own process (the client) spent in each phase: a client near 1 CPU-second per second is
    # what bounds a phase, not the server.
    ingest_client_cpu_s: float = math.nan
    read_client_cpu_s: float = math.nan
    error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ingest_rate(self) -> float:
        return self.n / self.ingest_seconds

    @property
    def read_rate(self) -> float:
        return self.read_n / self.read_seconds if self.read_n else math.nan

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ingest_objects_per_s"] = self.ingest_rate
        out["read_objects_per_s"] = self.read_rate
        out["ingest_us_per_object"] = 1e6 * self.ingest_seconds / self.n
        out["read_us_per_object"] = 1e6 * self.read_seconds / self.read_n if self.read_n else math.nan
        # NaN (a phase that never finished) is not JSON.
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Settings:
    seed: int = 1
    batch: int = 500
    threads: int = 4
    page: int = 1000
    http_timeout: float = 600.0
    status_timeout: float = 1800.0
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
    t0, cpu = time.perf_counter(), time.process_time()
    statuses = post_all(colls, n, s)
    result.status_polls, problems = wait_all_complete(statuses, s)
    result.ingest_seconds = time.perf_counter() - t0
    result.ingest_client_cpu_s = time.process_time() - cpu
    result.posts = len(statuses)
    succeeded = sum(int(st.success_count or 0) for st in statuses)
    if succeeded != n:
        problems.append(f"success_count summed over statuses is {succeeded}, expected {n}")
    if problems:
        result.notes.extend(problems[:5])
        raise RuntimeError(f"{target.name}: ingest of {n} objects not clean: {problems[0]}")


def measure_read(target: Target, n: int, s: Settings, result: RunResult, budget: float | None = None) -> None:
    """Read time: page the whole collection back with limit=s.page; every object exactly once. With a budget
    (seconds), stop after the page that crosses it: a rate over the pages read, and why it stopped."""
    (coll,) = open_collections(target, s, 1)
    if budget is not None:  # a page may take longer than the whole budget (medallion at 10k): bound each call too
        coll._conn.session.mount("http://", _TimeoutAdapter(min(s.http_timeout, budget)))
    max_pages = 2 * math.ceil(n / s.page) + 10  # bound the loop even if `more` never turns false
    seen: set[str] = set()
    count = pages = 0
    t0, cpu = time.perf_counter(), time.process_time()
    pager = as_pages(coll.get_objects, per_request=s.page)
    while True:
        try:
            envelope = next(pager)
        except StopIteration:
            break
        except requests.exceptions.ReadTimeout:
            if budget is None:
                raise
            result.read_stopped = (f"stopped: no answer to page {pages + 1} ({s.page:,} objects) within "
                                   f"{budget:.0f} s; {count:,} of {n:,} objects read")
            break
        objects = envelope.get("objects", [])
        count += len(objects)
        seen.update(obj["id"] for obj in objects)
        pages += 1
        if pages > max_pages:
            raise RuntimeError(f"{target.name}: more than {max_pages} pages for {n} objects; `more` stuck?")
        if budget is not None and count < n and time.perf_counter() - t0 > budget:
            result.read_stopped = (f"stopped after {pages} page(s), {count:,} of {n:,} objects, at "
                                   f"{time.perf_counter() - t0:.0f} s (budget {budget:.0f} s)")
            break
    result.read_seconds = time.perf_counter() - t0
    result.read_client_cpu_s = time.process_time() - cpu
    result.read_n = count
    if not result.read_stopped and (count != n or len(seen) != n):
        raise AssertionError(f"{target.name}: read {count} objects ({len(seen)} distinct) in {pages} pages, want {n}")

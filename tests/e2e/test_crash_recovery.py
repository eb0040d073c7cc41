"""Crash recovery (issue #2): SIGKILL a subprocess hub under write load; nothing it acknowledged is lost.

The journal commits every envelope before the 202, so after a restart on the same data directory each
acknowledged envelope must reach `complete` with all of its objects readable, and the audit chain must verify.
"""

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from exchange.audit.log import read_entries, verify_chain
from tests.hubs import INBOX, PASSWORDS, free_port, kill_hard, start_process_hub, write_config

TAXII = "application/taxii+json;version=2.1"
HEADERS = {"Content-Type": TAXII, "Accept": TAXII}
AUTH = ("alice", PASSWORDS["alice"])
POSTERS = 4
PER_ENVELOPE = 20
ACKS_BEFORE_KILL = 40  # enough acknowledged envelopes that some are still unprocessed when the hub dies
MAX_LOAD_SECONDS = 15.0


def _object_id(worker: int, seq: int, n: int) -> str:
    return f"indicator--{worker:08x}-0000-4000-8000-{seq * PER_ENVELOPE + n:012x}"


def _envelope(worker: int, seq: int) -> tuple[bytes, list[str]]:
    ids = [_object_id(worker, seq, n) for n in range(PER_ENVELOPE)]
    objects = [
        f'{{"type":"indicator","spec_version":"2.1","id":"{oid}","created":"2026-01-01T00:00:00.000Z",'
        f'"modified":"2026-01-01T00:00:00.000Z","pattern":"[domain-name:value = \'w{worker}-{seq}-{n}.example\']",'
        f'"pattern_type":"stix","valid_from":"2026-01-01T00:00:00Z"}}'
        for n, oid in enumerate(ids)
    ]
    return ('{"objects":[' + ",".join(objects) + "]}").encode(), ids


@dataclass
class Load:
    """What the posting threads saw: acknowledged envelopes and anything unexpected."""

    url: str
    killing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[tuple[str, list[str]]] = field(default_factory=list)
    cut_off: int = 0  # posts that died with the hub (in flight at the kill)
    unexpected: list[str] = field(default_factory=list)

    def post_until_killed(self, worker: int) -> None:
        with requests.Session() as session:
            seq = 0
            while True:
                body, ids = _envelope(worker, seq)
                seq += 1
                try:
                    response = session.post(self.url, data=body, headers=HEADERS, auth=AUTH, timeout=10)
                except requests.RequestException as exc:
                    with self.lock:
                        if self.killing.is_set():
                            self.cut_off += 1
                        else:
                            self.unexpected.append(f"worker {worker}: {exc!r} before the kill")
                    return
                with self.lock:
                    if response.status_code == 202:
                        self.acked.append((response.json()["id"], ids))
                    else:
                        self.unexpected.append(f"worker {worker}: {response.status_code} {response.text[:200]}")
                        return


def _wait_for_acks(load: Load, threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + MAX_LOAD_SECONDS
    while time.monotonic() < deadline:
        with load.lock:
            if len(load.acked) >= ACKS_BEFORE_KILL or load.unexpected:
                return
        if not any(t.is_alive() for t in threads):
            return
        time.sleep(0.01)


def _journal_backlog(data_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM envelopes WHERE processed = 0").fetchone()[0])
    finally:
        conn.close()


def _final_status(session: requests.Session, base: str, status_id: str, deadline: float) -> dict[str, Any]:
    while True:
        response = session.get(f"{base}/api/status/{status_id}/", headers=HEADERS, auth=AUTH, timeout=10)
        assert response.status_code == 200, (status_id, response.status_code, response.text)
        status: dict[str, Any] = response.json()
        if status["status"] == "complete" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _all_object_ids(session: requests.Session, base: str) -> list[str]:
    url = f"{base}/api/collections/{INBOX}/objects/"
    params: dict[str, str] = {"limit": "1000"}
    ids: list[str] = []
    while True:
        response = session.get(url, params=params, headers=HEADERS, auth=AUTH, timeout=30)
        assert response.status_code == 200, response.text
        page = response.json()
        ids.extend(o["id"] for o in page.get("objects", []))
        if not page["more"]:
            return ids
        params = {"limit": "1000", "next": page["next"]}


@pytest.mark.slow
def test_every_acknowledged_envelope_survives_sigkill(tmp_path: Path) -> None:
    config, data_dir = write_config(tmp_path), tmp_path / "data"
    port = free_port()
    first = start_process_hub(config, data_dir, port)
    second = None
    try:
        load = Load(url=f"http://127.0.0.1:{port}/api/collections/{INBOX}/objects/")
        threads = [threading.Thread(target=load.post_until_killed, args=(w,), daemon=True) for w in range(POSTERS)]
        for thread in threads:
            thread.start()
        _wait_for_acks(load, threads)
        load.killing.set()
        kill_hard(first)  # SIGKILL to the whole process group, posts still in flight
        for thread in threads:
            thread.join(15)
        assert not load.unexpected, load.unexpected
        assert len(load.acked) >= ACKS_BEFORE_KILL, f"only {len(load.acked)} envelopes acknowledged"
        assert load.cut_off >= 1, "the kill should interrupt posts in flight"
        backlog = _journal_backlog(data_dir)

        port = free_port()
        second = start_process_hub(config, data_dir, port)
        base = f"http://127.0.0.1:{port}"
        with requests.Session() as session:
            deadline = time.monotonic() + 30
            for status_id, ids in load.acked:
                status = _final_status(session, base, status_id, deadline)
                assert status["status"] == "complete", (backlog, status)
                assert (status["total_count"], status["success_count"], status["failure_count"]) == \
                    (PER_ENVELOPE, PER_ENVELOPE, 0), status
                assert {s["id"] for s in status["successes"]} == set(ids)

            stored = _all_object_ids(session, base)
            assert len(stored) == len(set(stored)), "an object is stored twice after replay"
            missing = {i for _, ids in load.acked for i in ids} - set(stored)
            assert not missing, f"{len(missing)} acknowledged objects lost, e.g. {sorted(missing)[:3]}"
            for _, ids in (load.acked[0], load.acked[-1]):
                response = session.get(f"{base}/api/collections/{INBOX}/objects/{ids[-1]}/", headers=HEADERS,
                                       auth=AUTH, timeout=10)
                assert response.status_code == 200, response.text
                assert [o["id"] for o in response.json()["objects"]] == [ids[-1]]

        report = verify_chain(data_dir / "audit.db")
        assert report.broken_at is None, report
        accepted = {e["payload"]["status_id"] for e in read_entries(data_dir / "audit.db", kind="envelope.accepted",
                                                                     limit=1_000_000)}
        assert {status_id for status_id, _ in load.acked} <= accepted

        second.send_signal(signal.SIGTERM)  # a clean stop after recovery, and the chain still verifies
        assert second.wait(15) == 0
        assert verify_chain(data_dir / "audit.db").broken_at is None
    finally:
        for proc in (first, second):
            if proc is not None:
                if proc.poll() is None:
                    kill_hard(proc)
                if proc.stderr is not None:
                    proc.stderr.close()

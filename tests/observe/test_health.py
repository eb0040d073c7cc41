"""/healthz and /readyz on a real hub: ready while the store takes writes and the journal drains."""

import subprocess
import sys
import time
from pathlib import Path

import requests

from exchange.observe import health
from exchange.observe.health import drain_verdict
from tests.hubs import INBOX, Hub, serve_in_thread
from tests.observe.support import config_with
from tests.taxii.helpers import indicator

TAXII = "application/taxii+json;version=2.1"
SECOND = 1_000_000  # microseconds


def readyz(hub: Hub) -> requests.Response:
    return requests.get(f"{hub.base}/readyz", timeout=30)


def wait_ready(hub: Hub, ready: bool, within: float = 10.0) -> requests.Response:
    """/readyz until it says `ready` (verdicts are cached for a second, so a change shows a little later)."""
    deadline = time.monotonic() + within
    while True:
        resp = readyz(hub)
        if (resp.status_code == 200) is ready or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_health_and_readiness_answer_without_credentials(hub: Hub) -> None:
    alive = requests.get(f"{hub.base}/healthz", timeout=10)
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    ready = readyz(hub)
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"store": "ok", "journal": "ok", "processing": "ok"}}


def test_not_ready_while_another_process_holds_the_store_write_lock(hub: Hub) -> None:
    # Another writer (a backup tool doing it wrong, a stuck migration) holds the lock: writes cannot commit.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(hub.data_dir / 'store.db')!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        time.sleep(health.CACHE_FOR)
        resp = readyz(hub)
        assert resp.status_code == 503, resp.text
        checks = resp.json()["checks"]
        assert checks["store"].startswith("store write did not commit"), checks
        assert checks["journal"] == "ok"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert wait_ready(hub, True).status_code == 200


def test_not_ready_when_the_store_is_closed(hub: Hub) -> None:
    hub.call(lambda s: s.store.close())
    time.sleep(health.CACHE_FOR)
    resp = readyz(hub)
    assert resp.status_code == 503
    assert resp.json()["ready"] is False
    assert "store not writable" in resp.json()["checks"]["store"]
    assert requests.get(f"{hub.base}/healthz", timeout=10).status_code == 200  # alive, just not ready


def test_not_ready_while_the_journal_does_not_drain(tmp_path: Path) -> None:
    with serve_in_thread(config_with(tmp_path, "journal_stall = 1")) as hub:
        hub.call(lambda s: s.processor.pause())
        resp = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": [indicator(1)]},
                             auth=("alice", "alice-pw"), headers={"Content-Type": TAXII, "Accept": TAXII},
                             timeout=10)
        assert resp.status_code == 202
        assert readyz(hub).status_code == 200  # just arrived: a backlog is not a stall
        stalled = wait_ready(hub, False)
        assert stalled.status_code == 503
        assert stalled.json()["checks"]["processing"].startswith("stalled: 1 envelope(s) unprocessed")
        hub.call(lambda s: s.processor.resume())
        hub.call(lambda s: s.processor.wait_idle())
        assert wait_ready(hub, True).status_code == 200


def test_drain_verdict() -> None:
    now = 1000 * SECOND
    assert drain_verdict(0, None, 0, now, stall=60) is None
    # Waiting long, but the processor committed recently: working through a long backlog.
    assert drain_verdict(500, now - 300 * SECOND, now - 2 * SECOND, now, stall=60) is None
    # Nothing committed for long, but the oldest arrived just now (the hub was idle).
    assert drain_verdict(1, now - 1 * SECOND, now - 900 * SECOND, now, stall=60) is None
    verdict = drain_verdict(3, now - 90 * SECOND, now - 80 * SECOND, now, stall=60)
    assert verdict == "stalled: 3 envelope(s) unprocessed, the oldest for 90.0s, nothing processed for 80.0s"


def test_the_container_probe_exits_by_the_answer(hub: Hub) -> None:
    def probe(url: str) -> int:
        return subprocess.run([sys.executable, "-m", "exchange.observe.probe", url], capture_output=True,
                              timeout=30).returncode

    assert probe(f"{hub.base}/healthz") == 0
    hub.call(lambda s: s.store.close())
    time.sleep(health.CACHE_FOR)
    assert probe(f"{hub.base}/readyz") == 1

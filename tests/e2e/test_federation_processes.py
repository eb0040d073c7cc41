"""Acceptance for #4: three national hubs as separate processes in a ring, plus a medallion peer.

Objects posted in one country (and at the medallion CERT) reach every hub canonical and deduplicated; a hub
killed with SIGKILL mid-sync and restarted loses and duplicates nothing; the ring does not loop.
"""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen
from typing import Any

import msgpack
import pytest
from taxii2client.v21 import Collection

from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from scripts.medallion_peer import run_medallion
from tests.federation import ENV, Link, MeshHub, mesh_config
from tests.hubs import CANONICAL, INBOX, free_port, kill_hard, start_process_hub
from tests.peering import TAXII, peer_block, wait_for

pytestmark = pytest.mark.slow


def indicators(start: int, count: int, tag: str, *, upper: bool = False) -> list[dict[str, Any]]:
    def value(n: int) -> str:
        text = f"{tag}{n}.worm.example"
        return text.upper() if upper else text

    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--20000000-0000-4000-8000-{n:012d}",
             "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
             "pattern": f"[domain-name:value = '{value(n)}']", "pattern_type": "stix",
             "valid_from": "2026-01-01T00:00:00Z"} for n in range(start, start + count)]


def canonical_ids(data_dir: Path) -> set[str]:
    """Latest canonical indicators of a hub, read from its store file (the hub may be running)."""
    path = data_dir / "store.db"
    if not path.exists():
        return set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT stix_id FROM objects WHERE collection = ? AND type = 'indicator'"
                                           " AND is_last = 1", (CANONICAL,))}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def canonical_versions(data_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{data_dir / 'store.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM objects WHERE collection = ?", (CANONICAL,)).fetchone()[0])
    finally:
        conn.close()


def journaled_refs(data_dir: Path, account: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT pending FROM envelopes WHERE account = ?", (account,)).fetchall()
    finally:
        conn.close()
    return [tuple(ref) for (pending,) in rows for ref in msgpack.unpackb(pending)]


def post(port: int, user: str, password: str, objects: list[dict[str, Any]]) -> None:
    import requests

    for i in range(0, len(objects), 100):
        response = requests.post(f"http://127.0.0.1:{port}/api/collections/{INBOX}/objects/",
                                 json={"objects": objects[i:i + 100]}, auth=(user, password),
                                 headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=30)
        assert response.status_code == 202, response.text


@contextmanager
def processes() -> Iterator[dict[str, Popen[bytes]]]:
    running: dict[str, Popen[bytes]] = {}
    try:
        yield running
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def test_three_hubs_and_a_medallion_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**ENV, "MEDALLION_PASSWORD": "bench-password"}.items():
        monkeypatch.setenv(key, value)
    a, b, c = (MeshHub("CERT-DE", "DE", free_port()), MeshHub("CERT-FR", "FR", free_port()),
               MeshHub("CERT-PL", "PL", free_port()))
    from_medallion = indicators(0, 300, "m")
    from_a = indicators(1000, 200, "a")
    from_c = indicators(250, 100, "m", upper=True)  # 50 of them are medallion's, spelled in capitals
    expected = {indicator_id(canonical_pattern(o["pattern"])) for o in from_medallion + from_a + from_c}
    assert len(expected) == 550
    with run_medallion(tmp_path / "medallion") as medallion, processes() as running:
        collection = Collection(medallion.collection_url, user=medallion.user, password=medallion.password)
        collection.add_objects({"objects": from_medallion})
        medallion_peer = peer_block(
            id="medallion", name="Reference CERT", country="NL", api_root=medallion.api_root_url,
            pull=[medallion.collection_id], push=[medallion.collection_id], push_interval=0.3,
            auth={"username": medallion.user, "password_env": "MEDALLION_PASSWORD"}, poll_interval=0.3,
            page_size=100, timeout=10)
        configs = {
            a: mesh_config(tmp_path / "a", a, [Link(c, pull=True, interval=0.3), Link(b)]),
            b: mesh_config(tmp_path / "b", b, [Link(a, pull=True, interval=0.3), Link(c)]),
            c: mesh_config(tmp_path / "c", c, [Link(b, pull=True, interval=0.3), Link(a)]),
        }
        configs[a].write_text(configs[a].read_text() + medallion_peer)
        data = {h: tmp_path / h.peer_id / "data" for h in (a, b, c)}
        for hub in (a, b, c):
            running[hub.name] = start_process_hub(configs[hub], data[hub], hub.port)
        post(a.port, "alice", "alice-pw", from_a)
        post(c.port, "writer", "writer-pw", from_c)
        # Kill B with SIGKILL part-way through its sync, then bring it back.
        wait_for(lambda: len(canonical_ids(data[b])) >= 50, within=60, what="B part-way")
        kill_hard(running[b.name])
        assert len(canonical_ids(data[b])) < 550, "the kill came after B had everything"
        running[b.name] = start_process_hub(configs[b], data[b], b.port)
        for hub in (a, b, c):
            wait_for(lambda hub=hub: canonical_ids(data[hub]) == expected, within=120,  # type: ignore[misc]
                     what=f"all 550 canonical indicators at {hub.name}")
        # Nothing journaled twice: each (id, version) a peer sent arrived once (B's restart resumed exactly).
        for hub, account in ((a, "peer:cert-pl"), (b, "peer:cert-de"), (c, "peer:cert-fr"), (a, "peer:medallion")):
            refs = journaled_refs(data[hub], account)
            assert refs and len(refs) == len(set(refs)), (hub.name, account)
        # The ring is quiet: several poll intervals later, no hub made a new version of anything.
        before = [canonical_versions(data[h]) for h in (a, b, c)]
        time.sleep(2.0)
        assert [canonical_versions(data[h]) for h in (a, b, c)] == before
        # A pushed its canonical indicators to the medallion CERT.
        pushed: set[str] = set()
        envelope: dict[str, Any] = collection.get_objects(type="indicator")
        while True:
            pushed |= {o["id"] for o in envelope.get("objects", [])}
            if not envelope.get("more"):
                break
            envelope = collection.get_objects(type="indicator", next=envelope["next"])
        assert expected <= pushed
    for proc in running.values():
        assert proc.poll() is not None

"""Test harness for federation: hubs whose config carries [[peers]] (and extra accounts), run in a thread."""

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import requests

from exchange.app import PEERING, Peering
from exchange.demo.topology import toml_value
from exchange.ingest.peers import PeerHealth
from exchange.policy.credentials import hash_password
from tests.hubs import CANONICAL, INBOX, PASSWORDS, Hub, serve_in_thread, write_config

PEER_PASSWORD = "peer-b-password"
TAXII = "application/taxii+json;version=2.1"
ALICE = ("alice", PASSWORDS["alice"])


def peer_block(**fields: Any) -> str:
    """One [[peers]] table; nested tables (auth, agreement) become inline tables."""
    lines = ["", "[[peers]]", *(f"{k} = {toml_value(v)}" for k, v in fields.items())]
    return "\n".join(lines) + "\n"


def peer_account(username: str, password: str = PEER_PASSWORD, *, can_read: tuple[str, ...] = ("inbox",),
                 country: str | None = None) -> str:
    """An [[accounts]] table for a peer hub that pulls from this one."""
    lines = ["", "[[accounts]]", f"username = {toml_value(username)}",
             f"password_hash = {toml_value(hash_password(password))}", f"can_read = {toml_value(list(can_read))}"]
    if country:
        lines.append(f"country = {toml_value(country)}")
    return "\n".join(lines) + "\n"


def hub_config(directory: Path, extra: str = "", **config: int) -> Path:
    """The standard test hub config (tests/hubs.py) plus extra TOML (accounts, peers) appended."""
    directory.mkdir(parents=True, exist_ok=True)
    path = write_config(directory, **config)
    path.write_text(path.read_text() + extra)
    return path


def config_hub(path: Path, *, env: Mapping[str, str] | None = None) -> AbstractContextManager[Hub]:
    """The real app from a config file on a real socket, its loop in a thread (restartable on the same path)."""
    return serve_in_thread(path, env=env)


def peering(hub: Hub) -> Peering:
    assert hub.app is not None
    return hub.app[PEERING]


def health(hub: Hub) -> dict[str, PeerHealth]:
    """Health of every pulled peer collection, by 'peer/collection'."""
    assert hub.loop is not None
    rows = asyncio.run_coroutine_threadsafe(peering(hub).health(), hub.loop).result(30)
    return {f"{h.peer}/{h.collection}": h for h in rows}


def wait_for(check: Callable[[], Any], *, within: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {within:.0f}s waiting for {what}; last value: {value!r}")


def journal_pulled(data_dir: Path, account: str) -> tuple[int, int]:
    """(envelopes, objects) journaled under a peer account, read from the file."""
    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT count(*), coalesce(sum(total), 0) FROM envelopes WHERE account = ?",
                           (account,)).fetchone()
        return int(row[0]), int(row[1])
    finally:
        conn.close()


def journal_object_ids(data_dir: Path, account: str) -> list[str]:
    """Every (id) journaled under a peer account, duplicates included, in journal order."""
    import msgpack

    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT pending FROM envelopes WHERE account = ? ORDER BY seq", (account,)).fetchall()
    finally:
        conn.close()
    return [ref[0] for (pending,) in rows for ref in msgpack.unpackb(pending)]


def stored_count(data_dir: Path, collection: str) -> int:
    """Objects (all versions) the hub's store holds in a collection, read from the file."""
    conn = sqlite3.connect(f"file:{data_dir / 'store.db'}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM objects WHERE collection = ?", (collection,)).fetchone()[0])
    finally:
        conn.close()


def indicators(start: int, count: int, *, tag: str = "a") -> list[dict[str, Any]]:
    """`count` distinct domain indicators, numbered from `start` (ids and values follow the number)."""
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
             "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
             "pattern": f"[domain-name:value = '{tag}{n}.pull.example']", "pattern_type": "stix",
             "valid_from": "2026-01-01T00:00:00Z"} for n in range(start, start + count)]


def post_all(hub: Hub, objects: list[dict[str, Any]], batch: int = 250) -> None:
    """POST to the hub's inbox as alice and wait until the hub has processed everything."""
    with requests.Session() as session:
        for i in range(0, len(objects), batch):
            response = session.post(hub.collection_url(INBOX) + "objects/", json={"objects": objects[i:i + batch]},
                                    auth=ALICE, headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=30)
            assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())


def canonical_objects(hub: Hub) -> list[dict[str, Any]]:
    """The canonical indicators of a hub (first page), read over TAXII as alice."""
    response = requests.get(hub.collection_url(CANONICAL) + "objects/", auth=ALICE, headers={"Accept": TAXII},
                            params={"match[type]": "indicator", "limit": "1000"}, timeout=30)
    assert response.status_code == 200, response.text
    objects: list[dict[str, Any]] = response.json().get("objects", [])
    return objects


def puller_config(directory: Path, a: Hub, *, page_size: int = 100) -> Path:
    """A hub config with hub A as peer `hub-a` (DE), pulling A's inbox as `hub-b` every 0.2 s."""
    return hub_config(directory, peer_block(
        id="hub-a", name="CERT-A", country="DE", api_root=a.api, pull=[INBOX], pull_into="inbox", trust=0.8,
        auth={"username": "hub-b", "password_env": "HUB_A_PASSWORD"}, poll_interval=0.2, page_size=page_size,
        timeout=5))

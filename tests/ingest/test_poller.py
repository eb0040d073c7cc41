"""The peer poller against small TAXII servers on loopback: cursors, ties, resumption, quirks, backoff.

Each fake server is a real aiohttp app; the poller writes to a real journal. Pure parts (page shape,
backoff, lag) are checked on their own.
"""

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from exchange.audit.log import AuditLog, read_entries
from exchange.config import parse_settings
from exchange.config_peers import PeerSettings
from exchange.errors import ConfigError, TransientError
from exchange.ingest.journal import Journal
from exchange.ingest.peers import PeerState, PeerSync, lag_seconds, peer_credentials
from exchange.ingest.poller import Backlog, Poller, PullTarget, read_page, repair
from exchange.model.timestamps import format_timestamp, parse_timestamp
from exchange.policy.backoff import backoff_delay
from exchange.taxii.client import MalformedResponse, TaxiiClient, TaxiiClientError
from tests.hubs import INBOX

TAXII = "application/taxii+json;version=2.1"
T0 = parse_timestamp("2026-03-01T00:00:00.000000Z")


def obj(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '203.0.113.{n}']", "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z", **extra}


@dataclass
class FakeCollection:
    """A TAXII collection with knobs for the behaviours real servers show."""

    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (date_added micros, object)
    date_headers: bool = True
    next_tokens: bool = True
    forget_next: bool = False  # 400 for every `next`, as medallion after its session timeout
    fail: set[int] = field(default_factory=set)  # 1-based request numbers answered with an HTML 500
    status: int | None = None  # answer every objects request with this status
    requests: list[dict[str, str]] = field(default_factory=list)

    def add(self, at: int, *objects: dict[str, Any]) -> None:
        self.rows += [(at, o) for o in objects]


def fake_app(coll: FakeCollection) -> web.Application:
    async def objects(request: web.Request) -> web.Response:
        coll.requests.append(dict(request.query))
        if len(coll.requests) in coll.fail or coll.status == 500:
            return web.Response(status=500, text="<html><body><h1>Internal Server Error</h1></body></html>",
                                content_type="text/html")
        if coll.status is not None:
            return web.json_response({"title": "nope"}, status=coll.status)
        after = parse_timestamp(request.query["added_after"]) if "added_after" in request.query else None
        rows = [r for r in coll.rows if after is None or r[0] > after]
        if "next" in request.query and coll.forget_next:
            return web.json_response({"title": "'next' not valid"}, status=400, content_type="application/taxii+json")
        start = int(request.query.get("next", "0"))
        limit = int(request.query["limit"])
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        body: dict[str, Any] = {"more": more}
        if page:
            body["objects"] = [o for _, o in page]
        if more and coll.next_tokens:
            body["next"] = str(start + limit)
        headers = {}
        if page and coll.date_headers:
            headers = {"X-TAXII-Date-Added-First": format_timestamp(page[0][0]),
                       "X-TAXII-Date-Added-Last": format_timestamp(page[-1][0])}
        return web.Response(body=orjson.dumps(body), content_type="application/taxii+json", headers=headers)

    async def manifest(request: web.Request) -> web.Response:
        wanted = request.query.get("match[id]")
        entries = [{"id": o["id"], "date_added": format_timestamp(at), "version": o.get("modified"),
                    "media_type": "application/stix+json;version=2.1"} for at, o in coll.rows if o["id"] == wanted]
        return web.Response(body=orjson.dumps({"objects": entries}), content_type="application/taxii+json")

    async def discovery(request: web.Request) -> web.Response:
        # OpenTAXII advertises API roots as relative URLs.
        return web.Response(body=orjson.dumps({"title": "fake", "api_roots": ["/api/"], "default": "/api/"}),
                            content_type="application/taxii+json")

    app = web.Application()
    app.router.add_get("/api/collections/c1/objects/", objects)
    app.router.add_get("/api/collections/c1/manifest/", manifest)
    app.router.add_get("/taxii2/", discovery)
    return app


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def peer_settings(**fields: Any) -> PeerSettings:
    raw = {"api_roots": [{"path": "api", "collections": [{"id": INBOX, "alias": "inbox", "title": "Inbox"}]}],
           "peers": [{"id": "fake", "name": "Fake CERT", "country": "IT", "pull": ["c1"], **fields}]}
    return parse_settings(raw, base_dir=Path("/tmp")).peers[0]


@dataclass
class Rig:
    journal: Journal
    audit: AuditLog
    session: aiohttp.ClientSession
    rng: random.Random

    def poller(self, peer: PeerSettings) -> Poller:
        async def never_full() -> None:
            return None

        return Poller(PullTarget(peer=peer, collection="c1", into_api_root="api"),
                      TaxiiClient(self.session, peer_credentials(peer, {}), timeout=peer.timeout), self.journal,
                      self.audit, wake=lambda: None, backlog=Backlog(self.journal, never_full, high=10**9),
                      rng=self.rng)

    async def pulled_ids(self) -> list[str]:
        envelopes = await self.journal.unprocessed(10_000)
        assert all(e.account == "peer:fake" and e.collection_id == INBOX for e in envelopes)
        return [o["id"] for e in envelopes for o in orjson.loads(e.body)["objects"]]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    journal, audit = Journal(tmp_path / "journal.db"), AuditLog(tmp_path / "audit.db")
    await journal.start()
    await audit.start()
    async with aiohttp.ClientSession() as session:
        yield Rig(journal, audit, session, random.Random(7))
    await journal.close()
    await audit.close()


async def sync_row(journal: Journal) -> PeerSync:
    [row] = await journal.peer_sync()
    return row


async def test_a_round_journals_every_page_with_its_cursor(rig: Rig, tmp_path: Path) -> None:
    coll = FakeCollection()
    for n in range(7):
        coll.add(T0 + n, obj(n))
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", page_size=3))
        await poller.load()
        await poller.sync_round()
        assert await rig.pulled_ids() == [obj(n)["id"] for n in range(7)]
        row = await sync_row(rig.journal)
        assert (row.cursor, row.objects_pulled, row.pages_pulled, row.in_round) == (format_timestamp(T0 + 6), 7, 3,
                                                                                     False)
        assert row.state is PeerState.OK and row.caught_up_at is not None
        assert all(q["match[version]"] == "all" and q["limit"] == "3" for q in coll.requests)

        coll.add(T0 + 100, obj(100))
        await poller.sync_round()  # the next round asks only for what is new
        assert coll.requests[-1]["added_after"] == format_timestamp(T0 + 6)
        assert (await rig.pulled_ids())[-1] == obj(100)["id"]
    entries = read_entries(tmp_path / "audit.db", kind="envelope.accepted")
    assert len(entries) == 4 and {e["account"] for e in entries} == {"peer:fake"}


async def test_an_interrupted_round_resumes_without_gap_or_duplicate_when_date_added_ties(rig: Rig) -> None:
    """medallion gives every object of one POST the same date_added, so a page boundary can split a tie."""
    coll = FakeCollection(fail={3})
    for group, size in enumerate((3, 4, 3)):
        coll.add(T0 + group * 1000, *(obj(group * 10 + i) for i in range(size)))
    async with serve(fake_app(coll)) as base:
        peer = peer_settings(api_root=f"{base}/api/", page_size=2)
        poller = rig.poller(peer)
        await poller.load()
        with pytest.raises(TransientError, match="HTTP 500"):
            await poller.sync_round()  # pages 1-2 journaled (4 objects); page 3 fails mid-tie
        assert (await sync_row(rig.journal)).in_round

        restarted = rig.poller(peer)  # a new poller reads the cursor back, as after a restart
        await restarted.load()
        await restarted.sync_round()
    ids = await rig.pulled_ids()
    assert sorted(ids) == sorted(o["id"] for _, o in coll.rows) and len(ids) == len(set(ids)) == 10
    # Resumed 1 us before the cursor (the tie at T0+1000), dropping what the last page held.
    assert coll.requests[3]["added_after"] == format_timestamp(T0 + 1000 - 1)


async def test_a_server_without_next_is_paged_by_added_after(rig: Rig) -> None:
    coll = FakeCollection(next_tokens=False)
    for n in range(5):
        coll.add(T0 + n, obj(n))
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", page_size=2))
        await poller.load()
        await poller.sync_round()
    assert await rig.pulled_ids() == [obj(n)["id"] for n in range(5)]
    assert [q.get("added_after") for q in coll.requests] == [None, format_timestamp(T0 + 1),
                                                             format_timestamp(T0 + 3)]


async def test_without_date_added_headers_the_cursor_comes_from_the_manifest(rig: Rig) -> None:
    coll = FakeCollection(date_headers=False)
    for n in range(3):
        coll.add(T0 + n, obj(n))
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", page_size=10))
        await poller.load()
        await poller.sync_round()
        assert (await sync_row(rig.journal)).cursor == format_timestamp(T0 + 2)
        await poller.sync_round()
        assert coll.requests[-1]["added_after"] == format_timestamp(T0 + 2)
    assert len(await rig.pulled_ids()) == 3


async def test_a_forgotten_next_resumes_from_the_durable_cursor(rig: Rig) -> None:
    coll = FakeCollection(forget_next=True)
    for n in range(5):
        coll.add(T0 + n, obj(n))
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", page_size=2))
        await poller.load()
        with pytest.raises(TaxiiClientError, match="'next' not valid"):  # refused twice in one round: give up the round
            await poller.sync_round()
        delay = await poller.poll_once()  # the next round goes on from the cursor
        assert delay > 0
    ids = await rig.pulled_ids()
    assert len(ids) == len(set(ids)) and ids[:4] == [obj(n)["id"] for n in range(4)]


async def test_discovery_with_relative_urls_and_the_opentaxii_spec_version_quirk(rig: Rig) -> None:
    coll = FakeCollection()
    coll.add(T0, obj(1, spec_version="indicator"))
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(discovery=f"{base}/taxii2/"))
        assert await poller.poll_once() == 60.0
    [envelope] = await rig.journal.unprocessed(10)
    assert orjson.loads(envelope.body)["objects"][0]["spec_version"] == "2.1"


@pytest.mark.parametrize(("status", "state", "text"), [
    (500, PeerState.BACKING_OFF, "HTTP 500: Internal Server Error"),  # medallion-style HTML error page
    (401, PeerState.UNAUTHORIZED, "unauthorized"),
    (404, PeerState.BACKING_OFF, "HTTP 404: nope"),
])
async def test_errors_back_off_with_full_jitter_and_show_in_health(rig: Rig, status: int, state: PeerState,
                                                                   text: str) -> None:
    coll = FakeCollection(status=status)
    async with serve(fake_app(coll)) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", poll_interval=2))
        delays = [await poller.poll_once() for _ in range(4)]
    expected = random.Random(7)
    assert delays == [expected.uniform(0, 2 * 2.0 ** n) for n in range(1, 5)]
    row = await sync_row(rig.journal)
    assert (row.state, row.error_count) == (state, 4)
    assert row.last_error is not None and text in row.last_error


async def test_garbage_quarantines_and_is_kept(rig: Rig) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b'{"objects": [{"type": "indicator"', content_type="application/taxii+json")

    app = web.Application()
    app.router.add_get("/api/collections/c1/objects/", garbage)
    async with serve(app) as base:
        poller = rig.poller(peer_settings(api_root=f"{base}/api/", quarantine=900))
        assert await poller.poll_once() == 900
    row = await sync_row(rig.journal)
    assert row.state is PeerState.QUARANTINED and row.last_error and "not valid JSON" in row.last_error
    [(reason, content_type, body)] = await rig.journal.quarantined("fake", "c1")
    assert body == b'{"objects": [{"type": "indicator"' and content_type.startswith("application/taxii+json")
    assert "not valid JSON" in reason
    assert await rig.journal.unprocessed(10) == []  # garbage never reaches the processor


def test_read_page_names_what_is_wrong() -> None:
    assert read_page({"more": False}, "u").objects == []
    assert read_page({"objects": [obj(1)], "more": True, "next": 5}, "u").next == "5"
    for payload, why in (({"objects": {}}, "'objects' is a dict"), ({"objects": [1]}, "objects\\[0\\]"),
                         ({"objects": [{"id": "x"}]}, "objects\\[0\\]"), ({"more": "yes"}, "'more'"),
                         ({"next": [1]}, "'next'")):
        with pytest.raises(MalformedResponse, match=why):
            read_page(payload, "u")


def test_repair_touches_only_the_quirk() -> None:
    assert repair(obj(1, spec_version="indicator"))["spec_version"] == "2.1"
    assert repair(obj(1)) == obj(1)


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    rng = random.Random(1)
    for attempt in range(1, 30):
        delay = backoff_delay(attempt, 1.0, 300.0, rng)
        assert 0 <= delay <= min(300.0, 2.0 ** attempt)
    assert backoff_delay(10_000, 1.0, 300.0, random.Random(2)) <= 300.0


def test_lag_is_time_since_caught_up_not_the_age_of_the_newest_object() -> None:
    idle = PeerSync(peer="p", collection="c", cursor_micros=T0 - 86_400_000_000, caught_up_at=T0 - 5_000_000)
    assert lag_seconds(idle, T0) == 5.0
    catching_up = PeerSync(peer="p", collection="c", cursor_micros=T0 - 60_000_000, in_round=True,
                           caught_up_at=T0 - 1_000_000)
    assert lag_seconds(catching_up, T0) == 60.0
    assert lag_seconds(PeerSync(peer="p", collection="c"), T0) is None


def test_credentials_come_from_the_environment_only() -> None:
    basic = peer_settings(api_root="http://x/api/", auth={"username": "u", "password_env": "P"})
    assert peer_credentials(basic, {"P": "s3cret"}).password == "s3cret"
    with pytest.raises(ConfigError, match="peer 'fake': environment variable P"):
        peer_credentials(basic, {})
    token = peer_settings(api_root="http://x/api/", auth={"token_env": "T"})
    assert peer_credentials(token, {"T": "tok"}).token == "tok"

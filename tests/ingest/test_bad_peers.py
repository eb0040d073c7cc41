"""Bad peers (#4 acceptance): fake TAXII servers on loopback that fail in every way real ones do.

The hub pulls from all of them at once next to a good peer (a real hub): it keeps answering its own
TAXII API, the good peer keeps syncing, and health names the cause for each bad one.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import requests
from aiohttp import web

from exchange.ingest.peers import PeerState
from tests.hubs import INBOX, PASSWORDS
from tests.peering import (
    PEER_PASSWORD,
    config_hub,
    health,
    hub_config,
    indicators,
    peer_account,
    peer_block,
    post_all,
    puller_config,
    stored_count,
    wait_for,
)

TAXII = "application/taxii+json;version=2.1"
HUGE_LIMIT = 64 * 1024
OBJECTS = "/{peer}/collections/c1/objects/"


def bad_peers_app(release: asyncio.Event, hits: dict[str, int]) -> web.Application:
    """One server, one API root per misbehaviour."""
    def counted(name: str, handler):  # type: ignore[no-untyped-def]
        async def wrapper(request: web.Request) -> web.StreamResponse:
            hits[name] = hits.get(name, 0) + 1
            return await handler(request)  # type: ignore[no-any-return]
        return wrapper

    async def error_500(request: web.Request) -> web.Response:
        return web.Response(status=500, text="<html><h1>Internal Server Error</h1>database is locked</html>",
                            content_type="text/html")

    async def bad_json(request: web.Request) -> web.Response:
        return web.Response(body=b'{"more": false, "objects": [{"type": "indicator",', content_type=TAXII.split(";")[0])

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": TAXII})  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        await response.write(b'{"objects": [' + b'{"type": "indicator", "id": "x"},' * 20_000)
        return response

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=orjson.dumps({"more": False}), content_type="application/taxii+json")

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=401, body=orjson.dumps({"title": "Unauthorized"}),
                            content_type="application/taxii+json")

    app = web.Application()
    for name, handler in (("e500", error_500), ("badjson", bad_json), ("huge", huge), ("html", html),
                          ("hang", hang), ("refuse", refuse)):
        app.router.add_get(OBJECTS.format(peer=name), counted(name, handler))
    return app


@contextmanager
def bad_peers() -> Iterator[tuple[str, dict[str, int]]]:
    """The fake peers in a thread of their own; yields their base URL and per-peer request counts."""
    box: dict[str, object] = {}
    ready = threading.Event()
    hits: dict[str, int] = {}

    async def main() -> None:
        stop, release = asyncio.Event(), asyncio.Event()
        runner = web.AppRunner(bad_peers_app(release, hits))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box.update(port=site._server.sockets[0].getsockname()[1], stop=stop,  # type: ignore[union-attr]
                   loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        release.set()  # let the hanging handler finish so the runner shuts down at once
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}", hits
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)


def test_bad_peers_never_hurt_the_hub_or_the_good_peer(tmp_path: Path) -> None:
    with bad_peers() as (base, hits), \
            config_hub(hub_config(tmp_path / "a", peer_account("hub-b", can_read=("inbox",)))) as good:
        post_all(good, indicators(0, 50))
        peers = "".join(peer_block(id=name, name=f"Bad {name}", country="XX", api_root=f"{base}/{name}/",
                                   pull=["c1"], poll_interval=0.2, timeout=0.5, max_page_bytes=HUGE_LIMIT)
                        for name in ("e500", "badjson", "huge", "html", "hang", "refuse"))
        config = puller_config(tmp_path / "b", good)
        config.write_text(config.read_text() + peers)
        with config_hub(config, env={"HUB_A_PASSWORD": PEER_PASSWORD}) as hub:
            wait_for(lambda: stored_count(hub.data_dir, INBOX) == 50, what="the good peer's objects")

            def all_failed() -> bool:
                states = health(hub)
                return all(states[f"{n}/c1"].error_count >= 1 for n in ("e500", "badjson", "huge", "html", "hang",
                                                                        "refuse"))
            wait_for(all_failed, within=15, what="every bad peer to have failed once")

            # The hub answers its own API promptly while the bad peers misbehave.
            started = time.monotonic()
            response = requests.get(f"{hub.base}/taxii2/", auth=("alice", PASSWORDS["alice"]),
                                    headers={"Accept": TAXII}, timeout=5)
            assert response.status_code == 200 and time.monotonic() - started < 2.0

            # The good peer keeps syncing next to them.
            post_all(good, indicators(50, 25))
            wait_for(lambda: stored_count(hub.data_dir, INBOX) == 75, what="the good peer's later objects")

            states = health(hub)
            expect = {
                "e500": (PeerState.BACKING_OFF, "HTTP 500: Internal Server Error database is locked"),
                "badjson": (PeerState.QUARANTINED, "not valid JSON"),
                "huge": (PeerState.QUARANTINED, f"larger than max_page_bytes {HUGE_LIMIT}"),
                "html": (PeerState.QUARANTINED, "Content-Type 'text/html"),
                "hang": (PeerState.BACKING_OFF, "TimeoutError"),
                "refuse": (PeerState.UNAUTHORIZED, "HTTP 401"),
            }
            for name, (state, cause) in expect.items():
                h = states[f"{name}/c1"]
                assert h.state is state, (name, h)
                assert h.last_error is not None and cause in h.last_error, (name, h.last_error)
                assert h.objects_pulled == 0
            assert states[f"hub-a/{INBOX}"].state is PeerState.OK
            assert states[f"hub-a/{INBOX}"].objects_pulled == 75

            # Quarantine means left alone: one request each, while the 500 peer is retried with backoff.
            assert hits["badjson"] == hits["html"] == hits["huge"] == 1
            kept = hub.call(lambda s: s.journal.quarantined("badjson", "c1"))
            assert kept[0][2] == b'{"more": false, "objects": [{"type": "indicator",'
            huge_kept = hub.call(lambda s: s.journal.quarantined("huge", "c1"))
            assert len(huge_kept[0][2]) == HUGE_LIMIT  # what arrived, up to the limit, not the whole page

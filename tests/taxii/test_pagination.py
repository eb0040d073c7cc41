"""TAXII 2.1 conformance of pagination (issue #2; TAXII 2.1 section 3.4): limit, more/next, X-TAXII-Date-Added
headers, concurrent inserts, cursors that survive a restart, and cursors that must be refused."""

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from taxii2client.v21 import as_pages

from tests.hubs import Hub, thread_hub
from tests.taxii.helpers import (
    MAX_PAGES,
    StixObject,
    assert_taxii_error,
    at,
    collection,
    follow,
    get,
    ids_of,
    indicator,
    instants,
    malware,
    manifest,
    manifest_url,
    objects_url,
    parse_stamp,
    post,
    stix_id,
)

TOTAL, LIMIT = 250, 40


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub, only read by the tests that use it, holding TOTAL indicators (posted in that order)."""
    with thread_hub(tmp_path_factory.mktemp("many")) as hub:
        post(collection(hub), [indicator(n) for n in range(TOTAL)])
        yield hub


def _sent_ids(count: int = TOTAL) -> list[str]:
    return [stix_id(n) for n in range(count)]


def _page_sizes(total: int, limit: int) -> list[int]:
    return [limit] * (total // limit) + ([total % limit] if total % limit else [])


# --- paging through objects and manifests ---

def test_as_pages_walks_every_object_once(many: Hub) -> None:
    pages = list(itertools.islice(as_pages(collection(many).get_objects, per_request=LIMIT), MAX_PAGES))
    assert [len(p["objects"]) for p in pages] == _page_sizes(TOTAL, LIMIT)
    assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]
    assert [i for p in pages for i in ids_of(p["objects"])] == _sent_ids()


def test_as_pages_walks_the_manifest(many: Hub) -> None:
    pages = list(itertools.islice(as_pages(collection(many).get_manifest, per_request=LIMIT), MAX_PAGES))
    records = [r for p in pages for r in p["objects"]]
    assert [r["id"] for r in records] == _sent_ids()
    added = instants(r["date_added"] for r in records)
    assert added == sorted(added) and len(set(added)) == TOTAL
    assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]


@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_raw_next_pages_carry_date_added_headers(many: Hub, endpoint: str) -> None:
    date_added = {r["id"]: r["date_added"] for r in manifest(many)}
    assert len(date_added) == TOTAL
    path = objects_url(many) if endpoint == "objects" else manifest_url(many)
    seen: list[str] = []
    pages = list(follow(many, path, {"limit": LIMIT}))
    for page in pages:
        items = page.json()["objects"]
        ids = ids_of(items)
        assert page.headers["X-TAXII-Date-Added-First"] == date_added[ids[0]]
        assert page.headers["X-TAXII-Date-Added-Last"] == date_added[ids[-1]]
        seen.extend(ids)
    assert [len(p.json()["objects"]) for p in pages] == _page_sizes(TOTAL, LIMIT)
    assert seen == _sent_ids()
    stamps = instants(date_added[i] for i in seen)
    assert stamps == sorted(stamps)


def test_date_added_last_header_works_as_added_after(many: Hub) -> None:
    first = get(many, objects_url(many), {"limit": LIMIT})
    by_next = get(many, objects_url(many), {"limit": LIMIT, "next": first.json()["next"]})
    by_header = get(many, objects_url(many), {"limit": LIMIT,
                                              "added_after": first.headers["X-TAXII-Date-Added-Last"]})
    assert ids_of(by_header.json()["objects"]) == ids_of(by_next.json()["objects"]) == _sent_ids()[LIMIT:2 * LIMIT]


def test_pages_with_filters(many: Hub) -> None:
    wanted = [stix_id(n) for n in range(0, TOTAL, 7)]
    params: dict[str, Any] = {"limit": 5, "match[id]": ",".join(wanted)}
    seen = [i for page in follow(many, objects_url(many), params) for i in ids_of(page.json()["objects"])]
    assert seen == wanted


def test_versions_and_object_paginate(hub: Hub) -> None:
    post(collection(hub), [indicator(1, modified=m) for m in (3, 0, 6, 1, 5, 2, 4)] + [indicator(2)])
    added = {parse_stamp(r["version"]): r["date_added"]
             for r in manifest(hub, {"match[id]": stix_id(1), "match[version]": "all"})}
    path = objects_url(hub) + stix_id(1) + "/"
    pages = list(follow(hub, path + "versions/", {"limit": 3}))
    assert [len(p.json()["versions"]) for p in pages] == [3, 3, 1]
    for page in pages:
        versions = instants(page.json()["versions"])
        assert page.headers["X-TAXII-Date-Added-First"] == min(added[v] for v in versions)
        assert page.headers["X-TAXII-Date-Added-Last"] == max(added[v] for v in versions)
    assert sorted(v for p in pages for v in instants(p.json()["versions"])) == at(*range(7))

    pages = list(follow(hub, path, {"limit": 3, "match[version]": "all"}))
    assert [len(p.json()["objects"]) for p in pages] == [3, 3, 1]
    objects = [o for p in pages for o in p.json()["objects"]]
    assert objects == [indicator(1, modified=m) for m in (3, 0, 6, 1, 5, 2, 4)]  # in date_added order
    for page in pages:
        versions = instants(o["modified"] for o in page.json()["objects"])
        assert page.headers["X-TAXII-Date-Added-First"] == added[versions[0]]
        assert page.headers["X-TAXII-Date-Added-Last"] == added[versions[-1]]


# --- the limit ---

def test_limit_above_max_page_size_is_clamped(tmp_path: Path) -> None:
    with thread_hub(tmp_path, max_page_size=50) as hub:
        post(collection(hub), [indicator(n) for n in range(120)])
        for params in ({"limit": 1000}, {"limit": 51}, {}):
            body = get(hub, objects_url(hub), params).json()
            assert len(body["objects"]) == 50 and body["more"] is True, params
        pages = list(follow(hub, objects_url(hub), {"limit": 1000}))
        assert [len(p.json()["objects"]) for p in pages] == [50, 50, 20]
        assert [i for p in pages for i in ids_of(p.json()["objects"])] == _sent_ids(120)
        assert len(get(hub, manifest_url(hub), {"limit": 500}).json()["objects"]) == 50


# --- concurrent inserts ---

class Poster(threading.Thread):
    """Posts one envelope per turn it is given, and says when each is processed."""

    def __init__(self, hub: Hub, rounds: list[list[StixObject]]) -> None:
        super().__init__(daemon=True)
        self.hub, self.rounds = hub, rounds
        self.turn, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for objects in self.rounds:
                if not self.turn.acquire(timeout=30):
                    return
                post(collection(self.hub), objects)
                self.done.release()
        except BaseException as exc:
            self.error = exc
            self.done.release()


@pytest.mark.parametrize(("kind", "version"), [("new objects", "all"), ("new versions", "all"),
                                               ("new versions", "last")])
def test_paging_while_objects_are_added(hub: Hub, kind: str, version: str) -> None:
    """Every object present when paging starts is seen (with match[version]=all: every version, exactly once);
    no object version is seen twice, even when rows the pager already passed stop matching."""
    before = [indicator(n) for n in range(120)]
    post(collection(hub), before)
    if kind == "new objects":
        rounds = [[indicator(1000 + 10 * r + k) for k in range(10)] + [malware(r)] for r in range(12)]
    else:  # later versions of objects the pager has not reached yet, and of ones it has
        rounds = [[indicator(n, modified=r + 1) for n in range(r, 120, 12)] for r in range(12)]
    poster = Poster(hub, rounds)
    poster.start()
    seen: list[tuple[str, str]] = []
    remaining, in_flight = len(rounds), False
    for page in follow(hub, objects_url(hub), {"limit": 10, "match[version]": version}):
        seen.extend((o["id"], o["modified"]) for o in page.json()["objects"])
        if in_flight:  # the round posted while this page was read is processed before the next round starts
            assert poster.done.acquire(timeout=30) and poster.error is None, poster.error
            in_flight = False
        if remaining:  # the next page is read while this round is posted and processed
            poster.turn.release()
            remaining, in_flight = remaining - 1, True
    if remaining:  # the pager got to the end first: let the poster finish anyway
        poster.turn.release(remaining)
    poster.join(60)
    assert poster.error is None, poster.error
    assert not poster.is_alive()
    assert len(seen) == len(set(seen)), "an object version was served twice"
    existing = {(o["id"], o["modified"]) for o in before}
    if version == "all":
        assert existing <= set(seen)
    else:  # a superseded version may be replaced by its successor, but no object may be skipped
        assert {i for i, _ in existing} <= {i for i, _ in seen}
    assert set(seen) - existing, "the pager should also have reached objects added while it paged"
    added = [parse_stamp(r["date_added"]) for r in manifest(hub, {"match[version]": "all"})]
    assert added == sorted(added)


# --- cursors ---

def test_next_token_survives_a_restart(tmp_path: Path) -> None:
    with thread_hub(tmp_path) as hub:
        post(collection(hub), [indicator(n) for n in range(100)])
        first = get(hub, objects_url(hub), {"limit": 30}).json()
        token = first["next"]
        assert ids_of(first["objects"]) == _sent_ids(30)
    with thread_hub(tmp_path) as restarted:
        rest = list(follow(restarted, objects_url(restarted), {"limit": 30, "next": token}))
        assert [len(p.json()["objects"]) for p in rest] == [30, 30, 10]
        assert [i for p in rest for i in ids_of(p.json()["objects"])] == _sent_ids(100)[30:]


def _flip(token: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:index] + alphabet[(alphabet.index(token[index]) + 32) % 64] + token[index + 1:]


def test_forged_or_garbled_next_is_400(many: Hub, tmp_path: Path) -> None:
    token = get(many, objects_url(many), {"limit": LIMIT}).json()["next"]
    with thread_hub(tmp_path) as other:  # another hub's key signs another hub's tokens
        post(collection(other), [indicator(n) for n in range(3)])
        foreign = get(other, objects_url(other), {"limit": 1}).json()["next"]
    bad = ["garbage", "", "!!!!", token[:-2], token + "AA", _flip(token, 0), _flip(token, len(token) // 2),
           _flip(token, len(token) - 1), token[::-1], foreign, "A" * 200]
    for value in bad:
        assert_taxii_error(get(many, objects_url(many), {"limit": LIMIT, "next": value}), 400)
    assert get(many, objects_url(many), {"limit": LIMIT, "next": token}).status_code == 200


def test_next_with_different_filters_is_400(many: Hub) -> None:
    params: dict[str, Any] = {"limit": 10, "match[type]": "indicator"}
    token = get(many, objects_url(many), params).json()["next"]
    for changed in ({"match[type]": "malware"}, {"match[type]": None}, {"match[version]": "all"},
                    {"added_after": "2000-01-01T00:00:00Z"}, {"match[id]": stix_id(200)},
                    {"match[spec_version]": "2.1"}):
        query = {k: v for k, v in {**params, **changed, "next": token}.items() if v is not None}
        assert_taxii_error(get(many, objects_url(many), query), 400)
    assert_taxii_error(get(many, manifest_url(many), {**params, "next": token}), 400)
    assert_taxii_error(get(many, objects_url(many) + stix_id(1) + "/versions/", {"next": token}), 400)
    resumed = get(many, objects_url(many), {**params, "limit": 25, "next": token})  # limit may change
    assert resumed.status_code == 200
    assert ids_of(resumed.json()["objects"]) == _sent_ids()[10:35]

"""TAXII 2.1 conformance of the URL filters (issue #2; TAXII 2.1 section 3.4): added_after, match[...],
versions (first/last/all/timestamps), spec versions, duplicates, date_added, and rejected parameters."""

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.hubs import Hub, thread_hub
from tests.taxii.helpers import (
    StixObject,
    assert_taxii_error,
    at,
    collection,
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

Version = tuple[str, datetime]  # (id, version instant)

IND1, IND2, MAL3, IND4 = stix_id(1), stix_id(2), stix_id(3, "malware"), stix_id(4)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub, only read by the tests that use it: indicator 1 in versions +0s, +10s, +20s; indicator 2;
    malware 3; indicator 4 in STIX 2.0."""
    with thread_hub(tmp_path_factory.mktemp("loaded")) as hub:
        post(collection(hub), [indicator(1, modified=m) for m in (0, 10, 20)] +
             [indicator(2), malware(3), indicator(4, spec_version="2.0")])
        yield hub


def _served(hub: Hub, endpoint: str, params: dict[str, Any]) -> list[Version]:
    """(id, version) of everything one unpaged read of the objects or manifest endpoint returns."""
    resp = get(hub, objects_url(hub) if endpoint == "objects" else manifest_url(hub), {"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["more"] is False
    if endpoint == "objects":
        return [(o["id"], parse_stamp(o["modified"])) for o in body.get("objects", [])]
    return [(r["id"], parse_stamp(r["version"])) for r in body.get("objects", [])]


def _versions(*pairs: tuple[str, int]) -> set[Version]:
    return {(ident, at(seconds)[0]) for ident, seconds in pairs}


LAST = _versions((IND1, 20), (IND2, 0), (MAL3, 0), (IND4, 0))
OTHERS = _versions((IND2, 0), (MAL3, 0), (IND4, 0))


# --- added_after (strict >, TAXII 2.1 section 3.4.1) ---

@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_added_after_is_strictly_after(hub: Hub, endpoint: str) -> None:
    sent = [indicator(n) for n in range(5)]
    post(collection(hub), sent)
    records = manifest(hub)
    assert [r["id"] for r in records] == ids_of(sent)
    for i, record in enumerate(records):
        served = _served(hub, endpoint, {"added_after": record["date_added"]})
        assert [ident for ident, _ in served] == ids_of(sent[i + 1:])
    assert [i for i, _ in _served(hub, endpoint, {"added_after": "2000-01-01T00:00:00Z"})] == ids_of(sent)


def test_added_after_with_taxii2_client(hub: Hub) -> None:
    post(collection(hub), [indicator(1)])
    post(collection(hub), [indicator(2)])
    first = manifest(hub)[0]["date_added"]
    assert ids_of(collection(hub).get_objects(added_after=first)["objects"]) == [indicator(2)["id"]]


# --- match[id], match[type] ---

@pytest.mark.parametrize(("value", "expected"), [
    (IND2, [IND2]),
    (f"{MAL3},{IND2}", [IND2, MAL3]),
    (f"{IND1},{stix_id(99)}", [IND1]),
    (stix_id(99), []),
])
def test_match_id(loaded: Hub, value: str, expected: list[str]) -> None:
    assert [i for i, _ in _served(loaded, "objects", {"match[id]": value})] == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("malware", [MAL3]),
    ("indicator", [IND1, IND2, IND4]),
    ("malware,indicator", [IND1, IND2, MAL3, IND4]),
    ("campaign", []),
])
def test_match_type(loaded: Hub, value: str, expected: list[str]) -> None:
    assert [i for i, _ in _served(loaded, "objects", {"match[type]": value})] == expected
    assert [i for i, _ in _served(loaded, "manifest", {"match[type]": value})] == expected


def test_match_filters_with_taxii2_client(loaded: Hub) -> None:
    coll = collection(loaded)
    assert ids_of(coll.get_objects(type=["malware", "campaign"])["objects"]) == [MAL3]
    assert ids_of(coll.get_objects(id=[IND2, MAL3], type="indicator")["objects"]) == [IND2]
    assert instants(o["modified"] for o in coll.get_objects(id=IND1, version="all")["objects"]) == at(0, 10, 20)


# --- match[version] (TAXII 2.1 section 3.4.2) ---

@pytest.mark.parametrize(("value", "expected"), [
    (None, LAST),
    ("last", LAST),
    ("first", _versions((IND1, 0)) | OTHERS),
    ("all", _versions((IND1, 0), (IND1, 10), (IND1, 20)) | OTHERS),
    ("2020-01-01T00:00:10.000Z", _versions((IND1, 10))),
    ("2020-01-01T00:00:10Z", _versions((IND1, 10))),  # the same instant, written differently
    ("2020-01-01T00:00:00.000Z", _versions((IND1, 0)) | OTHERS),
    ("2020-01-01T00:00:05.000Z", set()),
    ("first,last", _versions((IND1, 0), (IND1, 20)) | OTHERS),
    ("last,2020-01-01T00:00:10.000Z", _versions((IND1, 10), (IND1, 20)) | OTHERS),
    ("2020-01-01T00:00:10.000Z,2020-01-01T00:00:20.000Z", _versions((IND1, 10), (IND1, 20))),
    ("first,all", _versions((IND1, 0), (IND1, 10), (IND1, 20)) | OTHERS),
])
@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_match_version(loaded: Hub, endpoint: str, value: str | None, expected: set[Version]) -> None:
    served = _served(loaded, endpoint, {"match[version]": value} if value else {})
    assert len(served) == len(set(served)), "an object version was served twice"
    assert set(served) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (None, [20]), ("first", [0]), ("last", [20]), ("all", [0, 10, 20]), ("first,last", [0, 20]),
    ("2020-01-01T00:00:10.000Z", [10]),
])
def test_match_version_on_one_object(loaded: Hub, value: str | None, expected: list[int]) -> None:
    params = {"match[version]": value} if value else {}
    resp = get(loaded, objects_url(loaded) + IND1 + "/", params)
    assert resp.status_code == 200
    assert sorted(instants(o["modified"] for o in resp.json()["objects"])) == at(*expected)


def _post_each(hub: Hub, objects: list[StixObject]) -> None:
    for obj in objects:  # one envelope each, so the hub stores them in exactly this order
        post(collection(hub), [obj])


def test_versions_posted_out_of_order(hub: Hub) -> None:
    _post_each(hub, [indicator(1, modified=10), indicator(1, modified=30), indicator(1, modified=20)])
    coll = collection(hub)

    def version(which: str) -> list[datetime]:
        return instants(o["modified"] for o in coll.get_object(IND1, version=which)["objects"])

    assert (version("first"), version("last")) == (at(10), at(30))
    assert instants(o["modified"] for o in coll.get_object(IND1)["objects"]) == at(30)
    assert sorted(instants(coll.object_versions(IND1)["versions"])) == at(10, 20, 30)
    stored = manifest(hub, {"match[version]": "all"})
    assert instants(r["version"] for r in stored) == at(10, 30, 20)  # in date_added order: the order of storing

    _post_each(hub, [indicator(1, modified=0), indicator(1, modified=40)])
    assert (version("first"), version("last")) == (at(0), at(40))
    assert sorted(version("all")) == at(0, 10, 20, 30, 40)
    assert sorted(version("first,last")) == at(0, 40)


def test_versions_out_of_order_in_one_envelope(hub: Hub) -> None:
    post(collection(hub), [indicator(1, modified=m) for m in (20, 0, 30, 10, 20)])
    coll = collection(hub)
    assert instants(o["modified"] for o in coll.get_object(IND1, version="first")["objects"]) == at(0)
    assert instants(o["modified"] for o in coll.get_object(IND1, version="last")["objects"]) == at(30)
    assert sorted(instants(o["modified"] for o in coll.get_object(IND1, version="all")["objects"])) == \
        at(0, 10, 20, 30)


def test_versions_from_envelopes_processed_together(hub: Hub) -> None:
    """Envelopes that queue up while processing is held are stored in one batch, in the order they came."""
    hub.call(lambda svc: svc.processor.pause())
    coll = collection(hub)
    rounds = [[indicator(1, modified=10)], [indicator(1, modified=30), indicator(2)], [indicator(1, modified=0)],
              [indicator(1, modified=20), indicator(1, modified=10)]]
    statuses = [coll.add_objects({"objects": objects}, wait_for_completion=False) for objects in rounds]
    hub.call(lambda svc: svc.processor.resume())
    for status in statuses:
        status.wait_until_final(poll_interval=0.05, timeout=30)
        assert (status.status, status.failure_count) == ("complete", 0)
    assert [s.success_count for s in statuses] == [1, 2, 1, 2]
    assert instants(o["modified"] for o in coll.get_object(IND1, version="first")["objects"]) == at(0)
    assert instants(o["modified"] for o in coll.get_object(IND1, version="last")["objects"]) == at(30)
    records = manifest(hub, {"match[version]": "all"})
    assert [(r["id"], parse_stamp(r["version"])) for r in records] == \
        [(IND1, at(10)[0]), (IND1, at(30)[0]), (IND2, at(0)[0]), (IND1, at(0)[0]), (IND1, at(20)[0])]


# --- duplicates and date_added (TAXII 2.1 sections 3.4.1, 5.4) ---

def test_exact_repost_is_a_success_and_adds_no_version(hub: Hub) -> None:
    post(collection(hub), [indicator(1), indicator(1, modified=10)])
    before = {parse_stamp(r["version"]): r["date_added"] for r in manifest(hub, {"match[version]": "all"})}

    [status] = post(collection(hub), [indicator(1), indicator(5), indicator(1)])
    assert (status.total_count, status.success_count, status.failure_count) == (3, 3, 0)
    assert status.failures == []
    after = {parse_stamp(r["version"]): r["date_added"]
             for r in manifest(hub, {"match[version]": "all", "match[id]": IND1})}
    assert after == before
    coll = collection(hub)
    assert sorted(instants(coll.object_versions(IND1)["versions"])) == at(0, 10)
    assert coll.get_object(IND1, version="first")["objects"] == [indicator(1)]
    assert coll.get_object(IND1)["objects"] == [indicator(1, modified=10)]
    assert ids_of(coll.get_objects(version="all")["objects"]) == [IND1, IND1, stix_id(5)]


def test_date_added_is_the_hub_time_in_storing_order(hub: Hub) -> None:
    start = datetime.now(tz=UTC)
    post(collection(hub), [indicator(3), indicator(1), indicator(2)])
    post(collection(hub), [indicator(1, modified=5), malware(4)])
    end = datetime.now(tz=UTC)
    records = manifest(hub, {"match[version]": "all"})
    assert [r["id"] for r in records] == [stix_id(3), IND1, IND2, IND1, stix_id(4, "malware")]
    added = instants(r["date_added"] for r in records)
    assert all(b > a for a, b in itertools.pairwise(added)), added
    assert start <= added[0] and added[-1] <= end
    assert all(d != parse_stamp(r["version"]) for d, r in zip(added, records, strict=True))


# --- match[spec_version] (TAXII 2.1 section 3.4.2) ---

@pytest.mark.parametrize(("value", "expected"), [
    (None, [IND1, IND2, MAL3, IND4]),
    ("2.0", [IND4]),
    ("2.1", [IND1, IND2, MAL3]),
    ("2.0,2.1", [IND1, IND2, MAL3, IND4]),
])
@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_match_spec_version(loaded: Hub, endpoint: str, value: str | None, expected: list[str]) -> None:
    params = {"match[spec_version]": value} if value else {}
    assert [i for i, _ in _served(loaded, endpoint, params)] == expected


def test_spec_version_20_object_is_served_as_sent(loaded: Hub) -> None:
    [obj] = collection(loaded).get_object(IND4)["objects"]
    assert obj == indicator(4, spec_version="2.0")
    [record] = manifest(loaded, {"match[id]": IND4})
    assert record["media_type"] == "application/stix+json;version=2.0"


def test_sco_without_spec_version_is_taken_as_21(hub: Hub) -> None:
    sco = {"type": "ipv4-addr", "id": "ipv4-addr--8f6b1c2a-4d3e-5f60-8a7b-9c0d1e2f3a4b", "value": "198.51.100.7"}
    [status] = post(collection(hub), [sco])
    assert (status.success_count, status.failure_count) == (1, 0)
    assert collection(hub).get_objects(spec_version="2.1")["objects"] == [sco]


def test_every_listed_version_can_be_fetched_by_match_version(hub: Hub) -> None:
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--8f6b1c2a-4d3e-5f60-8a7b-9c0d1e2f3a4b",
           "value": "198.51.100.7"}
    post(collection(hub), [sco, indicator(1)])
    for obj in (indicator(1), sco):
        [version] = collection(hub).object_versions(obj["id"])["versions"]
        assert collection(hub).get_objects(id=obj["id"], version=version)["objects"] == [obj]


# --- AND across filters, OR within one (TAXII 2.1 section 3.4) ---

@pytest.mark.parametrize(("params", "expected"), [
    ({"match[type]": "indicator", "match[id]": f"{IND2},{MAL3}"}, _versions((IND2, 0))),
    ({"match[type]": "indicator,malware", "match[spec_version]": "2.1"}, _versions((IND1, 20), (IND2, 0), (MAL3, 0))),
    ({"match[type]": "malware", "match[spec_version]": "2.0"}, set()),
    ({"match[id]": f"{IND1},{IND4}", "match[version]": "first", "match[spec_version]": "2.1"}, _versions((IND1, 0))),
    ({"match[type]": "indicator", "match[version]": "all", "match[id]": IND1}, _versions((IND1, 0), (IND1, 10),
                                                                                        (IND1, 20))),
    ({"match[type]": "indicator", "match[version]": "2020-01-01T00:00:00.000Z", "match[spec_version]": "2.0,2.1"},
     _versions((IND1, 0), (IND2, 0), (IND4, 0))),
])
def test_filters_and_together_values_or(loaded: Hub, params: dict[str, str], expected: set[Version]) -> None:
    assert set(_served(loaded, "objects", params)) == expected
    assert set(_served(loaded, "manifest", params)) == expected


def test_added_after_and_match_together(hub: Hub) -> None:
    post(collection(hub), [indicator(1), malware(2)])
    post(collection(hub), [indicator(1, modified=10), malware(3), indicator(4)])
    cut = manifest(hub, {"match[version]": "all"})[1]["date_added"]  # malware 2, the end of the first envelope
    served = _served(hub, "objects", {"added_after": cut, "match[type]": "indicator", "match[version]": "all"})
    assert set(served) == _versions((IND1, 10), (IND4, 0))


# --- rejected parameters (TAXII 2.1 section 3.4; errors per section 3.6.1) ---

@pytest.mark.parametrize("query", [
    "match[foo]=1", "foo=bar", "match[ID]=" + IND1, "limit=0", "limit=-1", "limit=abc", "limit=1.5", "limit=",
    "limit=10,20", "added_after=yesterday", "added_after=2026-01-01", "added_after=2026-01-01T00:00:00+01:00",
    "added_after=", "added_after=2026-02-30T00:00:00Z", "match[version]=newest", "match[version]=",
    "match[version]=2026-13-01T00:00:00Z", "match[version]=last,bogus", "next=garbage",
    "limit=%C2%B2",
    "limit=%D9%A3",
    "added_after=%D9%A2%D9%A0%D9%A2%D9%A6-01-01T00:00:00Z",
    "match[version]=%D9%A2%D9%A0%D9%A2%D9%A0-01-01T00:00:00Z",
])
@pytest.mark.parametrize("endpoint", ["objects", "manifest"])
def test_bad_parameters_are_400(loaded: Hub, endpoint: str, query: str) -> None:
    base = objects_url(loaded) if endpoint == "objects" else manifest_url(loaded)
    assert_taxii_error(get(loaded, f"{base}?{query}"), 400)


@pytest.mark.parametrize(("suffix", "query"), [
    ("", "match[type]=indicator"), ("", "match[id]=" + IND2), ("", "limit=0"), ("", "match[version]=newest"),
    ("versions/", "match[version]=all"), ("versions/", "match[foo]=1"), ("versions/", "limit=abc"),
    ("versions/", "added_after=never"),
])
def test_bad_parameters_on_one_object_are_400(loaded: Hub, suffix: str, query: str) -> None:
    assert_taxii_error(get(loaded, f"{objects_url(loaded)}{IND1}/{suffix}?{query}"), 400)

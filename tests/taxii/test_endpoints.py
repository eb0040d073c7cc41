"""TAXII 2.1 conformance, endpoint by endpoint (issue #2): discovery, API root, collections, objects,
manifest, versions, delete, status; media types, content negotiation and authentication."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import ApiRoot, Server

from tests.hubs import ALERTS, CANONICAL, INBOX, SECRET, Hub, thread_hub
from tests.taxii.helpers import (
    STIX20,
    STIX21,
    TAXII,
    TIMEOUT,
    assert_taxii_error,
    at,
    auth_for,
    collection,
    get,
    ids_of,
    indicator,
    instants,
    is_taxii_media_type,
    malware,
    manifest,
    manifest_url,
    objects_url,
    parse_stamp,
    post,
    stamp,
)


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub for the tests that store nothing (they only read configuration or are refused)."""
    directory: Path = tmp_path_factory.mktemp("shared-hub")
    with thread_hub(directory) as running:
        yield running


# --- discovery and API root (TAXII 2.1 sections 4.1, 4.2) ---

def test_discovery_names_the_default_api_root(shared_hub: Hub) -> None:
    server = Server(f"{shared_hub.base}/taxii2/", auth=auth_for("alice"))
    assert server.title == "test hub"
    assert [root.url for root in server.api_roots] == [shared_hub.api]
    assert server.default is not None and server.default.url == shared_hub.api

    body = get(shared_hub, "/taxii2/").json()
    assert body["api_roots"] == [shared_hub.api] and body["default"] == shared_hub.api
    assert all(u.endswith("/") for u in [*body["api_roots"], body["default"]])


def test_api_root_information(shared_hub: Hub) -> None:
    root = ApiRoot(shared_hub.api, auth=auth_for("alice"))
    assert root.title == "Test root"
    assert TAXII in root.versions
    assert root.max_content_length == 10 * 1024 * 1024


def test_unknown_api_root_is_404(shared_hub: Hub) -> None:
    assert_taxii_error(get(shared_hub, "/nope/"), 404)
    assert_taxii_error(get(shared_hub, "/nope/collections/"), 404)


# --- collections (TAXII 2.1 sections 5.1, 5.2) ---

@pytest.mark.parametrize(("account", "expected"), [
    ("alice", {INBOX: (True, True), ALERTS: (True, False), SECRET: (True, True), CANONICAL: (True, False)}),
    ("bob", {ALERTS: (True, False)}),
    ("writer", {INBOX: (False, True)}),
    ("tokenbot", {INBOX: (True, False)}),
])
def test_collections_list_what_the_account_may_use(shared_hub: Hub, account: str,
                                                  expected: dict[str, tuple[bool, bool]]) -> None:
    root = ApiRoot(shared_hub.api, auth=auth_for(account))
    listed = {c.id: (c.can_read, c.can_write) for c in root.collections}
    assert listed == expected
    for coll in root.collections:
        assert coll.media_types and STIX21 in coll.media_types
    raw = get(shared_hub, "/api/collections/", account=account).json()["collections"]
    aliases = {c["id"]: c.get("alias") for c in raw}
    names = {INBOX: "inbox", ALERTS: "alerts", SECRET: "secret", CANONICAL: "canonical"}
    assert aliases == {k: v for k, v in names.items() if k in expected}


@pytest.mark.parametrize("name", [INBOX, "inbox"])
def test_collection_by_id_and_by_alias(shared_hub: Hub, name: str) -> None:
    resp = get(shared_hub, f"/api/collections/{name}/")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["id"], body["title"], body["alias"]) == (INBOX, "Inbox", "inbox")
    assert (body["can_read"], body["can_write"]) == (True, True)


def test_collection_alias_serves_the_same_objects(hub: Hub) -> None:
    post(collection(hub), [indicator(1)])
    by_alias = get(hub, "/api/collections/inbox/objects/").json()
    assert by_alias == get(hub, objects_url(hub)).json()
    assert ids_of(by_alias["objects"]) == [indicator(1)["id"]]


@pytest.mark.parametrize("path", [
    f"/api/collections/{SECRET}/", "/api/collections/secret/", f"/api/collections/{SECRET}/objects/",
    f"/api/collections/{INBOX}/objects/", f"/api/collections/{INBOX}/manifest/",
])
def test_a_collection_bob_may_not_read_is_not_served(shared_hub: Hub, path: str) -> None:
    resp = get(shared_hub, path, account="bob")
    assert resp.status_code in (403, 404), resp.text
    assert_taxii_error(resp, resp.status_code)


def test_unknown_collection_is_404(shared_hub: Hub) -> None:
    assert_taxii_error(get(shared_hub, "/api/collections/no-such-collection/"), 404)
    assert_taxii_error(get(shared_hub, "/api/collections/00000000-0000-4000-8000-000000000000/objects/"), 404)


def test_collection_media_types_cover_what_the_manifest_serves(hub: Hub) -> None:
    post(collection(hub), [indicator(1), indicator(2, spec_version="2.0")])
    served = {r["media_type"] for r in manifest(hub)}
    assert served == {STIX21, STIX20}
    assert served <= set(get(hub, "/api/collections/inbox/").json()["media_types"])


# --- objects: add, get, get by id (TAXII 2.1 sections 5.3-5.5) ---

def test_post_then_get_objects_returns_them_verbatim(hub: Hub) -> None:
    sent = [indicator(1), indicator(2), malware(3)]
    [status] = post(collection(hub), sent)
    assert (status.total_count, status.success_count, status.failure_count, status.pending_count) == (3, 3, 0, 0)
    assert {s["id"] for s in status.successes} == set(ids_of(sent))
    envelope = collection(hub).get_objects()
    assert envelope["more"] is False
    assert envelope["objects"] == sent


def test_post_answers_202_with_a_status_resource(hub: Hub) -> None:
    body = {"objects": [indicator(1)]}
    resp = requests.post(objects_url(hub), json=body, auth=auth_for("alice"), timeout=TIMEOUT,
                         headers={"Accept": TAXII, "Content-Type": TAXII})
    assert resp.status_code == 202
    assert is_taxii_media_type(resp.headers["Content-Type"])
    status = resp.json()
    assert status["total_count"] == 1 and status["status"] in ("pending", "complete")
    assert {"id", "status", "total_count", "success_count", "failure_count", "pending_count"} <= status.keys()
    assert status["success_count"] + status["failure_count"] + status["pending_count"] == 1


def test_get_object_by_id(hub: Hub) -> None:
    post(collection(hub), [indicator(1), indicator(2)])
    envelope = collection(hub).get_object(indicator(2)["id"])
    assert envelope["objects"] == [indicator(2)]
    assert envelope["more"] is False


def test_get_unknown_object_is_404(hub: Hub) -> None:
    post(collection(hub), [indicator(1)])
    assert_taxii_error(get(hub, objects_url(hub) + indicator(99)["id"] + "/"), 404)
    assert_taxii_error(get(hub, objects_url(hub) + indicator(99)["id"] + "/versions/"), 404)


def test_an_empty_collection_answers_an_empty_envelope(hub: Hub) -> None:
    resp = get(hub, objects_url(hub))
    assert resp.status_code == 200
    assert resp.json().get("objects", []) == [] and resp.json()["more"] is False
    assert get(hub, manifest_url(hub)).json().get("objects", []) == []


# --- delete (TAXII 2.1 section 5.7) ---

def _post_versions(hub: Hub) -> None:
    post(collection(hub), [indicator(1, modified=m) for m in (0, 10, 20)] + [indicator(2)])


def test_delete_an_object_removes_every_version_and_nothing_else(hub: Hub) -> None:
    _post_versions(hub)
    target = indicator(1)["id"]
    resp = requests.delete(objects_url(hub) + target + "/", auth=auth_for("alice"), headers={"Accept": TAXII},
                           timeout=TIMEOUT)
    assert resp.status_code == 200
    assert is_taxii_media_type(resp.headers.get("Content-Type"))
    assert_taxii_error(get(hub, objects_url(hub) + target + "/"), 404)
    assert_taxii_error(get(hub, objects_url(hub) + target + "/versions/"), 404)
    assert collection(hub).get_object(indicator(2)["id"])["objects"] == [indicator(2)]
    assert [r["id"] for r in manifest(hub, {"match[version]": "all"})] == [indicator(2)["id"]]
    assert_taxii_error(requests.delete(objects_url(hub) + target + "/", auth=auth_for("alice"),
                                       headers={"Accept": TAXII}, timeout=TIMEOUT), 404)


def test_delete_one_version_keeps_the_others(hub: Hub) -> None:
    _post_versions(hub)
    target = indicator(1)["id"]
    collection(hub).delete_object(target, version="first")
    versions = collection(hub).object_versions(target)["versions"]
    assert sorted(instants(versions)) == at(10, 20)
    first = collection(hub).get_object(target, version="first")["objects"]
    assert first == [indicator(1, modified=10)]
    assert collection(hub).get_object(target)["objects"] == [indicator(1, modified=20)]
    assert collection(hub).get_object(indicator(2)["id"])["objects"] == [indicator(2)]


@pytest.mark.parametrize("account", ["bob", "tokenbot", "writer"])
def test_delete_needs_read_and_write_access(hub: Hub, account: str) -> None:
    post(collection(hub), [indicator(1)])
    resp = requests.delete(objects_url(hub) + indicator(1)["id"] + "/", auth=auth_for(account),
                           headers={"Accept": TAXII}, timeout=TIMEOUT)
    assert resp.status_code in (403, 404)
    assert_taxii_error(resp, resp.status_code)
    assert collection(hub).get_object(indicator(1)["id"])["objects"] == [indicator(1)]


# --- manifest and versions (TAXII 2.1 sections 5.6, 5.8) ---

def test_manifest_records(hub: Hub) -> None:
    sent = [indicator(1, modified=30), malware(2), indicator(3, spec_version="2.0")]
    post(collection(hub), sent)
    body = collection(hub).get_manifest()
    assert body["more"] is False
    records = body["objects"]
    assert [r["id"] for r in records] == ids_of(sent)
    assert instants(r["version"] for r in records) == at(30, 0, 0)
    assert [r["media_type"] for r in records] == [STIX21, STIX21, STIX20]
    added = [parse_stamp(r["date_added"]) for r in records]
    assert added == sorted(added) and len(set(added)) == 3


def test_versions_endpoint_lists_every_version(hub: Hub) -> None:
    _post_versions(hub)
    body = collection(hub).object_versions(indicator(1)["id"])
    assert sorted(instants(body["versions"])) == at(0, 10, 20)
    assert body["more"] is False
    assert instants(collection(hub).object_versions(indicator(2)["id"])["versions"]) == at(0)


# --- status (TAXII 2.1 section 5.2 / 4.3) ---

def test_status_resource_counts_successes_and_failures(hub: Hub) -> None:
    broken: dict[str, Any] = {"type": "indicator", "spec_version": "2.1"}  # no id
    status = collection(hub).add_objects({"objects": [indicator(1), broken, malware(2)]}, wait_for_completion=True,
                                         poll_interval=0.05, timeout=30)
    again = ApiRoot(hub.api, auth=auth_for("alice")).get_status(status.id)
    assert again.id == status.id and again.status == "complete"
    assert (again.total_count, again.success_count, again.failure_count, again.pending_count) == (3, 2, 1, 0)
    assert {s["id"] for s in again.successes} == {indicator(1)["id"], malware(2)["id"]}
    assert all(parse_stamp(s["version"]) == parse_stamp(stamp(0)) for s in again.successes)
    assert len(again.failures) == 1
    parse_stamp(again.request_timestamp)


def test_status_is_private_to_its_account_and_unknown_is_404(hub: Hub) -> None:
    [status] = post(collection(hub), [indicator(1)])
    assert get(hub, f"/api/status/{status.id}/").status_code == 200
    assert_taxii_error(get(hub, f"/api/status/{status.id}/", account="bob"), 404)
    assert_taxii_error(get(hub, "/api/status/2f2e0a5c-9f5e-4ad1-9b55-5d1f1f1f1f1f/"), 404)


def test_writer_may_post_and_read_its_status_but_not_the_objects(hub: Hub) -> None:
    [status] = post(collection(hub, "writer"), [indicator(1)])
    assert status.success_count == 1
    resp = get(hub, objects_url(hub), account="writer")
    assert_taxii_error(resp, 403)
    assert collection(hub).get_object(indicator(1)["id"])["objects"] == [indicator(1)]


# --- media types and content negotiation (TAXII 2.1 sections 1.6.8, 3.1) ---

def _every_kind_of_response(hub: Hub) -> list[tuple[str, requests.Response]]:
    [status] = post(collection(hub), [indicator(1, modified=m) for m in (0, 10)])
    obj = objects_url(hub) + indicator(1)["id"] + "/"
    alice = auth_for("alice")

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Accept": TAXII, **kwargs.pop("headers", {})}
        auth = kwargs.pop("auth", alice)
        return requests.request(method, path if path.startswith("http") else hub.base + path, headers=headers,
                                auth=auth, timeout=TIMEOUT, **kwargs)

    return [
        ("discovery", call("GET", "/taxii2/")),
        ("api root", call("GET", "/api/")),
        ("collections", call("GET", "/api/collections/")),
        ("collection", call("GET", "/api/collections/inbox/")),
        ("objects", call("GET", objects_url(hub))),
        ("object", call("GET", obj)),
        ("versions", call("GET", obj + "versions/")),
        ("manifest", call("GET", manifest_url(hub))),
        ("status", call("GET", f"/api/status/{status.id}/")),
        ("add objects 202", call("POST", objects_url(hub), json={"objects": [indicator(2)]},
                                 headers={"Content-Type": TAXII})),
        ("delete", call("DELETE", obj, params={"match[version]": "first"})),
        ("400 bad filter", call("GET", objects_url(hub), params={"match[foo]": "x"})),
        ("400 bad envelope", call("POST", objects_url(hub), data=b"{not json", headers={"Content-Type": TAXII})),
        ("401 no credentials", call("GET", "/taxii2/", auth=None)),
        ("401 wrong password", call("GET", "/api/", auth=("alice", "wrong"))),
        ("403", call("GET", objects_url(hub), auth=auth_for("bob"))),
        ("404 route", call("GET", "/api/collections/inbox/nothing-here/")),
        ("404 no slash", call("GET", "/taxii2")),
        ("404 status", call("GET", "/api/status/00000000-0000-4000-8000-000000000000/")),
        ("405", call("PUT", objects_url(hub), json={})),
        ("406", call("GET", "/api/", headers={"Accept": "text/html"})),
        ("415", call("POST", objects_url(hub), json={"objects": [indicator(3)]},
                     headers={"Content-Type": "application/json"})),
    ]


def test_every_response_is_taxii_json(hub: Hub) -> None:
    responses = _every_kind_of_response(hub)
    expected = {"add objects 202": 202, "400 bad filter": 400, "400 bad envelope": 400, "401 no credentials": 401,
                "401 wrong password": 401, "403": 403, "404 route": 404, "404 no slash": 404, "404 status": 404,
                "405": 405, "406": 406, "415": 415}
    for name, resp in responses:
        assert resp.status_code == expected.get(name, 200), (name, resp.status_code, resp.text)
        assert is_taxii_media_type(resp.headers.get("Content-Type")), (name, resp.headers.get("Content-Type"))
        if resp.status_code >= 400:
            assert_taxii_error(resp, resp.status_code)


@pytest.mark.parametrize(("accept", "status"), [
    (TAXII, 200),
    ("application/taxii+json", 200),
    ("application/taxii+json; version=2.1", 200),
    ("application/taxii+json;version=2.0", 406),
    ("text/html", 406),
    ("application/json", 406),
])
@pytest.mark.parametrize("path", ["/taxii2/", "/api/", "/api/collections/inbox/objects/"])
def test_accept_negotiation(shared_hub: Hub, path: str, accept: str, status: int) -> None:
    resp = get(shared_hub, path, accept=accept)
    assert resp.status_code == status, resp.text
    assert is_taxii_media_type(resp.headers.get("Content-Type"))
    if status >= 400:
        assert_taxii_error(resp, status)


@pytest.mark.parametrize("content_type", ["application/json", "application/taxii+json;version=2.0", "text/plain"])
def test_post_with_a_foreign_content_type_is_415_and_stores_nothing(hub: Hub, content_type: str) -> None:
    resp = requests.post(objects_url(hub), json={"objects": [indicator(1)]}, auth=auth_for("alice"),
                         headers={"Accept": TAXII, "Content-Type": content_type}, timeout=TIMEOUT)
    assert_taxii_error(resp, 415)
    post(collection(hub), [indicator(2)])  # processed after anything the 415 might have queued
    assert ids_of(collection(hub).get_objects()["objects"]) == [indicator(2)["id"]]


def test_bare_taxii_content_type_is_accepted_for_post(hub: Hub) -> None:
    status = collection(hub).add_objects({"objects": [indicator(1)]}, wait_for_completion=True, poll_interval=0.05,
                                         timeout=30, content_type="application/taxii+json")
    assert (status.status, status.success_count) == ("complete", 1)


# --- authentication (TAXII 2.1 section 1.6.9) ---

def test_bearer_token_reads_with_taxii2_client(hub: Hub) -> None:
    post(collection(hub), [indicator(1)])
    assert Server(f"{hub.base}/taxii2/", auth=auth_for("tokenbot")).title == "test hub"
    assert collection(hub, "tokenbot").get_objects()["objects"] == [indicator(1)]


@pytest.mark.parametrize("authorization", [
    "Bearer exh_wrong-token", "Bearer ", "Basic YWxpY2U6d3Jvbmc=", "Token whatever", "Basic !!!",
])
def test_bad_credentials_are_401(shared_hub: Hub, authorization: str) -> None:
    resp = requests.get(objects_url(shared_hub), headers={"Accept": TAXII, "Authorization": authorization},
                        timeout=TIMEOUT)
    assert_taxii_error(resp, 401)
    assert "WWW-Authenticate" in resp.headers


def test_token_account_cannot_write(shared_hub: Hub) -> None:
    resp = requests.post(objects_url(shared_hub), json={"objects": [indicator(1)]}, auth=auth_for("tokenbot"),
                         headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=TIMEOUT)
    assert_taxii_error(resp, 403)

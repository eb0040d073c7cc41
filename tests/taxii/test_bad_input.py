"""Bad input over raw HTTP: malformed envelopes, size limits, invalid objects, credentials and permissions.

Every refusal is a TAXII error body (TAXII 2.1 section 3.6.1); a bad object fails alone in its status.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from exchange.audit.log import read_entries
from tests.hubs import ALERTS, INBOX, PASSWORDS, TOKEN, Hub, thread_hub

TAXII = "application/taxii+json;version=2.1"
HEADERS = {"Content-Type": TAXII, "Accept": TAXII}
ALICE = ("alice", PASSWORDS["alice"])
BOB = ("bob", PASSWORDS["bob"])
WRITER = ("writer", PASSWORDS["writer"])
MiB = 1024 * 1024


def indicator(n: int, **overrides: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern": f"[ipv4-addr:value = '198.51.100.{n % 256}']", "pattern_type": "stix",
           "valid_from": "2026-01-01T00:00:00Z"}
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not None}


def post(hub: Hub, body: bytes | Iterator[bytes], *, auth: tuple[str, str] | None = ALICE,
         collection: str = INBOX, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(hub.collection_url(collection) + "objects/", data=body, auth=auth,
                         headers=HEADERS if headers is None else headers, timeout=30)


def post_objects(hub: Hub, objects: list[Any], *, auth: tuple[str, str] = ALICE) -> dict[str, Any]:
    response = post(hub, orjson.dumps({"objects": objects}), auth=auth)
    assert response.status_code == 202, response.text
    status: dict[str, Any] = response.json()
    return status


def final_status(hub: Hub, status_id: str, *, auth: tuple[str, str] = ALICE, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(f"{hub.api}status/{status_id}/", auth=auth, headers=HEADERS, timeout=10)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["status"] == "complete" or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def read_object(hub: Hub, object_id: str) -> requests.Response:
    return requests.get(hub.collection_url() + f"objects/{object_id}/", auth=ALICE, headers=HEADERS, timeout=10)


def count_objects(hub: Hub) -> int:
    return int(hub.call(lambda svc: svc.store.count_objects(INBOX)))


def accepted_envelopes(hub: Hub) -> int:
    return len(read_entries(hub.data_dir / "audit.db", kind="envelope.accepted", limit=1_000_000))


def assert_taxii_error(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"] == TAXII
    body: dict[str, Any] = response.json()
    assert body["http_status"] == str(status)
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["description"], str) and body["description"]
    return body


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


def padded_envelope(size: int) -> bytes:
    """A valid one-object envelope of exactly `size` bytes."""
    head = orjson.dumps({"objects": [indicator(900, description="")]})
    filler = size - len(head)
    assert filler >= 0
    return orjson.dumps({"objects": [indicator(900, description="x" * filler)]})


# --- malformed envelopes: 400 before anything is journaled -------------------------------------------------


@pytest.mark.parametrize("body", [b'{"objects": [', b"not json at all", b"\xff\xfe{}", b"", b'{"objects": [1,]}'],
                         ids=["truncated", "text", "not-utf8", "empty", "trailing-comma"])
def test_malformed_json_is_a_400_taxii_error(hub: Hub, body: bytes) -> None:
    before = accepted_envelopes(hub)
    error = assert_taxii_error(post(hub, body), 400)
    assert ("is not UTF-8" if body.startswith(b"\xff") else "not valid JSON") in error["description"]
    assert "str is not" not in error["description"]  # orjson's words for Python's str, not the client's body
    assert accepted_envelopes(hub) == before


@pytest.mark.parametrize(("body", "problem"), [
    (b'[{"type": "indicator"}]', "a JSON object"),
    (b'"objects"', "a JSON object"),
    (b'{"more": false}', "no 'objects'"),
    (b'{"objects": {"type": "indicator"}}', "'objects' must be a list"),
    (b'{"objects": "indicator"}', "'objects' must be a list"),
    (b'{"objects": []}', "empty"),
], ids=["array", "string", "no-objects", "objects-dict", "objects-string", "objects-empty"])
def test_json_that_is_not_an_envelope_is_a_400_saying_why(hub: Hub, body: bytes, problem: str) -> None:
    before = accepted_envelopes(hub)
    error = assert_taxii_error(post(hub, body), 400)
    assert problem in error["description"]
    assert accepted_envelopes(hub) == before


def test_wrong_content_type_is_415_and_wrong_accept_is_406(hub: Hub) -> None:
    body = orjson.dumps({"objects": [indicator(1)]})
    error = assert_taxii_error(post(hub, body, headers={"Content-Type": "application/json", "Accept": TAXII}), 415)
    assert error["description"].startswith("cannot take Content-Type 'application/json'")
    assert_taxii_error(post(hub, body, headers={"Content-Type": TAXII, "Accept": "text/html"}), 406)
    missing = requests.post(hub.collection_url() + "objects/", data=body, auth=ALICE, headers={"Accept": TAXII},
                            timeout=10)
    assert missing.request.headers.get("Content-Type") is None
    assert assert_taxii_error(missing, 415)["description"].startswith("the request has no Content-Type")


def test_non_numeric_unicode_digit_limit_is_a_400_not_a_500(hub: Hub) -> None:
    # '²'.isdigit() is True but int('²') raises: the query parser must still answer 400.
    response = requests.get(hub.collection_url() + "objects/", params={"limit": "²"}, auth=ALICE, headers=HEADERS,
                            timeout=10)
    assert_taxii_error(response, 400)


# --- body size limits: 413 with a TAXII body ------------------------------------------------------------------


def test_body_over_max_content_length_is_413(tmp_path: Path) -> None:
    with thread_hub(tmp_path, max_content_length=MiB) as hub:
        body = padded_envelope(MiB + 1)
        error = assert_taxii_error(post(hub, body), 413)
        assert "max_content_length" in error["description"]
        chunked = assert_taxii_error(post(hub, chunks(padded_envelope(3 * MiB))), 413)
        assert error["title"] == chunked["title"] == "Payload too large"  # one name for one status
        assert accepted_envelopes(hub) == 0

        at_limit = post(hub, padded_envelope(MiB))  # the limit itself is allowed
        assert at_limit.status_code == 202, at_limit.text
        assert final_status(hub, at_limit.json()["id"])["success_count"] == 1


def test_chunked_body_just_over_max_content_length_is_413(tmp_path: Path) -> None:
    with thread_hub(tmp_path, max_content_length=MiB) as hub:
        response = post(hub, chunks(padded_envelope(MiB + 1000)))
        assert_taxii_error(response, 413)


def test_body_over_the_default_10_mib_limit_is_413(hub: Hub) -> None:
    body = b'{"objects":["' + b"x" * (10 * MiB) + b'"]}'  # 10 MiB + 16 bytes; default max_content_length is 10 MiB
    assert_taxii_error(post(hub, body), 413)
    assert_taxii_error(post(hub, chunks(b'{"objects":["' + b"x" * (11 * MiB) + b'"]}')), 413)
    assert accepted_envelopes(hub) == 0


# --- invalid objects: the envelope is accepted, each bad object fails alone -----------------------------------


INVALID: list[tuple[Any, str]] = [
    (indicator(101, id=None), "'id'"),
    (indicator(102, type=None), "'type'"),
    (indicator(103, spec_version=None, created=None, modified=None), "'spec_version'"),  # no created: not 2.0
    (indicator(104, id="malware--00000000-0000-4000-8000-000000000104"), "does not start with its type"),
    (indicator(105, id="indicator--not-a-uuid"), "UUID"),
    (indicator(106, created="yesterday", modified=None), "'created'"),
    (indicator(107, modified="2026-13-45T00:00:00Z"), "'modified'"),
    (indicator(108, modified="yesterday"), "'modified'"),
    ("just a string", "str"),
    (42, "int"),
    (indicator(109, spec_version="3.0"), "'spec_version'"),
]


def test_invalid_objects_fail_alone_and_valid_ones_are_stored(hub: Hub) -> None:
    earlier = [indicator(1), indicator(2)]
    assert final_status(hub, post_objects(hub, earlier)["id"])["success_count"] == 2
    before = {o["id"]: read_object(hub, o["id"]).json()["objects"] for o in earlier}
    assert count_objects(hub) == 2

    valid = [indicator(11), indicator(12), indicator(13)]
    objects: list[Any] = [valid[0], *[o for o, _ in INVALID[:6]], valid[1], *[o for o, _ in INVALID[6:]], valid[2]]
    accepted = post_objects(hub, objects)
    assert (accepted["status"], accepted["total_count"], accepted["pending_count"]) == ("pending", len(objects),
                                                                                       len(objects))
    status = final_status(hub, accepted["id"])
    assert status["status"] == "complete", status
    assert (status["total_count"], status["success_count"], status["failure_count"], status["pending_count"]) == \
        (len(objects), len(valid), len(INVALID), 0), status
    assert sorted(s["id"] for s in status["successes"]) == sorted(o["id"] for o in valid)

    messages = [f["message"] for f in status["failures"]]
    for obj, problem in INVALID:
        index = objects.index(obj)
        named = [m for m in messages if m.startswith(f"objects[{index}]:")]
        assert len(named) == 1, (index, messages)
        assert problem in named[0], (obj, named[0])

    assert count_objects(hub) == len(earlier) + len(valid)
    for obj in valid:
        response = read_object(hub, obj["id"])
        assert response.status_code == 200, response.text
        assert response.json()["objects"] == [obj]
    for object_id, objects_before in before.items():
        assert read_object(hub, object_id).json()["objects"] == objects_before


def test_an_unhashable_spec_version_fails_alone_and_does_not_block_the_journal(hub: Hub) -> None:
    bad = post_objects(hub, [indicator(201, spec_version=["2.1"]), indicator(202)])
    after = post_objects(hub, [indicator(203)])
    status = final_status(hub, bad["id"], timeout=2)
    assert (status["status"], status["success_count"], status["failure_count"]) == ("complete", 1, 1), status
    assert "spec_version" in status["failures"][0]["message"]
    assert final_status(hub, after["id"], timeout=2)["status"] == "complete"


# --- authentication and authorization ---------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None,
    "Basic " + "YWxpY2U6d3JvbmctcGFzc3dvcmQ=",  # alice:wrong-password
    "Basic " + "bWFsbG9yeTphbGljZS1wdw==",  # mallory:alice-pw
    "Basic !!!not-base64!!!",
    "Basic " + "YWxpY2U=",  # "alice" with no colon
    "Bearer exh_not-a-real-token",
    "Bearer " + TOKEN[:-1],
    "Digest username=alice",
], ids=["none", "wrong-password", "unknown-user", "not-base64", "no-colon", "bad-token", "truncated-token",
        "digest"])
def test_missing_or_wrong_credentials_are_401_with_www_authenticate(hub: Hub, authorization: str | None) -> None:
    headers = {**HEADERS, "Authorization": authorization} if authorization else HEADERS
    response = requests.post(hub.collection_url() + "objects/", data=orjson.dumps({"objects": [indicator(1)]}),
                             headers=headers, timeout=10)
    assert_taxii_error(response, 401)
    assert "Basic" in response.headers["WWW-Authenticate"]
    discovery = requests.get(f"{hub.base}/taxii2/", headers=headers, timeout=10)
    assert_taxii_error(discovery, 401)
    assert accepted_envelopes(hub) == 0


def test_non_ascii_basic_credentials_are_401_not_500(hub: Hub) -> None:
    response = requests.get(f"{hub.base}/taxii2/", headers={"Authorization": b"Basic \xe9\xe9"}, timeout=10)
    assert_taxii_error(response, 401)


def test_read_only_account_posting_is_403(hub: Hub) -> None:
    body = orjson.dumps({"objects": [indicator(1)]})
    assert_taxii_error(post(hub, body, auth=BOB, collection=ALERTS), 403)
    assert_taxii_error(post(hub, body, auth=BOB, collection="alerts"), 403)  # by alias too
    assert accepted_envelopes(hub) == 0


def test_write_only_account_reading_is_403_but_it_may_post(hub: Hub) -> None:
    for path in ("objects/", "manifest/", f"objects/{indicator(1)['id']}/"):
        response = requests.get(hub.collection_url() + path, auth=WRITER, headers=HEADERS, timeout=10)
        assert_taxii_error(response, 403)
    accepted = post(hub, orjson.dumps({"objects": [indicator(1)]}), auth=WRITER)
    assert accepted.status_code == 202, accepted.text
    assert final_status(hub, accepted.json()["id"], auth=WRITER)["success_count"] == 1


@pytest.mark.parametrize("collection", ["6f2e1c2a-1111-4aaa-8bbb-000000000000", "no-such-alias"])
def test_unknown_collection_is_404(hub: Hub, collection: str) -> None:
    assert_taxii_error(post(hub, orjson.dumps({"objects": [indicator(1)]}), collection=collection), 404)
    response = requests.get(hub.collection_url(collection) + "objects/", auth=ALICE, headers=HEADERS, timeout=10)
    assert_taxii_error(response, 404)


def test_unknown_api_root_is_404(hub: Hub) -> None:
    url = f"{hub.base}/no-such-root/collections/{INBOX}/objects/"
    response = requests.post(url, data=orjson.dumps({"objects": [indicator(1)]}), auth=ALICE, headers=HEADERS,
                             timeout=10)
    assert_taxii_error(response, 404)
    assert_taxii_error(requests.get(f"{hub.base}/no-such-root/", auth=ALICE, headers=HEADERS, timeout=10), 404)
    assert accepted_envelopes(hub) == 0


def test_status_of_another_account_is_404(hub: Hub) -> None:
    alices = post_objects(hub, [indicator(1)])["id"]
    writers = post_objects(hub, [indicator(2)], auth=WRITER)["id"]
    final_status(hub, alices)

    def get(status_id: str, auth: tuple[str, str]) -> requests.Response:
        return requests.get(f"{hub.api}status/{status_id}/", auth=auth, headers=HEADERS, timeout=10)

    assert get(alices, ALICE).status_code == 200
    assert get(writers, WRITER).status_code == 200
    for status_id, auth in ((alices, BOB), (alices, WRITER), (writers, ALICE), (writers, BOB)):
        assert_taxii_error(get(status_id, auth), 404)
    assert_taxii_error(get("00000000-0000-4000-8000-000000000000", ALICE), 404)

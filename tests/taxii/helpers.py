"""Shared helpers of the TAXII 2.1 conformance tests: STIX object factories, taxii2-client and raw HTTP calls."""

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from taxii2client.v21 import Collection, Status

from tests.hubs import INBOX, PASSWORDS, TOKEN, Hub

TAXII = "application/taxii+json;version=2.1"
STIX21 = "application/stix+json;version=2.1"
STIX20 = "application/stix+json;version=2.0"
TIMEOUT = 10  # seconds, for every raw request
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # objects' own timestamps sit far before the hub's date_added

StixObject = dict[str, Any]


class BearerAuth(requests.auth.AuthBase):
    """`Authorization: Bearer <token>`; taxii2-client takes it as `auth=`."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def auth_for(account: str) -> requests.auth.AuthBase:
    if account == "tokenbot":
        return BearerAuth(TOKEN)
    return requests.auth.HTTPBasicAuth(account, PASSWORDS[account])


def stamp(seconds: int) -> str:
    """A STIX timestamp `seconds` after 2020-01-01, with millisecond precision."""
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_stamp(text: str) -> datetime:
    """A STIX timestamp as an instant: the hub may render a version with more fraction digits than sent."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in text else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def instants(texts: Iterable[str]) -> list[datetime]:
    return [parse_stamp(t) for t in texts]


def at(*seconds: int) -> list[datetime]:
    """The instants of `stamp(s)` for each s, to compare with versions the hub reports."""
    return [EPOCH + timedelta(seconds=s) for s in seconds]


def stix_id(n: int, kind: str = "indicator") -> str:
    return f"{kind}--00000000-0000-4000-8000-{n:012d}"


def indicator(n: int, *, modified: int = 0, spec_version: str = "2.1") -> StixObject:
    """Indicator number n; `modified` seconds after creation makes a later version of the same id."""
    obj: StixObject = {
        "type": "indicator", "spec_version": spec_version, "id": stix_id(n),
        "created": stamp(0), "modified": stamp(modified),
        "pattern": f"[ipv4-addr:value = '10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}']",
        "valid_from": stamp(0),
    }
    if spec_version == "2.0":
        obj["labels"] = ["malicious-activity"]
    else:
        obj["pattern_type"] = "stix"
    return obj


def malware(n: int) -> StixObject:
    return {"type": "malware", "spec_version": "2.1", "id": stix_id(n, "malware"), "created": stamp(0),
            "modified": stamp(0), "name": f"family-{n}", "is_family": True}


def collection(hub: Hub, account: str = "alice", collection_id: str = INBOX) -> Collection:
    return Collection(hub.collection_url(collection_id), auth=auth_for(account))


def post(coll: Collection, objects: Sequence[StixObject], *, per_envelope: int = 100) -> list[Status]:
    """Post in envelopes of `per_envelope`, each processed (status polled) before the next is sent."""
    statuses = []
    for start in range(0, len(objects), per_envelope):
        status = coll.add_objects({"objects": list(objects[start:start + per_envelope])}, wait_for_completion=True,
                                  poll_interval=0.05, timeout=30)
        assert status.status == "complete", status
        statuses.append(status)
    return statuses


def url(hub: Hub, path: str) -> str:
    """`path` is relative to the hub's base URL, or an absolute URL."""
    return path if path.startswith("http") else hub.base + path


def objects_url(hub: Hub, collection_id: str = INBOX) -> str:
    return hub.collection_url(collection_id) + "objects/"


def manifest_url(hub: Hub, collection_id: str = INBOX) -> str:
    return hub.collection_url(collection_id) + "manifest/"


def get(hub: Hub, path: str, params: dict[str, Any] | str | None = None, *, account: str = "alice",
        accept: str | None = TAXII, headers: dict[str, str] | None = None) -> requests.Response:
    """A raw GET (never through taxii2-client), with a timeout."""
    merged = {"Accept": accept} if accept else {}
    merged.update(headers or {})
    return requests.get(url(hub, path), params=params, headers=merged, auth=auth_for(account), timeout=TIMEOUT)


def is_taxii_media_type(content_type: str | None) -> bool:
    """`application/taxii+json;version=2.1`, tolerating whitespace and case in the media type."""
    if not content_type:
        return False
    parts = [p.strip().lower() for p in content_type.split(";")]
    return parts[0] == "application/taxii+json" and "version=2.1" in parts[1:]


def assert_taxii_error(resp: requests.Response, status: int) -> dict[str, Any]:
    """The response is a TAXII error message (TAXII 2.1 section 3.6.1) with this HTTP status."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert is_taxii_media_type(resp.headers.get("Content-Type")), resp.headers.get("Content-Type")
    body: dict[str, Any] = resp.json()
    assert isinstance(body.get("title"), str) and body["title"]
    if "http_status" in body:
        assert body["http_status"] == str(status)
    return body


MAX_PAGES = 200  # a pager that never sees more=false fails instead of hanging


def follow(hub: Hub, path: str, params: dict[str, Any] | None = None, *,
           account: str = "alice") -> Iterator[requests.Response]:
    """Each page of a paged endpoint, following `next` until `more` is false."""
    params = dict(params or {})
    for _ in range(MAX_PAGES):
        resp = get(hub, path, params, account=account)
        assert resp.status_code == 200, (resp.status_code, resp.text)
        yield resp
        body = resp.json()
        if not body.get("more"):
            assert "next" not in body, body
            return
        assert body.get("next"), body
        params["next"] = body["next"]
    raise AssertionError(f"still more=true after {MAX_PAGES} pages of {path}")


def ids_of(objects: Iterable[StixObject]) -> list[str]:
    return [o["id"] for o in objects]


def manifest(hub: Hub, params: dict[str, Any] | None = None, collection_id: str = INBOX) -> list[dict[str, Any]]:
    """Every manifest record matching `params`, across all pages."""
    records: list[dict[str, Any]] = []
    for page in follow(hub, manifest_url(hub, collection_id), {"limit": 1000, **(params or {})}):
        records.extend(page.json().get("objects", []))
    return records

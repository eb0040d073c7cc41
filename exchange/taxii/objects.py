"""Objects, manifest, object-by-id and versions endpoints (TAXII 2.1 sections 5.3-5.8)."""

import asyncio
import hashlib
import uuid
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from exchange.audit.log import AuditEntry, AuditKind
from exchange.dedup.relay import view_for
from exchange.errors import InvalidRequest, NotFound, PayloadTooLarge
from exchange.ingest.journal import Envelope
from exchange.model.stix import object_ref
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.policy.access import Action
from exchange.policy.egress import Recipient, Relation
from exchange.policy.tlp import Tlp
from exchange.store.base import Page, StatusRecord
from exchange.taxii.context import OBJECTS_SERVED_KEY, account, collection, services
from exchange.taxii.media import check_content_type
from exchange.taxii.query import Endpoint, fingerprint, parse_query
from exchange.taxii.responses import (
    date_added_headers,
    envelope_bytes,
    manifest_payload,
    status_payload,
    taxii_bytes,
    taxii_json,
    versions_payload,
)

PARSE_IN_THREAD = 256 * 1024  # bodies above this are decoded off the event loop
FILTER_IN_THREAD = 200  # objects: a larger page is checked against the egress policy off the event loop


def egress_page(page: Page, recipient: Recipient, default_tlp: Tlp, with_body: bool) -> Page:
    """The page as this recipient may see it (TLP, agreement, no echoes); `more` stays the store's, so a
    client keeps paging past objects it may not see."""
    items = []
    for item in page.items:
        obj = orjson.loads(item.body)
        view = view_for(recipient, obj, default_tlp)
        if view is None:
            continue
        body = (item.body if view is obj else orjson.dumps(view)) if with_body else b""
        items.append(replace(item, body=body))
    return Page(items=items, more=page.more)


def _params(request: web.Request) -> dict[str, str]:
    # Repeated parameters are treated like one comma-separated list.
    return {key: ",".join(request.query.getall(key)) for key in request.query}


async def _read_page(request: web.Request, endpoint: Endpoint) -> tuple[str, Page, str | None]:
    _, coll = collection(request, Action.READ)
    svc = services(request)
    hub = svc.settings.hub
    params = _params(request)
    query = parse_query(params, endpoint, collection_id=coll.id, object_id=request.match_info.get("object_id"),
                        default_limit=hub.default_page_size, max_limit=hub.max_page_size)
    key = fingerprint(query, endpoint)
    if "next" in params:
        query = replace(query, after_key=svc.cursors.decode(params["next"], key))
    recipient = svc.settings.recipient(account(request).username)
    restricted = recipient.relation is not Relation.OPERATOR
    with_body = endpoint in (Endpoint.OBJECTS, Endpoint.OBJECT)
    page = await svc.store.query_objects(query, with_body=with_body or restricted)
    next_token = svc.cursors.encode(key, page.items[-1].date_added) if page.more else None  # before filtering
    if restricted:
        page = await asyncio.to_thread(egress_page, page, recipient, hub.default_tlp, with_body) \
            if len(page.items) > FILTER_IN_THREAD else egress_page(page, recipient, hub.default_tlp, with_body)
    if endpoint in (Endpoint.OBJECT, Endpoint.VERSIONS) and not page.items and "next" not in params:
        raise NotFound(f"no object {request.match_info['object_id']!r} matching the filters in collection {coll.id}")
    return coll.id, page, next_token


async def _audit_served(request: web.Request, collection_id: str, page: Page) -> None:
    if page.items:
        refs = [[i.id, format_timestamp(i.effective_version)] for i in page.items]
        await services(request).audit.append(AuditEntry(
            AuditKind.OBJECTS_SERVED, account(request).username, collection_id,
            {"path": request.path, "objects": refs}))


async def get_objects(request: web.Request) -> web.Response:
    endpoint = Endpoint.OBJECT if "object_id" in request.match_info else Endpoint.OBJECTS
    collection_id, page, next_token = await _read_page(request, endpoint)
    await _audit_served(request, collection_id, page)
    request[OBJECTS_SERVED_KEY] = len(page.items)
    return taxii_bytes(envelope_bytes(page, next_token), headers=date_added_headers(page))


async def get_manifest(request: web.Request) -> web.Response:
    _, page, next_token = await _read_page(request, Endpoint.MANIFEST)
    return taxii_json(manifest_payload(page, next_token), headers=date_added_headers(page))


async def get_versions(request: web.Request) -> web.Response:
    _, page, next_token = await _read_page(request, Endpoint.VERSIONS)
    return taxii_json(versions_payload(page, next_token), headers=date_added_headers(page))


async def delete_object(request: web.Request) -> web.Response:
    collection(request, Action.READ)
    _, coll = collection(request, Action.WRITE)
    svc = services(request)
    object_id = request.match_info["object_id"]
    query = parse_query(_params(request), Endpoint.OBJECT_DELETE, collection_id=coll.id, object_id=object_id)
    deleted = await svc.store.delete_objects(query)
    if not deleted:
        raise NotFound(f"no object {object_id!r} matching the filters in collection {coll.id}")
    await svc.audit.append(AuditEntry(AuditKind.OBJECTS_DELETED, account(request).username, coll.id,
                                      {"id": object_id, "versions_deleted": deleted, "query": _params(request)}))
    return taxii_bytes(b"", status=200)


def decode_envelope(body: bytes) -> list[Any]:
    """The envelope's objects; InvalidRequest says precisely why the body is not an envelope."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in str(exc):  # orjson names Python's str there, which says nothing to a client
            raise InvalidRequest("request body is not UTF-8: TAXII 2.1 bodies are JSON in UTF-8 (RFC 8259 section "
                                 f"8.1); {str(exc).removeprefix('str is not valid UTF-8: ')}") from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise InvalidRequest(f"request body must be a TAXII envelope (a JSON object), not {type(envelope).__name__}")
    objects = envelope.get("objects")
    if objects is None:
        raise InvalidRequest("TAXII envelope has no 'objects' property")
    if not isinstance(objects, list):
        raise InvalidRequest("TAXII envelope 'objects' must be a list")
    if not objects:
        raise InvalidRequest("TAXII envelope 'objects' is empty: nothing to add")
    return objects


async def post_objects(request: web.Request) -> web.Response:
    root, coll = collection(request, Action.WRITE)
    check_content_type(request.headers.get("Content-Type"))
    svc = services(request)
    limit = svc.settings.hub.max_content_length
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes exceeds max_content_length {limit}")
    body = await request.read()  # aiohttp caps chunked bodies a little above the limit; the exact check is ours
    if len(body) > limit:
        raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds max_content_length {limit}")
    objects = await asyncio.to_thread(decode_envelope, body) if len(body) > PARSE_IN_THREAD \
        else decode_envelope(body)
    acct = account(request).username
    env = Envelope(status_id=str(uuid.uuid4()), api_root=root.path, collection_id=coll.id, account=acct,
                   received_at=now_micros(), total=len(objects), pending=[object_ref(o) for o in objects],
                   body=body)
    await svc.journal.append(env)  # durable before the 202: nothing acknowledged is lost
    await svc.audit.append(AuditEntry(AuditKind.ENVELOPE_ACCEPTED, acct, coll.id, {
        "status_id": env.status_id, "api_root": root.path, "objects": env.total,
        "sha256": hashlib.sha256(body).hexdigest()}))
    svc.processor.wake()
    status = StatusRecord(id=env.status_id, api_root=root.path, account=acct, request_timestamp=env.received_at,
                          total=env.total, results=())
    return taxii_json(status_payload(status, pending=env.pending), status=202)

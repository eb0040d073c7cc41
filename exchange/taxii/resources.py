"""Discovery, API root, collections and status resources (TAXII 2.1 sections 4.1-4.3, 5.1-5.2)."""

from typing import Any

from aiohttp import web

from exchange.config import CollectionSettings
from exchange.errors import NotFound
from exchange.policy.access import Action, allowed, visible
from exchange.store.base import StatusRecord
from exchange.taxii.context import account, api_root, collection, services
from exchange.taxii.media import COLLECTION_MEDIA_TYPES, TAXII_JSON
from exchange.taxii.responses import status_payload, taxii_json


def _root_url(request: web.Request, path: str) -> str:
    return str(request.url.origin()) + f"/{path}/"


async def get_discovery(request: web.Request) -> web.Response:
    hub = services(request).settings.hub
    roots = services(request).settings.api_roots
    payload: dict[str, Any] = {"title": hub.title, "api_roots": [_root_url(request, r.path) for r in roots]}
    if hub.description:
        payload["description"] = hub.description
    if hub.contact:
        payload["contact"] = hub.contact
    default = next((r for r in roots if r.default), None)
    if default is not None:
        payload["default"] = _root_url(request, default.path)
    return taxii_json(payload)


async def get_api_root(request: web.Request) -> web.Response:
    root = api_root(request)
    payload = {"title": root.title or root.path, "versions": [TAXII_JSON],
               "max_content_length": services(request).settings.hub.max_content_length}
    if root.description:
        payload["description"] = root.description
    return taxii_json(payload)


def _collection_payload(request: web.Request, coll: CollectionSettings) -> dict[str, Any]:
    acct = account(request)
    payload: dict[str, Any] = {
        "id": coll.id, "title": coll.title,
        "can_read": allowed(acct, coll.id, Action.READ), "can_write": allowed(acct, coll.id, Action.WRITE),
        "media_types": list(COLLECTION_MEDIA_TYPES),
    }
    if coll.description:
        payload["description"] = coll.description
    if coll.alias:
        payload["alias"] = coll.alias
    return payload


async def get_collections(request: web.Request) -> web.Response:
    root = api_root(request)
    listed = [_collection_payload(request, c) for c in root.collections if visible(account(request), c.id)]
    return taxii_json({"collections": listed} if listed else {})


async def get_collection(request: web.Request) -> web.Response:
    root = api_root(request)
    name = request.match_info["collection_id"]
    coll = next((c for c in root.collections if name in (c.id, c.alias)), None)
    if coll is not None and not visible(account(request), coll.id):
        collection(request, Action.READ)  # raises the 403 with its message
    if coll is None:
        raise NotFound(f"no collection {name!r} in API root {root.path!r}")
    return taxii_json(_collection_payload(request, coll))


async def get_status(request: web.Request) -> web.Response:
    root = api_root(request)
    status_id = request.match_info["status_id"]
    svc = services(request)
    status = await svc.store.get_status(status_id)
    pending = None
    if status is None:
        env = await svc.journal.find(status_id)
        if env is not None:
            status = StatusRecord(id=env.status_id, api_root=env.api_root, account=env.account,
                                  request_timestamp=env.received_at, total=env.total, results=())
            pending = env.pending
    # Another account's status is as invisible as a missing one.
    if status is None or status.api_root != root.path or status.account != account(request).username:
        raise NotFound(f"no status resource {status_id!r}")
    return taxii_json(status_payload(status, pending=pending))

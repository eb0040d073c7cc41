"""Typed application state the TAXII handlers use (filled in by exchange.app.build_app)."""

from dataclasses import dataclass

from aiohttp import web

from exchange.audit.log import AuditLog
from exchange.config import ApiRootSettings, CollectionSettings, Settings
from exchange.errors import Forbidden, NotFound
from exchange.ingest.journal import Journal
from exchange.ingest.processor import Processor
from exchange.policy.access import Account, Action, allowed
from exchange.store.base import Store
from exchange.taxii.auth import Authenticator
from exchange.taxii.cursor import CursorCodec


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    journal: Journal
    audit: AuditLog
    processor: Processor
    cursors: CursorCodec
    authenticator: Authenticator


SERVICES = web.AppKey("services", Services)
ACCOUNT_KEY = web.RequestKey("account", Account)  # the authenticated account
OBJECTS_SERVED_KEY = web.RequestKey("objects_served", int)  # objects a read returned, for the metrics


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def account(request: web.Request) -> Account:
    acct: Account = request[ACCOUNT_KEY]
    return acct


def api_root(request: web.Request) -> ApiRootSettings:
    name = request.match_info["api_root"]
    for root in services(request).settings.api_roots:
        if root.path == name:
            return root
    raise NotFound(f"no API root {name!r}")


def collection(request: web.Request, action: Action) -> tuple[ApiRootSettings, CollectionSettings]:
    """The addressed collection (by id or alias), if the account may perform `action` on it."""
    root = api_root(request)
    name = request.match_info["collection_id"]
    found = next((c for c in root.collections if name in (c.id, c.alias)), None)
    if found is None:
        raise NotFound(f"no collection {name!r} in API root {root.path!r}")
    if not allowed(account(request), found.id, action):
        raise Forbidden(f"account {account(request).username!r} may not {action.value} collection {found.id}")
    return root, found

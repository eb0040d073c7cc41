"""The TAXII 2.1 route table and the request middleware (authentication, content negotiation)."""

from collections.abc import Awaitable, Callable

from aiohttp import web

from exchange.taxii import objects, resources
from exchange.taxii.context import ACCOUNT_KEY, services
from exchange.taxii.errors import error_middleware
from exchange.taxii.media import check_accept

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Resources outside TAXII (health, metrics) that answer without TAXII credentials or content negotiation;
# they do their own access control. Everything else, unknown paths included, is authenticated first.
PUBLIC_RESOURCES = web.AppKey("public_resources", frozenset)


def add_public_routes(app: web.Application, routes: list[web.RouteDef]) -> None:
    added = app.router.add_routes(routes)
    app[PUBLIC_RESOURCES] = app.get(PUBLIC_RESOURCES, frozenset()) | {r.resource for r in added}


# Resources outside TAXII that authenticate like TAXII but negotiate their own media types (the admin API's
# JSON, a member's text/event-stream); they do their own authorization.
OWN_MEDIA_RESOURCES = web.AppKey("own_media_resources", frozenset)


def add_authenticated_routes(app: web.Application, routes: list[web.RouteDef]) -> None:
    added = app.router.add_routes(routes)
    app[OWN_MEDIA_RESOURCES] = app.get(OWN_MEDIA_RESOURCES, frozenset()) | {r.resource for r in added}


@web.middleware
async def taxii_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    if resource in request.app.get(PUBLIC_RESOURCES, frozenset()):
        return await handler(request)
    # Every TAXII endpoint, discovery included, is authenticated (credentials first: no probing without them).
    request[ACCOUNT_KEY] = await services(request).authenticator.authenticate(request.headers.get("Authorization"))
    if resource not in request.app.get(OWN_MEDIA_RESOURCES, frozenset()):
        check_accept(request.headers.get("Accept"))
    return await handler(request)


def add_taxii_routes(app: web.Application) -> None:
    app.middlewares.extend([error_middleware, taxii_middleware])
    coll = "/{api_root}/collections/{collection_id}"
    app.router.add_routes([
        web.get("/taxii2/", resources.get_discovery),
        web.get("/{api_root}/", resources.get_api_root),
        web.get("/{api_root}/status/{status_id}/", resources.get_status),
        web.get("/{api_root}/collections/", resources.get_collections),
        web.get(coll + "/", resources.get_collection),
        web.get(coll + "/objects/", objects.get_objects),
        web.post(coll + "/objects/", objects.post_objects),
        web.get(coll + "/manifest/", objects.get_manifest),
        web.get(coll + "/objects/{object_id}/", objects.get_objects),
        web.delete(coll + "/objects/{object_id}/", objects.delete_object),
        web.get(coll + "/objects/{object_id}/versions/", objects.get_versions),
    ])

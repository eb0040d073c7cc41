"""The TAXII 2.1 route table and the request middleware (authentication, content negotiation)."""

from collections.abc import Awaitable, Callable

from aiohttp import web

from exchange.taxii import objects, resources
from exchange.taxii.context import ACCOUNT_KEY, services
from exchange.taxii.errors import error_middleware
from exchange.taxii.media import check_accept

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def taxii_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Every TAXII endpoint, discovery included, is authenticated (credentials first: no probing without them).
    request[ACCOUNT_KEY] = await services(request).authenticator.authenticate(request.headers.get("Authorization"))
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

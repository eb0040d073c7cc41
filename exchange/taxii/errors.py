"""The one place domain errors become TAXII error messages (TAXII 2.1 section 3.6.1) with HTTP statuses."""

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from exchange import errors
from exchange.taxii.media import TAXII_JSON

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS: dict[type[errors.ExchangeError], tuple[int, str]] = {
    errors.InvalidRequest: (400, "Bad request"),
    errors.InvalidObject: (400, "Invalid object"),
    errors.Unauthenticated: (401, "Authentication required"),
    errors.Forbidden: (403, "Forbidden"),
    errors.NotFound: (404, "Not found"),
    errors.NotAcceptable: (406, "Not acceptable"),
    errors.PayloadTooLarge: (413, "Payload too large"),
    errors.UnsupportedMediaType: (415, "Unsupported media type"),
    errors.TransientError: (503, "Service unavailable"),
}


def error_response(status: int, title: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"title": title, "description": description, "http_status": str(status)}
    return web.Response(status=status, body=orjson.dumps(body), content_type=None,
                        headers={"Content-Type": TAXII_JSON, **(headers or {})})


def _for_domain_error(exc: errors.ExchangeError) -> web.Response:
    status, title = next((v for k, v in _STATUS.items() if isinstance(exc, k)), (500, "Internal error"))
    headers = {"WWW-Authenticate": 'Basic realm="exchange", Bearer realm="exchange"'} if status == 401 else None
    return error_response(status, title, str(exc), headers)


def _for_http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        description = f"no TAXII resource at {request.path}"
        if not request.path.endswith("/"):
            description += " (TAXII URLs end with '/')"
    elif exc.status == 405:
        description = f"{request.method} is not allowed on {request.path}"
    elif exc.status == 413:
        description = "request body exceeds max_content_length (see the API root resource)"
    else:
        description = exc.text or exc.reason
    allow = exc.headers.get("Allow")
    # The same title as the domain error of the same status: a client should not see two names for one 413.
    title = next((t for s, t in _STATUS.values() if s == exc.status), exc.reason)
    return error_response(exc.status, title, description, {"Allow": allow} if allow else None)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ExchangeError as exc:
        return _for_domain_error(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _for_http_error(request, exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal error", "the server failed; the operator can find it in the log")

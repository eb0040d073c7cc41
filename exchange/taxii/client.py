"""An async TAXII 2.1 client on aiohttp: every call has a timeout and response headers stay visible.

taxii2-client (requests, no timeouts, headers hidden) stays the test suite's independent client;
this one is for the hub's own outbound work (`exchange ingest`, and the peer poller of #4).
"""

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson

from exchange.errors import ExchangeError, TransientError
from exchange.taxii.media import TAXII_JSON

HEADERS = {"Accept": TAXII_JSON}


class TaxiiClientError(ExchangeError):
    """The server refused a request (4xx): retrying the same request will not help."""


class Unauthorized(TaxiiClientError):
    """401 or 403: the credentials are wrong or lack the grant; an operator has to act."""


class MalformedResponse(ExchangeError):
    """A 2xx answer that is not TAXII (wrong media type, bad JSON, not an envelope, too big): the peer is broken.

    Carries what was received (at most the size limit) so it can be kept for inspection.
    """

    def __init__(self, message: str, *, url: str, content_type: str, body: bytes) -> None:
        super().__init__(message)
        self.url = url
        self.content_type = content_type
        self.body = body


TRANSIENT_4XX = frozenset({408, 425, 429})  # timeouts and rate limits: the same request may work later
ERROR_PREVIEW = 300  # characters of an error body worth quoting (medallion answers errors with HTML pages)
_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            return {"Authorization": aiohttp.encode_basic_auth(self.username, self.password or "")}
        return {}


def api_root_of(collection_url: str) -> str:
    base, sep, _ = collection_url.partition("/collections/")
    if not sep:
        raise TaxiiClientError(f"not a TAXII collection URL (…/collections/<id>/): {collection_url}")
    return base + "/"


def is_taxii_json(content_type: str) -> bool:
    """application/taxii+json (any version parameter); plain application/json is tolerated as a common quirk."""
    return content_type.split(";")[0].strip().lower() in ("application/taxii+json", "application/json")


def _refusal(method: str, url: str, status: int, raw: bytes) -> ExchangeError:
    """The error for a non-2xx answer, grouped by what the caller should do about it."""
    payload = _json(raw)
    detail = payload.get("description") or payload.get("title") or _preview(raw)
    message = f"{method} {url}: HTTP {status}" + (f": {detail}" if detail else "")
    if status >= 500 or status in TRANSIENT_4XX:
        return TransientError(message)
    if status in (401, 403):
        return Unauthorized(message)
    return TaxiiClientError(message)


def _preview(raw: bytes) -> str:
    """A short, one-line quote of a body; HTML error pages (medallion, Flask) reduced to their text."""
    text = raw[: ERROR_PREVIEW * 4].decode(errors="replace")
    if text.lstrip().startswith("<"):
        text = _TAG.sub(" ", text)
    return " ".join(text.split())[:ERROR_PREVIEW]


class TaxiiClient:
    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *, timeout: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._session = session
        self._ssl: ssl.SSLContext | bool = ssl_context or True  # True: aiohttp's default verification
        self._headers = {**HEADERS, **credentials.headers()}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _request(self, method: str, url: str, body: bytes | None = None) -> tuple[dict[str, Any], Any]:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = TAXII_JSON
        try:
            async with self._session.request(method, url, data=body, headers=headers, timeout=self._timeout,
                                             ssl=self._ssl) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _refusal(method, url, resp.status, raw)
                return _json(raw), resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    async def get_json(self, url: str, params: Mapping[str, str] | None = None, *,
                       max_bytes: int = 64 * 2**20) -> tuple[dict[str, Any], Mapping[str, str]]:
        """GET a TAXII resource strictly: 4xx/5xx raise as in _request, and anything but a TAXII JSON
        object of at most max_bytes raises MalformedResponse with what arrived."""
        try:
            async with self._session.get(url, params=params, headers=self._headers, timeout=self._timeout,
                                         ssl=self._ssl) as resp:
                shown = str(resp.url)
                if resp.status >= 400:
                    raise _refusal("GET", shown, resp.status, await _read_capped(resp, ERROR_PREVIEW * 4))
                content_type = resp.headers.get("Content-Type", "")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise MalformedResponse(f"GET {shown}: page of {resp.content_length} bytes exceeds "
                                            f"max_page_bytes {max_bytes}", url=shown, content_type=content_type,
                                            body=await _read_capped(resp, max_bytes))
                raw = await _read_capped(resp, max_bytes + 1)
                return _taxii_object(raw, url=shown, content_type=content_type, max_bytes=max_bytes), resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"GET {url}: {type(exc).__name__}: {exc}") from None

    async def get_objects(self, collection_url: str, params: Mapping[str, str], *,
                          max_bytes: int = 64 * 2**20) -> tuple[dict[str, Any], Mapping[str, str]]:
        """One page of a collection's objects (TAXII 2.1 section 5.3) and the response headers, which
        carry the X-TAXII-Date-Added-First/-Last a resumable cursor needs."""
        return await self.get_json(collection_url.rstrip("/") + "/objects/", params, max_bytes=max_bytes)

    async def get_manifest(self, collection_url: str, params: Mapping[str, str], *,
                           max_bytes: int = 64 * 2**20) -> tuple[dict[str, Any], Mapping[str, str]]:
        return await self.get_json(collection_url.rstrip("/") + "/manifest/", params, max_bytes=max_bytes)

    async def discover_api_root(self, discovery_url: str, *, max_bytes: int = 1 << 20) -> str:
        """The default API root from discovery (TAXII 2.1 section 4.1); relative URLs (OpenTAXII) resolved."""
        payload, _ = await self.get_json(discovery_url, max_bytes=max_bytes)
        roots = payload.get("api_roots") or []
        chosen = payload.get("default") or (roots[0] if roots else None)
        if not isinstance(chosen, str):
            raise TaxiiClientError(f"GET {discovery_url}: discovery names no API root")
        root = urljoin(discovery_url, chosen)
        return root if root.endswith("/") else root + "/"

    async def api_root(self, api_root_url: str) -> dict[str, Any]:
        return (await self._request("GET", api_root_url))[0]

    async def add_objects(self, collection_url: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
        body = orjson.dumps({"objects": objects})
        return (await self._request("POST", collection_url.rstrip("/") + "/objects/", body))[0]

    async def status(self, api_root_url: str, status_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"{api_root_url}status/{status_id}/"))[0]

    async def wait_complete(self, api_root_url: str, status_id: str, *, within: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        delay = 0.05
        while True:
            status = await self.status(api_root_url, status_id)
            if status.get("status") == "complete" or time.monotonic() > deadline:
                return status
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body: a peer's page must never decide how much memory we use."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _taxii_object(raw: bytes, *, url: str, content_type: str, max_bytes: int) -> dict[str, Any]:
    def garbage(why: str) -> MalformedResponse:
        return MalformedResponse(f"GET {url}: {why}", url=url, content_type=content_type, body=raw[:max_bytes])

    if len(raw) > max_bytes:
        raise garbage(f"page larger than max_page_bytes {max_bytes}")
    if not is_taxii_json(content_type):
        raise garbage(f"answered Content-Type {content_type or '(none)'!r}, not {TAXII_JSON}: {_preview(raw)}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise garbage(f"body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise garbage(f"body is a JSON {type(value).__name__}, not a TAXII resource (an object)")
    return value


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

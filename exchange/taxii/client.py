"""An async TAXII 2.1 client on aiohttp: every call has a timeout and response headers stay visible.

taxii2-client (requests, no timeouts, headers hidden) stays the test suite's independent client;
this one is for the hub's own outbound work (`exchange ingest`, and the peer poller of #4).
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from exchange.errors import ExchangeError, TransientError
from exchange.taxii.media import TAXII_JSON

HEADERS = {"Accept": TAXII_JSON}


class TaxiiClientError(ExchangeError):
    """The server refused a request (4xx): retrying the same request will not help."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    token: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            return {"Authorization": aiohttp.BasicAuth(self.username, self.password or "").encode()}
        return {}


def api_root_of(collection_url: str) -> str:
    base, sep, _ = collection_url.partition("/collections/")
    if not sep:
        raise TaxiiClientError(f"not a TAXII collection URL (…/collections/<id>/): {collection_url}")
    return base + "/"


class TaxiiClient:
    def __init__(self, session: aiohttp.ClientSession, credentials: Credentials, *, timeout: float = 60.0) -> None:
        self._session = session
        self._headers = {**HEADERS, **credentials.headers()}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _request(self, method: str, url: str, body: bytes | None = None) -> tuple[dict[str, Any], Any]:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = TAXII_JSON
        try:
            async with self._session.request(method, url, data=body, headers=headers, timeout=self._timeout) as resp:
                raw = await resp.read()
                if resp.status >= 500:
                    raise TransientError(f"{method} {url}: HTTP {resp.status}")
                payload = _json(raw)
                if resp.status >= 400:
                    detail = payload.get("description") or payload.get("title") or raw[:200].decode(errors="replace")
                    raise TaxiiClientError(f"{method} {url}: HTTP {resp.status}: {detail}")
                return payload, resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

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


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

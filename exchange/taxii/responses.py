"""Building TAXII 2.1 response bodies; object bodies are spliced in as stored bytes, never re-encoded."""

from typing import Any

import orjson
from aiohttp import web

from exchange.model.timestamps import format_timestamp
from exchange.store.base import Page, StatusRecord
from exchange.taxii.media import TAXII_JSON


def taxii_json(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return taxii_bytes(orjson.dumps(payload), status=status, headers=headers)


def taxii_bytes(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": TAXII_JSON, **(headers or {})})


def date_added_headers(page: Page) -> dict[str, str]:
    """X-TAXII-Date-Added-First/-Last: the first and last object of this page (TAXII 2.1 section 3.3.1)."""
    if not page.items:
        return {}
    return {"X-TAXII-Date-Added-First": format_timestamp(page.items[0].date_added),
            "X-TAXII-Date-Added-Last": format_timestamp(page.items[-1].date_added)}


def envelope_bytes(page: Page, next_token: str | None) -> bytes:
    head: dict[str, Any] = {"more": page.more}
    if next_token:
        head["next"] = next_token
    if not page.items:
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"objects":[' + b",".join(i.body for i in page.items) + b"]}"


def manifest_payload(page: Page, next_token: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"more": page.more}
    if next_token:
        payload["next"] = next_token
    if page.items:
        payload["objects"] = [
            {"id": i.id, "date_added": format_timestamp(i.date_added),
             "version": format_timestamp(i.effective_version),
             "media_type": f"application/stix+json;version={i.spec_version}"}
            for i in page.items
        ]
    return payload


def versions_payload(page: Page, next_token: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"more": page.more}
    if next_token:
        payload["next"] = next_token
    if page.items:
        payload["versions"] = [format_timestamp(i.effective_version) for i in page.items]
    return payload


def status_payload(status: StatusRecord, *, pending: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A status resource (TAXII 2.1 section 4.3.1); `pending` lists objects not processed yet."""
    def details(outcome_filter: bool) -> list[dict[str, str]]:
        return [{"id": r.id, "version": r.version, "message": r.message}
                for r in status.results if (not r.outcome.succeeded) is outcome_filter]

    successes, failures = details(False), details(True)
    pendings = [{"id": i, "version": v} for i, v in (pending or [])]
    return {
        "id": status.id,
        "status": "pending" if pendings else "complete",
        "request_timestamp": format_timestamp(status.request_timestamp),
        "total_count": status.total,
        "success_count": len(successes),
        "successes": successes,
        "failure_count": len(failures),
        "failures": failures,
        "pending_count": len(pendings),
        "pendings": pendings,
    }

"""HTTP surface of the fan-out stage: a member's live alert stream, and the operator's alert and delivery API.

Authentication is the TAXII middleware's (the same accounts); authorization is here: the stream belongs to
the member whose subscription it is, the admin API to operator accounts.
"""

from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import orjson
from aiohttp import web

from exchange.errors import Forbidden, NotFound
from exchange.fanout.alerting import AlertBook, Alerter, AlertRow
from exchange.fanout.queue import DeliveryQueue
from exchange.fanout.records import ChannelKind, Delivery, DeliveryState, Member
from exchange.fanout.sse import stream_alerts
from exchange.policy.egress import Relation
from exchange.taxii.context import account, services
from exchange.taxii.server import add_authenticated_routes


@dataclass(frozen=True, slots=True)
class Alerting:
    alerter: Alerter
    book: AlertBook
    queue: DeliveryQueue
    members: tuple[Member, ...]


ALERTING = web.AppKey("alerting", Alerting)


def alerting(request: web.Request) -> Alerting:
    found = request.app.get(ALERTING)
    if found is None:
        raise NotFound("this hub raises no alerts (hub.alerts_collection is not set)")
    return found


def _operator(request: web.Request) -> None:
    user = account(request).username
    if services(request).settings.recipient(user).relation is not Relation.OPERATOR:
        raise Forbidden(f"account {user!r} is not an operator account")


def alert_summary(row: AlertRow) -> dict[str, Any]:
    ext: dict[str, Any] = next(iter(row.body.get("extensions", {}).values()), {})
    return {"id": row.id, "threat": row.threat_key, "level": row.level, "level_name": ext.get("level_name"),
            "status": row.status, "name": row.body.get("name"), "modified": row.body.get("modified"),
            "countries": ext.get("countries", []), "source_count": ext.get("source_count"),
            "first_seen": ext.get("first_seen"), "last_seen": ext.get("last_seen"),
            "indicators": len(row.body.get("object_refs", []))}


def delivery_summary(entry: Delivery) -> dict[str, object]:
    out: dict[str, object] = msgspec.structs.asdict(entry)
    out.pop("body")
    return out


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def get_alerts(request: web.Request) -> web.Response:
    _operator(request)
    rows = await alerting(request).book.alerts()
    return _json({"alerts": [alert_summary(r) for r in rows]})


async def get_deliveries(request: web.Request) -> web.Response:
    _operator(request)
    queue = alerting(request).queue
    state = request.query.get("state")
    subscription = request.query.get("subscription")
    if state == DeliveryState.DEAD.value:
        entries = await queue.dead_letters(subscription)
    else:
        subs = [subscription] if subscription else [s.id for m in alerting(request).members for s in m.subscriptions]
        wanted = DeliveryState(state) if state else None
        entries = [e for sub in subs for e in await queue.entries(sub, wanted)]
    return _json({"deliveries": [delivery_summary(e) for e in entries],
                  "queues": [asdict(s) for s in await queue.stats()]})


async def replay_delivery(request: web.Request) -> web.Response:
    _operator(request)
    raw = request.match_info["delivery_id"]
    if not raw.isdigit():
        raise NotFound(f"no delivery {raw!r}")
    replayed = await alerting(request).queue.replay(int(raw))
    if replayed is None:
        raise NotFound(f"no dead delivery {raw} to replay")
    return _json({"replayed": delivery_summary(replayed)})


async def get_member_events(request: web.Request) -> web.StreamResponse:
    found = alerting(request)
    subscription_id = request.match_info["subscription_id"]
    owner = next(((m, s) for m in found.members for s in m.subscriptions if s.id == subscription_id), None)
    if owner is None or owner[1].channel.kind is not ChannelKind.SSE:
        raise NotFound(f"no server-sent-events subscription {subscription_id!r}")
    if owner[0].account != account(request).username:
        raise Forbidden(f"subscription {subscription_id!r} belongs to another member")
    return await stream_alerts(request, found.queue, subscription_id)


def add_alerting_routes(app: web.Application) -> None:
    add_authenticated_routes(app, [
        web.get("/admin/alerts", get_alerts),
        web.get("/admin/deliveries", get_deliveries),
        web.post("/admin/deliveries/{delivery_id}/replay", replay_delivery),
        web.get("/members/{subscription_id}/events", get_member_events),
    ])

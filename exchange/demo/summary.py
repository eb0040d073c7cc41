"""The end of the demo: what every hub holds, what the member received, the checks the scenario promises
(one alert, delivered once per version, the TLP:RED claim contained, the warninglisted value quiet), and the
machine-readable summary `exchange demo --json` prints."""

from dataclasses import dataclass
from typing import Any

import orjson

from exchange.correlate.alert_stix import ALERT_EXTENSION
from exchange.demo.receiver import Received
from exchange.demo.replay import Expectations
from exchange.demo.scenario import BENIGN, RED_SHA256
from exchange.demo.topology import Topology
from exchange.demo.watch import HubView


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


def alert_ext(alert: dict[str, Any] | None) -> dict[str, Any]:
    ext: dict[str, Any] = ((alert or {}).get("extensions") or {}).get(ALERT_EXTENSION) or {}
    return ext


def delivery_record(entry: Received) -> dict[str, Any]:
    alert = entry.alert
    ext = alert_ext(alert)
    return {"idempotency_key": entry.idempotency_key, "event_id": entry.event_id, "attempt": entry.attempt,
            "signature": entry.signature, "signature_valid": entry.signature_valid, "repeat": entry.repeat,
            "received_at": entry.received_at, "alert_id": (alert or {}).get("id"),
            "version": (alert or {}).get("modified"), "level": ext.get("level"), "level_name": ext.get("level_name"),
            "status": ext.get("status"), "countries": ext.get("countries", []), "bundle": entry.bundle}


def benign_id(expectations: Expectations) -> str | None:
    return next((i for i, p in expectations.patterns.items() if f"'{BENIGN}'" in p), None)


def run_checks(topology: Topology, views: dict[str, HubView], deliveries: list[Received],
               expectations: Expectations, red_held_by: list[str],
               medallion_objects: list[dict[str, Any]]) -> list[Check]:
    checks = []
    alert_ids = sorted({i for v in views.values() for i in v.alerts})
    delivered = [d for d in deliveries if not d.repeat]
    delivered_ids = sorted({(d.alert or {}).get("id", "") for d in delivered})
    checks.append(Check("one coordinated alert", len(alert_ids) == 1 and delivered_ids == alert_ids,
                        f"alert ids at the hubs: {alert_ids}; in the member's deliveries: {delivered_ids}"))
    final = alert_ext(delivered[-1].alert) if delivered else {}
    everyone = list(topology.countries)
    checks.append(Check("the final alert names every country", final.get("countries") == everyone,
                        f"{final.get('countries')} (the scenario: {everyone})"))
    keys = [d.idempotency_key for d in delivered]
    versions = [(d.alert or {}).get("modified") for d in delivered]
    checks.append(Check("delivered once per version",
                        bool(delivered) and len(set(keys)) == len(keys) == len(set(versions)),
                        f"{len(delivered)} deliveries, {len(set(keys))} idempotency keys, {len(set(versions))} "
                        f"alert versions, {len(deliveries) - len(delivered)} repeats"))
    origin = {hub for _, hub in expectations.held.values()}
    leaked = RED_SHA256 in str([d.body for d in deliveries]) or RED_SHA256 in str(medallion_objects)
    checks.append(Check("the TLP:RED claim stayed in its country", red_held_by == sorted(origin) and not leaked,
                        f"held by {red_held_by} (posted to {sorted(origin)}); in deliveries or medallion: {leaked}"))
    benign = benign_id(expectations)
    flagged = [name for name, v in views.items() if benign in v.indicators and v.indicators[benign].warninglists]
    alerted = [i for v in views.values() for i, row in v.alerts.items() if row.get("threat") == f"indicator:{benign}"]
    in_alerts = any(benign in ((d.alert or {}).get("object_refs") or ()) for d in deliveries)
    checks.append(Check(f"the warninglisted {BENIGN} raised nothing",
                        benign is not None and len(flagged) == len(views) and not alerted and not in_alerts,
                        f"flagged at {flagged}; alerts about it: {alerted}; in a delivered alert: {in_alerts}"))
    return checks


def hub_counts(view: HubView) -> dict[str, Any]:
    return {"canonical_indicators": len(view.indicators),
            "objects_stored": view.outcome("stored") + view.outcome("merged"),
            "duplicates_merged": view.duplicates_merged, "exact_duplicates": view.outcome("duplicate"),
            "rejected": view.outcome("rejected"), "from_peers": view.by_peer(),
            "warninglisted": sum(1 for i in view.indicators.values() if i.warninglists)}


def holdings(view: HubView) -> list[dict[str, Any]]:
    return [{"id": i.id, "pattern": i.pattern, "countries": sorted(i.countries), "claims": i.claims,
             "warninglists": list(i.warninglists)} for i in sorted(view.indicators.values(), key=lambda i: i.pattern)]


def summary_rows(topology: Topology, views: dict[str, HubView]) -> list[list[str]]:
    rows = []
    for hub in topology.hubs:
        view, counts = views[hub.name], hub_counts(views[hub.name])
        alert = next(iter(view.alerts.values()), None)
        rows.append([hub.name, hub.country, str(counts["canonical_indicators"]), str(counts["objects_stored"]),
                     str(view.from_peers()), str(counts["duplicates_merged"]), str(counts["warninglisted"]),
                     "-" if alert is None else f"{alert['level']} {alert['level_name']} ({alert['status']}): "
                                               f"{', '.join(alert.get('countries') or [])}"])
    return rows


SUMMARY_COLUMNS = ("hub", "country", "canonical indicators", "objects stored", "from peers", "duplicates merged",
                   "warninglisted", "alert")


def build_summary(topology: Topology, views: dict[str, HubView], deliveries: list[Received],
                  expectations: Expectations, checks: list[Check], *, pids: dict[str, int],
                  medallion_objects: list[dict[str, Any]], red_held_by: list[str],
                  timings: dict[str, Any]) -> dict[str, Any]:
    benign = benign_id(expectations)
    member = topology.member
    hubs = []
    for hub in topology.hubs:
        view = views[hub.name]
        hubs.append({"name": hub.name, "country": hub.country, "url": f"{hub.base}/taxii2/", "pid": pids[hub.name],
                     "directory": str(hub.directory), "data_dir": str(hub.data_dir),
                     "pulls_from": topology.upstream(hub).name, "counts": hub_counts(view),
                     "alerts": list(view.alerts.values()), "indicators": holdings(view)})
    pushed = [o for o in medallion_objects if o.get("type") == "indicator"
              and o.get("created_by_ref") == topology.hub(topology.medallion_hub).identity]
    delivered = [d for d in deliveries if not d.repeat]
    return {
        "ok": all(c.passed for c in checks),
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks],
        "countries": list(topology.countries),
        "timings": timings,
        "hubs": hubs,
        "medallion": {"name": topology.medallion.name, "country": topology.medallion.country,
                      "url": topology.medallion.discovery, "pid": pids[topology.medallion.name],
                      "peer_of": topology.medallion_hub, "objects": len(medallion_objects),
                      "pushed_by_hub": len(pushed)},
        "alerts": {"ids": sorted({i for v in views.values() for i in v.alerts}),
                   "final": delivered[-1].alert if delivered else None},
        "member": {"name": member.name, "hub": member.hub, "subscription": member.webhook_subscription,
                   "webhook_url": member.webhook_url, "deliveries": [delivery_record(d) for d in deliveries]},
        "red_claim": {"sha256": RED_SHA256, "canonical_ids": sorted(expectations.held),
                      "posted_to": sorted({hub for _, hub in expectations.held.values()}), "held_by": red_held_by},
        "warninglisted": {"value": BENIGN, "canonical_id": benign,
                          "reported_by": sorted(expectations.countries.get(benign or "", set())),
                          "warninglists": sorted({w for v in views.values() if benign in v.indicators
                                                  for w in v.indicators[benign].warninglists})},
        "pids": sorted(pids.values()),
    }


def contains_red(objects: list[dict[str, Any]]) -> bool:
    return RED_SHA256 in orjson.dumps(objects).decode()

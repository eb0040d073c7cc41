"""Correlate stage: an alert as a STIX 2.1 grouping with the alert property extension, and back (pure).

The extension-definition ships in schemas/alert-extension-definition.json, the JSON Schema of its properties in
schemas/alert.schema.json. Peer hubs send the same form; parse_alert reads it back so that spreads merge.
"""

import re
from typing import Any

from exchange.correlate.alerts import Alert, AlertReason, AlertStatus, alert_id
from exchange.correlate.spread import Reporter, Seen, SpreadState
from exchange.correlate.threats import ThreatKind, split_key, threat_key
from exchange.dedup.merge import HubIdentity
from exchange.errors import InvalidObject
from exchange.model.timestamps import format_timestamp, parse_timestamp
from exchange.policy.tlp import Tlp, marking_id, tlp_of_markings

# The alert property extension (STIX 2.1 section 7.3); a fixed UUIDv4, generated once for this project.
ALERT_EXTENSION = "extension-definition--dce24f9a-9bf0-43c2-894a-3b8570a32d7e"
GROUPING_CONTEXT = "suspicious-activity"  # STIX 2.1 section 10.8 grouping-context-ov
_COUNTRY = re.compile(r"[A-Z]{2}")
_SUBJECTS = {ThreatKind.INDICATOR: "indicator", ThreatKind.FAMILY: "malware family", ThreatKind.CAMPAIGN: "campaign",
             ThreatKind.INTRUSION_SET: "intrusion set"}


def _reporters(spread: SpreadState) -> list[dict[str, Any]]:
    entries = []
    for reporter, seen in sorted(spread.reporters.items(), key=lambda i: (i[0].source, i[0].country or "")):
        entry: dict[str, Any] = {"source": reporter.source}
        if reporter.country:
            entry["country"] = reporter.country
        entry["first_seen"], entry["last_seen"] = format_timestamp(seen.first), format_timestamp(seen.last)
        entries.append(entry)
    return entries


def _extension(alert: Alert) -> dict[str, Any]:
    spread = alert.spread
    ext: dict[str, Any] = {
        "extension_type": "property-extension", "threat_key": alert.threat_key,
        "level": alert.level, "level_name": alert.level_name,
        "status": alert.status.value, "reason": alert.reason.value,
    }
    countries = sorted(spread.countries)
    if countries:  # STIX 2.1 section 3.3: no empty lists
        ext["countries"] = countries
    ext["country_count"], ext["source_count"] = len(countries), len(spread.sources)
    first, last = spread.first_seen, spread.last_seen
    if first is not None and last is not None:
        ext["first_seen"], ext["last_seen"] = format_timestamp(first), format_timestamp(last)
    if alert.family is not None:
        ext["family"] = alert.family
    for prop, values in (("families", spread.families), ("related", spread.related),
                         ("warninglists", spread.warninglists)):
        if values:
            ext[prop] = sorted(values)
    ext["reporters"] = _reporters(spread)
    return ext


def _headline(alert: Alert) -> str:
    kind, name = split_key(alert.threat_key)
    count = len(alert.spread.countries)
    where = f"{count} {'country' if count == 1 else 'countries'}"
    return f"{alert.level_name} alert ({alert.status.value}): {_SUBJECTS[kind]} {name} reported from {where}"


def alert_object(alert: Alert, hub: HubIdentity) -> dict[str, Any]:
    """The STIX 2.1 grouping of one alert version, authored by the hub, marked with the strictest TLP of its
    indicators. ValueError for an alert without indicators (a grouping needs object_refs)."""
    spread = alert.spread
    tlp = spread.tlp
    if tlp is None:
        raise ValueError(f"the alert on {alert.threat_key!r} references no indicator")
    sources = len(spread.sources)
    return {
        "type": "grouping", "spec_version": "2.1", "id": alert.id, "created_by_ref": hub.id,
        "created": format_timestamp(alert.created), "modified": format_timestamp(alert.modified),
        "name": _headline(alert),
        "description": f"Raised by {hub.name}: level {alert.level} ({alert.level_name}), {alert.reason.value}; "
                       f"{sources} reporting source{'' if sources == 1 else 's'}. Details in the extension.",
        "context": GROUPING_CONTEXT,
        "object_refs": sorted(spread.indicators),
        "object_marking_refs": [marking_id(tlp)],
        "extensions": {ALERT_EXTENSION: _extension(alert)},
    }


def _time(raw: Any, where: str) -> int:
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise InvalidObject(f"alert {where}: {exc}") from None


def _strings(ext: dict[str, Any], prop: str) -> frozenset[str]:
    value = ext.get(prop, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidObject(f"alert extension '{prop}' must be a list of strings")
    return frozenset(value)


def _read_reporters(raw: Any) -> dict[Reporter, Seen]:
    if not isinstance(raw, list) or not raw:
        raise InvalidObject("alert extension 'reporters' must be a non-empty list")
    reporters: dict[Reporter, Seen] = {}
    for index, entry in enumerate(raw):
        where = f"reporters[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or not entry["source"]:
            raise InvalidObject(f"alert extension '{where}' needs a source")
        country = entry.get("country")
        if country is not None and (not isinstance(country, str) or _COUNTRY.fullmatch(country) is None):
            raise InvalidObject(f"alert extension '{where}.country' must be ISO 3166-1 alpha-2, not {country!r}")
        seen = Seen(_time(entry.get("first_seen"), where + ".first_seen"),
                    _time(entry.get("last_seen"), where + ".last_seen"))
        if seen.first > seen.last:
            raise InvalidObject(f"alert extension '{where}': first_seen is after last_seen")
        reporter = Reporter(entry["source"], country)
        reporters[reporter] = seen if reporter not in reporters else reporters[reporter].merge(seen)
    return reporters


def _extension_of(obj: dict[str, Any]) -> dict[str, Any]:
    extensions = obj.get("extensions")
    ext = extensions.get(ALERT_EXTENSION) if isinstance(extensions, dict) else None
    if not isinstance(ext, dict) or ext.get("extension_type") != "property-extension":
        raise InvalidObject(f"not an alert: the grouping has no {ALERT_EXTENSION} property extension")
    return ext


def parse_alert(obj: Any, *, default_tlp: Tlp) -> Alert:
    """An alert version from a peer hub, for merging its spread with ours; InvalidObject when malformed.

    Only what merging needs is trusted: the id must be the threat key's (no peer can raise an alert under
    another threat's id), and the counts and country list are recomputed from the reporters. Every referenced
    indicator takes the grouping's TLP (`default_tlp` when unmarked), the most a reader can assume."""
    if not isinstance(obj, dict) or obj.get("type") != "grouping" or obj.get("spec_version") != "2.1":
        raise InvalidObject("an alert is a STIX 2.1 grouping")
    ext = _extension_of(obj)
    key = ext.get("threat_key")
    try:
        if not isinstance(key, str) or obj.get("id") != alert_id(key):
            raise ValueError
    except ValueError:
        raise InvalidObject(f"alert id {obj.get('id')!r} is not the id of threat key {key!r}") from None
    level, name = ext.get("level"), ext.get("level_name")
    if type(level) is not int or level < 1 or not isinstance(name, str) or not name:
        raise InvalidObject("alert extension needs a level (integer >= 1) and a level_name")
    try:
        status, reason = AlertStatus(str(ext.get("status"))), AlertReason(str(ext.get("reason")))
    except ValueError as exc:
        raise InvalidObject(f"alert extension: {exc}") from None
    refs = obj.get("object_refs")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise InvalidObject("alert 'object_refs' must be a non-empty list of ids")
    found = tlp_of_markings(obj.get("object_marking_refs"))
    tlp = default_tlp if found is None else found
    indicators = {ref: tlp for ref in refs if ref.startswith("indicator--")}
    if not indicators:
        raise InvalidObject("alert 'object_refs' references no indicator")
    related = _strings(ext, "related") | {threat_key(ThreatKind.FAMILY, f) for f in _strings(ext, "families")}
    try:
        for other in related:
            split_key(other)
    except ValueError as exc:
        raise InvalidObject(f"alert extension 'related': {exc}") from None
    related -= {key}
    spread = SpreadState(key, _read_reporters(ext.get("reporters")), indicators, related,
                         _strings(ext, "warninglists"))
    created, modified = _time(obj.get("created"), "created"), _time(obj.get("modified"), "modified")
    if modified < created:
        raise InvalidObject("alert 'modified' is before 'created'")
    return Alert(threat_key=key, level=level, level_name=name, status=status, reason=reason, created=created,
                 modified=modified, spread=spread)

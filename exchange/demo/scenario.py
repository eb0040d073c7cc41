"""The story `exchange demo` replays: a WannaCry-like worm first seen in Poland, then in Germany, France, the
Netherlands and Spain, each country reporting in the format it happens to use (pure data, no I/O).

The worm indicators are public WannaCry (May 2017) indicators of compromise: kill-switch domains, sample hashes,
Tor relays and onion C2s, re-dated to the last few hours so that the alert rules, which count countries within
a day, see a live campaign. Two values are there to be held back: a TLP:RED sample hash only the French victim
may know about (a made-up hash), and 8.8.8.8, a public DNS resolver every country's telemetry saw, which the
MISP warninglists flag as a likely false positive.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from exchange.model.timestamps import format_timestamp
from exchange.policy.tlp import TLP2_IDS, Tlp

HOUR = 3_600_000_000  # µs
KILL_SWITCH = "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com"
KILL_SWITCH_2 = "ifferfsodp9ifjaposdfjhgosurijfaewrwergwea.com"
WORM_SHA256 = "24d004a104d4d54034dbcffc2a4b19a11f39008a575aa614ea04703480b1022c"  # mssecsvc.exe
WORM_MD5 = "db349b97c37d22f5ea1d1841e3c89eb4"
ENCRYPTOR_SHA256 = "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"  # tasksche.exe
ENCRYPTOR_MD5 = "84c82835a5d21bbcf75a61706d8ab549"
ONION_C2 = ("gx7ekbenv2riucmf.onion", "57g7spgrzlojinas.onion")
TOR_RELAYS = ("197.231.221.211", "128.31.0.39")
BENIGN = "8.8.8.8"  # on the MISP warninglist of public DNS resolvers
# Not a real sample: a victim's TLP:RED detail stands in for what a CERT may never pass on.
RED_SHA256 = hashlib.sha256(b"exchange demo: TLP:RED WannaCry sample from a French hospital").hexdigest()
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"  # STIX 2.0/2.1 built-in TLP markings
TLP1_GREEN_DEFINITION = {"type": "marking-definition", "id": TLP1_GREEN, "created": "2017-01-20T00:00:00.000Z",
                         "definition_type": "tlp", "definition": {"tlp": "green"}}


class Channel(StrEnum):
    """How a report reaches the federation."""

    STIX21 = "STIX 2.1"  # POSTed as is to a hub's inbox
    STIX20 = "STIX 2.0"  # POSTed as is (to medallion here; hubs upgrade it to 2.1 when they pull it)
    MISP = "MISP event"  # converted by exchange's MISP reader (misp-stix), then POSTed, like `exchange ingest`
    CSV = "CSV, defanged"  # converted by exchange's CSV reader, then POSTed


@dataclass(frozen=True, slots=True)
class Report:
    country: str
    reporter: str  # who wrote it, for the narrative
    target: str  # hub name, or the medallion CERT's name
    channel: Channel
    document: bytes  # as the reporter wrote it: a STIX envelope, a MISP event, a CSV file
    hours_ago: float  # when the reporter saw it: its objects' `modified`
    tlp: Tlp = Tlp.GREEN

    def objects(self) -> list[dict[str, Any]]:
        """The STIX objects of a STIX report (the converted ones come from exchange's readers)."""
        return list(orjson.loads(self.document)["objects"])


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    reports: tuple[Report, ...]
    spread: tuple[str, ...] = field(default=())  # countries reporting the worm (GREEN) once the step is done


def _id(kind: str) -> str:
    return f"{kind}--{uuid.uuid4()}"


def _stamp(now: int, hours_ago: float) -> str:
    return format_timestamp(now - int(hours_ago * HOUR))


def _envelope(objects: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"objects": objects}, option=orjson.OPT_INDENT_2)


def _indicator21(pattern: str, name: str, when: str, labels: list[str], *, tlp: Tlp = Tlp.GREEN,
                 author: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "indicator", "spec_version": "2.1", "id": _id("indicator"), "created": when,
                           "modified": when, "name": name, "pattern": pattern, "pattern_type": "stix",
                           "valid_from": when, "indicator_types": ["malicious-activity"], "labels": labels,
                           "object_marking_refs": [TLP2_IDS[tlp]]}
    if author:
        obj["created_by_ref"] = author
    return obj


def _indicates(indicator: dict[str, Any], malware: str, when: str, spec: str = "2.1") -> dict[str, Any]:
    rel = {"type": "relationship", "id": _id("relationship"), "created": when, "modified": when,
           "relationship_type": "indicates", "source_ref": indicator["id"], "target_ref": malware}
    return {"spec_version": spec, **rel} if spec == "2.1" else rel


def poland(now: int) -> Report:
    """Patient zero: CERT-PL's analysts publish STIX 2.1 (tagged with the Malpedia name WannaCryptor)."""
    when, tag = _stamp(now, 6), ['misp-galaxy:malpedia="WannaCryptor"']
    author: dict[str, Any] = {"type": "identity", "spec_version": "2.1", "id": _id("identity"), "created": when,
                              "modified": when, "name": "CERT-PL analysts", "identity_class": "organization"}
    malware: dict[str, Any] = {"type": "malware", "spec_version": "2.1", "id": _id("malware"), "created": when,
                               "modified": when, "name": "WannaCry", "is_family": True,
                               "malware_types": ["ransomware", "worm"],
                               "aliases": ["WannaCrypt", "WCry", "Wana Decrypt0r"],
                               "object_marking_refs": [TLP2_IDS[Tlp.GREEN]]}
    worm = [
        _indicator21(f"[domain-name:value = '{KILL_SWITCH}']", "WannaCry kill-switch domain", when, tag,
                     author=author["id"]),
        _indicator21(f"[file:hashes.'SHA-256' = '{WORM_SHA256}']", "mssecsvc.exe (worm)", when, tag,
                     author=author["id"]),
        _indicator21(f"[file:hashes.'SHA-256' = '{ENCRYPTOR_SHA256}']", "tasksche.exe (encryptor)", when, tag,
                     author=author["id"]),
        _indicator21(f"[domain-name:value = '{ONION_C2[0]}']", "Tor C2", when, tag, author=author["id"]),
    ]
    # Over-tagged by a tired analyst: the DNS resolver infected hosts queried. Warninglisted at every hub.
    resolver = _indicator21(f"[ipv4-addr:value = '{BENIGN}']", "DNS resolver queried by infected hosts", when, tag,
                            author=author["id"])
    sighting: dict[str, Any] = {"type": "sighting", "spec_version": "2.1", "id": _id("sighting"), "created": when,
                                "modified": when, "sighting_of_ref": worm[0]["id"], "count": 212,
                                "first_seen": _stamp(now, 7), "last_seen": when,
                                "where_sighted_refs": [author["id"]], "object_marking_refs": [TLP2_IDS[Tlp.GREEN]]}
    objects = [author, malware, *worm, resolver, sighting,
               *(_indicates(i, malware["id"], when) for i in worm)]
    return Report("PL", "CERT-PL analysts (hospitals, rail operator)", "CERT-PL", Channel.STIX21,
                  _envelope(objects), 6)


def germany(now: int) -> Report:
    """A German sector CSIRT's MISP event, attribute tags from the MISP ransomware galaxy (WannaCry)."""
    seconds = str((now - 4 * HOUR) // 1_000_000)
    tag = [{"name": 'misp-galaxy:ransomware="WannaCry"'}]

    def attribute(kind: str, category: str, value: str, comment: str) -> dict[str, Any]:
        return {"uuid": str(uuid.uuid4()), "type": kind, "category": category, "to_ids": True, "value": value,
                "comment": comment, "timestamp": seconds, "distribution": "5", "Tag": tag}

    event = {"Event": {
        "uuid": str(uuid.uuid4()), "info": "WannaCry ransomware worm: infections in hospitals and logistics",
        "date": format_timestamp(now - 4 * HOUR)[:10], "timestamp": seconds, "publish_timestamp": seconds,
        "published": True, "threat_level_id": "1", "analysis": "1", "distribution": "3",
        "Orgc": {"name": "Health-sector CSIRT (DE)", "uuid": str(uuid.uuid4())},
        "Tag": [{"name": "tlp:green"}, {"name": 'misp-galaxy:ransomware="WannaCry"'}],
        "Attribute": [
            attribute("domain", "Network activity", KILL_SWITCH, "kill switch queried before encryption"),
            attribute("sha256", "Payload delivery", WORM_SHA256, "mssecsvc.exe"),
            attribute("md5", "Payload delivery", WORM_MD5, "mssecsvc.exe"),
            attribute("ip-dst", "Network activity", TOR_RELAYS[0], "Tor relay contacted by tasksche.exe"),
            attribute("ip-dst", "Network activity", BENIGN, "DNS resolver in the infected hosts' traffic"),
        ]}}
    return Report("DE", "a German health-sector CSIRT", "CERT-DE", Channel.MISP,
                  orjson.dumps(event, option=orjson.OPT_INDENT_2), 4)


def france(now: int) -> Report:
    """A French hospital group's SOC mails a defanged CSV; the family is a plain column ("WCry")."""
    day = format_timestamp(now - int(2.5 * HOUR))
    rows = [("domain", "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea[.]com", "kill switch"),
            ("domain", "ifferfsodp9ifjaposdfjhgosurijfaewrwergwea[.]com", "kill switch, second variant"),
            ("ip", "197[.]231[.]221[.]211", "Tor relay"),
            ("ip", "128[.]31[.]0[.]39", "Tor relay"),
            ("sha256", ENCRYPTOR_SHA256.upper(), "tasksche.exe, hash as our EDR prints it"),
            ("ip", "8[.]8[.]8[.]8", "DNS resolver in the infected hosts' traffic")]
    text = "type,indicator,malware,first_seen,comment\n" + "".join(
        f"{kind},{value},WCry,{day},{comment}\n" for kind, value, comment in rows)
    return Report("FR", "a French hospital group's SOC", "CERT-FR", Channel.CSV, text.encode(), 2.5)


def france_red(now: int) -> Report:
    """The victim's own sample, shared with CERT-FR under TLP:RED: it must never leave France's hub."""
    when = _stamp(now, 2.5)
    indicator = _indicator21(f"[file:hashes.'SHA-256' = '{RED_SHA256}']",
                             "WannaCry sample recovered at a named hospital (victim-identifying)", when,
                             ['misp-galaxy:ransomware="WannaCry"'], tlp=Tlp.RED)
    indicator["description"] = "TLP:RED: for CERT-FR only, at the victim's request."
    return Report("FR", "the hospital itself, to CERT-FR only", "CERT-FR", Channel.STIX21, _envelope([indicator]),
                  2.5, tlp=Tlp.RED)


def netherlands(now: int, target: str) -> Report:
    """CERT-NL runs the OASIS reference server (medallion) and still writes STIX 2.0 (MITRE ATT&CK naming)."""
    when, tag = _stamp(now, 1.5), ["malicious-activity", 'misp-galaxy:mitre-malware="WannaCry - S0366"']
    malware: dict[str, Any] = {"type": "malware", "id": _id("malware"), "created": when, "modified": when,
                               "name": "WannaCry", "labels": ["ransomware"], "object_marking_refs": [TLP1_GREEN]}

    def indicator(pattern: str, name: str) -> dict[str, Any]:
        return {"type": "indicator", "id": _id("indicator"), "created": when, "modified": when, "name": name,
                "labels": tag, "pattern": pattern, "valid_from": when, "object_marking_refs": [TLP1_GREEN]}

    worm = [indicator(f"[domain-name:value = '{KILL_SWITCH.upper()}.']", "kill switch (as resolved, FQDN)"),
            indicator(f"[file:hashes.'SHA-256' = '{ENCRYPTOR_SHA256}']", "tasksche.exe"),
            indicator(f"[domain-name:value = '{ONION_C2[1]}']", "Tor C2")]
    objects = [TLP1_GREEN_DEFINITION, malware, *worm, *(_indicates(i, malware["id"], when, "2.0") for i in worm)]
    return Report("NL", "CERT-NL (runs medallion)", target, Channel.STIX20, _envelope(objects), 1.5)


def spain(now: int) -> Report:
    """A Spanish telecom's CSIRT, STIX 2.1 with yet another name for the family (WCry)."""
    when, tag = _stamp(now, 0.5), ['misp-galaxy:ransomware="WCry"']
    worm = [_indicator21(f"[domain-name:value = '{KILL_SWITCH}']", "kill switch", when, tag),
            _indicator21(f"[file:hashes.MD5 = '{ENCRYPTOR_MD5}']", "tasksche.exe", when, tag),
            _indicator21(f"[file:hashes.'SHA-256' = '{WORM_SHA256}']", "mssecsvc.exe", when, tag),
            _indicator21(f"[ipv4-addr:value = '{TOR_RELAYS[1]}']", "Tor relay", when, tag)]
    return Report("ES", "a Spanish telecom's CSIRT", "CERT-ES", Channel.STIX21, _envelope(worm), 0.5)


def steps(now: int, medallion_name: str) -> tuple[Step, ...]:
    """The scenario, in the order it is replayed; `now` in µs since the epoch."""
    return (
        Step("Poland sees it first", (poland(now),), ("PL",)),
        Step("Germany: same worm, reported as a MISP event", (germany(now),), ("DE", "PL")),
        Step("France: a defanged CSV, and a TLP:RED detail for CERT-FR only", (france(now), france_red(now)),
             ("DE", "FR", "PL")),
        Step("The Netherlands: STIX 2.0 on the reference TAXII server", (netherlands(now, medallion_name),),
             ("DE", "FR", "NL", "PL")),
        Step("Spain: five countries within a day", (spain(now),), ("DE", "ES", "FR", "NL", "PL")),
    )

"""Replaying the scenario's reports: each becomes STIX with exchange's own readers (as `exchange ingest` does),
is POSTed to a hub or to medallion, and tells the demo which canonical indicators it should produce."""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exchange.dedup.claims import Source, claim_from_indicator
from exchange.demo.scenario import HOUR, Channel, Report
from exchange.demo.topology import INBOX, MEDALLION_LOGIN, OPERATOR, Topology
from exchange.errors import InvalidObject
from exchange.model.timestamps import format_timestamp
from exchange.normalize.formats.detect import Format, read
from exchange.normalize.formats.stix2x import upgrade_object
from exchange.policy.tlp import Tlp
from exchange.taxii.client import Credentials, TaxiiClient, api_root_of

POST_TIMEOUT = 30.0  # seconds for one POST and for its status to complete


@dataclass(frozen=True, slots=True)
class Prepared:
    report: Report
    objects: list[dict[str, Any]]  # what is POSTed
    rejects: tuple[str, ...]  # what the reader refused, "where: why"
    shared: dict[str, str]  # canonical indicator id -> canonical pattern, for claims the federation may share
    held: dict[str, str]  # the same for claims above TLP:GREEN (the RED one): they must stay where they land


def prepare(report: Report, now: int) -> Prepared:
    """Blocking (misp-stix, pattern parsing): run it in a worker thread."""
    rejects: list[str] = []
    if report.channel is Channel.MISP:
        result = read(report.document, Format.MISP, f"{report.country}.misp.json")
        objects, rejects = result.objects, [f"{r.where}: {r.message}" for r in result.rejects]
    elif report.channel is Channel.CSV:
        # The rows carry their own first_seen; `now` stamps when the SOC wrote the list.
        stamp = format_timestamp(now - int(report.hours_ago * HOUR))
        result = read(report.document, Format.CSV, f"{report.country}.csv", now=stamp)
        objects, rejects = result.objects, [f"{r.where}: {r.message}" for r in result.rejects]
    else:
        objects = report.objects()
    shared: dict[str, str] = {}
    held: dict[str, str] = {}
    source = Source(name=report.reporter, country=report.country)
    for obj in objects:
        if obj.get("type") != "indicator":
            continue
        current = obj if obj.get("spec_version") == "2.1" else upgrade_object(obj)[0]
        try:
            claim = claim_from_indicator(current, source, default_tlp=Tlp.GREEN)
        except InvalidObject as exc:
            rejects.append(f"{obj.get('id')}: {exc}")
            continue
        if claim is not None:
            (shared if claim.tlp <= Tlp.GREEN else held)[claim.indicator_id] = claim.pattern
    return Prepared(report, objects, tuple(rejects), shared, held)


@dataclass
class Expectations:
    """What every hub's canonical collection must show once the reports so far have travelled."""

    countries: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patterns: dict[str, str] = field(default_factory=dict)
    held: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (pattern, the hub it stays at)

    def add(self, prepared: Prepared) -> list[str]:
        """Take in a report; returns the ids it reported that another country had reported before."""
        seen_before = [i for i in prepared.shared if self.countries.get(i, set()) - {prepared.report.country}]
        for ident, pattern in prepared.shared.items():
            self.countries[ident].add(prepared.report.country)
            self.patterns[ident] = pattern
        for ident, pattern in prepared.held.items():
            self.held[ident] = (pattern, prepared.report.target)
        return seen_before


@dataclass(frozen=True, slots=True)
class Posted:
    target: str
    objects: int
    succeeded: int
    failed: int
    failures: tuple[str, ...]


async def post(session: aiohttp.ClientSession, topology: Topology, prepared: Prepared) -> Posted:
    """POST a report's objects where its reporter sends them and wait for the TAXII status to complete."""
    report = prepared.report
    if report.target == topology.medallion.name:
        url = topology.medallion.collection_url
        credentials = Credentials(username=MEDALLION_LOGIN[0], password=MEDALLION_LOGIN[1])
    else:
        url = topology.hub(report.target).collection_url(INBOX)
        credentials = Credentials(username=OPERATOR[0], password=OPERATOR[1])
    client = TaxiiClient(session, credentials, timeout=POST_TIMEOUT)
    status = await client.add_objects(url, prepared.objects)
    if status.get("status") != "complete":
        status = await client.wait_complete(api_root_of(url), str(status["id"]), within=POST_TIMEOUT)
    failures = tuple(f"{f.get('id', '')}: {f.get('message', '')}" for f in status.get("failures") or ())
    return Posted(report.target, len(prepared.objects), int(status.get("success_count", 0)),
                  int(status.get("failure_count", 0)), failures)

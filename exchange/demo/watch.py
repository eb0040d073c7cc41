"""What the demo sees of its federation, as any client would: TAXII reads of each hub's canonical collection,
the operator's alert API, /metrics, and medallion's collection. Polled a few times a second; changes become
events for the progress display, and the scenario waits on conditions over the latest snapshots."""

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.demo.topology import INDICATORS, MEDALLION_LOGIN, OPERATOR, HubSpec, Topology
from exchange.taxii.media import TAXII_JSON

POLL_INTERVAL = 0.3
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass(frozen=True, slots=True)
class IndicatorView:
    """A canonical indicator as one hub publishes it."""

    id: str
    pattern: str
    countries: frozenset[str]
    claims: int  # provenance entries: one per (source, origin) that reported it
    warninglists: tuple[str, ...]
    labels: tuple[str, ...]
    modified: str

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> "IndicatorView":
        prov = (obj.get("extensions") or {}).get(PROVENANCE_EXTENSION) or {}
        claims = [c for c in prov.get("claims") or () if isinstance(c, dict) and not c.get("revoked")]
        return cls(id=obj["id"], pattern=str(obj.get("pattern", "")),
                   countries=frozenset(c["country"] for c in claims if isinstance(c.get("country"), str)),
                   claims=len(claims), warninglists=tuple(prov.get("warninglists") or ()),
                   labels=tuple(obj.get("labels") or ()), modified=str(obj.get("modified", "")))


@dataclass
class HubView:
    indicators: dict[str, IndicatorView] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # admin API rows by alert id
    processed: dict[tuple[str, str], float] = field(default_factory=dict)  # (source, outcome) -> objects
    error: str | None = None

    def by_peer(self) -> dict[str, int]:
        """Objects pulled from (or pushed by) each peer and taken in, by source ("peer:<id>")."""
        counts: dict[str, int] = {}
        for (source, outcome), n in self.processed.items():
            if source.startswith("peer:") and outcome != "rejected":
                counts[source] = counts.get(source, 0) + int(n)
        return counts

    def from_peers(self) -> int:
        return sum(self.by_peer().values())

    def outcome(self, name: str) -> int:
        return int(sum(n for (_, outcome), n in self.processed.items() if outcome == name))

    @property
    def duplicates_merged(self) -> int:
        """Reports folded into an indicator someone else reported first: claims beyond the first, per indicator."""
        return sum(max(0, i.claims - 1) for i in self.indicators.values())


Event = tuple[str, str, Any]  # (kind, hub name, detail): "alert", "pulled", "medallion"


class Watcher:
    """Polls every hub and medallion until cancelled (run() in a task the caller owns)."""

    def __init__(self, session: aiohttp.ClientSession, topology: Topology,
                 on_event: Callable[[Event], None] = lambda _: None) -> None:
        self._session = session
        self._topology = topology
        self._on_event = on_event
        self.views: dict[str, HubView] = {h.name: HubView() for h in topology.hubs}
        self.medallion_objects: list[dict[str, Any]] | None = None
        self._changed = asyncio.Condition()
        self._auth = aiohttp.BasicAuth(*OPERATOR)

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(POLL_INTERVAL)

    async def poll(self) -> None:
        views = await asyncio.gather(*(self._read_hub(h) for h in self._topology.hubs))
        medallion = await self._read_medallion()
        for hub, view in zip(self._topology.hubs, views, strict=True):
            self._diff(hub.name, self.views[hub.name], view)
            self.views[hub.name] = view
        if medallion is not None:
            if self.medallion_objects is None or len(medallion) != len(self.medallion_objects):
                self._on_event(("medallion", self._topology.medallion.name, len(medallion)))
            self.medallion_objects = medallion
        async with self._changed:
            self._changed.notify_all()

    async def until(self, check: Callable[[], bool], *, within: float) -> bool:
        """Wait until `check()` holds over the latest snapshots; False after `within` seconds."""
        deadline = time.monotonic() + within
        async with self._changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        return True

    def _diff(self, hub: str, before: HubView, after: HubView) -> None:
        for ident, row in after.alerts.items():
            if before.alerts.get(ident, {}).get("modified") != row.get("modified"):
                self._on_event(("alert", hub, row))
        if after.error is not None or before.error is not None:
            return
        for source, count in after.by_peer().items():
            if count > before.by_peer().get(source, 0):
                self._on_event(("pulled", hub, (source, count - before.by_peer().get(source, 0))))

    async def _get(self, url: str, auth: aiohttp.BasicAuth | None, params: Mapping[str, str] | None = None,
                   accept: str = TAXII_JSON) -> Any:
        async with self._session.get(url, params=params, auth=auth, headers={"Accept": accept},
                                     timeout=REQUEST_TIMEOUT) as resp:
            resp.raise_for_status()
            return await (resp.json(content_type=None) if accept != "text/plain" else resp.text())

    async def _read_hub(self, hub: HubSpec) -> HubView:
        view = HubView()
        try:
            indicators, alerts, metrics = await asyncio.gather(
                read_collection(self._session, hub.collection_url(INDICATORS), self._auth,
                                {"match[type]": "indicator"}),
                self._get(f"{hub.base}/admin/alerts", self._auth, accept="application/json"),
                self._get(f"{hub.base}/metrics", None, accept="text/plain"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            previous = self.views[hub.name]
            return HubView(previous.indicators, previous.alerts, previous.processed, f"{type(exc).__name__}: {exc}")
        view.indicators = {o["id"]: IndicatorView.read(o) for o in indicators}
        view.alerts = {row["id"]: row for row in alerts.get("alerts", [])}
        for family in text_string_to_metric_families(metrics):
            if family.name == "exchange_objects_in":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        view.processed[(sample.labels["source"], sample.labels["outcome"])] = sample.value
        return view

    async def _read_medallion(self) -> list[dict[str, Any]] | None:
        try:
            return await read_collection(self._session, self._topology.medallion.collection_url,
                                         aiohttp.BasicAuth(*MEDALLION_LOGIN), {})
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None


async def read_collection(session: aiohttp.ClientSession, url: str, auth: aiohttp.BasicAuth,
                          params: Mapping[str, str], *, pages: int = 20) -> list[dict[str, Any]]:
    """Every object (latest versions) of a TAXII 2.1 collection, following `next` (at most `pages` pages)."""
    out: list[dict[str, Any]] = []
    query = {"limit": "1000", **params}
    for _ in range(pages):
        async with session.get(url + "objects/", params=query, auth=auth, headers={"Accept": TAXII_JSON},
                               timeout=REQUEST_TIMEOUT) as resp:
            resp.raise_for_status()
            envelope = await resp.json(content_type=None)
        out += envelope.get("objects") or []
        if not envelope.get("more") or not envelope.get("next"):
            break
        query = {**query, "next": str(envelope["next"])}
    return out

"""The demo federation's shape: national CERT hubs in a ring, a medallion CERT, a member organization, and the
config file each hub runs with (the same TOML an operator writes; `exchange config check` accepts it).

Every account of the demo has a fixed, published password: the federation listens on 127.0.0.1 only and
lives as long as the demo does.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.dedup.merge import HubIdentity
from exchange.demo import medallion

HOST = "127.0.0.1"
INBOX = "31110fdc-ecd0-46fd-994f-960c58b21925"  # the same ids as examples/hub.toml
INDICATORS = "8bfc07ea-b3e4-4f90-8e5c-0c340a092b3c"
ALERTS = "2e708668-f712-4202-973a-8e410eea1a3a"
# Alert levels: three countries within a day is a large-scale campaign for a CERT; five is widespread.
LEVELS = (("large-scale", 3), ("widespread", 5))
POLL_INTERVAL = 0.3  # seconds between peer pulls and pushes: a demo, not a production cadence

# Demo credentials (fixed on purpose, printed by --keep-running): (username, password).
OPERATOR = ("ops", "ops-demo")
MEMBER = ("member", "member-demo")
PEER_PASSWORD = "peer-demo"  # every hub's account at its ring neighbour
MEDALLION_LOGIN = ("cert-nl", "medallion-demo")
WEBHOOK_SECRET = "demo-webhook-secret"
# Secrets reach the hubs as environment variables, as in production (config files name them, never hold them).
PEER_PASSWORD_ENV = "EXCHANGE_DEMO_PEER_PASSWORD"
MEDALLION_PASSWORD_ENV = "EXCHANGE_DEMO_MEDALLION_PASSWORD"
WEBHOOK_SECRET_ENV = "EXCHANGE_DEMO_WEBHOOK_SECRET"


@dataclass(frozen=True, slots=True)
class HubSpec:
    name: str  # the hub's identity name, e.g. CERT-DE; lower-cased, its peer id at other hubs
    country: str
    port: int
    directory: Path

    @property
    def peer_id(self) -> str:
        return self.name.lower()

    @property
    def identity(self) -> str:
        return HubIdentity(self.name).id

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_root(self) -> str:
        return f"{self.base}/api/"

    def collection_url(self, collection: str) -> str:
        return f"{self.api_root}collections/{collection}/"

    @property
    def config_path(self) -> Path:
        return self.directory / "hub.toml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "hub.log"


@dataclass(frozen=True, slots=True)
class MedallionSpec:
    """The CERT that runs the OASIS reference server instead of a hub."""

    name: str
    country: str
    port: int
    directory: Path

    @property
    def peer_id(self) -> str:
        return self.name.lower()

    @property
    def api_root(self) -> str:
        return f"http://{HOST}:{self.port}/{medallion.API_ROOT}/"

    @property
    def discovery(self) -> str:
        return f"http://{HOST}:{self.port}/taxii2/"

    @property
    def collection_url(self) -> str:
        return f"{self.api_root}collections/{medallion.COLLECTION_ID}/"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    name: str
    hub: str  # name of its national hub
    webhook_url: str
    webhook_subscription: str = "example-bank-webhook"
    sse_subscription: str = "example-bank-live"


@dataclass(frozen=True, slots=True)
class Topology:
    hubs: tuple[HubSpec, ...]  # in ring order: each pulls the canonical indicators of the next
    medallion: MedallionSpec
    medallion_hub: str  # the hub that pulls from and pushes to medallion
    member: MemberSpec

    def hub(self, name: str) -> HubSpec:
        return next(h for h in self.hubs if h.name == name)

    def upstream(self, hub: HubSpec) -> HubSpec:
        """The neighbour whose canonical collection `hub` pulls."""
        return self.hubs[(self.hubs.index(hub) + 1) % len(self.hubs)]

    def downstream(self, hub: HubSpec) -> HubSpec:
        """The neighbour that pulls from `hub`."""
        return self.hubs[(self.hubs.index(hub) - 1) % len(self.hubs)]

    @property
    def countries(self) -> tuple[str, ...]:
        return tuple(sorted({*(h.country for h in self.hubs), self.medallion.country}))

    def env(self) -> dict[str, str]:
        """The secrets every hub process needs in its environment."""
        return {PEER_PASSWORD_ENV: PEER_PASSWORD, MEDALLION_PASSWORD_ENV: MEDALLION_LOGIN[1],
                WEBHOOK_SECRET_ENV: WEBHOOK_SECRET}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _table(header: str, fields: Mapping[str, Any]) -> str:
    return "\n".join([f"\n{header}", *(f"{k} = {toml_value(v)}" for k, v in fields.items())]) + "\n"


def _hub_peer(other: HubSpec, me: HubSpec, *, pull: bool) -> dict[str, Any]:
    return {"id": other.peer_id, "name": other.name, "country": other.country, "api_root": other.api_root,
            "identity": other.identity, "pull": [INDICATORS] if pull else [], "pull_into": "inbox", "trust": 0.8,
            "auth": {"username": me.peer_id, "password_env": PEER_PASSWORD_ENV}, "poll_interval": POLL_INTERVAL,
            "timeout": 5, "agreement": {"max_tlp": "green", "readable_collections": ["indicators"]}}


def hub_config(topology: Topology, hub: HubSpec, hashes: Mapping[str, str]) -> str:
    """The TOML config of one hub. `hashes` maps each demo password to its scrypt hash (made once per run)."""
    text = f"# exchange demo: {hub.name} ({hub.country}). Demo accounts with published passwords: never reuse.\n"
    text += _table("[hub]", {
        "title": f"{hub.name} national hub (exchange demo)", "contact": f"{hub.peer_id}@demo.invalid",
        "host": HOST, "port": hub.port, "data_dir": "data", "identity_name": hub.name,
        "canonical_collection": "indicators", "alerts_collection": "alerts", "canonical_audience": "green",
        "default_tlp": "green"})
    text += _table("[alerts]", {"levels": [{"name": n, "countries": c} for n, c in LEVELS]})
    text += _table("[[api_roots]]", {"path": "api", "title": f"{hub.name} API root", "default": True})
    for ident, alias, title in ((INBOX, "inbox", "Inbox: reports from this country and pulled from peers"),
                                (INDICATORS, "indicators", "Canonical indicators, deduplicated, with provenance"),
                                (ALERTS, "alerts", "Coordinated alerts")):
        text += _table("[[api_roots.collections]]", {"id": ident, "alias": alias, "title": title})
    text += _table("[[accounts]]", {
        "username": OPERATOR[0], "kind": "operator", "country": hub.country, "password_hash": hashes[OPERATOR[1]],
        "can_read": ["inbox", "indicators", "alerts"], "can_write": ["inbox"]})
    text += _table("[[accounts]]", {
        "username": MEMBER[0], "kind": "member", "max_tlp": "amber", "country": hub.country,
        "password_hash": hashes[MEMBER[1]], "can_read": ["indicators", "alerts"]})
    up, down = topology.upstream(hub), topology.downstream(hub)
    text += _table("[[peers]]", _hub_peer(up, hub, pull=True))
    if down != up:  # a ring of two: the one neighbour both pulls from us and is pulled
        text += _table("[[peers]]", _hub_peer(down, hub, pull=False))
    # The downstream neighbour logs in with a peer account: its reads follow the agreement above.
    text += _table("[[accounts]]", {"username": down.peer_id, "kind": "peer", "peer": down.peer_id,
                                    "password_hash": hashes[PEER_PASSWORD], "can_write": ["inbox"]})
    if hub.name == topology.medallion_hub:
        med = topology.medallion
        text += _table("[[peers]]", {
            "id": med.peer_id, "name": f"{med.name} (medallion)", "country": med.country,
            "api_root": med.api_root, "pull": [medallion.COLLECTION_ID], "push": [medallion.COLLECTION_ID],
            "pull_into": "inbox", "trust": 0.8, "auth": {"username": MEDALLION_LOGIN[0],
                                                           "password_env": MEDALLION_PASSWORD_ENV},
            "poll_interval": POLL_INTERVAL, "push_interval": POLL_INTERVAL, "page_size": 100, "timeout": 5,
            "agreement": {"max_tlp": "green"}})
    if hub.name == topology.member.hub:
        member = topology.member
        text += _table("[[members]]", {
            "name": member.name, "account": MEMBER[0], "country": hub.country, "sectors": ["finance"],
            "subscriptions": [
                {"id": member.webhook_subscription, "channel": "webhook", "url": member.webhook_url,
                 "secret_env": WEBHOOK_SECRET_ENV, "max_retry": 120, "timeout": 5},
                {"id": member.sse_subscription, "channel": "sse"}]})
    return text


def demo_passwords() -> tuple[str, ...]:
    return (OPERATOR[1], MEMBER[1], PEER_PASSWORD)


def write_configs(topology: Topology, hashes: Mapping[str, str]) -> None:
    for hub in topology.hubs:
        hub.directory.mkdir(parents=True, exist_ok=True)
        hub.config_path.write_text(hub_config(topology, hub, hashes))

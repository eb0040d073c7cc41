"""Configuration: one TOML file, validated against schemas/config.schema.json, into typed settings.

Every option has a default that works on a laptop; command-line flags override the file.
"""

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from exchange.config_members import MemberSettings, parse_alert_rules, parse_members
from exchange.config_peers import PeerSettings, missing_secrets, parse_peers
from exchange.correlate.rules import AlertRules
from exchange.errors import ConfigError
from exchange.policy.access import Account
from exchange.policy.egress import Recipient, Relation
from exchange.policy.tlp import Tlp

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@dataclass(frozen=True, slots=True)
class CollectionSettings:
    id: str
    alias: str | None
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class ApiRootSettings:
    path: str
    title: str
    description: str
    default: bool
    collections: tuple[CollectionSettings, ...]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The hub's HTTPS listener (PEM files). With client_ca, client certificates are verified against it:
    required when require_client_cert, else checked only if a client presents one."""

    cert: Path
    key: Path
    client_ca: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True, slots=True)
class HubSettings:
    title: str
    description: str
    contact: str
    host: str
    port: int
    data_dir: Path
    max_content_length: int
    max_page_size: int
    default_page_size: int
    identity_name: str
    canonical_collection: str | None  # resolved to a collection id
    default_tlp: Tlp
    canonical_audience: Tlp
    # Further audiences merged into collections of their own (level, collection id), strictest last.
    canonical_views: tuple[tuple[Tlp, str], ...] = ()
    log_format: str = "kv"  # observability (exchange/observe): kv or json
    metrics_token_hash: str | None = None  # /metrics needs this bearer token when set
    journal_stall: float = 120.0  # seconds; see exchange/observe/health.py
    tls: TlsSettings | None = None
    alerts_collection: str | None = None  # resolved to a collection id; None: no alerts are raised
    alert_sweep_interval: float = 60.0
    webhook_retry_base: float = 2.0  # seconds; see fanout/webhooks.py RetryPolicy
    webhook_retry_cap: float = 600.0

    @property
    def canonical_collections(self) -> tuple[str, ...]:
        """Every collection the hub writes canonical indicators into (the first audience's, then the views)."""
        first = () if self.canonical_collection is None else (self.canonical_collection,)
        return (*first, *(c for _, c in self.canonical_views))


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What the hub records about an account when it sends claims."""

    country: str | None
    trust: float


@dataclass(frozen=True, slots=True)
class Settings:
    hub: HubSettings
    api_roots: tuple[ApiRootSettings, ...]
    accounts: tuple[Account, ...]
    sources: dict[str, SourceSettings]  # by username
    peers: tuple[PeerSettings, ...] = ()
    recipients: dict[str, Recipient] = field(default_factory=dict)  # by username: what egress may send it
    alert_rules: AlertRules = field(default_factory=AlertRules)
    members: tuple[MemberSettings, ...] = ()

    def recipient(self, username: str) -> Recipient:
        # An account missing here (never from config) gets the least: the community's TLP:GREEN.
        return self.recipients.get(username) or Recipient(name=username, relation=Relation.MEMBER,
                                                          max_tlp=Tlp.GREEN)

    def peer_recipient(self, peer: PeerSettings) -> Recipient:
        """The peer as the recipient of pushes: its agreement decides."""
        return Recipient(name=peer.account, relation=Relation.PEER, max_tlp=peer.agreement.max_tlp,
                         amber_constituents=peer.agreement.amber_constituents,
                         aliases=frozenset({peer.id}), hub_identity=peer.identity)

    def with_overrides(self, *, host: str | None = None, port: int | None = None,
                       data_dir: Path | None = None) -> "Settings":
        hub = replace(
            self.hub,
            host=host if host is not None else self.hub.host,
            port=port if port is not None else self.hub.port,
            data_dir=data_dir if data_dir is not None else self.hub.data_dir,
        )
        return replace(self, hub=hub)


@cache
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads((SCHEMA_DIR / name).read_bytes())
    return schema


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def validate_config(raw: dict[str, Any]) -> None:
    """Raise ConfigError naming the first offending key and the problem."""
    validator = jsonschema.Draft202012Validator(load_schema("config.schema.json"))
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        key = _key_path(error)
        if "password_hash" in key or "token_hash" in key:  # the value may be a pasted plaintext secret
            raise ConfigError(f"config key '{key}': not a credential hash; make one with "
                              "`exchange account hash-password` or `exchange account new-token`")
        raise ConfigError(f"config key '{key}': {error.message}")


def load_settings(path: Path) -> Settings:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_settings(raw, base_dir=path.resolve().parent)


def parse_settings(raw: dict[str, Any], *, base_dir: Path) -> Settings:
    validate_config(raw)
    schema = load_schema("config.schema.json")["properties"]
    hub_raw = _defaults(schema["hub"]) | raw.get("hub", {})
    if hub_raw["default_page_size"] > hub_raw["max_page_size"]:
        raise ConfigError("config key 'hub.default_page_size': must not exceed hub.max_page_size")
    data_dir = Path(hub_raw.pop("data_dir"))
    roots = tuple(_api_root(i, r) for i, r in enumerate(raw["api_roots"]))
    by_name = _collection_names(roots)
    canonical = hub_raw.pop("canonical_collection", None)
    if canonical is not None and canonical not in by_name:
        raise ConfigError(f"config key 'hub.canonical_collection': no collection named {canonical!r}")
    hub_raw["identity_name"] = hub_raw.get("identity_name", hub_raw["title"])
    hub_raw["default_tlp"] = Tlp.parse(hub_raw["default_tlp"])
    hub_raw["canonical_audience"] = Tlp.parse(hub_raw["canonical_audience"])
    hub_raw["tls"] = _tls(hub_raw["tls"], base_dir) if "tls" in hub_raw else None
    hub_raw["canonical_views"] = _canonical_views(hub_raw.pop("canonical_views", {}), by_name, canonical,
                                                  hub_raw["canonical_audience"])
    alerts = hub_raw.pop("alerts_collection", None)
    if alerts is not None and (alerts not in by_name or canonical is None):
        raise ConfigError(f"config key 'hub.alerts_collection': {alerts!r} " + (
            "is no collection" if alerts not in by_name else "needs hub.canonical_collection to correlate"))
    hub = HubSettings(data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
                      canonical_collection=by_name[canonical] if canonical else None,
                      alerts_collection=by_name[alerts] if alerts else None, **hub_raw)
    hub_written = set(hub.canonical_collections)
    inboxes = [c.id for r in roots for c in r.collections if c.id not in hub_written]
    peer_defaults = _defaults(schema["peers"]["items"])
    peers = parse_peers(raw.get("peers", []), by_name, hub_written, inboxes, peer_defaults)
    peers = tuple(replace(p, tls=p.tls.under(base_dir)) for p in peers)
    peer_by_id = {p.id: p for p in peers}
    raw_accounts = raw.get("accounts", [])
    accounts = tuple(_account(i, a, by_name, peer_by_id) for i, a in enumerate(raw_accounts))
    usernames = [a.username for a in accounts]
    for name in usernames:
        if usernames.count(name) > 1:
            raise ConfigError(f"config key 'accounts': username {name!r} is defined twice")
    sources = {a["username"]: SourceSettings(country=a.get("country"), trust=float(a.get("trust", 1.0)))
               for a in raw_accounts}
    settings = Settings(hub=hub, api_roots=roots, accounts=accounts, sources=sources, peers=peers,
                        alert_rules=parse_alert_rules(raw))
    recipients = {a["username"]: _recipient(a, settings) for a in raw_accounts}
    return replace(settings, recipients=recipients, members=parse_members(raw.get("members", []), recipients))


def _canonical_views(raw: dict[str, str], by_name: dict[str, str], canonical: str | None,
                     audience: Tlp) -> tuple[tuple[Tlp, str], ...]:
    views: list[tuple[Tlp, str]] = []
    for label, name in raw.items():
        key = f"config key 'hub.canonical_views.{label}'"
        level = Tlp.parse(label)
        if canonical is None:
            raise ConfigError(f"{key}: needs hub.canonical_collection")
        if name not in by_name:
            raise ConfigError(f"{key}: no collection named {name!r}")
        if level <= audience:
            raise ConfigError(f"{key}: must be stricter than hub.canonical_audience ({audience.label})")
        if by_name[name] in {by_name[canonical], *(c for _, c in views)}:
            raise ConfigError(f"{key}: collection {name!r} already holds another audience's canonical indicators")
        views.append((level, by_name[name]))
    return tuple(sorted(views))


def _recipient(raw: dict[str, Any], settings: Settings) -> Recipient:
    relation = Relation(raw.get("kind", "member"))
    if relation is Relation.PEER:
        peer = next(p for p in settings.peers if p.id == raw["peer"])
        found = settings.peer_recipient(peer)
        return replace(found, name=raw["username"], aliases=found.aliases | {peer.account})
    max_tlp = Tlp.RED if relation is Relation.OPERATOR else Tlp.parse(raw.get("max_tlp", "green"))
    return Recipient(name=raw["username"], relation=relation, max_tlp=max_tlp)


def _api_root(index: int, raw: dict[str, Any]) -> ApiRootSettings:
    collections = tuple(
        CollectionSettings(id=c["id"], alias=c.get("alias"), title=c["title"],
                           description=c.get("description", ""))
        for c in raw["collections"]
    )
    return ApiRootSettings(path=raw["path"], title=raw.get("title", ""), description=raw.get("description", ""),
                           default=raw.get("default", False), collections=collections)


def _collection_names(roots: tuple[ApiRootSettings, ...]) -> dict[str, str]:
    """Map every collection id and alias to its id; both must be unique across the hub."""
    names: dict[str, str] = {}
    paths = [r.path for r in roots]
    for i, root in enumerate(roots):
        if paths.count(root.path) > 1:
            raise ConfigError(f"config key 'api_roots[{i}].path': {root.path!r} is used twice")
        for j, coll in enumerate(root.collections):
            for name in filter(None, (coll.id, coll.alias)):
                if name in names:
                    raise ConfigError(f"config key 'api_roots[{i}].collections[{j}]': "
                                      f"{name!r} names two collections")
                names[name] = coll.id
    if sum(r.default for r in roots) > 1:
        raise ConfigError("config key 'api_roots': more than one API root has default = true")
    return names


def _account(index: int, raw: dict[str, Any], by_name: dict[str, str],
             peers: Mapping[str, PeerSettings]) -> Account:
    def grants(key: str) -> frozenset[str]:
        out = set()
        for name in raw.get(key, []):
            if name != "*" and name not in by_name:
                raise ConfigError(f"config key 'accounts[{index}].{key}': no collection named {name!r}")
            out.add("*" if name == "*" else by_name[name])
        return frozenset(out)

    if "password_hash" not in raw and not raw.get("token_hashes"):
        raise ConfigError(f"config key 'accounts[{index}]': needs password_hash or token_hashes")
    can_read = grants("can_read")
    peer = raw.get("peer")
    if (raw.get("kind") == "peer") != (peer is not None):
        raise ConfigError(f"config key 'accounts[{index}]': kind = \"peer\" and peer = \"<peer id>\" go together")
    if peer is not None:
        if peer not in peers:
            raise ConfigError(f"config key 'accounts[{index}].peer': no peer with id {peer!r}")
        if can_read:
            raise ConfigError(f"config key 'accounts[{index}].can_read': a peer account reads what its "
                              f"agreement allows; set peers.agreement.readable_collections of {peer!r} instead")
        can_read = peers[peer].agreement.readable_collections
    return Account(username=raw["username"], password_hash=raw.get("password_hash"),
                   token_hashes=tuple(raw.get("token_hashes", [])),
                   can_read=can_read, can_write=grants("can_write"), peer=peer)


def _tls(raw: dict[str, Any], base_dir: Path) -> TlsSettings:
    """hub.tls; the files are read when the hub starts (they may exist only on the production host)."""
    if raw.get("require_client_cert") and "client_ca" not in raw:
        raise ConfigError("config key 'hub.tls.require_client_cert': needs hub.tls.client_ca to verify them with")
    return TlsSettings(cert=base_dir / raw["cert"], key=base_dir / raw["key"],
                       client_ca=base_dir / raw["client_ca"] if "client_ca" in raw else None,
                       require_client_cert=bool(raw.get("require_client_cert", False)))


def check_secrets(settings: Settings, env: Mapping[str, str]) -> None:
    """ConfigError naming the first peer whose secret is missing: the hub must not start half-configured."""
    for index, peer in enumerate(settings.peers):
        for name in missing_secrets(peer, env):
            raise ConfigError(f"config key 'peers[{index}].auth': peer {peer.id!r} needs the environment "
                              f"variable {name}, which is not set")

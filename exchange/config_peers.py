"""Configuration of peering: the [[peers]] this hub pulls from and pushes to, their credentials (environment
variable names only), TLS and sharing agreements (split from config.py, which loads them)."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.errors import ConfigError
from exchange.policy.tlp import Tlp


@dataclass(frozen=True, slots=True)
class PeerAuth:
    """Names of the environment variables holding a peer's secrets; the secrets never sit in the file."""

    username: str | None = None
    password_env: str | None = None
    token_env: str | None = None


@dataclass(frozen=True, slots=True)
class AgreementSettings:
    """A peer's sharing agreement: enforced on its account's reads and on pushes to it (policy/egress.py)."""

    max_tlp: Tlp = Tlp.GREEN
    readable_collections: frozenset[str] = frozenset()  # our collection ids
    amber_constituents: bool = False


@dataclass(frozen=True, slots=True)
class PeerTls:
    """TLS towards a peer: a private CA to trust instead of the system's, and a client certificate."""

    ca_file: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def under(self, base_dir: Path) -> "PeerTls":
        """Relative paths made relative to the config file's directory."""
        return PeerTls(*(None if p is None else base_dir / p for p in (self.ca_file, self.cert, self.key)))


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """A foreign hub or TAXII 2.1 server the hub pulls from (and, later, pushes to)."""

    id: str
    name: str
    country: str
    api_root: str | None
    discovery: str | None
    pull: tuple[str, ...]
    push: tuple[str, ...]
    pull_into: str  # our collection id
    auth: PeerAuth
    trust: float
    poll_interval: float
    page_size: int
    timeout: float
    max_page_bytes: int
    quarantine: float
    agreement: AgreementSettings
    identity: str | None = None  # the peer hub's identity id, when it is an exchange hub
    push_interval: float = 5.0
    push_batch: int = 500
    tls: PeerTls = PeerTls()

    @property
    def account(self) -> str:
        """The journal account and claim source of everything pulled from this peer (':' is no username)."""
        return f"peer:{self.id}"


def parse_peers(raw: list[dict[str, Any]], by_name: dict[str, str], hub_written: set[str], inboxes: list[str],
                defaults: dict[str, Any]) -> tuple[PeerSettings, ...]:
    """`inboxes`: our collection ids that are not written by the hub, in config order; `defaults`: the schema's
    defaults of one peer entry."""
    ids = [p["id"] for p in raw]
    for index, peer_id in enumerate(ids):
        if ids.count(peer_id) > 1:
            raise ConfigError(f"config key 'peers[{index}].id': peer {peer_id!r} is defined twice")
    return tuple(_peer(i, p, by_name, hub_written, inboxes, defaults) for i, p in enumerate(raw))


def _peer(index: int, raw: dict[str, Any], by_name: dict[str, str], hub_written: set[str], inboxes: list[str],
          defaults: dict[str, Any]) -> PeerSettings:
    key = f"peers[{index}]"
    values = defaults | raw
    if "pull_into" in raw:
        if raw["pull_into"] not in by_name:
            raise ConfigError(f"config key '{key}.pull_into': no collection named {raw['pull_into']!r}")
        pull_into = by_name[raw["pull_into"]]
        if pull_into in hub_written:
            raise ConfigError(f"config key '{key}.pull_into': the canonical collections are written by the hub only")
    else:  # the first collection that is not a canonical one: the inbox in every example
        if not inboxes:
            raise ConfigError(f"config key '{key}.pull_into': no collection to journal pulled objects into")
        pull_into = inboxes[0]
    return PeerSettings(
        id=values["id"], name=values["name"], country=values["country"], api_root=values.get("api_root"),
        discovery=values.get("discovery"), pull=tuple(dict.fromkeys(values["pull"])),
        push=tuple(dict.fromkeys(values["push"])), pull_into=pull_into, auth=_peer_auth(key, raw.get("auth", {})),
        trust=float(values["trust"]), poll_interval=float(values["poll_interval"]), page_size=values["page_size"],
        timeout=float(values["timeout"]), max_page_bytes=values["max_page_bytes"],
        quarantine=float(values["quarantine"]), agreement=_agreement(key, raw.get("agreement", {}), by_name),
        identity=values.get("identity"), push_interval=float(values["push_interval"]),
        push_batch=values["push_batch"], tls=_peer_tls(key, raw.get("tls", {})))


def _peer_tls(key: str, raw: dict[str, Any]) -> PeerTls:
    if ("cert" in raw) != ("key" in raw):
        raise ConfigError(f"config key '{key}.tls': a client certificate needs both cert and key")
    return PeerTls(*(Path(raw[k]) if k in raw else None for k in ("ca_file", "cert", "key")))


def _peer_auth(key: str, raw: dict[str, Any]) -> PeerAuth:
    auth = PeerAuth(username=raw.get("username"), password_env=raw.get("password_env"),
                    token_env=raw.get("token_env"))
    if (auth.username is None) != (auth.password_env is None):
        raise ConfigError(f"config key '{key}.auth': HTTP Basic needs both username and password_env")
    if auth.username is not None and auth.token_env is not None:
        raise ConfigError(f"config key '{key}.auth': give username + password_env or token_env, not both")
    return auth


def _agreement(key: str, raw: dict[str, Any], by_name: dict[str, str]) -> AgreementSettings:
    readable = set()
    for name in raw.get("readable_collections", []):
        if name not in by_name:
            raise ConfigError(f"config key '{key}.agreement.readable_collections': no collection named {name!r}")
        readable.add(by_name[name])
    return AgreementSettings(max_tlp=Tlp.parse(raw.get("max_tlp", "green")), readable_collections=frozenset(readable),
                             amber_constituents=bool(raw.get("amber_constituents", False)))


def missing_secrets(peer: PeerSettings, env: Mapping[str, str]) -> list[str]:
    """Environment variables the peer's auth names that `env` does not set (or sets empty)."""
    names = [n for n in (peer.auth.password_env, peer.auth.token_env) if n is not None]
    return [n for n in names if not env.get(n)]

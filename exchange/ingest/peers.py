"""Peer sync state and health (ingest stage): typed records the journal persists, pure health rules.

The journal keeps one row per (peer, collection): the pull cursor, counters and the last error, so
`exchange peers` reads health from disk whether or not the hub runs.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from exchange.config_peers import PeerSettings
from exchange.errors import ConfigError
from exchange.model.timestamps import format_timestamp
from exchange.taxii.client import Credentials


class PeerState(StrEnum):
    NEW = "new"  # configured, never polled
    OK = "ok"
    BACKING_OFF = "backing-off"  # a transient or refused request: retried with exponential backoff
    UNAUTHORIZED = "unauthorized"  # 401/403: retried with backoff, but an operator must fix credentials
    QUARANTINED = "quarantined"  # the peer sent garbage: left alone for `quarantine` seconds


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """What one pulled page moves forward; committed in the same transaction as the page's envelope."""

    peer: str
    collection: str
    cursor: str | None  # the peer's own date_added text, sent back verbatim as added_after
    cursor_micros: int | None
    in_round: bool  # the peer said more=true: a restart resumes mid-round (with overlap, see poller)
    tail: tuple[tuple[str, str], ...] | None  # (id, version) of the page's objects; None keeps the old tail
    objects: int  # objects journaled by this page
    at: int  # microseconds, our clock


@dataclass(frozen=True, slots=True)
class PeerFailure:
    peer: str
    collection: str
    state: PeerState
    message: str
    at: int
    retry_at: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """What a peer sent that is not TAXII, kept for inspection (bounded by max_page_bytes)."""

    url: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class PeerSync:
    """The persisted row of one peer collection."""

    peer: str
    collection: str
    cursor: str | None = None
    cursor_micros: int | None = None
    in_round: bool = False
    tail: tuple[tuple[str, str], ...] = ()
    objects_pulled: int = 0
    pages_pulled: int = 0
    state: PeerState = PeerState.NEW
    last_success: int | None = None
    caught_up_at: int | None = None  # end of the last round that left nothing behind on the peer
    last_error: str | None = None
    last_error_at: int | None = None
    error_count: int = 0
    retry_at: int | None = None


@dataclass(frozen=True, slots=True)
class PeerHealth:
    """One line of `exchange peers`: how far the hub is with one peer collection, and why not further."""

    peer: str
    name: str
    country: str
    collection: str
    state: PeerState
    last_success: int | None
    last_error: str | None
    last_error_at: int | None
    error_count: int
    objects_pulled: int
    cursor: str | None
    lag: float | None  # seconds; None until the first page
    retry_at: int | None


def lag_seconds(sync: PeerSync, now: int) -> float | None:
    """How stale our copy may be: since the last round that caught up, else the age of the cursor.

    Not simply now - cursor: an idle peer's newest object may be weeks old while we are fully in sync.
    """
    if sync.caught_up_at is not None and not sync.in_round:
        return max(0.0, (now - sync.caught_up_at) / 1e6)
    if sync.cursor_micros is not None:
        return max(0.0, (now - sync.cursor_micros) / 1e6)
    return None


def peer_health(peers: Iterable[PeerSettings], rows: Iterable[PeerSync], now: int) -> list[PeerHealth]:
    """Every configured (peer, pull collection), with its persisted row or as NEW; rows of removed peers drop."""
    by_key = {(r.peer, r.collection): r for r in rows}
    out = []
    for peer in peers:
        for collection in peer.pull:
            sync = by_key.get((peer.id, collection)) or PeerSync(peer=peer.id, collection=collection)
            out.append(PeerHealth(peer=peer.id, name=peer.name, country=peer.country, collection=collection,
                                  state=sync.state, last_success=sync.last_success, last_error=sync.last_error,
                                  last_error_at=sync.last_error_at, error_count=sync.error_count,
                                  objects_pulled=sync.objects_pulled, cursor=sync.cursor,
                                  lag=lag_seconds(sync, now), retry_at=sync.retry_at))
    return out


def peer_credentials(peer: PeerSettings, env: Mapping[str, str]) -> Credentials:
    """The peer's login, secrets read from `env`; ConfigError naming the peer and the missing variable."""
    def secret(name: str) -> str:
        value = env.get(name)
        if not value:
            raise ConfigError(f"peer {peer.id!r}: environment variable {name} (its auth secret) is not set")
        return value

    auth = peer.auth
    if auth.token_env is not None:
        return Credentials(token=secret(auth.token_env))
    if auth.username is not None and auth.password_env is not None:
        return Credentials(username=auth.username, password=secret(auth.password_env))
    return Credentials()


def _when(micros: int | None, now: int) -> str:
    if micros is None:
        return "never"
    return f"{format_timestamp(micros)[:19]}Z ({_span((now - micros) / 1e6)} ago)"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def format_health(health: list[PeerHealth], now: int) -> str:
    """A block per peer collection, readable in a terminal and greppable."""
    if not health:
        return "no peers configured (add [[peers]] to the config; see docs/federation.md)"
    blocks = []
    for h in health:
        lines = [f"{h.peer}/{h.collection}  {h.name} ({h.country})  state={h.state.value}",
                 f"  last success:   {_when(h.last_success, now)}",
                 f"  objects pulled: {h.objects_pulled}",
                 f"  lag:            {'-' if h.lag is None else _span(h.lag)}",
                 f"  cursor:         {h.cursor or '-'}",
                 f"  errors:         {h.error_count}"]
        if h.last_error:
            lines.append(f"  last error:     {_when(h.last_error_at, now)}: {h.last_error}")
        if h.retry_at is not None and h.state is not PeerState.OK:
            lines.append(f"  next try:       {format_timestamp(h.retry_at)[:19]}Z")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

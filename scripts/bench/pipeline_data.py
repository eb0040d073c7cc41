"""The normalize+dedup benchmark's data: N STIX 2.1 indicators from P peers, a share of them re-sending another
peer's value in an equivalent spelling, every object under its sender's own id, cut into each peer's envelopes
(scripts/bench_pipeline.py says what it measures on them)."""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from exchange.dedup.claims import Source, Warn
from exchange.ingest.journal import Envelope
from exchange.ingest.processor import ClaimPolicy
from exchange.policy.tlp import TLP2_IDS, Tlp

BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)
ENVELOPE = 500  # objects per envelope, as bench_taxii posts them
COUNTRIES = ("DE", "FR", "NL", "BE", "AT", "PL", "IT", "ES", "SE", "FI", "DK", "CZ", "PT", "IE", "LU")
KIND_WEIGHTS = {"ipv4": 25, "ipv6": 10, "domain": 25, "url": 20, "sha256": 20}  # shares of the distinct values
SCO_TYPES = {"ipv4": "ipv4-addr", "ipv6": "ipv6-addr", "domain": "domain-name", "url": "url"}
MARKINGS = ((TLP2_IDS[Tlp.GREEN], 55), (TLP2_IDS[Tlp.CLEAR], 15), (TLP2_IDS[Tlp.AMBER], 10), (None, 20))
HASH_KEYS = ("'SHA-256'", "SHA256", "sha256", "'sha-256'", "SHA_256")
# Pattern shapes: white space as peers write it (spaces and tabs, which the grammar skips).
SHAPES = ("[{p} = '{v}']", "[{p}='{v}']", "[ {p} = '{v}' ]", "[{p}\t=\t'{v}']", "  [{p}  =  '{v}'] ")
DOMAINS = ("example", "bad-host", "cdn-update", "login-secure")
TLDS = ("com", "net", "org", "ru", "info", "xyz")
URL_HOSTS = ("example.com", "files.example.net", "update.example.org")


@dataclass(frozen=True, slots=True)
class Dataset:
    """The generated objects, already cut into each peer's envelopes (JSON bytes, as the journal holds them)."""

    n: int
    peers: int
    distinct: int  # canonical indicators the hub must end up with
    duplicates: int  # objects re-sending a value another peer sent
    envelopes: list[Envelope]
    kinds: dict[str, int]


def _stix_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _distinct_value(kind: str, i: int, rng: random.Random) -> str:
    """The i-th distinct value of a kind, in canonical form; unique per (kind, i)."""
    if kind == "ipv4":  # 11.0.0.0 upward: public addresses, unique for i < 2**24
        return f"{11 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if kind == "ipv6":
        return f"2001:db8:{(i >> 16) & 0xFFFF:x}:{i & 0xFFFF:x}::{rng.randrange(1, 0xFFFF):x}"
    if kind == "domain":
        return f"c2-{i:x}.{rng.choice(DOMAINS)}.{rng.choice(TLDS)}"
    if kind == "url":
        path = rng.choice(("/", f"/payload/{i}.bin", f"/gate.php?id={i}", f"/a/b/{i:x}/index.html"))
        return f"{rng.choice(('http', 'https'))}://dl{i:x}.{rng.choice(URL_HOSTS)}{path}"
    return f"{rng.getrandbits(256):064x}"


def _case(text: str, rng: random.Random) -> str:
    return rng.choice((text, text.upper(), text.title(), "".join(c.upper() if rng.random() < 0.5 else c for c in text)))


def _spelling(kind: str, value: str, rng: random.Random) -> tuple[str, str]:
    """(object path, value text) of one peer's spelling of a canonical value; half the values are spelled as is."""
    if kind == "sha256":
        return f"file:hashes.{rng.choice(HASH_KEYS)}", value.upper() if rng.random() < 0.5 else value
    path = f"{SCO_TYPES[kind]}:value"
    if rng.random() < 0.5:
        return path, value
    if kind == "ipv4":
        return path, f"{value}/32"
    if kind == "ipv6":
        exploded = ipaddress.IPv6Address(value).exploded
        return path, rng.choice((exploded, exploded.upper(), value.upper(), f"{value}/128"))
    if kind == "domain":
        return path, _case(value, rng) + rng.choice(("", "."))
    scheme, _, rest = value.partition("://")
    host, slash, tail = rest.partition("/")
    port = {"http": ":80", "https": ":443"}[scheme] if rng.random() < 0.5 else ""
    tail = "" if slash and not tail and rng.random() < 0.5 else slash + tail  # http://h is http://h/
    return path, f"{_case(scheme, rng)}://{_case(host, rng)}{port}{tail}"


def _indicator(rng: random.Random, peer: int, kind: str, value: str, serial: int) -> dict[str, Any]:
    path, text = _spelling(kind, value, rng)
    created = BASE_TIME + timedelta(seconds=serial, milliseconds=rng.randrange(1000))
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "created_by_ref": f"identity--{uuid.uuid5(uuid.NAMESPACE_DNS, f'peer{peer}.example')}",
        "created": _stix_time(created),
        "modified": _stix_time(created + timedelta(minutes=rng.choice((0, 0, 5, 60)))),
        "name": f"{kind} indicator from peer {peer}",
        "indicator_types": [rng.choice(("malicious-activity", "anomalous-activity", "compromised"))],
        "pattern": rng.choice(SHAPES).format(p=path, v=text),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": _stix_time(created),
    }
    if rng.random() < 0.3:
        obj["valid_until"] = _stix_time(created + timedelta(days=rng.choice((7, 30, 90))))
    if rng.random() < 0.7:
        obj["confidence"] = rng.choice((15, 30, 50, 70, 85, 100))
    if rng.random() < 0.5:
        obj["labels"] = rng.sample(("botnet", "phishing", "c2", "ransomware", "scanner", "apt"), rng.randrange(1, 3))
    if rng.random() < 0.3:
        phase = rng.choice(("command-and-control", "initial-access"))
        obj["kill_chain_phases"] = [{"kill_chain_name": "mitre-attack", "phase_name": phase}]
    marking = rng.choices([m for m, _ in MARKINGS], [w for _, w in MARKINGS])[0]
    if marking is not None:
        obj["object_marking_refs"] = [marking]
    return obj


def generate(n: int, peers: int, dup_rate: float, seed: int) -> Dataset:
    """N indicators: (1 - dup_rate) * N distinct values, each first sent by one peer, and dup_rate * N re-sends of
    them by other peers, in random order; each peer's objects cut into envelopes, the peers' envelopes interleaved."""
    rng = random.Random(seed)
    duplicates = round(n * dup_rate) if peers > 1 else 0
    distinct = n - duplicates
    kinds = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()), k=distinct)
    counters: Counter[str] = Counter()
    values: list[tuple[int, str, str]] = []  # origin peer, kind, canonical value
    for kind in kinds:
        values.append((rng.randrange(peers), kind, _distinct_value(kind, counters[kind], rng)))
        counters[kind] += 1
    sends = list(values)
    for _ in range(duplicates):
        origin, kind, value = rng.choice(values)
        sends.append(((origin + rng.randrange(1, peers)) % peers, kind, value))
    rng.shuffle(sends)
    per_peer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for serial, (peer, kind, value) in enumerate(sends):
        per_peer[peer].append(_indicator(rng, peer, kind, value, serial))
    chunks = {p: [objs[i:i + ENVELOPE] for i in range(0, len(objs), ENVELOPE)] for p, objs in per_peer.items()}
    envelopes = [
        Envelope(status_id=f"{peer}-{k}", api_root="api", collection_id="inbox", account=f"peer{peer}",
                 received_at=0, total=len(chunks[peer][k]), pending=[],
                 body=orjson.dumps({"objects": chunks[peer][k]}))
        for k in range(max(map(len, chunks.values()), default=0)) for peer in sorted(chunks) if k < len(chunks[peer])
    ]
    return Dataset(n=n, peers=peers, distinct=distinct, duplicates=duplicates, envelopes=envelopes,
                   kinds=dict(Counter(kinds)))


def claim_policy(peers: int, warn: Warn | None = None) -> ClaimPolicy:
    """Each peer an account with a country and a trust weight, as the hub's [sources] configure them."""
    sources = {f"peer{p}": Source(name=f"peer{p}", country=COUNTRIES[p % len(COUNTRIES)], trust=0.5 + (p % 5) / 10)
               for p in range(peers)}
    return ClaimPolicy(sources=sources, default_tlp=Tlp.GREEN, warn=warn)

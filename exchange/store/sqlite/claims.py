"""Claims in SQLite: atomic upserts keyed by (source, producer id) and canonical re-materialization.

Runs inside the store's writer transaction (serial), next to the verbatim insert of the same object.
"""

import sqlite3

import msgpack
import orjson

from exchange.dedup.claims import Claim, SightingClaim
from exchange.dedup.merge import MIN_STEP, PROVENANCE_EXTENSION, merge
from exchange.model.stix import StixRecord, read_record
from exchange.model.timestamps import format_timestamp
from exchange.policy.tlp import Tlp
from exchange.store.base import MergePolicy

# A dict lookup, not Tlp(n): every materialization unpacks every claim of its indicator.
_TLPS = {int(level): level for level in Tlp}


def pack_claim(c: Claim) -> bytes:
    return msgpack.packb([c.indicator_id, c.pattern, c.source, c.country, c.trust, c.producer_id, c.created,
                          c.modified, c.revoked, int(c.tlp), c.confidence, c.valid_from, c.valid_until, c.name,
                          c.labels, c.indicator_types, c.kill_chain, c.role, c.warnings, c.origin, c.path])


def unpack_claim(data: bytes) -> Claim:
    # use_list=False: msgpack arrays come back as the tuples a claim holds. Positional, as Claim explains; a claim
    # written before federation has 19 fields, and origin and path keep their defaults.
    fields = list(msgpack.unpackb(data, use_list=False))
    fields[9] = _TLPS[fields[9]]
    return Claim(*fields)


def pack_sighting(s: SightingClaim) -> bytes:
    return msgpack.packb([s.sighting_id, s.sighting_of, s.source, s.country, s.modified, s.revoked, int(s.tlp),
                          s.count, s.first_seen, s.last_seen])


def unpack_sighting(data: bytes) -> SightingClaim:
    fields = list(msgpack.unpackb(data, use_list=False))
    fields[6] = _TLPS[fields[6]]
    return SightingClaim(*fields)


def upsert_claim(conn: sqlite3.Connection, claim: Claim, touched: set[str]) -> tuple[bool, str]:
    """Record a claim; returns (joined an indicator others claimed, message for the status resource).

    Only claims the sender could see (at or below its own claim's TLP) count as others: a status must not
    reveal that a stricter claim exists."""
    prior = conn.execute("SELECT indicator_id, modified FROM claims WHERE source = ? AND producer_id = ?",
                         (claim.key, claim.producer_id)).fetchone()
    if prior is not None and claim.modified <= prior[1]:
        return True, f"an equal or newer version of this claim is already recorded on {prior[0]}"
    if prior is not None and prior[0] != claim.indicator_id:
        touched.add(prior[0])  # the producer changed its pattern: its claim leaves the old indicator
    conn.execute(
        "INSERT INTO claims (source, producer_id, indicator_id, modified, data) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (source, producer_id) DO UPDATE SET indicator_id = excluded.indicator_id,"
        " modified = excluded.modified, data = excluded.data",
        (claim.key, claim.producer_id, claim.indicator_id, claim.modified, pack_claim(claim)),
    )
    # created = 0 until the first materialization fixes it from the claims its audience can see.
    conn.execute("INSERT INTO indicators (id, pattern, created) VALUES (?, ?, 0) ON CONFLICT (id) DO NOTHING",
                 (claim.indicator_id, claim.pattern))
    touched.add(claim.indicator_id)
    conn.execute("UPDATE sightings SET indicator_id = ? WHERE indicator_id = ?",
                 (claim.indicator_id, claim.producer_id))  # sightings that came first (upsert_sighting)
    others = [c for c in (unpack_claim(r[0]) for r in conn.execute(
        "SELECT data FROM claims WHERE indicator_id = ? AND NOT (source = ? AND producer_id = ?)",
        (claim.indicator_id, claim.key, claim.producer_id))) if c.tlp <= claim.tlp]
    verb = "revoked its claim on" if claim.revoked else "claims"
    final = conn.execute("SELECT merged_hash IN (?, ?) FROM indicators WHERE id = ?",
                         (*_FINAL, claim.indicator_id)).fetchone()[0]
    after = (f"; canonical indicator {claim.indicator_id} was revoked and stays so (STIX 2.1 section 3.6): the claim "
             "is recorded, no new version is published") if final and not claim.revoked else ""
    if not others:
        return False, f"stored: {claim.source} {verb} canonical indicator {claim.indicator_id}{after}"
    return True, f"merged: {claim.source} {verb} {claim.indicator_id}, {_others(claim, others)}{after}"


def _others(claim: Claim, others: list[Claim]) -> str:
    """Who else claims the indicator, for a merged claim's status: live sources, not claims."""
    sources = {c.key for c in others if not c.revoked} - {claim.key}
    own = sum(c.key == claim.key for c in others)
    parts = [f"also claimed by {len(sources)} other source(s)"] if sources else []
    if own:
        parts.append(f"{own} other claim(s) of {claim.source}")
    return "; ".join(parts) if parts else "whose other claims are revoked"


def upsert_sighting(conn: sqlite3.Connection, sighting: SightingClaim, touched: set[str]) -> str:
    target = sighting.sighting_of
    resolved = conn.execute("SELECT 1 FROM indicators WHERE id = ?", (target,)).fetchone() is not None
    if not resolved:  # the sender's own indicator id: follow its claim to the canonical indicator
        found = conn.execute(  # the sender's own claim first: another source may reuse the id
            "SELECT indicator_id FROM claims WHERE producer_id = ? ORDER BY source = ? DESC LIMIT 1",
            (target, sighting.source)).fetchone()
        if found is not None:
            target, resolved = found[0], True
    # An unresolved sighting is kept under the id it names, and attached when a claim with that id arrives
    # (upsert_claim): across envelopes and peers, nothing orders a sighting after the indicator it sights.
    conn.execute(
        "INSERT INTO sightings (source, sighting_id, indicator_id, modified, data) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (source, sighting_id) DO UPDATE SET indicator_id = excluded.indicator_id,"
        " modified = excluded.modified, data = excluded.data WHERE excluded.modified > sightings.modified",
        (sighting.source, sighting.sighting_id, target, sighting.modified, pack_sighting(sighting)),
    )
    if not resolved:
        return f"stored; sighting of {target}, an indicator this hub has no claim for yet (attached when one arrives)"
    touched.add(target)
    return f"sighting recorded on {target}"


def materialize(conn: sqlite3.Connection, indicator_id: str, policy: MergePolicy) -> list[tuple[str, StixRecord]]:
    """The new canonical versions of one indicator as (collection, record): one per audience whose view changed.

    Each view has its own `modified` sequence, in its own lane (merge.LANES): a GREEN version's `modified`
    must not show when an AMBER claim arrived, and one id and `modified` never name two different contents,
    whichever views a recipient reads. The first audience's state lives in `indicators` (as before views
    existed), the others' in `canonical_views`."""
    row = conn.execute("SELECT modified, created, merged_hash FROM indicators WHERE id = ?",
                       (indicator_id,)).fetchone()
    if row is None:
        return []
    claims = [unpack_claim(r[0]) for r in conn.execute(
        "SELECT data FROM claims WHERE indicator_id = ?", (indicator_id,))]
    sightings = [unpack_sighting(r[0]) for r in conn.execute(
        "SELECT data FROM sightings WHERE indicator_id = ?", (indicator_id,))]
    out: list[tuple[str, StixRecord]] = []
    for index, (audience, collection) in enumerate(policy.audiences):
        previous, created, previous_hash = row if index == 0 else _load_view(conn, collection, indicator_id)
        if previous_hash in _FINAL:
            continue  # STIX 2.1 section 3.6: a revoked object has no later versions
        merged = merge(claims, audience=audience, hub=policy.hub, created=created or None,
                       previous_modified=previous, sightings=sightings, lane=0 if index == 0 else 1 + audience)
        if merged is None:
            if previous_hash is None:
                continue
            record = _withdrawn(conn, indicator_id, collection, previous)
            if record is None:
                continue
            state = (created, _WITHDRAWN)
        elif merged.record.revoked:
            if previous_hash is None:
                continue  # revoked before anyone saw it: publishing it would only block a later live claim
            record = merged.record
            state = (merged.created, _REVOKED)
        elif merged.content_hash == previous_hash:
            continue
        else:
            record = merged.record
            state = (merged.created, merged.content_hash)
        if index == 0:
            conn.execute("UPDATE indicators SET created = ?, merged_hash = ?, modified = ? WHERE id = ?",
                         (*state, record.version, indicator_id))
        else:
            conn.execute(
                "INSERT INTO canonical_views (collection, indicator_id, created, merged_hash, modified)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection, indicator_id) DO UPDATE SET"
                " created = excluded.created, merged_hash = excluded.merged_hash, modified = excluded.modified",
                (collection, indicator_id, *state, record.version))
        out.append((collection, record))
    return out


# View states (in place of a merged hash) after which a view takes no more versions: every claim it could see
# left (withdrawn) or was revoked by its producer (revoked).
_WITHDRAWN = b"withdrawn"
_REVOKED = b"revoked"
_FINAL = (_WITHDRAWN, _REVOKED)


def _load_view(conn: sqlite3.Connection, collection: str, indicator_id: str) -> tuple[int, int, bytes | None]:
    """(modified, created, merged hash) of one indicator in a further audience's view; zeros before its first."""
    found = conn.execute("SELECT modified, created, merged_hash FROM canonical_views"
                         " WHERE collection = ? AND indicator_id = ?", (collection, indicator_id)).fetchone()
    return (found[0], found[1], found[2]) if found is not None else (0, 0, None)


def _withdrawn(conn: sqlite3.Connection, indicator_id: str, collection: str, previous: int) -> StixRecord | None:
    """Every claim the audience could see has left (e.g. producers changed their patterns): revoke it."""
    row = conn.execute("SELECT body FROM objects WHERE collection = ? AND stix_id = ? AND is_last = 1",
                       (collection, indicator_id)).fetchone()
    if row is None:
        return None
    body = orjson.loads(row[0])
    body["revoked"] = True
    provenance = body.get("extensions", {}).get(PROVENANCE_EXTENSION)
    if provenance is not None:  # nobody vouches for it any more
        provenance.update(claims=[], source_count=0)
        provenance.pop("countries", None)
    body["modified"] = format_timestamp(previous + MIN_STEP)
    return read_record(body)

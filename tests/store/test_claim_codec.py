"""The claims table's msgpack rows: what upsert_claim writes, materialize reads back unchanged."""

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from exchange.dedup.claims import Claim, SightingClaim
from exchange.policy.tlp import Tlp
from exchange.store.sqlite.claims import pack_claim, pack_sighting, unpack_claim, unpack_sighting

_TEXT = st.text(max_size=12)
_TIME = st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999)
_WORDS = st.lists(_TEXT, max_size=3, unique=True).map(lambda w: tuple(sorted(w)))
CLAIMS = st.builds(
    Claim, indicator_id=_TEXT, pattern=_TEXT, source=_TEXT, country=st.none() | _TEXT,
    trust=st.floats(min_value=0, max_value=1), producer_id=_TEXT, created=_TIME, modified=_TIME,
    revoked=st.booleans(), tlp=st.sampled_from(list(Tlp)), confidence=st.none() | st.integers(0, 100),
    valid_from=st.none() | _TIME, valid_until=st.none() | _TIME, name=st.none() | _TEXT, labels=_WORDS,
    indicator_types=_WORDS, kill_chain=st.lists(st.tuples(_TEXT, _TEXT), max_size=3, unique=True).map(
        lambda k: tuple(sorted(k))),
    role=st.none() | st.sampled_from(["dst", "src"]), warnings=_WORDS, origin=st.none() | _TEXT,
    path=st.lists(_TEXT, max_size=3).map(tuple),
)


@given(CLAIMS)
def test_a_claim_reads_back_as_written(claim: Claim) -> None:
    back = unpack_claim(pack_claim(claim))
    assert back == claim
    assert type(back.tlp) is Tlp
    assert all(type(getattr(back, f)) is tuple for f in ("labels", "indicator_types", "kill_chain", "warnings", "path"))
    assert all(type(phase) is tuple for phase in back.kill_chain)


@given(CLAIMS)
def test_a_claim_written_before_federation_reads_with_no_origin_and_no_path(claim: Claim) -> None:
    legacy = msgpack.packb(msgpack.unpackb(pack_claim(claim))[:19])  # the 19 fields rows had then
    back = unpack_claim(legacy)
    assert (back.origin, back.path) == (None, ())
    assert back == Claim(*(getattr(claim, f) for f in Claim.__struct_fields__[:19]))


@given(st.builds(SightingClaim, sighting_id=_TEXT, sighting_of=_TEXT, source=_TEXT, country=st.none() | _TEXT,
                 modified=_TIME, revoked=st.booleans(), tlp=st.sampled_from(list(Tlp)),
                 count=st.integers(0, 2**31), first_seen=st.none() | _TIME, last_seen=st.none() | _TIME))
def test_a_sighting_reads_back_as_written(sighting: SightingClaim) -> None:
    back = unpack_sighting(pack_sighting(sighting))
    assert back == sighting
    assert type(back.tlp) is Tlp

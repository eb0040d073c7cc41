"""Deterministic ids: the project namespace for indicators, STIX 2.1 section 2.9 for SCOs (checked against stix2)."""

import uuid

import pytest
import stix2.v21 as stix
from hypothesis import given, settings
from hypothesis import strategies as st
from stix2.canonicalization.Canonicalize import canonicalize

from exchange.errors import InvalidObject
from exchange.normalize.ids import NAMESPACE, SCO_NAMESPACE, _jcs, indicator_id, sco_for, sco_id, uuid5_text
from exchange.normalize.patterns import canonical_pattern, pattern_for
from exchange.normalize.values import ValueKind

K = ValueKind
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
MD5 = "cead3f77f6cda6ec00f57d76c9a6879f"


def test_namespace_is_the_projects_own() -> None:
    assert NAMESPACE != SCO_NAMESPACE  # STIX 2.1 section 2.9 reserves the OASIS namespace for SCO ids
    assert str(SCO_NAMESPACE) == "00abedb4-aa42-466c-9c01-fed23315a9b7"
    assert NAMESPACE.version == 4


def test_indicator_ids_are_fixed_forever() -> None:
    # Golden values: if this fails, the namespace or the canonical text changed, and with them every indicator
    # id a federation of hubs has already exchanged.
    pattern = canonical_pattern("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = "
                                "'198.51.100.7']")  # fmt: skip
    assert pattern == "[ipv4-addr:value = '198.51.100.7']"
    assert indicator_id(pattern) == "indicator--0260db04-20f0-5e5e-bf04-4bed962023dc"
    assert indicator_id(pattern_for(K.SHA256, SHA256.upper())) == "indicator--d646a977-c115-5eeb-8d2c-e86b14c84411"


def test_indicator_id_is_uuid5_of_the_pattern() -> None:
    id_ = indicator_id("[domain-name:value = 'example.com']")
    prefix, _, value = id_.partition("--")
    assert prefix == "indicator"
    assert uuid.UUID(value).version == 5
    assert uuid.UUID(value) == uuid.uuid5(NAMESPACE, "[domain-name:value = 'example.com']")
    assert indicator_id("[domain-name:value = 'example.org']") != id_


@pytest.mark.parametrize(
    ("kind", "spellings", "reference"),
    [
        (K.IPV4, ["198.51.100.7", "198.51.100.7/32"], stix.IPv4Address(value="198.51.100.7")),
        (K.IPV4_CIDR, ["10.1.2.3/8"], stix.IPv4Address(value="10.0.0.0/8")),
        (K.IPV6, ["2001:DB8::1", "2001:0db8:0:0:0:0:0:1"], stix.IPv6Address(value="2001:db8::1")),
        (K.DOMAIN, ["Bücher.Example.", "xn--bcher-kva.example"], stix.DomainName(value="xn--bcher-kva.example")),
        (K.URL, ["HTTP://Example.com:80"], stix.URL(value="http://example.com/")),
        (K.EMAIL, ["Jo@EXAMPLE.com"], stix.EmailAddress(value="Jo@example.com")),
        (K.MD5, [MD5.upper()], stix.File(hashes={"MD5": MD5})),
        (K.SHA256, [SHA256.upper()], stix.File(hashes={"SHA-256": SHA256})),
    ],
)  # fmt: skip
def test_sco_ids_match_stix2_for_every_spelling(kind: ValueKind, spellings: list[str], reference: object) -> None:
    for raw in spellings:
        assert sco_id(*sco_for(kind, raw)) == reference.id  # type: ignore[attr-defined]


REFERENCE_SCOS = [
    stix.File(hashes={"SHA-256": SHA256, "MD5": MD5}, name="evil.exe"),
    stix.File(hashes={"SHA-1": "a" * 40, "SHA-256": SHA256}),
    stix.File(name="Rechnung_Ä.pdf", parent_directory_ref="directory--5b0c8a0b-0c1a-5b6a-9d7c-a2f3e1c0d9b8"),
    stix.File(name="x.bin", extensions={"windows-pebinary-ext": {"pe_type": "exe", "number_of_sections": 2,
              "sections": [{"name": ".text", "entropy": 7.0}, {"name": ".data", "entropy": 1.5e-7}]}}),
    stix.Artifact(payload_bin="SGVsbG8="),
    stix.AutonomousSystem(number=64496),
    stix.Directory(path="C:\\Windows\\System32"),
    stix.EmailMessage(is_multipart=False, subject="Conference Info",
                      from_ref="email-addr--2d77a846-6264-5d51-b586-e43822ea1ea3"),
    stix.MACAddress(value="aa:bb:cc:dd:ee:ff"),
    stix.Mutex(name="Global\\evil"),
    stix.NetworkTraffic(protocols=["tcp", "ipv4"], dst_port=443, src_port=51234,
                        dst_ref="ipv4-addr--0198f97b-e65d-5025-87e5-58bc39d4bdb4"),
    stix.Software(name="Word", vendor="Microsoft", version="2002", cpe="cpe:2.3:a:microsoft:word:2002:*:*:*:*:*:*:*"),
    stix.UserAccount(account_type="unix", user_id="1007", account_login="Peter"),
    stix.WindowsRegistryKey(key="HKEY_LOCAL_MACHINE\\foo\\bar", values=[{"name": "Run", "data": "x.exe"}]),
    stix.X509Certificate(hashes={"SHA-256": SHA256}, serial_number="4c:0b:1d:19"),
]  # fmt: skip


@pytest.mark.parametrize("reference", REFERENCE_SCOS, ids=lambda o: o.type)
def test_sco_ids_match_stix2_for_every_type(reference: object) -> None:
    properties = {k: v for k, v in reference.items()}  # type: ignore[attr-defined]
    properties = _plain(properties)
    assert sco_id(reference.type, properties) == reference.id  # type: ignore[attr-defined]


def _plain(value: object) -> object:
    # stix2 objects hold their own property types; sco_id takes the plain JSON values a hub decodes.
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}  # type: ignore[union-attr]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_hash_choice_follows_section_2_9() -> None:
    both = {"hashes": {"SHA-256": SHA256, "MD5": MD5}}
    assert sco_id("file", both) == sco_id("file", {"hashes": {"MD5": MD5}})
    assert sco_id("file", {"hashes": {"SHA-512": "b" * 128, "SHA-1": "a" * 40}}) == sco_id(
        "file", {"hashes": {"SHA-1": "a" * 40}}
    )
    # no preferred algorithm: the same id whatever order the sender wrote the dictionary in
    one = sco_id("file", {"hashes": {"TLSH": "T1AB", "SSDEEP": "3:a:b"}})
    assert one == sco_id("file", {"hashes": {"SSDEEP": "3:a:b", "TLSH": "T1AB"}})
    assert one == stix.File(hashes={"SSDEEP": "3:a:b"}).id


@pytest.mark.parametrize(
    ("sco_type", "properties", "message"),
    [
        ("process", {"pid": 4}, "no deterministic id"),
        ("x-custom", {"value": "a"}, "no deterministic id"),
        ("ipv4-addr", {"resolves_to_refs": []}, "none of its ID contributing properties"),
        ("file", {"hashes": {}}, "non-empty"),
        ("ipv4-addr", {"value": {1, 2}}, "cannot be part"),
        ("file", {"name": "x", "extensions": {"a": float("nan")}}, "NaN"),
    ],
)
def test_sco_id_refusals(sco_type: str, properties: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidObject, match=message):
        sco_id(sco_type, properties)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_jcs_matches_the_stix2_canonicalizer(value: object) -> None:
    assert _jcs(value) == canonicalize(value, utf8=False)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip() == s))
def test_file_name_ids_match_stix2(name: str) -> None:
    assert sco_id("file", {"name": name}) == stix.File(name=name).id


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses())
def test_address_ids_match_stix2(addr: object) -> None:
    kind = K.IPV4 if addr.version == 4 else K.IPV6  # type: ignore[attr-defined]
    sco_type, properties = sco_for(kind, str(addr))
    reference = (stix.IPv4Address if kind is K.IPV4 else stix.IPv6Address)(value=properties["value"])
    assert sco_id(sco_type, properties) == reference.id


@given(st.text(max_size=300), st.uuids())
def test_uuid5_text_is_uuid5(name: str, namespace: uuid.UUID) -> None:
    # The id is edited in hex text for speed; the standard library's uuid5 is the reference.
    assert uuid5_text(namespace.bytes, name) == str(uuid.uuid5(namespace, name))

"""The pure core: STIX timestamps and record headers, TAXII query parsing, signed cursors, media types."""

import hashlib
import os
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import InvalidObject, InvalidRequest, NotAcceptable, UnsupportedMediaType
from exchange.model import stix, timestamps
from exchange.model.stix import UNVERSIONED, read_record
from exchange.model.timestamps import format_timestamp, now_micros, parse_timestamp
from exchange.store.base import VersionMatch
from exchange.taxii.cursor import CursorCodec, load_cursor_key
from exchange.taxii.media import TAXII_JSON, check_accept, check_content_type
from exchange.taxii.query import Endpoint, fingerprint, parse_query

YEAR_1000 = -30_610_224_000_000_000  # 1000-01-01T00:00:00Z in microseconds
YEAR_10000 = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z

# --- timestamps ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "micros"), [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:00.000001Z", 1),
    ("1969-12-31T23:59:59.999999Z", -1),
    ("2026-01-01T00:00:00.123Z", 1_767_225_600_123_000),
    ("2026-01-01T00:00:00.1234567891Z", 1_767_225_600_123_456),  # beyond microseconds: truncated
    ("2024-02-29T12:00:00Z", 1_709_208_000_000_000),
])
def test_parse_timestamp(text: str, micros: int) -> None:
    assert parse_timestamp(text) == micros


def test_format_timestamp_always_gives_microseconds() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_767_225_600_123_000) == "2026-01-01T00:00:00.123000Z"
    assert format_timestamp(-1) == "1969-12-31T23:59:59.999999Z"


@given(st.integers(min_value=YEAR_1000, max_value=YEAR_10000 - 1))
def test_format_then_parse_round_trips(micros: int) -> None:
    text = format_timestamp(micros)
    assert len(text) == 27 and text.endswith("Z")
    assert parse_timestamp(text) == micros


@given(st.datetimes(min_value=datetime(1000, 1, 1)))
def test_parse_then_format_round_trips(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}Z"
    assert format_timestamp(parse_timestamp(text)) == text


def test_years_before_1000_are_zero_padded() -> None:
    micros = parse_timestamp("0999-01-01T00:00:00Z")
    assert format_timestamp(micros) == "0999-01-01T00:00:00.000000Z"
    assert parse_timestamp(format_timestamp(micros)) == micros


def test_now_is_close_to_the_wall_clock() -> None:
    assert abs(now_micros() - time.time_ns() // 1000) < 5_000_000


@pytest.mark.parametrize("text", [
    "yesterday", "", "2026-13-45T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z",
    "2026-01-01T00:60:00Z", "2026-01-01T00:00:00", "2026-01-01 00:00:00Z", "2026-01-01T00:00:00+00:00",
    "2026-01-01T00:00:00.Z", "2026-01-01", "26-01-01T00:00:00Z", "0000-01-01T00:00:00Z", " 2026-01-01T00:00:00Z",
])
def test_invalid_timestamps_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"timestamp|date/time"):
        parse_timestamp(text)


@pytest.mark.parametrize("value", [None, 1_767_225_600, b"2026-01-01T00:00:00Z", ["2026-01-01T00:00:00Z"]])
def test_non_strings_raise_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize("text", ["\uff12\uff10\uff12\uff16-01-01T00:00:00Z", "2026-01-01T00:00:00.\u0661Z",
                                  "2026-01-01T00:00:00Z\n"], ids=["fullwidth", "arabic-indic", "trailing-newline"])
def test_only_the_exact_ascii_form_is_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


# Text near the STIX form: digits, separators and the odd character at every position.
_NEAR_TIMESTAMPS = st.builds(
    lambda digits, cut, noise: (digits[:cut] + noise + digits[cut:]),
    st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    st.integers(min_value=0, max_value=27), st.sampled_from(["", "0", "9", ".", "Z", "T", ":", "-", " ", "\u0661"]),
) | st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,9})?Z?", fullmatch=True)


@given(_NEAR_TIMESTAMPS)
def test_the_fast_reading_agrees_with_the_strict_one(text: str) -> None:
    # parse_timestamp_text checks the form at its separators and leaves the digits to fromisoformat; _parse_strict
    # is the reference (the spec's regex and datetime): both must give the same instant or both refuse.
    try:
        expected: int | None = timestamps._parse_strict(text)
    except ValueError:
        expected = None
    timestamps.parse_timestamp_text.cache_clear()
    try:
        got: int | None = parse_timestamp(text)
    except ValueError:
        got = None
    assert got == expected


# --- STIX record headers --------------------------------------------------------------------------------------------


_TYPE_TEXT = st.sampled_from(["indicator", "x-custom", "a--b", "ab", "indicator-", "Indicator", "", "a" * 251])
_UUID_TEXT = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper()) | st.text("0123456789abcdef-g", max_size=40)


@given(_TYPE_TEXT, _TYPE_TEXT, st.sampled_from(["--", "-", "---", "__"]), _UUID_TEXT)
def test_type_and_id_are_checked_as_the_id_grammar_says(obj_type: str, id_type: str, sep: str, tail: str) -> None:
    # read_record checks the id in cheap steps; the reference is STIX 2.1 section 2.9's grammar as one regex.
    obj_id = f"{id_type}{sep}{tail}"
    match = stix._ID.fullmatch(obj_id)
    valid = match is not None and match.group(1) == obj_type
    obj = {"type": obj_type, "id": obj_id, "spec_version": "2.1", "created": "2026-01-01T00:00:00Z"}
    try:
        read_record(obj)
        accepted = True
    except InvalidObject:
        accepted = False
    assert accepted == valid


def sdo(**overrides: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-03-01T00:00:00.000Z"}
    obj.update(overrides)
    return {k: v for k, v in obj.items() if v is not None}


def test_modified_decides_the_version() -> None:
    record = read_record(sdo())
    assert record.version == parse_timestamp("2026-03-01T00:00:00Z")
    assert (record.id, record.type, record.spec_version, record.revoked) == \
        ("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "indicator", "2.1", False)
    # even a `modified` before `created` (invalid STIX, but not this layer's business) wins
    assert read_record(sdo(modified="2025-01-01T00:00:00Z")).version == parse_timestamp("2025-01-01T00:00:00Z")


def test_created_is_the_version_without_modified() -> None:
    assert read_record(sdo(modified=None)).version == parse_timestamp("2026-01-01T00:00:00Z")


def test_objects_without_timestamps_are_unversioned() -> None:
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
           "value": "198.51.100.3"}
    assert read_record(sco).version == UNVERSIONED == 0


def test_the_body_is_the_object_and_the_hash_covers_it() -> None:
    obj = sdo(revoked=True, labels=["ünïcode"])
    record = read_record(obj)
    assert orjson.loads(record.body) == obj
    assert record.revoked is True
    assert record.content_hash == hashlib.sha256(record.body).digest()[:16]
    assert read_record(sdo(labels=["other"])).content_hash != record.content_hash


def test_custom_types_spec_2_0_and_upper_case_uuids_are_accepted() -> None:
    assert read_record(sdo(type="x-acme-widget", id="x-acme-widget--8E2E2D2B-17D4-4CBF-938F-98EE46B3CD3F")).type == \
        "x-acme-widget"
    assert read_record(sdo(spec_version="2.0")).spec_version == "2.0"


def test_an_sdo_without_spec_version_is_stix_2_0() -> None:
    """STIX 2.0 objects carry no spec_version (only 2.0 bundles do): medallion serves them so, and they were
    rejected as invalid 2.1 until `exchange demo` pulled a 2.0 report from medallion."""
    assert read_record(sdo(spec_version=None)).spec_version == "2.0"


@pytest.mark.parametrize(("obj", "problem"), [
    ("a string", "not a JSON object but str"),
    (42, "not a JSON object but int"),
    ([sdo()], "not a JSON object but list"),
    (None, "not a JSON object"),
    (sdo(type=None), "missing required property 'type'"),
    (sdo(type=""), "missing required property 'type'"),
    (sdo(type=7), "missing required property 'type'"),
    (sdo(type="Indicator"), "invalid 'type'"),
    (sdo(type="ab"), "invalid 'type'"),
    (sdo(type="indicator-"), "invalid 'type'"),
    (sdo(id=None), "missing required property 'id'"),
    (sdo(id=12), "missing required property 'id'"),
    (sdo(id="indicator--not-a-uuid"), "invalid 'id'"),
    (sdo(id="indicator-8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"), "invalid 'id'"),
    (sdo(id="malware--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"), "does not start with its type"),
    (sdo(spec_version=None, created=None, modified=None), "missing required property 'spec_version'"),
    (sdo(spec_version="3.0"), "unsupported 'spec_version'"),
    (sdo(spec_version=2.1), "unsupported 'spec_version'"),
    (sdo(created="yesterday", modified=None), "invalid 'created'"),
    (sdo(modified="2026-13-45T00:00:00Z"), "invalid 'modified'"),
    (sdo(created="2026-02-30T00:00:00Z"), "invalid 'created'"),  # a bad `created` is reported even with `modified`
    (sdo(modified=1767225600), "invalid 'modified'"),
    (sdo(revoked="yes"), "invalid 'revoked'"),
])
def test_invalid_headers_are_rejected_saying_why(obj: Any, problem: str) -> None:
    with pytest.raises(InvalidObject) as caught:
        read_record(obj)
    assert problem in str(caught.value)


@pytest.mark.parametrize("spec_version", [["2.1"], {"v": "2.1"}])
def test_an_unhashable_spec_version_is_an_invalid_object(spec_version: Any) -> None:
    with pytest.raises(InvalidObject, match="spec_version"):
        read_record(sdo(spec_version=spec_version))


def test_an_id_with_a_trailing_newline_is_invalid() -> None:
    with pytest.raises(InvalidObject, match="'id'"):
        read_record(sdo(id="indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f\n"))


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, {"nested": [10**30]}])
def test_an_integer_json_cannot_carry_is_an_invalid_object(value: Any) -> None:
    # orjson's decoder turns such numbers into floats; a dict from another decoder may still hold one.
    with pytest.raises(InvalidObject, match="not serializable as JSON"):
        read_record(sdo(x_number=value))


# --- TAXII query parsing --------------------------------------------------------------------------------------------


def objects_query(params: dict[str, str], **kwargs: Any) -> Any:
    return parse_query(params, Endpoint.OBJECTS, collection_id="coll", **kwargs)


def test_defaults_are_last_version_and_the_default_limit() -> None:
    query = objects_query({}, default_limit=50, max_limit=100)
    assert (query.collection_id, query.limit, query.added_after, query.after_key) == ("coll", 50, None, None)
    assert (query.ids, query.types, query.spec_versions) == ((), (), ())
    assert (query.version_matches, query.version_times) == ((VersionMatch.LAST,), ())


def test_filters_parse_into_typed_values() -> None:
    query = objects_query({
        "added_after": "2026-01-01T00:00:00.5Z", "limit": "7",
        "match[type]": "indicator, malware,indicator",
        "match[id]": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "match[spec_version]": "2.1,2.0",
        "match[version]": "first,2026-02-01T00:00:00Z,last",
    })
    assert query.added_after == parse_timestamp("2026-01-01T00:00:00.5Z")
    assert query.limit == 7
    assert query.types == ("indicator", "malware")  # values OR together; duplicates dropped
    assert query.ids == ("indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",)
    assert query.spec_versions == ("2.1", "2.0")
    assert query.version_matches == (VersionMatch.FIRST, VersionMatch.LAST)
    assert query.version_times == (parse_timestamp("2026-02-01T00:00:00Z"),)


def test_limit_is_clamped_to_the_maximum() -> None:
    assert objects_query({"limit": "100000"}, max_limit=1000).limit == 1000
    assert objects_query({"limit": "1"}).limit == 1


def test_endpoint_defaults_for_versions_delete_and_object() -> None:
    oid = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    versions = parse_query({}, Endpoint.VERSIONS, collection_id="c", object_id=oid)
    assert (versions.ids, versions.version_matches) == ((oid,), (VersionMatch.ALL,))
    delete = parse_query({}, Endpoint.OBJECT_DELETE, collection_id="c", object_id=oid)
    assert delete.version_matches == (VersionMatch.ALL,)
    one = parse_query({"match[version]": "all"}, Endpoint.OBJECT, collection_id="c", object_id=oid)
    assert (one.ids, one.version_matches) == ((oid,), (VersionMatch.ALL,))


@pytest.mark.parametrize(("endpoint", "params", "problem"), [
    (Endpoint.OBJECTS, {"match[colour]": "red"}, "unsupported URL parameter(s) for this endpoint: match[colour]"),
    (Endpoint.OBJECTS, {"limit": "0"}, "'limit' must be a positive integer"),
    (Endpoint.OBJECTS, {"limit": "-1"}, "'limit' must be a positive integer"),
    (Endpoint.OBJECTS, {"limit": "ten"}, "'limit' must be a positive integer"),
    (Endpoint.OBJECTS, {"limit": ""}, "'limit' must be a positive integer"),
    (Endpoint.OBJECTS, {"added_after": "yesterday"}, "'added_after'"),
    (Endpoint.OBJECTS, {"match[type]": "Indicator"}, "not a STIX type name"),
    (Endpoint.OBJECTS, {"match[type]": "indicator,,malware"}, "empty value"),
    (Endpoint.OBJECTS, {"match[id]": "indicator"}, "not a STIX identifier"),
    (Endpoint.OBJECTS, {"match[spec_version]": "2.2"}, "not one of 2.0, 2.1"),
    (Endpoint.OBJECTS, {"match[version]": "latest"}, "'match[version]' takes first, last, all"),
    (Endpoint.OBJECT, {"match[id]": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"}, "match[id]"),
    (Endpoint.VERSIONS, {"match[version]": "all"}, "match[version]"),
    (Endpoint.OBJECT_DELETE, {"limit": "5"}, "limit"),
    (Endpoint.MANIFEST, {"match[type]": ""}, "empty value"),
])
def test_bad_parameters_are_invalid_requests(endpoint: Endpoint, params: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_query(params, endpoint, collection_id="c", object_id="indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
                    if endpoint in (Endpoint.OBJECT, Endpoint.VERSIONS, Endpoint.OBJECT_DELETE) else None)
    assert problem in str(caught.value)


def test_a_superscript_limit_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        objects_query({"limit": "²"})


def test_the_fingerprint_binds_filters_and_endpoint_but_not_the_limit() -> None:
    base = objects_query({"match[type]": "indicator", "limit": "5"})
    assert fingerprint(base, Endpoint.OBJECTS) == fingerprint(objects_query({"match[type]": "indicator"}),
                                                              Endpoint.OBJECTS)
    assert fingerprint(base, Endpoint.OBJECTS) != fingerprint(base, Endpoint.MANIFEST)
    for other in ({"match[type]": "malware"}, {"match[type]": "indicator", "match[version]": "all"},
                  {"match[type]": "indicator", "added_after": "2026-01-01T00:00:00Z"}):
        assert fingerprint(base, Endpoint.OBJECTS) != fingerprint(objects_query(other), Endpoint.OBJECTS)
    elsewhere = parse_query({"match[type]": "indicator"}, Endpoint.OBJECTS, collection_id="another")
    assert fingerprint(base, Endpoint.OBJECTS) != fingerprint(elsewhere, Endpoint.OBJECTS)


# --- cursors --------------------------------------------------------------------------------------------------------

FINGERPRINT = bytes(range(12))


@given(st.integers(min_value=0, max_value=2**63 - 1), st.binary(min_size=12, max_size=12))
def test_cursor_round_trip(last: int, fp: bytes) -> None:
    codec = CursorCodec(b"k" * 32)
    token = codec.encode(fp, last)
    assert token.isascii() and "=" not in token and "/" not in token and "+" not in token  # URL-safe
    assert codec.decode(token, fp) == last


def test_a_tampered_token_is_rejected() -> None:
    codec = CursorCodec(b"k" * 32)
    token = codec.encode(FINGERPRINT, 1_767_225_600_000_000)
    for index in (0, len(token) // 2, len(token) - 1):
        flipped = token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]
        with pytest.raises(InvalidRequest, match="not issued by this server"):
            codec.decode(flipped, FINGERPRINT)
    with pytest.raises(InvalidRequest):
        codec.decode(token[:-2], FINGERPRINT)


def test_a_token_for_another_query_or_key_is_rejected() -> None:
    codec = CursorCodec(b"k" * 32)
    token = codec.encode(FINGERPRINT, 42)
    with pytest.raises(InvalidRequest, match="different query"):
        codec.decode(token, bytes(12))
    with pytest.raises(InvalidRequest, match="not issued by this server"):
        CursorCodec(b"x" * 32).decode(token, FINGERPRINT)


@pytest.mark.parametrize("garbage", ["", "A", "AAAA", "!!!!", "é", "a" * 5, "%00", "==", "A" * 4000, " "])
def test_garbage_tokens_are_invalid_requests(garbage: str) -> None:
    with pytest.raises(InvalidRequest):
        CursorCodec(b"k" * 32).decode(garbage, FINGERPRINT)


@given(st.text(max_size=200))
def test_no_text_decodes_to_anything_but_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest):
        CursorCodec(b"k" * 32).decode(text, FINGERPRINT)


def test_the_cursor_key_is_private_and_survives_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_cursor_key(data_dir)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(data_dir / "cursor.key").st_mode) == 0o600
    assert load_cursor_key(data_dir) == key
    token = CursorCodec(key).encode(FINGERPRINT, 7)
    assert CursorCodec(load_cursor_key(data_dir)).decode(token, FINGERPRINT) == 7
    assert load_cursor_key(tmp_path / "other") != key


# --- media types ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    None, "", TAXII_JSON, "application/taxii+json", "application/taxii+json; version=2.1", "*/*", "application/*",
    "Application/TAXII+JSON; Version=2.1", "text/html, application/taxii+json;version=2.1;q=0.5",
    'application/taxii+json;version="2.1"',
])
def test_acceptable_accept_headers(header: str | None) -> None:
    check_accept(header)


@pytest.mark.parametrize("header", [
    "text/html", "application/json", "application/stix+json;version=2.1", "application/taxii+json;version=2.0",
    "application/taxii+json;version=2.1;q=0", "*/*;q=0", "text/*",
])
def test_unacceptable_accept_headers(header: str) -> None:
    with pytest.raises(NotAcceptable, match=r"taxii\+json;version=2\.1"):
        check_accept(header)


@pytest.mark.parametrize("header", [TAXII_JSON, "application/taxii+json", "application/taxii+json; version=2.1",
                                    "application/taxii+json;version=2.1;charset=utf-8"])
def test_acceptable_content_types(header: str) -> None:
    check_content_type(header)


@pytest.mark.parametrize("header", [None, "", "application/json", "application/stix+json;version=2.1",
                                    "application/taxii+json;version=2.0", "text/plain", "*/*"])
def test_unsupported_content_types(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(header)

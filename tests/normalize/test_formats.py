"""Format readers: detection, conversion of real fixtures, refanging, rejects, and stix2-validator on every output."""

import contextlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import FrozenInstanceError
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stix2validator import ValidationOptions, validate_instance

from exchange.dedup.claims import Source
from exchange.errors import InvalidObject
from exchange.ingest.processor import ClaimPolicy, derive
from exchange.model.stix import read_record
from exchange.normalize.formats import Format, ReadResult, Reject, detect, read
from exchange.normalize.formats.iocs import read_csv, read_text
from exchange.normalize.formats.stix2x import read_stix2, upgrade_object
from exchange.normalize.ids import indicator_id, sco_id
from exchange.normalize.patterns import canonical_pattern, pattern_for
from exchange.normalize.values import ValueKind

DATA = Path(__file__).parents[1] / "data"
CORPUS = Path(__file__).parents[3] / "shared" / "corpus"  # AGPL/GPL files: read in place, never copied
NOW = "2026-01-02T03:04:05.000Z"
TLP_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"

# fixture -> (detected format, objects by type, number of rejects)
FIXTURES: dict[str, tuple[Format, dict[str, int], int]] = {
    "csv/infoblox-c2_beacon_20230414_iocs.csv": (Format.CSV, {"indicator": 6}, 0),
    # two type=url rows have no scheme ("h9pvs-...com/mysteries-pages/418.html"): not RFC 3986 URLs
    "csv/infoblox-vault_viper_20251016.csv": (Format.CSV, {"indicator": 40}, 2),
    # 31 Filename rows (no such indicator kind here) and 5 schemeless URL rows
    "csv/unit42-MuddyWater.csv": (Format.CSV, {"indicator": 330}, 36),
    "misp/dad88707-beb8-4a14-94e2-5ffecf5a5f85.json": (Format.MISP, {
        "identity": 1, "report": 1, "observed-data": 6, "domain-name": 6, "indicator": 6, "relationship": 6,
        "marking-definition": 1}, 0),
    # misp-stix's own output fails the validator thrice: two schemeless url SCOs, one punycode label that
    # the validator's idn-hostname check refuses
    "misp/2dc45085-7f6b-48ee-b726-400a326ad9b5.json": (Format.MISP, {
        "identity": 1, "report": 1, "observed-data": 42, "file": 1, "indicator": 42, "domain-name": 30,
        "network-traffic": 8, "ipv4-addr": 8, "relationship": 42, "marking-definition": 1}, 3),
    "misp/circl-osint-2016-xorist.json": (Format.MISP, {
        "identity": 1, "report": 1, "observed-data": 7, "url": 2, "x-misp-attribute": 2, "file": 4, "indicator": 5,
        "windows-registry-key": 1, "relationship": 5, "marking-definition": 1}, 0),
    "misp/misp-stix-test_events_collection_1.json": (Format.MISP, {
        "identity": 1, "grouping": 2, "observed-data": 2, "autonomous-system": 1, "domain-name": 1, "indicator": 1,
        "relationship": 1}, 0),
    "misp/misp-stix-test_objects_collection_1.json": (Format.MISP, {
        "observed-data": 2, "email-message": 1, "email-addr": 2, "indicator": 2, "file": 1, "directory": 1,
        "relationship": 2}, 0),
    "stix1/command-and-control-ip-list.xml": (Format.STIX1, {
        "ipv4-addr": 3, "autonomous-system": 1, "infrastructure": 1, "relationship": 3, "observed-data": 1}, 0),
    # the elevator makes nothing of the TTP (its errors 415, 604 and 602 are rejects) and leaves the "indicates"
    # relationship without target_ref: rejected, the indicator kept
    "stix1/indicator-for-c2-ip-address.xml": (Format.STIX1, {"indicator": 1}, 4),
    "stix1/python-stix-sample.xml": (Format.STIX1, {"indicator": 1}, 1),  # a report with no object_refs
    # MISP's STIX 1.x exports: every event a package under the outer package's Related_Packages
    "stix1/pymisp-stix1.xml": (Format.STIX1, {
        "identity": 2, "incident": 1, "ipv4-addr": 1, "observed-data": 1, "relationship": 1, "report": 1}, 0),
    # an AS observable the elevator turns into observed-data without objects: rejected by the validator
    "stix1/misp-stix-test_events_collection_stix12.xml": (Format.STIX1, {
        "identity": 11, "incident": 4, "relationship": 4, "report": 4, "indicator": 3}, 1),
    "stix20/unit42-test.json": (Format.STIX20, {
        "report": 1, "attack-pattern": 3, "indicator": 2, "relationship": 3}, 0),
    # DIRTY upstream: its campaign has last_seen 1970-01-01, before first_seen
    "stix20/unit42-Zeppelin_TA.json": (Format.STIX20, {
        "report": 1, "attack-pattern": 9, "course-of-action": 19, "indicator": 38, "relationship": 89}, 1),
    "stix20/pymisp-stix2.json": (Format.STIX20, {
        "identity": 1, "report": 1, "ipv4-addr": 1, "network-traffic": 1, "observed-data": 1}, 0),
    "stix20/misp-stix-test_events_collection_stix20.json": (Format.STIX20, {
        "identity": 1, "report": 4, "autonomous-system": 1, "observed-data": 4, "domain-name": 2, "indicator": 3,
        "relationship": 3, "ipv4-addr": 1, "file": 1}, 0),
    "stix21/misp-stix-test_events_collection_stix21.json": (Format.STIX21, {
        "identity": 1, "grouping": 4, "observed-data": 4, "autonomous-system": 1, "domain-name": 2, "indicator": 3,
        "relationship": 3, "ipv4-addr": 1, "file": 1}, 0),
    "text/unit42-Skimmer_IOC.txt": (Format.TEXT, {"indicator": 108}, 0),
    # 174 ip[:port]/domain trails, 110 distinct hosts; the 63 rejects are URL paths without a host
    "text/maltrail-elf_kaiten.txt": (Format.TEXT, {"indicator": 110}, 63),
    # free text: 74 lines of prose, file paths and "GET /path" requests hold no IOC; lines such as
    # "- cstleadapt3[.]com - 188.119.112[.]45" hold two
    "text/unit42-2020-12-11-TA551-IOCs-for-IcedID.txt": (Format.TEXT, {"indicator": 88}, 74),
}

# stix2-validator 3.2.0 options. Indicators the hub authors (CSV, text) are checked strict, with custom types and
# properties flagged too; only check 103 is off: its ids are UUIDv5 of the canonical pattern by design (DESIGN.md,
# "Deterministic ids make hubs converge"), where 103 wants UUIDv4.
AUTHORED = ValidationOptions(version="2.1", strict=True, strict_types=True, strict_properties=True, disabled="103")
# Objects that carry third-party content (STIX 2.x passed through or upgraded, misp-stix, stix2-elevator) are
# checked strict too, minus the SHOULDs that content breaks and a converter must not rewrite: 103 (UUIDv5 SCO
# ids; MISP uuids), 121 kill-chain naming (misp-stix's "misp-category"), 202 relationship types, 214/227 vocabulary
# values STIX 1.x had, 301 network-traffic without ports (MISP ip-dst), 302 external references without hashes,
# 303 indicators without name/description, 401 custom x_ properties instead of extensions (deprecated, still
# allowed). strict_types stays off: 3.2.0's types_strict compares top-level SCOs against the SDO list only and
# flags every ipv4-addr; strict_properties stays off for the same x_ properties as 401.
THIRD_PARTY = ValidationOptions(version="2.1", strict=True, disabled="103,121,202,214,227,301,302,303,401")


@cache
def converted(fixture: str) -> ReadResult:
    path = DATA / fixture
    return read(path.read_bytes(), name=path.name, now=NOW)


def data(fixture: str) -> bytes:
    return (DATA / fixture).read_bytes()


def canonical_indicator_patterns(objects: list[dict[str, Any]]) -> set[str]:
    """Canonical patterns of the indicators; those canonical_pattern refuses are left out, as the hub would."""
    patterns = set()
    for obj in objects:
        if obj["type"] == "indicator":
            with contextlib.suppress(InvalidObject):
                patterns.add(canonical_pattern(obj["pattern"]))
    return patterns


# --- detection ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES)
def test_detects_each_fixture(fixture: str) -> None:
    assert detect(data(fixture), fixture) is FIXTURES[fixture][0]


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"type": "bundle", "id": "bundle--1", "spec_version": "2.0", "objects": []}', Format.STIX20),
    (b'{"more": false, "objects": [{"type": "ipv4-addr", "id": "x", "value": "1.2.3.4"}]}', Format.STIX21),
    (b'[{"type": "indicator", "spec_version": "2.1", "id": "indicator--x"}]', Format.STIX21),
    (b'{"type": "indicator", "id": "indicator--x", "created": "2020-01-01T00:00:00Z"}', Format.STIX20),
    (b'{"response": [{"Event": {"info": "x"}}]}', Format.MISP),
    (b'{"info": "bare event", "Attribute": []}', Format.MISP),
    (b'[{"Event": {"info": "a"}}, {"Event": {"info": "b"}}]', Format.MISP),
    (b"\xef\xbb\xbf<?xml version='1.0'?><stix:STIX_Package xmlns:stix='http://stix.mitre.org/stix-1'/>", Format.STIX1),
    (b"<html><body>not stix</body></html>", Format.TEXT),
    (b"# feed\nIndicator;Type;Comment\nevil.com;domain;c2\n", Format.CSV),
    (b"IP\tfirst_seen\n198.51.100.7\t2024-01-01\n", Format.CSV),
    (b"evil.com\n198.51.100.7\n", Format.TEXT),
    (b"; Spamhaus DROP\n1.10.16.0/20 ; SBL256894\n", Format.TEXT),
])
def test_detects_by_content(content: bytes, expected: Format) -> None:
    assert detect(content) is expected


def test_only_a_json_file_that_does_not_parse_stays_json() -> None:
    broken = b'{"type": "bundle", "objects": ['
    assert detect(broken, "feed.json") is detect(broken, "FEED.JSON") is Format.STIX21  # its reject names the line
    assert detect(b'{"Event": {"info": ', "event.json") is Format.MISP
    # A first "[" or "{" alone does not make JSON: STIX patterns and IOC lists start with one too.
    patterns = data("stix2-patterns-spec_examples_v21.txt")
    assert patterns.startswith(b"[") and detect(patterns, "spec_examples_v21.txt") is Format.TEXT
    listed = b"{evil.com}\n198.51.100.7\n"
    assert detect(listed, "list.txt") is detect(listed) is Format.TEXT
    result = read(listed, name="list.txt", now=NOW)
    assert [o["pattern"] for o in result.objects] == ["[ipv4-addr:value = '198.51.100.7']"]
    assert [(r.where, r.message) for r in result.rejects] == [
        ("list.txt:1", "cannot tell what kind of indicator '{evil.com}' is")]
    assert read(b"[2001:db8::1]:443\n", name="c2.txt", now=NOW).objects[0]["pattern"] == (
        "[ipv6-addr:value = '2001:db8::1']")
    # An explicit format still means what it says.
    assert read(listed, Format.STIX21, "list.txt").rejects[0].message.startswith("not valid JSON")


# --- conversion of the real fixtures -------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_converts_with_expected_counts(fixture: str) -> None:
    _, types, rejects = FIXTURES[fixture]
    result = converted(fixture)
    assert dict(Counter(obj["type"] for obj in result.objects)) == types
    assert len(result.rejects) == rejects, result.rejects
    assert all(obj.get("spec_version", "2.1") == "2.1" for obj in result.objects)
    assert all(obj["pattern_type"] == "stix" and "valid_from" in obj
               for obj in result.objects if obj["type"] == "indicator")


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_object_passes_stix2_validator(fixture: str) -> None:
    authored = FIXTURES[fixture][0] in (Format.CSV, Format.TEXT)
    options = AUTHORED if authored else THIRD_PARTY
    failures = {}
    for obj in converted(fixture).objects:
        results = validate_instance(obj, options)
        if not results.is_valid:
            failures[obj["id"]] = [str(error) for error in results.errors]
    assert not failures


def test_infoblox_csv_and_its_misp_feed_twin_give_the_same_indicators() -> None:
    for csv_name, misp_name, patterns in [
        ("infoblox-c2_beacon_20230414_iocs.csv", "dad88707-beb8-4a14-94e2-5ffecf5a5f85.json", 6),
        # MISP ip-dst becomes network-traffic:dst_ref patterns, which canonicalize to [ipv4-addr:value = ...]
        ("infoblox-vault_viper_20251016.csv", "2dc45085-7f6b-48ee-b726-400a326ad9b5.json", 40),
    ]:
        from_csv = converted(f"csv/{csv_name}").objects
        from_misp = canonical_indicator_patterns(converted(f"misp/{misp_name}").objects)
        assert {obj["pattern"] for obj in from_csv} == from_misp
        assert len(from_misp) == patterns
        # so the deterministic ids meet too: the CSV indicators already carry them
        assert {obj["id"] for obj in from_csv} == {indicator_id(p) for p in from_misp}


def test_a_misp_stix1_export_meets_the_misp_events_it_was_made_of() -> None:
    # misp-stix's STIX 1.2 export of the two events: the elevator reads each event's package (Related_Packages)
    from_stix1 = canonical_indicator_patterns(converted("stix1/misp-stix-test_events_collection_stix12.xml").objects)
    from_misp = set().union(*(canonical_indicator_patterns(converted(f"misp/misp-stix-test_events_collection_{n}.json")
                                                            .objects) for n in (1, 2)))
    # the domain and the file name meet; the domain-ip object is two observations in STIX 1.x, one in misp-stix's
    assert {"[domain-name:value = 'circl.lu']", "[file:name = 'test_file_name']"} <= from_stix1 & from_misp
    assert len(from_stix1) == 3


def test_stix1_says_why_a_package_made_nothing() -> None:
    empty = read(b"<stix:STIX_Package xmlns:stix='http://stix.mitre.org/stix-1' id='x:Package-1' version='1.2'>"
                 b"<stix:STIX_Header><stix:Title>t</stix:Title></stix:STIX_Header></stix:STIX_Package>",
                 Format.STIX1, "e.xml", now=NOW)
    assert not empty.objects
    assert [r.message for r in empty.rejects][:1] == ["stix2-elevator made no STIX 2.1 objects of it"]
    assert any(r.message.startswith("[208] ") for r in empty.rejects[1:])  # the elevator's own reason


def test_stix2_objects_passed_on_must_conform_as_converted_ones_do() -> None:
    ind = {"type": "indicator", "spec_version": "2.1", "id": "indicator--6b4a4c0e-9a5b-4f2f-8a53-8d1b8f0c3a01",
           "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", "pattern_type": "stix",
           "pattern": "[domain-name:value = 'evil.example']", "valid_from": "2024-01-01T00:00:00Z"}
    malware = {"type": "malware", "spec_version": "2.1", "id": "malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
               "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", "name": "x",
               "is_family": True}
    rel = {"type": "relationship", "spec_version": "2.1", "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fad",
           "created": "2024-01-01T00:00:00Z", "modified": "2024-01-01T00:00:00Z", "relationship_type": "indicates",
           "source_ref": ind["id"], "target_ref": malware["id"]}
    headless = {**rel, "id": "relationship--44298a74-ba52-4f0c-87a3-1824e67d7fae"}
    del headless["target_ref"]
    result = read(json.dumps({"type": "bundle", "id": "bundle--44298a74-ba52-4f0c-87a3-1824e67d7faf",
                              "objects": [ind, malware, rel, headless]}).encode(), Format.STIX21, "b.json")
    assert [o["id"] for o in result.objects] == [ind["id"], malware["id"], rel["id"]]
    assert [r.where for r in result.rejects] == ["b.json:objects[3]"]
    assert result.rejects[0].message.startswith(headless["id"]) and "target_ref" in result.rejects[0].message
    # whole-second times are written to the millisecond, as STIX 2.1 requires: the same instant
    assert (result.objects[1]["created"], result.objects[1]["modified"]) == ("2024-01-01T00:00:00.000Z",) * 2


def test_stix20_upgrade_meets_misp_stix_own_stix21() -> None:
    # misp-stix's conversion of the same two MISP events, once as STIX 2.0 and once as STIX 2.1
    v20 = converted("stix20/misp-stix-test_events_collection_stix20.json").objects
    v21 = converted("stix21/misp-stix-test_events_collection_stix21.json").objects
    assert canonical_indicator_patterns(v20) == canonical_indicator_patterns(v21)
    assert len(canonical_indicator_patterns(v20)) == 3

    def values(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(obj["type"], str(obj.get("value", obj.get("number", obj.get("name"))))) for obj in objects
                if obj["type"] in ("domain-name", "ipv4-addr", "autonomous-system", "file")}

    assert values(v20) == values(v21)


def test_misp_collections_meet_misp_stix_reference_bundle() -> None:
    both = [*converted("misp/misp-stix-test_events_collection_1.json").objects,
            *converted("misp/misp-stix-test_events_collection_2.json").objects]
    reference = converted("stix21/misp-stix-test_events_collection_stix21.json").objects
    assert canonical_indicator_patterns(both) == canonical_indicator_patterns(reference)


# --- CSV and text -------------------------------------------------------------------------------------------------

def test_defanged_values_refang() -> None:
    text = b"hxxp://evil[.]com\nbob[@]example[.]com\n198[.]51[.]100[.]7\nevil(dot)org\nhXXps[:]//a[.]example/x?q=1\n"
    result = read_text(text, "list.txt", now=NOW)
    assert not result.rejects
    assert [obj["pattern"] for obj in result.objects] == [
        "[url:value = 'http://evil.com/']",
        "[email-addr:value = 'bob@example.com']",
        "[ipv4-addr:value = '198.51.100.7']",
        "[domain-name:value = 'evil.org']",
        "[url:value = 'https://a.example/x?q=1']",
    ]


def test_ioc_fanger_pairs_meet_their_fanged_forms() -> None:
    pairs = json.loads(data("text/ioc_fanger-defang_to_fang_pairs.json"))["DEFANG_TO_FANG_PAIRS"]
    defanged = read_text("\n".join(d for d, _ in pairs).encode(), now=NOW)
    fanged = read_text("\n".join(f for _, f in pairs).encode(), now=NOW)
    # "bad-dot-com" -> "bad.com" and friends are typeable after refanging; no pair may be lost or differ
    assert {o["pattern"] for o in defanged.objects} == {o["pattern"] for o in fanged.objects}
    assert len(defanged.objects) >= 10
    assert [r.where for r in defanged.rejects] == [r.where for r in fanged.rejects]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=20))
def test_defanged_ipv4_lists_yield_one_indicator_per_address(addresses: list[Any]) -> None:
    text = "\n".join(str(address).replace(".", "[.]") for address in addresses).encode()
    result = read_text(text, now=NOW)
    assert not result.rejects
    assert {obj["pattern"] for obj in result.objects} == {pattern_for(ValueKind.IPV4, str(a)) for a in addresses}


def test_rejects_carry_file_and_line() -> None:
    text = b"# comment line\n\nevil.com\nnot an ioc\n  \n198.51.100.300\n"
    result = read_text(text, "feed.txt", now=NOW)
    assert [obj["name"] for obj in result.objects] == ["evil.com"]
    assert [r.where for r in result.rejects] == ["feed.txt:4", "feed.txt:6"]
    assert "cannot tell what kind of indicator 'not'" in result.rejects[0].message

    csv = b"Indicator,Type,Classification\nevil.com,domain,c2\n1.2.3.4,domain,c2\nabc,hash,x\nx.exe,filename,y\n"
    result = read_csv(csv, "feed.csv", now=NOW)
    assert [obj["name"] for obj in result.objects] == ["evil.com"]
    assert [(r.where, r.message) for r in result.rejects] == [
        ("feed.csv:3", "'1.2.3.4' is listed as 'domain' but looks like ipv4"),
        ("feed.csv:4", "'abc' is listed as 'hash' but has no recognizable shape"),
        ("feed.csv:5", "indicator type 'filename' is not one the hub handles (IPs, CIDRs, domains, URLs, "
                       "e-mail addresses, MD5/SHA-1/SHA-256/SHA-512 hashes)"),
    ]
    assert converted("csv/infoblox-vault_viper_20251016.csv").rejects[0].where == "infoblox-vault_viper_20251016.csv:34"


def test_csv_row_becomes_an_indicator_with_labels_and_dates() -> None:
    indicator = converted("csv/infoblox-c2_beacon_20230414_iocs.csv").objects[0]
    pattern = "[domain-name:value = 'claudfront.net']"
    assert indicator == {
        "type": "indicator", "spec_version": "2.1", "id": indicator_id(pattern), "created": NOW, "modified": NOW,
        "name": "claudfront.net", "description": "domain listed in infoblox-c2_beacon_20230414_iocs.csv",
        "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": "2023-02-08T00:00:00.000Z", "labels": ["malware"],
    }
    assert canonical_pattern(indicator["pattern"]) == indicator["pattern"]


def test_csv_header_case_delimiters_hints_and_duplicates() -> None:
    csv = (b"# exported\nIP Address;Comment;Tags\n198.51.100.7:443;beacon;apt-x\n10.1.2.3/8;range;\n"
           b"198.51.100.7;seen again;apt-y\n")
    result = read_csv(csv, "t.csv", now=NOW)
    assert not result.rejects
    first, second = result.objects
    assert first["pattern"] == "[ipv4-addr:value = '198.51.100.7']"
    assert first["description"] == "ipv4 listed in t.csv: port 443; beacon"
    assert first["labels"] == ["apt-x", "apt-y"]  # the duplicate row adds its label to the same indicator
    assert second["pattern"] == "[ipv4-addr:value = '10.0.0.0/8']"

    no_header = read_csv(b"evil.com,c2\n", "x.csv")
    assert [r.where for r in no_header.rejects] == ["x.csv:1"] and not no_header.objects


def test_text_list_quirks() -> None:
    text = (b"; Spamhaus-style comment\n- 2a06:e480::/29 ; SBL1\n* evil.example # trailing\n"
            b"4d88b3d8b58a07aefb26814add372f780f8e76bdda4092e4e48db3f865ae8902  adjure.12.20.doc\n"
            b"[2001:db8::1]:8443\n")
    result = read_text(text, "t.txt", now=NOW)
    assert not result.rejects
    assert [(o["pattern"], o["description"]) for o in result.objects] == [
        ("[ipv6-addr:value = '2a06:e480::/29']", "ipv6-cidr listed in t.txt: SBL1"),  # ioc-fanger would make "://"
        ("[domain-name:value = 'evil.example']", "domain listed in t.txt: # trailing"),
        ("[file:hashes.'SHA-256' = '4d88b3d8b58a07aefb26814add372f780f8e76bdda4092e4e48db3f865ae8902']",
         "sha256 listed in t.txt: adjure.12.20.doc"),
        ("[ipv6-addr:value = '2001:db8::1']", "ipv6 listed in t.txt: port 8443"),
    ]


def test_every_ioc_on_a_text_line_is_read() -> None:
    text = (b"- cstleadapt3[.]com - 188.119.112[.]45\n8.8.8.8 1.1.1.1\n"
            b"- 188.166.88[.]45 port 443 - lockdowngunni[.]club\n"
            b"[2001:db8::1]:8443 2a06:e480::/29 | 1.2.3[.]4,evil (dot) com;user[@]example.com\n"
            b"hxxp://evil[.]com/a b\nnot an ioc\n")
    result = read_text(text, "t.txt", now=NOW)
    assert [(r.where, r.message) for r in result.rejects] == [
        ("t.txt:6", "cannot tell what kind of indicator 'not' is")]
    found = {(o["name"], o["description"]) for o in result.objects}
    assert found == {
        ("cstleadapt3.com", "domain listed in t.txt"), ("188.119.112.45", "ipv4 listed in t.txt"),
        ("8.8.8.8", "ipv4 listed in t.txt"), ("1.1.1.1", "ipv4 listed in t.txt"),
        # the words between the values are the line's context, for each of them
        ("188.166.88.45", "ipv4 listed in t.txt: port 443"), ("lockdowngunni.club", "domain listed in t.txt: port 443"),
        ("2001:db8::1", "ipv6 listed in t.txt: port 8443"), ("2a06:e480::/29", "ipv6-cidr listed in t.txt"),
        ("1.2.3.4", "ipv4 listed in t.txt"), ("evil.com", "domain listed in t.txt"),
        ("user@example.com", "email listed in t.txt"), ("http://evil.com/a", "url listed in t.txt: b"),
    }


def test_corpus_ta551_c2_addresses_beside_their_domains_are_read() -> None:
    result = converted("text/unit42-2020-12-11-TA551-IOCs-for-IcedID.txt")
    names = {o["name"] for o in result.objects}
    assert {"cstleadapt3.com", "188.119.112.45", "xwfluid5.com", "45.140.146.32"} <= names
    assert sum(name.count(".") == 3 and name.replace(".", "").isdigit() for name in names) == 15  # 12 C2, 3 HTTPS


def test_a_url_in_text_is_read_whole_and_never_becomes_another_url() -> None:
    result = read_text(b"http://example,com/\nhttp://example,com/ 198.51.100.7\nhttp://evil.com/a,b;c, 10.0.0.1\n",
                       "t.txt", now=NOW)
    assert [o["name"] for o in result.objects] == ["198.51.100.7", "http://evil.com/a,b;c", "10.0.0.1"]
    assert [r.where for r in result.rejects] == ["t.txt:1", "t.txt:2"]
    assert all("'example,com'" in r.message for r in result.rejects)


def test_overlong_lines_are_rejected_with_an_excerpt() -> None:
    long_value = "a" * 131_070 + ".com"
    text = f"{long_value}\nevil.com\n".encode()
    for result in (read_text(text, "t.txt", now=NOW), read(text, name="t.txt", now=NOW)):
        assert [o["name"] for o in result.objects] == ["evil.com"]
        (reject,) = result.rejects
        assert reject.where == "t.txt:1"
        assert reject.message.startswith("line of 131,074 characters, longer than the 65,536")
        assert reject.message.endswith("'" + "a" * 80 + "'…")
    csv = f"indicator,type\nevil.com,domain\n{long_value},domain\n".encode()
    for result in (read_csv(csv, "t.csv", now=NOW), read(csv, name="t.csv", now=NOW)):
        assert [o["name"] for o in result.objects] == ["evil.com"]
        assert [r.where for r in result.rejects] == ["t.csv:3"]
    assert [r.where for r in read_csv(f"{long_value},type\n".encode(), "h.csv").rejects] == ["h.csv:1"]
    # Under the line limit, a value is still quoted only in part.
    too_long = "x" * 300 + ".example"
    bad = read_text(f"http://{too_long}/ 1.2.3.4\n{'q' * 5000}\n".encode(), now=NOW).rejects
    assert len(bad) == 2 and all(len(r.message) < 300 and "…" in r.message for r in bad)
    typed = read_csv(f"indicator,type\n{'b' * 5000},md5\n".encode(), now=NOW).rejects
    assert len(typed[0].message) < 300


def test_utf16_lists_are_decoded_and_other_bytes_refused_once() -> None:
    text = "evil.com\n198.51.100.7\n"
    expected = {o["pattern"] for o in read_text(text.encode(), now=NOW).objects}
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")
        result = read(bom + text.encode(encoding), name="t.txt", now=NOW)
        assert {o["pattern"] for o in result.objects} == expected and not result.rejects, encoding
    assert detect("Indicator,Type\nevil.com,domain\n".encode("utf-16")) is Format.CSV
    assert len(read("Indicator,Type\nevil.com,domain\n".encode("utf-16"), now=NOW).objects) == 1
    for data_, where, message in [
        (text.encode("utf-16-le"), "t.txt:1", "not UTF-8 text: it holds NUL bytes"),
        ("evil.com\n# café\n198.51.100.7\n".encode("latin-1"), "t.txt:2", "not UTF-8 text: byte 0xe9"),
    ]:
        for result in (read(data_, name="t.txt", now=NOW), read_csv(data_, "t.txt", now=NOW)):
            assert not result.objects
            assert [r.where for r in result.rejects] == [where]
            assert result.rejects[0].message.startswith(message)


# --- STIX 2.x -----------------------------------------------------------------------------------------------------

def test_stix21_objects_pass_through_unchanged() -> None:
    bundle = json.loads(data("stix21/misp-stix-test_events_collection_stix21.json"))
    assert converted("stix21/misp-stix-test_events_collection_stix21.json").objects == bundle["objects"]


def test_stix21_envelope_rejects_bad_items_one_by_one() -> None:
    good = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd",
            "value": "198.51.100.3"}
    envelope = {"more": False, "objects": [
        good, "text", {"id": "x"}, {"type": "indicator", "id": "malware--ff26c055-6336-4bc5-b98d-13d6226742dd"},
        {**good, "spec_version": "3.0"},
        {"type": "campaign", "spec_version": "2.1", "id": "campaign--75478d66-3f26-423b-9d03-8ca1fbe1c6ad",
         "created": "2020-01-02T00:00:00Z", "modified": "2020-01-01T00:00:00Z", "name": "x"},
    ]}
    result = read_stix2(json.dumps(envelope).encode(), "push")
    assert result.objects == [good]
    assert [(r.where, r.message.split(":")[0]) for r in result.rejects] == [
        ("push:objects[1]", "not a JSON object but str"),
        ("push:objects[2]", "missing required property 'type'"),
        ("push:objects[3]", "invalid 'id' 'malware--ff26c055-6336-4bc5-b98d-13d6226742dd'"),
        ("push:objects[4]", "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"),
        ("push:objects[5]", "campaign--75478d66-3f26-423b-9d03-8ca1fbe1c6ad"),
    ]
    assert "'modified' (2020-01-01T00:00:00Z) must be at or after 'created'" in result.rejects[4].message


def test_json_syntax_error_is_rejected_at_its_line() -> None:
    result = read(b'{"type": "bundle",\n "objects": [\n  {"type": }\n]}', name="broken.json")
    assert result.objects == [] and [r.where for r in result.rejects] == ["broken.json:3"]


def test_stix20_upgrade_rules() -> None:
    created = "2019-05-01T10:00:00.000Z"
    indicator = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "created": created,
                 "modified": created, "labels": ["malicious-activity", "apt-x"],
                 "pattern": "[domain-name:value = 'evil.com']", "object_marking_refs": [TLP_GREEN]}
    [upgraded] = upgrade_object(indicator)
    assert upgraded == {**indicator, "spec_version": "2.1", "indicator_types": ["malicious-activity"],
                        "labels": ["apt-x"], "pattern_type": "stix", "valid_from": created}
    assert "spec_version" not in indicator  # the input is not modified

    [malware] = upgrade_object({"type": "malware", "id": "malware--9c2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                                "created": created, "modified": created, "name": "x", "labels": ["ransomware"]})
    assert malware["malware_types"] == ["ransomware"] and malware["is_family"] is False and "labels" not in malware

    [tlp] = upgrade_object({"type": "marking-definition", "id": TLP_GREEN, "created": "2017-01-20T00:00:00.000Z",
                            "definition_type": "tlp", "definition": {"tlp": "green"}})
    assert tlp == {"type": "marking-definition", "spec_version": "2.1", "id": TLP_GREEN,
                   "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp", "name": "TLP:GREEN",
                   "definition": {"tlp": "green"}}


def test_stix20_labels_that_are_not_all_strings_are_rejected_as_labels() -> None:
    # Found by fuzzing: the upgrade looked each label up in a vocabulary set, and a dict among them escaped as
    # "unhashable type" instead of the claim reader's rejection.
    indicator = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                 "created": "2019-05-01T10:00:00.000Z", "modified": "2019-05-01T10:00:00.000Z",
                 "labels": ["malicious-activity", {"x": 1}], "pattern": "[domain-name:value = 'evil.com']"}
    [upgraded] = upgrade_object(indicator)
    assert upgraded["labels"] == indicator["labels"] and "indicator_types" not in upgraded
    with pytest.raises(InvalidObject, match="'labels' must be a list of strings"):
        derive(indicator, read_record(indicator), Source(name="peer"), ClaimPolicy())


def test_stix20_observed_data_becomes_scos_with_deterministic_ids() -> None:
    objects = {obj["type"]: obj for obj in converted("stix20/pymisp-stix2.json").objects}
    ip, traffic, observed = objects["ipv4-addr"], objects["network-traffic"], objects["observed-data"]
    assert ip["id"] == sco_id("ipv4-addr", {"value": "8.8.8.8"})
    assert traffic["src_ref"] == ip["id"]  # the local ref "0" resolved
    assert traffic["id"] == sco_id("network-traffic", {"src_ref": ip["id"], "protocols": ["ipv4"]})
    assert observed["id"] == "observed-data--0853d51f-0fe7-4d35-b3cb-b96bdbc1f0ee"  # SDO ids are kept
    assert observed["object_refs"] == [ip["id"], traffic["id"]] and "objects" not in observed


def test_stix20_observed_data_with_a_dangling_local_ref_is_rejected() -> None:
    observed = {"type": "observed-data", "id": "observed-data--0853d51f-0fe7-4d35-b3cb-b96bdbc1f0ee",
                "created": "2021-08-24T10:53:13.000Z", "modified": "2021-08-24T10:53:13.000Z",
                "first_observed": "2021-08-24T10:53:13Z", "last_observed": "2021-08-24T10:53:13Z",
                "number_observed": 1, "objects": {"0": {"type": "network-traffic", "src_ref": "7"}}}
    result = read_stix2(json.dumps([observed]).encode(), "od.json")
    assert not result.objects
    assert result.rejects == [Reject("od.json:objects[0]", "observed-data--0853d51f-0fe7-4d35-b3cb-b96bdbc1f0ee: "
                                                           "objects['0'] refers to ['7'], not in 'objects'")]


# --- STIX 1.x and MISP failures -----------------------------------------------------------------------------------

def _infoblox_event() -> dict[str, Any]:
    # The MISP twin of the Infoblox CSV (six C2 domains), as its feed publishes it: with its creator organization.
    event: dict[str, Any] = json.loads((DATA / "misp" / "dad88707-beb8-4a14-94e2-5ffecf5a5f85.json").read_bytes())
    return event


def test_a_misp_event_without_its_creator_organization_converts_with_a_note() -> None:
    # misp-stix files a missing Orgc among its errors, but converts every attribute: nothing is rejected.
    complete = read(json.dumps(_infoblox_event()).encode(), Format.MISP, "e.json")
    event = _infoblox_event()
    del event["Event"]["Orgc"]
    result = read(json.dumps(event).encode(), Format.MISP, "e.json")
    assert (complete.rejects, complete.notes, result.rejects) == ([], [], [])
    assert [n.message for n in result.notes] == ["Missing Orgc field."]
    patterns = sorted(o["pattern"] for o in result.objects if o["type"] == "indicator")
    assert len(patterns) == 6 and patterns == sorted(o["pattern"] for o in complete.objects if o["type"] == "indicator")


def test_misp_attributes_that_fail_validation_are_rejects() -> None:
    # pymisp skips an attribute whose value does not validate, and misp-stix files that among its *warnings*.
    event = _infoblox_event()
    bad = event["Event"]["Attribute"][0]
    bad.update(type="ip-dst", value="not-an-ip")
    result = read(json.dumps(event).encode(), Format.MISP, "e.json")
    [reject] = result.rejects
    assert reject.where == f"e.json:{event['Event']['uuid']}"
    assert reject.message == (f"Failed validation for ip-dst Attribute <{bad['uuid']}>: not-an-ip - IP address has "
                              "an invalid format.")
    assert len([o for o in result.objects if o["type"] == "indicator"]) == 5  # the other five still convert


def test_stix1_failures_are_rejects() -> None:
    broken = read(b"<stix:STIX_Package xmlns:stix='http://stix.mitre.org/stix-1'>\n<oops>\n", Format.STIX1, "b.xml")
    assert [r.where for r in broken.rejects] == ["b.xml:3"] and "not well-formed XML" in broken.rejects[0].message
    other = read(b"<feed xmlns='http://www.w3.org/2005/Atom'/>", Format.STIX1, "atom.xml")
    assert other.rejects[0].message.startswith("root element is {http://www.w3.org/2005/Atom}feed")
    path_like = read(str(DATA / "stix1/python-stix-sample.xml").encode(), Format.STIX1, "p")
    assert not path_like.objects  # bytes naming a local file are not read as that file
    assert "not well-formed XML" in path_like.rejects[0].message


def test_misp_input_that_is_not_misp_is_one_reject() -> None:
    result = read(b'[{"Feed": {"name": "x"}}]', Format.MISP, "feeds.json")
    assert not result.objects
    assert result.rejects == [Reject("feeds.json:1", "misp-stix could not convert it: Input does not look like "
                                                     "MISP data.")]


def test_stix1_elevation_is_safe_from_worker_threads() -> None:
    fixtures = ["stix1/command-and-control-ip-list.xml", "stix1/indicator-for-c2-ip-address.xml"] * 3
    alone = [read(data(f), Format.STIX1, f).objects for f in fixtures]
    with ThreadPoolExecutor(max_workers=len(fixtures)) as pool:
        together = list(pool.map(lambda f: read(data(f), Format.STIX1, f).objects, fixtures))

    def shape(results: list[list[dict[str, Any]]]) -> list[list[str]]:
        # the elevator mints random ids for what STIX 1.x left unnamed: compare types and patterns
        return [sorted(f"{o['type']} {o.get('pattern', '')}" for o in objects) for objects in results]

    assert shape(together) == shape(alone)
    # Each document's elevator messages reach its own result, none another thread's (message codes: the texts
    # name the random ids too).
    said_alone = [_codes(read(data(f), Format.STIX1, f)) for f in fixtures]
    with ThreadPoolExecutor(max_workers=len(fixtures)) as pool:
        assert list(pool.map(lambda f: _codes(read(data(f), Format.STIX1, f)), fixtures)) == said_alone


def _codes(result: ReadResult) -> tuple[list[str], list[str]]:
    return ([r.message.split()[0] for r in result.rejects if r.where.endswith(":stix2-elevator")],
            [n.message.split()[0] for n in result.notes])


def test_stix1_elevator_messages_are_rejects_and_notes_not_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # Its errors are content it could not convert; its warnings, conversions with a caveat. Nothing is printed.
    name = "stix1/indicator-for-c2-ip-address.xml"
    result = read(data(name), Format.STIX1, "c2.xml")
    ttp = "example:TTP-bc66360d-a7d1-4d8c-ad1a-ea3a13d62da9"
    elevator = [r.message for r in result.rejects if r.where == "c2.xml:stix2-elevator"]
    assert elevator[0] == f"[415] TTP {ttp} did not generate any STIX 2.x object"
    assert _codes(result) == (["[415]", "[604]", "[602]"], ["[905]", "[903]", "[610]"])
    assert {n.where for n in result.notes} == {"c2.xml:stix2-elevator"}
    assert "[905] Timestamp not available for stix 1x package, using current time" in [n.message for n in result.notes]
    assert capfd.readouterr() == ("", "")
    clean = read(data("stix1/command-and-control-ip-list.xml"), Format.STIX1, "ok.xml")
    assert clean.rejects == [] and _codes(clean)[1] == ["[905]", "[726]", "[419]", "[419]", "[419]"]


# Written for this test: a STIX 1.2 package in which neither the package nor its indicator gives a timestamp.
UNTIMED_STIX1 = b"""<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" xmlns:indicator="http://stix.mitre.org/Indicator-2"
 xmlns:cybox="http://cybox.mitre.org/cybox-2" xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2"
 xmlns:example="http://example.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 id="example:Package-7e1b6b1a-5c3e-4d3f-9f35-0a7c1c2f0b11" version="1.2">
 <stix:Indicators>
  <stix:Indicator xsi:type="indicator:IndicatorType" id="example:indicator-33fe3b22-0201-47cf-85d0-97c02164528e">
   <indicator:Title>C2 address</indicator:Title>
   <indicator:Observable id="example:Observable-1c798262-a4cd-434d-a958-884d6980c45a">
    <cybox:Object id="example:Object-1c798262-a4cd-434d-a958-884d6980c45b">
     <cybox:Properties xsi:type="AddressObj:AddressObjectType" category="ipv4-addr">
      <AddressObj:Address_Value condition="Equals">198.51.100.9</AddressObj:Address_Value>
     </cybox:Properties>
    </cybox:Object>
   </indicator:Observable>
  </stix:Indicator>
 </stix:Indicators>
</stix:STIX_Package>
"""


def test_a_stix1_package_without_timestamps_takes_the_given_time_so_it_converts_the_same_every_time() -> None:
    # The elevator's default is the current time (its note 905), which made each conversion a new version.
    first = read(UNTIMED_STIX1, Format.STIX1, "u.xml", now="2023-04-14T10:00:00.000000Z")
    again = read(UNTIMED_STIX1, Format.STIX1, "u.xml", now="2023-04-14T10:00:00.000000Z")
    [indicator] = first.objects
    assert first.objects == again.objects and first.rejects == []
    assert (indicator["created"], indicator["modified"]) == ("2023-04-14T10:00:00.000Z", "2023-04-14T10:00:00.000Z")
    assert not any(n.message.startswith("[905]") for n in first.notes)
    unstamped = read(UNTIMED_STIX1, Format.STIX1, "u.xml")  # the time is per document, not left behind
    assert unstamped.objects[0]["created"] != indicator["created"]
    assert any(n.message.startswith("[905] Timestamp not available") for n in unstamped.notes)


def test_format_may_be_named_by_its_cli_word() -> None:
    assert read(b"evil.com\n", "text", now=NOW).objects[0]["name"] == "evil.com"
    with pytest.raises(ValueError):
        read(b"", "yaml")


def test_result_records_are_frozen_and_slotted() -> None:
    reject = Reject("f:1", "m")
    with pytest.raises(FrozenInstanceError):
        reject.where = "g"  # type: ignore[misc]
    assert not hasattr(reject, "__dict__") and not hasattr(ReadResult(), "__dict__")


# --- optional: AGPL/GPL corpus files, read in place -----------------------------------------------------------------

corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")


@corpus
def test_corpus_spamhaus_drop_cidrs() -> None:
    result = read((CORPUS / "csv/intelmq-spamhaus-drop.txt").read_bytes(), name="drop.txt", now=NOW)
    assert not result.rejects
    assert [o["pattern"] for o in result.objects] == ["[ipv4-addr:value = '1.4.0.0/17']",
                                                      "[ipv6-addr:value = '2a06:e480::/29']"]


@corpus
def test_corpus_circl_regin_event_validates() -> None:
    result = read((CORPUS / "misp/circl-osint-2014-regin.json").read_bytes(), name="regin.json")
    assert len(result.objects) == 136 and Counter(o["type"] for o in result.objects)["indicator"] == 30
    # one registry key starts with the HKLM abbreviation, which the STIX 2.1 schema forbids
    assert len(result.rejects) == 1 and "windows-registry-key" in result.rejects[0].message
    assert all(validate_instance(obj, THIRD_PARTY).is_valid for obj in result.objects)

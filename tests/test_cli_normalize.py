"""`exchange normalize` (no hub) and `exchange ingest` (into a real hub) from the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from stix2validator import ValidationOptions, validate_instance

from exchange.dedup.merge import PROVENANCE_EXTENSION
from tests.hubs import CANONICAL, PASSWORDS, thread_hub

DATA = Path(__file__).resolve().parent / "data"
CSV = DATA / "csv" / "infoblox-c2_beacon_20230414_iocs.csv"
MISP = DATA / "misp" / "dad88707-beb8-4a14-94e2-5ffecf5a5f85.json"  # the same IOCs as the CSV, as a MISP event
# 103: canonical ids are UUIDv5 on purpose (deterministic), not the v4 the validator recommends.
AUTHORED = ValidationOptions(version="2.1", strict=True, disabled="103")
THIRD_PARTY = ValidationOptions(version="2.1", strict=True, disabled="103,121,202,214,227,301,302,303,401")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exchange", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def indicators(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in bundle["objects"] if o["type"] == "indicator"]


def test_csv_and_its_misp_twin_normalize_into_one_indicator_per_value() -> None:
    alone = run("normalize", str(CSV))
    both = run("normalize", str(CSV), str(MISP))
    assert (alone.returncode, both.returncode) == (0, 0), both.stderr
    single, merged = json.loads(alone.stdout), json.loads(both.stdout)
    assert single["type"] == "bundle" and merged["type"] == "bundle"
    assert {o["id"] for o in indicators(single)} == {o["id"] for o in indicators(merged)}
    assert len(indicators(merged)) == 6  # six C2 domains in both files
    for obj in indicators(merged):
        claims = obj["extensions"][PROVENANCE_EXTENSION]["claims"]
        assert sorted(c["source"] for c in claims) == sorted([str(CSV), str(MISP)]), obj["pattern"]
        result = validate_instance(obj, AUTHORED)
        assert result.is_valid, [str(e) for e in result.errors]
    for obj in merged["objects"]:
        assert validate_instance(obj, THIRD_PARTY).is_valid, obj["id"]


def test_normalize_is_repeatable() -> None:
    first, second = run("normalize", str(CSV), str(MISP)), run("normalize", str(CSV), str(MISP))
    ids = [o["id"] for o in json.loads(first.stdout)["objects"]]
    assert ids == [o["id"] for o in json.loads(second.stdout)["objects"]]
    assert json.loads(first.stdout)["id"] == json.loads(second.stdout)["id"]


def test_notes_do_not_fail_a_run_and_skipped_misp_attributes_do(tmp_path: Path) -> None:
    event = json.loads(MISP.read_bytes())
    del event["Event"]["Orgc"]
    (tmp_path / "no-orgc.json").write_text(json.dumps(event))
    noted = run("normalize", str(tmp_path / "no-orgc.json"))
    assert noted.returncode == 0, noted.stderr
    assert noted.stderr == f"{tmp_path / 'no-orgc.json'}:{event['Event']['uuid']}: note: Missing Orgc field.\n"
    assert len(indicators(json.loads(noted.stdout))) == 6
    event["Event"]["Attribute"][0].update(type="ip-dst", value="not-an-ip")
    (tmp_path / "bad-ip.json").write_text(json.dumps(event))
    rejected = run("normalize", str(tmp_path / "bad-ip.json"))
    assert rejected.returncode == 1
    lines = rejected.stderr.splitlines()  # the note, the reject, and nothing from pymisp's own logger
    assert len(lines) == 2 and lines[0].endswith("note: Missing Orgc field."), lines
    assert "rejected: Failed validation for ip-dst Attribute" in lines[1] and lines[1].endswith("invalid format.")
    assert len(indicators(json.loads(rejected.stdout))) == 5


def test_rejects_name_file_and_line_and_exit_1(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("# a comment\nevil[.]example\nnot a value at all !!\n198.51.100[.]7\n")
    result = run("normalize", "--format", "text", str(feed))
    assert result.returncode == 1
    assert f"{feed}:3" in result.stderr and "rejected" in result.stderr
    patterns = sorted(o["pattern"] for o in indicators(json.loads(result.stdout)))
    assert patterns == ["[domain-name:value = 'evil.example']", "[ipv4-addr:value = '198.51.100.7']"]


def test_an_overlong_line_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("a" * 131_070 + ".com\nevil.example\n")
    for fmt in ("auto", "text"):
        result = run("normalize", "--format", fmt, str(feed))
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"{feed}:1: rejected: line of 131,074 characters") and "Traceback" not in (
            result.stderr)
        assert len(result.stderr) < 300  # an excerpt of the line, not the line
        assert [o["name"] for o in indicators(json.loads(result.stdout))] == ["evil.example"]
    rows = tmp_path / "feed.csv"
    rows.write_text("indicator,type\n" + "a" * 131_070 + ".com,domain\nevil.example,domain\n")
    result = run("normalize", "--format", "csv", str(rows))
    assert result.returncode == 1 and result.stderr.startswith(f"{rows}:2: rejected: line of"), result.stderr
    assert [o["name"] for o in indicators(json.loads(result.stdout))] == ["evil.example"]


def test_text_lists_in_utf16_or_starting_like_json(tmp_path: Path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("- c2[.]example - 198.51.100[.]7\n".encode("utf-16"))
    result = run("normalize", str(utf16))
    assert result.returncode == 0, result.stderr
    assert sorted(o["name"] for o in indicators(json.loads(result.stdout))) == ["198.51.100.7", "c2.example"]
    braced = tmp_path / "braced.txt"
    braced.write_text("{evil.com}\n1.2.3.4\n")
    result = run("normalize", str(braced))
    assert result.returncode == 1
    assert result.stderr == f"{braced}:1: rejected: cannot tell what kind of indicator '{{evil.com}}' is\n"
    assert [o["name"] for o in indicators(json.loads(result.stdout))] == ["1.2.3.4"]
    named_json = tmp_path / "braced.json"
    named_json.write_text("{evil.com}\n1.2.3.4\n")
    result = run("normalize", str(named_json))
    assert result.returncode == 1 and f"{named_json}:1: rejected: not valid JSON" in result.stderr


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("normalize", str(tmp_path / "missing.csv"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def versions(collection_url: str) -> list[tuple[str, str]]:
    found = requests.get(collection_url + "objects/", auth=("alice", PASSWORDS["alice"]), timeout=10,
                         params={"match[type]": "indicator", "match[version]": "all"}).json()["objects"]
    return sorted((o["id"], o["modified"]) for o in found)


def test_ingest_posts_files_to_a_running_hub(tmp_path: Path) -> None:
    event = json.loads(MISP.read_bytes())
    del event["Event"]["Orgc"]  # the MISP twin of the CSV, converted with a note, which must not fail the run
    (tmp_path / "no-orgc.json").write_text(json.dumps(event))
    with thread_hub(tmp_path) as hub:
        result = run("ingest", str(CSV), str(tmp_path / "no-orgc.json"), "--hub", hub.collection_url(),
                     "--user", "alice", env={"EXCHANGE_PASSWORD": PASSWORDS["alice"]})
        assert result.returncode == 0, result.stderr
        assert "0 failed" in result.stdout
        assert result.stderr == f"{tmp_path / 'no-orgc.json'}:{event['Event']['uuid']}: note: Missing Orgc field.\n"
        canonical = requests.get(hub.collection_url(CANONICAL) + "objects/", auth=("alice", PASSWORDS["alice"]),
                                 params={"match[type]": "indicator"}, timeout=10).json()["objects"]
        assert len(canonical) == 6
        # The files' own times stamp what they do not say (the CSV's rows), so posting them again is an exact
        # re-send: no new version of anything.
        before = versions(hub.collection_url(CANONICAL))
        again = run("ingest", str(CSV), str(tmp_path / "no-orgc.json"), "--hub", hub.collection_url(),
                    "--user", "alice", env={"EXCHANGE_PASSWORD": PASSWORDS["alice"]})
        assert again.returncode == 0 and "0 failed" in again.stdout, again.stderr
        assert versions(hub.collection_url(CANONICAL)) == before
        assert len(before) > len(canonical)  # the CSV's claim, then the MISP twin's: two versions each
        wrong = run("ingest", str(CSV), "--hub", hub.collection_url(), "--user", "alice",
                    env={"EXCHANGE_PASSWORD": "wrong"})
        assert wrong.returncode == 2 and "401" in wrong.stderr


FIXTURES = sorted(p for p in DATA.glob("*/*") if p.suffix in (".json", ".csv", ".txt", ".xml")
                  and not p.name.startswith("LICENSE") and p.parent.name != "warninglists"
                  and "defang_to_fang" not in p.name)


def test_every_format_has_fixtures() -> None:
    assert {p.parent.name for p in FIXTURES} >= {"csv", "misp", "stix1", "stix20", "stix21", "text"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_what_normalize_emits_for_every_fixture_passes_the_validator(path: Path) -> None:
    from exchange.dedup.claims import Source
    from exchange.dedup.merge import HubIdentity
    from exchange.dedup.offline import deduplicate
    from exchange.normalize.formats.detect import read

    converted = read(path.read_bytes(), name=path.name, now="2026-01-01T00:00:00.000Z")
    result = deduplicate([(Source(path.name), converted.objects)], hub=HubIdentity("test"))
    assert result.objects, f"{path.name} produced nothing"
    for obj in result.objects:
        authored = PROVENANCE_EXTENSION in obj.get("extensions", {})
        outcome = validate_instance(obj, AUTHORED if authored else THIRD_PARTY)
        assert outcome.is_valid, (obj["id"], [str(e) for e in outcome.errors])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_bundle_holds_what_its_indicators_reference_and_what_references_them(path: Path) -> None:
    from exchange.dedup.claims import Source
    from exchange.dedup.merge import HubIdentity
    from exchange.dedup.offline import deduplicate
    from exchange.normalize.formats.detect import read

    converted = read(path.read_bytes(), name=path.name, now="2026-01-01T00:00:00.000Z")
    objects = deduplicate([(Source(path.name), converted.objects)], hub=HubIdentity("test")).objects
    have = {o["id"] for o in objects}
    canonical = [o for o in objects if PROVENANCE_EXTENSION in o.get("extensions", {})]
    for obj in canonical:  # the author, the marking and the extension's definition travel with the indicator
        assert {obj["created_by_ref"], *obj["object_marking_refs"], *obj["extensions"]} <= have, obj["id"]
    # Producers' indicators became canonical ones: relationships, reports and sightings point at those.
    refs = {v for o in objects for k, value in o.items() if k.endswith(("_ref", "_refs"))
            for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)}
    replaced = {c["original_id"] for o in canonical for c in o["extensions"][PROVENANCE_EXTENSION]["claims"]} - have
    assert not refs & replaced  # (a reference to an object the converters rejected still dangles)


def test_references_to_a_producers_indicator_follow_it_to_the_canonical_one() -> None:
    stix20 = DATA / "stix20" / "unit42-test.json"
    result = run("normalize", str(stix20))
    assert result.returncode == 0, result.stderr
    objects = json.loads(result.stdout)["objects"]
    canonical = {c["original_id"]: o["id"] for o in indicators({"objects": objects})
                 for c in o["extensions"][PROVENANCE_EXTENSION]["claims"]}
    sent = json.loads(stix20.read_bytes())["objects"]
    sent_relationships = {o["id"]: o for o in sent if o["type"] == "relationship"}
    out_relationships = {o["id"]: o for o in objects if o["type"] == "relationship"}
    assert set(out_relationships) == set(sent_relationships)
    for ident, out in out_relationships.items():
        assert out["source_ref"] == canonical.get(sent_relationships[ident]["source_ref"],
                                                  sent_relationships[ident]["source_ref"])
    assert any(o["source_ref"] in canonical.values() for o in out_relationships.values())

"""Acceptance for #6 (scope 1): `exchange demo` runs a federation of hub processes, a medallion CERT and a member's
webhook receiver, replays the worm scenario, and its --json summary shows one coordinated alert naming every
country, delivered once per version, the TLP:RED claim contained, the warninglisted value quiet, valid STIX, and
no process left behind. --keep-running leaves the federation up until Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from stix2validator import ValidationOptions, validate_instance

from exchange.demo.scenario import RED_SHA256

pytestmark = pytest.mark.slow
# Hub-authored objects: canonical ids are UUIDv5 on purpose (103 recommends v4), as in tests/test_cli_normalize.py.
AUTHORED = ValidationOptions(version="2.1", strict=True, disabled="103")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, float]:
    directory = tmp_path_factory.mktemp("demo") / "federation"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "exchange", "demo", "--json", "--dir", str(directory)],
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-6000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary, directory, elapsed


def delivered(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in summary["member"]["deliveries"] if not d["repeat"]]


def grouping(bundle: dict[str, Any]) -> dict[str, Any]:
    [alert] = [o for o in bundle["objects"] if o["type"] == "grouping"]
    return alert


def test_one_coordinated_alert_names_every_country_and_reaches_the_member_once_per_version(
        demo: tuple[dict[str, Any], Path, float]) -> None:
    summary, _, _ = demo
    everyone = summary["countries"]
    hub_countries = {h["country"] for h in summary["hubs"]}
    assert len(hub_countries) >= 3 and summary["medallion"]["country"] not in hub_countries
    assert everyone == sorted(hub_countries | {summary["medallion"]["country"]})
    [alert_id] = summary["alerts"]["ids"]
    for hub in summary["hubs"]:
        assert [(a["id"], a["countries"]) for a in hub["alerts"]] == [(alert_id, everyone)], hub["name"]
    entries = delivered(summary)
    assert entries and all(d["signature_valid"] for d in entries)
    alerts = [grouping(d["bundle"]) for d in entries]
    assert {a["id"] for a in alerts} == {alert_id}
    keys = [d["idempotency_key"] for d in entries]
    versions = [a["modified"] for a in alerts]
    assert len(set(keys)) == len(keys) == len(set(versions))  # exactly once per version, one key per version
    assert versions == sorted(versions)  # in order
    levels = [a["extensions"]["extension-definition--dce24f9a-9bf0-43c2-894a-3b8570a32d7e"]["level"] for a in alerts]
    assert levels == sorted(levels) and levels[-1] > levels[0]  # it opened, then escalated
    final = max(alerts, key=lambda a: a["modified"])
    assert final == summary["alerts"]["final"]
    assert final["extensions"]["extension-definition--dce24f9a-9bf0-43c2-894a-3b8570a32d7e"]["countries"] == everyone


def data_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and ".db" in p.name]


def test_the_tlp_red_claim_never_left_its_country(demo: tuple[dict[str, Any], Path, float]) -> None:
    summary, directory, _ = demo
    red = summary["red_claim"]
    assert red["sha256"] == RED_SHA256 and red["held_by"] == red["posted_to"] and len(red["posted_to"]) == 1
    needle = RED_SHA256.encode()
    for hub in summary["hubs"]:
        files = data_files(Path(hub["data_dir"]))
        assert files, hub["name"]
        # Journal, store, audit, alerts, deliveries, outbound: the hubs are stopped, so the files are whole.
        found = [p.name for p in files if needle in p.read_bytes()]
        if hub["name"] in red["posted_to"]:
            assert found, "the search finds the claim where it was posted"
        else:
            assert not found, (hub["name"], found)
        assert not set(red["canonical_ids"]) & {i["id"] for i in hub["indicators"]}  # not even at its own hub
    assert RED_SHA256 not in json.dumps(summary["member"]["deliveries"])
    assert RED_SHA256 not in (directory / "cert-nl-medallion" / "medallion.log").read_text(errors="replace")


def test_the_warninglisted_value_raised_nothing(demo: tuple[dict[str, Any], Path, float]) -> None:
    summary, _, _ = demo
    benign = summary["warninglisted"]
    assert len(benign["reported_by"]) >= 3  # it would have made a large-scale alert of its own
    for hub in summary["hubs"]:
        [entry] = [i for i in hub["indicators"] if i["id"] == benign["canonical_id"]]
        assert entry["warninglists"] and benign["value"] in entry["pattern"], hub["name"]
        assert all(a["threat"] != f"indicator:{benign['canonical_id']}" for a in hub["alerts"])
    for entry in summary["member"]["deliveries"]:
        assert benign["canonical_id"] not in grouping(entry["bundle"])["object_refs"]
        assert benign["canonical_id"] not in {o["id"] for o in entry["bundle"]["objects"]}


def test_every_stix_object_in_the_summary_is_valid(demo: tuple[dict[str, Any], Path, float]) -> None:
    summary, _, _ = demo
    objects = [o for d in summary["member"]["deliveries"] for o in d["bundle"]["objects"]]
    objects.append(summary["alerts"]["final"])
    assert {o["type"] for o in objects} == {"grouping", "indicator"}
    for obj in objects:
        result = validate_instance(obj, AUTHORED)
        assert result.is_valid, (obj["id"], [str(e) for e in result.errors])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_no_process_is_left_and_it_took_under_a_minute(demo: tuple[dict[str, Any], Path, float]) -> None:
    summary, _, elapsed = demo
    pids = summary["pids"]
    assert len(pids) == len(summary["hubs"]) + 1 == len(summary["processes"]["pids"])
    assert summary["processes"]["alive_after_stop"] == []
    assert all(gone(pid) for pid in pids), [p for p in pids if not gone(p)]
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"


def test_keep_running_leaves_the_federation_up_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "exchange", "demo", "--keep-running", "--dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "taxii2client" in line:  # the last line of the access notes
                break
        text = "".join(lines)
        assert "Ctrl-C" in text and "ops / ops-demo" in text, text[-3000:]
        urls = re.findall(r"discovery (http://127\.0\.0\.1:\d+/taxii2/)", text)
        assert len(urls) == 5  # four hubs and medallion
        hub = requests.get(urls[0], auth=("ops", "ops-demo"), headers={"Accept": "application/taxii+json;version=2.1"},
                           timeout=10)
        assert hub.status_code == 200 and "CERT-DE" in hub.text
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, rest[-2000:]
    with pytest.raises(requests.ConnectionError):
        requests.get(urls[0], timeout=5)

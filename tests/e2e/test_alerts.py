"""Coordinated alerts end to end on a real hub: spread across countries opens one alert, escalates it, and the
members get it by signed webhook, by SSE with resume, and in the TAXII alerts collection, TLP-filtered."""

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from stix2validator import ValidationOptions, validate_instance

from exchange.cli import main
from exchange.correlate.alerts import alert_id
from exchange.fanout.routes import ALERTING
from exchange.fanout.signing import verify
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.policy.credentials import hash_password
from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.hubs import ALERTS, INBOX, PASSWORDS, Hub, serve_in_thread
from tests.peering import TAXII, hub_config, wait_for

SECRET = "member-webhook-secret"
FAMILY_ALERT = alert_id("family:wannacryptor")
AUTHORED = ValidationOptions(version="2.1", strict=True, disabled="103")


class Receiver(http.server.ThreadingHTTPServer):
    """A member's webhook endpoint: records every POST (headers, body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        receiver = self
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def alerting_config(directory: Path, hook: str) -> Path:
    hook_channel = f'channel = "webhook", url = "{hook}", secret_env = "BANK_SECRET"'
    extra = f"""
[alerts]
levels = [{{ name = "large-scale", countries = 2 }}, {{ name = "widespread", countries = 3 }}]

[[accounts]]
username = "ops-de"
kind = "operator"
country = "DE"
password_hash = "{hash_password('ops-de-pw')}"
can_write = ["inbox"]

[[members]]
name = "Example Bank"
account = "greenorg"
country = "FR"
sectors = ["finance"]
subscriptions = [
  {{ id = "bank-hook", {hook_channel}, max_retry = 60 }},
  {{ id = "bank-ransomware", {hook_channel}, families = ["WCry"], min_level = 2 }},
  {{ id = "bank-other", {hook_channel}, families = ["Emotet"] }},
]

[[members]]
name = "Example Utility"
account = "amberorg"
country = "PL"
subscriptions = [{{ id = "utility-live", channel = "sse" }}]
"""
    path = hub_config(directory, extra)
    path.write_text(path.read_text().replace('canonical_collection = "canonical"',
                                             'canonical_collection = "canonical"\nalerts_collection = "alerts"'))
    return path


def indicator(n: int, pattern: str, *, tlp: Tlp = Tlp.GREEN, labels: list[str] | None = None) -> dict[str, Any]:
    stamp = format_timestamp(now_micros() - 60_000_000)  # a minute ago: inside every window
    out: dict[str, Any] = {"type": "indicator", "spec_version": "2.1",
                           "id": f"indicator--30000000-0000-4000-8000-{n:012d}", "created": stamp, "modified": stamp,
                           "pattern": pattern, "pattern_type": "stix", "valid_from": stamp,
                           "object_marking_refs": [TLP2_IDS[tlp]]}
    if labels:
        out["labels"] = labels
    return out


def post(hub: Hub, user: str, objects: list[dict[str, Any]]) -> None:
    password = PASSWORDS.get(user, f"{user}-pw")
    response = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": objects},
                             auth=(user, password), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
    assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())


def post_status(hub: Hub, user: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """POST, wait for processing, and return the final TAXII status resource."""
    response = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": objects},
                             auth=(user, PASSWORDS[user]), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
    assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())
    status = requests.get(f"{hub.api}status/{response.json()['id']}/", auth=(user, PASSWORDS[user]),
                          headers={"Accept": TAXII}, timeout=10)
    status.raise_for_status()
    body: dict[str, Any] = status.json()
    return body


def alerts_seen(hub: Hub, user: str) -> list[dict[str, Any]]:
    response = requests.get(hub.collection_url(ALERTS) + "objects/", params={"match[type]": "grouping",
                                                                             "match[version]": "all"},
                            auth=(user, PASSWORDS[user]), headers={"Accept": TAXII}, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json().get("objects", []))


WORM = "[domain-name:value = 'wannacry-killswitch.example']"
TAG = 'misp-galaxy:ransomware="WannaCry"'


def test_a_threat_spreading_across_countries_raises_one_alert_delivered_to_members(
        tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    config = alerting_config(tmp_path, receiver.url)
    with serve_in_thread(config, env={"BANK_SECRET": SECRET}) as hub:
        # Noise first: a RED-only threat and a warninglisted value, each from three countries, raise nothing.
        red = "[ipv4-addr:value = '198.51.100.66']"
        benign = "[ipv4-addr:value = '8.8.8.8']"  # a public resolver: on the MISP warninglists
        for n, user in enumerate(("alice", "writer", "ops-de")):
            post(hub, user, [indicator(100 + n, red, tlp=Tlp.RED), indicator(200 + n, benign)])
        # The worm: France, then Poland (same value, another spelling, no family tag): level 1 over two countries.
        post(hub, "alice", [indicator(1, WORM, labels=[TAG])])
        post(hub, "writer", [indicator(2, "[domain-name:value = 'WannaCry-Killswitch.example.']")])
        wait_for(lambda: len(receiver.posts) >= 1, within=20, what="the first webhook delivery")
        post(hub, "ops-de", [indicator(3, WORM)])  # Germany: level 2, "widespread"
        wait_for(lambda: len(receiver.posts) >= 3, within=20, what="the escalation (two subscriptions)")
        time.sleep(0.5)  # nothing else may arrive
        hub.call(lambda s: s.processor.wait_idle())

        alerts = alerts_seen(hub, "alice")
        assert {a["id"] for a in alerts} == {FAMILY_ALERT}  # one alert: not one per indicator, none for the noise
        latest = max(alerts, key=lambda a: a["modified"])
        ext = latest["extensions"]["extension-definition--dce24f9a-9bf0-43c2-894a-3b8570a32d7e"]
        assert (ext["level"], ext["countries"]) == (2, ["DE", "FR", "PL"])
        assert validate_instance(latest, AUTHORED).is_valid

        # Webhooks: signed, one POST per (subscription, version); the family filter used an alias.
        by_key: dict[str, tuple[dict[str, str], bytes]] = {}
        for headers, body in receiver.posts:
            assert verify(SECRET, headers, body, time.time())
            assert not verify("wrong-secret", headers, body, time.time())
            by_key[headers["X-Exchange-Idempotency-Key"]] = (headers, body)
        assert len(by_key) == len(receiver.posts) == 3  # bank-hook x2 versions, bank-ransomware x1 (level 2)
        bundles = [orjson.loads(body) for _, body in by_key.values()]
        for bundle in bundles:
            [alert] = [o for o in bundle["objects"] if o["type"] == "grouping"]
            assert alert["id"] == FAMILY_ALERT
            assert "198.51.100.66" not in str(bundle) and "8.8.8.8" not in str(bundle)
            for obj in bundle["objects"]:
                assert validate_instance(obj, AUTHORED).is_valid, obj["id"]

        # TAXII: the member polls the alerts collection with its own account (TLP-filtered like any read).
        assert {a["id"] for a in alerts_seen(hub, "greenorg")} == {FAMILY_ALERT}

        # SSE: the utility's live stream, resumable with Last-Event-ID.
        url = f"{hub.base}/members/utility-live/events"
        events = read_events(url, ("amberorg", PASSWORDS["amberorg"]), want=2)
        assert [e["id"] for e in events] == ["1", "2"]
        assert all(orjson.loads(e["data"])["objects"][0]["id"] == FAMILY_ALERT for e in events)
        resumed = read_events(url, ("amberorg", PASSWORDS["amberorg"]), want=1, last="1", within=2)
        assert [e["id"] for e in resumed] == ["2"]
        denied = requests.get(url, auth=("greenorg", PASSWORDS["greenorg"]), timeout=5)
        assert denied.status_code == 403

        # The operator's view: admin API (operators only) and the CLI.
        admin = requests.get(f"{hub.base}/admin/alerts", auth=("alice", PASSWORDS["alice"]), timeout=5)
        assert admin.status_code == 200
        [row] = admin.json()["alerts"]
        assert (row["id"], row["level"], row["countries"]) == (FAMILY_ALERT, 2, ["DE", "FR", "PL"])
        assert requests.get(f"{hub.base}/admin/alerts", auth=("greenorg", PASSWORDS["greenorg"]),
                            timeout=5).status_code == 403
        metrics = requests.get(f"{hub.base}/metrics", timeout=5).text
        assert 'exchange_alerts_total{level="large-scale"} 1.0' in metrics
        assert 'exchange_alerts_total{level="widespread"} 1.0' in metrics
        assert 'exchange_delivery_attempts_total{subscriber="bank-hook"} 2.0' in metrics
    capsys.readouterr()
    assert main(["alerts", "--config", str(config), "--json"]) == 0
    [listed] = orjson.loads(capsys.readouterr().out)
    assert (listed["id"], listed["status"], listed["level"]) == (FAMILY_ALERT, "escalated", 2)


def read_events(url: str, auth: tuple[str, str], *, want: int, last: str | None = None,
                within: float = 10) -> list[dict[str, str]]:
    headers = {"Accept": "text/event-stream"} | ({"Last-Event-ID": last} if last else {})
    events: list[dict[str, str]] = []
    deadline = time.monotonic() + within
    with requests.get(url, auth=auth, headers=headers, stream=True, timeout=(5, within)) as response:
        assert response.status_code == 200, response.text
        current: dict[str, str] = {}
        for line in response.iter_lines(decode_unicode=True):
            if line == "" and current:
                if "data" in current:  # not a bare `retry:` hint
                    events.append(current)
                current = {}
                if len(events) >= want:
                    break
            elif line and not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
            if time.monotonic() > deadline:
                break
    return events


def test_alerts_from_peer_hubs_merge_with_local_ones(tmp_path: Path, receiver: Receiver) -> None:
    """A peer hub's alert on the same threat adds its countries and reporters once: reposting it changes nothing."""
    from exchange.correlate.alert_stix import alert_object
    from exchange.correlate.alerts import Alert, AlertReason, AlertStatus
    from exchange.correlate.spread import Admission, empty, observe
    from exchange.correlate.threats import Observation
    from exchange.dedup.merge import HubIdentity
    from exchange.normalize.ids import indicator_id
    from exchange.normalize.patterns import canonical_pattern

    peer = HubIdentity("CERT-PEER")
    config = alerting_config(tmp_path, receiver.url)
    text = config.read_text().replace('levels = [{ name = "large-scale", countries = 2 }, '
                                      '{ name = "widespread", countries = 3 }]',
                                      'levels = [{ name = "large-scale", countries = 3 }]')
    config.write_text(text + f"""
[[peers]]
id = "cert-peer"
name = "CERT-PEER"
country = "NL"
api_root = "http://127.0.0.1:9/api/"
identity = "{peer.id}"

[[accounts]]
username = "cert-peer"
kind = "peer"
peer = "cert-peer"
password_hash = "{hash_password('cert-peer-pw')}"
can_write = ["inbox"]
""")
    pattern = "[domain-name:value = 'spreading.example']"
    target = indicator_id(canonical_pattern(pattern))
    now = now_micros()
    reports = [Observation(indicator_id=target, source=f"{who}@{peer.id}", country=country, time=now - 120_000_000,
                           tlp=Tlp.GREEN) for who, country in (("cert-de", "DE"), ("cert-pl", "PL"))]
    spread = observe(empty(f"indicator:{target}"), reports, Admission())
    theirs = alert_object(Alert(threat_key=f"indicator:{target}", level=1, level_name="large-scale",
                                status=AlertStatus.OPEN, reason=AlertReason.THRESHOLD, created=now, modified=now,
                                spread=spread), peer)
    with serve_in_thread(config, env={"BANK_SECRET": SECRET}) as hub:
        post(hub, "alice", [indicator(1, pattern)])  # France, locally: one country, no alert yet
        assert alerts_seen(hub, "alice") == []
        forged = post_status(hub, "alice", [theirs])  # anyone else sending what the peer authored is refused
        [refusal] = forged["failures"]
        assert refusal["id"] == theirs["id"]
        assert "only that peer's accounts may send what it authored, not 'alice'" in refusal["message"]
        assert alerts_seen(hub, "alice") == []
        post(hub, "cert-peer", [theirs])  # the peer hub's alert arrives (pushed by the peer into the inbox)
        wait_for(lambda: alerts_seen(hub, "alice"), within=20, what="the merged alert")
        [ours] = alerts_seen(hub, "alice")
        ext = ours["extensions"]["extension-definition--dce24f9a-9bf0-43c2-894a-3b8570a32d7e"]
        assert ours["id"] == theirs["id"]  # one alert per threat, on every hub
        assert (ext["countries"], ext["source_count"]) == (["DE", "FR", "PL"], 3)
        again = {**theirs, "modified": format_timestamp(now + 1000)}  # a newer version, nothing new in it
        post(hub, "cert-peer", [again])
        time.sleep(0.5)
        hub.call(lambda s: s.processor.wait_idle())
        assert len(alerts_seen(hub, "alice")) == 1  # no new version: countries and reporters were not recounted


def test_a_batch_redone_after_a_crash_before_the_alert_book_is_saved_delivers_nothing_twice(
        tmp_path: Path, receiver: Receiver) -> None:
    # The alerter stores and queues an alert version, then saves its book; a crash in between makes it redo the
    # batch from the old book. The redo must find the version already published, not raise a newer copy of it.
    config = alerting_config(tmp_path, receiver.url)
    with serve_in_thread(config, env={"BANK_SECRET": SECRET}) as hub:
        alerting = hub.app[ALERTING]  # type: ignore[index]
        book, save = alerting.book, alerting.book.save
        crashes: list[int] = []

        async def save_after_crash(*args: Any, **kwargs: Any) -> None:
            if alerting.alerter.published and not crashes:  # the first version is out: fail as a crash would
                crashes.append(1)
                raise OSError("simulated crash between publishing and saving the alert book")
            await save(*args, **kwargs)

        book.save = save_after_crash
        post(hub, "alice", [indicator(1, WORM, labels=[TAG])])
        post(hub, "writer", [indicator(2, WORM)])  # FR + PL: level 1; the book save fails, the batch is redone
        wait_for(lambda: len(receiver.posts) >= 1 and bool(crashes), within=20, what="the first alert")
        asyncio.run_coroutine_threadsafe(alerting.alerter.wait_idle(), hub.loop).result(30)
        assert crashes and len(alerts_seen(hub, "alice")) == 1  # one version, not a second one from the redo
        post(hub, "ops-de", [indicator(3, WORM)])  # the next version still follows from the caught-up book
        wait_for(lambda: len(receiver.posts) >= 3, within=20, what="the escalation")
        time.sleep(1.5)  # past the alerter's retry delay: nothing else may arrive
        versions = alerts_seen(hub, "alice")
        assert len(versions) == 2
        keys = [headers["X-Exchange-Idempotency-Key"] for headers, _ in receiver.posts]
        assert len(keys) == len(set(keys)) == 3  # bank-hook x2 versions, bank-ransomware x1: each once
        assert [r.level for r in asyncio.run_coroutine_threadsafe(book.alerts(), hub.loop).result(10)] == [2]

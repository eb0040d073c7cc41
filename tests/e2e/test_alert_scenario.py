"""A WannaCry-like outbreak replayed across five national hubs in a ring: one alert id everywhere, escalating
as countries report, each version delivered once per member channel; a warninglisted value raises nothing."""

import asyncio
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from exchange.correlate.alert_stix import ALERT_EXTENSION
from exchange.correlate.alerts import alert_id
from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.fanout.routes import ALERTING
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from exchange.policy.credentials import hash_password
from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.federation import ENV, Link, MeshHub, latest, mesh_config
from tests.hubs import ALERTS, INBOX, PASSWORDS, Hub, free_port, serve_in_thread
from tests.members import SseReader, WebhookReceiver, documented_verify
from tests.peering import TAXII, wait_for

SECRET = "bank-webhook-secret"
ALICE = ("alice", PASSWORDS["alice"])  # an operator account on every hub
WANNACRY = alert_id("family:wannacryptor")  # Malpedia's name: the key every hub derives from any alias
# Four reporting organizations per hub, each in its own country (the hub's country first): twenty countries.
COUNTRIES = {"DE": ("AT", "CH", "LU"), "FR": ("BE", "NL", "IE"), "PL": ("CZ", "SK", "HU"),
             "IT": ("SI", "HR", "MT"), "ES": ("PT", "RO", "BG")}
HUBS = tuple(COUNTRIES)
# The kill switch, the worm's SHA-256 and a Tor node it called: public IOCs, none on a MISP warninglist.
KILL_SWITCH = "[domain-name:value = 'iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com']"
WORM_HASH = "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"
DROPPER_HASH = "24d004a104d4d54034dbcffc2a4b19a11f39008a575aa614ea04703480b1022c"
TOR_NODE = "[ipv4-addr:value = '197.231.221.211']"
RESOLVER = "[ipv4-addr:value = '8.8.8.8']"  # a public DNS resolver: on the MISP warninglists
# Three galaxies, three spellings of one family.
RANSOMWARE_TAG = 'misp-galaxy:ransomware="WannaCry"'
MALPEDIA_TAG = 'misp-galaxy:malpedia="WannaCryptor"'
MITRE_TAG = 'misp-galaxy:mitre-malware="WannaCry - S0366"'


def reporter(country: str) -> str:
    return f"csirt-{country.lower()}"


def hub_extra(country: str, hooks: WebhookReceiver) -> str:
    """Reporting accounts, alert levels 3/4/5 countries, and (at DE and PL) members with webhook and SSE."""
    text = """
[alerts]
levels = [{ name = "large-scale", countries = 3 }, { name = "widespread", countries = 4 },
          { name = "global", countries = 5 }]
fast_growth = { new_countries = 0 }  # levels follow the country count alone: the steps below are exact
"""
    for reporting in (country, *COUNTRIES[country]):
        user = reporter(reporting)
        text += (f'\n[[accounts]]\nusername = "{user}"\nkind = "operator"\ncountry = "{reporting}"\n'
                 f'password_hash = "{hash_password(user + "-pw")}"\ncan_write = ["inbox"]\n')
    if country in ("DE", "PL"):
        hook = f'channel = "webhook", secret_env = "BANK_SECRET", url = "{hooks.url(country + "-bank")}"'
        text += f"""
[[members]]
name = "Bank {country}"
account = "greenorg"
country = "{country}"
subscriptions = [{{ id = "bank-hook", {hook}, families = ["WCry"] }}, {{ id = "bank-live", channel = "sse" }}]
"""
    if country == "DE":
        hook = f'channel = "webhook", secret_env = "BANK_SECRET", url = "{hooks.url("DE-utility")}"'
        text += f"""
[[members]]
name = "Utility DE"
account = "amberorg"
country = "DE"
subscriptions = [{{ id = "utility-hook", {hook}, min_level = 2, families = ["Wana Decrypt0r"] }}]
"""
    return text


def indicator(n: int, pattern: str, *labels: str) -> dict[str, Any]:
    stamp = format_timestamp(now_micros() - 60_000_000)  # a minute ago: inside every window
    out: dict[str, Any] = {"type": "indicator", "spec_version": "2.1",
                           "id": f"indicator--50000000-0000-4000-8000-{n:012d}", "created": stamp, "modified": stamp,
                           "pattern": pattern, "pattern_type": "stix", "valid_from": stamp,
                           "indicator_types": ["malicious-activity"], "object_marking_refs": [TLP2_IDS[Tlp.GREEN]]}
    if labels:
        out["labels"] = list(labels)
    return out


def report(hub: Hub, country: str, *objects: dict[str, Any]) -> None:
    """The CERT of `country` posts to its national hub's inbox."""
    user = reporter(country)
    response = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": list(objects)},
                             auth=(user, f"{user}-pw"), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
    assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())


def settled(hub: Hub) -> None:
    """The hub has processed what it journaled and correlated what it published."""
    assert hub.app is not None and hub.loop is not None
    hub.call(lambda s: s.processor.wait_idle())
    asyncio.run_coroutine_threadsafe(hub.app[ALERTING].alerter.wait_idle(), hub.loop).result(30)


def admin_alerts(hub: Hub) -> list[dict[str, Any]]:
    response = requests.get(f"{hub.base}/admin/alerts", auth=ALICE, timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["alerts"])


def alert_versions(hub: Hub) -> list[dict[str, Any]]:
    """Every version of every alert in the hub's TAXII alerts collection, oldest first."""
    response = requests.get(hub.collection_url(ALERTS) + "objects/", auth=ALICE, headers={"Accept": TAXII},
                            params={"match[type]": "grouping", "match[version]": "all"}, timeout=10)
    assert response.status_code == 200, response.text
    return sorted(response.json().get("objects", []), key=lambda o: o["modified"])


def countries_of(hub: Hub, pattern: str) -> set[str]:
    obj = latest(hub, indicator_id(canonical_pattern(pattern)))
    claims = obj["extensions"][PROVENANCE_EXTENSION]["claims"] if obj else []
    return {c["country"] for c in claims}


def claims_reach(hubs: dict[str, Hub], pattern: str, countries: set[str]) -> None:
    """Every hub's canonical indicator of `pattern` carries the claims of these countries, and is correlated."""
    for name, hub in hubs.items():
        def there(hub: Hub = hub) -> bool:
            return countries_of(hub, pattern) == countries

        wait_for(there, within=30, what=f"claims from {sorted(countries)} on {pattern} at {name}")
        settled(hub)


def spread_to(hubs: dict[str, Hub], countries: set[str], *, level: int) -> None:
    """Every hub knows of the reports from these countries and its one alert stands at `level`."""
    def there() -> list[tuple[str, int, list[str]]]:
        rows = [(name, r["level"], r["countries"]) for name, hub in hubs.items() for r in admin_alerts(hub)]
        return rows if rows == [(name, level, sorted(countries)) for name in hubs] else []

    wait_for(there, within=30, what=f"level {level} from {sorted(countries)} at every hub")


def test_a_wannacry_like_outbreak_raises_one_alert_everywhere_and_members_hear_each_version_once(
        tmp_path: Path) -> None:
    meshes = {country: MeshHub(f"CERT-{country}", country, free_port()) for country in HUBS}
    ring = [meshes[c] for c in HUBS]
    with WebhookReceiver() as hooks, ExitStack() as stack:
        hubs: dict[str, Hub] = {}
        for index, mesh in enumerate(ring):
            # A directed ring of canonical pulls: each hub pulls the one before it and lets the next one in.
            links = [Link(ring[index - 1], pull=True), Link(ring[(index + 1) % len(ring)])]
            config = mesh_config(tmp_path / mesh.peer_id, mesh, links, alerts_collection="alerts",
                                 extra=hub_extra(mesh.country, hooks))
            hubs[mesh.country] = stack.enter_context(serve_in_thread(config, env=ENV | {"BANK_SECRET": SECRET},
                                                                     port=mesh.port))
        live = {c: SseReader(f"{hubs[c].base}/members/bank-live/events", ("greenorg", PASSWORDS["greenorg"]))
                for c in ("DE", "PL")}

        # Noise: twenty countries on five hubs report a public resolver, tagged with a family. It spreads (every
        # hub ends up with twenty claims) but raises nothing: not for the value, not for the family.
        for country, others in COUNTRIES.items():
            for n, reporting in enumerate((country, *others)):
                report(hubs[country], reporting, indicator(900 + 10 * HUBS.index(country) + n, RESOLVER,
                                                           'misp-galaxy:malpedia="Emotet"'))
        everyone = {c for country, others in COUNTRIES.items() for c in (country, *others)}
        claims_reach(hubs, RESOLVER, everyone)

        # The outbreak. Germany and France first: two countries, below the first level.
        report(hubs["DE"], "DE", indicator(1, KILL_SWITCH, RANSOMWARE_TAG),
               indicator(2, f"[file:hashes.'SHA-256' = '{WORM_HASH}']", RANSOMWARE_TAG))
        report(hubs["FR"], "FR", indicator(3, f"[file:hashes.'SHA-256' = '{WORM_HASH.upper()}']", MALPEDIA_TAG),
               indicator(4, TOR_NODE, MALPEDIA_TAG))
        claims_reach(hubs, f"[file:hashes.'SHA-256' = '{WORM_HASH}']", {"DE", "FR"})
        assert [admin_alerts(hub) for hub in hubs.values()] == [[]] * len(hubs)
        # Poland names it after ATT&CK: three countries, "large-scale" everywhere.
        report(hubs["PL"], "PL", indicator(5, KILL_SWITCH, MITRE_TAG))
        spread_to(hubs, {"DE", "FR", "PL"}, level=1)
        # Italy reports the Tor node without naming any family; France did: "widespread".
        report(hubs["IT"], "IT", indicator(6, TOR_NODE))
        spread_to(hubs, {"DE", "FR", "IT", "PL"}, level=2)
        # Spain reports the dropper under Malpedia's name: "global".
        report(hubs["ES"], "ES", indicator(7, f"[file:hashes.'SHA-256' = '{DROPPER_HASH}']", MALPEDIA_TAG))
        spread_to(hubs, {"DE", "ES", "FR", "IT", "PL"}, level=3)
        # More reports from countries already counted: no new version anywhere.
        report(hubs["DE"], "DE", indicator(8, TOR_NODE, RANSOMWARE_TAG))
        report(hubs["IT"], "IT", indicator(9, KILL_SWITCH))
        claims_reach(hubs, TOR_NODE, {"DE", "FR", "IT"})

        # One alert id on every hub, three versions each: opened at three countries, escalated at four and five.
        versions = {name: alert_versions(hub) for name, hub in hubs.items()}
        for name, hub in hubs.items():
            assert [(r["id"], r["level"]) for r in admin_alerts(hub)] == [(WANNACRY, 3)], name
            assert {v["id"] for v in versions[name]} == {WANNACRY}, name
            exts = [v["extensions"][ALERT_EXTENSION] for v in versions[name]]
            assert [(e["level"], e["country_count"], e["status"]) for e in exts] == [
                (1, 3, "open"), (2, 4, "escalated"), (3, 5, "escalated")], name
            assert len(versions[name][-1]["object_refs"]) == 4  # kill switch, two hashes, Tor node; not 8.8.8.8
            assert exts[-1]["family"] == "wannacryptor"
            # Every reporter counted once, named the same on every hub (source@origin hub): one spread everywhere.
            assert exts[-1]["reporters"] == versions["DE"][-1]["extensions"][ALERT_EXTENSION]["reporters"], name
            assert len(exts[-1]["reporters"]) == 5  # one CSIRT per country, however often it reported

        # Webhooks: each version once per subscription (by idempotency key), signed as docs/members.md says.
        verify = documented_verify()
        expected = {name: [(v["id"], v["modified"]) for v in versions[name]] for name in ("DE", "PL")}
        wanted = {"DE-bank": expected["DE"], "PL-bank": expected["PL"], "DE-utility": expected["DE"][1:]}
        wait_for(lambda: all(len(hooks.received(path)) >= len(want) for path, want in wanted.items()), within=20,
                 what="every webhook delivery")
        for path, want in wanted.items():
            posts = hooks.received(path, delivered=False)
            assert all(p.status == 204 for p in posts)
            assert all(verify(SECRET, p.headers["X-Exchange-Signature"], p.body) for p in posts)
            assert set(Counter(p.key for p in posts).values()) == {1}, path
            assert [(p.alert["id"], p.alert["modified"]) for p in posts] == want, path  # in order, none twice

        # SSE: the live streams got each version once, in order, with increasing event ids.
        for country, reader in live.items():
            reader.wait(len(expected[country]))
            events = reader.alerts()
            assert [(a["id"], a["modified"]) for _, a in events] == expected[country]
            assert [int(i) for i, _ in events] == sorted({int(i) for i, _ in events})
    for reader in live.values():
        reader.join()
    # Nothing came after, on either channel, up to the hubs' shutdown.
    assert [len(reader.events) for reader in live.values()] == [3, 3]
    assert len(hooks.posts) == 3 + 3 + 2


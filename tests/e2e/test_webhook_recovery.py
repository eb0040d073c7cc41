"""A member's webhook endpoint that is down, then failing, then back, across a hub restart: every alert version
arrives exactly once, in order, each request signed as docs/members.md tells members to verify it."""

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import requests

from exchange.correlate.alert_stix import ALERT_EXTENSION
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.policy.credentials import hash_password
from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.hubs import ALERTS, INBOX, PASSWORDS, Hub, serve_in_thread
from tests.members import WebhookReceiver, documented_verify
from tests.peering import TAXII, hub_config, wait_for

SECRET = "bank-webhook-secret"
ALICE = ("alice", PASSWORDS["alice"])
KILL_SWITCH = "[domain-name:value = 'iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com']"
COUNTRIES = ("DE", "FR", "PL", "IT")


def config(directory: Path, hook: str) -> Path:
    """Levels at 2/3/4 countries, a reporting account per country, one member webhook; retries every few
    tenths of a second (hub.webhook_retry_*) so that the outage fits in a test."""
    extra = """
[alerts]
levels = [{ name = "large-scale", countries = 2 }, { name = "widespread", countries = 3 },
          { name = "global", countries = 4 }]
fast_growth = { new_countries = 0 }
"""
    for country in COUNTRIES:
        user = f"csirt-{country.lower()}"
        extra += (f'\n[[accounts]]\nusername = "{user}"\nkind = "operator"\ncountry = "{country}"\n'
                  f'password_hash = "{hash_password(user + "-pw")}"\ncan_write = ["inbox"]\n')
    hook_channel = f'id = "bank-hook", channel = "webhook", url = "{hook}", secret_env = "BANK_SECRET"'
    extra += f"""
[[members]]
name = "Example Bank"
account = "greenorg"
country = "FR"
subscriptions = [{{ {hook_channel}, max_retry = 300, timeout = 2 }}]
"""
    path = hub_config(directory, extra)
    path.write_text(path.read_text().replace(
        'canonical_collection = "canonical"',
        'canonical_collection = "canonical"\nalerts_collection = "alerts"\nwebhook_retry_base = 0.05\n'
        'webhook_retry_cap = 0.3'))
    return path


def report(hub: Hub, country: str, n: int) -> None:
    stamp = format_timestamp(now_micros() - 60_000_000)
    user = f"csirt-{country.lower()}"
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--60000000-0000-4000-8000-{n:012d}",
           "created": stamp, "modified": stamp, "pattern": KILL_SWITCH, "pattern_type": "stix", "valid_from": stamp,
           "labels": ['misp-galaxy:ransomware="WannaCry"'], "object_marking_refs": [TLP2_IDS[Tlp.GREEN]]}
    response = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": [obj]},
                             auth=(user, f"{user}-pw"), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
    assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())


def deliveries(hub: Hub) -> list[dict[str, Any]]:
    response = requests.get(f"{hub.base}/admin/deliveries", params={"subscription": "bank-hook"}, auth=ALICE,
                            timeout=10)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def states(hub: Hub) -> Counter[str]:
    return Counter(d["state"] for d in deliveries(hub))


def test_a_webhook_down_then_failing_then_back_gets_every_version_once_across_a_restart(tmp_path: Path) -> None:
    hooks = WebhookReceiver()  # not started: connections to it are refused
    path = config(tmp_path, hooks.url("bank"))
    env = {"BANK_SECRET": SECRET}
    with serve_in_thread(path, env=env) as hub:
        report(hub, "DE", 1)
        report(hub, "FR", 2)  # two countries: the alert opens
        wait_for(lambda: any(d["attempts"] >= 3 for d in deliveries(hub)), within=20, what="retries while down")
        report(hub, "PL", 3)  # escalated while the endpoint is down: queued behind the first version
        wait_for(lambda: states(hub) == {"pending": 2}, within=20, what="two versions pending")
        [first, _] = deliveries(hub)
        assert "Connect" in first["last_error"], first
    # Restarted on the same data directory while both deliveries are pending.
    with serve_in_thread(path, env=env) as hub:
        assert states(hub) == {"pending": 2}
        hooks.status = 500
        with hooks:
            wait_for(lambda: len(hooks.posts) >= 3, within=20, what="attempts answered with 500")
            report(hub, "IT", 4)  # a third version while the endpoint fails
            wait_for(lambda: states(hub) == {"pending": 3}, within=20, what="three versions pending")
            assert not hooks.received("bank")
            hooks.status = 204
            wait_for(lambda: states(hub) == {"delivered": 3}, within=20, what="every version delivered")
            response = requests.get(hub.collection_url(ALERTS) + "objects/", auth=ALICE, headers={"Accept": TAXII},
                                    params={"match[type]": "grouping", "match[version]": "all"}, timeout=10)
            versions = sorted(response.json()["objects"], key=lambda v: v["modified"])
            entries = deliveries(hub)

    assert [v["extensions"][ALERT_EXTENSION]["level"] for v in versions] == [1, 2, 3]
    delivered = hooks.received("bank")
    # Exactly once each, in version order, with the keys the hub's queue holds.
    assert [(p.alert["id"], p.alert["modified"]) for p in delivered] == [(v["id"], v["modified"]) for v in versions]
    assert [p.key for p in delivered] == [e["idempotency_key"] for e in entries]
    assert set(Counter(p.key for p in delivered).values()) == {1}
    # Every attempt, failed or not, is signed and verifies with the recipe members copy from docs/members.md;
    # the retries of one version carry the same key and the same bytes, their attempt numbers rising across the
    # restart (the first version was tried while the endpoint was down, before the hub restarted).
    verify = documented_verify()
    attempts: dict[str, list[int]] = defaultdict(list)
    for post in hooks.posts:
        assert verify(SECRET, post.headers["X-Exchange-Signature"], post.body)
        assert not verify("another-secret", post.headers["X-Exchange-Signature"], post.body)
        assert post.body == next(p.body for p in delivered if p.key == post.key)
        attempts[post.key].append(int(post.headers["X-Exchange-Attempt"]))
    first_key = delivered[0].key
    assert attempts[first_key][0] > 3 and attempts[first_key] == sorted(set(attempts[first_key]))
    assert [e["attempts"] for e in entries] == [attempts[p.key][-1] for p in delivered]

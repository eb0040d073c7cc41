"""Meshes of hubs: claims travel with their origin and path, rings converge, pushes honour agreements."""

import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.cli import main
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.federation import ENV, Link, MeshHub, canonical_versions, claim_origins, latest, mesh_config
from tests.hubs import Hub, free_port, serve_in_thread
from tests.peering import journal_object_ids, peering, wait_for

PATTERN = "[domain-name:value = 'worm.example']"
WORM = indicator_id(canonical_pattern(PATTERN))


def indicator(n: int, pattern: str, tlp: Tlp = Tlp.GREEN, **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--10000000-0000-4000-8000-{n:012d}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "pattern": pattern,
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z", "confidence": 60,
            "object_marking_refs": [TLP2_IDS[tlp]], **extra}


def post_as(hub: Hub, user: str, objects: list[dict[str, Any]]) -> None:
    import requests

    from tests.hubs import INBOX, PASSWORDS
    from tests.peering import TAXII

    response = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": objects},
                             auth=(user, PASSWORDS[user]), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
    assert response.status_code == 202, response.text
    hub.call(lambda s: s.processor.wait_idle())


def three_hubs() -> tuple[MeshHub, MeshHub, MeshHub]:
    return (MeshHub("CERT-A", "DE", free_port()), MeshHub("CERT-B", "FR", free_port()),
            MeshHub("CERT-C", "PL", free_port()))


def start(stack: ExitStack, tmp: Path, hub: MeshHub, links: list[Link], **kw: Any) -> Hub:
    config = mesh_config(tmp / hub.peer_id, hub, links, **kw)
    return stack.enter_context(serve_in_thread(config, env=ENV, port=hub.port))


def test_a_ring_of_three_hubs_converges_to_one_indicator_with_every_claim(tmp_path: Path) -> None:
    a, b, c = three_hubs()
    with ExitStack() as stack:
        # A pulls C, B pulls A, C pulls B: a directed ring. Each lets its puller in.
        hub_a = start(stack, tmp_path, a, [Link(c, pull=True), Link(b)])
        hub_b = start(stack, tmp_path, b, [Link(a, pull=True), Link(c)])
        hub_c = start(stack, tmp_path, c, [Link(b, pull=True), Link(a)])
        post_as(hub_a, "alice", [indicator(1, PATTERN)])
        post_as(hub_c, "writer", [indicator(2, "[domain-name:value = 'WORM.example.']")])  # same, other spelling
        everyone = {("alice", a.identity), ("writer", c.identity)}
        for hub in (hub_a, hub_b, hub_c):
            wait_for(lambda hub=hub: claim_origins(latest(hub, WORM)) == everyone, within=30,  # type: ignore[misc]
                     what=f"both claims at {hub.base}")
        # Converged: more polling rounds make no new versions anywhere.
        counts = [len(canonical_versions(h, WORM)) for h in (hub_a, hub_b, hub_c)]
        for _ in range(5):
            for hub in (hub_a, hub_b, hub_c):
                peering(hub).poll_now()
            time.sleep(0.3)
        for hub in (hub_a, hub_b, hub_c):
            hub.call(lambda s: s.processor.wait_idle())
        assert [len(canonical_versions(h, WORM)) for h in (hub_a, hub_b, hub_c)] == counts
        assert max(counts) <= 4, counts  # a handful of versions while claims arrive, not an update storm
        at_b = latest(hub_b, WORM)
        assert at_b is not None and at_b["id"] == WORM
        paths = {c["source"]: c["path"] for c in at_b["extensions"]["extension-definition--6a437e0c-ef20-4ed6-8352-"
                                                                       "4415f4043e9a"]["claims"]}
        assert paths == {"alice": [a.identity, b.identity], "writer": [c.identity, a.identity, b.identity]}


def test_pushes_follow_each_peers_agreement_and_survive_a_restart(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = three_hubs()
    green, amber = indicator(1, PATTERN), indicator(2, "[ipv4-addr:value = '203.0.113.9']", Tlp.AMBER)
    amber_id = indicator_id(canonical_pattern(amber["pattern"]))
    links_a = [Link(b, push=True, agreement={"max_tlp": "green"}),
               Link(c, push=True, agreement={"max_tlp": "amber", "amber_constituents": True})]
    with ExitStack() as receivers:
        hub_b = start(receivers, tmp_path, b, [Link(a)])
        hub_c = start(receivers, tmp_path, c, [Link(a)], audience="amber")  # C publishes what AMBER allows
        with ExitStack() as first:
            # A's canonical collection is merged for an AMBER audience, so AMBER claims are in it.
            hub_a = start(first, tmp_path, a, links_a, audience="amber")
            post_as(hub_a, "alice", [green, amber])
            wait_for(lambda: latest(hub_c, amber_id) is not None and latest(hub_c, WORM) is not None, within=30,
                     what="both indicators at C")
            wait_for(lambda: latest(hub_b, WORM) is not None, within=30, what="the green indicator at B")
        assert latest(hub_b, amber_id) is None  # B's agreement stops at GREEN
        assert amber["id"] not in str(journal_object_ids(hub_b.data_dir, "cert-a"))
        assert claim_origins(latest(hub_c, amber_id)) == {("alice", a.identity)}
        assert latest(hub_c, amber_id)["object_marking_refs"] == [TLP2_IDS[Tlp.AMBER]]  # type: ignore[index]
        # Restart A; what it pushed before is not pushed again, what is new goes out.
        with ExitStack() as second:
            hub_a = start(second, tmp_path, a, links_a, audience="amber")
            newer = indicator(3, "[url:value = 'http://worm.example/x']")
            post_as(hub_a, "alice", [newer])
            newer_id = indicator_id(canonical_pattern(newer["pattern"]))
            wait_for(lambda: latest(hub_b, newer_id) is not None, within=30, what="the new indicator at B")
            peering(hub_a).push_now()
            time.sleep(0.5)
        pushed = Counter(journal_object_ids(hub_b.data_dir, "cert-a"))
        assert pushed[WORM] == 1 and pushed[newer_id] == 1, pushed  # once each: nothing skipped, nothing twice
    # The operator sees the pushes in `exchange peers`, read from disk after the hub stopped.
    capsys.readouterr()
    assert main(["peers", "--config", str(tmp_path / a.peer_id / "hub.toml"), "--json"]) == 0
    rows = {r["peer"]: r for r in orjson.loads(capsys.readouterr().out) if r["direction"] == "push"}
    assert rows["cert-b"]["objects_pushed"] >= 2 and rows["cert-c"]["objects_pushed"] >= 3
    assert rows["cert-b"]["error_count"] == 0 and rows["cert-b"]["last_success"] is not None


def test_two_hubs_versions_with_one_id_and_modified_still_relay_their_claims(tmp_path: Path) -> None:
    """A and B both publish the indicator with the same `modified` (it comes from the newest claim) but other
    bodies; a hub that gets both keeps the first verbatim and still records the claims the second relays."""
    import requests

    from exchange.dedup.claims import Source, claim_from_indicator
    from exchange.dedup.merge import HubIdentity, merge
    from exchange.dedup.relay import provenance_of, relayed_claims
    from tests.hubs import INBOX
    from tests.peering import PEER_PASSWORD, TAXII

    a, b, x = MeshHub("CERT-A", "DE", free_port()), MeshHub("CERT-B", "FR", free_port()), MeshHub("CERT-X", "PL", 0)
    alice = claim_from_indicator(indicator(1, PATTERN, modified="2026-01-05T00:00:00.000Z"), Source("alice", "DE"),
                                 default_tlp=Tlp.GREEN)
    bob = claim_from_indicator(indicator(2, PATTERN), Source("bob", "FR"), default_tlp=Tlp.GREEN)  # older
    assert alice is not None and bob is not None
    at_a = merge([alice], audience=Tlp.GREEN, hub=HubIdentity(a.name), created=None, previous_modified=0)
    assert at_a is not None
    relayed = relayed_claims(at_a.body, provenance_of(at_a.body) or {}, Source("peer:cert-a", relay=True),
                             hub_id=b.identity)
    at_b = merge([*relayed, bob], audience=Tlp.GREEN, hub=HubIdentity(b.name), created=None, previous_modified=0)
    assert at_b is not None and at_b.body["modified"] == at_a.body["modified"] and at_b.body != at_a.body
    with ExitStack() as stack:
        hub_x = start(stack, tmp_path, x, [Link(a), Link(b)])
        for user, body in (("cert-a", at_a.body), ("cert-b", at_b.body)):
            response = requests.post(hub_x.collection_url(INBOX) + "objects/", json={"objects": [body]},
                                     auth=(user, PEER_PASSWORD), headers={"Content-Type": TAXII, "Accept": TAXII},
                                     timeout=10)
            assert response.status_code == 202, response.text
            hub_x.call(lambda s: s.processor.wait_idle())
        assert claim_origins(latest(hub_x, WORM)) == {("alice", a.identity), ("bob", b.identity)}

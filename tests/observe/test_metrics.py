"""/metrics on a real hub: the counters move as objects flow in and out, gauges are read at scrape time."""

from pathlib import Path

import pytest
import requests

from exchange.observe.metrics import new_metrics, reject_reason
from exchange.policy.credentials import hash_token
from exchange.store.base import ObjectResult, Outcome, StatusRecord
from tests.hubs import INBOX, Hub, serve_in_thread
from tests.observe.support import config_with, scrape, total, value
from tests.peering import (
    PEER_PASSWORD,
    config_hub,
    hub_config,
    indicators,
    peer_account,
    post_all,
    puller_config,
    stored_count,
    wait_for,
)
from tests.taxii.helpers import collection, indicator, post

POST_ROUTE = "/{api_root}/collections/{collection_id}/objects/"
METRICS_TOKEN = "exh_metrics-scraper-token-0123456789"


def test_counters_move_as_objects_flow_in_and_out(hub: Hub) -> None:
    before = scrape(hub.base)
    inbox = collection(hub)
    good = [indicator(n) for n in range(3)]
    bad = {"type": "indicator", "spec_version": "2.1", "id": "indicator--not-a-uuid"}
    post(inbox, [*good, bad])
    post(inbox, good)  # the same three again: duplicates
    served = inbox.get_objects()["objects"]
    after = scrape(hub.base)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("exchange_objects_in_total", source="alice", outcome="stored") == 3
    assert moved("exchange_objects_in_total", source="alice", outcome="duplicate") == 3
    assert moved("exchange_objects_in_total", source="alice", outcome="rejected") == 1
    assert moved("exchange_objects_rejected_total", source="alice", reason="structure") == 1
    assert moved("exchange_objects_served_total", account="alice") == len(served) == 3
    posts = total(after, "exchange_http_request_duration_seconds_count", route=POST_ROUTE, method="POST",
                  status="202")
    assert posts - total(before, "exchange_http_request_duration_seconds_count", route=POST_ROUTE) == 2
    assert total(after, "exchange_http_request_duration_seconds_sum", route=POST_ROUTE) > 0
    assert value(after, "exchange_journal_backlog") == 0
    assert value(after, "exchange_build_info", version="0.1.0") == 1


def test_errors_are_timed_with_their_status_and_route(hub: Hub) -> None:
    requests.get(f"{hub.base}/taxii2/", timeout=10)  # no credentials: 401
    requests.get(f"{hub.base}/no/such/path", auth=("alice", "alice-pw"), timeout=10)
    samples = scrape(hub.base)
    assert value(samples, "exchange_http_request_duration_seconds_count", route="/taxii2/", method="GET",
                 status="401") == 1
    assert value(samples, "exchange_http_request_duration_seconds_count", route="unmatched", method="GET",
                 status="404") == 1


def test_backlog_gauge_is_read_from_the_journal_at_scrape_time(hub: Hub) -> None:
    hub.call(lambda s: s.processor.pause())
    resp = requests.post(hub.collection_url(INBOX) + "objects/", json={"objects": [indicator(1), indicator(2)]},
                         auth=("alice", "alice-pw"), timeout=10,
                         headers={"Content-Type": "application/taxii+json;version=2.1",
                                  "Accept": "application/taxii+json;version=2.1"})
    assert resp.status_code == 202
    samples = scrape(hub.base)
    assert value(samples, "exchange_journal_backlog") == 1
    assert value(samples, "exchange_journal_oldest_unprocessed_seconds") >= 0
    hub.call(lambda s: s.processor.resume())
    hub.call(lambda s: s.processor.wait_idle())
    assert value(scrape(hub.base), "exchange_journal_backlog") == 0


def test_a_metrics_token_protects_metrics_only(tmp_path: Path) -> None:
    config = config_with(tmp_path, f'metrics_token_hash = "{hash_token(METRICS_TOKEN)}"')
    with serve_in_thread(config) as hub:
        assert requests.get(f"{hub.base}/metrics", timeout=10).status_code == 401
        wrong = requests.get(f"{hub.base}/metrics", headers={"Authorization": "Bearer exh_wrong"}, timeout=10)
        assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
        samples = scrape(hub.base, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert ("exchange_journal_backlog", ()) in samples
        # Health stays open for probes; TAXII stays behind its own accounts, the metrics token opens nothing.
        assert requests.get(f"{hub.base}/healthz", timeout=10).status_code == 200
        taxii = requests.get(f"{hub.base}/taxii2/", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                             timeout=10)
        assert taxii.status_code == 401


def test_peer_lag_state_and_pulled_objects_per_peer(tmp_path: Path) -> None:
    with config_hub(hub_config(tmp_path / "a", peer_account("hub-b", can_read=("inbox",)))) as a:
        post_all(a, indicators(0, 30))
        with config_hub(puller_config(tmp_path / "b", a), env={"HUB_A_PASSWORD": PEER_PASSWORD}) as b:
            wait_for(lambda: stored_count(b.data_dir, INBOX) == 30, what="30 pulled objects stored in B")
            samples = wait_for(lambda: _with_lag(b), what="a lag sample for hub-a")
            assert value(samples, "exchange_peer_state", peer="hub-a", collection=INBOX, state="ok") == 1
            assert 0 <= value(samples, "exchange_peer_lag_seconds", peer="hub-a", collection=INBOX) < 60
            assert value(samples, "exchange_objects_in_total", source="peer:hub-a", outcome="stored") == 30
        served = scrape(a.base)
        assert value(served, "exchange_objects_served_total", account="hub-b") == 30


def _with_lag(hub: Hub) -> dict | None:  # type: ignore[type-arg]
    samples = scrape(hub.base)
    return samples if total(samples, "exchange_peer_lag_seconds", peer="hub-a") else None


def test_each_hub_has_its_own_registry() -> None:
    one, two = new_metrics(sources=["a"]), new_metrics(sources=["a"])
    status = StatusRecord(id="s", api_root="api", account="a", request_timestamp=0, total=1,
                          results=(ObjectResult(id="indicator--x", version="v", outcome=Outcome.STORED, message=""),))
    one.record_statuses([status])
    assert one.objects_in.labels("a", "stored")._value.get() == 1
    assert two.objects_in.labels("a", "stored")._value.get() == 0
    # Placeholders the later stages increment exist with their labels.
    two.alerts.labels("high").inc()
    two.delivery_attempts.labels("member-a").inc()
    two.delivery_failures.labels("member-a").inc()
    two.dead_letters.labels("member-a").inc()


@pytest.mark.parametrize(("outcome", "message", "reason"), [
    (Outcome.CONFLICT, "same id and version, different content", "conflict"),
    (Outcome.REJECTED, "bad envelope: 'objects' is not a list", "envelope"),
    (Outcome.REJECTED, "objects[2]: could not be checked (KeyError)", "internal"),
    (Outcome.REJECTED, "objects[0]: unsupported 'spec_version' '1.2': expected 2.1 or 2.0", "spec_version"),
    (Outcome.REJECTED, "objects[0]: invalid 'id' 'indicator--x': expected '<type>--<UUID>'", "structure"),
    (Outcome.REJECTED, "objects[0]: missing required property 'type'", "structure"),
    (Outcome.REJECTED, "objects[1]: STIX pattern does not parse: unexpected ']'", "pattern"),
    (Outcome.REJECTED, "objects[1]: [domain-name:value]: domain 'a..b' has an empty label", "value"),
    (Outcome.REJECTED, "objects[1]: 'confidence' must be an integer 0-100, not 'high'", "property"),
    (Outcome.REJECTED, "objects[1]: something nobody foresaw", "other"),
])
def test_reject_reasons_are_a_small_fixed_set(outcome: Outcome, message: str, reason: str) -> None:
    assert reject_reason(outcome, message) == reason

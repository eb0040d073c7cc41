"""The hub answers taxii2-client end to end: discovery, post, status, read back."""

from taxii2client.v21 import Collection, Server

from tests.hubs import PASSWORDS, Hub


def _indicator(n: int) -> dict[str, str]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "pattern": f"[ipv4-addr:value = '198.51.100.{n}']", "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z"}


def test_post_then_read_back_with_taxii2_client(hub: Hub) -> None:
    server = Server(f"{hub.base}/taxii2/", user="alice", password=PASSWORDS["alice"])
    assert server.title == "test hub"
    coll = Collection(hub.collection_url(), user="alice", password=PASSWORDS["alice"])
    status = coll.add_objects({"objects": [_indicator(i) for i in range(3)]}, wait_for_completion=True,
                              poll_interval=0.05, timeout=30)
    assert (status.status, status.success_count, status.failure_count) == ("complete", 3, 0)
    ids = [o["id"] for o in coll.get_objects()["objects"]]
    assert ids == [_indicator(i)["id"] for i in range(3)]


def test_status_is_pending_until_processed(hub: Hub) -> None:
    hub.call(lambda svc: svc.processor.pause())
    coll = Collection(hub.collection_url(), user="alice", password=PASSWORDS["alice"])
    status = coll.add_objects({"objects": [_indicator(7)]}, wait_for_completion=False)
    assert (status.status, status.pending_count, status.total_count) == ("pending", 1, 1)
    status.refresh()
    assert status.status == "pending"
    hub.call(lambda svc: svc.processor.resume())
    status.wait_until_final(poll_interval=0.05, timeout=30)
    assert (status.status, status.success_count, status.pending_count) == ("complete", 1, 0)

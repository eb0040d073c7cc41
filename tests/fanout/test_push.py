"""What the pusher counts as refused by a peer (pure part of fanout/push.py)."""

from exchange.fanout.push import refused


def test_a_re_post_is_not_a_refusal_whatever_words_the_peer_uses() -> None:
    """medallion 3.0.0 (memory backend) answers an existing id and version with a bare "Unable to process object":
    `exchange demo` showed the hub's identity, pushed from two collections, counted as refused on every run."""
    status = {"failures": [
        {"id": "identity--1", "version": "2024-01-01T00:00:00.000Z", "message": "Unable to process object"},
        {"id": "identity--2", "message": "Unable to process object because an identical entry already exists in "
                                         "collection 'c'."},
        {"id": "indicator--3", "message": "this version is already stored"},
        {"id": "indicator--4", "message": "objects[3]: invalid 'pattern'"},
    ]}
    assert refused(status) == ["indicator--4: objects[3]: invalid 'pattern'"]

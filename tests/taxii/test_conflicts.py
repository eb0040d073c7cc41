"""Same id and `modified`, different content: the first object stays and the second is a failure."""

from tests.hubs import Hub
from tests.taxii.helpers import collection, indicator, post


def test_a_changed_object_without_a_later_modified_is_refused(hub: Hub) -> None:
    original = indicator(1)
    [first] = post(collection(hub), [original])
    assert (first.success_count, first.failure_count) == (1, 0)
    changed = {**original, "name": "changed without bumping modified"}
    [second] = post(collection(hub), [changed, indicator(2)])
    assert (second.success_count, second.failure_count) == (1, 1)
    [failure] = second.failures
    assert failure["id"] == original["id"] and "later modified" in failure["message"]
    assert collection(hub).get_object(original["id"])["objects"] == [original]
    [again] = post(collection(hub), [original])  # the exact re-post is still a plain success
    assert (again.success_count, again.failure_count) == (1, 0)

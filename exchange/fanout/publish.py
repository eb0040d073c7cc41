"""Publishing a notice (fan-out stage): plan the member views, then commit them to the delivery queue.

The queue wakes the webhook workers and the SSE connections itself after the commit, so publishing never
waits on a subscriber: it returns once the entries are durable.
"""

from collections.abc import Iterable

from exchange.fanout.queue import DeliveryQueue
from exchange.fanout.records import Delivery, Member, Notice
from exchange.fanout.subscriptions import plan
from exchange.policy.tlp import Tlp


async def publish(queue: DeliveryQueue, members: Iterable[Member], notice: Notice,
                  default_tlp: Tlp = Tlp.GREEN) -> list[Delivery]:
    """Queue the notice for every matching webhook and SSE subscription; returns the new entries (an alert
    version published twice is queued once)."""
    return await queue.enqueue(plan(members, notice, default_tlp))

"""Who may receive what (pure): TLP 2.0 and sharing agreements, applied at every path out of the hub.

Every egress path (TAXII reads, pushes to peers, alert fan-out) asks `may_receive` per object; the rules
live here once. The hub's own organization is the recipient of what is sent to it, so:

- CLEAR: anyone.
- GREEN: the community: operators, members and peers.
- AMBER: the recipient organization (operators) and its constituents (members); a peer only when its
  agreement says it receives AMBER for its constituents.
- AMBER+STRICT: the recipient organization only (operators).
- RED: only recipients the object names (`x_exchange_recipients`), and operators, whom it was sent to.

Every recipient also has a ceiling (a member's entitlement, a peer agreement's max_tlp) that nothing above
ever passes.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exchange.policy.tlp import Tlp, tlp_of_markings

# STIX 2.1 has no standard way to name who may see a TLP:RED object; this custom property (a list of
# account names, peer ids or identity ids) does it for the hub, and is stripped from nothing: the names are
# the recipients themselves.
RECIPIENTS_PROPERTY = "x_exchange_recipients"


class Relation(StrEnum):
    OPERATOR = "operator"  # the hub's own organization: the recipient of everything sent to the hub
    MEMBER = "member"  # a constituent organization
    PEER = "peer"  # a foreign CERT under a sharing agreement


@dataclass(frozen=True, slots=True)
class Recipient:
    name: str
    relation: Relation
    max_tlp: Tlp  # entitlement (member) or agreement ceiling (peer); RED for operators
    amber_constituents: bool = False  # peers: the agreement lets AMBER through for the peer's constituents
    aliases: frozenset[str] = field(default_factory=frozenset)  # other names a RED object may use for it
    hub_identity: str | None = None  # a peer hub's identity id: its claims are never echoed back to it

    def named_in(self, names: Iterable[str]) -> bool:
        return any(n == self.name or n in self.aliases or n == self.hub_identity for n in names)


def may_receive(recipient: Recipient, tlp: Tlp, named: Iterable[str] = ()) -> bool:
    if tlp > recipient.max_tlp:
        return False
    relation = recipient.relation
    if tlp <= Tlp.GREEN:
        return True
    if tlp is Tlp.AMBER:
        return relation is not Relation.PEER or recipient.amber_constituents
    if tlp is Tlp.AMBER_STRICT:
        return relation is Relation.OPERATOR
    return relation is Relation.OPERATOR or recipient.named_in(named)


def object_tlp(obj: dict[str, Any], default: Tlp) -> Tlp:
    """An object's TLP: the strictest of its markings, or the hub's default for unmarked objects."""
    found = tlp_of_markings(obj.get("object_marking_refs"))
    return default if found is None else found


def named_recipients(obj: dict[str, Any]) -> tuple[str, ...]:
    names = obj.get(RECIPIENTS_PROPERTY)
    if not isinstance(names, list):
        return ()
    return tuple(n for n in names if isinstance(n, str))


def may_receive_object(recipient: Recipient, obj: dict[str, Any], default: Tlp) -> bool:
    return may_receive(recipient, object_tlp(obj, default), named_recipients(obj))

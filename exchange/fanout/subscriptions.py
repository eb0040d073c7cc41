"""Which subscriptions want a notice and what each member may see of it (fan-out stage, pure).

TLP is decided by policy/egress.py, the one place every egress path asks: a member is a constituent
(`Relation.MEMBER`), so CLEAR and GREEN reach it, AMBER reaches it, AMBER+STRICT never does (it is for the
hub's own organization), TLP:RED only when the object names the member (`x_exchange_recipients`), and
nothing above the member's `max_tlp` ever does.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from exchange.fanout.records import ChannelKind, Member, Notice, Outgoing, Subscription
from exchange.fanout.signing import bundle_id, idempotency_key
from exchange.model.timestamps import format_timestamp, parse_timestamp
from exchange.policy.egress import Recipient, Relation, may_receive, named_recipients, object_tlp
from exchange.policy.tlp import Tlp

QUEUED_CHANNELS = frozenset({ChannelKind.WEBHOOK, ChannelKind.SSE})  # TAXII reads the collection instead
_REF_LISTS = ("object_refs",)  # report and grouping (STIX 2.1 sections 4.9, 4.14): the alert's members


def matches(subscription: Subscription, notice: Notice) -> bool:
    """The subscription's filters accept the notice (TLP is not a filter: see view_for)."""
    f = subscription.filters
    if notice.level < f.min_level:
        return False
    if f.indicator_types and f.indicator_types.isdisjoint(notice.indicator_types):
        return False
    # Families come normalized from correlate's alias table; case still differs between galaxies and configs.
    if f.families and {x.casefold() for x in f.families}.isdisjoint(x.casefold() for x in notice.families):
        return False
    return not (f.countries and {c.upper() for c in f.countries}.isdisjoint(c.upper() for c in notice.countries))


def recipient_of(member: Member) -> Recipient:
    return Recipient(name=member.account, relation=Relation.MEMBER, max_tlp=member.max_tlp,
                     aliases=frozenset({member.name}))


@dataclass(frozen=True, slots=True)
class _Judged:
    """A notice's objects with what egress asks of each, worked out once per notice rather than per member."""

    alert: dict[str, Any] | None
    alert_named: tuple[str, ...]
    others: tuple[tuple[dict[str, Any], Tlp, tuple[str, ...]], ...]  # (object, TLP, named recipients)

    def names_recipients(self, alert_tlp: Tlp) -> bool:
        """Whether a view may depend on who the member is, not only on its entitlement: only TLP:RED is
        given by name (policy/egress.py)."""
        return alert_tlp is Tlp.RED or any(tlp is Tlp.RED for _, tlp, _ in self.others)

    @classmethod
    def of(cls, notice: Notice, default_tlp: Tlp) -> "_Judged":
        alert = next((o for o in notice.objects if o.get("id") == notice.alert_id), None)
        return cls(alert, named_recipients(alert) if alert is not None else (),
                   tuple((o, object_tlp(o, default_tlp), named_recipients(o)) for o in notice.objects
                         if o is not alert))


def view_for(member: Member, notice: Notice, default_tlp: Tlp = Tlp.GREEN) -> list[dict[str, Any]] | None:
    """The bundle objects `member` may receive, or None when it may not receive the alert itself.

    The alert is the reason for the delivery, so without it nothing is sent, not even indicators the member
    could see. Indicators are judged by their own markings (unmarked: `default_tlp`). The member's copy of
    the alert lists only the refs it can follow: a canonical indicator's id is derived from its pattern
    (normalize/ids.py), so a withheld id would let a member confirm a guessed value. An alert with no ref
    left would be an invalid grouping (object_refs needs one entry) and says nothing: None as well.
    """
    return _view(member, notice, _Judged.of(notice, default_tlp))


def _view(member: Member, notice: Notice, judged: _Judged) -> list[dict[str, Any]] | None:
    recipient = recipient_of(member)
    alert = judged.alert
    if alert is None or not may_receive(recipient, notice.tlp, judged.alert_named):
        return None
    kept: list[dict[str, Any]] = []
    withheld: set[str] = set()
    for obj, tlp, named in judged.others:
        if may_receive(recipient, tlp, named):
            kept.append(obj)
        else:
            withheld.add(str(obj.get("id")))
    if withheld:
        redacted = _without_refs(alert, withheld)
        if redacted is None:
            return None
        alert = redacted
    return [alert, *kept]


def _without_refs(alert: dict[str, Any], withheld: set[str]) -> dict[str, Any] | None:
    copy = dict(alert)
    for prop in _REF_LISTS:
        refs = alert.get(prop)
        if isinstance(refs, list):
            left = [r for r in refs if r not in withheld]
            if not left:
                return None
            copy[prop] = left
    return copy


def taxii_view(member: Member, notice: Notice, default_tlp: Tlp = Tlp.GREEN) -> list[dict[str, Any]] | None:
    """What the member sees of the notice in the TAXII `alerts` collection: its view when one of its TAXII
    subscriptions matches, else None (a member without a TAXII subscription sees nothing there)."""
    wanted = any(s.channel.kind is ChannelKind.TAXII and matches(s, notice) for s in member.subscriptions)
    return view_for(member, notice, default_tlp) if wanted else None


def plan(members: Iterable[Member], notice: Notice, default_tlp: Tlp = Tlp.GREEN) -> list[Outgoing]:
    """One Outgoing per queued (webhook, SSE) subscription that matches and whose member may see the alert."""
    version = format_timestamp(parse_timestamp(notice.version))  # one text per instant: ".000Z" == "Z"
    judged = _Judged.of(notice, default_tlp)
    # Members with the same entitlement see the same objects: build each distinct view's bundle once (a
    # thousand members cost one orjson.dumps, not a thousand). Which of the notice's objects a view keeps
    # decides it: the alert's refs lose the rest.
    bodies: dict[tuple[int, ...], bytes] = {}
    # Without a TLP:RED object, which names its recipients, a member's view follows from its entitlement
    # alone: judged once per entitlement rather than per member.
    by_entitlement = not judged.names_recipients(notice.tlp)
    views: dict[Tlp, bytes | None] = {}
    out: list[Outgoing] = []
    for member in members:
        subs = [s for s in member.subscriptions if s.channel.kind in QUEUED_CHANNELS and matches(s, notice)]
        if not subs:
            continue
        if by_entitlement and member.max_tlp in views:
            body = views[member.max_tlp]
        else:
            body = _body(member, notice, judged, version, bodies)
            if by_entitlement:
                views[member.max_tlp] = body
        if body is None:
            continue
        for sub in subs:  # one bytes object per view: the queue stores it once for all its subscribers
            out.append(Outgoing(subscription_id=sub.id, channel=sub.channel.kind, alert_id=notice.alert_id,
                                version=version, idempotency_key=idempotency_key(sub.id, notice.alert_id, version),
                                body=body))
    return out


def _body(member: Member, notice: Notice, judged: _Judged, version: str,
          bodies: dict[tuple[int, ...], bytes]) -> bytes | None:
    """The bundle of the member's view (None: it may not see the alert), built once per distinct view."""
    objects = _view(member, notice, judged)
    if objects is None:
        return None
    shape = tuple(map(id, objects[1:]))  # the notice's own dicts, alive for the whole plan
    if (body := bodies.get(shape)) is None:
        body = bodies[shape] = bundle_body(notice.alert_id, version, objects)
    return body


def bundle_body(alert_id: str, version: str, objects: Sequence[dict[str, Any]]) -> bytes:
    """The STIX 2.1 bundle (section 8; bundles carry no spec_version) of one view of one alert version: the
    same bytes for every subscriber with that view (the id names the version and the view, see
    signing.bundle_id), byte for byte what orjson.dumps of the whole bundle writes. orjson writes no newline,
    which SSE needs: a `data:` line ends at the first one."""
    bid = bundle_id(alert_id, version, [str(o.get("id")) for o in objects])
    return b'{"type":"bundle","id":"%s","objects":%s}' % (bid.encode(), orjson.dumps(objects))

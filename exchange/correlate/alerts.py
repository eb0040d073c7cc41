"""Correlate stage: the alert about one threat, its deterministic id and its life cycle (pure).

open -> escalated (any number of times) -> closed or expired, and back to open when the threat returns. Every
change is a new version of the same alert (same id, newer `modified`), never a new alert. The STIX form of an
alert is in alert_stix.py.
"""

from dataclasses import dataclass, replace
from enum import StrEnum

from exchange.correlate.rules import AlertRules, Decision, evaluate
from exchange.correlate.spread import SpreadState
from exchange.correlate.threats import ThreatKind, split_key
from exchange.dedup.merge import MIN_STEP
from exchange.normalize.ids import NAMESPACE, uuid5_text


class AlertStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    CLOSED = "closed"
    EXPIRED = "expired"


class AlertReason(StrEnum):
    THRESHOLD = "threshold-reached"  # opened: a level's countries reported within its window
    FAST_GROWTH = "fast-growth"  # opened or escalated because new countries arrived quickly
    MORE_COUNTRIES = "more-countries"  # escalated: a higher level's countries reported
    REPORTED_AGAIN = "reported-again"  # reopened after it expired or was closed
    NO_RECENT_REPORTS = "no-recent-reports"  # expired: nothing reported for the rules' expire_after
    WARNINGLISTED = "warninglisted"  # closed: the indicator turned out to be on a warninglist
    SUBSUMED = "part-of-wider-threat"  # closed: the indicator's family, campaign or intrusion set alerts instead
    OPERATOR = "closed-by-operator"


_ACTIVE = frozenset({AlertStatus.OPEN, AlertStatus.ESCALATED})


def alert_id(threat_key: str) -> str:
    """grouping--UUIDv5(project namespace, "alert:" + threat key): every hub raises the same alert for a threat.

    A grouping (STIX 2.1 section 4.7), not a report: a report is a finished, published product (`published` is
    required, section 4.14), while an alert is the hub's running assertion that these indicators share a context
    and is re-versioned as the threat spreads; grouping_context "suspicious-activity" says exactly that."""
    split_key(threat_key)
    return f"grouping--{uuid5_text(NAMESPACE.bytes, 'alert:' + threat_key)}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One version of the alert about a threat, with the spread as it stood when the version was made."""

    threat_key: str
    level: int  # >= 1: an alert exists only once a level was reached; a closed one keeps its last level
    level_name: str
    status: AlertStatus
    reason: AlertReason
    created: int  # µs; fixed by the first version
    modified: int
    spread: SpreadState

    @property
    def id(self) -> str:
        return alert_id(self.threat_key)

    @property
    def active(self) -> bool:
        return self.status in _ACTIVE

    @property
    def family(self) -> str | None:
        """The canonical malware family the alert is about, for a family threat."""
        kind, name = split_key(self.threat_key)
        return name if kind is ThreatKind.FAMILY else None


def _next(previous: Alert, spread: SpreadState, status: AlertStatus, reason: AlertReason, now: int,
          decision: Decision | None = None) -> Alert:
    level, name = previous.level, previous.level_name
    if decision is not None and decision.level:
        level, name = decision.level, decision.name or str(decision.level)
    return replace(previous, level=level, level_name=name, status=status, reason=reason, spread=spread,
                   modified=max(now, previous.modified + MIN_STEP))


def advance(previous: Alert | None, state: SpreadState, decision: Decision, *, now: int) -> Alert | None:
    """The next version of the threat's alert, or None when there is nothing new to say.

    A new version only when the life cycle moves (opened, escalated, closed, expired, reopened) or the threat
    reaches another country: members hear about an alert when it matters, not once per report. The level never
    drops while the alert is open."""
    if previous is not None and previous.threat_key != state.key:
        raise ValueError(f"the alert on {previous.threat_key!r} cannot advance with the state of {state.key!r}")
    if previous is not None and previous.active:
        if decision.suppressed:
            return _next(previous, state, AlertStatus.CLOSED, AlertReason.WARNINGLISTED, now)
        if decision.subsumed:
            return _next(previous, state, AlertStatus.CLOSED, AlertReason.SUBSUMED, now)
        if decision.quiet:
            return _next(previous, state, AlertStatus.EXPIRED, AlertReason.NO_RECENT_REPORTS, now)
        if decision.level > previous.level:
            reason = AlertReason.FAST_GROWTH if decision.boosted else AlertReason.MORE_COUNTRIES
            return _next(previous, state, AlertStatus.ESCALATED, reason, now, decision)
        if state.countries - previous.spread.countries:
            # Same level, one more country: members should see where the threat is, not only how bad it is.
            return _next(previous, state, previous.status, AlertReason.MORE_COUNTRIES, now, decision)
        return None
    if decision.level == 0:
        return None
    if previous is None:
        return Alert(threat_key=state.key, level=decision.level, level_name=decision.name or str(decision.level),
                     status=AlertStatus.OPEN,
                     reason=AlertReason.FAST_GROWTH if decision.boosted else AlertReason.THRESHOLD,
                     created=now, modified=now, spread=state)
    if previous.reason is AlertReason.OPERATOR and decision.level <= previous.level:
        return None  # an operator closed it (a false positive?): only a worse situation reopens it
    return _next(previous, state, AlertStatus.OPEN, AlertReason.REPORTED_AGAIN, now, decision)


def recompute(previous: Alert | None, state: SpreadState, rules: AlertRules, *, now: int) -> Alert | None:
    """evaluate, then advance: what the processor calls for each threat whose state changed in a batch, and a
    periodic sweep for the open alerts (so that quiet ones expire)."""
    return advance(previous, state, evaluate(state, rules, now), now=now)


def close(alert: Alert, *, now: int, reason: AlertReason = AlertReason.OPERATOR) -> Alert:
    """The operator's close: a new version, closed, with the same spread."""
    if not alert.active:
        return alert
    return _next(alert, alert.spread, AlertStatus.CLOSED, reason, now)

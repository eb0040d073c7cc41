"""Configuration of alerting: the [alerts] rules, the alerts collection and the [[members]] with their
subscriptions (split from config.py, which loads them). Secrets stay environment variable names here."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from exchange.correlate.families import canonical_family, family_slug
from exchange.correlate.rules import AlertRules, rules_from_config
from exchange.errors import ConfigError
from exchange.fanout.records import (
    Channel,
    Filters,
    Member,
    SseChannel,
    Subscription,
    TaxiiChannel,
    WebhookChannel,
)
from exchange.policy.egress import Recipient, Relation


@dataclass(frozen=True, slots=True)
class SubscriptionSettings:
    id: str
    channel: str  # webhook | sse | taxii
    url: str | None
    secret_env: str | None
    max_retry: float
    timeout: float
    filters: Filters


@dataclass(frozen=True, slots=True)
class MemberSettings:
    name: str
    account: str
    country: str
    sectors: tuple[str, ...]
    subscriptions: tuple[SubscriptionSettings, ...]


def parse_alert_rules(raw: Mapping[str, Any]) -> AlertRules:
    return rules_from_config(raw.get("alerts", {}))


def parse_members(raw: list[dict[str, Any]], recipients: Mapping[str, Recipient]) -> tuple[MemberSettings, ...]:
    members, seen = [], set()
    for index, entry in enumerate(raw):
        key = f"members[{index}]"
        recipient = recipients.get(entry["account"])
        if recipient is None or recipient.relation is not Relation.MEMBER:
            raise ConfigError(f"config key '{key}.account': {entry['account']!r} is not an account of kind member")
        subscriptions = []
        for j, sub in enumerate(entry.get("subscriptions", [])):
            where = f"{key}.subscriptions[{j}]"
            if sub["id"] in seen:
                raise ConfigError(f"config key '{where}.id': subscription {sub['id']!r} is defined twice")
            seen.add(sub["id"])
            if sub["channel"] == "webhook" and not (sub.get("url") and sub.get("secret_env")):
                raise ConfigError(f"config key '{where}': a webhook needs url and secret_env")
            subscriptions.append(SubscriptionSettings(
                id=sub["id"], channel=sub["channel"], url=sub.get("url"), secret_env=sub.get("secret_env"),
                max_retry=float(sub.get("max_retry", 86400)), timeout=float(sub.get("timeout", 10)),
                filters=Filters(min_level=sub.get("min_level", 0),
                                indicator_types=frozenset(sub.get("indicator_types", [])),
                                families=frozenset(sub.get("families", [])),
                                countries=frozenset(sub.get("countries", [])))))
        members.append(MemberSettings(name=entry["name"], account=entry["account"], country=entry["country"],
                                      sectors=tuple(entry.get("sectors", [])), subscriptions=tuple(subscriptions)))
    return tuple(members)


def missing_member_secrets(members: tuple[MemberSettings, ...], env: Mapping[str, str]) -> list[str]:
    return [s.secret_env for m in members for s in m.subscriptions if s.secret_env and not env.get(s.secret_env)]


def build_members(members: tuple[MemberSettings, ...], recipients: Mapping[str, Recipient],
                  env: Mapping[str, str]) -> tuple[Member, ...]:
    """The fan-out's members, webhook secrets read from `env`; ConfigError naming a missing one."""
    out = []
    for m in members:
        subs = []
        for s in m.subscriptions:
            channel: Channel
            if s.channel == "webhook":
                assert s.url is not None and s.secret_env is not None  # checked when parsed
                secret = env.get(s.secret_env)
                if not secret:
                    raise ConfigError(f"member {m.name!r}: environment variable {s.secret_env} (the signing secret "
                                      f"of subscription {s.id!r}) is not set")
                channel = WebhookChannel(url=s.url, secret=secret, max_retry=s.max_retry, timeout=s.timeout)
            elif s.channel == "sse":
                channel = SseChannel()
            else:
                channel = TaxiiChannel()
            # Alerts name families by their canonical key: a member may write any alias ("WannaCry", "WCry").
            families = frozenset(canonical_family(f) or family_slug(f) for f in s.filters.families)
            subs.append(Subscription(id=s.id, channel=channel, filters=replace(s.filters, families=families)))
        out.append(Member(name=m.name, account=m.account, country=m.country, max_tlp=recipients[m.account].max_tlp,
                          sectors=m.sectors, subscriptions=tuple(subs)))
    return tuple(out)

"""Observations and times for the correlate tests: explicit microsecond instants, never the clock."""

from typing import Any

from exchange.correlate.threats import Observation
from exchange.model.timestamps import parse_timestamp
from exchange.policy.tlp import Tlp

T0 = parse_timestamp("2017-05-12T07:44:00Z")  # the first WannaCry reports
MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
KILL_SWITCH = "indicator--a0b1c2d3-0000-5000-8000-000000000001"
HASH = "indicator--a0b1c2d3-0000-5000-8000-000000000002"
IP = "indicator--a0b1c2d3-0000-5000-8000-000000000003"
COUNTRIES = ["FR", "DE", "PL", "IT", "ES", "NL", "BE", "AT", "CZ", "SE", "FI", "DK", "PT", "IE", "GR", "HU", "RO",
             "BG", "HR", "SI", "SK", "LT", "LV", "EE", "LU", "MT", "CY", "GB", "NO", "CH"]


def obs(country: str | None = "FR", *, at: int = T0, source: str | None = None, indicator: str = KILL_SWITCH,
        tlp: Tlp = Tlp.GREEN, **props: Any) -> Observation:
    return Observation(indicator_id=indicator, source=source or f"cert-{(country or 'xx').lower()}",
                       country=country, time=at, tlp=tlp, **props)


def spread_over(countries: list[str], *, start: int = T0, step: int = MINUTE, **props: Any) -> list[Observation]:
    return [obs(c, at=start + i * step, **props) for i, c in enumerate(countries)]

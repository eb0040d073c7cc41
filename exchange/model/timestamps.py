"""STIX/TAXII timestamps as integer microseconds since the epoch (UTC).

Integers sort, index and compare in SQL; the text form is rebuilt only at the edge.
STIX 2.1 section 3.2 requires UTC with a trailing `Z`; precision beyond microseconds is truncated.
"""

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

# [0-9], not \d: \d also matches non-ASCII digits; fullmatch, not $: $ also matches before a trailing newline.
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_DAYS = range((date.min - _EPOCH_DATE).days, (date.max - _EPOCH_DATE).days + 1)


def parse_timestamp(text: Any) -> int:
    """Parse a STIX timestamp; ValueError with the offending text when it is not one."""
    return parse_timestamp_text(text) if type(text) is str else _parse_strict(text)


@lru_cache(maxsize=1024)  # an object's timestamps are read twice (header, claim); created is often valid_from too
def parse_timestamp_text(text: str) -> int:
    """parse_timestamp for a caller that has checked `type(text) is str` (the hot paths: one call less)."""
    # The STIX form pinned at its separators (offsets 4, 7, 10, 13, 16, 19: "--T::" then "Z" or "." with ASCII
    # digits up to the final Z), cheaper than _TIMESTAMP; fromisoformat then checks every digit between them and
    # truncates fractions to microseconds as _parse_strict does. Whatever it refuses (ISO 8601's 24:00, leap
    # seconds, impossible dates) goes to _parse_strict, which has the final word and the error message.
    separators = text[4:20:3]
    if separators == "--T::Z":
        stix_form = len(text) == 20
    else:
        stix_form = (separators == "--T::." and text[-1:] == "Z" and (fraction := text[20:-1]).isdigit()
                     and fraction.isascii())
    if stix_form:
        try:
            delta = datetime.fromisoformat(text) - _EPOCH
        except ValueError:
            pass
        else:
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _parse_strict(text)  # lru_cache keeps no exceptions: an invalid timestamp raises every time


def _parse_strict(text: Any) -> int:
    match = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a STIX timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z): {text!r}")
    year, month, day, hour, minute, second, fraction = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid date/time: {text!r} ({exc})") from None
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros


@lru_cache(maxsize=1024)  # one merge formats the same instant several times (created, valid_from, provenance)
def format_timestamp(micros: int) -> str:
    """Render microseconds as a STIX timestamp with microsecond precision."""
    if type(micros) is not int:
        return _format_slow(micros)
    day, rest = divmod(micros, 86_400_000_000)
    if day not in _DAYS:
        return _format_slow(micros)
    minute, rest = divmod(rest, 60_000_000)
    second, fraction = divmod(rest, 1_000_000)
    # Tables and str() instead of format specs (%02d, :06d), which cost more than the rest of this together.
    return f"{_day_text(day)}T{_HOUR_MINUTE[minute]}:{_TWO_DIGITS[second]}.{str(fraction + 1_000_000)[1:]}Z"


_TWO_DIGITS = [f"{n:02d}" for n in range(60)]
_HOUR_MINUTE = [f"{hour}:{minute}" for hour in _TWO_DIGITS[:24] for minute in _TWO_DIGITS]


@lru_cache(maxsize=4096)
def _day_text(day: int) -> str:
    moment = _EPOCH_DATE + timedelta(days=day)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def _format_slow(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    # Built by hand: strftime("%Y") does not zero-pad years before 1000 on every platform.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{fraction:06d}Z")


def now_micros() -> int:
    delta = datetime.now(tz=UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

"""STIX/TAXII timestamps as integer microseconds since the epoch (UTC).

Integers sort, index and compare in SQL; the text form is rebuilt only at the edge.
STIX 2.1 section 3.2 requires UTC with a trailing `Z`; precision beyond microseconds is truncated.
"""

import re
from datetime import UTC, datetime

# [0-9], not \d: \d also matches non-ASCII digits; fullmatch, not $: $ also matches before a trailing newline.
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(text: str) -> int:
    """Parse a STIX timestamp; ValueError with the offending text when it is not one."""
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


def format_timestamp(micros: int) -> str:
    """Render microseconds as a STIX timestamp with millisecond-or-better precision."""
    seconds, fraction = divmod(micros, 1_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    # Built by hand: strftime("%Y") does not zero-pad years before 1000 on every platform.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{fraction:06d}Z")


def now_micros() -> int:
    delta = datetime.now(tz=UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

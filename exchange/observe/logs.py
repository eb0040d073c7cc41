"""Structured logs (observability): one event per line, key=value or JSON, carrying the ids given as `extra=`.

    log.info("object rejected", extra={"status_id": s.id, "object_id": i, "source": "peer:cert-fr"})

prints `ts=... level=info logger=... msg="object rejected" status_id=... object_id=... source=peer:cert-fr`
(or the same as one JSON object). Plain `%`-style calls keep working: their message is rendered as before.
"""

import logging
import re
import sys
import traceback
from enum import StrEnum
from typing import Any

import orjson

from exchange.model.timestamps import format_timestamp


class LogFormat(StrEnum):
    KV = "kv"  # logfmt: greppable by eye, parsed by Loki/Vector/Splunk
    JSON = "json"  # one JSON object per line, for collectors that want types


# Attributes every LogRecord has; anything else on a record came from `extra=` and is printed as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_BARE = re.compile(r"[A-Za-z0-9_.,:;/@+\-*#%&~^!?()\[\]{}<>|']+")  # values printed without quotes
_KEY_JUNK = re.compile(r"[^A-Za-z0-9_.-]")


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event as ordered fields: ts, level, logger, msg, then the extras, then the traceback if any."""
    fields: dict[str, Any] = {
        "ts": format_timestamp(int(record.created * 1_000_000)),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[_KEY_JUNK.sub("_", key) or "_"] = value
    if record.exc_info:
        fields["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
    elif record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


def _kv_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = value if isinstance(value, str) else str(value)
    # Quoted as a JSON string otherwise: escapes newlines (one event, one line), quotes and control characters.
    return text if _BARE.fullmatch(text) else orjson.dumps(text).decode()


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_kv_value(v)}" for k, v in event_fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # default=str: an extra that JSON cannot hold (a Path, an exception) is logged as its text, never dropped.
        return orjson.dumps(event_fields(record), default=str).decode()


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt is LogFormat.JSON else KeyValueFormatter()


def configure_logging(level: str, fmt: LogFormat | str = LogFormat.KV) -> None:
    """Route every logger to stderr in the chosen format (replacing handlers a previous call installed)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(LogFormat(fmt)))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)

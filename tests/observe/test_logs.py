"""Structured logs: one event per line, key=value or JSON, with the ids that let an operator follow an object."""

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from exchange.cli import build_parser
from exchange.observe.logs import JsonFormatter, KeyValueFormatter
from tests.hubs import INBOX, free_port
from tests.observe.support import config_with
from tests.taxii.helpers import indicator

TAXII = "application/taxii+json;version=2.1"
_KV = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_kv(line: str) -> dict[str, Any]:
    """A logfmt line back into fields; quoted values are JSON strings."""
    fields: dict[str, Any] = {}
    for key, raw in _KV.findall(line):
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
    assert " ".join(f"{k}={v}" for k, v in _KV.findall(line)) == line, f"not key=value throughout: {line}"
    return fields


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("exchange.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, val in extra.items():
        setattr(rec, key, val)
    return rec


def test_key_value_lines_carry_the_extras_and_stay_on_one_line() -> None:
    line = KeyValueFormatter().format(record("peer %s: %s", "cert-fr", 'HTTP 503: "down"\nretrying', exc=True,
                                             peer="cert-fr", status_id="s 1", count=3, path=Path("/x")))
    assert "\n" not in line
    fields = parse_kv(line)
    assert fields["level"] == "warning" and fields["logger"] == "exchange.test"
    assert fields["msg"] == 'peer cert-fr: HTTP 503: "down"\nretrying'
    assert (fields["peer"], fields["status_id"], fields["count"], fields["path"]) == ("cert-fr", "s 1", "3", "/x")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", fields["ts"])
    assert fields["exc"].startswith("Traceback") and "ValueError: bad\nthing" in fields["exc"]


def test_json_lines_carry_the_extras_with_their_types() -> None:
    line = JsonFormatter().format(record("object %s", "rejected", object_id="indicator--1", count=3, path=Path("/x")))
    assert "\n" not in line
    assert json.loads(line) | {"ts": "-"} == {"ts": "-", "level": "warning", "logger": "exchange.test",
                                              "msg": "object rejected", "object_id": "indicator--1", "count": 3,
                                              "path": "/x"}


def test_serve_help_lists_the_log_format() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--log-format", "xml"])
    args = build_parser().parse_args(["serve", "--log-format", "json"])
    assert args.log_format == "json"


@pytest.mark.parametrize(("flag", "hub_lines"), [(["--log-format", "json"], ""), ([], 'log_format = "json"')])
def test_serve_logs_json_events_that_follow_an_object(tmp_path: Path, flag: list[str], hub_lines: str) -> None:
    lines = _serve_and_post(tmp_path, flag, hub_lines)
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in events)
    rejected = [e for e in events if e["msg"] == "object rejected"]
    assert len(rejected) == 1 and rejected[0]["source"] == "alice" and rejected[0]["status_id"]
    assert rejected[0]["object_id"] == "indicator--00000000-0000-4000-8000-000000000002"
    stored = [e for e in events if e.get("object_id") == "indicator--00000000-0000-4000-8000-000000000001"]
    assert stored and stored[0]["outcome"] == "stored" and stored[0]["status_id"] == rejected[0]["status_id"]
    processed = [e for e in events if e["msg"].startswith("envelope processed")]
    assert processed and processed[0]["status_id"] == rejected[0]["status_id"]


def test_serve_logs_key_value_by_default(tmp_path: Path) -> None:
    lines = _serve_and_post(tmp_path, [], "")
    events = [parse_kv(line) for line in lines]
    assert any(e["msg"] == "object rejected" and e["source"] == "alice" for e in events)


def _serve_and_post(tmp_path: Path, flag: list[str], hub_lines: str) -> list[str]:
    """Run `exchange serve` at debug level, post one good and one bad object, stop it; its stderr lines."""
    config, port, log_path = config_with(tmp_path, hub_lines), free_port(), tmp_path / "stderr.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "exchange", "serve", "--config", str(config), "--port",
                                 str(port), "--log-level", "debug", *flag], stdout=subprocess.DEVNULL, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, proc)
        bad = indicator(2) | {"pattern": "[this is not a pattern"}
        resp = requests.post(f"{base}/api/collections/{INBOX}/objects/", json={"objects": [indicator(1), bad]},
                             auth=("alice", "alice-pw"), headers={"Content-Type": TAXII, "Accept": TAXII}, timeout=10)
        assert resp.status_code == 202, resp.text
        status_url = f"{base}/api/status/{resp.json()['id']}/"
        deadline = time.monotonic() + 30
        while requests.get(status_url, auth=("alice", "alice-pw"), headers={"Accept": TAXII},
                           timeout=10).json()["status"] != "complete":
            assert time.monotonic() < deadline, "the envelope was not processed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    return [line for line in log_path.read_text().splitlines() if line]


def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the hub exited"
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("the hub did not answer within 30 s")

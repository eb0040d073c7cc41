"""Test harness: real hubs on 127.0.0.1 with an ephemeral port, in a thread or as a subprocess."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from exchange.app import build_app, start_site
from exchange.config import load_settings
from exchange.policy.credentials import hash_password, hash_token
from exchange.taxii.context import SERVICES, Services
from exchange.taxii.tls import listener_context

INBOX = "31110fdc-ecd0-46fd-994f-960c58b21925"
ALERTS = "2e708668-f712-4202-973a-8e410eea1a3a"
SECRET = "b1d5e0c2-0000-4000-8000-00000000beef"
CANONICAL = "c7484c5c-18c8-4bcc-acb0-d4d778671765"
TOKEN = "exh_test-token-for-bearer-auth-0123456789abcdef"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "writer": "writer-pw", "greenorg": "greenorg-pw",
             "amberorg": "amberorg-pw"}


@cache
def _hashes() -> dict[str, str]:
    return {name: hash_password(pw) for name, pw in PASSWORDS.items()}


def write_config(directory: Path, *, max_content_length: int = 10 * 1024 * 1024, max_page_size: int = 1000) -> Path:
    """alice (an operator) reads+writes inbox and reads alerts; bob (a member) reads alerts only; writer may
    only write inbox; the token account reads inbox; nobody but alice sees the secret collection. greenorg and
    amberorg are member organizations entitled to TLP:GREEN and TLP:AMBER, reading inbox and canonical."""
    h = _hashes()
    text = f"""
[hub]
title = "test hub"
data_dir = "data"
max_content_length = {max_content_length}
max_page_size = {max_page_size}
default_page_size = {min(1000, max_page_size)}
identity_name = "Test CERT"
canonical_collection = "canonical"

[[api_roots]]
path = "api"
title = "Test root"
default = true

[[api_roots.collections]]
id = "{INBOX}"
alias = "inbox"
title = "Inbox"

[[api_roots.collections]]
id = "{ALERTS}"
alias = "alerts"
title = "Alerts"

[[api_roots.collections]]
id = "{CANONICAL}"
alias = "canonical"
title = "Canonical indicators"

[[api_roots.collections]]
id = "{SECRET}"
alias = "secret"
title = "Secret"

[[accounts]]
username = "alice"
kind = "operator"
password_hash = "{h['alice']}"
country = "FR"
can_read = ["inbox", "alerts", "secret", "canonical"]
can_write = ["inbox", "secret"]

[[accounts]]
username = "bob"
password_hash = "{h['bob']}"
can_read = ["alerts"]

[[accounts]]
username = "writer"
kind = "operator"
password_hash = "{h['writer']}"
country = "PL"
trust = 0.5
can_write = ["inbox"]

[[accounts]]
username = "tokenbot"
kind = "operator"
token_hashes = ["{hash_token(TOKEN)}"]
can_read = ["inbox"]

[[accounts]]
username = "greenorg"
kind = "member"
max_tlp = "green"
password_hash = "{h['greenorg']}"
can_read = ["inbox", "canonical", "alerts"]

[[accounts]]
username = "amberorg"
kind = "member"
max_tlp = "amber"
password_hash = "{h['amberorg']}"
can_read = ["inbox", "canonical", "alerts"]
"""
    path = directory / "hub.toml"
    path.write_text(text)
    return path


@dataclass
class Hub:
    base: str  # http://127.0.0.1:PORT
    data_dir: Path
    config: Path
    app: web.Application | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def call(self, fn: Callable[[Services], Any]) -> Any:
        """Run fn(services) on the hub's own loop (awaiting it if it is a coroutine) and return its result."""
        assert self.app is not None and self.loop is not None

        async def run() -> Any:
            result = fn(self.app[SERVICES])  # type: ignore[index]
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(60)

    @property
    def api(self) -> str:
        return f"{self.base}/api/"

    def collection_url(self, collection_id: str = INBOX) -> str:
        return f"{self.base}/api/collections/{collection_id}/"


@contextmanager
def thread_hub(directory: Path, **config: int) -> Iterator[Hub]:
    """The real app on a real socket, its event loop in a background thread."""
    path = write_config(directory, **config)
    with serve_in_thread(path) as hub:
        yield hub


@contextmanager
def serve_in_thread(path: Path, *, env: Mapping[str, str] | None = None, port: int = 0) -> Iterator[Hub]:
    """The app of a config file on 127.0.0.1 (port 0 unless given), its loop in a thread (restartable on the
    same path)."""
    settings = load_settings(path).with_overrides(port=port)
    app = build_app(settings, env=env if env is not None else {})
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        runner, bound = await start_site(app, "127.0.0.1", port, ssl_context=listener_context(settings))
        stop = asyncio.Event()
        box.update(port=bound, stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the test below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30) or "error" in box:
        raise RuntimeError(f"hub did not start: {box.get('error')}")
    try:
        scheme = "https" if settings.hub.tls is not None else "http"
        yield Hub(base=f"{scheme}://127.0.0.1:{box['port']}", data_dir=settings.hub.data_dir, config=path, app=app,
                  loop=box["loop"])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "hub did not shut down within 30 s"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process_hub(config: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "serve", "--config", str(config), "--port", str(port),
         "--data-dir", str(data_dir), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            requests.get(f"http://127.0.0.1:{port}/taxii2/", auth=("alice", PASSWORDS["alice"]), timeout=2)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("hub did not answer within 30 s")


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)

"""Test harness for member organizations: a webhook endpoint and an SSE reader, each in a thread, for thread hubs."""

import http.server
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests

from tests.hubs import free_port

MEMBERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "members.md"


def documented_verify() -> Callable[[str, str, bytes], bool]:
    """verify_exchange_signature exactly as docs/members.md tells members to copy it."""
    blocks = re.findall(r"```python\n(.*?)```", MEMBERS_DOC.read_text(), re.S)
    [code] = [b for b in blocks if "def verify_exchange_signature" in b]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify_exchange_signature"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def key(self) -> str:
        return self.headers["X-Exchange-Idempotency-Key"]

    @property
    def alert(self) -> dict[str, Any]:
        """The alert grouping of the delivered bundle (it comes first)."""
        first: dict[str, Any] = orjson.loads(self.body)["objects"][0]
        return first


class WebhookReceiver:
    """Members' webhook endpoints on one loopback port, one path each: records every POST and answers `status`.

    The port is chosen up front and bound only by start(), so the hub can be configured with a URL on which
    nothing listens yet (connection refused: a receiver that is down)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 204
        self.posts: list[Post] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.status
                with receiver._lock:
                    receiver.posts.append(Post(self.path.strip("/"), dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self, path: str, *, delivered: bool = True) -> list[Post]:
        """The POSTs to one path so far (only those answered 2xx when `delivered`)."""
        with self._lock:
            return [p for p in self.posts if p.path == path and (not delivered or 200 <= p.status < 300)]

    def __enter__(self) -> "WebhookReceiver":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SseReader:
    """A member's live SSE connection, read in a thread until the hub closes it (or stop())."""

    def __init__(self, url: str, auth: tuple[str, str]) -> None:
        self.events: list[dict[str, str]] = []
        self.error: BaseException | None = None
        self._response: requests.Response | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, auth), daemon=True)
        self._thread.start()
        if not self._connected.wait(10):
            raise AssertionError(f"no SSE stream at {url}: {self.error!r}")

    def _run(self, url: str, auth: tuple[str, str]) -> None:
        try:
            with requests.get(url, auth=auth, headers={"Accept": "text/event-stream"}, stream=True,
                              timeout=(5, 120)) as response:
                assert response.status_code == 200, response.text
                self._response = response
                self._connected.set()
                current: dict[str, str] = {}
                for raw in response.iter_lines():
                    line = raw.decode()
                    if line == "" and current:
                        if "data" in current:  # not a bare `retry:` hint
                            self.events.append(current)
                        current = {}
                    elif line and not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        current[name] = value
        except BaseException as exc:  # a closed stream ends the thread; wait() reports the error
            self.error = exc
        finally:
            self._connected.set()

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(event id, alert grouping) of every event so far."""
        return [(e["id"], orjson.loads(e["data"])["objects"][0]) for e in list(self.events)]

    def wait(self, count: int, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= count, f"{len(self.events)} SSE events, wanted {count}; error {self.error!r}"

    def join(self, within: float = 30) -> None:
        """After the hub stopped (it ends every stream on shutdown)."""
        self._thread.join(within)
        assert not self._thread.is_alive(), "the SSE stream did not end with the hub"

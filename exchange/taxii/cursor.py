"""Stateless keyset cursors for TAXII `next` (TAXII 2.1 section 3.4): signed, opaque, restart-proof.

The token carries the date_added of the last object returned and a digest of the query it belongs to;
the HMAC key lives in the data directory, so tokens survive restarts and cannot be forged or reused
with another query. There is no server-side session to expire.
"""

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import msgpack

from exchange.errors import InvalidRequest

_VERSION = 1
_MAC_BYTES = 16


def load_cursor_key(data_dir: Path) -> bytes:
    path = data_dir / "cursor.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, fingerprint: bytes, last_date_added: int) -> str:
        payload = msgpack.packb([_VERSION, fingerprint, last_date_added])
        return _b64(payload + self._mac(payload))

    def decode(self, token: str, fingerprint: bytes) -> int:
        """The date_added to resume after; InvalidRequest for a token not made by us for this query."""
        try:
            raw = _unb64(token)
        except (ValueError, TypeError):
            raise InvalidRequest("invalid 'next' token: not base64url") from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidRequest("invalid 'next' token: not issued by this server")
        version, token_fingerprint, last = msgpack.unpackb(payload)
        if version != _VERSION or token_fingerprint != fingerprint:
            raise InvalidRequest("invalid 'next' token: it belongs to a different query or resource")
        return int(last)

"""HTTP authentication: Basic (what taxii2-client, MISP and OpenCTI send) and bearer API tokens.

scrypt costs tens of milliseconds by design, so a verified credential is remembered under a keyed
digest (never the secret itself) for a while; a cache miss is verified in a worker thread.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from exchange.errors import Unauthenticated
from exchange.policy.access import Account
from exchange.policy.credentials import verify_password, verify_token

CACHE_SIZE = 4096
CACHE_TTL = 300.0  # seconds; a removed account stops working at the next restart or after this


class Authenticator:
    def __init__(self, accounts: tuple[Account, ...]) -> None:
        self._by_name = {a.username: a for a in accounts}
        self._with_tokens = [a for a in accounts if a.token_hashes]
        self._key = secrets.token_bytes(32)  # per process: cache keys mean nothing outside it
        self._cache: OrderedDict[bytes, tuple[Account, float]] = OrderedDict()

    def _cached(self, key: bytes) -> Account | None:
        hit = self._cache.get(key)
        if hit is None or hit[1] < time.monotonic():
            return None
        self._cache.move_to_end(key)
        return hit[0]

    def _remember(self, key: bytes, account: Account) -> None:
        self._cache[key] = (account, time.monotonic() + CACHE_TTL)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def authenticate(self, header: str | None) -> Account:
        if not header:
            raise Unauthenticated("send HTTP Basic credentials or an 'Authorization: Bearer <token>' header")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme not in ("basic", "bearer"):
            raise Unauthenticated(f"unsupported authorization scheme {scheme!r}; use Basic or Bearer")
        # surrogatepass: a header with undecodable bytes arrives with surrogates; it must be a 401, not a 500.
        key = hmac.new(self._key, header.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        account = self._cached(key)
        if account is None:
            check = self._basic if scheme == "basic" else self._bearer
            account = await asyncio.to_thread(check, value.strip())
            self._remember(key, account)
        return account

    def _basic(self, value: str) -> Account:
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeError, ValueError):
            raise Unauthenticated("malformed HTTP Basic credentials") from None
        account = self._by_name.get(username)
        # Unknown users and wrong passwords get the same answer and cost (no account enumeration).
        encoded = account.password_hash if account and account.password_hash else _DUMMY_HASH
        if not (sep and verify_password(password, encoded) and account and account.password_hash):
            raise Unauthenticated("invalid username or password")
        return account

    def _bearer(self, token: str) -> Account:
        for account in self._with_tokens:
            if any(verify_token(token, h) for h in account.token_hashes):
                return account
        raise Unauthenticated("invalid API token")


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


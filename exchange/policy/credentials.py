"""Salted credential hashes: scrypt for passwords, salted SHA-256 for high-entropy API tokens.

Tokens are random 256-bit strings, so a fast salted hash is enough; passwords are not, so they get
a memory-hard KDF. Nothing here keeps a plaintext secret.
"""

import base64
import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    return "exh_" + secrets.token_urlsafe(32)


def hash_token(token: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    return f"sha256${_b64(salt)}${_b64(hashlib.sha256(salt + token.encode()).digest())}"


def verify_token(token: str, encoded: str) -> bool:
    try:
        scheme, salt, digest = encoded.split("$")
        if scheme != "sha256":
            return False
        actual = hashlib.sha256(base64.b64decode(salt) + token.encode()).digest()
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def is_credential_hash(encoded: str) -> bool:
    """Whether a config value looks like one of our hashes (guards against plaintext in config)."""
    parts = encoded.split("$")
    return (parts[0] == "scrypt" and len(parts) == 6) or (parts[0] == "sha256" and len(parts) == 3)

"""Policy: salted credential hashes; right secrets verify, wrong secrets and malformed encodings never do."""

import base64
import re

import pytest

from exchange.policy.credentials import (
    hash_password,
    hash_token,
    is_credential_hash,
    new_token,
    verify_password,
    verify_token,
)

SCRYPT = re.compile(r"^scrypt\$16384\$8\$1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")


@pytest.fixture(scope="module")
def alice_hash() -> str:
    return hash_password("correct horse battery staple")


def test_a_password_hash_is_scrypt_with_a_fresh_salt(alice_hash: str) -> None:
    match = SCRYPT.match(alice_hash)
    assert match is not None, alice_hash
    salt, digest = (base64.b64decode(g) for g in match.groups())
    assert (len(salt), len(digest)) == (16, 32)
    assert "correct horse" not in alice_hash
    again = hash_password("correct horse battery staple")
    assert again != alice_hash  # salted: the same password never hashes the same twice
    assert verify_password("correct horse battery staple", again)


def test_a_given_salt_makes_the_hash_deterministic() -> None:
    salt = bytes(range(16))
    assert hash_password("pw", salt=salt) == hash_password("pw", salt=salt)
    assert hash_password("pw", salt=salt) != hash_password("pw", salt=bytes(16))


def test_the_right_password_verifies_and_wrong_ones_do_not(alice_hash: str) -> None:
    assert verify_password("correct horse battery staple", alice_hash)
    for wrong in ("", "correct horse battery stapl", "Correct horse battery staple",
                  "correct horse battery staple ", "correct horse battery staple\n"):
        assert not verify_password(wrong, alice_hash), wrong


def test_unicode_and_empty_passwords_round_trip() -> None:
    for password in ("pässwörd-ĳ-日本", ""):
        assert verify_password(password, hash_password(password))
    assert not verify_password("passwörd", hash_password("pässwörd"))


@pytest.mark.parametrize("encoded", [
    "",
    "hunter2",
    "scrypt$",
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==",
    "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA$extra",
    "scrypt$abc$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "scrypt$16384$8$1$!!!!$@@@@",
    "scrypt$16384$8$1$AAAA$====",
    "scrypt$16384$8$1$AAAA$",
    "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # n not a power of 2
    "scrypt$1048576$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # over scrypt's maxmem
    "scrypt$16384$8$1$é$é",
    "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "sha256$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
])
def test_malformed_password_hashes_never_verify(encoded: str) -> None:
    assert not verify_password("", encoded)
    assert not verify_password("hunter2", encoded)


def test_a_hash_from_another_scheme_or_salt_does_not_verify(alice_hash: str) -> None:
    scheme, n, r, p, salt, digest = alice_hash.split("$")
    other_salt = base64.b64encode(bytes(16)).decode()
    assert not verify_password("correct horse battery staple", "$".join([scheme, n, r, p, other_salt, digest]))
    assert not verify_password("correct horse battery staple", "$".join([scheme, n, "4", p, salt, digest]))
    assert not verify_token("correct horse battery staple", alice_hash)


def test_new_tokens_are_random_and_prefixed() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert token.startswith("exh_") and len(token) >= 40
        assert re.fullmatch(r"exh_[A-Za-z0-9_-]+", token)


def test_token_hashes_are_salted_and_verify() -> None:
    token = new_token()
    first, second = hash_token(token), hash_token(token)
    assert first != second
    assert first.startswith("sha256$") and token not in first
    assert verify_token(token, first) and verify_token(token, second)
    assert hash_token(token, salt=b"s" * 16) == hash_token(token, salt=b"s" * 16)


def test_wrong_tokens_are_rejected() -> None:
    token = new_token()
    encoded = hash_token(token)
    for wrong in ("", token[:-1], token + "x", token.upper(), new_token(), " " + token):
        assert not verify_token(wrong, encoded), wrong
    assert not verify_password(token, encoded)


@pytest.mark.parametrize("encoded", ["", "sha256", "sha256$", "sha256$$", "sha256$AAAA$", "sha256$!!!$@@@",
                                     "sha256$AAAA$BBBB$CCCC", "sha256$é$é", "md5$AAAA$BBBB", "plain-token"])
def test_malformed_token_hashes_never_verify(encoded: str) -> None:
    assert not verify_token("", encoded)
    assert not verify_token("exh_anything", encoded)


def test_is_credential_hash_tells_hashes_from_plaintext(alice_hash: str) -> None:
    assert is_credential_hash(alice_hash)
    assert is_credential_hash(hash_token(new_token()))
    for plain in ("hunter2", "", "scrypt", "sha256$only-two", new_token(), "correct horse battery staple"):
        assert not is_credential_hash(plain), plain

"""Policy: which account may read, write or even see which collection (pure decisions)."""

from collections.abc import Iterable

import pytest

from exchange.policy.access import Account, Action, allowed, visible

INBOX, ALERTS, SECRET = "inbox-id", "alerts-id", "secret-id"


def account(can_read: Iterable[str] = (), can_write: Iterable[str] = ()) -> Account:
    return Account(username="a", password_hash=None, token_hashes=(), can_read=frozenset(can_read),
                   can_write=frozenset(can_write))


def test_grants_are_per_collection_and_per_action() -> None:
    acct = account(can_read={INBOX, ALERTS}, can_write={INBOX})
    assert allowed(acct, INBOX, Action.READ) and allowed(acct, INBOX, Action.WRITE)
    assert allowed(acct, ALERTS, Action.READ) and not allowed(acct, ALERTS, Action.WRITE)
    assert not allowed(acct, SECRET, Action.READ) and not allowed(acct, SECRET, Action.WRITE)


def test_write_does_not_imply_read_nor_read_write() -> None:
    writer, reader = account(can_write={INBOX}), account(can_read={INBOX})
    assert not allowed(writer, INBOX, Action.READ) and allowed(writer, INBOX, Action.WRITE)
    assert allowed(reader, INBOX, Action.READ) and not allowed(reader, INBOX, Action.WRITE)


@pytest.mark.parametrize("collection", [INBOX, ALERTS, SECRET, "any-other-id"])
def test_star_grants_every_collection_for_that_action_only(collection: str) -> None:
    reads_all = account(can_read={"*"})
    assert allowed(reads_all, collection, Action.READ)
    assert not allowed(reads_all, collection, Action.WRITE)
    writes_all = account(can_read={INBOX}, can_write={"*"})
    assert allowed(writes_all, collection, Action.WRITE)
    assert allowed(writes_all, collection, Action.READ) is (collection == INBOX)
    assert visible(reads_all, collection) and visible(writes_all, collection)


def test_a_collection_is_visible_to_readers_and_writers_only() -> None:
    assert visible(account(can_read={INBOX}), INBOX)
    assert visible(account(can_write={INBOX}), INBOX)
    assert not visible(account(can_read={ALERTS}, can_write={ALERTS}), INBOX)
    assert not visible(account(), INBOX)


def test_no_grants_means_nothing_and_star_is_not_a_prefix_match() -> None:
    nobody = account()
    for collection in (INBOX, "*"):
        for action in Action:
            assert not allowed(nobody, collection, action)
    partial = account(can_read={"inbox*"})
    assert not allowed(partial, INBOX, Action.READ)

"""Who may read or write which collection: pure decisions over configured accounts."""

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password_hash: str | None
    token_hashes: tuple[str, ...]
    can_read: frozenset[str]  # collection ids; "*" means every collection
    can_write: frozenset[str]
    peer: str | None = None  # the configured peer this account belongs to (config kind = peer)


def allowed(account: Account, collection_id: str, action: Action) -> bool:
    grants = account.can_read if action is Action.READ else account.can_write
    return "*" in grants or collection_id in grants


def visible(account: Account, collection_id: str) -> bool:
    """A collection is listed to an account that may read or write it, and hidden from the others."""
    return allowed(account, collection_id, Action.READ) or allowed(account, collection_id, Action.WRITE)

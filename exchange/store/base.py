"""The storage interface every backend implements: typed queries in, typed pages out."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from exchange.dedup.claims import Claim, SightingClaim
from exchange.dedup.merge import HubIdentity
from exchange.model.stix import StixRecord
from exchange.policy.tlp import Tlp


class VersionMatch(StrEnum):
    FIRST = "first"
    LAST = "last"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    """One parsed TAXII read (TAXII 2.1 section 3.4): filters AND together, values inside one filter OR."""

    collection_id: str
    limit: int
    added_after: int | None = None  # microseconds; strict >
    after_key: int | None = None  # keyset cursor: date_added of the last row already returned
    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    spec_versions: tuple[str, ...] = ()
    version_matches: tuple[VersionMatch, ...] = (VersionMatch.LAST,)
    version_times: tuple[int, ...] = ()  # explicit versions (microseconds), OR-ed with version_matches


@dataclass(frozen=True, slots=True)
class StoredObject:
    date_added: int
    id: str
    type: str
    spec_version: str
    version: int  # UNVERSIONED (0) means the object has neither `modified` nor `created`
    body: bytes

    @property
    def effective_version(self) -> int:
        """TAXII 2.1 manifest rule: modified, else created, else date_added."""
        return self.version or self.date_added


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredObject]
    more: bool


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # an exact re-post of an existing version: a success (TAXII 2.1 section 5.4)
    MERGED = "merged"  # stored verbatim, and its claim joined an indicator other claims already made
    CONFLICT = "conflict"  # same id and version as a stored object, different content: a failure

    @property
    def succeeded(self) -> bool:
        return self not in (Outcome.REJECTED, Outcome.CONFLICT)
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ObjectResult:
    id: str
    version: str
    outcome: Outcome
    message: str


@dataclass(frozen=True, slots=True)
class StatusRecord:
    id: str
    api_root: str
    account: str
    request_timestamp: int
    total: int
    results: tuple[ObjectResult, ...]

    @property
    def success_count(self) -> int:
        return sum(r.outcome.succeeded for r in self.results)

    @property
    def failure_count(self) -> int:
        return sum(not r.outcome.succeeded for r in self.results)


@dataclass(frozen=True, slots=True)
class EnvelopeWrite:
    """What processing one journaled envelope writes: its objects and its final status, atomically."""

    collection_id: str
    records: list[StixRecord]
    status: StatusRecord  # results of rejected objects already filled in; stored ones are added by the store
    derived: list[tuple[Claim | SightingClaim, ...]] = field(default_factory=list)  # aligned with records


@dataclass(frozen=True, slots=True)
class MergePolicy:
    """Where and for whom the store materializes canonical indicators from claims."""

    collection_id: str
    audience: Tlp
    hub: HubIdentity
    # Further audiences, each merged into a collection of its own: a recipient entitled to AMBER reads the merge
    # of the claims up to AMBER under the same ids (issue #3: a recipient sees what its entitlement allows).
    views: tuple[tuple[Tlp, str], ...] = ()

    @property
    def audiences(self) -> tuple[tuple[Tlp, str], ...]:
        return ((self.audience, self.collection_id), *self.views)


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write_envelopes(self, writes: list[EnvelopeWrite]) -> list[StatusRecord]: ...

    async def query_objects(self, query: ObjectQuery, *, with_body: bool = True) -> Page: ...

    async def delete_objects(self, query: ObjectQuery) -> int: ...

    async def get_status(self, status_id: str) -> StatusRecord | None: ...

    async def get_statuses(self, status_ids: list[str]) -> dict[str, StatusRecord]: ...

    async def count_objects(self, collection_id: str) -> int: ...

    async def install(self, collection_id: str, objects: list[dict[str, object]]) -> None: ...

    async def check_writable(self) -> None:
        """Commit a tiny real write, or raise: the readiness probe (exchange/observe/health.py)."""

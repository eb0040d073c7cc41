"""Schema migrations of the SQLite store, applied in order at startup (PRAGMA user_version)."""

MIGRATIONS: tuple[str, ...] = (
    # 1: objects keyed by the hub's monotonic date_added (microseconds), so every TAXII read is a
    # range scan over the rowid of a per-collection index, in date_added order, with no sort.
    """
    CREATE TABLE objects (
        date_added   INTEGER PRIMARY KEY,
        collection   TEXT NOT NULL,
        stix_id      TEXT NOT NULL,
        type         TEXT NOT NULL,
        spec_version TEXT NOT NULL,
        version      INTEGER NOT NULL,
        is_first     INTEGER NOT NULL,
        is_last      INTEGER NOT NULL,
        revoked      INTEGER NOT NULL,
        content_hash BLOB NOT NULL,
        body         BLOB NOT NULL
    );
    CREATE UNIQUE INDEX objects_by_version ON objects(collection, stix_id, version);
    CREATE INDEX objects_by_collection ON objects(collection);
    CREATE INDEX objects_last ON objects(collection) WHERE is_last = 1;
    CREATE INDEX objects_first ON objects(collection) WHERE is_first = 1;
    CREATE INDEX objects_by_type ON objects(collection, type);
    CREATE TABLE statuses (
        id                TEXT PRIMARY KEY,
        api_root          TEXT NOT NULL,
        account           TEXT NOT NULL,
        request_timestamp INTEGER NOT NULL,
        total             INTEGER NOT NULL,
        results           BLOB NOT NULL
    );
    """,
)

MIGRATIONS += (
    # 2: claims (one live claim per source and producer object), canonical indicators, sightings.
    """
    CREATE TABLE claims (
        source       TEXT NOT NULL,
        producer_id  TEXT NOT NULL,
        indicator_id TEXT NOT NULL,
        modified     INTEGER NOT NULL,
        data         BLOB NOT NULL,
        PRIMARY KEY (source, producer_id)
    ) WITHOUT ROWID;
    CREATE INDEX claims_by_indicator ON claims(indicator_id);
    CREATE INDEX claims_by_producer ON claims(producer_id);
    CREATE TABLE indicators (
        id          TEXT PRIMARY KEY,
        pattern     TEXT NOT NULL,
        created     INTEGER NOT NULL,
        modified    INTEGER NOT NULL DEFAULT 0,
        merged_hash BLOB
    ) WITHOUT ROWID;
    CREATE TABLE sightings (
        source       TEXT NOT NULL,
        sighting_id  TEXT NOT NULL,
        indicator_id TEXT NOT NULL,
        modified     INTEGER NOT NULL,
        data         BLOB NOT NULL,
        PRIMARY KEY (source, sighting_id)
    ) WITHOUT ROWID;
    CREATE INDEX sightings_by_indicator ON sightings(indicator_id);
    """,
)

MIGRATIONS += (
    # 3: the merge state of the canonical views beyond the first audience (whose state stays in `indicators`).
    """
    CREATE TABLE canonical_views (
        collection   TEXT NOT NULL,
        indicator_id TEXT NOT NULL,
        created      INTEGER NOT NULL,
        merged_hash  BLOB NOT NULL,
        PRIMARY KEY (collection, indicator_id)
    ) WITHOUT ROWID;
    """,
)

MIGRATIONS += (
    # 4: each view's own `modified` sequence (dedup/merge.py LANES); until now all views of an indicator shared
    # indicators.modified, which is at or after every view's last version, so each view continues from it.
    """
    ALTER TABLE canonical_views ADD COLUMN modified INTEGER NOT NULL DEFAULT 0;
    UPDATE canonical_views SET modified = coalesce(
        (SELECT modified FROM indicators WHERE indicators.id = canonical_views.indicator_id), 0);
    """,
)

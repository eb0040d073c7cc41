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

-- Relationship storage for the OpenFGA-compatible PDP: stores, authorization models, tuples and
-- the per-store tuple changelog. Text is compared bytewise (SQLite's BINARY collation), which is
-- the order reads page in; PostgreSQL uses COLLATE "C" for the same order.

CREATE TABLE fga_stores (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    -- The newest changelog seq; written under the write transaction that appends it.
    last_seq    INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
) STRICT;

CREATE TABLE authorization_models (
    store_id        TEXT NOT NULL REFERENCES fga_stores (id),
    id              TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    model           TEXT NOT NULL CHECK (json_valid(model)),
    created_at      TEXT NOT NULL,
    PRIMARY KEY (store_id, id)
) STRICT;

CREATE TABLE relation_tuples (
    store_id           TEXT NOT NULL REFERENCES fga_stores (id),
    object_type        TEXT NOT NULL,
    object_id          TEXT NOT NULL,
    relation           TEXT NOT NULL,
    tuple_user         TEXT NOT NULL,
    condition_name     TEXT,
    condition_context  TEXT CHECK (condition_context IS NULL
                                   OR (condition_name IS NOT NULL AND json_valid(condition_context))),
    written_at         TEXT NOT NULL,
    PRIMARY KEY (store_id, object_type, object_id, relation, tuple_user)
) STRICT, WITHOUT ROWID;

CREATE INDEX relation_tuples_user ON relation_tuples (store_id, tuple_user, object_type, relation);

CREATE TABLE tuple_changes (
    store_id           TEXT NOT NULL REFERENCES fga_stores (id),
    seq                INTEGER NOT NULL CHECK (seq > 0),
    operation          TEXT NOT NULL CHECK (operation IN ('write', 'delete')),
    object_type        TEXT NOT NULL,
    object_id          TEXT NOT NULL,
    relation           TEXT NOT NULL,
    tuple_user         TEXT NOT NULL,
    condition_name     TEXT,
    condition_context  TEXT CHECK (condition_context IS NULL OR json_valid(condition_context)),
    -- Microseconds since the Unix epoch: an integer sorts and compares correctly, RFC 3339 text
    -- with a variable number of fraction digits does not.
    changed_at         INTEGER NOT NULL,
    PRIMARY KEY (store_id, seq)
) STRICT, WITHOUT ROWID;

CREATE INDEX tuple_changes_type ON tuple_changes (store_id, object_type, seq);

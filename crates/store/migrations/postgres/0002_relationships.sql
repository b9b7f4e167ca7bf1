-- Relationship storage for the OpenFGA-compatible PDP: stores, authorization models, tuples and
-- the per-store tuple changelog. Keys use COLLATE "C" so they compare bytewise, the order reads
-- page in (and the same order SQLite uses).

CREATE TABLE fga_stores (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    -- The newest changelog seq. Writers lock this row (SELECT ... FOR UPDATE), so the seqs of a
    -- store are assigned and committed in order.
    last_seq    BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);

CREATE TABLE authorization_models (
    store_id        TEXT COLLATE "C" NOT NULL REFERENCES fga_stores (id),
    id              TEXT COLLATE "C" NOT NULL,
    schema_version  TEXT NOT NULL,
    model           JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, id)
);

CREATE TABLE relation_tuples (
    store_id           TEXT COLLATE "C" NOT NULL REFERENCES fga_stores (id),
    object_type        TEXT COLLATE "C" NOT NULL,
    object_id          TEXT COLLATE "C" NOT NULL,
    relation           TEXT COLLATE "C" NOT NULL,
    tuple_user         TEXT COLLATE "C" NOT NULL,
    condition_name     TEXT,
    condition_context  JSONB CHECK (condition_context IS NULL OR condition_name IS NOT NULL),
    written_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, object_type, object_id, relation, tuple_user)
);

CREATE INDEX relation_tuples_user ON relation_tuples (store_id, tuple_user, object_type, relation);

CREATE TABLE tuple_changes (
    store_id           TEXT COLLATE "C" NOT NULL REFERENCES fga_stores (id),
    seq                BIGINT NOT NULL CHECK (seq > 0),
    operation          TEXT NOT NULL CHECK (operation IN ('write', 'delete')),
    object_type        TEXT COLLATE "C" NOT NULL,
    object_id          TEXT COLLATE "C" NOT NULL,
    relation           TEXT COLLATE "C" NOT NULL,
    tuple_user         TEXT COLLATE "C" NOT NULL,
    condition_name     TEXT,
    condition_context  JSONB,
    changed_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store_id, seq)
);

CREATE INDEX tuple_changes_type ON tuple_changes (store_id, object_type, seq);

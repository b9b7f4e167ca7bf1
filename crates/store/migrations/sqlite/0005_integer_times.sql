-- One time encoding: the TEXT times of 0001 and 0002 (RFC 3339 as sqlx wrote them, e.g.
-- 2026-11-23T10:00:00.123456789Z) become INTEGER microseconds since the Unix epoch, like every
-- time since 0003. The tables are rebuilt (SQLite cannot change a column's type) with the same
-- STRICT definitions, constraints, foreign keys and indexes.
--
-- The conversion is exact and never goes through floating point: whole seconds come from
-- strftime('%s', ...) on the text with its fraction removed (it applies the offset), the
-- microseconds are the first six fraction digits (padded, a seventh and later truncated, as the
-- store truncates). A text that does not parse makes the NOT NULL below fail the migration
-- rather than store a wrong time.
--
-- Foreign keys stay on (this runs in a transaction, where they cannot be switched off): each
-- family is copied into new tables whose children reference the new parent, the old tables are
-- dropped children first, and renaming the new parent re-points its children's references.

CREATE TEMP TABLE time_text_micros (
    text    TEXT PRIMARY KEY NOT NULL,
    micros  INTEGER NOT NULL
);

WITH texts (t) AS (
    SELECT created_at FROM service_accounts
    UNION SELECT disabled_at FROM service_accounts
    UNION SELECT created_at FROM service_tokens
    UNION SELECT created_at FROM fga_stores
    UNION SELECT updated_at FROM fga_stores
    UNION SELECT deleted_at FROM fga_stores
    UNION SELECT created_at FROM authorization_models
    UNION SELECT written_at FROM relation_tuples
),
dotted (t, dot) AS (
    SELECT t, instr(t, '.') FROM texts WHERE t IS NOT NULL
),
split (t, whole, fraction) AS (
    SELECT t,
           CASE dot WHEN 0 THEN t
                    ELSE substr(t, 1, dot - 1) || ltrim(substr(t, dot + 1), '0123456789') END,
           CASE dot WHEN 0 THEN ''
                    ELSE substr(t, dot + 1, length(t) - dot
                                - length(ltrim(substr(t, dot + 1), '0123456789'))) END
    FROM dotted
)
INSERT INTO time_text_micros (text, micros)
SELECT t,
       CAST(strftime('%s', whole) AS INTEGER) * 1000000
       + CAST(substr(fraction || '000000', 1, 6) AS INTEGER)
FROM split;

-- Service accounts and their tokens.

CREATE TABLE service_accounts_v5 (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin')),
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;

INSERT INTO service_accounts_v5 (id, name, role, created_at, disabled_at)
SELECT a.id, a.name, a.role,
       (SELECT m.micros FROM time_text_micros m WHERE m.text = a.created_at),
       (SELECT m.micros FROM time_text_micros m WHERE m.text = a.disabled_at)
FROM service_accounts a;

CREATE TABLE service_tokens_v5 (
    digest      BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
    account_id  TEXT NOT NULL REFERENCES service_accounts_v5 (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

INSERT INTO service_tokens_v5 (digest, account_id, label, created_at)
SELECT t.digest, t.account_id, t.label,
       (SELECT m.micros FROM time_text_micros m WHERE m.text = t.created_at)
FROM service_tokens t;

DROP TABLE service_tokens;
DROP TABLE service_accounts;
ALTER TABLE service_accounts_v5 RENAME TO service_accounts;
ALTER TABLE service_tokens_v5 RENAME TO service_tokens;
CREATE INDEX service_tokens_account ON service_tokens (account_id);

-- Relationship stores, their models, tuples and changelog (whose changed_at is INTEGER already;
-- the table is rebuilt only because it references fga_stores).

CREATE TABLE fga_stores_v5 (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    -- The newest changelog seq; written under the write transaction that appends it.
    last_seq    INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
) STRICT;

INSERT INTO fga_stores_v5 (id, name, last_seq, created_at, updated_at, deleted_at)
SELECT s.id, s.name, s.last_seq,
       (SELECT m.micros FROM time_text_micros m WHERE m.text = s.created_at),
       (SELECT m.micros FROM time_text_micros m WHERE m.text = s.updated_at),
       (SELECT m.micros FROM time_text_micros m WHERE m.text = s.deleted_at)
FROM fga_stores s;

CREATE TABLE authorization_models_v5 (
    store_id        TEXT NOT NULL REFERENCES fga_stores_v5 (id),
    id              TEXT NOT NULL,
    schema_version  TEXT NOT NULL,
    model           TEXT NOT NULL CHECK (json_valid(model)),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (store_id, id)
) STRICT;

INSERT INTO authorization_models_v5 (store_id, id, schema_version, model, created_at)
SELECT a.store_id, a.id, a.schema_version, a.model,
       (SELECT m.micros FROM time_text_micros m WHERE m.text = a.created_at)
FROM authorization_models a;

CREATE TABLE relation_tuples_v5 (
    store_id           TEXT NOT NULL REFERENCES fga_stores_v5 (id),
    object_type        TEXT NOT NULL,
    object_id          TEXT NOT NULL,
    relation           TEXT NOT NULL,
    tuple_user         TEXT NOT NULL,
    condition_name     TEXT,
    condition_context  TEXT CHECK (condition_context IS NULL
                                   OR (condition_name IS NOT NULL AND json_valid(condition_context))),
    written_at         INTEGER NOT NULL,
    PRIMARY KEY (store_id, object_type, object_id, relation, tuple_user)
) STRICT, WITHOUT ROWID;

INSERT INTO relation_tuples_v5 (store_id, object_type, object_id, relation, tuple_user,
                                condition_name, condition_context, written_at)
SELECT r.store_id, r.object_type, r.object_id, r.relation, r.tuple_user,
       r.condition_name, r.condition_context,
       (SELECT m.micros FROM time_text_micros m WHERE m.text = r.written_at)
FROM relation_tuples r;

CREATE TABLE tuple_changes_v5 (
    store_id           TEXT NOT NULL REFERENCES fga_stores_v5 (id),
    seq                INTEGER NOT NULL CHECK (seq > 0),
    operation          TEXT NOT NULL CHECK (operation IN ('write', 'delete')),
    object_type        TEXT NOT NULL,
    object_id          TEXT NOT NULL,
    relation           TEXT NOT NULL,
    tuple_user         TEXT NOT NULL,
    condition_name     TEXT,
    condition_context  TEXT CHECK (condition_context IS NULL OR json_valid(condition_context)),
    changed_at         INTEGER NOT NULL,
    PRIMARY KEY (store_id, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO tuple_changes_v5 (store_id, seq, operation, object_type, object_id, relation,
                              tuple_user, condition_name, condition_context, changed_at)
SELECT store_id, seq, operation, object_type, object_id, relation,
       tuple_user, condition_name, condition_context, changed_at
FROM tuple_changes;

DROP TABLE tuple_changes;
DROP TABLE relation_tuples;
DROP TABLE authorization_models;
DROP TABLE fga_stores;
ALTER TABLE fga_stores_v5 RENAME TO fga_stores;
ALTER TABLE authorization_models_v5 RENAME TO authorization_models;
ALTER TABLE relation_tuples_v5 RENAME TO relation_tuples;
ALTER TABLE tuple_changes_v5 RENAME TO tuple_changes;
CREATE INDEX relation_tuples_user ON relation_tuples (store_id, tuple_user, object_type, relation);
CREATE INDEX tuple_changes_type ON tuple_changes (store_id, object_type, seq);

DROP TABLE temp.time_text_micros;

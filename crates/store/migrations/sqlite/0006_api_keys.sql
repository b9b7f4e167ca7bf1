-- API keys: service accounts lose their role (roles are relationship tuples in the system store
-- now) and gain an owner and a description; their tokens become API keys, which may also belong
-- to a user (personal access tokens), carry scopes, a rate limit, an expiry and a rotation
-- link; a one-row table holds the credential epoch. Times are INTEGER microseconds since the
-- Unix epoch, JSON is TEXT checked by json_valid, as since 0003.
--
-- Nothing loses access: every service token becomes an API key with the same digest (so the
-- token string authenticates as before) and the scope "admin", and every account whose role was
-- 'admin' gets the tuple system:trustgate#admin@service:<id> in the system store, written with
-- its changelog exactly as the store's write_tuples writes it (seqs 1, 2, … and last_seq).

-- One instant for every row this migration writes.
CREATE TEMP TABLE migration_now (micros INTEGER NOT NULL);
INSERT INTO migration_now (micros) VALUES (CAST(strftime('%s', 'now') AS INTEGER) * 1000000);

-- The system store and the administrators' role tuples, read from the role column before it
-- goes. The system store exists even when there is no account (last_seq 0); the server writes
-- its authorization model at start-up.
INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at, deleted_at)
SELECT '00000000000000000000000000', 'trustgate system',
       (SELECT count(*) FROM service_accounts WHERE role = 'admin'), m.micros, m.micros, NULL
FROM migration_now m;

INSERT INTO relation_tuples (store_id, object_type, object_id, relation, tuple_user,
                             condition_name, condition_context, written_at)
SELECT '00000000000000000000000000', 'system', 'trustgate', 'admin', 'service:' || a.id,
       NULL, NULL, m.micros
FROM service_accounts a, migration_now m
WHERE a.role = 'admin';

INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation,
                           tuple_user, condition_name, condition_context, changed_at)
SELECT '00000000000000000000000000', row_number() OVER (ORDER BY a.id), 'write', 'system',
       'trustgate', 'admin', 'service:' || a.id, NULL, NULL, m.micros
FROM service_accounts a, migration_now m
WHERE a.role = 'admin';

-- Service accounts: owner and description in, role out. The role's CHECK is its own column
-- constraint, which SQLite's DROP COLUMN accepts, so the table (and every reference to it) stays.
ALTER TABLE service_accounts ADD COLUMN owner TEXT;
ALTER TABLE service_accounts ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE service_accounts DROP COLUMN role;

-- A key belongs to exactly one owner: a service account or (a personal access token) a user.
-- Only the SHA-256 digest of the key string is stored.
CREATE TABLE api_keys (
    id                     TEXT PRIMARY KEY NOT NULL,
    digest                 BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    service_account_id     TEXT REFERENCES service_accounts (id) ON DELETE CASCADE,
    user_id                TEXT REFERENCES users (id) ON DELETE CASCADE,
    description            TEXT NOT NULL,
    scopes                 TEXT NOT NULL CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    rate_limit_per_minute  INTEGER CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0),
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER,
    revoked_at             INTEGER,
    -- The key this one replaced; no foreign key, so a key outlives the one it replaced.
    rotated_from           TEXT,
    last_used_at           INTEGER,
    last_used_ip           TEXT,
    CHECK ((service_account_id IS NULL) <> (user_id IS NULL))
) STRICT;

CREATE INDEX api_keys_service_account ON api_keys (service_account_id, id)
    WHERE service_account_id IS NOT NULL;
CREATE INDEX api_keys_user ON api_keys (user_id, id) WHERE user_id IS NOT NULL;

-- Service tokens become keys: same digest, the label as description, the scope "admin" (the
-- only role there was), and as id the first 13 bytes of the digest in upper-case hex: 26
-- characters, all Crockford base32, so the id is ULID-shaped and derived from nothing secret
-- that the digest does not already hold.
INSERT INTO api_keys (id, digest, service_account_id, user_id, description, scopes,
                      rate_limit_per_minute, created_at)
SELECT upper(hex(substr(t.digest, 1, 13))), t.digest, t.account_id, NULL, t.label, '["admin"]',
       NULL, t.created_at
FROM service_tokens t;

DROP INDEX service_tokens_account;
DROP TABLE service_tokens;

-- The credential epoch: advanced by every change that must end a credential's life at once
-- (revocation, rotation, an owner disabled or deleted); replicas drop cached keys when it moves.
CREATE TABLE credential_epoch (
    id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    epoch  INTEGER NOT NULL CHECK (epoch >= 0)
) STRICT;

INSERT INTO credential_epoch (id, epoch) VALUES (1, 0);

DROP TABLE temp.migration_now;

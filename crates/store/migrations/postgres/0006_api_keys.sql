-- API keys: service accounts lose their role (roles are relationship tuples in the system store
-- now) and gain an owner and a description; their tokens become API keys, which may also belong
-- to a user (personal access tokens), carry scopes, a rate limit, an expiry and a rotation
-- link; a one-row table holds the credential epoch.
--
-- Nothing loses access: every service token becomes an API key with the same digest (so the
-- token string authenticates as before) and the scope "admin", and every account whose role was
-- 'admin' gets the tuple system:trustgate#admin@service:<id> in the system store, written with
-- its changelog exactly as the store's write_tuples writes it (seqs 1, 2, … and last_seq).
-- now() is the transaction's start, one instant for every row written here.

-- The system store and the administrators' role tuples, read from the role column before it
-- goes. The system store exists even when there is no account (last_seq 0); the server writes
-- its authorization model at start-up.
INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at, deleted_at)
SELECT '00000000000000000000000000', 'trustgate system', count(*), now(), now(), NULL
FROM service_accounts WHERE role = 'admin';

INSERT INTO relation_tuples (store_id, object_type, object_id, relation, tuple_user,
                             condition_name, condition_context, written_at)
SELECT '00000000000000000000000000', 'system', 'trustgate', 'admin', 'service:' || id,
       NULL, NULL, now()
FROM service_accounts WHERE role = 'admin';

INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation,
                           tuple_user, condition_name, condition_context, changed_at)
SELECT '00000000000000000000000000', row_number() OVER (ORDER BY id COLLATE "C"), 'write',
       'system', 'trustgate', 'admin', 'service:' || id, NULL, NULL, now()
FROM service_accounts WHERE role = 'admin';

-- Service accounts: owner and description in, role out.
ALTER TABLE service_accounts
    ADD COLUMN owner TEXT,
    ADD COLUMN description TEXT NOT NULL DEFAULT '',
    DROP COLUMN role;

-- A key belongs to exactly one owner: a service account or (a personal access token) a user.
-- Only the SHA-256 digest of the key string is stored. Ids compare bytewise (COLLATE "C"), the
-- order keys are listed in, as on SQLite.
CREATE TABLE api_keys (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    digest                 BYTEA NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    service_account_id     TEXT REFERENCES service_accounts (id) ON DELETE CASCADE,
    user_id                TEXT COLLATE "C" REFERENCES users (id) ON DELETE CASCADE,
    description            TEXT NOT NULL,
    scopes                 JSONB NOT NULL CHECK (jsonb_typeof(scopes) = 'array'),
    -- BIGINT: the store reads and writes 64-bit integers (a u32 limit does not fit INTEGER).
    rate_limit_per_minute  BIGINT CHECK (rate_limit_per_minute > 0),
    created_at             TIMESTAMPTZ NOT NULL,
    expires_at             TIMESTAMPTZ,
    revoked_at             TIMESTAMPTZ,
    -- The key this one replaced; no foreign key, so a key outlives the one it replaced.
    rotated_from           TEXT,
    last_used_at           TIMESTAMPTZ,
    last_used_ip           TEXT,
    CHECK ((service_account_id IS NULL) <> (user_id IS NULL))
);

CREATE INDEX api_keys_service_account ON api_keys (service_account_id, id)
    WHERE service_account_id IS NOT NULL;
CREATE INDEX api_keys_user ON api_keys (user_id, id) WHERE user_id IS NOT NULL;

-- Service tokens become keys: same digest, the label as description, the scope "admin" (the
-- only role there was), and as id the first 13 bytes of the digest in upper-case hex: 26
-- characters, all Crockford base32, so the id is ULID-shaped.
INSERT INTO api_keys (id, digest, service_account_id, user_id, description, scopes,
                      rate_limit_per_minute, created_at)
SELECT upper(encode(substring(digest FROM 1 FOR 13), 'hex')), digest, account_id, NULL, label,
       '["admin"]'::jsonb, NULL, created_at
FROM service_tokens;

DROP TABLE service_tokens;

-- The credential epoch: advanced by every change that must end a credential's life at once
-- (revocation, rotation, an owner disabled or deleted); replicas drop cached keys when it moves.
CREATE TABLE credential_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  BIGINT NOT NULL CHECK (epoch >= 0)
);

INSERT INTO credential_epoch (id, epoch) VALUES (1, 0);

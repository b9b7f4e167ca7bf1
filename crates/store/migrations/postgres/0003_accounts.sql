-- Human accounts: users, server-side sessions, second factors and the audit trail.
-- username_key and email_key hold the lowercase forms computed by trustgate (Unicode-aware and
-- independent of the database's collation, so both backends agree). Their unique indexes make
-- names unique case-insensitively and serve logins by username or email. Ids that are listed in
-- order use COLLATE "C" (bytewise, as in SQLite).

CREATE TABLE users (
    id              TEXT COLLATE "C" PRIMARY KEY,
    username        TEXT NOT NULL,
    username_key    TEXT NOT NULL,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL,
    email_verified  BOOLEAN NOT NULL,
    name            TEXT,
    locale          TEXT,
    attributes      JSONB NOT NULL CHECK (jsonb_typeof(attributes) = 'object'),
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    -- An argon2id PHC string; NULL when the user has no password (passkey-only, federated).
    password_hash   TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (username_key);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

-- The secret session id is stored only as its SHA-256 digest; `id` is the public handle.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY,
    digest               BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at           TIMESTAMPTZ NOT NULL,
    last_seen_at         TIMESTAMPTZ NOT NULL,
    idle_expires_at      TIMESTAMPTZ NOT NULL,
    absolute_expires_at  TIMESTAMPTZ NOT NULL,
    auth_time            TIMESTAMPTZ NOT NULL,
    amr                  JSONB NOT NULL CHECK (jsonb_typeof(amr) = 'array'),
    acr                  TEXT NOT NULL,
    ip                   TEXT,
    user_agent           TEXT,
    revoked_at           TIMESTAMPTZ
);

CREATE UNIQUE INDEX sessions_digest ON sessions (digest);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- At most one TOTP credential per user; the secret arrives sealed by the caller.
CREATE TABLE totp_credentials (
    user_id        TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret  BYTEA NOT NULL,
    confirmed      BOOLEAN NOT NULL,
    -- The last accepted time step: a code for this step or an older one is a replay.
    last_step      BIGINT,
    created_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest      BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    created_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    PRIMARY KEY (user_id, digest)
);

-- WebAuthn credentials; the credential id is unique across all users.
CREATE TABLE passkeys (
    credential_id  BYTEA PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    public_key     BYTEA NOT NULL,
    sign_count     BIGINT NOT NULL CHECK (sign_count >= 0),
    metadata       JSONB NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    created_at     TIMESTAMPTZ NOT NULL,
    last_used_at   TIMESTAMPTZ
);

CREATE INDEX passkeys_user ON passkeys (user_id, created_at);

-- Append-only. No foreign key on user_id: the trail outlives the user it concerns.
CREATE TABLE audit_events (
    id          TEXT COLLATE "C" PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor       TEXT,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    detail      JSONB NOT NULL CHECK (jsonb_typeof(detail) = 'object')
);

CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_kind ON audit_events (kind, id);

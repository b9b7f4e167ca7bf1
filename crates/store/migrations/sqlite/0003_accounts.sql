-- Human accounts: users, server-side sessions, second factors and the audit trail.
-- Times are microseconds since the Unix epoch (INTEGER) so that expiry comparisons in SQL are
-- exact; RFC 3339 text with a variable number of fraction digits does not compare correctly.
-- username_key and email_key hold the lowercase forms computed by trustgate (Unicode-aware, the
-- same on both backends; SQLite's lower() folds only ASCII). Their unique indexes make names
-- unique case-insensitively and serve logins by username or email.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL,
    username_key    TEXT NOT NULL,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL,
    email_verified  INTEGER NOT NULL CHECK (email_verified IN (0, 1)),
    name            TEXT,
    locale          TEXT,
    attributes      TEXT NOT NULL CHECK (json_valid(attributes) AND json_type(attributes) = 'object'),
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    -- An argon2id PHC string; NULL when the user has no password (passkey-only, federated).
    password_hash   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX users_username_key ON users (username_key);
CREATE UNIQUE INDEX users_email_key ON users (email_key);

-- The secret session id is stored only as its SHA-256 digest; `id` is the public handle.
CREATE TABLE sessions (
    id                   TEXT PRIMARY KEY NOT NULL,
    digest               BLOB NOT NULL CHECK (length(digest) = 32),
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at           INTEGER NOT NULL,
    last_seen_at         INTEGER NOT NULL,
    idle_expires_at      INTEGER NOT NULL,
    absolute_expires_at  INTEGER NOT NULL,
    auth_time            INTEGER NOT NULL,
    amr                  TEXT NOT NULL CHECK (json_valid(amr) AND json_type(amr) = 'array'),
    acr                  TEXT NOT NULL,
    ip                   TEXT,
    user_agent           TEXT,
    revoked_at           INTEGER
) STRICT;

CREATE UNIQUE INDEX sessions_digest ON sessions (digest);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- At most one TOTP credential per user; the secret arrives sealed by the caller.
CREATE TABLE totp_credentials (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret  BLOB NOT NULL,
    confirmed      INTEGER NOT NULL CHECK (confirmed IN (0, 1)),
    -- The last accepted time step: a code for this step or an older one is a replay.
    last_step      INTEGER,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest      BLOB NOT NULL CHECK (length(digest) = 32),
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, digest)
) STRICT, WITHOUT ROWID;

-- WebAuthn credentials; the credential id is unique across all users.
CREATE TABLE passkeys (
    credential_id  BLOB PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    public_key     BLOB NOT NULL,
    sign_count     INTEGER NOT NULL CHECK (sign_count >= 0),
    metadata       TEXT NOT NULL CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
) STRICT;

CREATE INDEX passkeys_user ON passkeys (user_id, created_at);

-- Append-only. No foreign key on user_id: the trail outlives the user it concerns.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    actor       TEXT,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    detail      TEXT NOT NULL CHECK (json_valid(detail) AND json_type(detail) = 'object')
) STRICT;

CREATE INDEX audit_events_user ON audit_events (user_id, id);
CREATE INDEX audit_events_kind ON audit_events (kind, id);

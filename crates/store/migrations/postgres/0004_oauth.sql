-- OAuth 2.0 / OpenID Connect: signing keys, registered clients and the artifacts of grants.
-- Secrets (client secrets, codes, refresh tokens, device codes) are stored only as their SHA-256
-- digests. JSON columns hold what the `oauth` crate owns. Everything issued to a client goes when
-- the client goes, everything issued to a user when the user goes (ON DELETE CASCADE). Indexes
-- on client_id and user_id serve those cascades; indexes on expiry columns serve purges. Ids that
-- are listed or compared in order use COLLATE "C" (bytewise, as in SQLite).

-- The user's token version (`uv` claim): incremented to invalidate every token issued before.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0 CHECK (token_version >= 0);

-- JWS signing keys; the private key arrives sealed by the caller.
CREATE TABLE signing_keys (
    kid                 TEXT COLLATE "C" PRIMARY KEY,
    algorithm           TEXT NOT NULL,
    public_jwk          JSONB NOT NULL CHECK (jsonb_typeof(public_jwk) = 'object'),
    sealed_private_key  BYTEA NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    activates_at        TIMESTAMPTZ NOT NULL,
    retires_at          TIMESTAMPTZ,
    expires_at          TIMESTAMPTZ
);

-- The newest key of an algorithm (rotation's compare-and-set).
CREATE INDEX signing_keys_newest ON signing_keys (algorithm, created_at, kid);
CREATE INDEX signing_keys_expiry ON signing_keys (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE oauth_clients (
    id             TEXT COLLATE "C" PRIMARY KEY,
    name           TEXT NOT NULL,
    -- NULL for public clients and private_key_jwt clients.
    secret_digest  BYTEA CHECK (secret_digest IS NULL OR octet_length(secret_digest) = 32),
    metadata       JSONB NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

-- Kept after redemption (consumed_at set) until expiry, so a replayed code is recognised.
CREATE TABLE authorization_codes (
    digest        BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    client_id     TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id    TEXT,
    redirect_uri  TEXT NOT NULL,
    grant_id      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    consumed_at   TIMESTAMPTZ,
    detail        JSONB NOT NULL CHECK (jsonb_typeof(detail) = 'object')
);

CREATE INDEX authorization_codes_client ON authorization_codes (client_id);
CREATE INDEX authorization_codes_user ON authorization_codes (user_id);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

-- One authorization of a client: the family its refresh tokens descend from.
CREATE TABLE grants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    -- NULL for a client acting on its own behalf.
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    session_id  TEXT,
    scope       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ,
    detail      JSONB NOT NULL CHECK (jsonb_typeof(detail) = 'object')
);

-- (user_id, client_id) also serves lookups by user_id alone.
CREATE INDEX grants_user_client ON grants (user_id, client_id);
CREATE INDEX grants_client ON grants (client_id);
CREATE INDEX grants_session ON grants (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX grants_expiry ON grants (expires_at);
CREATE INDEX grants_revoked ON grants (revoked_at) WHERE revoked_at IS NOT NULL;

-- Kept after rotation (rotated_at set) while the grant lives, so a reused token is recognised.
CREATE TABLE refresh_tokens (
    digest      BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    grant_id    TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ
);

CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE consents (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT COLLATE "C" NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes      JSONB NOT NULL CHECK (jsonb_typeof(scopes) = 'array'),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE INDEX consents_client ON consents (client_id);

-- RFC 8628. user_code is unique among all stored rows; an expired row holding a code being
-- reused is deleted first (put_device_authorization), and purges remove the rest.
CREATE TABLE device_authorizations (
    device_digest   BYTEA PRIMARY KEY CHECK (octet_length(device_digest) = 32),
    user_code       TEXT NOT NULL,
    client_id       TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    interval_secs   BIGINT NOT NULL CHECK (interval_secs > 0),
    last_polled_at  TIMESTAMPTZ,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    user_id         TEXT REFERENCES users (id) ON DELETE CASCADE,
    session_id      TEXT,
    detail          JSONB NOT NULL CHECK (jsonb_typeof(detail) = 'object')
);

CREATE UNIQUE INDEX device_authorizations_user_code ON device_authorizations (user_code);
CREATE INDEX device_authorizations_client ON device_authorizations (client_id);
CREATE INDEX device_authorizations_user ON device_authorizations (user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX device_authorizations_expiry ON device_authorizations (expires_at);

-- RFC 9126, under the request_uri suffix.
CREATE TABLE pushed_requests (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    parameters  JSONB NOT NULL CHECK (jsonb_typeof(parameters) = 'object'),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    consumed    BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX pushed_requests_client ON pushed_requests (client_id);
CREATE INDEX pushed_requests_expiry ON pushed_requests (expires_at);

-- The jti of every accepted client assertion until it expires (replay defence).
CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    jti         TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);

-- Access tokens revoked before they expire.
CREATE TABLE revoked_access_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_at);

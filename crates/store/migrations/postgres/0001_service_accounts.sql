-- Machine principals (the bootstrap administrator, later API clients) and their bearer tokens.
-- Tokens are 256-bit random values; only their SHA-256 digest is stored.
CREATE TABLE service_accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin')),
    created_at  TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);

CREATE TABLE service_tokens (
    digest      BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    account_id  TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX service_tokens_account ON service_tokens (account_id);

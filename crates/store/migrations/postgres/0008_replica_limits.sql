-- Limits that every replica enforces together: counters of failed attempts (login and
-- device-code throttles) and the ledger of spent one-time values (passkey challenges; later
-- DPoP jti). Keys are SHA-256 digests of what is counted or spent, never the raw value. A row
-- whose expires_at has passed no longer counts and is deleted by the periodic purge.

CREATE TABLE attempt_counters (
    kind             TEXT NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    digest           BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    failures         BIGINT NOT NULL CHECK (failures > 0),
    last_failure_at  TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, digest)
);

CREATE INDEX attempt_counters_expiry ON attempt_counters (expires_at);

CREATE TABLE spent_nonces (
    purpose     TEXT NOT NULL CHECK (length(purpose) BETWEEN 1 AND 64),
    digest      BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (purpose, digest)
);

CREATE INDEX spent_nonces_expiry ON spent_nonces (expires_at);

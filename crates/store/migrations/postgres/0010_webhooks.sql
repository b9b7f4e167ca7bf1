-- Outbound event delivery: webhook subscriptions with their sealed signing secrets, and the
-- outbox of deliveries (Standard Webhooks events and OpenID Connect back-channel logout
-- tokens) that workers claim under a lease (FOR UPDATE SKIP LOCKED).

CREATE TABLE webhook_subscriptions (
    id           TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    url          TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    kinds        JSONB NOT NULL,
    description  TEXT NOT NULL,
    enabled      BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE webhook_secrets (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    sealed           BYTEA NOT NULL CHECK (octet_length(sealed) BETWEEN 1 AND 256),
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ
);

CREATE INDEX webhook_secrets_subscription ON webhook_secrets (subscription_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    kind             TEXT NOT NULL CHECK (kind IN ('webhook', 'backchannel_logout')),
    subscription_id  TEXT REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    target           TEXT NOT NULL,
    url              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    attempts         BIGINT NOT NULL CHECK (attempts >= 0),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    lease            TEXT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    CHECK ((kind = 'webhook') = (subscription_id IS NOT NULL))
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id);

-- Outbound event delivery: webhook subscriptions with their sealed signing secrets, and the
-- outbox of deliveries (Standard Webhooks events and OpenID Connect back-channel logout
-- tokens) that workers claim under a lease. Times are INTEGER microseconds since the Unix
-- epoch, as since 0005.

CREATE TABLE webhook_subscriptions (
    id           TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    url          TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    kinds        TEXT NOT NULL CHECK (json_valid(kinds)),
    description  TEXT NOT NULL,
    enabled      INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_secrets (
    id               INTEGER PRIMARY KEY,
    subscription_id  TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    sealed           BLOB NOT NULL CHECK (length(sealed) BETWEEN 1 AND 256),
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER
) STRICT;

CREATE INDEX webhook_secrets_subscription ON webhook_secrets (subscription_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 256),
    kind             TEXT NOT NULL CHECK (kind IN ('webhook', 'backchannel_logout')),
    subscription_id  TEXT REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    target           TEXT NOT NULL,
    url              TEXT NOT NULL,
    payload          TEXT NOT NULL,
    attempts         INTEGER NOT NULL CHECK (attempts >= 0),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    next_attempt_at  INTEGER NOT NULL,
    lease            TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    CHECK ((kind = 'webhook') = (subscription_id IS NOT NULL))
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id);

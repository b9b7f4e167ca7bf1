-- The audit trail becomes two hash chains with signed anchors (see trustgate-store-api's
-- `audit` module). Every event gets its chain ('recorded': credential and administrative
-- events, kept; 'streamed': decisions, issuances, deliveries and access denials, purged by
-- prefix), its gap-free position in it (seq, from 1), its predecessor's hash and its own
-- SHA-256 hash, all assigned by the appender under the writer transaction. Events written
-- before this migration keep NULL positions: they predate the chains and are reported as such.
-- resource is what an event is about (e.g. the object of a decision), so it can be filtered.

ALTER TABLE audit_events ADD COLUMN chain TEXT NOT NULL DEFAULT 'recorded'
    CHECK (chain IN ('recorded', 'streamed'));
ALTER TABLE audit_events ADD COLUMN seq INTEGER CHECK (seq > 0);
ALTER TABLE audit_events ADD COLUMN prev_hash BLOB CHECK (length(prev_hash) = 32);
ALTER TABLE audit_events ADD COLUMN hash BLOB CHECK (length(hash) = 32);
ALTER TABLE audit_events ADD COLUMN resource TEXT;

UPDATE audit_events SET chain = 'streamed' WHERE kind IN
    ('authorization_decision', 'oauth_token_issued', 'oauth_backchannel_logout', 'access_denied');

CREATE UNIQUE INDEX audit_events_chain_seq ON audit_events (chain, seq);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_resource ON audit_events (resource, id);

-- The last position and hash of each chain: read and advanced by every append in the same
-- transaction.
CREATE TABLE audit_chain_heads (
    chain  TEXT PRIMARY KEY NOT NULL CHECK (chain IN ('recorded', 'streamed')),
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    hash   BLOB NOT NULL CHECK (length(hash) = 32)
) STRICT;

INSERT INTO audit_chain_heads (chain, seq, hash) VALUES
    ('recorded', 0, zeroblob(32)),
    ('streamed', 0, zeroblob(32));

-- Signed statements "chain had hash H at seq S" (checkpoint) or "everything up to S was
-- deleted by retention; S had hash H" (truncation), numbered per chain without gaps.
CREATE TABLE audit_anchors (
    chain       TEXT NOT NULL CHECK (chain IN ('recorded', 'streamed')),
    number      INTEGER NOT NULL CHECK (number > 0),
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    hash        BLOB NOT NULL CHECK (length(hash) = 32),
    kind        TEXT NOT NULL CHECK (kind IN ('checkpoint', 'truncation')),
    at          INTEGER NOT NULL,
    kid         TEXT NOT NULL,
    jws         TEXT NOT NULL,
    sealed_key  BLOB NOT NULL,
    PRIMARY KEY (chain, number)
) STRICT;

CREATE INDEX audit_anchors_kind ON audit_anchors (chain, kind, number);

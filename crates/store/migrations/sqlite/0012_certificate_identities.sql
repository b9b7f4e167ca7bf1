-- Client-certificate identities of service accounts (mutual TLS): a verified client certificate
-- whose SPIFFE ID or subject DN (RFC 4514) is bound here authenticates as the account. A name
-- belongs to one account at most; deleting the account deletes its names.
-- Times are INTEGER microseconds since the Unix epoch, as since 0005.

CREATE TABLE service_account_certificates (
    kind        TEXT NOT NULL CHECK (kind IN ('spiffe_id', 'subject_dn')),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 2048),
    account_id  TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT;

CREATE INDEX service_account_certificates_by_account ON service_account_certificates (account_id);

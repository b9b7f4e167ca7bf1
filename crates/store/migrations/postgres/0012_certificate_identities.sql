-- Client-certificate identities of service accounts (mutual TLS): a verified client certificate
-- whose SPIFFE ID or subject DN (RFC 4514) is bound here authenticates as the account. A name
-- belongs to one account at most; deleting the account deletes its names.

CREATE TABLE service_account_certificates (
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('spiffe_id', 'subject_dn')),
    name        TEXT COLLATE "C" NOT NULL CHECK (length(name) BETWEEN 1 AND 2048),
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE INDEX service_account_certificates_by_account ON service_account_certificates (account_id);

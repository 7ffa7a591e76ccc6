-- The abis_client role (systems that send ABIS requests: MOSIP's registration processor,
-- Tessera's own pipeline). SQLite cannot change a CHECK constraint in place: the table is
-- rebuilt with every row kept.
CREATE TABLE api_tokens_new (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'supervisor', 'adjudicator', 'auditor', 'abis_client')),
    secret_hash    BLOB    NOT NULL UNIQUE,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    revoked_at_ms  INTEGER
);
INSERT INTO api_tokens_new (id, name, role, secret_hash, created_at_ms, expires_at_ms, revoked_at_ms)
    SELECT id, name, role, secret_hash, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;

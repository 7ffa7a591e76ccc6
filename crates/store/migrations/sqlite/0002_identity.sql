-- Identity repository (issue #4): records, versions, keyed lookup index, admin API tokens and the
-- hash-chained audit log. No column holds personal data in clear: records are sealed with the
-- person's data key (which lives in the key vault, not here) and identifiers are keyed digests.
-- The keyed tables are WITHOUT ROWID: one B-tree per table instead of a rowid table plus a
-- primary-key index, so bulk import writes about half the pages.

CREATE TABLE identities (
    id             TEXT    PRIMARY KEY,   -- random UUID: the record id used in AAD, audit and the vault
    state          TEXT    NOT NULL CHECK (state IN ('active', 'erased')),
    version        INTEGER NOT NULL CHECK (version >= 1),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    erased_at_ms   INTEGER
) WITHOUT ROWID;

-- Every version of every record, sealed (AES-256-GCM under the person's data key, AAD =
-- record id + version + field). Emptied when the person is erased.
CREATE TABLE identity_versions (
    identity_id    TEXT    NOT NULL REFERENCES identities (id),
    version        INTEGER NOT NULL,
    record         BLOB    NOT NULL,      -- sealed JSON record
    reason         BLOB    NOT NULL,      -- sealed free-text reason (it may name people)
    actor          TEXT    NOT NULL,      -- who: `token:<id>`, `cli`, `system`
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (identity_id, version)
) WITHOUT ROWID;

-- Keyed lookup index: digest = HMAC-SHA-256(lookup key vN, kind ‖ value). The kind (uin,
-- external_ref, …) is inside the digest, so the table reveals neither values nor kinds.
CREATE TABLE identity_lookup (
    digest         BLOB    PRIMARY KEY,
    key_version    INTEGER NOT NULL,
    identity_id    TEXT    NOT NULL REFERENCES identities (id)
) WITHOUT ROWID;
CREATE INDEX identity_lookup_identity ON identity_lookup (identity_id);

-- Bearer tokens of the admin API. Only a SHA-256 of each token is kept (tokens are 256 random bits).
CREATE TABLE api_tokens (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'supervisor', 'adjudicator', 'auditor')),
    secret_hash    BLOB    NOT NULL UNIQUE,
    created_at_ms  INTEGER NOT NULL,
    expires_at_ms  INTEGER,
    revoked_at_ms  INTEGER
);

-- Append-only audit log. hash = SHA-256(format ‖ seq ‖ fields ‖ prev_hash); seq has no gaps.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY,
    at_ms          INTEGER NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    prev_hash      BLOB    NOT NULL,
    hash           BLOB    NOT NULL
);
-- The chain's head, one row: appenders serialize on it.
CREATE TABLE audit_head (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    seq            INTEGER NOT NULL,
    hash           BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));
-- Signed checkpoints: signature over (seq, hash) with the audit key.
CREATE TABLE audit_checkpoints (
    seq            INTEGER PRIMARY KEY,
    hash           BLOB    NOT NULL,
    key_id         TEXT    NOT NULL,
    signature      BLOB    NOT NULL,
    at_ms          INTEGER NOT NULL
);

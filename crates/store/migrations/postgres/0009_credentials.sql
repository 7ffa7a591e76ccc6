-- Verifiable credentials issued to a person (issue #6: the pipeline's credential step). The
-- credential itself holds personal data, so it is stored only sealed under the person's own data
-- key (`IdRepo::seal_for_person`): erasing the person erases their credentials too. Ids, key
-- versions and times only in the clear.

CREATE TABLE credentials (
    id             TEXT    PRIMARY KEY,         -- the credential's jti (urn:uuid:...)
    identity_id    TEXT    NOT NULL,
    source         TEXT    NOT NULL UNIQUE,     -- what issued it, once: 'rid:<RID>', 'admin:<id>'
    format         TEXT    NOT NULL CHECK (format IN ('dc+sd-jwt')),
    kid            TEXT    NOT NULL,            -- signing key version: signing.v2
    status         TEXT    NOT NULL CHECK (status IN ('active', 'superseded', 'revoked')),
    issued_at_ms   BIGINT  NOT NULL,
    expires_at_ms  BIGINT  NOT NULL,
    changed_at_ms  BIGINT  NOT NULL,
    sealed         BYTEA   NOT NULL
);
CREATE INDEX credentials_identity ON credentials (identity_id, issued_at_ms);

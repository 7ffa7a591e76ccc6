-- Links between identities made by registration: a child registered without biometrics is linked
-- to the parent or guardian whose UIN the packet names (issue #6, CHILD flow). Ids only, never
-- UINs; the RID says which registration made the link.

CREATE TABLE identity_links (
    identity_id    TEXT    NOT NULL,            -- the child's identity
    kind           TEXT    NOT NULL CHECK (kind IN ('guardian')),
    other_id       TEXT    NOT NULL,            -- the guardian's identity
    rid            TEXT    NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (identity_id, kind, other_id)
);
CREATE INDEX identity_links_other ON identity_links (other_id, kind);

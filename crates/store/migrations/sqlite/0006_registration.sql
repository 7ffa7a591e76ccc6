-- Registration (issue #6): centres, machines and their staff; uploaded packets and the history
-- of every stage they went through; de-duplication candidates; the demographic blocking index;
-- adjudication cases. No personal data in clear: packets are blobs encrypted to the
-- registration key, blocking keys are keyed HMAC digests, candidates are RIDs and scores.

CREATE TABLE reg_centres (
    id             TEXT    PRIMARY KEY CHECK (length(id) = 5),   -- 5-digit centre id (RID part)
    name           TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('active', 'inactive')),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

CREATE TABLE reg_machines (
    id             TEXT    PRIMARY KEY CHECK (length(id) = 5),   -- 5-digit machine id (RID part)
    centre_id      TEXT    NOT NULL REFERENCES reg_centres (id),
    public_key     BLOB    NOT NULL,                             -- Ed25519, 32 bytes; the private half never leaves the machine
    status         TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

-- Operators and supervisors assigned to a centre (their ids appear in the packets they make).
CREATE TABLE reg_staff (
    centre_id      TEXT    NOT NULL REFERENCES reg_centres (id),
    user_id        TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('operator', 'supervisor')),
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (centre_id, user_id, role)
);

CREATE TABLE packets (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order (tie-breaks concurrent duplicates)
    rid            TEXT    NOT NULL UNIQUE,
    digest         BLOB    NOT NULL,            -- SHA-256 of the file as uploaded: the same RID with other bytes is refused
    blob           TEXT    NOT NULL,            -- blob key of the file (encrypted to the registration key)
    centre_id      TEXT    NOT NULL,
    machine_id     TEXT    NOT NULL,
    uploaded_by    TEXT    NOT NULL,            -- actor id (token:<uuid>)
    flow           TEXT    CHECK (flow IN ('new', 'update', 'lost', 'child')),  -- known once decrypted
    status         TEXT    NOT NULL CHECK (status IN ('processing', 'waiting', 'adjudication', 'issued', 'updated', 'found', 'duplicate', 'rejected')),
    stage          TEXT    NOT NULL,
    reason_code    TEXT,
    abis_ref       TEXT    UNIQUE,              -- random UUID: this registration's ABIS reference id
    identity_id    TEXT,                        -- the identity issued, updated, found, or duplicated
    received_at_ms INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
CREATE INDEX packets_status ON packets (status, seq);

CREATE TABLE packet_events (
    rid            TEXT    NOT NULL,
    n              INTEGER NOT NULL,            -- 1, 2, … per packet
    stage          TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    code           TEXT,
    detail         TEXT,                        -- stable codes and field paths only, never values
    at_ms          INTEGER NOT NULL,
    PRIMARY KEY (rid, n)
);

-- Other registrations a packet may duplicate (by biometrics or demographics).
CREATE TABLE packet_candidates (
    rid            TEXT    NOT NULL,
    candidate_rid  TEXT    NOT NULL,
    source         TEXT    NOT NULL CHECK (source IN ('bio', 'demo')),
    score          REAL             NOT NULL,   -- bio: evidence (-log10 FMR); demo: log-likelihood ratio
    decision       TEXT    NOT NULL,            -- match | review
    detail         TEXT    NOT NULL,            -- JSON: per-modality or per-field evidence (scores, no values)
    PRIMARY KEY (rid, candidate_rid, source)
);
CREATE INDEX packet_candidates_candidate ON packet_candidates (candidate_rid);

-- Demographic blocking keys as HMAC digests under the lookup key (so the index reveals no names).
CREATE TABLE reg_demo_keys (
    digest         BLOB    NOT NULL,
    rid            TEXT    NOT NULL,
    PRIMARY KEY (digest, rid)
);
CREATE INDEX reg_demo_keys_rid ON reg_demo_keys (rid);

CREATE TABLE adjudications (
    id             TEXT    PRIMARY KEY,         -- random UUID
    rid            TEXT    NOT NULL UNIQUE,
    state          TEXT    NOT NULL CHECK (state IN ('open', 'decided')),
    decision       TEXT    CHECK (decision IN ('duplicate', 'not_duplicate')),
    duplicate_of   TEXT,                        -- candidate RID chosen
    reason         BLOB   ,                       -- sealed (free text may name the person)
    decided_by     TEXT,
    created_at_ms  INTEGER NOT NULL,
    decided_at_ms  BIGINT
);
CREATE INDEX adjudications_open ON adjudications (state, created_at_ms);

-- ABIS (issue #5): the biometric gallery, request idempotency and sharded searches.
-- No biometric data in clear: each reference's templates are sealed under a data key of their
-- own, which lives in the key vault (deleting a reference destroys it). Reference ids are the
-- caller's opaque ids (random UUIDs from MOSIP's registration processor), never a RID or UIN.

CREATE TABLE abis_references (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the gallery's numeric id; shard = seq mod shards
    id             TEXT    NOT NULL UNIQUE,            -- random UUID: vault key id and AAD
    reference_id   TEXT    NOT NULL UNIQUE,            -- the caller's referenceId
    templates      BLOB    NOT NULL,                   -- sealed template set (tessera-templates-1)
    created_at_ms  INTEGER NOT NULL
);

-- Every answered request, so a retried request id is answered again rather than re-executed.
-- Written in the same transaction as the change it made (insert, delete).
CREATE TABLE abis_requests (
    request_id     TEXT    PRIMARY KEY,
    operation      TEXT    NOT NULL,
    digest         BLOB    NOT NULL,                   -- SHA-256 of the request as received
    response       TEXT    NOT NULL,                   -- the JSON answered (ids and scores, no biometrics)
    created_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX abis_requests_created ON abis_requests (created_at_ms);

-- A search fanned out to shard workers through the job queue: the sealed probe, then one
-- result row per shard; the coordinator merges when every shard has answered.
CREATE TABLE abis_searches (
    id             TEXT    PRIMARY KEY,                -- random UUID: vault key id and AAD of the probe
    shards         INTEGER NOT NULL CHECK (shards >= 1),
    params         TEXT    NOT NULL,                   -- JSON: k, threshold, gallery restriction
    probe          BLOB    NOT NULL,                   -- sealed template set
    created_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE abis_search_results (
    search_id      TEXT    NOT NULL REFERENCES abis_searches (id) ON DELETE CASCADE,
    shard          INTEGER NOT NULL,
    hits           TEXT    NOT NULL,                   -- JSON: [[seq, scores…]…]
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (search_id, shard)
) WITHOUT ROWID;

-- Jobs that only some workers may run (a shard's searches go to the worker holding that
-- shard). The empty lane is every worker's.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT '';
DROP INDEX jobs_due;
CREATE INDEX jobs_due ON jobs (lane, run_at_ms, id) WHERE state = 'ready';

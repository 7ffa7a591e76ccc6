-- Foundation: the UIN pool and the durable job queue. Times are Unix milliseconds (UTC).

CREATE TABLE uin_pool (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- draw order; batches are random, so order leaks nothing
    uin            TEXT    NOT NULL UNIQUE,
    state          TEXT    NOT NULL CHECK (state IN ('UNUSED', 'ASSIGNED', 'ISSUED', 'RETIRED')),
    created_at_ms  INTEGER NOT NULL,
    assigned_at_ms INTEGER,
    issued_at_ms   INTEGER
);
CREATE INDEX uin_pool_unused ON uin_pool (seq) WHERE state = 'UNUSED';

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL CHECK (state IN ('ready', 'running', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at_ms       INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    leased_by       TEXT,
    last_error      TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at_ms, id) WHERE state = 'ready';
CREATE INDEX jobs_leased ON jobs (lease_until_ms) WHERE state = 'running';
CREATE INDEX jobs_dead ON jobs (updated_at_ms) WHERE state = 'dead';
CREATE INDEX jobs_kind_state ON jobs (kind, state);

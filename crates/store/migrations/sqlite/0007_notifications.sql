-- Notifications (issue #6 item 8): the outbox. A message is enqueued in the same transaction as
-- the change it announces (a packet's final state), and delivered later by a worker. No personal
-- data in clear: the recipient's address and the template variables (name, UIN, reason) are one
-- sealed item (`tessera-sealed-1/notification/<id>`, its data key in the key vault), so deleting
-- that key erases the message everywhere. Errors are stable codes, never addresses.

CREATE TABLE notifications (
    id              TEXT    PRIMARY KEY,         -- the sealed item's id (UUIDv7): Message-ID, Idempotency-Key, file line id
    idempotency_key TEXT    NOT NULL UNIQUE,     -- the caller's key (e.g. `registration.issued:<RID>:email`); enqueued once, ever
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'sms')),
    template        TEXT    NOT NULL,            -- event name (`registration.issued`)
    language        TEXT    NOT NULL,            -- ISO 639-3, the one rendered
    payload         BLOB    NOT NULL,            -- sealed JSON {"to", "vars"}
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'unknown')),
    adapter         TEXT    CHECK (adapter IN ('file', 'smtp', 'webhook')),  -- who took the last attempt (decides crash recovery)
    attempts        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    run_at_ms       INTEGER NOT NULL,            -- pending: not before
    lease_until_ms  INTEGER,                     -- sending: the attempt is presumed dead after this
    last_error      TEXT,                        -- a stable code, never an address
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    sent_at_ms      INTEGER
);
CREATE INDEX notifications_due ON notifications (status, run_at_ms);

-- ABIS change log (issue #5): every insert and delete of a gallery reference, numbered in commit
-- order, so every process that holds a gallery in memory (a shard worker, a second API process)
-- follows the table without reloading it. The number comes from the one-row head, locked by
-- the writing transaction until it commits: numbers are gapless and a reader that has seen
-- change n has seen every change before it. Pruned after a retention period; a follower that
-- fell behind the pruned part reloads its shard.
CREATE TABLE abis_change_head (
    one     BIGINT PRIMARY KEY CHECK (one = 1),
    change  BIGINT NOT NULL
);
INSERT INTO abis_change_head (one, change) VALUES (1, 0);

CREATE TABLE abis_changes (
    change         BIGINT  PRIMARY KEY,
    seq            BIGINT  NOT NULL,                   -- the reference's gallery id
    op             TEXT    NOT NULL CHECK (op IN ('insert', 'delete')),
    created_at_ms  BIGINT  NOT NULL
);
CREATE INDEX abis_changes_created ON abis_changes (created_at_ms);

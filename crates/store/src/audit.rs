//! Rows of the hash-chained audit log and its signed checkpoints. The chain itself (what is
//! hashed, what is signed, how it is verified) is `idrepo::audit`; here are only the rows.

use crate::{Db, Result, Tx, UnixMillis};

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at_ms: UnixMillis,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// A signed checkpoint: the audit key's signature over the chain hash at `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub at_ms: UnixMillis,
}

/// Largest page `read` returns.
pub const READ_LIMIT_MAX: i64 = 10_000;

type Row = (i64, i64, String, String, String, String, String, Vec<u8>, Vec<u8>);
type CheckpointTuple = (i64, Vec<u8>, String, Vec<u8>, i64);

/// Locks the chain head for the rest of the caller's transaction and returns (seq, hash) of
/// the last entry. PostgreSQL: `FOR UPDATE` on the single head row, so appenders queue; SQLite:
/// the write transaction already excludes other writers.
///
/// # Errors
/// Database errors.
pub async fn lock_head(tx: &mut Tx) -> Result<(i64, Vec<u8>)> {
    Ok(match tx {
        Tx::Postgres(t) => sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut **t).await?,
        Tx::Sqlite(t) => sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut **t).await?,
    })
}

/// Appends entries (already chained by the caller from `lock_head`) and moves the head.
///
/// # Errors
/// Database errors.
pub async fn append(tx: &mut Tx, rows: &[AuditRow]) -> Result<()> {
    let Some(last) = rows.last() else { return Ok(()) };
    for chunk in rows.chunks(crate::identities::rows_per_statement(9)) {
        let sql = format!(
            "INSERT INTO audit_log (seq, at_ms, actor, action, target, outcome, request_id, prev_hash, hash) VALUES {}",
            crate::identities::placeholders(chunk.len(), 9)
        );
        crate::on_tx!(&mut *tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for r in chunk {
                q = q.bind(r.seq).bind(r.at_ms).bind(&r.actor).bind(&r.action).bind(&r.target).bind(&r.outcome)
                    .bind(&r.request_id).bind(&r.prev_hash).bind(&r.hash);
            }
            q.execute(c).await.map(|_| ())
        })?;
    }
    crate::on_tx!(&mut *tx, c => {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1").bind(last.seq).bind(&last.hash).execute(c).await.map(|_| ())
    })?;
    Ok(())
}

/// # Errors
/// Database errors.
pub async fn insert_checkpoint(tx: &mut Tx, cp: &CheckpointRow) -> Result<()> {
    crate::on_tx!(tx, c => {
        sqlx::query("INSERT INTO audit_checkpoints (seq, hash, key_id, signature, at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(cp.seq)
            .bind(&cp.hash)
            .bind(&cp.key_id)
            .bind(&cp.signature)
            .bind(cp.at_ms)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Entries with `seq > after`, in stored order of `seq`, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn read(db: &Db, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
    let rows: Vec<Row> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT seq, at_ms, actor, action, target, outcome, request_id, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit.clamp(1, READ_LIMIT_MAX))
        .fetch_all(p)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(seq, at_ms, actor, action, target, outcome, request_id, prev_hash, hash)| AuditRow {
            seq,
            at_ms,
            actor,
            action,
            target,
            outcome,
            request_id,
            prev_hash,
            hash,
        })
        .collect())
}

/// Every checkpoint, oldest first.
///
/// # Errors
/// Database errors.
pub async fn checkpoints(db: &Db) -> Result<Vec<CheckpointRow>> {
    let rows: Vec<CheckpointTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT seq, hash, key_id, signature, at_ms FROM audit_checkpoints ORDER BY seq").fetch_all(p).await
    })?;
    Ok(rows.into_iter().map(|(seq, hash, key_id, signature, at_ms)| CheckpointRow { seq, hash, key_id, signature, at_ms }).collect())
}

/// The head as stored: (seq, hash) of the last entry.
///
/// # Errors
/// Database errors.
pub async fn head(db: &Db) -> Result<(i64, Vec<u8>)> {
    Ok(crate::on!(db, p => sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(p).await)?)
}

/// The seq of the newest checkpoint (0 when none).
///
/// # Errors
/// Database errors.
pub async fn last_checkpoint_seq(tx: &mut Tx) -> Result<i64> {
    let (n,): (i64,) = crate::on_tx!(tx, c => {
        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").fetch_one(c).await
    })?;
    Ok(n)
}

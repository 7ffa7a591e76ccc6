//! The durable job queue, kept in the database so jobs commit atomically with the data they
//! concern and no broker is needed.
//!
//! Life of a job: `ready` → (leased) `running` → `done`; a failure goes back to `ready` with an
//! exponential backoff until `max_attempts`, then to `dead` (the dead-letter state, which an
//! operator can inspect and redrive). A lease that expires (the worker crashed or hung) returns
//! the job to `ready`; the expired attempt counts, so a job that kills its worker every time
//! still ends up dead instead of looping. Every job has a unique idempotency key: enqueuing the
//! same key twice yields one job. Handlers must be idempotent anyway: delivery is at least once.

use crate::{Db, Result, StoreError, Tx, UnixMillis};
use serde::Serialize;

/// Every kind of job there is. Closed: a row with an unknown kind is an error, not a skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Generate a batch of UINs into the pool. Payload: `{"batch": N}`.
    UinPoolRefill,
    /// Re-wrap data keys still wrapped under an older identity key version. Payload:
    /// `{"key": "identity.vN"}`, the version the rotation created.
    RewrapKeys,
    /// Recompute lookup digests still under an older lookup key version. Payload:
    /// `{"key": "lookup.vN"}`.
    ReindexLookups,
    /// Destroy an erased person's data key in the vault (idempotent; the erasure enqueues it in
    /// its own transaction so a crash between the two databases cannot leave the key behind).
    /// Payload: `{"identity_id": "…"}`.
    DestroyDataKey,
    /// Search one shard of the ABIS gallery for a fanned-out search (lane `abis-shard-<i>`, so
    /// only the worker holding shard i takes it). Payload: `{"search_id": "…", "shard": i}`.
    AbisSearchShard,
    /// Destroy a deleted ABIS reference's (or a finished search probe's) data key in the vault.
    /// Payload: `{"identity_id": "…"}` (the vault's key id).
    AbisDestroyKey,
    /// Run one stage of the registration pipeline on a packet. Payload: `{"rid": "…", "stage":
    /// "…"}`; each stage commits its result with the job of the next stage.
    PacketStage,
}

impl JobKind {
    pub const ALL: &'static [JobKind] = &[
        JobKind::UinPoolRefill,
        JobKind::RewrapKeys,
        JobKind::ReindexLookups,
        JobKind::DestroyDataKey,
        JobKind::AbisSearchShard,
        JobKind::AbisDestroyKey,
        JobKind::PacketStage,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::UinPoolRefill => "uin_pool_refill",
            JobKind::RewrapKeys => "rewrap_keys",
            JobKind::ReindexLookups => "reindex_lookups",
            JobKind::DestroyDataKey => "destroy_data_key",
            JobKind::AbisSearchShard => "abis_search_shard",
            JobKind::AbisDestroyKey => "abis_destroy_key",
            JobKind::PacketStage => "packet_stage",
        }
    }

    /// # Errors
    /// `UnknownJobKind` for any other string.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| StoreError::UnknownJobKind(s.to_owned()))
    }

    /// Attempts before the job is dead-lettered.
    #[must_use]
    pub fn max_attempts(self) -> i32 {
        match self {
            JobKind::UinPoolRefill | JobKind::RewrapKeys | JobKind::ReindexLookups => 8,
            // An erasure must not give up quietly: many attempts, then an operator sees it dead.
            JobKind::DestroyDataKey | JobKind::AbisDestroyKey => 20,
            // A search someone is waiting for: retry a few times, then the coordinator reports
            // the failure instead of waiting on.
            JobKind::AbisSearchShard => 3,
            // A stage that keeps failing (storage down, a shard missing) is retried for about
            // half an hour of backoff, then waits dead-lettered for an operator to redrive it;
            // a packet's own faults are final outcomes, not failures.
            JobKind::PacketStage => 12,
        }
    }
}

/// Longest backoff between attempts.
pub const BACKOFF_MAX_MS: i64 = 10 * 60 * 1000;
/// First retry delay; doubled per further attempt.
pub const BACKOFF_BASE_MS: i64 = 1000;
/// Longest stored error text (errors are ours and carry no PII; this only bounds row size).
pub const ERROR_CHARS_MAX: usize = 1000;
/// Largest page `list` returns.
pub const LIST_LIMIT_MAX: u32 = 1000;
/// Longest idempotency key.
pub const KEY_CHARS_MAX: usize = 200;
/// Longest lane name.
pub const LANE_CHARS_MAX: usize = 64;

/// Delay before attempt `attempts + 1`, after `attempts` failures: 1 s, 2 s, 4 s, … capped.
#[must_use]
pub fn backoff_ms(attempts: i32) -> i64 {
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    BACKOFF_BASE_MS.saturating_mul(1i64 << shift).min(BACKOFF_MAX_MS)
}

/// Queue states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Ready,
    Running,
    Done,
    Dead,
}

impl JobState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }

    /// # Errors
    /// `Invalid` for an unknown state name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ready" => Ok(JobState::Ready),
            "running" => Ok(JobState::Running),
            "done" => Ok(JobState::Done),
            "dead" => Ok(JobState::Dead),
            _ => Err(StoreError::Invalid("job state must be ready, running, done or dead")),
        }
    }
}

/// A job handed to a worker. `attempt` fences the lease: completing or failing with a stale
/// attempt number (the lease expired and someone else took the job) changes nothing.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: i64,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub attempt: i32,
    pub max_attempts: i32,
}

/// A row as listed for operators.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at_ms: i64,
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
}

/// Enqueues a job in the caller's transaction. Returns its id, or `None` when a job with the
/// same idempotency key already exists (in any state).
///
/// # Errors
/// An over-long key, or database errors.
pub async fn enqueue(tx: &mut Tx, kind: JobKind, payload: &serde_json::Value, key: &str, now: UnixMillis) -> Result<Option<i64>> {
    enqueue_in(tx, kind, "", payload, key, now).await
}

/// `enqueue` into a lane: only workers that serve `lane` lease the job (the empty lane is every
/// worker's).
///
/// # Errors
/// An over-long key or lane, or database errors.
pub async fn enqueue_in(
    tx: &mut Tx,
    kind: JobKind,
    lane: &str,
    payload: &serde_json::Value,
    key: &str,
    now: UnixMillis,
) -> Result<Option<i64>> {
    if lane.len() > LANE_CHARS_MAX {
        return Err(StoreError::Invalid("job lane is too long"));
    }
    if key.is_empty() || key.chars().count() > KEY_CHARS_MAX {
        return Err(StoreError::Invalid("idempotency key must be 1..=200 characters"));
    }
    let payload = payload.to_string();
    let row: Option<(i64,)> = crate::on_tx!(tx, c => {
        sqlx::query_as(
            "INSERT INTO jobs (kind, payload, idempotency_key, state, attempts, max_attempts, run_at_ms, created_at_ms, updated_at_ms, lane) \
             VALUES ($1, $2, $3, 'ready', 0, $4, $5, $5, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .bind(kind.as_str())
        .bind(&payload)
        .bind(key)
        .bind(kind.max_attempts())
        .bind(now)
        .bind(lane)
        .fetch_optional(c)
        .await
    })?;
    Ok(row.map(|r| r.0))
}

/// Leases the oldest due job for `lease_ms`, or returns `None` when nothing is due.
///
/// # Errors
/// Database errors, or a stored job of an unknown kind (which is dead-lettered on the spot so it
/// cannot block the queue).
pub async fn lease(db: &Db, worker: &str, lease_ms: i64, now: UnixMillis) -> Result<Option<Leased>> {
    lease_in(db, worker, "", lease_ms, now).await
}

/// `lease` from one lane only (`lease` is the empty lane every worker serves; a shard worker's
/// search loop leases from its shard's lane, so searches never wait behind other jobs).
///
/// # Errors
/// As `lease`.
pub async fn lease_in(db: &Db, worker: &str, lane: &str, lease_ms: i64, now: UnixMillis) -> Result<Option<Leased>> {
    let mut tx = db.begin().await?;
    let pick = match &tx {
        Tx::Postgres(_) => {
            "SELECT id FROM jobs WHERE state = 'ready' AND lane = $4 AND run_at_ms <= $1 ORDER BY run_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        Tx::Sqlite(_) => "SELECT id FROM jobs WHERE state = 'ready' AND lane = $4 AND run_at_ms <= $1 ORDER BY run_at_ms, id LIMIT 1",
    };
    let row: Option<(i64, String, String, i32, i32)> = crate::on_tx!(&mut tx, c => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until_ms = $2, leased_by = $3, updated_at_ms = $1 \
             WHERE id = ({pick}) RETURNING id, kind, payload, attempts, max_attempts"
        )))
        .bind(now)
        .bind(now.saturating_add(lease_ms))
        .bind(worker)
        .bind(lane)
        .fetch_optional(c)
        .await
    })?;
    let Some((id, kind, payload, attempt, max_attempts)) = row else {
        return Ok(None);
    };
    let parsed = JobKind::parse(&kind)
        .and_then(|k| serde_json::from_str(&payload).map(|p| (k, p)).map_err(|_| StoreError::Invalid("job payload is not JSON")));
    match parsed {
        Ok((kind, payload)) => {
            tx.commit().await?;
            Ok(Some(Leased { id, kind, payload, attempt, max_attempts }))
        }
        Err(e) => {
            crate::on_tx!(&mut tx, c => {
                sqlx::query("UPDATE jobs SET state = 'dead', lease_until_ms = NULL, last_error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(e.to_string())
                    .execute(c)
                    .await
                    .map(|_| ())
            })?;
            tx.commit().await?;
            Err(e)
        }
    }
}

/// Marks a leased job done. Returns false when the lease was lost (stale attempt).
///
/// # Errors
/// Database errors.
pub async fn complete(db: &Db, job: &Leased, now: UnixMillis) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE jobs SET state = 'done', lease_until_ms = NULL, leased_by = NULL, updated_at_ms = $3 \
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(job.attempt)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Records a failed attempt: back to `ready` after a backoff, or `dead` after the last attempt.
/// Returns the new state, or `None` when the lease was lost.
///
/// # Errors
/// Database errors.
pub async fn fail(db: &Db, job: &Leased, error: &str, now: UnixMillis) -> Result<Option<JobState>> {
    let state = if job.attempt >= job.max_attempts { JobState::Dead } else { JobState::Ready };
    let error: String = error.chars().take(ERROR_CHARS_MAX).collect();
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE jobs SET state = $3, run_at_ms = $4, last_error = $5, lease_until_ms = NULL, leased_by = NULL, updated_at_ms = $6 \
             WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(job.attempt)
        .bind(state.as_str())
        .bind(now.saturating_add(backoff_ms(job.attempt)))
        .bind(&error)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok((n == 1).then_some(state))
}

/// Puts a leased job back to run again at `run_at` without counting the attempt: it is waiting
/// for something else (another packet's outcome), not failing. Returns false when the lease was
/// lost.
///
/// # Errors
/// Database errors.
pub async fn snooze(db: &Db, job: &Leased, run_at: UnixMillis, now: UnixMillis) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE jobs SET state = 'ready', attempts = attempts - 1, run_at_ms = $3, lease_until_ms = NULL, leased_by = NULL, \
             updated_at_ms = $4 WHERE id = $1 AND attempts = $2 AND state = 'running'",
        )
        .bind(job.id)
        .bind(job.attempt)
        .bind(run_at)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Returns jobs whose lease has expired to the queue (or to `dead` when that was their last
/// attempt). Returns how many were reaped.
///
/// # Errors
/// Database errors.
pub async fn reap_expired(db: &Db, now: UnixMillis) -> Result<u64> {
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'ready' END, \
             run_at_ms = $1, lease_until_ms = NULL, leased_by = NULL, last_error = 'lease expired', updated_at_ms = $1 \
             WHERE state = 'running' AND lease_until_ms < $1",
        )
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    if n > 0 {
        tracing::warn!(reaped = n, "job leases expired");
    }
    Ok(n)
}

/// How many jobs of `kind` are in `state` (uses the `(kind, state)` index).
///
/// # Errors
/// Database errors.
pub async fn count(tx: &mut Tx, kind: JobKind, state: JobState) -> Result<i64> {
    let (n,): (i64,) = crate::on_tx!(tx, c => {
        sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state = $2")
            .bind(kind.as_str())
            .bind(state.as_str())
            .fetch_one(c)
            .await
    })?;
    Ok(n)
}

/// Lists jobs, newest first, optionally in one state.
///
/// # Errors
/// A limit over `LIST_LIMIT_MAX`, or database errors.
pub async fn list(db: &Db, state: Option<JobState>, limit: u32) -> Result<Vec<JobInfo>> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(StoreError::Invalid("limit must be between 1 and 1000"));
    }
    type Row = (i64, String, String, i32, i32, i64, Option<String>, i64);
    let rows: Vec<Row> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT id, kind, state, attempts, max_attempts, run_at_ms, last_error, updated_at_ms FROM jobs \
             WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(state.map(JobState::as_str))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
    })?;
    rows.into_iter()
        .map(|(id, kind, state, attempts, max_attempts, run_at_ms, last_error, updated_at_ms)| {
            Ok(JobInfo { id, kind, state: JobState::parse(&state)?, attempts, max_attempts, run_at_ms, last_error, updated_at_ms })
        })
        .collect()
}

/// Moves a dead job back to `ready` with a fresh set of attempts (after the operator fixed the
/// cause).
///
/// # Errors
/// `JobState` when the job does not exist or is not dead; database errors.
pub async fn redrive(db: &Db, id: i64, now: UnixMillis) -> Result<()> {
    let n = crate::on!(db, p => {
        sqlx::query("UPDATE jobs SET state = 'ready', attempts = 0, run_at_ms = $2, updated_at_ms = $2 WHERE id = $1 AND state = 'dead'")
            .bind(id)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?;
    if n == 1 { Ok(()) } else { Err(StoreError::JobState(id)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(1), 1000);
        assert_eq!(backoff_ms(2), 2000);
        assert_eq!(backoff_ms(3), 4000);
        assert_eq!(backoff_ms(30), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(i32::MAX), BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(0), 1000);
    }

    #[test]
    fn kinds_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()).ok(), Some(*k));
        }
        assert!(matches!(JobKind::parse("nope"), Err(StoreError::UnknownJobKind(_))));
    }
}

//! The UIN pool: numbers pre-generated in random batches, handed out atomically, never twice.
//!
//! States: `UNUSED` → `ASSIGNED` (allocated inside the caller's transaction) → `ISSUED` (the
//! identity that holds it is committed). A number whose row leaves `UNUSED` never returns to it,
//! and the `uin` column is unique, so a number cannot be handed out twice even across crashes or
//! concurrent allocators: the state change and the caller's use of the number commit together.
//! `RETIRED` marks numbers generated under older rules that today's rules reject (for example
//! after a country adds a restricted number); they are skipped, never issued.

use crate::jobs::{self, JobKind};
use crate::{Db, Result, StoreError, Tx, UnixMillis};
use rand::Rng;
use serde::Serialize;
use tessera_core::{IdRules, Uin};

/// Largest refill batch one job may insert (bounds transaction size and job run time).
pub const REFILL_BATCH_MAX: u32 = 1_000_000;
/// Rows per INSERT statement (bounded well under SQLite's 32,766 bind-parameter limit).
const INSERT_CHUNK: usize = 500;
/// How many retired numbers one allocation may skip before it gives up (a new rule set that
/// rejects most of the pool is a configuration problem, reported rather than looped on).
pub const ALLOCATE_SKIP_MAX: u32 = 64;
/// Generation attempts per wanted number before a refill reports the rules as too strict.
const GENERATE_ROUNDS_MAX: u32 = 4;

/// Counts per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    pub unused: i64,
    pub assigned: i64,
    pub issued: i64,
    pub retired: i64,
}

/// Pool sizing, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// A refill is requested when fewer than this many numbers are unused.
    pub refill_threshold: u32,
    /// How many new numbers one refill generates.
    pub refill_batch: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { refill_threshold: 10_000, refill_batch: 50_000 }
    }
}

impl PoolConfig {
    /// # Errors
    /// A zero or over-large batch, or a threshold the batch cannot lift the pool above.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.refill_batch == 0 || self.refill_batch > REFILL_BATCH_MAX {
            return Err(format!("uin_pool.refill_batch must be between 1 and {REFILL_BATCH_MAX}"));
        }
        if self.refill_threshold >= self.refill_batch {
            return Err("uin_pool.refill_threshold must be smaller than uin_pool.refill_batch".into());
        }
        Ok(())
    }
}

/// Counts numbers per state.
///
/// # Errors
/// Database errors.
pub async fn stats(db: &Db) -> Result<PoolStats> {
    let rows: Vec<(String, i64)> = crate::on!(db, p => {
        sqlx::query_as("SELECT state, COUNT(*) FROM uin_pool GROUP BY state").fetch_all(p).await
    })?;
    let mut s = PoolStats::default();
    for (state, n) in rows {
        match state.as_str() {
            "UNUSED" => s.unused = n,
            "ASSIGNED" => s.assigned = n,
            "ISSUED" => s.issued = n,
            "RETIRED" => s.retired = n,
            _ => {}
        }
    }
    Ok(s)
}

/// Inserts numbers as `UNUSED`, skipping any already present (in any state: a number once in
/// the pool is never re-added). Returns how many were new.
///
/// # Errors
/// Database errors; nothing is inserted then.
pub async fn insert_unused(db: &Db, uins: &[Uin], now: UnixMillis) -> Result<u64> {
    let mut tx = db.begin().await?;
    let mut added = 0;
    for chunk in uins.chunks(INSERT_CHUNK) {
        let mut sql = String::from("INSERT INTO uin_pool (uin, state, created_at_ms) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("(${}, 'UNUSED', ${})", 2 * i + 1, 2 * i + 2));
        }
        sql.push_str(" ON CONFLICT (uin) DO NOTHING");
        added += crate::on_tx!(&mut tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for u in chunk {
                q = q.bind(u.expose().to_owned()).bind(now);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    tx.commit().await?;
    Ok(added)
}

/// Generates `batch` fresh numbers under `rules` and adds them to the pool. Returns how many
/// were added (collisions with existing numbers are regenerated, within a bound).
///
/// # Errors
/// Rules so strict that numbers cannot be found, or database errors.
pub async fn refill<R: Rng + ?Sized>(db: &Db, rules: &IdRules, rng: &mut R, batch: u32, now: UnixMillis) -> Result<u64> {
    if batch == 0 || batch > REFILL_BATCH_MAX {
        return Err(StoreError::Invalid("refill batch out of range"));
    }
    let mut added = 0u64;
    for _ in 0..GENERATE_ROUNDS_MAX {
        let want = u64::from(batch) - added;
        if want == 0 {
            break;
        }
        let mut fresh = std::collections::HashSet::with_capacity(usize::try_from(want).unwrap_or(0));
        while (fresh.len() as u64) < want {
            fresh.insert(Uin::generate(rules, rng)?);
        }
        let fresh: Vec<Uin> = fresh.into_iter().collect();
        added += insert_unused(db, &fresh, now).await?;
    }
    if added < u64::from(batch) {
        // Fresh numbers are getting rare: the number space is filling up. Worth an alert.
        tracing::warn!(added, batch, "uin pool refill came up short: most candidates are already taken");
    } else {
        tracing::info!(added, batch, "uin pool refilled");
    }
    Ok(added)
}

/// Takes one `UNUSED` number and marks it `ASSIGNED`, inside the caller's transaction: if the
/// caller rolls back, the number goes back to `UNUSED` with it; if it commits, the number is
/// spent for good. Numbers that today's `rules` reject are marked `RETIRED` and skipped.
///
/// On PostgreSQL concurrent allocators skip each other's locked rows (`FOR UPDATE SKIP
/// LOCKED`); on SQLite the transaction already holds the single write lock.
///
/// # Errors
/// `UinPoolEmpty` when nothing is left (callers should request a refill), or database errors.
pub async fn allocate(tx: &mut Tx, rules: &IdRules, now: UnixMillis) -> Result<Uin> {
    for _ in 0..ALLOCATE_SKIP_MAX {
        let taken: Option<(String,)> = match tx {
            Tx::Postgres(t) => {
                sqlx::query_as(
                    "UPDATE uin_pool SET state = 'ASSIGNED', assigned_at_ms = $1 \
                     WHERE uin = (SELECT uin FROM uin_pool WHERE state = 'UNUSED' \
                                  ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING uin",
                )
                .bind(now)
                .fetch_optional(&mut **t)
                .await?
            }
            Tx::Sqlite(t) => {
                sqlx::query_as(
                    "UPDATE uin_pool SET state = 'ASSIGNED', assigned_at_ms = $1 \
                     WHERE seq = (SELECT seq FROM uin_pool WHERE state = 'UNUSED' ORDER BY seq LIMIT 1) \
                     RETURNING uin",
                )
                .bind(now)
                .fetch_optional(&mut **t)
                .await?
            }
        };
        let Some((text,)) = taken else {
            return Err(StoreError::UinPoolEmpty);
        };
        if let Some(uin) = accept_or_retire(tx, rules, &text).await? {
            return Ok(uin);
        }
    }
    Err(StoreError::Invalid("too many pooled UINs rejected by the current rules; refill the pool"))
}

/// A number just taken from the pool, if today's `rules` accept it; otherwise it is marked
/// `RETIRED` (in the caller's transaction) so it is never handed out.
async fn accept_or_retire(tx: &mut Tx, rules: &IdRules, text: &str) -> Result<Option<Uin>> {
    match Uin::parse_with(text, rules) {
        Ok(uin) => Ok(Some(uin)),
        Err(rule) => {
            tracing::warn!(rule = rule.code(), "retiring a pooled UIN that the current rules reject");
            crate::on_tx!(tx, c => {
                sqlx::query("UPDATE uin_pool SET state = 'RETIRED' WHERE uin = $1").bind(text).execute(c).await.map(|_| ())
            })?;
            Ok(None)
        }
    }
}

/// Marks an `ASSIGNED` number `ISSUED`, in the caller's transaction.
///
/// # Errors
/// `UinNotAssigned` when the number is not currently assigned (never allocated, or already
/// issued), or database errors.
pub async fn mark_issued(tx: &mut Tx, uin: &Uin, now: UnixMillis) -> Result<()> {
    let n = crate::on_tx!(tx, c => {
        sqlx::query("UPDATE uin_pool SET state = 'ISSUED', issued_at_ms = $1 WHERE uin = $2 AND state = 'ASSIGNED'")
            .bind(now)
            .bind(uin.expose())
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    if n == 1 { Ok(()) } else { Err(StoreError::UinNotAssigned) }
}

/// The state of one number, if it is in the pool.
///
/// # Errors
/// Database errors.
pub async fn state_of(db: &Db, uin: &Uin) -> Result<Option<String>> {
    let row: Option<(String,)> = crate::on!(db, p => {
        sqlx::query_as("SELECT state FROM uin_pool WHERE uin = $1").bind(uin.expose()).fetch_optional(p).await
    })?;
    Ok(row.map(|r| r.0))
}

/// How many numbers are `UNUSED`: cheap at any register size (it reads the partial index of
/// unused numbers, which holds at most a few refill batches).
///
/// # Errors
/// Database errors.
pub async fn unused_count(db: &Db) -> Result<i64> {
    let (n,): (i64,) = crate::on!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM uin_pool WHERE state = 'UNUSED'").fetch_one(p).await
    })?;
    Ok(n)
}

/// Requests a refill job when fewer than `refill_threshold` numbers are unused. The idempotency
/// key counts the refills completed so far: callers that find the pool low at the same time, or
/// again while the refill is pending, all name the same job; once it is done, the next low pool
/// gets a new key. (A dead refill blocks further requests until an operator redrives it, which
/// is the point of the dead-letter state.) Returns the job id when one was newly enqueued.
///
/// # Errors
/// Database errors.
pub async fn ensure_refill_requested(db: &Db, cfg: PoolConfig, now: UnixMillis) -> Result<Option<i64>> {
    if unused_count(db).await? >= i64::from(cfg.refill_threshold) {
        return Ok(None);
    }
    let mut tx = db.begin().await?;
    let done = jobs::count(&mut tx, JobKind::UinPoolRefill, jobs::JobState::Done).await?;
    let key = format!("uin-pool-refill:{done}");
    let payload = serde_json::json!({ "batch": cfg.refill_batch });
    let id = jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &payload, &key, now).await?;
    tx.commit().await?;
    Ok(id)
}

/// Takes `n` `UNUSED` numbers and marks them `ISSUED` at once, in the caller's transaction (bulk
/// import: allocation and issue commit together, so the intermediate `ASSIGNED` state is
/// skipped). Numbers that today's `rules` reject are retired and replaced.
///
/// # Errors
/// `UinPoolEmpty` when fewer than `n` are left (nothing is then taken once the caller rolls
/// back), or database errors.
pub async fn issue_many(tx: &mut Tx, rules: &IdRules, n: usize, now: UnixMillis) -> Result<Vec<Uin>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..ALLOCATE_SKIP_MAX {
        let want = i64::try_from(n - out.len()).unwrap_or(i64::MAX);
        if want == 0 {
            return Ok(out);
        }
        let taken: Vec<(String,)> = match tx {
            Tx::Postgres(t) => {
                sqlx::query_as(
                    "UPDATE uin_pool SET state = 'ISSUED', assigned_at_ms = $1, issued_at_ms = $1 \
                     WHERE uin IN (SELECT uin FROM uin_pool WHERE state = 'UNUSED' \
                                   ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     RETURNING uin",
                )
                .bind(now)
                .bind(want)
                .fetch_all(&mut **t)
                .await?
            }
            Tx::Sqlite(t) => {
                sqlx::query_as(
                    "UPDATE uin_pool SET state = 'ISSUED', assigned_at_ms = $1, issued_at_ms = $1 \
                     WHERE seq IN (SELECT seq FROM uin_pool WHERE state = 'UNUSED' ORDER BY seq LIMIT $2) \
                     RETURNING uin",
                )
                .bind(now)
                .bind(want)
                .fetch_all(&mut **t)
                .await?
            }
        };
        if taken.is_empty() {
            return Err(StoreError::UinPoolEmpty);
        }
        for (text,) in taken {
            out.extend(accept_or_retire(tx, rules, &text).await?);
        }
    }
    Err(StoreError::Invalid("too many pooled UINs rejected by the current rules; refill the pool"))
}

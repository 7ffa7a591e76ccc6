//! Rows of the ABIS: gallery references (sealed template sets), answered requests (for
//! idempotency) and searches fanned out to shard workers. Opaque bytes and ids only: sealing and
//! opening happen above, in the identity repository.

use crate::identities::conflict;
use crate::{Db, Result, StoreError, Tx, UnixMillis};

/// One gallery reference as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceRow {
    /// The gallery's numeric id (shard = seq mod shards).
    pub seq: i64,
    /// Vault key id and AAD of the sealed templates.
    pub id: String,
    /// The caller's reference id.
    pub reference_id: String,
    pub templates: Vec<u8>,
}

type RefTuple = (i64, String, String, Vec<u8>);

fn reference_row((seq, id, reference_id, templates): RefTuple) -> ReferenceRow {
    ReferenceRow { seq, id, reference_id, templates }
}

/// Adds a reference; returns its `seq`.
///
/// # Errors
/// `Conflict` when the reference id (or id) exists already; database errors.
pub async fn insert_reference(tx: &mut Tx, id: &str, reference_id: &str, templates: &[u8], now: UnixMillis) -> Result<i64> {
    let (seq,): (i64,) = crate::on_tx!(tx, c => {
        sqlx::query_as("INSERT INTO abis_references (id, reference_id, templates, created_at_ms) VALUES ($1, $2, $3, $4) RETURNING seq")
            .bind(id)
            .bind(reference_id)
            .bind(templates)
            .bind(now)
            .fetch_one(c)
            .await
    })
    .map_err(conflict)?;
    record_change(tx, seq, ChangeOp::Insert, now).await?;
    Ok(seq)
}

/// Removes a reference; returns `(seq, id)` of what was removed, `None` when there was none.
///
/// # Errors
/// Database errors.
pub async fn delete_reference(tx: &mut Tx, reference_id: &str, now: UnixMillis) -> Result<Option<(i64, String)>> {
    let removed: Option<(i64, String)> = crate::on_tx!(tx, c => {
        sqlx::query_as("DELETE FROM abis_references WHERE reference_id = $1 RETURNING seq, id").bind(reference_id).fetch_optional(c).await
    })?;
    if let Some((seq, _)) = &removed {
        record_change(tx, *seq, ChangeOp::Delete, now).await?;
    }
    Ok(removed)
}

/// What happened to a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Insert,
    Delete,
}

impl ChangeOp {
    fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Commit-ordered and gapless (until pruned).
    pub change: i64,
    pub seq: i64,
    pub op: ChangeOp,
}

/// Appends to the change log in the caller's transaction. Taking the next number locks the head
/// row until the transaction ends, so numbers are assigned in commit order with no gaps.
async fn record_change(tx: &mut Tx, seq: i64, op: ChangeOp, now: UnixMillis) -> Result<()> {
    let (change,): (i64,) = crate::on_tx!(tx, c => {
        sqlx::query_as("UPDATE abis_change_head SET change = change + 1 WHERE one = 1 RETURNING change").fetch_one(c).await
    })?;
    crate::on_tx!(tx, c => {
        sqlx::query("INSERT INTO abis_changes (change, seq, op, created_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(change)
            .bind(seq)
            .bind(op.as_str())
            .bind(now)
            .execute(c)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// The number of the last committed change (0 before the first).
///
/// # Errors
/// Database errors.
pub async fn change_head(db: &Db) -> Result<i64> {
    let (n,): (i64,) = crate::on!(db, p => sqlx::query_as("SELECT change FROM abis_change_head WHERE one = 1").fetch_one(p).await)?;
    Ok(n)
}

/// Up to `limit` changes after `after`, in order, and the oldest change still kept (`None`: the
/// log is empty), so a follower can tell that it fell behind the pruned part.
///
/// # Errors
/// Database errors; a stored op that is neither insert nor delete is `Invalid`.
pub async fn changes_after(db: &Db, after: i64, limit: i64) -> Result<(Vec<Change>, Option<i64>)> {
    let rows: Vec<(i64, i64, String)> = crate::on!(db, p => {
        sqlx::query_as("SELECT change, seq, op FROM abis_changes WHERE change > $1 ORDER BY change LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await
    })?;
    let (oldest,): (Option<i64>,) = crate::on!(db, p => sqlx::query_as("SELECT MIN(change) FROM abis_changes").fetch_one(p).await)?;
    let changes = rows
        .into_iter()
        .map(|(change, seq, op)| {
            let op = match op.as_str() {
                "insert" => ChangeOp::Insert,
                "delete" => ChangeOp::Delete,
                _ => return Err(StoreError::Invalid("unknown ABIS change op")),
            };
            Ok(Change { change, seq, op })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((changes, oldest))
}

/// Forgets changes older than `before`, always keeping the newest one (so a follower can still
/// tell how far the log goes). Returns how many.
///
/// # Errors
/// Database errors.
pub async fn prune_changes(db: &Db, before: UnixMillis) -> Result<u64> {
    Ok(crate::on!(db, p => {
        sqlx::query("DELETE FROM abis_changes WHERE created_at_ms < $1 AND change < (SELECT change FROM abis_change_head WHERE one = 1)")
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?)
}

/// The references with the given seqs that exist, in `seq` order (a follower applying inserts).
///
/// # Errors
/// Database errors.
pub async fn references_by_seq(db: &Db, seqs: &[i64]) -> Result<Vec<ReferenceRow>> {
    let mut rows = crate::select_in!(db, RefTuple, seqs, |list| format!(
        "SELECT seq, id, reference_id, templates FROM abis_references WHERE seq IN {list}"
    ));
    rows.sort_unstable_by_key(|r| r.0);
    Ok(rows.into_iter().map(reference_row).collect())
}

/// # Errors
/// Database errors.
pub async fn reference(db: &Db, reference_id: &str) -> Result<Option<ReferenceRow>> {
    let row: Option<RefTuple> = crate::on!(db, p => {
        sqlx::query_as("SELECT seq, id, reference_id, templates FROM abis_references WHERE reference_id = $1")
            .bind(reference_id)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.map(reference_row))
}

/// A page of the references of shard `shard` of `shards` with `seq > after`, in `seq` order:
/// how a gallery is loaded at start.
///
/// # Errors
/// `Invalid` for a shard outside `0..shards`; database errors.
pub async fn page(db: &Db, shard: i64, shards: i64, after: i64, limit: i64) -> Result<Vec<ReferenceRow>> {
    if shards < 1 || !(0..shards).contains(&shard) {
        return Err(StoreError::Invalid("shard must be in 0..shards"));
    }
    let rows: Vec<RefTuple> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT seq, id, reference_id, templates FROM abis_references WHERE seq > $1 AND seq % $2 = $3 ORDER BY seq LIMIT $4",
        )
        .bind(after)
        .bind(shards)
        .bind(shard)
        .bind(limit)
        .fetch_all(p)
        .await
    })?;
    Ok(rows.into_iter().map(reference_row).collect())
}

/// `(seq, reference_id)` of the given seqs that still exist (a reference deleted meanwhile is
/// simply absent).
///
/// # Errors
/// Database errors.
pub async fn reference_ids(db: &Db, seqs: &[i64]) -> Result<Vec<(i64, String)>> {
    Ok(crate::select_in!(db, (i64, String), seqs, |list| format!("SELECT seq, reference_id FROM abis_references WHERE seq IN {list}")))
}

/// `(reference_id, seq)` of the given reference ids that exist.
///
/// # Errors
/// Database errors.
pub async fn seqs(db: &Db, reference_ids: &[String]) -> Result<Vec<(String, i64)>> {
    Ok(crate::select_in!(db, (String, i64), reference_ids, |list| format!(
        "SELECT reference_id, seq FROM abis_references WHERE reference_id IN {list}"
    )))
}

/// References in the gallery.
///
/// # Errors
/// Database errors.
pub async fn count(db: &Db) -> Result<i64> {
    let (n,): (i64,) = crate::on!(db, p => sqlx::query_as("SELECT COUNT(*) FROM abis_references").fetch_one(p).await)?;
    Ok(n)
}

/// An answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub request_id: String,
    pub operation: String,
    pub digest: Vec<u8>,
    pub response: String,
}

/// # Errors
/// Database errors.
pub async fn request(db: &Db, request_id: &str) -> Result<Option<RequestRow>> {
    let row: Option<(String, String, Vec<u8>, String)> = crate::on!(db, p => {
        sqlx::query_as("SELECT request_id, operation, digest, response FROM abis_requests WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.map(|(request_id, operation, digest, response)| RequestRow { request_id, operation, digest, response }))
}

/// Records an answered request in the caller's transaction (with the change it made).
///
/// # Errors
/// `Conflict` when the request id was answered already (a concurrent retry won); database errors.
pub async fn put_request(tx: &mut Tx, row: &RequestRow, now: UnixMillis) -> Result<()> {
    crate::on_tx!(tx, c => {
        sqlx::query("INSERT INTO abis_requests (request_id, operation, digest, response, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.request_id)
            .bind(&row.operation)
            .bind(&row.digest)
            .bind(&row.response)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ())
    })
    .map_err(conflict)
}

/// Forgets answered requests older than `before` (requests ids are single-use; a retry comes
/// within minutes, not months). Returns how many.
///
/// # Errors
/// Database errors.
pub async fn prune_requests(db: &Db, before: UnixMillis) -> Result<u64> {
    Ok(crate::on!(db, p => {
        sqlx::query("DELETE FROM abis_requests WHERE created_at_ms < $1").bind(before).execute(p).await.map(|r| r.rows_affected())
    })?)
}

/// A search fanned out to shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRow {
    pub id: String,
    pub shards: i64,
    pub params: String,
    pub probe: Vec<u8>,
}

/// # Errors
/// `Conflict` on a duplicate id; database errors.
pub async fn insert_search(tx: &mut Tx, row: &SearchRow, now: UnixMillis) -> Result<()> {
    crate::on_tx!(tx, c => {
        sqlx::query("INSERT INTO abis_searches (id, shards, params, probe, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(row.shards)
            .bind(&row.params)
            .bind(&row.probe)
            .bind(now)
            .execute(c)
            .await
            .map(|_| ())
    })
    .map_err(conflict)
}

/// # Errors
/// Database errors.
pub async fn search(db: &Db, id: &str) -> Result<Option<SearchRow>> {
    let row: Option<(String, i64, String, Vec<u8>)> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, shards, params, probe FROM abis_searches WHERE id = $1").bind(id).fetch_optional(p).await
    })?;
    Ok(row.map(|(id, shards, params, probe)| SearchRow { id, shards, params, probe }))
}

/// Stores one shard's answer. A second answer for the same shard (a retried job) is ignored.
/// Returns whether this one was stored.
///
/// # Errors
/// Database errors.
pub async fn put_search_result(db: &Db, search_id: &str, shard: i64, hits: &str, now: UnixMillis) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query(
            "INSERT INTO abis_search_results (search_id, shard, hits, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (search_id, shard) DO NOTHING",
        )
        .bind(search_id)
        .bind(shard)
        .bind(hits)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// `(shard, hits)` answered so far.
///
/// # Errors
/// Database errors.
pub async fn search_results(db: &Db, search_id: &str) -> Result<Vec<(i64, String)>> {
    Ok(crate::on!(db, p => {
        sqlx::query_as("SELECT shard, hits FROM abis_search_results WHERE search_id = $1 ORDER BY shard").bind(search_id).fetch_all(p).await
    })?)
}

/// Removes a finished (or abandoned) search, its results and its shard jobs.
///
/// # Errors
/// Database errors.
pub async fn delete_search(db: &Db, search_id: &str, shards: i64) -> Result<()> {
    let mut tx = db.begin().await?;
    crate::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM abis_search_results WHERE search_id = $1").bind(search_id).execute(c).await.map(|_| ())
    })?;
    crate::on_tx!(&mut tx, c => {
        sqlx::query("DELETE FROM abis_searches WHERE id = $1").bind(search_id).execute(c).await.map(|_| ())
    })?;
    for shard in 0..shards {
        let key = search_job_key(search_id, shard);
        crate::on_tx!(&mut tx, c => {
            sqlx::query("DELETE FROM jobs WHERE idempotency_key = $1").bind(&key).execute(c).await.map(|_| ())
        })?;
    }
    tx.commit().await
}

/// The idempotency key of shard `shard`'s job for a search.
#[must_use]
pub fn search_job_key(search_id: &str, shard: i64) -> String {
    format!("abis_search_shard:{search_id}:{shard}")
}

/// The job lane of shard `shard`: only the worker holding that shard leases its searches.
#[must_use]
pub fn shard_lane(shard: i64) -> String {
    format!("abis-shard-{shard}")
}

/// `(id, shards)` of up to `limit` searches created before `before`: ones a coordinator
/// abandoned (it crashed or gave up waiting), for housekeeping to remove with their probes.
///
/// # Errors
/// Database errors.
pub async fn stale_searches(db: &Db, before: UnixMillis, limit: i64) -> Result<Vec<(String, i64)>> {
    Ok(crate::on!(db, p => {
        sqlx::query_as("SELECT id, shards FROM abis_searches WHERE created_at_ms < $1 ORDER BY created_at_ms LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(p)
            .await
    })?)
}

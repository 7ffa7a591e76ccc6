//! Rows of the identity repository: records, their sealed versions and the keyed lookup index.
//! Everything here is opaque bytes, ids and times; sealing and digests happen in `idrepo`.

use crate::{Db, Result, StoreError, Tx, UnixMillis};

/// Binds per statement. Far below SQLite's 32,766 and PostgreSQL's 65,535 limits on purpose:
/// sqlx's SQLite driver looks up each bind's parameter name among all of them, so a statement's
/// bind cost grows with the square of its bind count (measured: 12,000 binds spent 58% of an
/// import in `sqlite3_bind_parameter_name`).
pub(crate) const BINDS_PER_STATEMENT: usize = 240;

/// Rows per multi-row statement of `cols` binds each.
pub(crate) const fn rows_per_statement(cols: usize) -> usize {
    BINDS_PER_STATEMENT / cols
}

/// One identity as the database sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRow {
    pub id: String,
    pub erased: bool,
    pub version: i64,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
}

/// One sealed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub identity_id: String,
    pub version: i64,
    pub record: Vec<u8>,
    pub reason: Vec<u8>,
    pub actor: String,
    pub created_at_ms: UnixMillis,
}

/// A keyed digest pointing at an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRow {
    pub digest: Vec<u8>,
    pub key_version: i64,
    pub identity_id: String,
}

/// Everything a new identity writes, for `insert_new`.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    pub first: VersionRow,
    pub lookups: Vec<LookupRow>,
}

/// `($1, $2, …), (…), …` for `rows` rows of `cols` columns.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

/// Inserts new identities (version 1 and their lookup digests) in the caller's transaction, a
/// few thousand rows per statement. A digest that already exists is a `Conflict` error and the
/// caller's transaction must be rolled back.
///
/// # Errors
/// `Conflict` on a duplicate digest or id; database errors.
pub async fn insert_new(tx: &mut Tx, items: &[NewIdentity]) -> Result<()> {
    for chunk in items.chunks(rows_per_statement(6)) {
        let sql = identities_insert(chunk.len());
        crate::on_tx!(&mut *tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for it in chunk {
                q = q.bind(&it.first.identity_id).bind(it.first.version).bind(it.first.created_at_ms).bind(it.first.created_at_ms);
            }
            q.execute(c).await.map(|_| ())
        })
        .map_err(conflict)?;
        insert_versions(tx, chunk.iter().map(|i| &i.first)).await?;
    }
    let lookups: Vec<&LookupRow> = items.iter().flat_map(|i| &i.lookups).collect();
    insert_lookups(tx, &lookups).await
}

/// `INSERT INTO identities …` for `rows` new rows; the state is the constant `'active'` rather
/// than a bind per row.
fn identities_insert(rows: usize) -> String {
    let mut s = String::from("INSERT INTO identities (id, state, version, created_at_ms, updated_at_ms) VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        let b = r * 4;
        s.push_str(&format!("(${},'active',${},${},${})", b + 1, b + 2, b + 3, b + 4));
    }
    s
}

/// A unique-key violation is a `Conflict` (a duplicate id or digest), anything else stays SQL.
pub(crate) fn conflict(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        e => StoreError::Sql(e),
    }
}

async fn insert_versions(tx: &mut Tx, rows: impl Iterator<Item = &VersionRow>) -> Result<()> {
    let rows: Vec<&VersionRow> = rows.collect();
    for chunk in rows.chunks(rows_per_statement(6)) {
        let sql = format!(
            "INSERT INTO identity_versions (identity_id, version, record, reason, actor, created_at_ms) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        crate::on_tx!(&mut *tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for v in chunk {
                q = q.bind(&v.identity_id).bind(v.version).bind(&v.record).bind(&v.reason).bind(&v.actor).bind(v.created_at_ms);
            }
            q.execute(c).await.map(|_| ())
        })
        .map_err(conflict)?;
    }
    Ok(())
}

/// Adds lookup digests. A digest already present is a `Conflict`.
///
/// # Errors
/// `Conflict`, database errors.
pub async fn insert_lookups(tx: &mut Tx, rows: &[&LookupRow]) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(3)) {
        let sql = format!("INSERT INTO identity_lookup (digest, key_version, identity_id) VALUES {}", placeholders(chunk.len(), 3));
        crate::on_tx!(&mut *tx, c => {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
            for l in chunk {
                q = q.bind(&l.digest).bind(l.key_version).bind(&l.identity_id);
            }
            q.execute(c).await.map(|_| ())
        })
        .map_err(conflict)?;
    }
    Ok(())
}

/// Which of `digests` exist, and the identity each points at.
///
/// # Errors
/// Database errors.
pub async fn find_digests(db: &Db, digests: &[Vec<u8>]) -> Result<Vec<LookupRow>> {
    let mut found = Vec::new();
    for chunk in digests.chunks(BINDS_PER_STATEMENT) {
        let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(",");
        let sql = format!("SELECT digest, key_version, identity_id FROM identity_lookup WHERE digest IN ({list})");
        let rows: Vec<(Vec<u8>, i64, String)> = crate::on!(db, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for d in chunk {
                q = q.bind(d);
            }
            q.fetch_all(p).await
        })?;
        found.extend(rows.into_iter().map(|(digest, key_version, identity_id)| LookupRow { digest, key_version, identity_id }));
    }
    Ok(found)
}

/// The lookup rows of one identity.
///
/// # Errors
/// Database errors.
pub async fn lookups_of(db: &Db, identity_id: &str) -> Result<Vec<LookupRow>> {
    let rows: Vec<(Vec<u8>, i64, String)> = crate::on!(db, p => {
        sqlx::query_as("SELECT digest, key_version, identity_id FROM identity_lookup WHERE identity_id = $1 ORDER BY key_version")
            .bind(identity_id)
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(|(digest, key_version, identity_id)| LookupRow { digest, key_version, identity_id }).collect())
}

/// Identities that still have a lookup digest under a key version older than `current`, for
/// the re-index job. Ids only, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn with_old_lookups(db: &Db, current: i64, limit: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = crate::on!(db, p => {
        sqlx::query_as("SELECT DISTINCT identity_id FROM identity_lookup WHERE key_version < $1 ORDER BY identity_id LIMIT $2")
            .bind(current)
            .bind(limit)
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Removes the lookup digests of one identity older than `current`.
///
/// # Errors
/// Database errors.
pub async fn delete_old_lookups(tx: &mut Tx, identity_id: &str, current: i64) -> Result<u64> {
    Ok(crate::on_tx!(tx, c => {
        sqlx::query("DELETE FROM identity_lookup WHERE identity_id = $1 AND key_version < $2")
            .bind(identity_id)
            .bind(current)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?)
}

/// # Errors
/// Database errors.
pub async fn get(db: &Db, id: &str) -> Result<Option<IdentityRow>> {
    let row: Option<(String, String, i64, i64, i64)> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, state, version, created_at_ms, updated_at_ms FROM identities WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.map(|(id, state, version, created_at_ms, updated_at_ms)| IdentityRow {
        id,
        erased: state == "erased",
        version,
        created_at_ms,
        updated_at_ms,
    }))
}

/// One version (the sealed bytes are empty once the identity is erased).
///
/// # Errors
/// Database errors.
pub async fn version(db: &Db, id: &str, version: i64) -> Result<Option<VersionRow>> {
    let row: Option<VersionTuple> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT identity_id, version, record, reason, actor, created_at_ms FROM identity_versions \
             WHERE identity_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(p)
        .await
    })?;
    Ok(row.map(version_row))
}

type VersionTuple = (String, i64, Vec<u8>, Vec<u8>, String, i64);

fn version_row((identity_id, version, record, reason, actor, created_at_ms): VersionTuple) -> VersionRow {
    VersionRow { identity_id, version, record, reason, actor, created_at_ms }
}

/// Every version of one identity, oldest first.
///
/// # Errors
/// Database errors.
pub async fn versions(db: &Db, id: &str) -> Result<Vec<VersionRow>> {
    let rows: Vec<VersionTuple> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT identity_id, version, record, reason, actor, created_at_ms FROM identity_versions \
             WHERE identity_id = $1 ORDER BY version",
        )
        .bind(id)
        .fetch_all(p)
        .await
    })?;
    Ok(rows.into_iter().map(version_row).collect())
}

/// Appends version `row.version`, which must be the current version + 1 of an active identity
/// (optimistic concurrency: a concurrent update makes this a `Conflict`).
///
/// # Errors
/// `Conflict` when the identity moved on or was erased; database errors.
pub async fn append_version(tx: &mut Tx, row: &VersionRow) -> Result<()> {
    let n = crate::on_tx!(&mut *tx, c => {
        sqlx::query("UPDATE identities SET version = $1, updated_at_ms = $2 WHERE id = $3 AND version = $4 AND state = 'active'")
            .bind(row.version)
            .bind(row.created_at_ms)
            .bind(&row.identity_id)
            .bind(row.version - 1)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    insert_versions(tx, std::iter::once(row)).await
}

/// Marks an identity erased, removes its lookup digests and empties its sealed versions (the
/// ciphertext is already unreadable once the data key is gone; this also keeps it out of new
/// backups). Returns false when it was not active.
///
/// # Errors
/// Database errors.
pub async fn erase(tx: &mut Tx, id: &str, now: UnixMillis) -> Result<bool> {
    let n = crate::on_tx!(&mut *tx, c => {
        sqlx::query("UPDATE identities SET state = 'erased', erased_at_ms = $1, updated_at_ms = $1 WHERE id = $2 AND state = 'active'")
            .bind(now)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    if n != 1 {
        return Ok(false);
    }
    crate::on_tx!(&mut *tx, c => {
        sqlx::query("DELETE FROM identity_lookup WHERE identity_id = $1").bind(id).execute(&mut *c).await?;
        sqlx::query("UPDATE identity_versions SET record = $1, reason = $1 WHERE identity_id = $2")
            .bind(Vec::<u8>::new())
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|_| ())
    })?;
    Ok(true)
}

/// Counts of identities by state: (active, erased).
///
/// # Errors
/// Database errors.
pub async fn counts(db: &Db) -> Result<(i64, i64)> {
    let (a, e): (i64, i64) = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN state = 'active' THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN state = 'erased' THEN 1 ELSE 0 END), 0) FROM identities",
        )
        .fetch_one(p)
        .await
    })?;
    Ok((a, e))
}

//! Rows of issued verifiable credentials (`0009_credentials`). The credential is `sealed` under
//! the person's own data key above, in `tessera-credentials`; here only ids, key versions, states
//! and times. Issuing is idempotent on `source` (the registration, or the request, that asked for
//! it), and a person's newer credential supersedes the older ones in the same transaction.

use crate::{Db, Result, StoreError, Tx, UnixMillis};

/// Longest id and source.
pub const ID_CHARS_MAX: usize = 200;
/// Largest sealed credential.
pub const SEALED_BYTES_MAX: usize = 512 * 1024;
/// Most credentials `for_identity` returns (newest first).
pub const LIST_MAX: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: String,
    pub identity_id: String,
    pub source: String,
    pub format: String,
    pub kid: String,
    /// `active`, `superseded` (a newer one was issued) or `revoked`.
    pub status: String,
    pub issued_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub changed_at_ms: UnixMillis,
    pub sealed: Vec<u8>,
}

type Tuple = (String, String, String, String, String, String, i64, i64, i64, Vec<u8>);

const COLUMNS: &str = "id, identity_id, source, format, kid, status, issued_at_ms, expires_at_ms, changed_at_ms, sealed";

fn row((id, identity_id, source, format, kid, status, issued_at_ms, expires_at_ms, changed_at_ms, sealed): Tuple) -> CredentialRow {
    CredentialRow { id, identity_id, source, format, kid, status, issued_at_ms, expires_at_ms, changed_at_ms, sealed }
}

/// Inserts an `active` credential and supersedes the person's other active ones. Returns false,
/// changing nothing, when a credential from the same `source` exists already.
///
/// # Errors
/// `Invalid` for an over-long id or source or an oversized credential; database errors.
pub async fn insert(tx: &mut Tx, r: &CredentialRow) -> Result<bool> {
    if r.id.len() > ID_CHARS_MAX || r.source.len() > ID_CHARS_MAX || r.identity_id.len() > ID_CHARS_MAX {
        return Err(StoreError::Invalid("credential id or source too long"));
    }
    if r.sealed.len() > SEALED_BYTES_MAX {
        return Err(StoreError::Invalid("credential too large"));
    }
    let inserted = crate::on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO credentials (id, identity_id, source, format, kid, status, issued_at_ms, expires_at_ms, changed_at_ms, sealed) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $6, $8) ON CONFLICT (source) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.identity_id)
        .bind(&r.source)
        .bind(&r.format)
        .bind(&r.kid)
        .bind(r.issued_at_ms)
        .bind(r.expires_at_ms)
        .bind(&r.sealed)
        .execute(c)
        .await
        .map(|x| x.rows_affected() == 1)
    })?;
    if inserted {
        crate::on_tx!(tx, c => {
            sqlx::query(
                "UPDATE credentials SET status = 'superseded', changed_at_ms = $3 \
                 WHERE identity_id = $1 AND status = 'active' AND id <> $2",
            )
            .bind(&r.identity_id)
            .bind(&r.id)
            .bind(r.issued_at_ms)
            .execute(c)
            .await
            .map(|_| ())
        })?;
    }
    Ok(inserted)
}

/// The credential a source issued, if any.
///
/// # Errors
/// Database errors.
pub async fn by_source(db: &Db, source: &str) -> Result<Option<CredentialRow>> {
    let sql = format!("SELECT {COLUMNS} FROM credentials WHERE source = $1");
    let r: Option<Tuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(source).fetch_optional(p).await
    })?;
    Ok(r.map(row))
}

/// A person's credentials, newest first, at most `LIST_MAX`.
///
/// # Errors
/// Database errors.
pub async fn for_identity(db: &Db, identity_id: &str) -> Result<Vec<CredentialRow>> {
    let sql = format!("SELECT {COLUMNS} FROM credentials WHERE identity_id = $1 ORDER BY issued_at_ms DESC, id DESC LIMIT {LIST_MAX}");
    let rows: Vec<Tuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(identity_id).fetch_all(p).await
    })?;
    Ok(rows.into_iter().map(row).collect())
}

/// Revokes one of a person's credentials. Returns false if it was not active.
///
/// # Errors
/// Database errors.
pub async fn revoke(db: &Db, identity_id: &str, id: &str, now: UnixMillis) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query("UPDATE credentials SET status = 'revoked', changed_at_ms = $3 WHERE identity_id = $1 AND id = $2 AND status = 'active'")
            .bind(identity_id)
            .bind(id)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

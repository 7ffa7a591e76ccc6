//! Bearer tokens of the admin API: only a SHA-256 of each token is stored (the tokens are 256
//! random bits, so a fast hash is enough and a database thief learns nothing usable).

use crate::{Db, Result, UnixMillis};

/// A token as stored, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: Option<UnixMillis>,
    pub revoked_at_ms: Option<UnixMillis>,
}

type Row = (String, String, String, i64, Option<i64>, Option<i64>);

fn token_row((id, name, role, created_at_ms, expires_at_ms, revoked_at_ms): Row) -> TokenRow {
    TokenRow { id, name, role, created_at_ms, expires_at_ms, revoked_at_ms }
}

/// # Errors
/// `Conflict` on a duplicate id or hash; database errors.
pub async fn insert(db: &Db, row: &TokenRow, secret_hash: &[u8]) -> Result<()> {
    crate::on!(db, p => {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_at_ms, expires_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.role)
        .bind(secret_hash)
        .bind(row.created_at_ms)
        .bind(row.expires_at_ms)
        .execute(p)
        .await
        .map(|_| ())
    })
    .map_err(crate::identities::conflict)
}

/// The token whose hash is `secret_hash`, whatever its state (the caller checks revocation and
/// expiry so it can say which).
///
/// # Errors
/// Database errors.
pub async fn find_by_hash(db: &Db, secret_hash: &[u8]) -> Result<Option<TokenRow>> {
    let row: Option<Row> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, name, role, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens WHERE secret_hash = $1")
            .bind(secret_hash)
            .fetch_optional(p)
            .await
    })?;
    Ok(row.map(token_row))
}

/// Revokes a token. Returns false when there is no such token or it was already revoked.
///
/// # Errors
/// Database errors.
pub async fn revoke(db: &Db, id: &str, now: UnixMillis) -> Result<bool> {
    let n = crate::on!(db, p => {
        sqlx::query("UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL")
            .bind(now)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Every token, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(db: &Db) -> Result<Vec<TokenRow>> {
    let rows: Vec<Row> = crate::on!(db, p => {
        sqlx::query_as("SELECT id, name, role, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens ORDER BY created_at_ms, id")
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(token_row).collect())
}

/// How many tokens exist (any state): `init` issues the first admin token only when there is none.
///
/// # Errors
/// Database errors.
pub async fn count(db: &Db) -> Result<i64> {
    let (n,): (i64,) = crate::on!(db, p => sqlx::query_as("SELECT COUNT(*) FROM api_tokens").fetch_one(p).await)?;
    Ok(n)
}

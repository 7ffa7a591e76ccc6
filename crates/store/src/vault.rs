//! The key vault: each person's data key, wrapped by the identity key-encryption key, kept in a
//! database of its own (by default `<data-dir>/keystore/vault.db`), apart from the main one.
//!
//! Why apart: erasing a person destroys their data key (crypto-shredding). If wrapped keys lived
//! in the main database, every backup of it would keep them, and an old backup plus the
//! keystore would bring the person back. The vault is small (one short row per person) and its
//! backups are meant to have a short retention of their own, so an erasure reaches them soon.
//! On SQLite the vault runs with `secure_delete` and checkpoints its WAL after an erasure, so a
//! deleted key does not linger in free pages or in the log.

use crate::{Backend, Db, Result, UnixMillis};

/// A wrapped data key as stored: the key-encryption key's id (`identity.v2`) and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    pub identity_id: String,
    pub kek: String,
    pub wrapped: Vec<u8>,
}

/// The vault's database handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Vault {
    db: Db,
}

impl Vault {
    /// Opens (creating if needed) the vault at `url` (`sqlite://…` or `postgres://…`). The vault
    /// may share a PostgreSQL server with the main database but should be a different database,
    /// so the two are backed up separately.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn open(url: &str) -> Result<Self> {
        let db = Db::connect_with(url, true).await?;
        // One table, created in place: the vault has no migration history of its own to share a
        // `_sqlx_migrations` table with the main database when both live in one PostgreSQL.
        let ddl = match db.backend() {
            Backend::Sqlite => {
                "CREATE TABLE IF NOT EXISTS dek_vault (identity_id TEXT PRIMARY KEY, kek TEXT NOT NULL, \
                 wrapped BLOB NOT NULL, created_at_ms INTEGER NOT NULL)"
            }
            Backend::Postgres => {
                "CREATE TABLE IF NOT EXISTS dek_vault (identity_id TEXT PRIMARY KEY, kek TEXT NOT NULL, \
                 wrapped BYTEA NOT NULL, created_at_ms BIGINT NOT NULL)"
            }
        };
        let mut attempt = 0;
        loop {
            match crate::on!(&db, p => sqlx::query(ddl).execute(p).await.map(|_| ())) {
                Ok(_) => break,
                // Two processes creating the table at once on PostgreSQL race on the catalog.
                Err(e) if attempt < 5 => {
                    tracing::debug!(error = %e, "creating the vault table raced; retrying");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Vault { db })
    }

    /// Stores new wrapped keys in one transaction. An id already present is a `Conflict`.
    ///
    /// # Errors
    /// `Conflict`, database errors.
    pub async fn put_many(&self, entries: &[VaultEntry], now: UnixMillis) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for chunk in entries.chunks(crate::identities::rows_per_statement(4)) {
            let sql = format!(
                "INSERT INTO dek_vault (identity_id, kek, wrapped, created_at_ms) VALUES {}",
                crate::identities::placeholders(chunk.len(), 4)
            );
            crate::on_tx!(&mut tx, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for e in chunk {
                    q = q.bind(&e.identity_id).bind(&e.kek).bind(&e.wrapped).bind(now);
                }
                q.execute(c).await.map(|_| ())
            })
            .map_err(crate::identities::conflict)?;
        }
        tx.commit().await
    }

    /// # Errors
    /// Database errors.
    pub async fn get(&self, identity_id: &str) -> Result<Option<VaultEntry>> {
        let row: Option<(String, String, Vec<u8>)> = crate::on!(&self.db, p => {
            sqlx::query_as("SELECT identity_id, kek, wrapped FROM dek_vault WHERE identity_id = $1")
                .bind(identity_id)
                .fetch_optional(p)
                .await
        })?;
        Ok(row.map(|(identity_id, kek, wrapped)| VaultEntry { identity_id, kek, wrapped }))
    }

    /// The entries of the given ids that exist, in no particular order (a gallery loads
    /// thousands at a time).
    ///
    /// # Errors
    /// Database errors.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<VaultEntry>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::identities::rows_per_statement(1)) {
            let list = crate::identities::placeholders(chunk.len(), 1).replace(['(', ')'], "");
            let sql = format!("SELECT identity_id, kek, wrapped FROM dek_vault WHERE identity_id IN ({list})");
            let rows: Vec<(String, String, Vec<u8>)> = crate::on!(&self.db, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(p).await
            })?;
            out.extend(rows.into_iter().map(|(identity_id, kek, wrapped)| VaultEntry { identity_id, kek, wrapped }));
        }
        Ok(out)
    }

    /// Destroys one data key. On SQLite, the WAL is then checkpointed and truncated so the key's
    /// bytes leave the log as well as the (securely deleted) table page. Returns whether a key
    /// was there.
    ///
    /// # Errors
    /// Database errors.
    pub async fn destroy(&self, identity_id: &str) -> Result<bool> {
        let n = crate::on!(&self.db, p => {
            sqlx::query("DELETE FROM dek_vault WHERE identity_id = $1").bind(identity_id).execute(p).await.map(|r| r.rows_affected())
        })?;
        if let Db::Sqlite(p) = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(p).await?;
        }
        Ok(n > 0)
    }

    /// Keys wrapped under any key-encryption key other than `current`, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn not_under(&self, current: &str, limit: i64) -> Result<Vec<VaultEntry>> {
        let rows: Vec<(String, String, Vec<u8>)> = crate::on!(&self.db, p => {
            sqlx::query_as("SELECT identity_id, kek, wrapped FROM dek_vault WHERE kek <> $1 ORDER BY identity_id LIMIT $2")
                .bind(current)
                .bind(limit)
                .fetch_all(p)
                .await
        })?;
        Ok(rows.into_iter().map(|(identity_id, kek, wrapped)| VaultEntry { identity_id, kek, wrapped }).collect())
    }

    /// Replaces a wrapped key if it is still wrapped under `old_kek` (a concurrent re-wrap or
    /// erasure wins). Returns whether it was replaced.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rewrap(&self, old: &VaultEntry, new: &VaultEntry) -> Result<bool> {
        let n = crate::on!(&self.db, p => {
            sqlx::query("UPDATE dek_vault SET kek = $1, wrapped = $2 WHERE identity_id = $3 AND kek = $4")
                .bind(&new.kek)
                .bind(&new.wrapped)
                .bind(&old.identity_id)
                .bind(&old.kek)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// How many keys are wrapped under each key-encryption key.
    ///
    /// # Errors
    /// Database errors.
    pub async fn counts_by_kek(&self) -> Result<Vec<(String, i64)>> {
        Ok(crate::on!(&self.db, p => {
            sqlx::query_as("SELECT kek, COUNT(*) FROM dek_vault GROUP BY kek ORDER BY kek").fetch_all(p).await
        })?)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}

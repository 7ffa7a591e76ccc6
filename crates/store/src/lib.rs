//! Tessera's storage: one `Db` over SQLite (the embedded default) or PostgreSQL (scaled out),
//! with migrations, the UIN pool, the durable job queue and the blob store.
//!
//! Architecture invariant: this is the only crate that knows SQL. Every query is written once and
//! compiled for both backends by the `on!` macro, so the two cannot drift apart silently; where
//! the dialects differ, the difference is spelled out beside the query.

pub mod abis;
pub mod api_tokens;
pub mod audit;
pub mod blobs;
pub mod credentials;
mod db;
pub mod identities;
pub mod jobs;
pub mod outbox;
pub mod registration;
pub mod uin_pool;
pub mod vault;

pub use blobs::{BlobError, BlobKey, BlobStore};
pub use db::{Backend, Db, Tx};
pub use vault::Vault;

/// Errors from storage. Messages carry no personal data: ids and counts only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL: expected sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the UIN pool is empty; a refill job has been requested")]
    UinPoolEmpty,
    #[error("UIN is not in the ASSIGNED state")]
    UinNotAssigned,
    #[error("UIN rules: {0}")]
    UinRules(#[from] tessera_core::IdRule),
    #[error("unknown job kind {0:?} in the queue")]
    UnknownJobKind(String),
    #[error("job {0} not found or not in a state that allows this")]
    JobState(i64),
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("conflict: the row exists already or changed meanwhile")]
    Conflict,
}

impl StoreError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl => "unsupported_database_url",
            StoreError::Sql(_) => "database_error",
            StoreError::Migrate(_) => "migration_failed",
            StoreError::UinPoolEmpty => "uin_pool_empty",
            StoreError::UinNotAssigned => "uin_not_assigned",
            StoreError::UinRules(_) => "uin_rules",
            StoreError::UnknownJobKind(_) => "unknown_job_kind",
            StoreError::JobState(_) => "job_state",
            StoreError::Invalid(_) => "invalid_argument",
            StoreError::Conflict => "conflict",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch (UTC): the one time unit stored. Callers pass `now` in, so
/// time is injectable in tests.
pub type UnixMillis = i64;

/// The wall clock, for callers at the edge (binary, workers).
#[must_use]
pub fn now_ms() -> UnixMillis {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

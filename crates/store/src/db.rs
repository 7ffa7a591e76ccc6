//! The database handle over SQLite or PostgreSQL, transactions, and migrations.

use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a SQLite writer waits for the write lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per pool (SQLite: readers run in parallel under WAL; writers queue on the lock).
pub const SQLITE_POOL_MAX: u32 = 8;
pub const POSTGRES_POOL_MAX_DEFAULT: u32 = 16;
/// Attempts to open (connect + migrate) a SQLite file that another process is opening too.
const SQLITE_OPEN_ATTEMPTS: u32 = 8;
/// How long to wait for a free pooled connection before reporting an error.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the same expression against whichever backend `$db` holds; `$c` is bound to the pool
/// (for `Db`) or the connection (for `Tx`). The body is type-checked once per backend.
#[macro_export]
#[doc(hidden)]
macro_rules! on {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            $crate::Db::Sqlite($c) => $body,
            $crate::Db::Postgres($c) => $body,
        }
    };
}

/// Like `on!`, for a transaction: `$c` is `&mut` the backend's connection.
#[macro_export]
#[doc(hidden)]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            $crate::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// `SELECT`s rows of type `$ty` for a list of keys, a bounded number of binds per statement:
/// `$sql` is a closure-like `|list| format!(… IN {list} …)` where `list` is `($1,…,$n)`.
#[macro_export]
#[doc(hidden)]
macro_rules! select_in {
    ($db:expr, $ty:ty, $keys:expr, |$list:ident| $sql:expr) => {{
        let keys = $keys;
        let mut out: Vec<$ty> = Vec::with_capacity(keys.len());
        for chunk in keys.chunks($crate::identities::rows_per_statement(1)) {
            let $list = $crate::identities::placeholders(1, chunk.len());
            let sql: String = $sql;
            let rows: Vec<$ty> = $crate::on!($db, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for k in chunk {
                    q = q.bind(k);
                }
                q.fetch_all(p).await
            })?;
            out.extend(rows);
        }
        out
    }};
}

/// Which SQL engine a `Db` talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to one of the two supported databases. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction. Dropped without `commit`, it rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). SQLite files are created if missing,
    /// in WAL mode with `synchronous=FULL` so an acknowledged commit survives power loss.
    ///
    /// # Errors
    /// Unsupported scheme, unreachable server, or a bad URL.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, false).await
    }

    /// `connect`, optionally with SQLite's `secure_delete` (deleted content is overwritten with
    /// zeros, which the key vault needs so an erased data key does not linger in free pages).
    pub(crate) async fn connect_with(url: &str, secure_delete: bool) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .pragma("secure_delete", if secure_delete { "ON" } else { "OFF" })
                // 64 MiB of page cache per connection (SQLite's default is 2 MiB): bulk writes
                // into a register of millions of rows otherwise spend their time re-reading
                // index pages from the OS.
                .pragma("cache_size", "-65536")
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let file = opts.get_filename().to_path_buf();
            let pool =
                SqlitePoolOptions::new().max_connections(SQLITE_POOL_MAX).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(opts).await?;
            make_private(&file);
            Ok(Db::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let opts = PgConnectOptions::from_str(url)?.application_name("tessera");
            // One direct connection first: an unreachable or misconfigured server is reported
            // at once with its real cause ("connection refused", "password authentication
            // failed") instead of a pool timeout 30 seconds later.
            sqlx::PgConnection::connect_with(&opts).await?.close().await?;
            let pool =
                PgPoolOptions::new().max_connections(POSTGRES_POOL_MAX_DEFAULT).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(opts).await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// Connects and brings the schema up to date.
    ///
    /// # Errors
    /// As `connect`, or a failed migration.
    pub async fn open(url: &str) -> Result<Self> {
        let mut attempt = 1;
        loop {
            let opened = async {
                let db = Self::connect(url).await?;
                db.migrate().await?;
                Ok::<_, StoreError>(db)
            }
            .await;
            match opened {
                Ok(db) => return Ok(db),
                // sqlx takes no lock around SQLite migrations, and switching a fresh file to WAL
                // needs an exclusive lock, so two processes opening a new file at once (a server
                // and a CLI command) can collide. Each migration is its own transaction, so the
                // loser changed nothing and a retry finds the work done.
                Err(e) if url.starts_with("sqlite:") && attempt < SQLITE_OPEN_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "opening SQLite raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations (each backend has its own directory of SQL files).
    ///
    /// # Errors
    /// A migration that fails or was changed after being applied.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            // sqlx holds an advisory lock while it migrates PostgreSQL.
            Db::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// A round trip to the database, for readiness checks.
    ///
    /// # Errors
    /// When the database does not answer.
    pub async fn ping(&self) -> Result<()> {
        crate::on!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`),
    /// so two writers queue on the busy timeout instead of deadlocking on a lock upgrade.
    ///
    /// # Errors
    /// When no connection or lock can be had in time.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Closes every pooled connection (graceful shutdown).
    pub async fn close(&self) {
        crate::on!(self, p => p.close().await);
    }
}

/// The database file and its WAL and shared-memory files are readable by their owner only
/// (SQLite creates them with the process umask, commonly 0644). Sealed data needs no secrecy,
/// but ids, times and counts are nobody else's business either.
fn make_private(db_file: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db_file.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            if path.exists()
                && let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(error = %e, "cannot make a database file private");
            }
        }
    }
}

impl Tx {
    /// # Errors
    /// When the commit fails; nothing of the transaction is then visible.
    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }
}

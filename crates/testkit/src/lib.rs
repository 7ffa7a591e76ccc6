//! Test support shared by every crate: a private database per test on SQLite and PostgreSQL,
//! and the `storage_tests!` macro that runs one scenario on both.
//!
//! PostgreSQL comes from `TESSERA_TEST_DATABASE_URL`. `cargo xtask ci` (the README's test
//! command) sets it, starting a throwaway cluster when none is given. A PostgreSQL test run
//! without it fails loudly: a storage test that silently skips one backend proves nothing.

pub mod activemq;
pub mod mosip;

use sqlx::Connection;
use std::path::PathBuf;

/// The variable that points tests at a PostgreSQL server.
pub const DATABASE_URL_VAR: &str = "TESSERA_TEST_DATABASE_URL";

/// A database private to one test. For SQLite, a fresh file in a temporary directory (removed
/// on drop); for PostgreSQL, a fresh schema `t_<uuid>` selected through `search_path`.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    dir: tempfile::TempDir,
    /// For PostgreSQL: the server URL and the schema to drop when the test ends.
    pg_schema: Option<(String, String)>,
}

impl Drop for TestDb {
    /// Drops the test's PostgreSQL schema, so a shared test server does not fill up with them.
    /// Runs on its own thread and runtime: `Drop` cannot await, and may run inside a runtime.
    fn drop(&mut self) {
        let Some((base, schema)) = self.pg_schema.take() else { return };
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    /// # Panics
    /// When no temporary directory can be created.
    #[must_use]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb { url, dir, pg_schema: None }
    }

    /// # Panics
    /// When `TESSERA_TEST_DATABASE_URL` is unset or the server cannot be reached: on purpose.
    pub async fn postgres() -> Self {
        let base = std::env::var(DATABASE_URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{DATABASE_URL_VAR} is not set. Run the tests with `cargo xtask ci` (it starts a throwaway \
                 PostgreSQL), or point {DATABASE_URL_VAR} at a PostgreSQL 15+ database you may create schemas in."
            )
        });
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.expect("create test schema");
        conn.close().await.ok();
        let sep = if base.contains('?') { '&' } else { '?' };
        TestDb {
            url: format!("{base}{sep}options[search_path]={schema}"),
            dir: tempfile::tempdir().expect("temporary directory"),
            pg_schema: Some((base, schema)),
        }
    }

    /// The database URL to hand to the code under test.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// For PostgreSQL: the server URL (without the schema option) and the test's schema, e.g.
    /// to run `pg_dump --schema` over exactly what the test wrote.
    #[must_use]
    pub fn pg_server_and_schema(&self) -> Option<(&str, &str)> {
        self.pg_schema.as_ref().map(|(b, s)| (b.as_str(), s.as_str()))
    }

    /// A scratch directory private to this test (blobs, config files), removed on drop.
    #[must_use]
    pub fn scratch_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Runs each named `async fn(&str)` (taking a database URL) once on SQLite and once on
/// PostgreSQL, as tests `sqlite::NAME` and `postgres::NAME`, each with its own database.
#[macro_export]
macro_rules! storage_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDb::sqlite();
                    super::$name(db.url()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::TestDb::postgres().await;
                    super::$name(db.url()).await;
                }
            )*
        }
    };
}

/// Runs raw SQL against a test database: for tests that play the attacker (tampering with the
/// audit log, reading what a thief would read). Never used by the code under test.
///
/// # Panics
/// When the database cannot be reached or the statement fails: on purpose.
pub async fn exec_sql(url: &str, sql: &str) -> u64 {
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect to the test SQLite");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.expect("test SQL").rows_affected()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut c).await.expect("test SQL").rows_affected()
    }
}

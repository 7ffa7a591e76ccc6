//! `tessera bench`: measurements of the shipped code, run by `cargo xtask bench` (which builds
//! the release binary, runs it per database and prints the table).

use anyhow::{Context, bail};
use rand::SeedableRng;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tessera_core::IdRules;
use tessera_store::uin_pool::{self, REFILL_BATCH_MAX};
use tessera_store::{Db, now_ms};

/// Most allocations one bench run makes, and most concurrent allocators.
const COUNT_MAX: u64 = 10_000_000;
const WORKERS_MAX: u32 = 256;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Concurrent UIN allocation: COUNT allocations (allocate + mark issued + commit, one
    /// transaction each, as identity creation does) by WORKERS tasks. Use a scratch database:
    /// the numbers it allocates are spent.
    UinPool {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 8)]
        workers: u32,
        #[arg(long, default_value_t = 200_000)]
        count: u64,
        /// Also write the result here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

pub async fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::UinPool { database_url, workers, count, json } => {
            if count == 0 || count > COUNT_MAX {
                bail!("--count must be between 1 and {COUNT_MAX}");
            }
            if workers == 0 || workers > WORKERS_MAX {
                bail!("--workers must be between 1 and {WORKERS_MAX}");
            }
            let result = uin_pool_bench(&database_url, workers, count).await?;
            let text = serde_json::to_string_pretty(&result)?;
            println!("{text}");
            if let Some(path) = json {
                std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            }
            if result["duplicates"] != 0 || result["db_issued_delta"] != count {
                bail!("allocation was not exact: see the result above");
            }
            Ok(())
        }
    }
}

async fn uin_pool_bench(url: &str, workers: u32, count: u64) -> anyhow::Result<serde_json::Value> {
    let db = Db::open(url).await.with_context(|| format!("cannot open {}", crate::config::mask_url(url)))?;
    let rules = IdRules::uin_default();
    let before = uin_pool::stats(&db).await?;

    // Fill the pool with exactly enough numbers (the refill path, timed separately).
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let t = Instant::now();
    let mut refilled = 0u64;
    while refilled < count {
        let batch = u32::try_from((count - refilled).min(u64::from(REFILL_BATCH_MAX))).unwrap_or(REFILL_BATCH_MAX);
        let added = uin_pool::refill(&db, &rules, &mut rng, batch, now_ms()).await?;
        if added == 0 {
            bail!("the pool cannot grow: no fresh numbers left under these rules");
        }
        refilled += added;
    }
    let refill_secs = t.elapsed().as_secs_f64();

    let remaining = Arc::new(AtomicU64::new(count));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (db, rules, remaining) = (db.clone(), rules.clone(), remaining.clone());
        tasks.spawn(async move {
            let mut got = Vec::new();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let mut tx = db.begin().await?;
                let uin = uin_pool::allocate(&mut tx, &rules, now_ms()).await?;
                uin_pool::mark_issued(&mut tx, &uin, now_ms()).await?;
                tx.commit().await?;
                got.push(uin.expose().to_owned());
            }
            Ok::<_, tessera_store::StoreError>(got)
        });
    }
    let mut all = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    while let Some(r) = tasks.join_next().await {
        all.extend(r.context("allocator task panicked")??);
    }
    let secs = t.elapsed().as_secs_f64();
    let distinct: HashSet<&String> = all.iter().collect();
    let after = uin_pool::stats(&db).await?;
    db.close().await;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    let per_sec = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    Ok(serde_json::json!({
        "bench": "uin-pool",
        "database": if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        "workers": workers,
        "allocations": all.len(),
        "seconds": secs,
        "allocs_per_sec": per_sec(all.len() as u64, secs),
        "duplicates": all.len() - distinct.len(),
        "db_issued_delta": after.issued - before.issued,
        "refill_uins": refilled,
        "refill_seconds": refill_secs,
        "refill_uins_per_sec": per_sec(refilled, refill_secs),
    }))
}

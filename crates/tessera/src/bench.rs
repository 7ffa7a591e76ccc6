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
    /// The identity repository: creates/s and reads/s (WORKERS concurrent callers, through
    /// `IdRepo` as the API uses it), bulk import records/s, and envelope seal/open per second
    /// beside a bare AES-256-GCM loop over the same bytes. Uses a scratch keystore, vault and
    /// blob store in a temporary directory; use a scratch database.
    Idrepo {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 8)]
        workers: u32,
        /// Identities created (and read) one by one.
        #[arg(long, default_value_t = 5_000)]
        count: u64,
        /// Identities bulk-imported.
        #[arg(long, default_value_t = 100_000)]
        import: u64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The biometric engine's speed on the synthetic population, in memory: iris 1:N single and
    /// batched beside the measured read bandwidth, face 1:N with recall@1 against exact f32,
    /// finger 1:1 per core and 1:N, multi-modal de-duplication of a batch of enrolments.
    Abis {
        #[arg(long, default_value_t = 1_000_000)]
        iris: usize,
        #[arg(long, default_value_t = 1_000_000)]
        face: usize,
        #[arg(long, default_value_t = 100_000)]
        finger_persons: usize,
        #[arg(long, default_value_t = 1_000_000)]
        dedup_gallery: usize,
        #[arg(long, default_value_t = 10_000)]
        dedup_probes: usize,
        /// 0: every core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The biometric engine's accuracy on the synthetic population: 1:1 FMR/FNMR and 1:N
    /// FPIR/FNIR at DET points, per modality and fused, and at the documented thresholds.
    AbisAccuracy {
        /// Persons compared 1:1 (each against its mate and IMPOSTORS strangers).
        #[arg(long, default_value_t = 20_000)]
        persons: usize,
        #[arg(long, default_value_t = 29)]
        impostors: usize,
        /// Gallery of the 1:N part, and its probes (half planted duplicates).
        #[arg(long, default_value_t = 100_000)]
        gallery: usize,
        #[arg(long, default_value_t = 4_000)]
        probes: usize,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// End-to-end registrations per second through real server processes: a scratch data
    /// directory, an ABIS gallery of GALLERY synthetic persons (filled first, timed apart),
    /// COUNT sealed packets (every tenth a re-enrolment), then upload → every packet final;
    /// upload rate, registrations/s, p50/p95 latency, per-stage job costs, correctness.
    Pipeline {
        /// `none`: SQLite in the scratch directory. Otherwise a scratch PostgreSQL database
        /// (the run fills it).
        #[arg(long, default_value = "none")]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        gallery: usize,
        #[arg(long, default_value_t = 1_000)]
        count: usize,
        #[arg(long, value_enum, default_value_t = crate::bench_pipeline::Topology::Single)]
        topology: crate::bench_pipeline::Topology,
        /// Uploads in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Most seconds from the first upload until every packet is final.
        #[arg(long, default_value_t = 3600)]
        timeout_s: u64,
        /// The servers' worker poll interval (ms).
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
        /// Keep the scratch directory (server logs) and print where it is.
        #[arg(long)]
        keep: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The demographic de-duplicator on a synthetic population with planted duplicates and
    /// namesakes: precision and recall (match, and match or possible match) against the ground
    /// truth, namesakes called matches, pairs compared beside all pairs, records/s.
    Dedupe {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// 0: every core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn emit(result: &serde_json::Value, json: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(result)?;
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
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
        BenchCmd::Idrepo { database_url, workers, count, import, json } => {
            if count == 0 || count > COUNT_MAX || import > COUNT_MAX || workers == 0 || workers > WORKERS_MAX {
                bail!("--count, --import and --workers out of range");
            }
            let result = idrepo_bench(&database_url, workers, count, import).await?;
            emit(&result, json.as_ref())
        }
        BenchCmd::Abis { iris, face, finger_persons, dedup_gallery, dedup_probes, threads, json } => {
            let sizes = crate::bench_abis::SpeedSizes { iris, face, finger_persons, dedup_gallery, dedup_probes, threads };
            let result = tokio::task::spawn_blocking(move || crate::bench_abis::speed(sizes)).await??;
            emit(&result, json.as_ref())
        }
        BenchCmd::AbisAccuracy { persons, impostors, gallery, probes, threads, json } => {
            let result =
                tokio::task::spawn_blocking(move || crate::bench_abis::accuracy(persons, impostors, gallery, probes, threads)).await??;
            emit(&result, json.as_ref())
        }
        BenchCmd::Pipeline { database_url, gallery, count, topology, concurrency, timeout_s, poll_ms, keep, json } => {
            let database_url = (database_url != "none").then_some(database_url);
            let args = crate::bench_pipeline::Args { database_url, gallery, count, topology, concurrency, timeout_s, poll_ms, keep };
            let result = crate::bench_pipeline::run(args).await?;
            emit(&result, json.as_ref())?;
            if result["correct"] != true {
                bail!("the pipeline's outcomes were not all correct: see problems above");
            }
            Ok(())
        }
        BenchCmd::Dedupe { count, seed, threads, json } => {
            let result = tokio::task::spawn_blocking(move || crate::dedupe::bench(count, seed, threads)).await??;
            emit(&result, json.as_ref())
        }
    }
}

/// A record of typical size (about 600 bytes of JSON) with a unique name.
fn bench_record(i: u64) -> serde_json::Value {
    serde_json::json!({
        "fullName": [{"language": "eng", "value": format!("Bench Person {i}")}, {"language": "fra", "value": format!("Personne {i}")}],
        "dateOfBirth": "1984-05-17",
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": format!("{i} Independence Avenue")}],
        "city": [{"language": "eng", "value": "Conakry"}],
        "region": [{"language": "eng", "value": "Conakry"}],
        "postalCode": "KD-100",
        "phone": format!("+224{:09}", i % 1_000_000_000),
        "email": format!("person{i}@example.org")
    })
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
fn per_sec(n: u64, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

async fn idrepo_bench(url: &str, workers: u32, count: u64, import: u64) -> anyhow::Result<serde_json::Value> {
    use tessera_crypto::{DataKey, Keystore, MasterKey, SoftwareKeystore};
    use tessera_idrepo::records::NewRecord;
    use tessera_idrepo::{Actor, IdRepo, ImportLine};
    let scratch = tempfile_dir()?;
    let db = Db::open(url).await.with_context(|| format!("cannot open {}", crate::config::mask_url(url)))?;
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", scratch.join("vault.db").display()) } else { url.to_owned() };
    let vault = tessera_store::Vault::open(&vault_url).await?;
    let blobs = tessera_store::BlobStore::open(scratch.join("blobs").to_str().unwrap_or("blobs"))?;
    let ks: Arc<dyn Keystore> = Arc::new(SoftwareKeystore::create(&scratch.join("keystore"), MasterKey::generate()?, None, now_ms())?);
    let rules = IdRules::uin_default();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut need = count + import;
    while need > 0 {
        let batch = u32::try_from(need.min(u64::from(REFILL_BATCH_MAX))).unwrap_or(REFILL_BATCH_MAX);
        need -= uin_pool::refill(&db, &rules, &mut rng, batch, now_ms()).await?.min(need);
    }
    let repo = IdRepo::new(db.clone(), vault, blobs, ks.clone(), Arc::new(tessera_core::schema::Schema::default_schema()), rules);
    let actor = Actor { id: "bench".into(), request_id: String::new() };

    // Creates, WORKERS at a time.
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (repo, actor, next) = (repo.clone(), actor.clone(), next.clone());
        tasks.spawn(async move {
            let mut uins = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, tessera_idrepo::RepoError>(uins);
                }
                let new = NewRecord { record: bench_record(i), reason: "bench".into(), ..NewRecord::default() };
                uins.push(repo.create(&actor, new, now_ms()).await?.uin);
            }
        });
    }
    let mut uins = Vec::new();
    while let Some(r) = tasks.join_next().await {
        uins.extend(r.context("create task panicked")??);
    }
    let create_secs = t.elapsed().as_secs_f64();

    // Reads of what was created (each one audited, as through the API).
    let uins = Arc::new(uins);
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    for _ in 0..workers {
        let (repo, actor, next, uins) = (repo.clone(), actor.clone(), next.clone(), uins.clone());
        tasks.spawn(async move {
            loop {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                let Some(uin) = uins.get(i) else { return Ok(Vec::new()) };
                repo.get(&actor, uin, now_ms()).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("read task panicked")??;
    }
    let read_secs = t.elapsed().as_secs_f64();

    // Bulk import, in the CLI's batch size.
    let t = Instant::now();
    let mut imported = 0;
    let mut i = 0;
    while i < import {
        let end = (i + 2000).min(import);
        let lines = (i..end)
            .map(|n| ImportLine {
                line: n + 1,
                external_ref: format!("BENCH-{n}"),
                record: bench_record(count + n),
                attachments: std::collections::BTreeMap::new(),
                reason: "import".into(),
            })
            .collect();
        imported += repo.import_batch(&actor, lines, now_ms()).await?.imported;
        i = end;
    }
    let import_secs = t.elapsed().as_secs_f64();

    // Envelope (fresh data key + wrap + seal; unwrap + open) against bare AES-256-GCM (one key,
    // seal; open) over the same bytes.
    let plain = serde_json::to_vec(&bench_record(1))?;
    let rounds: u64 = 50_000;
    let t = Instant::now();
    let mut sealed = Vec::new();
    for n in 0..rounds {
        let dek = DataKey::generate()?;
        let ctx = format!("tessera-dek-1/{n}");
        let w = ks.wrap(&dek, ctx.as_bytes())?;
        sealed.push((w, dek.seal(b"aad", &plain)?, ctx));
    }
    let env_seal = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (w, c, ctx) in &sealed {
        ks.unwrap(w, ctx.as_bytes())?.open(b"aad", c)?;
    }
    let env_open = t.elapsed().as_secs_f64();
    let key = DataKey::generate()?;
    let t = Instant::now();
    let bare: Vec<Vec<u8>> = (0..rounds).map(|_| key.seal(b"aad", &plain)).collect::<Result<_, _>>()?;
    let bare_seal = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for c in &bare {
        key.open(b"aad", c)?;
    }
    let bare_open = t.elapsed().as_secs_f64();
    repo.vault().close().await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(serde_json::json!({
        "bench": "idrepo",
        "database": if url.starts_with("sqlite") { "sqlite" } else { "postgres" },
        "workers": workers,
        "creates": count, "creates_per_sec": per_sec(count, create_secs),
        "reads": count, "reads_per_sec": per_sec(count, read_secs),
        "imported": imported, "import_per_sec": per_sec(imported, import_secs),
        "record_bytes": plain.len(),
        "envelope_seal_per_sec": per_sec(rounds, env_seal),
        "envelope_open_per_sec": per_sec(rounds, env_open),
        "bare_aes_gcm_seal_per_sec": per_sec(rounds, bare_seal),
        "bare_aes_gcm_open_per_sec": per_sec(rounds, bare_open),
        "seal_overhead_ratio": env_seal / bare_seal.max(f64::MIN_POSITIVE),
        "open_overhead_ratio": env_open / bare_open.max(f64::MIN_POSITIVE),
    }))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("tessera-bench-idrepo-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
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

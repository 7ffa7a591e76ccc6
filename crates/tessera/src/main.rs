//! The Tessera binary: command line, configuration, telemetry, wiring of storage, API and
//! workers, and graceful shutdown.
#![allow(clippy::print_stdout)] // a command-line tool: stdout is its interface

mod admin;
mod bench;
mod bench_abis;
mod bench_pipeline;
mod centres;
mod client;
mod config;
mod credential;
mod dedupe;
mod keys;
mod worker;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use config::{Config, Overrides, Role};
use rand::SeedableRng;
use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tessera_core::{IdRules, Rid, Uin, Vid};
use tessera_store::{BlobStore, Db, jobs, now_ms, uin_pool};

/// How long shutdown waits for in-flight requests and jobs (interrupted jobs are retried after
/// their lease expires).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);
/// Most identifiers `generate` prints in one run.
const GENERATE_COUNT_MAX: u64 = 10_000_000;

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Tessera: a national foundational identity platform in one binary.")]
struct Cli {
    #[command(flatten)]
    over: Overrides,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the data directory, its configuration file, database and keystore, fill the UIN
    /// pool, and issue the first administrator token (printed once, never stored).
    Init {
        /// Print the summary as one JSON object (the token is in `admin_token`).
        #[arg(long)]
        json: bool,
    },
    /// Run the HTTP API and the workers (creating the data directory on first run).
    Serve {
        /// Address to listen on. Env: TESSERA_LISTEN.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Which parts to run. Env: TESSERA_ROLE.
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// Hold this shard of the ABIS gallery and answer its searches (with `abis.shards` > 1;
        /// usually on `--role worker` processes). Env: TESSERA_ABIS__SHARD.
        #[arg(long)]
        abis_shard: Option<u32>,
    },
    /// Unique identification numbers.
    Uin {
        #[command(subcommand)]
        cmd: UinCmd,
    },
    /// Virtual ids.
    Vid {
        #[command(subcommand)]
        cmd: IdCmd,
    },
    /// Registration ids.
    Rid {
        #[command(subcommand)]
        cmd: RidCmd,
    },
    /// The durable job queue.
    Jobs {
        #[command(subcommand)]
        cmd: JobsCmd,
    },
    /// The notification outbox: messages to residents (ids, keys and states only, never addresses).
    Notifications {
        #[command(subcommand)]
        cmd: NotificationsCmd,
    },
    /// The identity schema.
    Schema {
        #[command(subcommand)]
        cmd: SchemaCmd,
    },
    /// Show the effective configuration (secrets masked).
    Config,
    /// The keystore: key versions per purpose, rotation.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Bearer tokens of the admin API.
    Token {
        #[command(subcommand)]
        cmd: admin::TokenCmd,
    },
    /// The identity repository.
    Identity {
        #[command(subcommand)]
        cmd: admin::IdentityCmd,
    },
    /// Registration centres and their staff.
    Centre {
        #[command(subcommand)]
        cmd: centres::CentreCmd,
    },
    /// Registration machines (and, on a machine, its key pair).
    Machine {
        #[command(subcommand)]
        cmd: centres::MachineCmd,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        cmd: admin::AuditCmd,
    },
    /// Benchmarks (see `cargo xtask bench`).
    Bench {
        #[command(subcommand)]
        cmd: bench::BenchCmd,
    },
    /// Synthetic test data with known ground truth.
    Synth {
        #[command(subcommand)]
        cmd: SynthCmd,
    },
    /// The offline registration client: init, enroll, sync, status (see ARCHITECTURE.md).
    Client {
        #[command(subcommand)]
        cmd: client::ClientCmd,
    },
    /// A simulated MOSIP SBI biometric device service on 127.0.0.1 with synthetic biometrics
    /// (for development and tests: its signatures are from a throwaway key, not a certified
    /// device).
    SbiSim {
        /// 0 picks a free port (printed).
        #[arg(long, default_value_t = 4501)]
        port: u16,
        #[arg(long, default_value = "finger,iris,face", value_delimiter = ',')]
        modalities: Vec<String>,
        /// Which synthetic person the devices capture: the same seed gives matching captures.
        #[arg(long, alias = "seed", default_value_t = 1)]
        person_seed: u64,
        /// Makes the capture noise reproducible (random otherwise).
        #[arg(long)]
        capture_seed: Option<u64>,
    },
    /// Verifiable credentials: verify one against the issuer's JWKS, or keep only some claims
    /// to present.
    Credential {
        #[command(subcommand)]
        cmd: credential::CredentialCmd,
    },
    /// Demographic de-duplication of a JSON-lines file of identity records (each with an `id`):
    /// candidate pairs with scores, decisions and per-field evidence as CSV.
    Dedupe(dedupe::DedupeArgs),
}

#[derive(Debug, Subcommand)]
enum SynthCmd {
    /// A reproducible synthetic biometric population as MOSIP CBEFF documents: PERSONS people
    /// enrolled once, the first DUPLICATES of them enrolled again (planted duplicates), with a
    /// ground-truth file (`truth.csv`) and the model (`population.json`).
    Biometrics {
        #[arg(long)]
        persons: usize,
        #[arg(long, default_value_t = 0)]
        duplicates: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: std::path::PathBuf,
        /// 0: every core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// A reproducible synthetic demographic population as identity JSON lines (each with an
    /// `id`), with planted duplicates (typos, transliterations, swapped names, missing fields,
    /// date slips) and namesakes, and its ground truth (`id,person,kind,namesake_of`).
    Demographics {
        /// Records to write.
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        truth: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum IdCmd {
    /// Print COUNT distinct valid numbers, one per line (not reserved: for tests and fixtures).
    Generate {
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Seed for reproducible output; random otherwise.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Exit 0 if valid; otherwise name the broken rule on stderr and exit 1.
    Validate { id: String },
}

#[derive(Debug, Subcommand)]
enum UinCmd {
    #[command(flatten)]
    Id(IdCmd),
    /// The pool of pre-generated UINs.
    Pool {
        #[command(subcommand)]
        cmd: PoolCmd,
    },
}

#[derive(Debug, Subcommand)]
enum PoolCmd {
    /// Counts per state, as JSON.
    Status,
    /// Generate COUNT new numbers into the pool now.
    Fill {
        #[arg(long)]
        count: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Every key version (never key material), as JSON lines.
    List,
    /// Add a new version of PURPOSE (identity, lookup, partner_token, signing, audit, datashare)
    /// and make it current; older versions stay available for reading and verifying.
    Rotate { purpose: String },
    /// Print the X.509 certificate (PEM) of PURPOSE's current key (datashare: upload it to
    /// MOSIP's partner management as the ABIS partner's encryption certificate).
    Certificate { purpose: String },
}

#[derive(Debug, Subcommand)]
enum RidCmd {
    /// Exit 0 and print its parts if valid; otherwise name the problem and exit 1.
    Validate { rid: String },
}

#[derive(Debug, Subcommand)]
enum JobsCmd {
    /// List jobs, newest first, as JSON lines.
    List {
        #[arg(long, value_parser = ["ready", "running", "done", "dead"])]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Put a dead job back in the queue with fresh attempts.
    Redrive { id: i64 },
}

#[derive(Debug, Subcommand)]
enum NotificationsCmd {
    /// List messages, newest first, as JSON lines.
    List {
        #[arg(long, value_parser = ["pending", "sending", "sent", "failed", "unknown"])]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send a `failed` or `unknown` message again with fresh attempts. For an `unknown` e-mail,
    /// first check the mail server's log for its Message-ID: it may have arrived.
    Redrive { id: String },
}

#[derive(Debug, Subcommand)]
enum SchemaCmd {
    /// Print the schema in force (the built-in default unless configured).
    Show,
    /// Check a schema file.
    Check { file: PathBuf },
    /// Validate an identity record (JSON file) against the schema; every error is listed.
    Validate { record: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let over = cli.over;
    match cli.cmd {
        Cmd::Serve { listen, role, abis_shard } => {
            let cfg = Config::load_serving(&over, listen, role, abis_shard)?;
            init_logging(&cfg.log_level);
            runtime()?.block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { json } => {
            let cfg = Config::load(&over, None, None)?;
            init_logging("warn");
            let summary = runtime()?.block_on(async {
                let opened = open_all(&cfg).await?;
                let mut summary = init(&cfg, &opened).await?;
                if let Some(token) = admin::first_admin_token(&opened.repo).await? {
                    summary["admin_token"] = token.into();
                }
                opened.close().await;
                Ok::<_, anyhow::Error>(summary)
            })?;
            if json {
                println!("{summary}");
            } else {
                println!("{}", serde_json::to_string_pretty(&summary)?);
                if summary.get("admin_token").is_some() {
                    eprintln!("The admin_token above is shown only this once: store it in a password manager.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token { cmd } => with_repo(&over, async move |_, repo| admin::token_command(repo, cmd).await),
        Cmd::Identity { cmd } => with_repo(&over, async move |cfg, repo| admin::identity_command(cfg, repo, cmd).await),
        Cmd::Machine { cmd: centres::MachineCmd::Keygen { out } } => centres::keygen(&out),
        Cmd::Centre { cmd } => with_repo(&over, async move |_, repo| centres::centre_command(repo, cmd).await),
        Cmd::Machine { cmd } => with_repo(&over, async move |_, repo| centres::machine_command(repo, cmd).await),
        Cmd::Audit { cmd } => with_repo(&over, async move |_, repo| admin::audit_command(repo, cmd).await),
        Cmd::Uin { cmd: UinCmd::Id(cmd) } => {
            let cfg = Config::load(&over, None, None)?;
            id_command(cmd, &cfg.uin, "UIN", |r, rng| Uin::generate(r, rng).map(|u| u.expose().to_owned()))
        }
        Cmd::Vid { cmd } => {
            let cfg = Config::load(&over, None, None)?;
            id_command(cmd, &cfg.vid, "VID", |r, rng| Vid::generate(r, rng).map(|v| v.expose().to_owned()))
        }
        Cmd::Rid { cmd: RidCmd::Validate { rid } } => match Rid::parse(&rid) {
            Ok(r) => {
                println!(
                    "{}",
                    serde_json::json!({"centre": r.centre().to_string(), "machine": r.machine().to_string(), "sequence": r.sequence(), "created_at": r.created_at().to_string()})
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("invalid RID: {} ({e})", e.code());
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Uin { cmd: UinCmd::Pool { cmd } } => {
            let cfg = Config::load(&over, None, None)?;
            init_logging("warn");
            runtime()?.block_on(pool_command(&cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Jobs { cmd } => {
            let cfg = Config::load(&over, None, None)?;
            init_logging("warn");
            runtime()?.block_on(jobs_command(&cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Notifications { cmd } => {
            let cfg = Config::load(&over, None, None)?;
            init_logging("warn");
            runtime()?.block_on(notifications_command(&cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Schema { cmd } => schema_command(&Config::load(&over, None, None)?, cmd),
        Cmd::Keys { cmd } => {
            let cfg = Config::load(&over, None, None)?;
            init_logging("warn");
            runtime()?.block_on(keys_command(&cfg, cmd))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config => {
            print!("{}", Config::load(&over, None, None)?.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth { cmd: SynthCmd::Biometrics { persons, duplicates, seed, out, threads } } => {
            let summary = bench_abis::synth(persons, duplicates, seed, &out, threads)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Synth { cmd: SynthCmd::Demographics { count, seed, output, truth } } => dedupe::synth_command(count, seed, &output, &truth),
        Cmd::Dedupe(args) => dedupe::command(args),
        Cmd::Credential { cmd } => {
            init_logging("warn");
            runtime()?.block_on(credential::command(cmd))
        }
        Cmd::Client { cmd } => client::command(cmd),
        Cmd::SbiSim { port, modalities, person_seed, capture_seed } => {
            init_logging("info");
            runtime()?.block_on(sbi_sim(port, &modalities, person_seed, capture_seed))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench { cmd } => {
            init_logging("warn");
            runtime()?.block_on(bench::run(cmd))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// JSON log lines on stderr. `TESSERA_LOG` (an `EnvFilter` directive) overrides `level`.
fn init_logging(level: &str) {
    let filter = std::env::var("TESSERA_LOG").ok().and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok());
    let filter = filter
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
}

type Generator = fn(&IdRules, &mut rand::rngs::StdRng) -> Result<String, tessera_core::IdRule>;

/// `validate` names every rule broken, one line each on stderr (`invalid UIN: CODE: reason`).
fn id_command(cmd: IdCmd, rules: &IdRules, what: &str, generate: Generator) -> anyhow::Result<ExitCode> {
    match cmd {
        IdCmd::Validate { id } => {
            let broken = rules.violations(id.trim());
            if broken.is_empty() {
                println!("valid");
                return Ok(ExitCode::SUCCESS);
            }
            for rule in broken {
                eprintln!("invalid {what}: {}: {rule}", rule.code());
            }
            Ok(ExitCode::FAILURE)
        }
        IdCmd::Generate { count, seed } => {
            if count == 0 || count > GENERATE_COUNT_MAX {
                bail!("--count must be between 1 and {GENERATE_COUNT_MAX}");
            }
            let mut rng = seed.map_or_else(rand::rngs::StdRng::from_os_rng, rand::rngs::StdRng::seed_from_u64);
            let mut seen = HashSet::with_capacity(usize::try_from(count).unwrap_or(0));
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while (seen.len() as u64) < count {
                let id = generate(rules, &mut rng)?;
                if seen.insert(id.clone()) {
                    writeln!(out, "{id}")?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn open_db(cfg: &Config) -> anyhow::Result<Db> {
    if cfg.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    }
    Db::open(&cfg.database_url).await.with_context(|| format!("cannot open database {}", config::mask_url(&cfg.database_url)))
}

/// Everything a process needs open: the database (migrated), the blob store, the keystore
/// (created on first use, with a warning naming where its master key is) and the key vault,
/// assembled into the identity repository.
struct Opened {
    repo: tessera_idrepo::IdRepo,
    keystore_note: Option<String>,
}

impl Opened {
    async fn close(&self) {
        self.repo.vault().close().await;
        self.repo.db().close().await;
    }
}

/// Runs a command that needs the repository: opens everything, runs `f`, closes.
fn with_repo<T>(over: &Overrides, f: impl AsyncFnOnce(&Config, &tessera_idrepo::IdRepo) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let cfg = Config::load(over, None, None)?;
    init_logging("warn");
    runtime()?.block_on(async {
        let opened = open_all(&cfg).await?;
        let r = f(&cfg, &opened.repo).await;
        opened.close().await;
        r
    })
}

async fn open_all(cfg: &Config) -> anyhow::Result<Opened> {
    let db = open_db(cfg).await?;
    let blobs = BlobStore::open(&cfg.blob_store).context("cannot open the blob store")?;
    // Fail at start, not at first use, when the master key is missing or wrong.
    let (keystore, keystore_note) = keys::open_or_create(cfg, now_ms())?;
    if let Some(note) = &keystore_note {
        tracing::warn!("{note}");
    }
    let vault_url = keys::vault_url(cfg);
    if let Some(parent) = vault_url
        .strip_prefix("sqlite://")
        .map(|p| std::path::Path::new(p.split('?').next().unwrap_or(p)))
        .and_then(std::path::Path::parent)
    {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let vault = tessera_store::Vault::open(&vault_url)
        .await
        .with_context(|| format!("cannot open the key vault {}", config::mask_url(&vault_url)))?;
    let repo = tessera_idrepo::IdRepo::new(db, vault, blobs, keystore, std::sync::Arc::new(cfg.schema()?), cfg.uin.clone());
    Ok(Opened { repo, keystore_note })
}

/// Idempotent: writes the configuration file if missing and fills the UIN pool if low.
/// Returns a summary (no secrets).
async fn init(cfg: &Config, opened: &Opened) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let file = cfg.data_dir.join(config::CONFIG_FILE);
    let wrote_config = if file.exists() {
        false
    } else {
        std::fs::write(&file, config::default_file_text(cfg)).with_context(|| format!("cannot write {}", file.display()))?;
        true
    };
    let db = opened.repo.db();
    let stats = uin_pool::stats(db).await?;
    let filled = if stats.unused < i64::from(cfg.uin_pool.refill_threshold) {
        uin_pool::refill(db, &cfg.uin, &mut rand::rngs::StdRng::from_os_rng(), cfg.uin_pool.refill_batch, now_ms()).await?
    } else {
        0
    };
    let stats = uin_pool::stats(db).await?;
    Ok(serde_json::json!({
        "data_dir": cfg.data_dir,
        "config_file": file,
        "config_file_created": wrote_config,
        "database": config::mask_url(&cfg.database_url),
        "uin_pool_added": filled,
        "uin_pool": stats,
        "keystore": keys::keystore_dir(cfg),
        "keystore_created": opened.keystore_note,
    }))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    tracing::info!(
        database = %config::mask_url(&cfg.database_url),
        role = cfg.role.as_str(),
        listen = %cfg.listen,
        "starting tessera {}", env!("CARGO_PKG_VERSION")
    );
    let opened = open_all(&cfg).await?;
    if cfg.database_url.starts_with("sqlite:") && !config::is_initialised(&cfg.data_dir) {
        tracing::info!(data_dir = %cfg.data_dir.display(), "first run: initialising the data directory");
        let summary = init(&cfg, &opened).await?;
        tracing::info!(uin_pool_added = summary["uin_pool_added"].as_u64(), "data directory initialised");
    }
    if tessera_store::api_tokens::count(opened.repo.db()).await? == 0 {
        // Never a token in a log: the operator makes one with the CLI.
        tracing::warn!("no API tokens exist yet: create one with `tessera token create --name NAME --role admin`");
    }
    let repo = opened.repo.clone();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // The engine serves ABIS requests (API) and the registration pipeline's de-duplication
    // (workers); with `abis.shards > 1` it holds no gallery and fans searches out.
    let abis = if cfg.abis.enabled { Some(open_abis(&cfg, &repo).await?) } else { None };
    let notifier = if cfg.notifications.enabled {
        let n = tessera_notify::Notifier::new(repo.clone(), cfg.notifications.notify(&cfg.data_dir))
            .map_err(|e| anyhow::anyhow!("cannot set up notifications ({}): {e}", e.code()))?;
        tracing::info!(file = %n.file().display(), "notifications: channels without an adapter go to the outbox file");
        Some(n)
    } else {
        None
    };
    let credentials = if cfg.credentials.enabled {
        let c = tessera_credentials::Credentials::new(repo.clone(), cfg.credentials.credentials(cfg.listen))
            .map_err(|e| anyhow::anyhow!("cannot set up credentials ({}): {e}", e.code()))?;
        tracing::info!(issuer = %c.config().issuer, "credentials: SD-JWT VCs, keys at /.well-known/jwks.json");
        Some(c)
    } else {
        None
    };
    let registration = match &abis {
        Some(engine) => {
            let matcher = tessera_demographics::Matcher::new(dedupe::load_config(cfg.registration.demographics.as_deref())?)?;
            let (e, n) = (std::sync::Arc::clone(engine), notifier.clone());
            Some(tessera_registration::Registration::with_parts(repo.clone(), e, cfg.registration.reg(), matcher, n, credentials.clone()))
        }
        None => None,
    };
    if matches!(cfg.role, Role::All | Role::Worker) {
        tasks.spawn(worker::run(repo.clone(), cfg.clone(), registration.clone(), notifier, stop_rx.clone()));
    }
    if let Some(shard) = cfg.abis.shard {
        let gallery = open_shard(&cfg, &repo, shard).await?;
        tasks.spawn(worker::run_shard(repo.clone(), cfg.clone(), gallery, stop_rx.clone()));
    }
    if matches!(cfg.role, Role::All | Role::Api) {
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let (Some(engine), Some(queue)) = (&abis, &cfg.abis.queue) {
            tasks.spawn(tessera_abis::queue::run(std::sync::Arc::clone(engine), queue.queue(), stop_rx.clone()));
        }
        let app = tessera_api::app_full(repo.clone(), abis, registration, credentials);
        tasks.spawn(async move {
            if let Err(e) = tessera_api::serve(listener, app, shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    wait_for_signal().await;
    tracing::info!("shutting down: no new requests or jobs; finishing in-flight work");
    let _ = stop_tx.send(true);
    // In-flight work gets a bounded grace period: a client that never finishes its request
    // must not hold up a rollout.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "shutdown grace period over; abandoning what is still running");
        tasks.abort_all();
    }
    opened.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Loads the ABIS gallery (progress in the log) and returns the engine.
async fn open_abis(cfg: &Config, repo: &tessera_idrepo::IdRepo) -> anyhow::Result<std::sync::Arc<tessera_abis::Engine>> {
    let started = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    let mut progress = |loaded: usize, total: usize| {
        if last_report.elapsed() >= std::time::Duration::from_secs(2) || loaded == total {
            tracing::info!(loaded, total, "loading the ABIS gallery");
            last_report = std::time::Instant::now();
        }
    };
    // MOSIP encrypts the data share to the certificate of its ABIS partner: Tessera's
    // `datashare` key (`tessera keys certificate datashare` prints it for upload).
    let decrypt: Option<tessera_abis::datashare::Decrypt> = cfg.abis.datashare_encrypted.then(|| {
        let ks = repo.keystore().clone();
        let d: tessera_abis::datashare::Decrypt = std::sync::Arc::new(move |payload: &[u8]| {
            ks.hybrid_decrypt(tessera_crypto::Purpose::Datashare, payload).map_err(|_| tessera_abis::FetchError::Decrypt)
        });
        d
    });
    let fetch = tessera_abis::datashare::Datashare::new(cfg.abis.datashare_token.clone(), decrypt)
        .map_err(|e| anyhow::anyhow!("cannot set up the data share client: {e}"))?
        .allow_http(cfg.abis.datashare_allow_http);
    let mut engine = tessera_abis::Engine::open(repo.clone(), std::sync::Arc::new(fetch), cfg.abis.engine(), &mut progress)
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the ABIS gallery ({}): {e}", e.code()))?;
    if let Some(url) = &cfg.abis.extractor_url {
        let sdk = tessera_abis::biosdk::BioSdk::new(url, cfg.abis.extractor_allow_http)
            .map_err(|e| anyhow::anyhow!("abis.extractor_url: {e}"))?;
        engine = engine.with_extractor(std::sync::Arc::new(sdk));
        tracing::info!("ABIS extracts templates from images through the configured BioSDK service");
    }
    if cfg.abis.shards > 1 {
        tracing::info!(shards = cfg.abis.shards, "ABIS searches fan out to the shard workers");
    } else {
        tracing::info!(references = engine.len(), seconds = started.elapsed().as_secs_f64(), "ABIS gallery loaded");
    }
    Ok(std::sync::Arc::new(engine))
}

/// Loads this process's shard of the ABIS gallery (progress in the log).
async fn open_shard(cfg: &Config, repo: &tessera_idrepo::IdRepo, shard: u32) -> anyhow::Result<tessera_abis::shard::ShardGallery> {
    let started = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    let mut progress = |loaded: usize| {
        if last_report.elapsed() >= std::time::Duration::from_secs(2) {
            tracing::info!(shard, loaded, "loading the ABIS gallery shard");
            last_report = std::time::Instant::now();
        }
    };
    let g = tessera_abis::shard::ShardGallery::open(
        repo.clone(),
        i64::from(shard),
        i64::from(cfg.abis.shards),
        cfg.abis.engine().threads,
        &mut progress,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot load ABIS shard {shard} ({}): {e}", e.code()))?;
    tracing::info!(
        shard,
        shards = cfg.abis.shards,
        references = g.len(),
        seconds = started.elapsed().as_secs_f64(),
        "ABIS gallery shard loaded"
    );
    Ok(g)
}

/// `tessera sbi-sim`: binds 127.0.0.1 only (SBI services are local to the registration machine).
async fn sbi_sim(port: u16, modalities: &[String], person_seed: u64, capture_seed: Option<u64>) -> anyhow::Result<()> {
    use tessera_api::sbi_sim::{Modality, SbiSim};
    let modalities: Vec<Modality> = modalities
        .iter()
        .map(|m| Modality::parse(m).ok_or_else(|| anyhow::anyhow!("--modalities: finger, iris or face, not {m:?}")))
        .collect::<anyhow::Result<_>>()?;
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let sim = SbiSim::new(&modalities, person_seed, capture_seed, addr.port()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{}",
        serde_json::json!({"listening": addr.to_string(), "spec_version": tessera_api::sbi_sim::SPEC_VERSION, "person_seed": person_seed})
    );
    std::io::stdout().flush()?;
    tracing::warn!(addr = %addr, "SBI simulator: synthetic biometrics, signatures from a throwaway key; not a certified device");
    tessera_api::serve(listener, tessera_api::sbi_sim::router(std::sync::Arc::new(sim)), wait_for_signal()).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn keys_command(cfg: &Config, cmd: KeysCmd) -> anyhow::Result<()> {
    let ks = keys::open(cfg)?;
    match cmd {
        KeysCmd::List => {
            for k in ks.list() {
                println!("{}", serde_json::json!({"id": k.id.to_string(), "created_at_ms": k.created_at_ms, "current": k.current}));
            }
        }
        KeysCmd::Rotate { purpose } => {
            let purpose = tessera_crypto::Purpose::parse(&purpose).map_err(|_| {
                anyhow::anyhow!("unknown purpose {purpose:?}: expected identity, lookup, partner_token, signing, audit or datashare")
            })?;
            let id = ks.rotate(purpose, now_ms())?;
            println!("{id}");
            // Data under older versions stays readable; a job moves it to the new one.
            let kind = match purpose {
                tessera_crypto::Purpose::Identity => Some(jobs::JobKind::RewrapKeys),
                tessera_crypto::Purpose::Lookup => Some(jobs::JobKind::ReindexLookups),
                _ => None,
            };
            if let Some(kind) = kind {
                let db = open_db(cfg).await?;
                let mut tx = db.begin().await?;
                let payload = serde_json::json!({ "key": id.to_string() });
                jobs::enqueue(&mut tx, kind, &payload, &format!("{}:{id}", kind.as_str()), now_ms()).await?;
                tx.commit().await?;
                db.close().await;
                eprintln!("queued {} to move existing data to {id}", kind.as_str());
            }
        }
        KeysCmd::Certificate { purpose } => {
            let purpose = tessera_crypto::Purpose::parse(&purpose).map_err(|_| anyhow::anyhow!("unknown purpose {purpose:?}"))?;
            println!("{}", keys::certificate_pem(&*ks, purpose)?);
        }
    }
    Ok(())
}

async fn pool_command(cfg: &Config, cmd: PoolCmd) -> anyhow::Result<()> {
    let db = open_db(cfg).await?;
    if let PoolCmd::Fill { count } = cmd {
        let n = count.unwrap_or(cfg.uin_pool.refill_batch);
        uin_pool::refill(&db, &cfg.uin, &mut rand::rngs::StdRng::from_os_rng(), n, now_ms()).await?;
    }
    println!("{}", serde_json::to_string(&uin_pool::stats(&db).await?)?);
    db.close().await;
    Ok(())
}

async fn jobs_command(cfg: &Config, cmd: JobsCmd) -> anyhow::Result<()> {
    let db = open_db(cfg).await?;
    match cmd {
        JobsCmd::List { state, limit } => {
            let state = state.as_deref().map(jobs::JobState::parse).transpose()?;
            for j in jobs::list(&db, state, limit).await? {
                println!("{}", serde_json::to_string(&j)?);
            }
        }
        JobsCmd::Redrive { id } => {
            jobs::redrive(&db, id, now_ms()).await?;
            println!("job {id} is back in the queue");
        }
    }
    db.close().await;
    Ok(())
}

async fn notifications_command(cfg: &Config, cmd: NotificationsCmd) -> anyhow::Result<()> {
    use tessera_store::outbox;
    let db = open_db(cfg).await?;
    match cmd {
        NotificationsCmd::List { status, limit } => {
            let status = status.as_deref().map(outbox::Status::parse).transpose()?;
            for n in outbox::list(&db, status, limit).await? {
                println!("{}", serde_json::to_string(&n)?);
            }
        }
        NotificationsCmd::Redrive { id } => {
            outbox::redrive(&db, &id, cfg.notifications.max_attempts, now_ms()).await?;
            println!("notification {id} is back in the outbox");
        }
    }
    db.close().await;
    Ok(())
}

fn schema_command(cfg: &Config, cmd: SchemaCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCmd::Show => {
            println!("{}", serde_json::to_string_pretty(&cfg.schema()?.to_json())?);
            Ok(ExitCode::SUCCESS)
        }
        SchemaCmd::Check { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            match tessera_core::schema::Schema::from_json(&text) {
                Ok(s) => {
                    let (id, version) = s.id_version();
                    println!("valid schema {id} version {version} with {} fields", s.fields().count());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("invalid schema: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        SchemaCmd::Validate { record } => {
            let text = std::fs::read_to_string(&record).with_context(|| format!("cannot read {}", record.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", record.display()))?;
            let today = time::OffsetDateTime::now_utc().date();
            match cfg.schema()?.validate(&value, today) {
                Ok(_) => {
                    println!("valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "errors": errors }))?);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

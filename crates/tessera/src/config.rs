//! Configuration: built-in defaults, then a TOML file, then `TESSERA_*` environment variables,
//! then command-line flags (each layer overrides the one before). Validated as a whole at start,
//! so a bad setting stops the process with every problem named, before it touches any data.
//! Secrets (database passwords) are masked whenever configuration is shown or logged.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_store::uin_pool::PoolConfig;

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "tessera.toml";
/// Environment variables that are not configuration keys (read elsewhere, or by tests).
/// Every `TESSERA_TEST_*` variable belongs to the test suite (database, PKCS#11 module, broker)
/// and is never configuration either.
const ENV_NOT_CONFIG: &[&str] = &["config", "log", "master_key", "master_passphrase", "pkcs11_pin"];

fn is_config_var(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    !key.starts_with("test_") && !ENV_NOT_CONFIG.contains(&key.as_str())
}

/// Which parts of the system this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// HTTP API and background workers in one process (the embedded default).
    All,
    /// HTTP API only (scale out behind a load balancer).
    Api,
    /// Background workers only.
    Worker,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// How often an idle worker polls the queue.
    pub poll_interval_ms: u64,
    /// How long a leased job may run before another worker may take it over.
    pub lease_ms: i64,
    /// How often the worker checks whether the UIN pool needs a refill and reaps expired leases.
    pub housekeeping_interval_ms: u64,
    /// Jobs one worker runs at once (their waits on the database and the key vault overlap).
    pub concurrency: u32,
}

/// Most jobs one worker runs at once.
pub const WORKER_CONCURRENCY_MAX: u32 = 64;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig { poll_interval_ms: 500, lease_ms: 5 * 60 * 1000, housekeeping_interval_ms: 10_000, concurrency: 4 }
    }
}

/// Which keystore holds the keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeystoreKind {
    /// A file in the keystore directory, sealed by the master key (the embedded default).
    #[default]
    Software,
    /// A PKCS#11 token (an HSM): keys are generated in it and never leave it. The user PIN comes
    /// from `TESSERA_PKCS11_PIN`.
    Pkcs11,
}

/// Where keys live, and the key vault of per-person data keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeystoreConfig {
    pub kind: KeystoreKind,
    /// PKCS#11: the module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub pkcs11_module: Option<PathBuf>,
    /// PKCS#11: the label of the token holding Tessera's keys.
    pub pkcs11_token: Option<String>,
    /// The keystore directory. Empty: `<data_dir>/keystore`.
    pub dir: Option<PathBuf>,
    /// The master key file, used when neither TESSERA_MASTER_KEY nor TESSERA_MASTER_PASSPHRASE
    /// is set. Empty: `<data_dir>.master-key`, beside (never inside) the data directory.
    pub master_key_file: Option<PathBuf>,
    /// The key vault (wrapped per-person data keys), a database apart from the main one so an
    /// erasure reaches its backups quickly. Empty: `sqlite://<keystore dir>/vault.db`.
    /// Scaled out: a PostgreSQL database of its own, e.g. `postgres://…/tessera_vault`.
    pub vault_url: Option<String>,
}

/// The ABIS (biometric de-duplication) this process serves at `/v1/abis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbisSettings {
    /// Serve the ABIS (load the gallery at start). Off: `/v1/abis` answers 503 `abis_disabled`.
    pub enabled: bool,
    /// Threads a search uses; 0: every core.
    pub threads: usize,
    /// Most candidates an Identify returns.
    pub candidates_max: usize,
    /// `targetFPIR` when a request gives none: round(−10·log10 FPIR), 30 = 1 in 1,000.
    pub target_fpir: u32,
    /// Width of the adjudication band below the match threshold, in decades of FMR (default 0:
    /// a search returns only candidates at its target FPIR; registration keeps its own band
    /// above the threshold, `registration.auto_duplicate_decades`).
    pub review_decades: f64,
    /// MOSIP's `Authorization` cookie value for the data share (referenceURL); from
    /// `TESSERA_ABIS__DATASHARE_TOKEN` rather than a file in production.
    pub datashare_token: Option<String>,
    /// Accept `http://` referenceURLs (a data share inside a private network).
    pub datashare_allow_http: bool,
    /// The data share encrypts to Tessera's `datashare` key (MOSIP's hybrid format; the policy
    /// of MOSIP's ABIS partner normally does). Off: the share sends plain CBEFF.
    pub datashare_encrypted: bool,
    /// MOSIP's queue transport (`[abis.queue]`); absent: HTTP only.
    pub queue: Option<AbisQueueSettings>,
    /// Shards the gallery is split into. 1: the API process holds all of it. More: API
    /// processes hold none and fan every search out through the job queue to worker processes
    /// started with `--abis-shard i` (one or more per shard `0..shards`).
    pub shards: u32,
    /// The shard this process holds (`serve --abis-shard`); a worker with none holds no shard.
    pub shard: Option<u32>,
    /// How long a fanned-out search waits for every shard before answering an internal error.
    pub shard_timeout_ms: u64,
    /// Days the change log that shard holders follow is kept (a holder down for longer reloads
    /// its shard).
    pub change_retention_days: u32,
    /// A MOSIP BioSDK service (`http(s)://host/biosdk-service`) that extracts templates from
    /// the images in fetched documents (finger, iris, face images: CBEFF formats 7, 8, 9).
    /// Absent: only templates are used, and an images-only document is refused.
    pub extractor_url: Option<String>,
    /// Accept an `http://` extractor URL (inside a private network: the images travel in clear).
    pub extractor_allow_http: bool,
}

/// MOSIP's ABIS queues on an ActiveMQ (or any STOMP 1.2) broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbisQueueSettings {
    /// `host:port` of the broker's STOMP connector (ActiveMQ: 61613).
    pub broker: String,
    pub login: Option<String>,
    /// From `TESSERA_ABIS__QUEUE__PASSCODE` rather than a file in production.
    pub passcode: Option<String>,
    #[serde(default = "inbound_default")]
    pub inbound: String,
    #[serde(default = "outbound_default")]
    pub outbound: String,
    /// Requests served at once.
    #[serde(default = "concurrency_default")]
    pub concurrency: u32,
}

fn inbound_default() -> String {
    tessera_abis::queue::INBOUND_DEFAULT.into()
}

fn outbound_default() -> String {
    tessera_abis::queue::OUTBOUND_DEFAULT.into()
}

fn concurrency_default() -> u32 {
    tessera_abis::queue::CONCURRENCY_DEFAULT
}

impl AbisQueueSettings {
    #[must_use]
    pub fn queue(&self) -> tessera_abis::queue::QueueConfig {
        let mut stomp = tessera_abis::stomp::Config::new(self.broker.clone());
        stomp.login.clone_from(&self.login);
        stomp.passcode.clone_from(&self.passcode);
        tessera_abis::queue::QueueConfig {
            stomp,
            inbound: self.inbound.clone(),
            outbound: self.outbound.clone(),
            concurrency: self.concurrency.clamp(1, tessera_abis::queue::CONCURRENCY_MAX),
        }
    }
}

impl Default for AbisSettings {
    fn default() -> Self {
        let d = tessera_abis::AbisConfig::default();
        AbisSettings {
            enabled: true,
            threads: 0,
            candidates_max: d.candidates_max,
            target_fpir: d.target_fpir_default,
            review_decades: d.review_decades,
            datashare_token: None,
            datashare_allow_http: false,
            datashare_encrypted: true,
            queue: None,
            shards: d.shards,
            shard: None,
            shard_timeout_ms: u64::try_from(d.shard_timeout.as_millis()).unwrap_or(u64::MAX),
            change_retention_days: 7,
            extractor_url: None,
            extractor_allow_http: false,
        }
    }
}

impl AbisSettings {
    #[must_use]
    pub fn engine(&self) -> tessera_abis::AbisConfig {
        let d = tessera_abis::AbisConfig::default();
        tessera_abis::AbisConfig {
            threads: if self.threads == 0 { d.threads } else { self.threads },
            candidates_max: self.candidates_max.clamp(1, tessera_biometrics::iris_gallery::CANDIDATES_MAX),
            target_fpir_default: self.target_fpir,
            review_decades: self.review_decades,
            shards: self.shards,
            shard_timeout: std::time::Duration::from_millis(self.shard_timeout_ms),
        }
    }

    /// Problems with the sharding settings.
    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=tessera_abis::engine::SHARDS_MAX).contains(&self.shards) {
            problems.push(format!("abis.shards must be between 1 and {}", tessera_abis::engine::SHARDS_MAX));
        }
        if let Some(s) = self.shard.filter(|s| *s >= self.shards) {
            problems.push(format!("abis.shard (--abis-shard) {s} is not below abis.shards = {}", self.shards));
        }
        if !(100..=3_600_000).contains(&self.shard_timeout_ms) {
            problems.push("abis.shard_timeout_ms must be between 100 and 3600000".into());
        }
        if let Some(u) = &self.extractor_url
            && tessera_abis::biosdk::BioSdk::new(u, self.extractor_allow_http).is_err()
        {
            problems.push("abis.extractor_url must be an https URL (http only with abis.extractor_allow_http)".into());
        }
        if !(1..=3650).contains(&self.change_retention_days) {
            problems.push("abis.change_retention_days must be between 1 and 3650".into());
        }
        problems
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded default keeps its database, blobs and configuration file.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`. Empty: `sqlite://<data_dir>/tessera.db`.
    pub database_url: String,
    /// A directory, `file://…`, or `s3://bucket/prefix`. Empty: `<data_dir>/blobs`.
    pub blob_store: String,
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    pub role: Role,
    /// Log filter (`info`, `warn,tessera=debug`, …); `TESSERA_LOG` overrides it.
    pub log_level: String,
    /// An identity schema file (JSON). Empty: the built-in default schema.
    pub identity_schema: Option<PathBuf>,
    /// UIN filters (MOSIP's `mosip.kernel.uin.*`), with MOSIP's defaults.
    pub uin: IdRules,
    /// VID filters (MOSIP's `mosip.kernel.vid.*`), with MOSIP's defaults.
    pub vid: IdRules,
    pub uin_pool: PoolConfig,
    pub worker: WorkerConfig,
    pub keystore: KeystoreConfig,
    #[serde(default)]
    pub abis: AbisSettings,
    #[serde(default)]
    pub registration: RegistrationSettings,
    #[serde(default)]
    pub notifications: NotificationSettings,
    #[serde(default)]
    pub credentials: CredentialSettings,
}

/// `[credentials]`: the verifiable credential (SD-JWT VC) each issued or updated identity gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialSettings {
    /// The pipeline issues credentials.
    pub enabled: bool,
    /// `iss`: the issuer's public HTTPS URL, whose `/.well-known/jwks.json` verifiers fetch.
    /// Empty: `http://<listen>` (a pilot; set it for any real deployment).
    pub issuer: Option<String>,
    /// `vct`: the credential type.
    pub vct: String,
    /// Validity from issuance, days.
    pub validity_days: u32,
}

impl Default for CredentialSettings {
    fn default() -> Self {
        let d = tessera_credentials::CredentialConfig::default();
        CredentialSettings { enabled: true, issuer: None, vct: d.vct, validity_days: d.validity_days }
    }
}

impl CredentialSettings {
    #[must_use]
    pub fn credentials(&self, listen: SocketAddr) -> tessera_credentials::CredentialConfig {
        tessera_credentials::CredentialConfig {
            issuer: self.issuer.clone().unwrap_or_else(|| format!("http://{listen}")),
            vct: self.vct.clone(),
            validity_days: self.validity_days,
        }
    }

    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=tessera_credentials::VALIDITY_DAYS_MAX).contains(&self.validity_days) {
            problems.push(format!("credentials.validity_days must be between 1 and {}", tessera_credentials::VALIDITY_DAYS_MAX));
        }
        if let Some(i) = &self.issuer
            && !(i.starts_with("https://") || i.starts_with("http://"))
        {
            problems.push("credentials.issuer must be an http(s) URL".into());
        }
        if self.vct.trim().is_empty() {
            problems.push("credentials.vct must not be empty".into());
        }
        problems
    }
}

/// `[notifications]`: messages to residents through the outbox. With no `email` or `sms`
/// section, every message is written to `<data_dir>/notifications/outbox.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationSettings {
    /// Workers deliver due messages between jobs.
    pub enabled: bool,
    /// Template overrides `<event>.<lang>.txt`. Empty: `<data_dir>/templates`.
    pub template_dir: Option<PathBuf>,
    /// Language used when a message's own has no template.
    pub default_language: String,
    /// Attempts before a message is dead-lettered (`failed`); also what a redrive grants.
    pub max_attempts: i32,
    /// How long one attempt may take before it is presumed dead (longer than every timeout).
    pub lease_ms: i64,
    /// Most messages a worker delivers per round between jobs.
    pub batch: u32,
    /// `[notifications.email]`: SMTP (host, port, tls, username, password, from, timeout_ms).
    pub email: Option<tessera_notify::SmtpConfig>,
    /// `[notifications.sms]`: an SMS gateway webhook (url, allow_http, token, timeout_ms).
    pub sms: Option<tessera_notify::WebhookConfig>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            enabled: true,
            template_dir: None,
            default_language: "eng".into(),
            max_attempts: 8,
            lease_ms: 5 * 60 * 1000,
            batch: 50,
            email: None,
            sms: None,
        }
    }
}

impl NotificationSettings {
    #[must_use]
    pub fn notify(&self, data_dir: &Path) -> tessera_notify::NotifyConfig {
        tessera_notify::NotifyConfig {
            file: tessera_notify::outbox_file(data_dir),
            template_dir: Some(self.template_dir.clone().unwrap_or_else(|| data_dir.join("templates"))),
            default_language: self.default_language.clone(),
            max_attempts: self.max_attempts,
            lease_ms: self.lease_ms,
            email: self.email.clone(),
            sms: self.sms.clone(),
        }
    }

    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=100).contains(&self.max_attempts) {
            problems.push("notifications.max_attempts must be between 1 and 100".into());
        }
        if !(1..=tessera_notify::DELIVER_LIMIT_MAX).contains(&self.batch) {
            problems.push(format!("notifications.batch must be between 1 and {}", tessera_notify::DELIVER_LIMIT_MAX));
        }
        let longest =
            [self.email.as_ref().map(|e| e.timeout_ms), self.sms.as_ref().map(|s| s.timeout_ms)].into_iter().flatten().max().unwrap_or(0);
        if !(1000..=24 * 3600 * 1000).contains(&self.lease_ms) || u64::try_from(self.lease_ms).unwrap_or(0) <= longest {
            problems.push("notifications.lease_ms must be between 1000 and 86400000 and longer than every adapter's timeout_ms".into());
        }
        let lang_ok = !self.default_language.is_empty()
            && self.default_language.len() <= 8
            && self.default_language.bytes().all(|b| b.is_ascii_lowercase());
        if !lang_ok {
            problems.push("notifications.default_language must be a language code such as eng".into());
        }
        if let Some(e) = &self.email
            && let Err(err) = tessera_notify::adapters::SmtpAdapter::new(e)
        {
            problems.push(format!("notifications.email: {err}"));
        }
        if let Some(s) = &self.sms
            && let Err(err) = tessera_notify::adapters::WebhookAdapter::new(s)
        {
            problems.push(format!("notifications.sms: {err}"));
        }
        problems
    }
}

/// `[registration]`: packets and the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSettings {
    /// Largest packet accepted, in bytes (default 5 MB, MOSIP's limit; at most 64 MiB).
    pub packet_bytes_max: usize,
    /// A `child` registration is for someone younger than this (years).
    pub child_age_years: i32,
    /// Lowest CBEFF quality score (0–100) a captured biometric may have.
    pub quality_min: u8,
    /// Every packet must name a supervisor assigned to its centre.
    pub require_supervisor: bool,
    /// Decades of fused evidence above the ABIS match threshold a biometric candidate needs to
    /// be an automatic duplicate (default 3, at most 30); below that it goes to adjudication.
    pub auto_duplicate_decades: u8,
    /// The demographic de-duplicator's configuration file (TOML or JSON, as for `tessera
    /// dedupe --config`: languages, replacement rules, thresholds); none: the built-in one.
    pub demographics: Option<PathBuf>,
}

/// Largest `registration.packet_bytes_max` (what the hybrid envelope takes).
const PACKET_BYTES_LIMIT: usize = 64 * 1024 * 1024;

impl Default for RegistrationSettings {
    fn default() -> Self {
        let d = tessera_registration::RegConfig::default();
        RegistrationSettings {
            packet_bytes_max: d.packet_bytes_max,
            child_age_years: d.child_age_years,
            quality_min: d.quality_min,
            require_supervisor: d.require_supervisor,
            auto_duplicate_decades: d.auto_duplicate_decades,
            demographics: None,
        }
    }
}

impl RegistrationSettings {
    #[must_use]
    pub fn reg(&self) -> tessera_registration::RegConfig {
        tessera_registration::RegConfig {
            packet_bytes_max: self.packet_bytes_max,
            child_age_years: self.child_age_years,
            quality_min: self.quality_min,
            require_supervisor: self.require_supervisor,
            auto_duplicate_decades: self.auto_duplicate_decades,
        }
    }

    fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1024..=PACKET_BYTES_LIMIT).contains(&self.packet_bytes_max) {
            problems.push(format!("registration.packet_bytes_max must be between 1024 and {PACKET_BYTES_LIMIT}"));
        }
        if self.auto_duplicate_decades > 30 {
            problems.push("registration.auto_duplicate_decades must be at most 30".into());
        }
        if !(1..=18).contains(&self.child_age_years) {
            problems.push("registration.child_age_years must be between 1 and 18".into());
        }
        if self.quality_min > 100 {
            problems.push("registration.quality_min must be between 0 and 100".into());
        }
        problems
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("tessera-data"),
            database_url: String::new(),
            blob_store: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            role: Role::All,
            log_level: "info".into(),
            identity_schema: None,
            uin: IdRules::uin_default(),
            vid: IdRules::vid_default(),
            uin_pool: PoolConfig::default(),
            worker: WorkerConfig::default(),
            keystore: KeystoreConfig::default(),
            abis: AbisSettings::default(),
            registration: RegistrationSettings::default(),
            notifications: NotificationSettings::default(),
            credentials: CredentialSettings::default(),
        }
    }
}

/// Command-line overrides, the last layer.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Configuration file (default: <data-dir>/tessera.toml when it exists). Env: TESSERA_CONFIG.
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded default. Env: TESSERA_DATA_DIR.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB. Env: TESSERA_DATABASE_URL.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

impl Config {
    /// Loads every layer and validates the result.
    ///
    /// # Errors
    /// An unreadable or malformed file, an unknown key, or invalid values (all listed).
    pub fn load(over: &Overrides, listen: Option<SocketAddr>, role: Option<Role>) -> anyhow::Result<Config> {
        Self::load_serving(over, listen, role, None)
    }

    /// `load` with `serve`'s `--abis-shard`.
    ///
    /// # Errors
    /// As `load`.
    pub fn load_serving(
        over: &Overrides,
        listen: Option<SocketAddr>,
        role: Option<Role>,
        abis_shard: Option<u32>,
    ) -> anyhow::Result<Config> {
        let env = || Env::prefixed("TESSERA_").filter(|k| is_config_var(k.as_str())).split("__");
        // The data directory decides where the default file is, so resolve it first.
        let data_dir: PathBuf = match &over.data_dir {
            Some(d) => d.clone(),
            None => Figment::from(Serialized::defaults(Config::default()))
                .merge(env().only(&["data_dir"]))
                .extract_inner("data_dir")
                .context("TESSERA_DATA_DIR")?,
        };
        let file = match &over.config {
            Some(f) => {
                if !f.is_file() {
                    bail!("configuration file {} does not exist", f.display());
                }
                Some(f.clone())
            }
            None => Some(data_dir.join(CONFIG_FILE)).filter(|f| f.is_file()),
        };
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = &file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig.merge(env());
        fig = fig.merge(Serialized::default("data_dir", &data_dir));
        if let Some(u) = &over.database_url {
            fig = fig.merge(Serialized::default("database_url", u));
        }
        if let Some(l) = listen {
            fig = fig.merge(Serialized::default("listen", l));
        }
        if let Some(r) = role {
            fig = fig.merge(Serialized::default("role", r));
        }
        if let Some(s) = abis_shard {
            fig = fig.merge(Serialized::default("abis.shard", s));
        }
        let mut cfg: Config = fig.extract().map_err(|e| anyhow::anyhow!(figment_errors(e)))?;
        if cfg.database_url.is_empty() {
            cfg.database_url = format!("sqlite://{}", cfg.data_dir.join("tessera.db").display());
        }
        if cfg.blob_store.is_empty() {
            cfg.blob_store = cfg.data_dir.join("blobs").display().to_string();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every setting and reports all problems at once.
    ///
    /// # Errors
    /// One line per problem.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            problems.push("database_url must start with sqlite: or postgres:".to_owned());
        }
        if self
            .keystore
            .vault_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("sqlite:") || u.starts_with("postgres:") || u.starts_with("postgresql:")))
        {
            problems.push("keystore.vault_url must start with sqlite: or postgres:".to_owned());
        }
        if self.keystore.kind == KeystoreKind::Pkcs11 && (self.keystore.pkcs11_module.is_none() || self.keystore.pkcs11_token.is_none()) {
            problems.push("keystore.kind = \"pkcs11\" needs keystore.pkcs11_module and keystore.pkcs11_token".to_owned());
        }
        if let Err(e) = self.uin.check_config() {
            problems.push(format!("uin: {e}"));
        }
        if let Err(e) = self.vid.check_config() {
            problems.push(format!("vid: {e}"));
        }
        if let Err(e) = self.uin_pool.check() {
            problems.push(e);
        }
        if !(10..=60_000).contains(&self.worker.poll_interval_ms) {
            problems.push("worker.poll_interval_ms must be between 10 and 60000".into());
        }
        if !(1000..=24 * 3600 * 1000).contains(&self.worker.lease_ms) {
            problems.push("worker.lease_ms must be between 1000 and 86400000".into());
        }
        if !(100..=3_600_000).contains(&self.worker.housekeeping_interval_ms) {
            problems.push("worker.housekeeping_interval_ms must be between 100 and 3600000".into());
        }
        if !(1..=WORKER_CONCURRENCY_MAX).contains(&self.worker.concurrency) {
            problems.push(format!("worker.concurrency must be between 1 and {WORKER_CONCURRENCY_MAX}"));
        }
        problems.extend(self.abis.check());
        problems.extend(self.registration.check());
        problems.extend(self.notifications.check());
        problems.extend(self.credentials.check());
        if let Err(e) = self.schema() {
            problems.push(format!("identity_schema: {e:#}"));
        }
        if problems.is_empty() { Ok(()) } else { bail!("invalid configuration:\n  {}", problems.join("\n  ")) }
    }

    /// The identity schema in force.
    ///
    /// # Errors
    /// An unreadable or invalid schema file.
    pub fn schema(&self) -> anyhow::Result<Schema> {
        match &self.identity_schema {
            None => Ok(Schema::default_schema()),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
                Schema::from_json(&text).with_context(|| format!("{} is not a valid schema", p.display()))
            }
        }
    }

    /// The configuration as TOML with secrets masked: safe to print and to log.
    #[must_use]
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = mask_url(&self.database_url);
        shown.blob_store = mask_url(&self.blob_store);
        shown.keystore.vault_url = self.keystore.vault_url.as_deref().map(mask_url);
        if shown.abis.datashare_token.is_some() {
            shown.abis.datashare_token = Some("****".into());
        }
        if let Some(q) = shown.abis.queue.as_mut().filter(|q| q.passcode.is_some()) {
            q.passcode = Some("****".into());
        }
        if let Some(e) = shown.notifications.email.as_mut().filter(|e| e.password.is_some()) {
            e.password = Some("****".into());
        }
        if let Some(s) = shown.notifications.sms.as_mut() {
            if s.token.is_some() {
                s.token = Some("****".into());
            }
            s.url = mask_url(&s.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Replaces a password in a URL (`user:secret@host`, `?password=secret`) with `****`.
#[must_use]
pub fn mask_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..].find(['/', '?']).map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(auth_start + colon + 1..auth_start + at, "****");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.to_ascii_lowercase().contains("secret") => format!("{k}=****"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{base}{}", masked.join("&"));
    }
    out
}

fn figment_errors(e: figment::Error) -> String {
    let lines: Vec<String> = e.into_iter().map(|e| format!("  {e}")).collect();
    format!("invalid configuration:\n{}", lines.join("\n"))
}

/// The configuration file `tessera init` writes into the data directory: every key at its
/// effective value, except those derived from the data directory (left empty, so the directory
/// can move) and the database URL (which may hold a password: pass it as TESSERA_DATABASE_URL).
#[must_use]
pub fn default_file_text(cfg: &Config) -> String {
    let mut shown = cfg.clone();
    shown.database_url = String::new();
    shown.blob_store = String::new();
    let body = toml::to_string_pretty(&shown).unwrap_or_default();
    // The data directory is where this file lives; naming it inside would pin a relative path.
    let body: String = body.lines().filter(|l| !l.starts_with("data_dir ")).map(|l| format!("{l}\n")).collect();
    format!(
        "# Tessera configuration. Layers: built-in defaults, then this file, then TESSERA_* environment\n\
         # variables (TESSERA_LISTEN, TESSERA_DATABASE_URL, TESSERA_UIN_POOL__REFILL_BATCH: nested keys\n\
         # joined by a double underscore), then command-line flags.\n\
         # database_url = \"\" means sqlite://<data dir>/tessera.db; blob_store = \"\" means <data dir>/blobs.\n\n{body}"
    )
}

/// Whether `dir` looks like an initialised data directory.
#[must_use]
pub fn is_initialised(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(mask_url("postgres://u:hunter2@db:5432/x"), "postgres://u:****@db:5432/x");
        assert_eq!(mask_url("postgres://u@db/x?password=hunter2&sslmode=require"), "postgres://u@db/x?password=****&sslmode=require");
        assert_eq!(mask_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(mask_url("sqlite://./data/t.db"), "sqlite://./data/t.db");
        assert_eq!(mask_url("postgres://u:p@ss@db/x"), "postgres://u:****@db/x");
    }

    #[test]
    fn abis_secrets_are_masked() {
        let mut c = Config { database_url: "sqlite://x.db".into(), ..Config::default() };
        c.abis.datashare_token = Some("eyJhbGciOiJkatashare".into());
        c.abis.queue = Some(AbisQueueSettings {
            broker: "mq:61613".into(),
            login: Some("abis".into()),
            passcode: Some("queue-hunter2".into()),
            inbound: inbound_default(),
            outbound: outbound_default(),
            concurrency: 4,
        });
        let shown = c.to_masked_toml();
        assert!(!shown.contains("eyJhbGciOiJkatashare") && !shown.contains("queue-hunter2"), "{shown}");
        assert!(shown.contains("mq:61613"));
    }

    #[test]
    fn notification_secrets_are_masked_and_limits_checked() {
        let mut c = Config { database_url: "sqlite://x.db".into(), ..Config::default() };
        c.notifications.email = Some(tessera_notify::SmtpConfig {
            host: "smtp.example.org".into(),
            port: None,
            tls: tessera_notify::SmtpTls::Starttls,
            username: Some("tessera".into()),
            password: Some("smtp-hunter2".into()),
            from: "Tessera <no-reply@example.org>".into(),
            timeout_ms: 30_000,
        });
        c.notifications.sms = Some(tessera_notify::WebhookConfig {
            url: "https://sms.example.org/send".into(),
            allow_http: false,
            token: Some("sms-hunter2".into()),
            timeout_ms: 10_000,
        });
        c.validate().unwrap();
        let shown = c.to_masked_toml();
        assert!(!shown.contains("smtp-hunter2") && !shown.contains("sms-hunter2"), "{shown}");
        assert!(shown.contains("smtp.example.org"));
        c.notifications.lease_ms = 5000;
        c.notifications.max_attempts = 0;
        c.notifications.sms.as_mut().unwrap().url = "http://sms.example.org".into();
        let e = c.validate().unwrap_err().to_string();
        for needle in ["notifications.lease_ms", "notifications.max_attempts", "notifications.sms"] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config { database_url: "sqlite://x.db".into(), ..Config::default() };
        c.validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = Config { database_url: "mysql://x".into(), ..Config::default() };
        c.uin.length = 2;
        c.uin_pool.refill_batch = 0;
        c.worker.poll_interval_ms = 0;
        let e = c.validate().unwrap_err().to_string();
        for needle in ["database_url", "uin:", "refill_batch", "poll_interval_ms"] {
            assert!(e.contains(needle), "{needle} missing from {e}");
        }
    }
}

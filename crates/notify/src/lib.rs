//! Notifications to residents through an outbox: a message is written to the `notifications`
//! table in the same transaction as the change it announces, and a worker delivers it later by
//! e-mail (SMTP), SMS (an HTTP webhook) or, in the embedded default, a file in the data directory.
//!
//! Delivery is retried and never sent twice: a message is claimed (`sending`, attempt counted)
//! in a transaction of its own before anything goes out, and marked `sent` after. A failure that
//! certainly delivered nothing is retried with backoff, up to `max_attempts`, then `failed`. An
//! attempt cut off by a crash is settled by what its adapter can know: the file adapter looks for
//! the message's line (exactly once); the webhook resends under the same `Idempotency-Key` (the
//! gateway deduplicates); SMTP cannot know, so the message becomes `unknown` and waits for an
//! operator instead of risking a second e-mail.
//!
//! Privacy: the address and the template variables (name, UIN, reason) are sealed under a data
//! key of the message's own (`tessera-sealed-1/notification/<id>`), destroyed once the message is
//! sent. `Debug` of every type that holds them prints no value; errors and logs carry ids and
//! codes only.

pub mod adapters;
pub mod templates;

pub use adapters::{Adapter, FileAdapter, SendError, SmtpConfig, SmtpTls, WebhookConfig, outbox_file};
pub use templates::{Rendered, Templates};
pub use tessera_store::outbox::{Info, Status};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tessera_idrepo::{IdRepo, RepoError};
use tessera_store::outbox::{self, Row};
use tessera_store::{StoreError, Tx, UnixMillis};

/// The sealed-item kind of a message's payload.
const SEALED_KIND: &str = "notification";
/// Longest address, in characters (RFC 5321 allows 254 for a path).
pub const ADDRESS_CHARS_MAX: usize = 254;
/// Most messages one `deliver_due` call handles.
pub const DELIVER_LIMIT_MAX: u32 = 1000;

/// Errors of the notifier. None carries an address, a name or a template variable.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("configuration: {0}")]
    Config(&'static str),
    #[error("template: {0}")]
    Template(&'static str),
    #[error("template file {0}: {1}")]
    TemplateFile(String, String),
    #[error("no template for this event in the message's language or the fallback language")]
    NoTemplate,
    #[error("variable: {0}")]
    Variable(&'static str),
    #[error("address: {0}")]
    Address(&'static str),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NotifyError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            NotifyError::Config(_) => "notify_config",
            NotifyError::Template(_) | NotifyError::TemplateFile(..) => "template_invalid",
            NotifyError::NoTemplate => "template_missing",
            NotifyError::Variable(_) => "template_variable_invalid",
            NotifyError::Address(_) => "address_invalid",
            NotifyError::Repo(e) => e.code(),
            NotifyError::Store(e) => e.code(),
        }
    }
}

pub type Result<T, E = NotifyError> = std::result::Result<T, E>;

/// Where a message goes. `Debug` hides the address.
#[derive(Clone, PartialEq, Eq)]
pub enum Address {
    Email(String),
    /// E.164-ish phone number, for SMS.
    Phone(String),
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Address::Email(_) => "Email(..)",
            Address::Phone(_) => "Phone(..)",
        })
    }
}

impl Address {
    #[must_use]
    pub fn channel(&self) -> &'static str {
        match self {
            Address::Email(_) => "email",
            Address::Phone(_) => "sms",
        }
    }

    fn value(&self) -> &str {
        match self {
            Address::Email(a) | Address::Phone(a) => a,
        }
    }

    fn check(&self) -> Result<()> {
        let v = self.value();
        if v.is_empty() || v.chars().count() > ADDRESS_CHARS_MAX || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(NotifyError::Address("an address is 1..=254 characters without spaces or control characters"));
        }
        match self {
            Address::Email(a) if a.matches('@').count() != 1 || a.starts_with('@') || a.ends_with('@') => {
                Err(NotifyError::Address("an e-mail address has one @ between two parts"))
            }
            Address::Phone(p) if !p.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit()) || p.len() < 4 => {
                Err(NotifyError::Address("a phone number is digits with an optional leading +"))
            }
            _ => Ok(()),
        }
    }
}

/// A message to send. `Debug` hides the address and the variables.
#[derive(Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Idempotency key, unique forever: enqueuing the same key again is a no-op. Carries no PII
    /// (e.g. `registration.issued:<RID>:email`).
    pub key: String,
    pub to: Address,
    /// The event, which names the template (`registration.issued`).
    pub template: String,
    /// Wanted language (ISO 639-3); `None` or one without a template: the fallback.
    pub language: Option<String>,
    pub vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for NewNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNotification")
            .field("key", &self.key)
            .field("to", &self.to)
            .field("template", &self.template)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

impl NewNotification {
    /// The messages for the person described by `record` (an identity record in the schema, or
    /// a rejected packet's `identity.json`): one per address it has (`email`, then `phone`), keys
    /// `<key>:email` / `<key>:sms`. The language is `language`, else that of the first
    /// `fullName` value; `name` is added to `vars` (the full name in that language, else the
    /// first) unless given.
    #[must_use]
    pub fn for_record(
        key: &str,
        template: &str,
        record: &Map<String, Value>,
        language: Option<&str>,
        vars: &BTreeMap<String, String>,
    ) -> Vec<Self> {
        let names: Vec<(&str, &str)> = match record.get("fullName") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| Some((v.get("language")?.as_str()?, v.get("value")?.as_str()?))).collect(),
            Some(Value::String(s)) => vec![("", s.as_str())],
            _ => Vec::new(),
        };
        let language = language.map(str::to_owned).or_else(|| names.iter().map(|(l, _)| *l).find(|l| !l.is_empty()).map(str::to_owned));
        let mut vars = vars.clone();
        if !vars.contains_key("name") {
            let name = names.iter().find(|(l, _)| Some(*l) == language.as_deref()).or_else(|| names.first()).map(|(_, v)| *v);
            vars.insert("name".into(), name.unwrap_or_default().to_owned());
        }
        let mut out = Vec::new();
        if let Some(e) = record.get("email").and_then(Value::as_str).filter(|e| !e.is_empty()) {
            out.push(Address::Email(e.to_owned()));
        }
        if let Some(p) = record.get("phone").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            out.push(Address::Phone(p.to_owned()));
        }
        out.into_iter()
            .map(|to| NewNotification {
                key: format!("{key}:{}", to.channel()),
                to,
                template: template.to_owned(),
                language: language.clone(),
                vars: vars.clone(),
            })
            .collect()
    }
}

/// A message sealed and ready to be inserted inside a transaction (`Notifier::enqueue`).
/// `Debug` shows ids only.
#[derive(Clone)]
pub struct Prepared {
    id: String,
    key: String,
    channel: &'static str,
    template: String,
    language: String,
    sealed: Vec<u8>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("id", &self.id).field("key", &self.key).finish_non_exhaustive()
    }
}

impl Prepared {
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new message with this id.
    New(String),
    /// The key was enqueued before (this id); nothing new.
    Existing(String),
}

/// The sealed payload.
#[derive(Serialize, Deserialize)]
struct Payload {
    to: String,
    vars: BTreeMap<String, String>,
}

/// Settings of the notifier (the binary builds this from `[notifications]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// The file adapter's outbox (`<data-dir>/notifications/outbox.jsonl`).
    pub file: PathBuf,
    /// Template overrides (`<data-dir>/templates`); absent or missing: built-ins only.
    pub template_dir: Option<PathBuf>,
    /// Language used when a message's own has no template.
    pub default_language: String,
    /// Attempts before a message is dead-lettered (`failed`).
    pub max_attempts: i32,
    /// How long a claimed attempt may take before it is presumed dead; longer than any adapter's
    /// timeout.
    pub lease_ms: i64,
    /// SMTP; absent: e-mails go to the file.
    pub email: Option<SmtpConfig>,
    /// SMS webhook; absent: SMS go to the file.
    pub sms: Option<WebhookConfig>,
}

impl NotifyConfig {
    /// The embedded default: everything to `<data_dir>/notifications/outbox.jsonl`.
    #[must_use]
    pub fn embedded(data_dir: &std::path::Path) -> Self {
        NotifyConfig {
            file: outbox_file(data_dir),
            template_dir: Some(data_dir.join("templates")),
            default_language: "eng".into(),
            max_attempts: 8,
            lease_ms: 5 * 60 * 1000,
            email: None,
            sms: None,
        }
    }
}

/// What one `deliver_due` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub sent: u32,
    pub retried: u32,
    pub failed: u32,
    pub unknown: u32,
    /// Interrupted attempts found and settled (counted again under their outcome).
    pub recovered: u32,
}

impl Delivery {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Delivery::default()
    }
}

/// The notifier. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    repo: IdRepo,
    cfg: NotifyConfig,
    templates: Templates,
    file: FileAdapter,
    email: Adapter,
    sms: Adapter,
}

impl Notifier {
    /// # Errors
    /// `Config` for bad adapter settings or limits; `Template*` for a bad template file.
    pub fn new(repo: IdRepo, cfg: NotifyConfig) -> Result<Self> {
        if !(1..=100).contains(&cfg.max_attempts) {
            return Err(NotifyError::Config("notifications.max_attempts must be between 1 and 100"));
        }
        let longest =
            [cfg.email.as_ref().map(|e| e.timeout_ms), cfg.sms.as_ref().map(|s| s.timeout_ms)].into_iter().flatten().max().unwrap_or(0);
        if cfg.lease_ms < 1000 || u64::try_from(cfg.lease_ms).unwrap_or(0) <= longest {
            return Err(NotifyError::Config("the notification lease must be at least 1 s and longer than every adapter's timeout"));
        }
        let templates = Templates::load(cfg.template_dir.as_deref(), &cfg.default_language)?;
        let file = FileAdapter::new(cfg.file.clone());
        let email = match &cfg.email {
            Some(c) => Adapter::Smtp(Box::new(adapters::SmtpAdapter::new(c)?)),
            None => Adapter::File(file.clone()),
        };
        let sms = match &cfg.sms {
            Some(c) => Adapter::Webhook(adapters::WebhookAdapter::new(c)?),
            None => Adapter::File(file.clone()),
        };
        Ok(Notifier { inner: Arc::new(Inner { repo, cfg, templates, file, email, sms }) })
    }

    #[must_use]
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The file adapter's outbox file.
    #[must_use]
    pub fn file(&self) -> &std::path::Path {
        self.inner.file.path()
    }

    /// Checks and seals a message (its data key goes to the key vault, a database apart from the
    /// main one). Call it before opening the transaction that will `enqueue` it: the vault write
    /// then never waits on that transaction's locks. A prepared message that is never enqueued
    /// leaves an orphan key that seals nothing stored (harmless).
    ///
    /// # Errors
    /// `Address`, `Variable`, `NoTemplate`; vault and keystore errors.
    pub async fn prepare(&self, n: &NewNotification, now: UnixMillis) -> Result<Prepared> {
        n.to.check()?;
        templates::check_vars(&n.vars)?;
        let language = self.inner.templates.language_for(&n.template, n.language.as_deref())?;
        // Fail now, not at delivery, when the template needs a variable the caller left out.
        self.inner.templates.render(&n.template, &language, &n.vars)?;
        let payload = serde_json::to_vec(&Payload { to: n.to.value().to_owned(), vars: n.vars.clone() })
            .map_err(|_| NotifyError::Variable("cannot encode the variables"))?;
        let (id, sealed) = self.inner.repo.seal_new(SEALED_KIND, &payload, now).await?;
        Ok(Prepared { id, key: n.key.clone(), channel: n.to.channel(), template: n.template.clone(), language, sealed })
    }

    /// Inserts a prepared message in the caller's transaction, so it commits (and is later sent)
    /// exactly when the caller's change does. A key enqueued before yields `Existing` and the
    /// prepared copy's key is destroyed.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn enqueue(&self, tx: &mut Tx, p: Prepared, now: UnixMillis) -> Result<Enqueued> {
        let row = outbox::NewRow {
            id: &p.id,
            idempotency_key: &p.key,
            channel: p.channel,
            template: &p.template,
            language: &p.language,
            payload: &p.sealed,
            max_attempts: self.inner.cfg.max_attempts,
        };
        if outbox::insert(tx, &row, now).await? {
            return Ok(Enqueued::New(p.id));
        }
        let existing = outbox::id_for_key(tx, &p.key).await?.unwrap_or_default();
        if let Err(e) = self.inner.repo.destroy_sealed(&p.id).await {
            tracing::warn!(code = e.code(), "cannot destroy the key of a notification enqueued twice");
        }
        Ok(Enqueued::Existing(existing))
    }

    /// `prepare` then `enqueue` in a transaction of its own (for callers with no change to
    /// commit along: the CLI, tests).
    ///
    /// # Errors
    /// As `prepare` and `enqueue`.
    pub async fn enqueue_now(&self, n: &NewNotification, now: UnixMillis) -> Result<Enqueued> {
        let p = self.prepare(n, now).await?;
        let mut tx = self.inner.repo.db().begin().await?;
        let e = self.enqueue(&mut tx, p, now).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Settles interrupted attempts (lease expired), then delivers up to `limit` due messages,
    /// one at a time. Called by the worker between jobs.
    ///
    /// # Errors
    /// Storage errors reaching the outbox; a message's own failure is recorded on it instead.
    pub async fn deliver_due(&self, now: UnixMillis, limit: u32) -> Result<Delivery> {
        let limit = limit.clamp(1, DELIVER_LIMIT_MAX);
        let mut d = Delivery::default();
        // The lease of each claim starts when it is taken, not when the batch began (slow adapters would otherwise claim messages already expired, for
        // another worker to take while they are being sent). A batch stops claiming after half
        // a lease, so the worker's jobs never wait long behind a burst of messages.
        let started = std::time::Instant::now();
        let clock = || now.saturating_add(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX));
        for row in outbox::expired(self.inner.repo.db(), now, limit).await? {
            self.recover(row, now, &mut d).await?;
        }
        let (email, sms) = (self.inner.email.name(), self.inner.sms.name());
        for _ in 0..limit {
            if clock() - now > self.inner.cfg.lease_ms / 2 {
                break;
            }
            let Some(row) = outbox::claim(self.inner.repo.db(), email, sms, self.inner.cfg.lease_ms, clock()).await? else { break };
            let outcome = self.send(&row, now).await;
            self.settle(&row, outcome, now, &mut d).await?;
        }
        Ok(d)
    }

    /// An attempt that was cut off: decided by the adapter that made it.
    async fn recover(&self, row: Row, now: UnixMillis, d: &mut Delivery) -> Result<()> {
        d.recovered += 1;
        tracing::warn!(notification = %row.id, adapter = row.adapter.as_deref().unwrap_or("?"), "a notification attempt was interrupted");
        let outcome = match row.adapter.as_deref() {
            Some("file") => match self.inner.file.contains(&row.id).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::Retry("interrupted")),
                // Cannot read the file: try again later rather than guess.
                Err(_) => return Ok(()),
            },
            // Resending is safe: the gateway deduplicates on the Idempotency-Key.
            Some("webhook") if self.inner.sms.name() == "webhook" => Err(SendError::Retry("interrupted")),
            _ => Err(SendError::Ambiguous("interrupted")),
        };
        self.settle(&row, outcome, now, d).await
    }

    async fn send(&self, row: &Row, now: UnixMillis) -> Result<(), SendError> {
        let opened = self.inner.repo.open_many(SEALED_KIND, &[(&row.id, &row.payload)]).await;
        let payload = match opened.map(|mut v| v.pop().flatten()) {
            Ok(Some(p)) => p,
            Ok(None) => return Err(SendError::Rejected("payload_erased")),
            Err(RepoError::Corrupt(_)) => return Err(SendError::Rejected("payload_corrupt")),
            Err(_) => return Err(SendError::Retry("vault_unavailable")),
        };
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| SendError::Rejected("payload_corrupt"))?;
        let rendered =
            self.inner.templates.render(&row.template, &row.language, &payload.vars).map_err(|e| SendError::Rejected(e.code()))?;
        let m = adapters::Outgoing {
            id: &row.id,
            channel: &row.channel,
            to: &payload.to,
            template: &row.template,
            language: &row.language,
            subject: &rendered.subject,
            body: &rendered.body,
        };
        let adapter = if row.channel == "email" { &self.inner.email } else { &self.inner.sms };
        let lease = std::time::Duration::from_millis(u64::try_from(self.inner.cfg.lease_ms).unwrap_or(0));
        match tokio::time::timeout(lease, adapter.send(&m, now)).await {
            Ok(r) => r,
            Err(_) if adapter.name() == "smtp" => Err(SendError::Ambiguous("timeout")),
            Err(_) => Err(SendError::Retry("timeout")),
        }
    }

    /// Records an attempt's outcome, fenced by its attempt number.
    async fn settle(&self, row: &Row, outcome: Result<(), SendError>, now: UnixMillis, d: &mut Delivery) -> Result<()> {
        let db = self.inner.repo.db();
        let (status, run_at, code) = match &outcome {
            Ok(()) => (Status::Sent, row.run_at_ms, None),
            Err(SendError::Retry(c)) if row.attempts < row.max_attempts => {
                (Status::Pending, now.saturating_add(tessera_store::jobs::backoff_ms(row.attempts)), Some(*c))
            }
            Err(SendError::Retry(c) | SendError::Rejected(c)) => (Status::Failed, row.run_at_ms, Some(*c)),
            Err(SendError::Ambiguous(c)) => (Status::Unknown, row.run_at_ms, Some(*c)),
        };
        if !outbox::finish(db, &row.id, row.attempts, status, run_at, code, now).await? {
            tracing::warn!(notification = %row.id, "a notification attempt finished after another took it over");
            return Ok(());
        }
        match status {
            Status::Sent => {
                d.sent += 1;
                tracing::info!(notification = %row.id, channel = %row.channel, attempt = row.attempts, "notification sent");
                // The address is not needed any more: erase it.
                if let Err(e) = self.inner.repo.destroy_sealed(&row.id).await {
                    tracing::warn!(notification = %row.id, code = e.code(), "cannot destroy a sent notification's key");
                }
            }
            Status::Pending => {
                d.retried += 1;
                tracing::warn!(notification = %row.id, attempt = row.attempts, code = code.unwrap_or(""), "notification will be retried");
            }
            Status::Failed => {
                d.failed += 1;
                tracing::error!(notification = %row.id, attempt = row.attempts, code = code.unwrap_or(""), "notification failed; an operator can redrive it");
            }
            Status::Unknown | Status::Sending => {
                d.unknown += 1;
                tracing::error!(notification = %row.id, code = code.unwrap_or(""), "notification may or may not have been delivered; an operator decides");
            }
        }
        Ok(())
    }

    /// Messages for operators, newest first (no addresses: ids, keys, states, codes).
    ///
    /// # Errors
    /// A limit over 1000; storage errors.
    pub async fn list(&self, status: Option<Status>, limit: u32) -> Result<Vec<Info>> {
        Ok(outbox::list(self.inner.repo.db(), status, limit).await?)
    }

    /// Sends a `failed` or `unknown` message again, with `max_attempts` fresh attempts. For an
    /// `unknown` one the operator takes the risk of a second copy: check the mail server's log
    /// for its Message-ID first.
    ///
    /// # Errors
    /// No such message in those states; storage errors.
    pub async fn redrive(&self, id: &str, now: UnixMillis) -> Result<()> {
        Ok(outbox::redrive(self.inner.repo.db(), id, self.inner.cfg.max_attempts, now).await?)
    }
}

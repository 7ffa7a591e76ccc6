//! The three ways a message leaves Tessera: a JSON-lines file in the data directory (the
//! embedded default), SMTP (lettre) and an SMS gateway's HTTP webhook (reqwest). Each attempt
//! ends in one of four outcomes, which the outbox turns into its next state; errors are stable
//! codes that never contain an address, a URL or a server's reply text.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest an adapter may take for one message, whatever its configuration says.
pub const SEND_TIMEOUT_MAX: Duration = Duration::from_secs(120);

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Certainly not delivered, and worth trying again (refused connection, SMTP 4xx, webhook
    /// 5xx/429, timeout of an idempotent request).
    Retry(&'static str),
    /// Certainly not delivered, and trying again will not help (SMTP 5xx, webhook 4xx, an
    /// address the adapter cannot use): dead-lettered at once.
    Rejected(&'static str),
    /// Maybe delivered (SMTP cut off after the message may have been accepted): never resent
    /// without an operator.
    Ambiguous(&'static str),
}

impl SendError {
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            SendError::Retry(c) | SendError::Rejected(c) | SendError::Ambiguous(c) => c,
        }
    }
}

/// A message ready to go out. `Debug` shows the id only.
#[derive(Clone)]
pub struct Outgoing<'a> {
    pub id: &'a str,
    /// `email` or `sms`.
    pub channel: &'a str,
    pub to: &'a str,
    pub template: &'a str,
    pub language: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing").field("id", &self.id).field("channel", &self.channel).finish_non_exhaustive()
    }
}

/// One line of the outbox file. `id` comes first, so a line is found by its prefix.
#[derive(Serialize)]
struct FileLine<'a> {
    id: &'a str,
    at_ms: i64,
    channel: &'a str,
    to: &'a str,
    template: &'a str,
    language: &'a str,
    subject: &'a str,
    body: &'a str,
}

/// The embedded default: every message is one JSON line appended to
/// `<data-dir>/notifications/outbox.jsonl` (0600, in a 0700 directory), for a pilot to read or
/// a country's own mailer to pick up. Exactly once: under an exclusive lock on the file the line
/// is appended only if no line with the message's id is there yet, and flushed to disk before the
/// attempt counts as delivered.
#[derive(Debug, Clone)]
pub struct FileAdapter {
    path: PathBuf,
}

/// The outbox file inside a data directory.
#[must_use]
pub fn outbox_file(data_dir: &Path) -> PathBuf {
    data_dir.join("notifications").join("outbox.jsonl")
}

impl FileAdapter {
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        FileAdapter { path }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the message unless its id is in the file already.
    ///
    /// # Errors
    /// `Retry("file_write_failed")` when the file cannot be written (disk full, permissions).
    pub async fn send(&self, m: &Outgoing<'_>, now: i64) -> Result<(), SendError> {
        let line = serde_json::to_string(&FileLine {
            id: m.id,
            at_ms: now,
            channel: m.channel,
            to: m.to,
            template: m.template,
            language: m.language,
            subject: m.subject,
            body: m.body,
        })
        .map_err(|_| SendError::Rejected("file_encode_failed"))?;
        let path = self.path.clone();
        let id = m.id.to_owned();
        let done = tokio::task::spawn_blocking(move || append_once(&path, &id, &line)).await;
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error_kind = ?e.kind(), "cannot write the notification outbox file");
                Err(SendError::Retry("file_write_failed"))
            }
            Err(_) => Err(SendError::Retry("file_write_failed")),
        }
    }

    /// Whether a line for message `id` is in the file (crash recovery: the attempt may have
    /// written it before the process died).
    ///
    /// # Errors
    /// An unreadable file.
    pub async fn contains(&self, id: &str) -> std::io::Result<bool> {
        let path = self.path.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            f.lock_shared()?;
            has_line(&f, &id)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

fn prefix(id: &str) -> String {
    format!("{{\"id\":\"{id}\",")
}

fn has_line(f: &std::fs::File, id: &str) -> std::io::Result<bool> {
    let wanted = prefix(id);
    for line in std::io::BufReader::new(f).split(b'\n') {
        if line?.starts_with(wanted.as_bytes()) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn append_once(path: &Path, id: &str, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    // Held until `f` is dropped: other workers (threads or processes) wait, then see the line.
    f.lock()?;
    if has_line(&f, id)? {
        return Ok(());
    }
    // A line cut short by a crash mid-write would glue onto this one: start on a fresh line.
    let len = f.metadata()?.len();
    let mut text = String::with_capacity(line.len() + 2);
    if len > 0 && !ends_with_newline(&f, len)? {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.sync_data()
}

fn ends_with_newline(f: &std::fs::File, len: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on the submission port (587), required.
    #[default]
    Starttls,
    /// TLS from the first byte (465).
    Tls,
    /// None: only for a relay on the same host or a test server.
    None,
}

/// `[notifications.email]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 (starttls), 465 (tls), 25 (none).
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// From `TESSERA_NOTIFICATIONS__EMAIL__PASSWORD` rather than a file.
    pub password: Option<String>,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// The whole SMTP conversation of one message.
    #[serde(default = "smtp_timeout_default")]
    pub timeout_ms: u64,
}

fn smtp_timeout_default() -> u64 {
    30_000
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig").field("port", &self.port).field("tls", &self.tls).finish_non_exhaustive()
    }
}

/// SMTP through lettre. The Message-ID is `<notification id@sender domain>`, the same on every
/// attempt, so a receiving system that keeps Message-IDs can tell a resend (after an operator's
/// redrive) from a new message.
#[derive(Debug, Clone)]
pub struct SmtpAdapter {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
    domain: String,
}

impl SmtpAdapter {
    /// # Errors
    /// `Config` for a bad sender address or host.
    pub fn new(cfg: &SmtpConfig) -> Result<Self, crate::NotifyError> {
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let from: lettre::message::Mailbox =
            cfg.from.parse().map_err(|_| crate::NotifyError::Config("notifications.email.from is not an e-mail address"))?;
        let domain = from.email.domain().to_owned();
        let timeout = Duration::from_millis(cfg.timeout_ms).min(SEND_TIMEOUT_MAX);
        let bad_host = |_| crate::NotifyError::Config("notifications.email.host is not usable for TLS");
        let (tls, port) = match cfg.tls {
            SmtpTls::Starttls => (Tls::Required(TlsParameters::new(cfg.host.clone()).map_err(bad_host)?), 587),
            SmtpTls::Tls => (Tls::Wrapper(TlsParameters::new(cfg.host.clone()).map_err(bad_host)?), 465),
            SmtpTls::None => (Tls::None, 25),
        };
        let mut b = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port.unwrap_or(port))
            .tls(tls)
            .timeout(Some(timeout))
            .hello_name(lettre::transport::smtp::extension::ClientId::Domain(domain.clone()));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.credentials(lettre::transport::smtp::authentication::Credentials::new(u.clone(), p.clone()));
        }
        Ok(SmtpAdapter { transport: b.build(), from, domain })
    }

    /// The Message-ID of notification `id`.
    #[must_use]
    pub fn message_id(&self, id: &str) -> String {
        format!("<{id}@{}>", self.domain)
    }

    /// # Errors
    /// See `SendError`: a 4xx reply is `Retry`, a 5xx `Rejected`, a refused connection `Retry`,
    /// anything else (a timeout or a connection lost mid-way) `Ambiguous`.
    pub async fn send(&self, m: &Outgoing<'_>) -> Result<(), SendError> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = m.to.parse().map_err(|_| SendError::Rejected("email_address_invalid"))?;
        let msg = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject)
            .message_id(Some(self.message_id(m.id)))
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(m.body.to_owned())
            .map_err(|_| SendError::Rejected("email_build_failed"))?;
        match self.transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_transient() => Err(SendError::Retry("smtp_transient")),
            Err(e) if e.is_permanent() => Err(SendError::Rejected("smtp_permanent")),
            Err(e) if refused(&e) => Err(SendError::Retry("smtp_unreachable")),
            Err(_) => Err(SendError::Ambiguous("smtp_interrupted")),
        }
    }
}

/// Whether the connection was refused outright (so nothing was sent).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `[notifications.sms]`: an SMS gateway's webhook.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://` with `allow_http`).
    pub url: String,
    #[serde(default)]
    pub allow_http: bool,
    /// Sent as `Authorization: Bearer …`; from `TESSERA_NOTIFICATIONS__SMS__TOKEN`.
    pub token: Option<String>,
    #[serde(default = "webhook_timeout_default")]
    pub timeout_ms: u64,
}

fn webhook_timeout_default() -> u64 {
    10_000
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("allow_http", &self.allow_http).field("timeout_ms", &self.timeout_ms).finish_non_exhaustive()
    }
}

/// The webhook's request body.
#[derive(Serialize)]
struct WebhookBody<'a> {
    id: &'a str,
    to: &'a str,
    text: &'a str,
    template: &'a str,
    language: &'a str,
}

/// SMS through a gateway's webhook: `POST url` with `{"id", "to", "text", "template",
/// "language"}` and `Idempotency-Key: <notification id>`, the same on every attempt, so a
/// gateway that keeps its keys sends the SMS once however often Tessera asks.
#[derive(Debug, Clone)]
pub struct WebhookAdapter {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
}

impl WebhookAdapter {
    /// # Errors
    /// `Config` for a URL that is not https (or http with `allow_http`).
    pub fn new(cfg: &WebhookConfig) -> Result<Self, crate::NotifyError> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|_| crate::NotifyError::Config("notifications.sms.url is not a URL"))?;
        if !(url.scheme() == "https" || (url.scheme() == "http" && cfg.allow_http)) {
            return Err(crate::NotifyError::Config("notifications.sms.url must be https (http only with allow_http)"));
        }
        let timeout = Duration::from_millis(cfg.timeout_ms).min(SEND_TIMEOUT_MAX);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| crate::NotifyError::Config("cannot build the webhook's HTTP client"))?;
        Ok(WebhookAdapter { client, url, token: cfg.token.clone() })
    }

    /// # Errors
    /// See `SendError`: 2xx is delivered; 408, 429 and 5xx, timeouts and connection errors are
    /// `Retry` (the idempotency key makes a resend safe); other statuses `Rejected`.
    pub async fn send(&self, m: &Outgoing<'_>) -> Result<(), SendError> {
        let body = serde_json::to_vec(&WebhookBody { id: m.id, to: m.to, text: m.body, template: m.template, language: m.language })
            .map_err(|_| SendError::Rejected("webhook_encode_failed"))?;
        let mut req = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", m.id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 408 => Err(SendError::Retry("webhook_busy")),
            Ok(r) if r.status().is_server_error() => Err(SendError::Retry("webhook_5xx")),
            Ok(_) => Err(SendError::Rejected("webhook_refused")),
            Err(e) if e.is_timeout() => Err(SendError::Retry("webhook_timeout")),
            Err(e) if e.is_connect() => Err(SendError::Retry("webhook_unreachable")),
            Err(_) => Err(SendError::Retry("webhook_error")),
        }
    }
}

/// The adapter a channel uses.
#[derive(Debug, Clone)]
pub enum Adapter {
    File(FileAdapter),
    Smtp(Box<SmtpAdapter>),
    Webhook(WebhookAdapter),
}

impl Adapter {
    /// As stored in `notifications.adapter`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Adapter::File(_) => "file",
            Adapter::Smtp(_) => "smtp",
            Adapter::Webhook(_) => "webhook",
        }
    }

    /// # Errors
    /// See `SendError`.
    pub async fn send(&self, m: &Outgoing<'_>, now: i64) -> Result<(), SendError> {
        match self {
            Adapter::File(f) => f.send(m, now).await,
            Adapter::Smtp(s) => s.send(m).await,
            Adapter::Webhook(w) => w.send(m).await,
        }
    }
}

//! Administration commands that work on the repository directly (the CLI runs with the data
//! directory and keystore in hand, so it acts as `cli` in the audit log): API tokens, bulk
//! import of a legacy register, audit verification.

use crate::config::Config;
use anyhow::{Context, bail};
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tessera_idrepo::access::{self, Role};
use tessera_idrepo::audit;
use tessera_idrepo::{Actor, IdRepo, ImportLine, LineError};
use tessera_store::{api_tokens, now_ms, uin_pool};

/// Lines per import transaction.
const IMPORT_BATCH_DEFAULT: usize = 2000;
/// Longest import line accepted (a record with inline attachments).
const IMPORT_LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token; its secret is printed once and never stored.
    Create {
        /// A label for people (e.g. the holder's function), shown in `list`.
        #[arg(long)]
        name: String,
        /// admin, operator, supervisor, adjudicator or auditor.
        #[arg(long)]
        role: String,
        /// Expire after this many days (never, if absent).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Every token (never secrets), as JSON lines.
    List,
    /// Revoke a token by id: it is refused from the next request on.
    Revoke { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum IdentityCmd {
    /// Bulk-load a legacy register: one JSON object per line,
    /// `{"external_ref": "...", "record": {...}, "reason": "...", "attachments": {"ref": "<base64>"}}`.
    /// Invalid lines are reported (line number and reasons) and skipped; lines whose
    /// external_ref is already in the register are skipped, so a rerun after an interruption
    /// resumes. Exit status 0 when every line was imported or present, 2 when some were invalid.
    Import {
        file: PathBuf,
        /// Lines per transaction.
        #[arg(long, default_value_t = IMPORT_BATCH_DEFAULT)]
        batch: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// Check the whole chain and every signed checkpoint; name each altered, removed or
    /// reordered entry. Exit status 1 when anything is wrong.
    Verify,
    /// Sign a checkpoint at the current end of the log now.
    Checkpoint,
}

/// Issues the first admin token when no token exists yet (so `init` run twice issues one).
///
/// # Errors
/// Database errors.
pub async fn first_admin_token(repo: &IdRepo) -> anyhow::Result<Option<String>> {
    if api_tokens::count(repo.db()).await? > 0 {
        return Ok(None);
    }
    let t =
        access::create_token(repo.db(), &**repo.keystore(), &Actor::cli(), "initial administrator", Role::Admin, None, now_ms()).await?;
    Ok(Some(t.secret))
}

pub async fn token_command(repo: &IdRepo, cmd: TokenCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCmd::Create { name, role, expires_days } => {
            let role = Role::parse(&role)
                .map_err(|_| anyhow::anyhow!("unknown role {role:?}: expected admin, operator, supervisor, adjudicator or auditor"))?;
            let now = now_ms();
            let expires = expires_days.map(|d| now + i64::from(d) * 86_400_000);
            let t = access::create_token(repo.db(), &**repo.keystore(), &Actor::cli(), &name, role, expires, now).await?;
            println!(
                "{}",
                serde_json::json!({"id": t.row.id, "role": t.row.role, "expires_at_ms": t.row.expires_at_ms, "token": t.secret})
            );
            eprintln!("The token is shown only this once.");
        }
        TokenCmd::List => {
            for t in api_tokens::list(repo.db()).await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TokenCmd::Revoke { id } => {
            if !access::revoke_token(repo.db(), &**repo.keystore(), &Actor::cli(), &id, now_ms()).await? {
                bail!("no active token with id {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit_command(repo: &IdRepo, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify => {
            let v = audit::verify(repo.db(), &**repo.keystore()).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            for p in &v.problems {
                eprintln!("audit: {p}");
            }
            Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AuditCmd::Checkpoint => {
            match audit::checkpoint_now(repo.db(), &**repo.keystore(), now_ms()).await? {
                Some(seq) => println!("checkpoint signed at entry {seq}"),
                None => println!("nothing new to checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    external_ref: String,
    record: serde_json::Value,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    attachments: BTreeMap<String, String>,
}

fn parse_line(n: u64, text: &str) -> Result<ImportLine, LineError> {
    let l: LineIn = serde_json::from_str(text)
        // serde's message can quote the line's values: only its position is kept.
        .map_err(|e| LineError::one(n, "", "line_invalid", &format!("not a JSON object of the import shape (column {})", e.column())))?;
    let mut attachments = BTreeMap::new();
    for (k, v) in l.attachments {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .map_err(|_| LineError::one(n, &format!("/attachments/{k}"), "attachment_invalid", "not valid base64"))?;
        attachments.insert(k, bytes);
    }
    Ok(ImportLine {
        line: n,
        external_ref: l.external_ref,
        record: l.record,
        attachments,
        reason: l.reason.unwrap_or_else(|| "import".into()),
    })
}

/// A written batch's report, with the lines that failed to parse before it ran.
type BatchDone = (tessera_idrepo::ImportReport, Vec<LineError>);

/// Running totals of an import.
#[derive(Default)]
struct Tally {
    imported: u64,
    present: u64,
    invalid: u64,
}

impl Tally {
    /// Adds one finished batch: its report, and the lines that failed to parse before it ran.
    fn absorb(&mut self, (r, mut bad): BatchDone) {
        bad.extend(r.invalid);
        bad.sort_by_key(|e| e.line);
        report_invalid(&bad);
        self.imported += r.imported;
        self.present += r.already_present;
        self.invalid += bad.len() as u64;
    }
}

fn report_invalid(errors: &[LineError]) {
    let mut err = std::io::stderr().lock();
    for e in errors {
        for p in &e.problems {
            let _ = writeln!(err, "line {}: {} {}: {}", e.line, if p.path.is_empty() { "-" } else { &p.path }, p.code, p.message);
        }
    }
}

pub async fn identity_command(cfg: &Config, repo: &IdRepo, cmd: IdentityCmd) -> anyhow::Result<ExitCode> {
    let IdentityCmd::Import { file, batch } = cmd;
    if batch == 0 || batch > tessera_idrepo::IMPORT_BATCH_MAX {
        bail!("--batch must be between 1 and {}", tessera_idrepo::IMPORT_BATCH_MAX);
    }
    let f = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let total_bytes = f.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let actor = Actor::cli();
    let started = Instant::now();
    let (mut tally, mut lines, mut read_bytes) = (Tally::default(), 0u64, 0u64);
    let mut last_progress = Instant::now();
    let mut buf = Vec::new();
    let mut in_flight: Option<tokio::task::JoinHandle<anyhow::Result<BatchDone>>> = None;
    loop {
        let mut pending = Vec::with_capacity(batch);
        let mut bad = Vec::new();
        while pending.len() < batch {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).with_context(|| format!("cannot read {}", file.display()))?;
            if n == 0 {
                break;
            }
            read_bytes += n as u64;
            lines += 1;
            if n > IMPORT_LINE_BYTES_MAX {
                bad.push(LineError::one(lines, "", "line_too_long", "line longer than 16 MiB"));
                continue;
            }
            let Ok(text) = std::str::from_utf8(&buf) else {
                bad.push(LineError::one(lines, "", "line_not_utf8", "the line is not valid UTF-8"));
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            match parse_line(lines, text) {
                Ok(l) => pending.push(l),
                Err(e) => bad.push(e),
            }
        }
        if pending.is_empty() && bad.is_empty() {
            break;
        }
        // The pool must hold enough numbers for the batch: refill synchronously when low.
        if uin_pool::unused_count(repo.db()).await? < i64::try_from(pending.len()).unwrap_or(i64::MAX) * 2 {
            let n = cfg.uin_pool.refill_batch.max(u32::try_from(batch * 4).unwrap_or(u32::MAX)).min(uin_pool::REFILL_BATCH_MAX);
            uin_pool::refill(repo.db(), &cfg.uin, &mut <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng(), n, now_ms()).await?;
        }
        // Batch N is written while batch N+1 is read and parsed: wait for the one in flight,
        // then start this one.
        if let Some(done) = in_flight.take() {
            tally.absorb(done.await.context("import task panicked")??);
        }
        let (repo2, actor2) = (repo.clone(), actor.clone());
        in_flight = Some(tokio::spawn(async move {
            let r = repo2
                .import_batch(&actor2, pending, now_ms())
                .await
                .context("import batch failed; nothing of it was written, rerun to resume")?;
            Ok::<_, anyhow::Error>((r, bad))
        }));
        if last_progress.elapsed().as_secs() >= 1 {
            last_progress = Instant::now();
            #[allow(clippy::cast_precision_loss)]
            let pct = read_bytes as f64 * 100.0 / total_bytes as f64;
            eprintln!(
                "progress: {pct:.0}% — {lines} lines, {} imported, {} already present, {} invalid",
                tally.imported, tally.present, tally.invalid
            );
        }
    }
    if let Some(done) = in_flight.take() {
        tally.absorb(done.await.context("import task panicked")??);
    }
    let Tally { imported, present, invalid } = tally;
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = if secs > 0.0 { imported as f64 / secs } else { 0.0 };
    println!(
        "{}",
        serde_json::json!({"lines": lines, "imported": imported, "already_present": present, "invalid": invalid,
                           "seconds": (secs * 1000.0).round() / 1000.0, "imported_per_second": rate.round()})
    );
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

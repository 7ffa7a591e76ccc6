//! Rows of the notification outbox (`0007_notifications`). A message is inserted in the caller's
//! transaction (so it commits with the change it announces, or not at all) and then moves
//! `pending` → `sending` (claimed, attempt counted, in a transaction of its own) → `sent`, or
//! back to `pending` after a definite failure, or to `failed` (dead letter) / `unknown` (maybe
//! delivered, an operator decides). Every transition out of `sending` is fenced by the attempt
//! number, so a worker whose lease was taken over changes nothing.
//!
//! Ids, codes and sealed bytes only: addresses and names live inside `payload`, sealed above, in
//! `tessera-notify`.

use crate::{Db, Result, StoreError, Tx, UnixMillis};
use serde::Serialize;

/// Longest idempotency key.
pub const KEY_CHARS_MAX: usize = 200;
/// Longest template (event) name and language code.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest stored error text (our codes; this only bounds the row).
pub const ERROR_CHARS_MAX: usize = 200;
/// Largest sealed payload.
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024;
/// Largest page `list` and `expired` return.
pub const LIST_LIMIT_MAX: u32 = 1000;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be sent (at `run_at_ms` or later).
    Pending,
    /// Claimed by a worker until `lease_until_ms`.
    Sending,
    /// Delivered (the adapter confirmed it).
    Sent,
    /// Out of attempts, or refused for good: waits for an operator (`redrive`).
    Failed,
    /// An attempt may or may not have delivered it (SMTP cut off mid-way): never resent
    /// automatically; an operator checks and redrives or leaves it.
    Unknown,
}

impl Status {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
        }
    }

    /// # Errors
    /// `Invalid` for any other name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Status::Pending),
            "sending" => Ok(Status::Sending),
            "sent" => Ok(Status::Sent),
            "failed" => Ok(Status::Failed),
            "unknown" => Ok(Status::Unknown),
            _ => Err(StoreError::Invalid("notification status must be pending, sending, sent, failed or unknown")),
        }
    }
}

/// A message to insert.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub id: &'a str,
    pub idempotency_key: &'a str,
    /// `email` or `sms`.
    pub channel: &'a str,
    pub template: &'a str,
    pub language: &'a str,
    pub payload: &'a [u8],
    pub max_attempts: i32,
}

/// A message as stored (the payload still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub idempotency_key: String,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub payload: Vec<u8>,
    pub status: Status,
    pub adapter: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at_ms: UnixMillis,
    pub lease_until_ms: Option<UnixMillis>,
    pub last_error: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub sent_at_ms: Option<UnixMillis>,
}

/// A message as listed for operators: no payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Info {
    pub id: String,
    pub idempotency_key: String,
    pub channel: String,
    pub template: String,
    pub language: String,
    pub status: Status,
    pub adapter: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at_ms: UnixMillis,
    pub last_error: Option<String>,
    pub created_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    pub sent_at_ms: Option<UnixMillis>,
}

const COLUMNS: &str = "id, idempotency_key, channel, template, language, payload, status, adapter, attempts, max_attempts, run_at_ms, \
                       lease_until_ms, last_error, created_at_ms, updated_at_ms, sent_at_ms";

type RowTuple = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    String,
    Option<String>,
    i32,
    i32,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

fn row(t: RowTuple) -> Result<Row> {
    let (id, idempotency_key, channel, template, language, payload, status, adapter, attempts, max_attempts, run_at_ms, lease_until_ms) =
        (t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9, t.10, t.11);
    Ok(Row {
        id,
        idempotency_key,
        channel,
        template,
        language,
        payload,
        status: Status::parse(&status)?,
        adapter,
        attempts,
        max_attempts,
        run_at_ms,
        lease_until_ms,
        last_error: t.12,
        created_at_ms: t.13,
        updated_at_ms: t.14,
        sent_at_ms: t.15,
    })
}

fn check_name(s: &str, what: &'static str) -> Result<()> {
    if s.is_empty() || s.chars().count() > NAME_CHARS_MAX || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(StoreError::Invalid(what));
    }
    Ok(())
}

/// Inserts a message in the caller's transaction. Returns false (and changes nothing) when a
/// message with the same idempotency key exists already, in whatever state.
///
/// # Errors
/// `Invalid` for an over-long key or name, a bad channel or an oversized payload; database errors.
pub async fn insert(tx: &mut Tx, new: &NewRow<'_>, now: UnixMillis) -> Result<bool> {
    if new.idempotency_key.is_empty()
        || new.idempotency_key.chars().count() > KEY_CHARS_MAX
        || new.idempotency_key.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid("notification key must be 1..=200 printable characters"));
    }
    if !matches!(new.channel, "email" | "sms") {
        return Err(StoreError::Invalid("notification channel must be email or sms"));
    }
    check_name(new.template, "notification template must be 1..=64 letters, digits, dots, dashes or underscores")?;
    check_name(new.language, "notification language must be 1..=64 letters, digits, dots, dashes or underscores")?;
    if new.payload.len() > PAYLOAD_BYTES_MAX || !(1..=100).contains(&new.max_attempts) {
        return Err(StoreError::Invalid("notification payload over 16 KiB or max_attempts outside 1..=100"));
    }
    let n = crate::on_tx!(tx, c => {
        sqlx::query(
            "INSERT INTO notifications (id, idempotency_key, channel, template, language, payload, status, attempts, max_attempts, \
             run_at_ms, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $8, $8) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(new.id)
        .bind(new.idempotency_key)
        .bind(new.channel)
        .bind(new.template)
        .bind(new.language)
        .bind(new.payload)
        .bind(new.max_attempts)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// The id of the message with this idempotency key, if any (read in the caller's transaction).
///
/// # Errors
/// Database errors.
pub async fn id_for_key(tx: &mut Tx, key: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = crate::on_tx!(tx, c => {
        sqlx::query_as("SELECT id FROM notifications WHERE idempotency_key = $1").bind(key).fetch_optional(c).await
    })?;
    Ok(row.map(|r| r.0))
}

/// # Errors
/// Database errors.
pub async fn get(db: &Db, id: &str) -> Result<Option<Row>> {
    let t: Option<RowTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM notifications WHERE id = $1"))).bind(id).fetch_optional(p).await
    })?;
    t.map(row).transpose()
}

/// Claims the oldest due pending message: `sending` until `now + lease_ms`, attempt counted,
/// `adapter` recorded (the channel's adapter: `email_adapter` or `sms_adapter`), committed at
/// once, so a crash after this leaves a trace that an attempt may have begun.
///
/// # Errors
/// Database errors.
pub async fn claim(db: &Db, email_adapter: &str, sms_adapter: &str, lease_ms: i64, now: UnixMillis) -> Result<Option<Row>> {
    let mut tx = db.begin().await?;
    let pick = match &tx {
        Tx::Postgres(_) => {
            "SELECT id FROM notifications WHERE status = 'pending' AND run_at_ms <= $1 ORDER BY run_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
        Tx::Sqlite(_) => "SELECT id FROM notifications WHERE status = 'pending' AND run_at_ms <= $1 ORDER BY run_at_ms, id LIMIT 1",
    };
    let t: Option<RowTuple> = crate::on_tx!(&mut tx, c => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE notifications SET status = 'sending', attempts = attempts + 1, lease_until_ms = $2, \
             adapter = CASE channel WHEN 'email' THEN $3 ELSE $4 END, updated_at_ms = $1 \
             WHERE id = ({pick}) RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(now.saturating_add(lease_ms))
        .bind(email_adapter)
        .bind(sms_adapter)
        .fetch_optional(c)
        .await
    })?;
    tx.commit().await?;
    t.map(row).transpose()
}

/// Messages left in `sending` past their lease (their worker died or hung), oldest first.
///
/// # Errors
/// A limit over `LIST_LIMIT_MAX`; database errors.
pub async fn expired(db: &Db, now: UnixMillis, limit: u32) -> Result<Vec<Row>> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(StoreError::Invalid("limit must be between 1 and 1000"));
    }
    let rows: Vec<RowTuple> = crate::on!(db, p => {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM notifications WHERE status = 'sending' AND lease_until_ms < $1 ORDER BY lease_until_ms, id LIMIT $2"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
    })?;
    rows.into_iter().map(row).collect()
}

/// Moves a message out of `sending` (attempt `attempt`) to `status`: `sent`, `pending` again at
/// `run_at` (a retry), `failed` or `unknown`, with an error code. Returns false when the attempt
/// is no longer the current one (another worker took the message over): nothing changed.
///
/// # Errors
/// `Invalid` for `sending` as the target; database errors.
pub async fn finish(
    db: &Db,
    id: &str,
    attempt: i32,
    status: Status,
    run_at: UnixMillis,
    error: Option<&str>,
    now: UnixMillis,
) -> Result<bool> {
    if status == Status::Sending {
        return Err(StoreError::Invalid("finish moves a message out of sending"));
    }
    let error: Option<String> = error.map(|e| e.chars().take(ERROR_CHARS_MAX).collect());
    let sent_at = (status == Status::Sent).then_some(now);
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE notifications SET status = $3, run_at_ms = $4, last_error = $5, lease_until_ms = NULL, updated_at_ms = $6, \
             sent_at_ms = COALESCE($7, sent_at_ms) WHERE id = $1 AND attempts = $2 AND status = 'sending'",
        )
        .bind(id)
        .bind(attempt)
        .bind(status.as_str())
        .bind(run_at)
        .bind(error.as_deref())
        .bind(now)
        .bind(sent_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(n == 1)
}

/// Lists messages, newest first, optionally in one state (no payloads).
///
/// # Errors
/// A limit over `LIST_LIMIT_MAX`; database errors.
pub async fn list(db: &Db, status: Option<Status>, limit: u32) -> Result<Vec<Info>> {
    if limit == 0 || limit > LIST_LIMIT_MAX {
        return Err(StoreError::Invalid("limit must be between 1 and 1000"));
    }
    type InfoTuple = (String, String, String, String, String, String, Option<String>, i32, i32, i64, Option<String>, i64, i64, Option<i64>);
    let rows: Vec<InfoTuple> = crate::on!(db, p => {
        sqlx::query_as(
            "SELECT id, idempotency_key, channel, template, language, status, adapter, attempts, max_attempts, run_at_ms, last_error, \
             created_at_ms, updated_at_ms, sent_at_ms FROM notifications WHERE ($1 IS NULL OR status = $1) ORDER BY created_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(status.map(Status::as_str))
        .bind(i64::from(limit))
        .fetch_all(p)
        .await
    })?;
    rows.into_iter()
        .map(|t| {
            Ok(Info {
                id: t.0,
                idempotency_key: t.1,
                channel: t.2,
                template: t.3,
                language: t.4,
                status: Status::parse(&t.5)?,
                adapter: t.6,
                attempts: t.7,
                max_attempts: t.8,
                run_at_ms: t.9,
                last_error: t.10,
                created_at_ms: t.11,
                updated_at_ms: t.12,
                sent_at_ms: t.13,
            })
        })
        .collect()
}

/// How many messages are in `status`.
///
/// # Errors
/// Database errors.
pub async fn count(db: &Db, status: Status) -> Result<i64> {
    let (n,): (i64,) = crate::on!(db, p => {
        sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE status = $1").bind(status.as_str()).fetch_one(p).await
    })?;
    Ok(n)
}

/// Puts a `failed` or `unknown` message back to `pending` with `more_attempts` fresh attempts
/// (the operator fixed the cause, or checked that an `unknown` one did not arrive). The attempt
/// count goes on rising rather than restarting, so it keeps fencing any stale worker.
///
/// # Errors
/// `Invalid` when there is no such message or it is in another state; database errors.
pub async fn redrive(db: &Db, id: &str, more_attempts: i32, now: UnixMillis) -> Result<()> {
    let n = crate::on!(db, p => {
        sqlx::query(
            "UPDATE notifications SET status = 'pending', max_attempts = attempts + $3, run_at_ms = $2, updated_at_ms = $2, \
             last_error = NULL WHERE id = $1 AND status IN ('failed', 'unknown')",
        )
        .bind(id)
        .bind(now)
        .bind(more_attempts.clamp(1, 100))
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    if n == 1 { Ok(()) } else { Err(StoreError::Invalid("no failed or unknown notification with this id")) }
}

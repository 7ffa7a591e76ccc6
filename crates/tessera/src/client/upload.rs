//! `tessera client sync` and `tessera client status`: uploading the queue with bounded retries,
//! and following sent packets on the server.
//!
//! Retry policy, per packet: connection failures, timeouts, 5xx and 429 are retried up to
//! `--max-attempts` (default [`ATTEMPTS_DEFAULT`], at most [`ATTEMPTS_MAX`]) with exponential
//! backoff from [`BACKOFF_BASE`] doubling to at most [`BACKOFF_MAX`] (a 429's or 503's
//! `Retry-After` in seconds is honoured within that cap); when a packet runs out of attempts
//! because the server cannot be reached, the run stops and everything stays queued. 202 moves
//! the packet to `sent/` with the server's answer. 401, and 403 `forbidden` (the token's role),
//! are problems of the client's credentials, not of the packet: the run stops and nothing moves.
//! 409 (another packet holds this RID on the server: a copied or restored client directory)
//! stays queued and is reported for an operator. Every other 4xx is a permanent refusal: the
//! packet moves to `refused/` with the HTTP status and the server's error code. Uploads are
//! idempotent on RID, so a run killed at any point is simply run again.

use super::dir::{self, ClientDir, QUEUE, REFUSED, SENT};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::Duration;
use tessera_store::now_ms;

pub const ATTEMPTS_DEFAULT: u32 = 5;
pub const ATTEMPTS_MAX: u32 = 20;
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One upload (5 MB over a slow link) or status request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest server answer read.
const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Most packets `status --refresh` asks about in one run.
const REFRESH_MAX: usize = 1000;

/// The API token: `TESSERA_CLIENT_TOKEN`, else the configured 0600 token file.
fn token(d: &ClientDir) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("TESSERA_CLIENT_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    match &d.config.token_file {
        Some(p) => dir::read_token_file(&d.resolve(p)),
        None => bail!("no API token: set TESSERA_CLIENT_TOKEN or give `client init --token-file FILE` (a 0600 file)"),
    }
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).timeout(REQUEST_TIMEOUT).build().context("cannot set up the HTTP client")
}

/// What one request came to.
enum Outcome {
    Answer(u16, Value, Option<u64>),
    /// Could not talk to the server; the text names the kind of failure, never a secret.
    Unreachable(String),
}

async fn read_answer(mut res: reqwest::Response) -> Outcome {
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let mut bytes = Vec::new();
    loop {
        match res.chunk().await {
            Ok(Some(c)) => {
                if bytes.len() + c.len() > ANSWER_BYTES_MAX {
                    break;
                }
                bytes.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => return Outcome::Unreachable(kind(&e)),
        }
    }
    Outcome::Answer(status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), retry_after)
}

fn kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed (is the server running and reachable?)".into()
    } else {
        "request failed".into()
    }
}

/// The wait before attempt `attempt + 1` (attempt counts from 1).
#[must_use]
pub fn backoff(attempt: u32, retry_after_s: Option<u64>) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    retry_after_s.map_or(exp, Duration::from_secs).min(BACKOFF_MAX)
}

fn retryable(status: u16) -> bool {
    // 408: the server's request timeout on a slow link.
    status == 408 || status == 429 || status >= 500
}

/// A run's tally, printed at the end.
#[derive(Debug, Default, serde::Serialize)]
struct Tally {
    sent: usize,
    refused: usize,
    conflict: usize,
    queued: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<String>,
}

/// `client sync`. Exit 0 when the queue is empty afterwards, 1 otherwise.
///
/// # Errors
/// A broken client directory or token, or I/O errors.
pub async fn sync(d: &ClientDir, max_attempts: u32, json_out: bool) -> anyhow::Result<std::process::ExitCode> {
    if max_attempts == 0 || max_attempts > ATTEMPTS_MAX {
        bail!("--max-attempts must be between 1 and {ATTEMPTS_MAX}");
    }
    let _lock = d.sync_lock()?;
    let token = token(d)?;
    let client = http()?;
    let url = format!("{}/v1/packets", d.config.server.trim_end_matches('/'));
    let queued = d.list(QUEUE)?;
    let mut t = Tally::default();
    'packets: for (i, rid) in queued.iter().enumerate() {
        let path = d.packet_path(QUEUE, rid);
        let bytes = match dir::read_limited(&path, d.config.packet_bytes_max as u64) {
            Ok(b) => b,
            // Moved by an earlier run in the meantime: nothing to do.
            Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => continue,
            Err(e) => return Err(e),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res =
                client.post(&url).bearer_auth(&token).header("content-type", "application/octet-stream").body(bytes.clone()).send().await;
            let outcome = match res {
                Ok(r) => read_answer(r).await,
                Err(e) => Outcome::Unreachable(kind(&e)),
            };
            let (retry, why, retry_after) = match outcome {
                Outcome::Answer(202, body, _) => {
                    d.settle(rid, SENT, &json!({"rid": rid, "sent_at_ms": now_ms(), "answer": body}))?;
                    t.sent += 1;
                    eprintln!("sent {rid}");
                    continue 'packets;
                }
                Outcome::Answer(status, body, retry_after) if retryable(status) => {
                    (true, format!("the server answered HTTP {status} ({})", code(&body)), retry_after)
                }
                Outcome::Answer(status @ 401, body, _) => {
                    t.stopped = Some(format!(
                        "the server refused the client's token (HTTP {status}, {}): fix the token; nothing moved",
                        code(&body)
                    ));
                    t.queued = queued.len() - i;
                    break 'packets;
                }
                Outcome::Answer(403, body, _) if code(&body) == "forbidden" => {
                    t.stopped =
                        Some("the token's role may not upload packets (HTTP 403, forbidden): use an operator or supervisor token".into());
                    t.queued = queued.len() - i;
                    break 'packets;
                }
                // The server does not know this machine (yet), or its centre is paused: a
                // matter for the administrator, not a fault of the packets, which stay queued.
                Outcome::Answer(403, body, _)
                    if matches!(code(&body).as_str(), "machine_unknown" | "machine_centre_mismatch" | "centre_inactive") =>
                {
                    t.stopped = Some(format!(
                        "the server does not accept this machine's packets now (HTTP 403, {}): ask the administrator \
                         (`tessera machine register`, `tessera centre set-status`); nothing moved",
                        code(&body)
                    ));
                    t.queued = queued.len() - i;
                    break 'packets;
                }
                Outcome::Answer(409, body, _) => {
                    eprintln!(
                        "conflict {rid}: the server holds another packet under this RID ({}); it stays queued for an operator",
                        code(&body)
                    );
                    t.conflict += 1;
                    continue 'packets;
                }
                Outcome::Answer(status, body, _) => {
                    let c = code(&body);
                    d.settle(
                        rid,
                        REFUSED,
                        &json!({"rid": rid, "refused_at_ms": now_ms(), "http_status": status, "code": c, "answer": body}),
                    )?;
                    eprintln!("refused {rid}: HTTP {status} {c}");
                    t.refused += 1;
                    continue 'packets;
                }
                Outcome::Unreachable(why) => (true, why, None),
            };
            if retry && attempt < max_attempts {
                let wait = backoff(attempt, retry_after);
                eprintln!("{rid}: {why}; attempt {attempt} of {max_attempts}, retrying in {} ms", wait.as_millis());
                tokio::time::sleep(wait).await;
                continue;
            }
            t.stopped = Some(format!("{why} after {attempt} attempts; the packets stay queued: run `tessera client sync` again later"));
            t.queued = queued.len() - i;
            break 'packets;
        }
    }
    t.queued += t.conflict;
    if let Some(s) = &t.stopped {
        eprintln!("{s}");
    }
    if json_out {
        println!("{}", serde_json::to_string(&t)?);
    } else {
        println!("sent {}, refused {}, still queued {} (conflicts {})", t.sent, t.refused, t.queued, t.conflict);
    }
    Ok(if t.queued == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn code(body: &Value) -> String {
    body["error"]["code"].as_str().unwrap_or("no_error_code").chars().take(64).collect()
}

/// `client status`: counts, refused packets with their codes, and with `refresh` what the server
/// says of each sent packet (stored back into its sidecar).
///
/// # Errors
/// A broken client directory, or (with `refresh`) no token.
pub async fn status(d: &ClientDir, refresh: bool, json_out: bool) -> anyhow::Result<std::process::ExitCode> {
    let queued = d.list(QUEUE)?;
    let sent = d.list(SENT)?;
    let refused = d.list(REFUSED)?;
    let mut refused_rows = Vec::new();
    for rid in &refused {
        let side: Value =
            dir::read_small(&d.sidecar_path(REFUSED, rid)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
        refused_rows.push(json!({"rid": rid, "http_status": side["http_status"], "code": side["code"]}));
    }
    let mut sent_rows = Vec::new();
    if refresh {
        let token = token(d)?;
        let client = http()?;
        for rid in sent.iter().take(REFRESH_MAX) {
            let url = format!("{}/v1/packets/{rid}", d.config.server.trim_end_matches('/'));
            let row = match client.get(&url).bearer_auth(&token).send().await {
                Ok(r) => match read_answer(r).await {
                    Outcome::Answer(200, body, _) => {
                        let side_path = d.sidecar_path(SENT, rid);
                        if let Ok(mut side) =
                            dir::read_small(&side_path).map_err(|_| ()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|_| ()))
                        {
                            // Kept without the UIN: the field machine holds no identifiers.
                            let mut kept = body.clone();
                            if let Some(o) = kept.as_object_mut() {
                                o.remove("uin");
                            }
                            side["server_status"] = kept;
                            side["refreshed_at_ms"] = now_ms().into();
                            dir::write_atomic(&side_path, serde_json::to_string_pretty(&side)?.as_bytes())?;
                        }
                        json!({"rid": rid, "status": body["status"], "stage": body["stage"], "reason": body["reason"], "uin": body["uin"]})
                    }
                    Outcome::Answer(s, body, _) => json!({"rid": rid, "error": format!("HTTP {s} {}", code(&body))}),
                    Outcome::Unreachable(why) => json!({"rid": rid, "error": why}),
                },
                Err(e) => json!({"rid": rid, "error": kind(&e)}),
            };
            sent_rows.push(row);
        }
    } else {
        sent_rows = sent.iter().map(|rid| json!({"rid": rid})).collect();
    }
    let out = json!({
        "queued": queued.len(),
        "sent": sent.len(),
        "refused": refused.len(),
        "queue": queued,
        "sent_packets": sent_rows,
        "refused_packets": refused_rows,
    });
    if json_out {
        println!("{out}");
    } else {
        println!("queued {}, sent {}, refused {}", queued.len(), sent.len(), refused.len());
        for r in &sent_rows {
            let field = |k: &str| r[k].as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
            if refresh {
                println!(
                    "sent     {}  status {}  stage {}  uin {}{}",
                    field("rid"),
                    field("status"),
                    field("stage"),
                    field("uin"),
                    r["error"].as_str().map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
        }
        for r in &refused_rows {
            println!("refused  {}  HTTP {}  {}", r["rid"].as_str().unwrap_or("-"), r["http_status"], r["code"].as_str().unwrap_or("-"));
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_honours_retry_after_and_is_capped() {
        assert_eq!(backoff(1, None), Duration::from_millis(500));
        assert_eq!(backoff(2, None), Duration::from_secs(1));
        assert_eq!(backoff(4, None), Duration::from_secs(4));
        assert_eq!(backoff(30, None), BACKOFF_MAX);
        assert_eq!(backoff(1, Some(3)), Duration::from_secs(3));
        assert_eq!(backoff(1, Some(3600)), BACKOFF_MAX);
        assert!(retryable(408) && retryable(429) && retryable(500) && retryable(503));
        assert!(!retryable(400) && !retryable(403) && !retryable(409));
    }
}

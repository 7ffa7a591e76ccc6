//! The audit log: append-only and hash-chained. Each entry's hash commits to its fields and to
//! the previous entry's hash, so altering, removing, inserting or reordering any entry breaks
//! the chain at that entry. At every multiple of `CHECKPOINT_EVERY` the audit key signs the
//! chain hash (and `verify` requires each of those checkpoints), and housekeeping signs the head
//! between them, so an attacker who rewrites the chain and recomputes every hash is caught at
//! the next checkpoint. What no in-database scheme catches: a rewrite of the entries after the
//! last checkpoint together with the head; export checkpoints elsewhere to close that. Entries name actors, actions and record ids; never PII.
//!
//! Entry hash (format `tessera-audit-1`, hard to change): SHA-256 of
//! `"tessera-audit-1" 0x00 ‖ seq (u64 BE) ‖ at_ms (i64 BE) ‖ for each of actor, action, target,
//! outcome, request_id: len (u32 BE) ‖ UTF-8 ‖ prev_hash (32 bytes)`; the first entry's
//! prev_hash is 32 zero bytes. A checkpoint signs `"tessera-audit-checkpoint-1" 0x00 ‖ seq ‖ hash`.

use crate::Result;
use tessera_crypto::{KeyId, Keystore, Purpose, digest::sha256};
use tessera_store::audit::{self, AuditRow, CheckpointRow};
use tessera_store::{Db, Tx, UnixMillis};

/// Entries between signed checkpoints.
pub const CHECKPOINT_EVERY: i64 = 1000;
/// Problems `verify` lists before it stops listing (it still counts them all).
pub const PROBLEMS_SHOWN_MAX: usize = 100;
const PAGE: i64 = 5000;

/// What happened, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub actor: String,
    /// `identity.create`, `identity.read`, `identity.update`, `identity.erase`, `token.create`, …
    pub action: &'static str,
    /// The record id acted on (never a UIN), or empty.
    pub target: String,
    /// `ok`, or the stable error code.
    pub outcome: String,
    pub request_id: String,
}

fn entry_hash(seq: i64, at_ms: UnixMillis, e: &Event, prev: &[u8]) -> [u8; 32] {
    hash_fields(seq, at_ms, [&e.actor, e.action, &e.target, &e.outcome, &e.request_id], prev)
}

fn row_hash(r: &AuditRow) -> [u8; 32] {
    hash_fields(r.seq, r.at_ms, [&r.actor, &r.action, &r.target, &r.outcome, &r.request_id], &r.prev_hash)
}

fn hash_fields(seq: i64, at_ms: UnixMillis, fields: [&str; 5], prev: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(b"tessera-audit-1\0");
    buf.extend_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(&at_ms.to_be_bytes());
    for f in fields {
        buf.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(f.as_bytes());
    }
    buf.extend_from_slice(prev);
    sha256(&[&buf])
}

fn checkpoint_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut m = b"tessera-audit-checkpoint-1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// Appends events in the caller's transaction (so an action and its audit entry commit or roll
/// back together), and signs a checkpoint when the chain crosses a multiple of
/// `CHECKPOINT_EVERY`.
///
/// # Errors
/// Database or signing errors.
pub async fn append(tx: &mut Tx, ks: &dyn Keystore, events: &[Event], now: UnixMillis) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut seq, mut prev) = audit::lock_head(tx).await?;
    let mut rows = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let hash = entry_hash(seq, now, e, &prev);
        rows.push(AuditRow {
            seq,
            at_ms: now,
            actor: e.actor.clone(),
            action: e.action.to_owned(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            request_id: e.request_id.clone(),
            prev_hash: std::mem::take(&mut prev),
            hash: hash.to_vec(),
        });
        prev = hash.to_vec();
    }
    audit::append(tx, &rows).await?;
    // A checkpoint at every multiple of CHECKPOINT_EVERY, exactly: `verify` requires each one, so
    // deleting checkpoints to hide a rewritten chain is itself reported.
    for r in rows.iter().filter(|r| r.seq % CHECKPOINT_EVERY == 0) {
        checkpoint_at(tx, ks, r.seq, &r.hash, now).await?;
    }
    Ok(())
}

async fn checkpoint_at(tx: &mut Tx, ks: &dyn Keystore, seq: i64, hash: &[u8], now: UnixMillis) -> Result<()> {
    let (key, signature) = ks.sign(Purpose::Audit, &checkpoint_message(seq, hash))?;
    audit::insert_checkpoint(tx, &CheckpointRow { seq, hash: hash.to_vec(), key_id: key.to_string(), signature, at_ms: now }).await?;
    Ok(())
}

/// Signs a checkpoint at the current head unless one is there already (housekeeping calls this
/// so the newest entries do not wait for the next multiple of `CHECKPOINT_EVERY`). Returns the
/// seq checkpointed, if any.
///
/// # Errors
/// Database or signing errors.
pub async fn checkpoint_now(db: &Db, ks: &dyn Keystore, now: UnixMillis) -> Result<Option<i64>> {
    let mut tx = db.begin().await?;
    let (seq, hash) = audit::lock_head(&mut tx).await?;
    if seq == 0 || audit::last_checkpoint_seq(&mut tx).await? >= seq {
        return Ok(None);
    }
    checkpoint_at(&mut tx, ks, seq, &hash, now).await?;
    tx.commit().await?;
    Ok(Some(seq))
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub entries: i64,
    pub checkpoints: usize,
    /// The last seq covered by a verified signed checkpoint.
    pub signed_through: i64,
    /// Every problem found, naming the entry (`entry 17 …`), at most `PROBLEMS_SHOWN_MAX`.
    pub problems: Vec<String>,
    pub problem_count: usize,
}

impl Verification {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_SHOWN_MAX {
            self.problems.push(p);
        }
    }
}

/// Walks the whole chain and every checkpoint. Reports each altered entry (its stored fields no
/// longer hash to its hash), each broken link (an entry removed, inserted or reordered before
/// it), each gap in the numbering, checkpoints whose signature or hash does not match, and a
/// head that disagrees with the last entry (entries removed from the end).
///
/// # Errors
/// Database errors (problems in the data are reported in the result, not as errors).
pub async fn verify(db: &Db, ks: &dyn Keystore) -> Result<Verification> {
    let mut v = Verification::default();
    let checkpoints = audit::checkpoints(db).await?;
    v.checkpoints = checkpoints.len();
    let mut cps = checkpoints.iter().peekable();
    let mut expected_seq = 1;
    let mut prev: Vec<u8> = vec![0; 32];
    let mut after = 0;
    loop {
        let page = audit::read(db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.entries += 1;
            if r.seq != expected_seq {
                v.problem(format!("entries {expected_seq}..{} are missing (removed)", r.seq - 1));
            } else if r.prev_hash != prev {
                v.problem(format!(
                    "entry {}: link to the previous entry is broken (an entry before it was removed, inserted or reordered)",
                    r.seq
                ));
            }
            let computed = row_hash(r);
            if computed[..] != r.hash[..] {
                v.problem(format!("entry {} was altered: its contents do not match its hash", r.seq));
            }
            let mut signed_here = false;
            while let Some(cp) = cps.next_if(|cp| cp.seq <= r.seq) {
                signed_here |= cp.seq == r.seq;
                check_checkpoint(&mut v, ks, cp, (cp.seq == r.seq).then_some(&computed[..]));
            }
            if r.seq % CHECKPOINT_EVERY == 0 && !signed_here {
                v.problem(format!("checkpoint at entry {} is missing (removed to hide a rewritten chain?)", r.seq));
            }
            prev = r.hash.clone();
            expected_seq = r.seq + 1;
        }
    }
    for cp in cps {
        v.problem(format!("checkpoint at entry {} refers to entries that are missing", cp.seq));
    }
    let (head_seq, head_hash) = audit::head(db).await?;
    if head_seq != expected_seq - 1 {
        v.problem(format!("the log ends at entry {} but its head says {head_seq}: entries were removed from the end", expected_seq - 1));
    } else if head_seq > 0 && head_hash != prev {
        v.problem(format!("entry {head_seq}: the head's hash does not match the last entry"));
    }
    Ok(v)
}

fn check_checkpoint(v: &mut Verification, ks: &dyn Keystore, cp: &CheckpointRow, computed: Option<&[u8]>) {
    let sig_ok = KeyId::parse(&cp.key_id)
        .ok()
        .filter(|k| k.purpose == Purpose::Audit)
        .is_some_and(|k| ks.verify(k, &checkpoint_message(cp.seq, &cp.hash), &cp.signature).is_ok());
    if !sig_ok {
        v.problem(format!("checkpoint at entry {}: signature does not verify", cp.seq));
        return;
    }
    match computed {
        Some(h) if h == &cp.hash[..] => v.signed_through = cp.seq,
        Some(_) => v.problem(format!(
            "checkpoint at entry {}: the chain no longer matches what was signed (entries up to {} were rewritten)",
            cp.seq, cp.seq
        )),
        None => v.problem(format!("checkpoint at entry {}: that entry is missing", cp.seq)),
    }
}

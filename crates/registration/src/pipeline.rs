//! The upload and the processing pipeline: each stage is a `packet_stage` job that reads the
//! packet, does its work, and commits its outcome together with the next stage's job, so a
//! crash (kill -9) anywhere leaves the packet at a stage that runs again. Stages are idempotent:
//! a stage that finds the packet already past it does nothing, and the side effects outside the
//! transaction (ABIS insert and identify) are idempotent requests keyed by the packet.
//!
//! Stages: `validate` (decrypt, signatures, hashes, staff, schema, biometric quality, flow
//! rules) → `bio_dedupe` (insert this registration's templates into the ABIS, identify them
//! against everyone else) → `decide` → `issue` (UIN from the pool and the identity written, in
//! one transaction with the packet's final state). A packet's own faults are final outcomes
//! (`rejected` with a code in its history), not job failures; job failures are storage or ABIS
//! trouble and are retried, then dead-lettered for an operator.
//!
//! Concurrent duplicates: two registrations of one person in flight at once may each find the
//! other. The rule that keeps them from both getting a UIN: a packet proceeds past an in-flight
//! candidate only if the candidate arrived later and has itself recorded this packet as a
//! candidate its `decide` heeds (so the later one waits for this one; see `counts`);
//! otherwise it waits until the candidate is final. Two packets never wait for each other: of two that found each other, the earlier one
//! proceeds, and a packet the other did not find does not wait for it.

use crate::packet::{self, FileKind, Flow, Outer, Packet, PacketError};
use crate::{RegConfig, RegError, Result};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_abis::Engine;
use tessera_biometrics::cbeff;
use tessera_biometrics::templates::TemplateSet;
use tessera_core::schema::FieldType;
use tessera_core::{Rid, Uin};
use tessera_credentials::{CredentialError, Credentials};
use tessera_crypto::Purpose;
use tessera_crypto::digest::sha256;
use tessera_demographics::Matcher;
use tessera_idrepo::records::{Change, NewRecord, today};
use tessera_idrepo::{Actor, IdRepo, RepoError};
use tessera_notify::{NewNotification, Notifier, NotifyError};
use tessera_store::jobs::{self, JobKind};
use tessera_store::registration::{self as rows, CandidateRow, NewPacket, PacketRow, PacketUpdate};
use tessera_store::{BlobKey, StoreError, Tx, UnixMillis};

/// How long a packet waits before looking again at an in-flight candidate.
pub const WAIT_MS: i64 = 2000;
/// … and at a candidate held in adjudication (a person decides; that takes a while).
pub const WAIT_ADJUDICATION_MS: i64 = 60_000;

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Validate,
    DemoDedupe,
    BioDedupe,
    Decide,
    Issue,
    /// Nothing left to run.
    Done,
}

impl Stage {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::DemoDedupe => "demo_dedupe",
            Stage::BioDedupe => "bio_dedupe",
            Stage::Decide => "decide",
            Stage::Issue => "issue",
            Stage::Done => "done",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Stage::Validate, Stage::DemoDedupe, Stage::BioDedupe, Stage::Decide, Stage::Issue, Stage::Done]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// What running a stage came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageRun {
    /// Done (the next stage, if any, is queued).
    Done,
    /// Run this stage again after this many milliseconds (waiting for another packet).
    Later(i64),
}

/// Final states: nothing more happens to the packet.
const FINAL: &[&str] = &["issued", "updated", "found", "duplicate", "rejected"];

pub(crate) fn is_final(status: &str) -> bool {
    FINAL.contains(&status)
}

/// What the upload answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub rid: String,
    pub status: String,
    /// True when this exact packet had been uploaded before (the upload is idempotent).
    pub already: bool,
}

/// A packet's status as shown to its operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub rid: String,
    pub status: String,
    pub stage: String,
    pub flow: Option<String>,
    pub reason: Option<String>,
    pub received_at_ms: UnixMillis,
    pub updated_at_ms: UnixMillis,
    /// The UIN issued (or found, or duplicated), once there is one.
    pub uin: Option<String>,
    pub history: Vec<Event>,
}

/// One entry of a packet's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub stage: String,
    pub outcome: String,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub at_ms: UnixMillis,
}

/// The registration service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registration {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    repo: IdRepo,
    pub(crate) abis: Arc<Engine>,
    cfg: RegConfig,
    pub(crate) matcher: Matcher,
    notifier: Option<Notifier>,
    credentials: Option<Credentials>,
    opened: Opened,
}

/// Packets this process opened recently, so that a registration's later stages, and other
/// registrations comparing themselves with it, need not read, verify and decrypt it again (an
/// RSA-OAEP unwrap and an Ed25519 verification each time; four stages open a packet, and every
/// demographic candidate still in the pipeline is opened too).
///
/// An entry is the packet as `open` returned it, keyed by its stored blob (written once, never
/// changed) and kept only with the machine key it was verified under: a machine whose key
/// changed since is looked up and verified afresh. Bounded: `OPENED_MAX` packets, at most
/// `OPENED_BYTES_MAX` of files, each for `OPENED_TTL_MS`; dropped when its registration is final.
/// The clear text is what the stage holds in memory anyway, held a little longer; it is never
/// written anywhere.
#[derive(Debug, Default)]
struct Opened {
    entries: std::sync::Mutex<BTreeMap<String, OpenedEntry>>,
}

#[derive(Debug)]
struct OpenedEntry {
    machine_key: Vec<u8>,
    at: std::time::Instant,
    bytes: usize,
    packet: Arc<Packet>,
}

/// Most packets kept opened.
const OPENED_MAX: usize = 256;
/// Most bytes of packet files kept opened, all packets together.
const OPENED_BYTES_MAX: usize = 64 << 20;
/// How long an opened packet is kept.
const OPENED_TTL_MS: u64 = 120_000;

impl Opened {
    fn get(&self, blob: &str, machine_key: &[u8]) -> Option<Arc<Packet>> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = entries.get(blob)?;
        if e.at.elapsed() > std::time::Duration::from_millis(OPENED_TTL_MS) {
            entries.remove(blob);
            return None;
        }
        // Public keys, not secrets: an ordinary comparison.
        (e.machine_key == machine_key).then(|| Arc::clone(&e.packet))
    }

    fn put(&self, blob: &str, machine_key: &[u8], packet: Arc<Packet>) {
        let bytes: usize = packet.files.values().map(Vec::len).sum();
        if bytes > OPENED_BYTES_MAX / 4 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, e| e.at.elapsed() <= std::time::Duration::from_millis(OPENED_TTL_MS));
        let mut held: usize = entries.values().map(|e| e.bytes).sum();
        while !entries.is_empty() && (entries.len() >= OPENED_MAX || held + bytes > OPENED_BYTES_MAX) {
            let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) else { break };
            if let Some(e) = entries.remove(&oldest) {
                held -= e.bytes;
            }
        }
        entries.insert(blob.to_owned(), OpenedEntry { machine_key: machine_key.to_vec(), at: std::time::Instant::now(), bytes, packet });
    }

    fn forget(&self, blob: &str) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(blob);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// The outcome of a check that can refuse a packet: `Err(code, detail)` is final.
type Verdict<T> = std::result::Result<T, (&'static str, String)>;

impl Registration {
    /// With the demographic de-duplicator's default configuration.
    #[must_use]
    pub fn new(repo: IdRepo, abis: Arc<Engine>, cfg: RegConfig) -> Self {
        Self::with_parts(repo, abis, cfg, Matcher::default(), None, None)
    }

    /// With a demographic de-duplicator configured for the country's languages and names, and
    /// the notifier that tells residents of their registration's outcome (none: nobody is told),
    /// and the credential issuer that gives each issued or updated identity its verifiable
    /// credential (none: no credential).
    #[must_use]
    pub fn with_parts(
        repo: IdRepo,
        abis: Arc<Engine>,
        cfg: RegConfig,
        matcher: Matcher,
        notifier: Option<Notifier>,
        credentials: Option<Credentials>,
    ) -> Self {
        Registration { inner: Arc::new(Inner { repo, abis, cfg, matcher, notifier, credentials, opened: Opened::default() }) }
    }

    #[must_use]
    pub fn config(&self) -> &RegConfig {
        &self.inner.cfg
    }

    pub(crate) fn repo(&self) -> &IdRepo {
        &self.inner.repo
    }

    /// Accepts an uploaded packet: checks its RID, machine and outer signature without
    /// decrypting it, stores the file and queues `validate` in one transaction. Idempotent on
    /// RID: the same bytes again are accepted again; other bytes under the same RID are refused.
    ///
    /// # Errors
    /// `Packet` (malformed, too large, bad signature), `MachineUnknown`, `MachineRevoked`,
    /// `MachineCentre`, `CentreInactive`, `PacketConflict`; storage errors.
    pub async fn upload(&self, actor: &Actor, bytes: Bytes, now: UnixMillis) -> Result<Accepted> {
        let outer = Outer::parse(&bytes, self.inner.cfg.packet_bytes_max)?;
        let rid = outer.rid;
        let machine = self.machine_key(&rid).await?;
        outer.verify(&machine)?;
        let digest = sha256(&[&bytes]).to_vec();
        let db = self.repo().db();
        if let Some(existing) = rows::packet(db, &rid.to_string()).await? {
            return same_packet(&existing, &digest);
        }
        let blob = format!("packets/{rid}.{}", packet::EXTENSION);
        self.repo().blobs().put(&BlobKey::parse(&blob)?, bytes.clone()).await?;
        let new = NewPacket {
            rid: rid.to_string(),
            digest: digest.clone(),
            blob,
            centre_id: rid.centre().to_string(),
            machine_id: rid.machine().to_string(),
            uploaded_by: actor.id.clone(),
            stage: Stage::Validate.as_str().into(),
        };
        let mut tx = db.begin().await?;
        match rows::insert_packet(&mut tx, &new, now).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => {
                drop(tx);
                let existing = rows::packet(db, &new.rid).await?.ok_or(RegError::NotFound)?;
                return same_packet(&existing, &digest);
            }
            Err(e) => return Err(e.into()),
        }
        rows::add_event(&mut tx, &new.rid, "upload", "accepted", None, None, now).await?;
        queue(&mut tx, &new.rid, Stage::Validate, "", now).await?;
        tessera_idrepo::audit::append(&mut tx, &**self.repo().keystore(), &[actor.event("packet.upload", &new.rid, "ok")], now).await?;
        tx.commit().await?;
        Ok(Accepted { rid: new.rid, status: "processing".into(), already: false })
    }

    /// The public key of the machine a RID names, if it may upload.
    async fn machine_key(&self, rid: &Rid) -> Result<Vec<u8>> {
        let db = self.repo().db();
        let m = rows::machine(db, &rid.machine().to_string()).await?.ok_or(RegError::MachineUnknown)?;
        if m.status != "active" {
            return Err(RegError::MachineRevoked);
        }
        if m.centre_id != rid.centre().to_string() {
            return Err(RegError::MachineCentre);
        }
        let centre = rows::centre(db, &m.centre_id).await?.ok_or(RegError::CentreInactive)?;
        if centre.status != "active" {
            return Err(RegError::CentreInactive);
        }
        Ok(m.public_key)
    }

    /// A packet's status and history. The UIN is shown once issued.
    ///
    /// # Errors
    /// `NotFound`; storage and repository errors.
    pub async fn status(&self, rid: &str) -> Result<Status> {
        let db = self.repo().db();
        let row = rows::packet(db, rid).await?.ok_or(RegError::NotFound)?;
        let uin = match (&row.identity_id, row.status.as_str()) {
            (Some(id), "issued" | "updated" | "found" | "duplicate") => match self.repo().uin_of(id).await {
                Ok(u) => Some(u.expose().to_owned()),
                Err(RepoError::Gone) => None,
                Err(e) => return Err(e.into()),
            },
            _ => None,
        };
        let history = rows::events(db, rid)
            .await?
            .into_iter()
            .map(|e| Event { stage: e.stage, outcome: e.outcome, code: e.code, detail: e.detail, at_ms: e.at_ms })
            .collect();
        Ok(Status {
            rid: row.rid,
            status: row.status,
            stage: row.stage,
            flow: row.flow,
            reason: row.reason_code,
            received_at_ms: row.received_at_ms,
            updated_at_ms: row.updated_at_ms,
            uin,
            history,
        })
    }

    /// Runs the stage a `packet_stage` job names.
    ///
    /// # Errors
    /// Storage, keystore and ABIS trouble (the job is retried); never the packet's own faults.
    pub async fn run_stage(&self, payload: &Value, now: UnixMillis) -> Result<StageRun> {
        let rid = payload["rid"].as_str().ok_or(RegError::BadRequest("payload without rid"))?;
        let stage = payload["stage"].as_str().and_then(Stage::parse).ok_or(RegError::BadRequest("payload without a known stage"))?;
        let row = rows::packet(self.repo().db(), rid).await?.ok_or(RegError::NotFound)?;
        if is_final(&row.status) {
            self.inner.opened.forget(&row.blob);
        }
        if stage == Stage::Done && is_final(&row.status) {
            // A registration that gave no identity of its own is nobody's candidate any more;
            // an issued or updated one stays in the gallery as that person.
            if matches!(row.status.as_str(), "duplicate" | "rejected" | "found") {
                self.delete_reference(&row, now).await?;
            }
            self.credential(&row, now).await?;
            self.notify(&row, now).await?;
            return Ok(StageRun::Done);
        }
        if is_final(&row.status) || row.stage != stage.as_str() {
            // Delivered again after the stage committed: nothing to do.
            return Ok(StageRun::Done);
        }
        if stage == Stage::Decide {
            // The one stage that needs no decryption.
            return self.decide(&row, now).await;
        }
        let opened = match self.open(&row).await? {
            Ok(p) => p,
            Err((code, detail)) => {
                self.reject(&row, stage, code, &detail, now).await?;
                return Ok(StageRun::Done);
            }
        };
        match stage {
            Stage::Validate => self.validate(&row, &opened, now).await,
            Stage::DemoDedupe => self.demo_dedupe(&row, &opened, now).await,
            Stage::BioDedupe => self.bio_dedupe(&row, &opened, now).await,
            Stage::Issue => self.issue(&row, &opened, now).await,
            // Run above.
            Stage::Decide | Stage::Done => Ok(StageRun::Done),
        }
    }

    /// Reads, verifies and decrypts a stored packet (or takes it from the packets this process
    /// opened recently, see `Opened`). `Ok(Err)` is the packet's own fault.
    pub(crate) async fn open(&self, row: &PacketRow) -> Result<Verdict<Arc<Packet>>> {
        let key = match rows::machine(self.repo().db(), &row.machine_id).await? {
            Some(m) => m.public_key,
            None => return Ok(Err((RegError::MachineUnknown.code(), String::new()))),
        };
        if let Some(p) = self.inner.opened.get(&row.blob, &key) {
            return Ok(Ok(p));
        }
        let bytes = self.repo().blobs().get(&BlobKey::parse(&row.blob)?).await?;
        let outer = match Outer::parse(&bytes, self.inner.cfg.packet_bytes_max) {
            Ok(o) => o,
            Err(e) => return Ok(Err((e.code(), String::new()))),
        };
        if let Err(e) = outer.verify(&key) {
            return Ok(Err((e.code(), String::new())));
        }
        let inner = match self.repo().keystore().hybrid_decrypt(Purpose::Registration, outer.payload) {
            Ok(p) => zeroize::Zeroizing::new(p),
            Err(tessera_crypto::CryptoError::Decrypt) => return Ok(Err((PacketError::Decrypt.code(), String::new()))),
            Err(e) => return Err(e.into()),
        };
        Ok(match packet::open_inner(&inner, &outer.rid, &key) {
            Ok(p) => {
                let p = Arc::new(p);
                if !is_final(&row.status) {
                    self.inner.opened.put(&row.blob, &key, Arc::clone(&p));
                }
                Ok(p)
            }
            Err(e) => Err((e.code(), String::new())),
        })
    }

    async fn validate(&self, row: &PacketRow, p: &Packet, now: UnixMillis) -> Result<StageRun> {
        match self.check(row, p, now).await? {
            Ok((target, has_bio)) => {
                let mut tx = self.repo().db().begin().await?;
                if !still_at(&mut tx, &row.rid, Stage::Validate).await? {
                    return Ok(StageRun::Done);
                }
                // An update's identity is known from here on (`decide` needs it, not the packet).
                // So is the ABIS reference, before the templates are inserted under it: another
                // registration's search that finds them must be able to name this packet, even
                // while this one's own search is still running (else each of two registrations
                // of one person in flight at once could miss the other).
                let reference = has_bio.then(|| abis_ref(&row.rid));
                let u = PacketUpdate {
                    stage: Some(Stage::DemoDedupe.as_str()),
                    flow: Some(p.manifest.flow.as_str()),
                    identity_id: target.as_deref(),
                    abis_ref: reference.as_deref(),
                    ..Default::default()
                };
                rows::update_packet(&mut tx, &row.rid, &u, now).await?;
                rows::add_event(&mut tx, &row.rid, "validate", "passed", None, None, now).await?;
                queue(&mut tx, &row.rid, Stage::DemoDedupe, "", now).await?;
                tx.commit().await?;
                Ok(StageRun::Done)
            }
            Err((code, detail)) => {
                self.reject(row, Stage::Validate, code, &detail, now).await?;
                Ok(StageRun::Done)
            }
        }
    }

    /// Everything about a packet that decides whether it can be processed at all. For an
    /// update, the identity it names; and whether it carries usable biometrics.
    async fn check(&self, row: &PacketRow, p: &Packet, now: UnixMillis) -> Result<Verdict<(Option<String>, bool)>> {
        let m = &p.manifest;
        let db = self.repo().db();
        if !rows::is_staff(db, &row.centre_id, &m.operator, "operator").await?
            && !rows::is_staff(db, &row.centre_id, &m.operator, "supervisor").await?
        {
            return Ok(Err(("operator_not_assigned", String::new())));
        }
        match &m.supervisor {
            Some(s) if !rows::is_staff(db, &row.centre_id, s, "supervisor").await? => {
                return Ok(Err(("supervisor_not_assigned", String::new())));
            }
            None if self.inner.cfg.require_supervisor => return Ok(Err(("supervisor_required", String::new()))),
            _ => {}
        }
        let record: Value = match serde_json::from_slice(&p.files[packet::IDENTITY_FILE]) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Ok(Err(("identity_not_json", String::new()))),
        };
        // An update carries only the fields it changes: the repository validates the patched
        // record when it applies it. Every other flow carries a whole record.
        if m.flow != Flow::Update
            && let Err(errors) = self.repo().schema().validate(&record, today(now))
        {
            let detail: Vec<String> = errors.iter().map(|e| format!("{}:{}", e.path, e.code.as_str())).collect();
            return Ok(Err(("schema_invalid", detail.join(","))));
        }
        // Every document or biometric field names a file of the right kind.
        for spec in self.repo().schema().fields() {
            let want = match spec.kind {
                FieldType::Document => FileKind::Document,
                FieldType::Biometric => FileKind::Biometrics,
                _ => continue,
            };
            if let Some(r) = record.get(&spec.id).and_then(|v| v.get("ref")).and_then(Value::as_str)
                && !p.manifest.files.iter().any(|f| f.name == r && f.kind == want)
            {
                return Ok(Err(("packet_file_missing", spec.id.clone())));
            }
        }
        let has_bio = match self.check_biometrics(p) {
            Ok(set) => set.is_some(),
            Err(v) => return Ok(Err(v)),
        };
        if !p.manifest.exceptions.is_empty() && !p.manifest.files.iter().any(|f| f.kind == FileKind::ExceptionPhoto) {
            return Ok(Err(("exception_photo_missing", String::new())));
        }
        match m.flow {
            Flow::New | Flow::Lost if !has_bio && m.exceptions.is_empty() => return Ok(Err(("biometrics_missing", String::new()))),
            // A lost-UIN search is biometric; an update proves by biometrics whose record it changes.
            Flow::Lost | Flow::Update if !has_bio => return Ok(Err(("biometrics_missing", String::new()))),
            Flow::Child => {
                let born = record.get("dateOfBirth").and_then(Value::as_str).and_then(parse_date);
                let Some(born) = born else { return Ok(Err(("date_of_birth_missing", String::new()))) };
                if age_years(born, today(now)) >= self.inner.cfg.child_age_years {
                    return Ok(Err(("child_too_old", String::new())));
                }
                if let Err(v) = self.existing_uin(m.guardian_uin.as_deref(), now).await? {
                    return Ok(Err(v));
                }
            }
            Flow::Update => {
                return Ok(self.existing_uin(m.uin.as_deref(), now).await?.map(|id| (Some(id), has_bio)));
            }
            _ => {}
        }
        Ok(Ok((None, has_bio)))
    }

    /// The biometrics file, when there is one, parses, yields templates (returned), and every
    /// record's quality reaches the minimum.
    fn check_biometrics(&self, p: &Packet) -> Verdict<Option<TemplateSet>> {
        let Some(file) = p.manifest.files.iter().find(|f| f.kind == FileKind::Biometrics) else { return Ok(None) };
        let birs = cbeff::parse(&p.files[&file.name]).map_err(|_| ("biometrics_invalid", String::new()))?;
        for (i, b) in birs.iter().enumerate() {
            if let Some(q) = &b.bdb_info.quality {
                let low = match &q.score {
                    cbeff::QualityScore::Score(s) => *s < self.inner.cfg.quality_min,
                    cbeff::QualityScore::CalculationFailed(_) => true,
                };
                if low {
                    return Err(("biometric_quality_low", format!("record {i}")));
                }
            }
        }
        TemplateSet::from_birs(&birs).map(Some).map_err(|e| ("biometrics_unusable", e.to_string()))
    }

    /// A UIN that must name a living identity here.
    async fn existing_uin(&self, uin: Option<&str>, now: UnixMillis) -> Result<Verdict<String>> {
        let Some(uin) = uin.and_then(|u| Uin::parse_with(u, self.repo().rules()).ok()) else {
            return Ok(Err(("uin_invalid", String::new())));
        };
        match self.repo().get(&Actor::system(), &uin, now).await {
            Ok(identity) => Ok(Ok(identity.id)),
            Err(RepoError::NotFound | RepoError::Gone) => Ok(Err(("uin_not_found", String::new()))),
            Err(e) => Err(e.into()),
        }
    }

    async fn bio_dedupe(&self, row: &PacketRow, p: &Packet, now: UnixMillis) -> Result<StageRun> {
        let mut found = Vec::new();
        let set = templates(p);
        let outcome = match &set {
            None => "skipped",
            Some(set) => {
                let reference = row.abis_ref.clone().unwrap_or_else(|| abis_ref(&row.rid));
                let answer = self.inner.abis.insert_set(&format!("{reference}-insert"), &reference, set, now).await;
                if answer.return_value != "1" {
                    return Err(RegError::Abis(answer.failure_reason.unwrap_or_default()));
                }
                let answer = self.inner.abis.identify_reference(&format!("{reference}-identify"), &reference, now).await;
                let Some(list) = answer.candidate_list.filter(|_| answer.return_value == "1") else {
                    return Err(RegError::Abis(answer.failure_reason.unwrap_or_default()));
                };
                let refs: Vec<String> = list.candidates.iter().map(|c| c.reference_id.clone()).collect();
                let by_ref = packets_by_abis_ref(self.repo().db(), &refs).await?;
                // Without the engine's threshold, nothing is certain enough to decide unseen.
                let matched = list.analytics.get("matchThreshold").and_then(Value::as_f64).unwrap_or(f64::INFINITY);
                let certain = matched + f64::from(self.inner.cfg.auto_duplicate_decades);
                for c in &list.candidates {
                    // A reference that is no packet's (a gallery filled another way) names nobody.
                    let Some(other) = by_ref.get(&c.reference_id) else { continue };
                    let evidence = c.analytics.get("evidence").and_then(Value::as_f64).unwrap_or(0.0);
                    let decision = match c.analytics.get("decision").and_then(Value::as_str) {
                        Some("no_match") => continue,
                        Some("match") if evidence >= certain => "match",
                        // The engine's match below certainty, and its own adjudication band.
                        _ => "review",
                    };
                    let detail = serde_json::to_string(
                        &c.modalities.iter().map(|m| json!({"type": m.biometric_type, "analytics": m.analytics})).collect::<Vec<_>>(),
                    )
                    .unwrap_or_default();
                    found.push(CandidateRow {
                        candidate_rid: other.clone(),
                        source: "bio".into(),
                        score: evidence,
                        decision: decision.into(),
                        detail,
                    });
                }
                "searched"
            }
        };
        let mut tx = self.repo().db().begin().await?;
        if !still_at(&mut tx, &row.rid, Stage::BioDedupe).await? {
            return Ok(StageRun::Done);
        }
        rows::put_candidates(&mut tx, &row.rid, "bio", &found).await?;
        let reference = set.is_some().then(|| abis_ref(&row.rid));
        let u = PacketUpdate { stage: Some(Stage::Decide.as_str()), abis_ref: reference.as_deref(), ..Default::default() };
        rows::update_packet(&mut tx, &row.rid, &u, now).await?;
        rows::add_event(&mut tx, &row.rid, "bio_dedupe", outcome, None, Some(&format!("candidates={}", found.len())), now).await?;
        queue(&mut tx, &row.rid, Stage::Decide, "", now).await?;
        tx.commit().await?;
        Ok(StageRun::Done)
    }

    /// Works from the packet's row and candidates alone (no decryption).
    async fn decide(&self, row: &PacketRow, now: UnixMillis) -> Result<StageRun> {
        let db = self.repo().db();
        let mut candidates = rows::candidates(db, &row.rid).await?;
        let rids: Vec<String> = candidates.iter().map(|c| c.candidate_rid.clone()).collect();
        let others: BTreeMap<String, PacketRow> = rows::packets_by_rid(db, &rids).await?.into_iter().map(|r| (r.rid.clone(), r)).collect();
        candidates.retain(|c| others.get(&c.candidate_rid).is_some_and(|o| counts(c, row, o)));
        // (identity id, candidate) of every candidate that is someone with an identity.
        let mut hits: Vec<(String, &CandidateRow)> = Vec::new();
        for c in &candidates {
            let Some(other) = others.get(&c.candidate_rid) else { continue };
            match other.status.as_str() {
                "rejected" | "duplicate" => {}
                "issued" | "updated" | "found" => {
                    if let Some(id) = &other.identity_id {
                        hits.push((id.clone(), c));
                    }
                }
                status => {
                    // Only a candidate the other's `decide` will heed makes it wait for us.
                    let theirs = rows::candidates(db, &other.rid).await?;
                    let they_wait_for_us =
                        other.seq > row.seq && theirs.iter().any(|t| t.candidate_rid == row.rid && counts(t, other, row));
                    if !they_wait_for_us {
                        let wait = if status == "adjudication" { WAIT_ADJUDICATION_MS } else { WAIT_MS };
                        self.mark_waiting(row, &other.rid, now).await?;
                        return Ok(StageRun::Later(wait));
                    }
                }
            }
        }
        // An update is expected to match the identity it updates.
        let flow = row.flow.as_deref().map(Flow::parse).transpose()?.unwrap_or(Flow::New);
        let own = if flow == Flow::Update { row.identity_id.clone() } else { None };
        // An update goes on only when its biometrics match the identity it names: otherwise
        // anyone could rewrite anyone's record (and contact details).
        if flow == Flow::Update {
            let verified = hits.iter().any(|(id, c)| Some(id) == own.as_ref() && c.source == "bio" && c.decision == "match");
            if !verified {
                return self.finish(row, "rejected", None, None, "update_not_verified", now).await;
            }
        }
        hits.retain(|(id, _)| Some(id) != own.as_ref());
        // Only a biometric match is a duplicate without a person looking.
        let best_match = hits.iter().find(|(_, c)| c.source == "bio" && c.decision == "match");
        match (flow, best_match) {
            (Flow::Lost, Some((id, c))) => self.finish(row, "found", Some(id), Some(c.candidate_rid.as_str()), "found", now).await,
            (Flow::Lost, None) => self.finish(row, "rejected", None, None, "lost_not_found", now).await,
            (_, Some((id, c))) => self.finish(row, "duplicate", Some(id), Some(c.candidate_rid.as_str()), "duplicate", now).await,
            (_, None) if !hits.is_empty() => self.to_adjudication(row, now).await,
            (_, None) => {
                let mut tx = db.begin().await?;
                if !still_at(&mut tx, &row.rid, Stage::Decide).await? {
                    return Ok(StageRun::Done);
                }
                let u = PacketUpdate { status: Some("processing"), stage: Some(Stage::Issue.as_str()), ..Default::default() };
                rows::update_packet(&mut tx, &row.rid, &u, now).await?;
                rows::add_event(&mut tx, &row.rid, "decide", "unique", None, None, now).await?;
                queue(&mut tx, &row.rid, Stage::Issue, "", now).await?;
                tx.commit().await?;
                Ok(StageRun::Done)
            }
        }
    }

    async fn mark_waiting(&self, row: &PacketRow, on: &str, now: UnixMillis) -> Result<()> {
        if row.status == "waiting" {
            return Ok(());
        }
        let mut tx = self.repo().db().begin().await?;
        rows::update_packet(&mut tx, &row.rid, &PacketUpdate { status: Some("waiting"), ..Default::default() }, now).await?;
        rows::add_event(&mut tx, &row.rid, "decide", "waiting", Some("candidate_in_flight"), Some(on), now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens a case; the resident is told their registration is being reviewed, in the same
    /// transaction (sealed before it), so the message exists exactly when the case does.
    async fn to_adjudication(&self, row: &PacketRow, now: UnixMillis) -> Result<StageRun> {
        let vars = BTreeMap::from([("rid".to_owned(), row.rid.clone())]);
        let key = format!("registration.adjudication:{}", row.rid);
        let messages = self.messages(row, &key, "registration.adjudication", &vars, now).await?;
        let mut tx = self.repo().db().begin().await?;
        if !still_at(&mut tx, &row.rid, Stage::Decide).await? {
            return Ok(StageRun::Done);
        }
        let id = rows::open_adjudication(&mut tx, &uuid::Uuid::new_v4().to_string(), &row.rid, now).await?;
        rows::update_packet(&mut tx, &row.rid, &PacketUpdate { status: Some("adjudication"), ..Default::default() }, now).await?;
        rows::add_event(&mut tx, &row.rid, "decide", "adjudication", Some("candidate_in_doubt"), Some(&id), now).await?;
        if let Some(notifier) = &self.inner.notifier {
            for m in messages {
                notifier.enqueue(&mut tx, m, now).await.map_err(RegError::Notify)?;
            }
        }
        tx.commit().await?;
        Ok(StageRun::Done)
    }

    /// The resident's messages about `row` (sealed, ready to enqueue) under `key` (`:email`,
    /// `:sms` appended); none without a notifier or contact details. The contact details: the
    /// identity's once written (the latest), else the packet's.
    async fn messages(
        &self,
        row: &PacketRow,
        key: &str,
        template: &str,
        vars: &BTreeMap<String, String>,
        now: UnixMillis,
    ) -> Result<Vec<tessera_notify::Prepared>> {
        let Some(notifier) = &self.inner.notifier else { return Ok(Vec::new()) };
        let Some(Value::Object(record)) = self.record_of_packet(row).await? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for n in NewNotification::for_record(key, template, &record, None, vars) {
            match notifier.prepare(&n, now).await {
                Ok(p) => out.push(p),
                // The message cannot be made (an address the channel refuses): nobody to tell.
                Err(e @ (NotifyError::Address(_) | NotifyError::Variable(_) | NotifyError::NoTemplate)) => {
                    tracing::info!(code = e.code(), "no notification for this registration");
                }
                Err(e) => return Err(RegError::Notify(e)),
            }
        }
        Ok(out)
    }

    /// A final outcome other than issuing, committed only if the packet is still where the
    /// caller read it (a stale delivery changes nothing). The registration's ABIS reference is
    /// deleted by the `done` stage queued with it. `detail` is shown in the history beside the
    /// code (the candidate's RID, or what was wrong).
    async fn finish(
        &self,
        row: &PacketRow,
        status: &str,
        identity: Option<&String>,
        detail: Option<&str>,
        code: &str,
        now: UnixMillis,
    ) -> Result<StageRun> {
        let mut tx = self.repo().db().begin().await?;
        let Some(current) = rows::packet_for_update(&mut tx, &row.rid).await? else { return Err(RegError::NotFound) };
        if is_final(&current.status) || current.stage != row.stage {
            return Ok(StageRun::Done);
        }
        let u = PacketUpdate {
            status: Some(status),
            stage: Some(Stage::Done.as_str()),
            reason_code: Some(Some(code)),
            identity_id: identity.map(String::as_str),
            ..Default::default()
        };
        rows::update_packet(&mut tx, &row.rid, &u, now).await?;
        rows::delete_demo_keys(&mut tx, &row.rid).await?;
        rows::add_event(&mut tx, &row.rid, &current.stage, status, Some(code), detail, now).await?;
        queue(&mut tx, &row.rid, Stage::Done, "", now).await?;
        tx.commit().await?;
        Ok(StageRun::Done)
    }

    /// Deletes the registration's ABIS reference, if it has one (idempotent).
    pub(crate) async fn delete_reference(&self, row: &PacketRow, now: UnixMillis) -> Result<()> {
        if let Some(reference) = &row.abis_ref {
            let answer = self.inner.abis.delete_reference(&format!("{reference}-delete"), reference, now).await;
            // Not found: deleted by an earlier attempt.
            if answer.return_value != "1" && answer.failure_reason.as_deref() != Some("3") {
                return Err(RegError::Abis(answer.failure_reason.unwrap_or_default()));
            }
        }
        Ok(())
    }

    /// The credential step: an issued or updated identity gets its verifiable credential, once
    /// per registration (the source is the RID, so a stage run again issues nothing new), and the
    /// packet's history says which. An identity erased meanwhile gets none.
    async fn credential(&self, row: &PacketRow, now: UnixMillis) -> Result<()> {
        let Some(creds) = &self.inner.credentials else { return Ok(()) };
        let (Some(id), "issued" | "updated") = (&row.identity_id, row.status.as_str()) else { return Ok(()) };
        let issued = match creds.issue_for(&Actor::system(), id, &format!("rid:{}", row.rid), now).await {
            Ok(c) => c,
            Err(CredentialError::Repo(RepoError::Gone | RepoError::NotFound)) => return Ok(()),
            Err(e) => return Err(RegError::Credential(e)),
        };
        let recorded = rows::events(self.repo().db(), &row.rid).await?.iter().any(|e| e.outcome == "credential");
        if !recorded {
            let mut tx = self.repo().db().begin().await?;
            rows::add_event(&mut tx, &row.rid, Stage::Done.as_str(), "credential", None, Some(&issued.id), now).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Tells the person of a final outcome, through the outbox (the `done` stage, queued with
    /// the final state). Idempotent: the messages' keys are the RID's, so a stage run again
    /// enqueues nothing new, and the outbox sends each message once.
    async fn notify(&self, row: &PacketRow, now: UnixMillis) -> Result<()> {
        let Some(notifier) = &self.inner.notifier else { return Ok(()) };
        let (template, uin) = match row.status.as_str() {
            "issued" | "found" | "updated" => ("registration.issued", true),
            "duplicate" => ("registration.duplicate", false),
            "rejected" => ("registration.rejected", false),
            _ => return Ok(()),
        };
        let mut vars = BTreeMap::from([("rid".to_owned(), row.rid.clone())]);
        if let Some(code) = &row.reason_code {
            vars.insert("reason".into(), code.clone());
        }
        if uin && let Some(id) = &row.identity_id {
            match self.repo().uin_of(id).await {
                Ok(u) => vars.insert("uin".into(), u.expose().to_owned()),
                Err(RepoError::Gone) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
        }
        let messages = self.messages(row, &format!("registration:{}", row.rid), template, &vars, now).await?;
        let mut tx = self.repo().db().begin().await?;
        for m in messages {
            notifier.enqueue(&mut tx, m, now).await.map_err(RegError::Notify)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refuses a packet for its own fault (final).
    async fn reject(&self, row: &PacketRow, stage: Stage, code: &str, detail: &str, now: UnixMillis) -> Result<()> {
        tracing::info!(stage = stage.as_str(), code, "packet rejected");
        let detail = (!detail.is_empty()).then_some(detail);
        self.finish(row, "rejected", None, detail, code, now).await?;
        Ok(())
    }

    /// NEW and CHILD: a UIN from the pool and the identity written (a child linked to its
    /// guardian); UPDATE: the change applied to the identity it names. Either way in one
    /// transaction with the packet's final state and the `done` stage.
    async fn issue(&self, row: &PacketRow, p: &Packet, now: UnixMillis) -> Result<StageRun> {
        let record: Value = serde_json::from_slice(&p.files[packet::IDENTITY_FILE]).unwrap_or(Value::Null);
        let attachments: BTreeMap<String, Vec<u8>> = self
            .repo()
            .schema()
            .fields()
            .filter(|f| matches!(f.kind, FieldType::Document | FieldType::Biometric))
            .filter_map(|f| record.get(&f.id).and_then(|v| v.get("ref")).and_then(Value::as_str))
            .filter_map(|r| p.files.get(r).map(|b| (r.to_owned(), b.clone())))
            .collect();
        let reason = format!("registration {}", row.rid);
        let rid = row.rid.clone();
        let result = match p.manifest.flow {
            Flow::New | Flow::Child => {
                let guardian = match (p.manifest.flow, p.manifest.guardian_uin.as_deref()) {
                    (Flow::Child, uin @ Some(_)) => match self.existing_uin(uin, now).await? {
                        Ok(id) => Some(id),
                        Err((code, detail)) => {
                            self.reject(row, Stage::Issue, code, &detail, now).await?;
                            return Ok(StageRun::Done);
                        }
                    },
                    _ => None,
                };
                let new = NewRecord { record, attachments, external_ref: Some(format!("rid:{rid}")), reason };
                self.repo()
                    .create_with(&Actor::system(), new, now, async |tx: &mut Tx, created: &tessera_idrepo::Created| {
                        if let Some(g) = &guardian {
                            rows::insert_link(tx, &created.id, "guardian", g, &rid, now).await?;
                        }
                        mark_done(tx, &rid, "issued", &created.id, now).await
                    })
                    .await
                    .map(|_| ())
            }
            Flow::Update => {
                let Some(uin) = p.manifest.uin.as_deref().and_then(|u| Uin::parse_with(u, self.repo().rules()).ok()) else {
                    self.reject(row, Stage::Issue, "uin_invalid", "", now).await?;
                    return Ok(StageRun::Done);
                };
                let change = Change { patch: record, attachments, expected_version: None, reason };
                self.repo()
                    .update_with(&Actor::system(), &uin, change, now, async |tx: &mut Tx, id: &str, _version: i64| {
                        mark_done(tx, &rid, "updated", id, now).await
                    })
                    .await
                    .map(|_| ())
            }
            // A lost-UIN search ends in `decide` (found, or not); after an adjudicator found no
            // duplicate, there is nothing to find.
            Flow::Lost => {
                self.finish(row, "rejected", None, None, "lost_not_found", now).await?;
                return Ok(StageRun::Done);
            }
        };
        match result {
            Ok(()) | Err(RepoError::DuplicateExternalRef) => Ok(StageRun::Done),
            Err(RepoError::BadRequest(ALREADY)) => Ok(StageRun::Done),
            Err(RepoError::Invalid(errors)) => {
                let detail: Vec<String> = errors.iter().map(|e| format!("{}:{}", e.path, e.code.as_str())).collect();
                self.reject(row, Stage::Issue, "schema_invalid", &detail.join(","), now).await?;
                Ok(StageRun::Done)
            }
            Err(RepoError::NotFound | RepoError::Gone) => {
                self.reject(row, Stage::Issue, "uin_not_found", "", now).await?;
                Ok(StageRun::Done)
            }
            Err(RepoError::BadRequest(what)) => {
                self.reject(row, Stage::Issue, "record_refused", what, now).await?;
                Ok(StageRun::Done)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether `decide` of `row` heeds its candidate `c`, the packet `other`. Where both carry
/// biometrics the biometric search has the last word: a demographic candidate it did not find
/// is a namesake (two registrations of one person in flight: whichever searched second finds
/// the other biometrically).
fn counts(c: &CandidateRow, row: &PacketRow, other: &PacketRow) -> bool {
    c.source == "bio" || row.abis_ref.is_none() || other.abis_ref.is_none()
}

/// The sentinel of a stage delivered again after it committed.
const ALREADY: &str = "the packet is past this stage";

/// In the repository's transaction: the packet is final (`issued` or `updated`, naming the
/// identity) and its `done` stage queued, unless an earlier delivery got there first.
async fn mark_done(tx: &mut Tx, rid: &str, status: &str, identity_id: &str, now: UnixMillis) -> std::result::Result<(), RepoError> {
    let Some(current) = rows::packet_for_update(tx, rid).await? else {
        return Err(RepoError::BadRequest("packet vanished"));
    };
    if current.stage != Stage::Issue.as_str() || is_final(&current.status) {
        return Err(RepoError::BadRequest(ALREADY));
    }
    let u = PacketUpdate {
        status: Some(status),
        stage: Some(Stage::Done.as_str()),
        identity_id: Some(identity_id),
        reason_code: Some(None),
        ..Default::default()
    };
    rows::update_packet(tx, rid, &u, now).await?;
    rows::add_event(tx, rid, "issue", status, None, None, now).await?;
    let (payload, key) = stage_job(rid, Stage::Done, "");
    jobs::enqueue(tx, JobKind::PacketStage, &payload, &key, now).await?;
    Ok(())
}

fn same_packet(existing: &PacketRow, digest: &[u8]) -> Result<Accepted> {
    if existing.digest == digest {
        Ok(Accepted { rid: existing.rid.clone(), status: existing.status.clone(), already: true })
    } else {
        Err(RegError::PacketConflict)
    }
}

/// Queues a stage (idempotency key per packet, stage and round).
pub(crate) async fn queue(tx: &mut Tx, rid: &str, stage: Stage, round: &str, now: UnixMillis) -> Result<()> {
    let (payload, key) = stage_job(rid, stage, round);
    jobs::enqueue(tx, JobKind::PacketStage, &payload, &key, now).await?;
    Ok(())
}

/// A stage job's payload and idempotency key.
fn stage_job(rid: &str, stage: Stage, round: &str) -> (Value, String) {
    (json!({ "rid": rid, "stage": stage.as_str() }), format!("packet:{rid}:{}{round}", stage.as_str()))
}

/// Locks the packet and says whether it is still at `stage` (a concurrent delivery of the same
/// stage may have moved it on).
pub(crate) async fn still_at(tx: &mut Tx, rid: &str, stage: Stage) -> Result<bool> {
    let row = rows::packet_for_update(tx, rid).await?.ok_or(RegError::NotFound)?;
    Ok(row.stage == stage.as_str() && !is_final(&row.status))
}

/// The registration's ABIS reference id: derived from the RID, so a retried stage inserts under
/// the same id (UUID-shaped, as MOSIP's references are; it reveals nothing of the RID).
fn abis_ref(rid: &str) -> String {
    let h = sha256(&[b"tessera-abis-reference\0", rid.as_bytes()]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// Packets by their ABIS reference id.
async fn packets_by_abis_ref(db: &tessera_store::Db, refs: &[String]) -> Result<BTreeMap<String, String>> {
    Ok(rows::packets_by_abis_ref(db, refs).await?.into_iter().collect())
}

/// The packet's templates (validation has checked they parse: a packet whose biometrics do not
/// never gets past it).
fn templates(p: &Packet) -> Option<TemplateSet> {
    let file = p.manifest.files.iter().find(|f| f.kind == FileKind::Biometrics)?;
    cbeff::parse(&p.files[&file.name]).ok().and_then(|b| TemplateSet::from_birs(&b).ok())
}

fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn age_years(born: time::Date, today: time::Date) -> i32 {
    let mut age = today.year() - born.year();
    if (today.month() as u8, today.day()) < (born.month() as u8, born.day()) {
        age -= 1;
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(rid: &str, bytes: usize) -> Arc<Packet> {
        let manifest = serde_json::from_value(json!({
            "format": "test", "rid": rid, "flow": "new", "operator": "op", "supervisor": null,
            "created_at_ms": 0, "gps": null, "uin": null, "guardian_uin": null, "files": [],
        }))
        .unwrap();
        Arc::new(Packet { manifest, files: BTreeMap::from([("f".to_owned(), vec![7; bytes])]) })
    }

    #[test]
    fn opened_packets_are_bounded_and_tied_to_their_machine_key() {
        let o = Opened::default();
        o.put("blob-1", b"key-a", packet("1", 10));
        assert!(o.get("blob-1", b"key-a").is_some_and(|p| p.manifest.rid == "1"));
        // Another machine key (the machine was re-keyed): verified afresh, not served.
        assert!(o.get("blob-1", b"key-b").is_none());
        assert!(o.get("blob-2", b"key-a").is_none());
        o.forget("blob-1");
        assert!(o.get("blob-1", b"key-a").is_none());
        // At most OPENED_MAX packets: the oldest goes first.
        for i in 0..OPENED_MAX + 5 {
            o.put(&format!("b{i}"), b"k", packet(&i.to_string(), 1));
        }
        assert_eq!(o.len(), OPENED_MAX);
        assert!(o.get("b0", b"k").is_none());
        assert!(o.get(&format!("b{}", OPENED_MAX + 4), b"k").is_some());
        // At most OPENED_BYTES_MAX of files, and no single packet above a quarter of it.
        o.put("big", b"k", packet("big", OPENED_BYTES_MAX / 4 + 1));
        assert!(o.get("big", b"k").is_none());
        for i in 0..5 {
            o.put(&format!("q{i}"), b"k", packet(&i.to_string(), OPENED_BYTES_MAX / 4));
        }
        let held: usize = o.entries.lock().unwrap().values().map(|e| e.bytes).sum();
        assert!(held <= OPENED_BYTES_MAX, "{held}");
        assert!(o.get("q4", b"k").is_some() && o.get("q0", b"k").is_none());
    }
}

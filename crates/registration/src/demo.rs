//! The `demo_dedupe` stage: demographic de-duplication of a new (or child) registration against
//! every registration already in (issued or in flight), before the biometric search.
//!
//! The index: a registration's blocking keys (`tessera_demographics::Matcher::blocking_keys`:
//! phonetic name word + birth year, birth date, normalized address, …) stored as keyed digests
//! under the lookup key (`reg_demo_keys`), so the table reveals no name or date. A candidate is a
//! registration sharing at least one digest; the most-shared come first, at most
//! [`DEMO_CANDIDATES_MAX`]. Each is compared field by field against this one (the candidate's
//! record comes from the repository once issued, from its own packet while in flight) and kept
//! when the calibrated score reaches "possible match". Digests of a registration that ends as a
//! duplicate or rejected are deleted with its final state, so it is nobody's candidate.
//!
//! What a demographic candidate means is decided in `decide`: when both registrations carry
//! biometrics, the biometric search has the last word (a namesake born the same day is not a
//! duplicate); when either has none (a child, or every biometric an exception), a demographic
//! match or possible match goes to a person (adjudication), never to an automatic duplicate.

use crate::packet::{self, Flow, Packet};
use crate::pipeline::{Registration, Stage, StageRun, queue, still_at};
use crate::{RegError, Result};
use serde_json::Value;
use tessera_crypto::tokens::lookup_digest;
use tessera_crypto::{KeyId, Purpose};
use tessera_demographics::{Decision, Record};
use tessera_idrepo::RepoError;
use tessera_store::UnixMillis;
use tessera_store::registration::{self as rows, CandidateRow, PacketRow, PacketUpdate};

/// Most registrations compared against one new registration.
pub const DEMO_CANDIDATES_MAX: u32 = 20;
/// Most digests one search sends (64 blocking keys under three lookup key versions).
const DEMO_SEARCH_DIGESTS_MAX: usize = 192;
/// The digest kind of demographic blocking keys (separates them from UIN or VID digests).
const DEMO_KIND: &str = "demo-block";

impl Registration {
    pub(crate) async fn demo_dedupe(&self, row: &PacketRow, p: &Packet, now: UnixMillis) -> Result<StageRun> {
        let (found, outcome) = match p.manifest.flow {
            // An update names its identity; a lost-UIN search is biometric.
            Flow::Update | Flow::Lost => (Vec::new(), "skipped"),
            Flow::New | Flow::Child => {
                let record = identity(p).ok_or(RegError::BadRequest("identity file unreadable after validation"))?;
                match Record::from_json(&row.rid, &record) {
                    Ok(rec) => (self.demo_search(row, &rec).await?, "searched"),
                    // Beyond the de-duplicator's limits (the schema allows longer values): the
                    // biometric search still runs.
                    Err(e) => {
                        tracing::info!(error = %e, "registration not comparable demographically");
                        (Vec::new(), "skipped")
                    }
                }
            }
        };
        let mut tx = self.repo().db().begin().await?;
        if !still_at(&mut tx, &row.rid, Stage::DemoDedupe).await? {
            return Ok(StageRun::Done);
        }
        rows::put_candidates(&mut tx, &row.rid, "demo", &found).await?;
        rows::update_packet(&mut tx, &row.rid, &PacketUpdate { stage: Some(Stage::BioDedupe.as_str()), ..Default::default() }, now).await?;
        rows::add_event(&mut tx, &row.rid, "demo_dedupe", outcome, None, Some(&format!("candidates={}", found.len())), now).await?;
        queue(&mut tx, &row.rid, Stage::BioDedupe, "", now).await?;
        tx.commit().await?;
        Ok(StageRun::Done)
    }

    /// Stores this registration's digests, then finds the candidates that score at least
    /// "possible".
    ///
    /// The digests are committed before the search: of two registrations of one person in this
    /// stage at once, the later search then sees the other's digests (`decide` sorts out which
    /// one waits).
    async fn demo_search(&self, row: &PacketRow, rec: &Record) -> Result<Vec<CandidateRow>> {
        let matcher = &self.inner.matcher;
        let keys = matcher.blocking_keys(rec);
        let ks = &**self.repo().keystore();
        let current = ks.current(Purpose::Lookup);
        let mut versions: Vec<KeyId> = ks.list().into_iter().filter(|k| k.id.purpose == Purpose::Lookup).map(|k| k.id).collect();
        versions.sort_by_key(|k| std::cmp::Reverse(k.version));
        let mut store = Vec::with_capacity(keys.len());
        for k in &keys {
            store.push(lookup_digest(ks, current, DEMO_KIND, k)?.to_vec());
        }
        // The current version's digests first, then older versions' (entries written before a
        // rotation), so a search over many versions leaves out the oldest.
        let mut search = store.clone();
        for v in versions.iter().filter(|v| **v != current) {
            for k in &keys {
                search.push(lookup_digest(ks, *v, DEMO_KIND, k)?.to_vec());
            }
        }
        search.truncate(DEMO_SEARCH_DIGESTS_MAX);
        let mut tx = self.repo().db().begin().await?;
        if !still_at(&mut tx, &row.rid, Stage::DemoDedupe).await? {
            return Ok(Vec::new());
        }
        rows::put_demo_keys(&mut tx, &row.rid, &store).await?;
        tx.commit().await?;
        let hits = rows::find_demo_keys(self.repo().db(), &search, DEMO_CANDIDATES_MAX + 1).await?;
        let rids: Vec<String> = hits.into_iter().map(|(rid, _)| rid).filter(|r| *r != row.rid).take(DEMO_CANDIDATES_MAX as usize).collect();
        let mine = matcher.prepare(rec);
        let mut found = Vec::new();
        for other in rows::packets_by_rid(self.repo().db(), &rids).await? {
            if matches!(other.status.as_str(), "rejected" | "duplicate") {
                continue;
            }
            let Some(theirs) = self.record_of_packet(&other).await? else { continue };
            let Ok(theirs) = Record::from_json(&other.rid, &theirs) else { continue };
            let Some(c) = matcher.compare_candidates(&mine, &matcher.prepare(&theirs)) else { continue };
            let decision = match c.decision {
                Decision::Match => "match",
                Decision::PossibleMatch => "review",
                Decision::NonMatch => continue,
            };
            found.push(CandidateRow {
                candidate_rid: other.rid.clone(),
                source: "demo".into(),
                score: c.score,
                decision: decision.into(),
                // JSON, like the biometric search's detail: field, method, similarity, weight.
                detail: serde_json::to_string(&c.evidence).unwrap_or_default(),
            });
        }
        Ok(found)
    }

    /// The demographic record of another registration: from the repository once its identity
    /// is written, from its packet before. `None` when it is gone (erased, or unreadable).
    pub(crate) async fn record_of_packet(&self, other: &PacketRow) -> Result<Option<Value>> {
        match (&other.identity_id, other.status.as_str()) {
            (Some(id), "issued" | "updated" | "found") => match self.repo().record_of(id).await {
                Ok(r) => Ok(Some(Value::Object(r))),
                Err(RepoError::Gone | RepoError::NotFound) => Ok(None),
                Err(e) => Err(e.into()),
            },
            _ => Ok(self.open(other).await?.ok().and_then(|p| identity(&p))),
        }
    }
}

/// The packet's identity file as JSON.
pub(crate) fn identity(p: &Packet) -> Option<Value> {
    serde_json::from_slice(p.files.get(packet::IDENTITY_FILE)?).ok().filter(Value::is_object)
}

//! Manual adjudication: a registration whose candidates are in doubt (a biometric "review", or a
//! demographic match where biometrics cannot decide) waits in status `adjudication` until a
//! person with the `adjudicator` role looks at it beside its candidates and decides.
//!
//! Reading a case shows personal data (both records, field by field), so every read is audited
//! (`adjudication.read`, and `identity.read` for each candidate identity shown). A decision is
//! made once: `duplicate` of one candidate's UIN ends the registration as a duplicate (its ABIS
//! reference deleted by the `done` stage queued with it, no UIN issued); `not_duplicate` sends it on to `issue`. The decision and
//! the packet's next state commit in one transaction; the free-text reason is sealed (it may
//! name the person).

use crate::pipeline::{Registration, Stage, is_final, queue};
use crate::{RegError, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tessera_core::schema::FieldType;
use tessera_idrepo::{Actor, RepoError};
use tessera_store::UnixMillis;
use tessera_store::registration::{self as rows, AdjudicationRow, CandidateRow, PacketRow, PacketUpdate};

/// Longest decision reason, in characters.
pub const REASON_CHARS_MAX: usize = 500;
/// Most cases in one listing.
pub const CASES_PAGE_MAX: u32 = 200;
const REASON_KIND: &str = "adjudication-reason";
/// Length of a sealed item id (a UUID) at the front of a stored reason.
const SEALED_ID_LEN: usize = 36;

/// A case in a listing (no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseSummary {
    pub id: String,
    pub rid: String,
    pub state: String,
    pub decision: Option<String>,
    pub created_at_ms: UnixMillis,
    pub decided_at_ms: Option<UnixMillis>,
}

/// A case as the adjudicator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Case {
    #[serde(flatten)]
    pub summary: CaseSummary,
    /// The candidate RID chosen, for a `duplicate` decision.
    pub duplicate_of: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// The registration in doubt.
    pub registration: Side,
    pub candidates: Vec<CandidateView>,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub rid: String,
    pub status: String,
    pub flow: Option<String>,
    /// Whether its biometrics were searched (an ABIS reference exists).
    pub biometrics: bool,
    /// The demographic fields (documents and biometrics are named, not shown).
    pub record: Option<Map<String, Value>>,
}

/// A candidate beside the registration, field by field and score by score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateView {
    #[serde(flatten)]
    pub side: Side,
    /// The candidate's UIN, when it has one: what a `duplicate` decision names.
    pub uin: Option<String>,
    /// One entry per search that found it (`bio`, `demo`).
    pub evidence: Vec<Value>,
    /// Every field either record has: `{field, registration, candidate, same}`.
    pub fields: Vec<Value>,
}

/// What the adjudicator decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The person already has the UIN given (one of the candidates').
    Duplicate {
        uin: String,
    },
    NotDuplicate,
}

fn summary(a: &AdjudicationRow) -> CaseSummary {
    CaseSummary {
        id: a.id.clone(),
        rid: a.rid.clone(),
        state: a.state.clone(),
        decision: a.decision.clone(),
        created_at_ms: a.created_at_ms,
        decided_at_ms: a.decided_at_ms,
    }
}

impl Registration {
    /// Cases in `state` (`open`, `decided`, or all), oldest first, after case `after` (the last
    /// id of the previous page).
    ///
    /// # Errors
    /// `BadRequest` for another state; storage errors.
    pub async fn cases(&self, state: Option<&str>, after: Option<&str>, limit: u32) -> Result<Vec<CaseSummary>> {
        if state.is_some_and(|s| s != "open" && s != "decided") {
            return Err(RegError::BadRequest("state is open or decided"));
        }
        let rows = rows::adjudications(self.repo().db(), state, after, limit.clamp(1, CASES_PAGE_MAX)).await?;
        Ok(rows.iter().map(summary).collect())
    }

    /// One case with both records side by side. Audited.
    ///
    /// # Errors
    /// `CaseNotFound`; storage, repository errors.
    pub async fn case(&self, actor: &Actor, id: &str, now: UnixMillis) -> Result<Case> {
        let db = self.repo().db();
        let a = rows::adjudication(db, id).await?.ok_or(RegError::CaseNotFound)?;
        let row = rows::packet(db, &a.rid).await?.ok_or(RegError::NotFound)?;
        let mine = self.side(&row).await?;
        let found = rows::candidates(db, &a.rid).await?;
        let mut rids: Vec<String> = found.iter().map(|c| c.candidate_rid.clone()).collect();
        rids.dedup();
        let mut events = vec![actor.event("adjudication.read", id, "ok")];
        let mut candidates = Vec::new();
        for other in rows::packets_by_rid(db, &rids).await? {
            let side = self.side(&other).await?;
            let uin = match (&other.identity_id, is_final(&other.status)) {
                (Some(identity), true) => match self.repo().uin_of(identity).await {
                    Ok(u) => {
                        events.push(actor.event("identity.read", identity, "ok"));
                        Some(u.expose().to_owned())
                    }
                    Err(RepoError::Gone) => None,
                    Err(e) => return Err(e.into()),
                },
                _ => None,
            };
            let evidence = found.iter().filter(|c| c.candidate_rid == other.rid).map(evidence).collect();
            let fields = side_by_side(mine.record.as_ref(), side.record.as_ref());
            candidates.push(CandidateView { side, uin, evidence, fields });
        }
        let reason = match &a.reason {
            Some(stored) => self.open_reason(stored).await?,
            None => None,
        };
        let mut tx = db.begin().await?;
        tessera_idrepo::audit::append(&mut tx, &**self.repo().keystore(), &events, now).await?;
        tx.commit().await?;
        Ok(Case {
            summary: summary(&a),
            duplicate_of: a.duplicate_of.clone(),
            decided_by: a.decided_by.clone(),
            reason,
            registration: mine,
            candidates,
        })
    }

    /// Decides an open case; the pipeline goes on from the decision.
    ///
    /// # Errors
    /// `CaseNotFound`, `CaseDecided`, `BadRequest` (reason missing or too long),
    /// `CaseUinNotCandidate`; storage, ABIS errors.
    pub async fn decide_case(&self, actor: &Actor, id: &str, decision: &Decision, reason: &str, now: UnixMillis) -> Result<CaseSummary> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
            return Err(RegError::BadRequest("a reason of 1 to 500 characters is required"));
        }
        let db = self.repo().db();
        let a = rows::adjudication(db, id).await?.ok_or(RegError::CaseNotFound)?;
        if a.state != "open" {
            return Err(RegError::CaseDecided);
        }
        let row = rows::packet(db, &a.rid).await?.ok_or(RegError::NotFound)?;
        let of = match decision {
            Decision::Duplicate { uin } => Some(self.candidate_with_uin(&row, uin).await?),
            Decision::NotDuplicate => None,
        };
        let (sealed_id, sealed) = self.repo().seal_new(REASON_KIND, reason.as_bytes(), now).await?;
        let stored = [sealed_id.as_bytes(), &sealed].concat();
        let mut tx = db.begin().await?;
        let verdict = if of.is_some() { "duplicate" } else { "not_duplicate" };
        let of_rid = of.as_ref().map(|(rid, _)| rid.as_str());
        if !rows::decide_adjudication(&mut tx, id, verdict, of_rid, &stored, &actor.id, now).await? {
            return Err(RegError::CaseDecided);
        }
        let current = rows::packet_for_update(&mut tx, &row.rid).await?.ok_or(RegError::NotFound)?;
        if current.status != "adjudication" {
            return Err(RegError::CaseDecided);
        }
        match &of {
            Some((rid, identity)) => {
                // A lost-UIN search that a person matched has found its UIN.
                let (status, code) = if row.flow.as_deref() == Some("lost") {
                    ("found", "found_adjudicated")
                } else {
                    ("duplicate", "duplicate_adjudicated")
                };
                let u = PacketUpdate {
                    status: Some(status),
                    stage: Some(Stage::Done.as_str()),
                    reason_code: Some(Some(code)),
                    identity_id: Some(identity),
                    ..Default::default()
                };
                rows::update_packet(&mut tx, &row.rid, &u, now).await?;
                rows::delete_demo_keys(&mut tx, &row.rid).await?;
                rows::add_event(&mut tx, &row.rid, "adjudication", status, Some(code), Some(rid), now).await?;
                queue(&mut tx, &row.rid, Stage::Done, "", now).await?;
            }
            None => {
                let u = PacketUpdate { status: Some("processing"), stage: Some(Stage::Issue.as_str()), ..Default::default() };
                rows::update_packet(&mut tx, &row.rid, &u, now).await?;
                rows::add_event(&mut tx, &row.rid, "adjudication", "not_duplicate", None, Some(id), now).await?;
                queue(&mut tx, &row.rid, Stage::Issue, "", now).await?;
            }
        }
        tessera_idrepo::audit::append(&mut tx, &**self.repo().keystore(), &[actor.event("adjudication.decide", id, verdict)], now).await?;
        tx.commit().await?;
        let a = rows::adjudication(db, id).await?.ok_or(RegError::CaseNotFound)?;
        Ok(summary(&a))
    }

    /// The candidate (RID, identity id) of `row` whose identity has this UIN.
    async fn candidate_with_uin(&self, row: &PacketRow, uin: &str) -> Result<(String, String)> {
        let db = self.repo().db();
        let rids: Vec<String> = rows::candidates(db, &row.rid).await?.into_iter().map(|c| c.candidate_rid).collect();
        for other in rows::packets_by_rid(db, &rids).await? {
            let Some(identity) = other.identity_id.clone().filter(|_| is_final(&other.status)) else { continue };
            match self.repo().uin_of(&identity).await {
                Ok(u) if u.expose() == uin => return Ok((other.rid, identity)),
                Ok(_) | Err(RepoError::Gone) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(RegError::CaseUinNotCandidate)
    }

    async fn side(&self, row: &PacketRow) -> Result<Side> {
        let record = self.record_of_packet(row).await?.and_then(|v| match v {
            Value::Object(m) => Some(self.demographic_only(m)),
            _ => None,
        });
        Ok(Side { rid: row.rid.clone(), status: row.status.clone(), flow: row.flow.clone(), biometrics: row.abis_ref.is_some(), record })
    }

    /// The record without document and biometric references.
    fn demographic_only(&self, mut m: Map<String, Value>) -> Map<String, Value> {
        for f in self.repo().schema().fields() {
            if matches!(f.kind, FieldType::Document | FieldType::Biometric) {
                m.remove(&f.id);
            }
        }
        m
    }

    async fn open_reason(&self, stored: &[u8]) -> Result<Option<String>> {
        let (Some(id), Some(sealed)) = (stored.get(..SEALED_ID_LEN).and_then(|b| std::str::from_utf8(b).ok()), stored.get(SEALED_ID_LEN..))
        else {
            return Ok(None);
        };
        let opened = self.repo().open_many(REASON_KIND, &[(id, sealed)]).await?;
        Ok(opened.into_iter().next().flatten().map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

/// A candidate row as evidence: the search, its score and decision, and its per-field (`demo`)
/// or per-modality (`bio`) detail, both stored as JSON.
fn evidence(c: &CandidateRow) -> Value {
    let detail = serde_json::from_str(&c.detail).unwrap_or(Value::Null);
    json!({ "source": c.source, "score": c.score, "decision": c.decision, "detail": detail })
}

/// `{field, registration, candidate, same}` for every field either record has, in name order.
fn side_by_side(a: Option<&Map<String, Value>>, b: Option<&Map<String, Value>>) -> Vec<Value> {
    let empty = Map::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|n| {
            let (x, y) = (a.get(n).cloned().unwrap_or(Value::Null), b.get(n).cloned().unwrap_or(Value::Null));
            json!({ "field": n, "same": x == y, "registration": x, "candidate": y })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_evidence_is_parsed_field_by_field() {
        let c = CandidateRow {
            candidate_rid: "r".into(),
            source: "demo".into(),
            score: 27.5,
            decision: "match".into(),
            detail: r#"[{"field":"full_name","method":"jaro_winkler","similarity":0.95,"weight":12.0},{"field":"date_of_birth","method":"exact","similarity":1.0,"weight":9.5}]"#.into(),
        };
        let e = evidence(&c);
        assert_eq!(e["detail"][0]["field"], "full_name");
        assert_eq!(e["detail"][1]["weight"], 9.5);
        assert_eq!(e["score"], 27.5);
    }

    #[test]
    fn fields_are_aligned_and_compared() {
        let a = json!({"fullName": "A", "gender": "female"});
        let b = json!({"fullName": "B", "gender": "female", "city": "X"});
        let rows = side_by_side(a.as_object(), b.as_object());
        let names: Vec<&str> = rows.iter().map(|r| r["field"].as_str().unwrap_or_default()).collect();
        assert_eq!(names, ["city", "fullName", "gender"]);
        assert_eq!(rows[0]["registration"], Value::Null);
        assert_eq!(rows[1]["same"], false);
        assert_eq!(rows[2]["same"], true);
    }
}

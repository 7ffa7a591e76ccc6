//! The ABIS engine: MOSIP ABIS requests served from an in-memory multi-modal gallery that is
//! loaded from the encrypted reference table at start and kept in step with every insert and
//! delete.
//!
//! Durability and idempotency: an insert or delete commits its reference row (or its removal)
//! and the answer to its request id in one transaction, and only then touches the in-memory
//! gallery, which is rebuilt from the table at every start; so a crash loses nothing that was
//! answered. A request id seen before is answered with the stored answer, not executed again
//! (MOSIP retries requests whose answer it did not receive); a request id reused for a different
//! request is refused. The templates of each reference are sealed under a data key of their own
//! in the key vault (`IdRepo::seal_new`), so a delete erases them everywhere.

use crate::mosip::{self, Body, Candidate, CandidateList, FailureReason, ModalityScore, Operation, Request, Response};
use crate::{AbisError, Fetch, FetchError};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tessera_biometrics::cbeff;
use tessera_biometrics::fusion::{self, Thresholds};
use tessera_biometrics::gallery::{Gallery, SearchOptions};
use tessera_biometrics::templates::{ExtractError, TemplateSet};
use tessera_idrepo::IdRepo;
use tessera_store::abis::{self as rows, RequestRow};
use tessera_store::jobs::{self, JobKind};
use tessera_store::{StoreError, UnixMillis};

/// The kind of sealed item a reference's template set is (`IdRepo::seal_new`).
pub const SEALED_KIND: &str = "abis-templates";
/// References loaded per page at start.
const LOAD_PAGE: i64 = 2000;
/// Largest CBEFF document fetched from a referenceURL.
pub const CBEFF_BYTES_MAX: usize = tessera_biometrics::cbeff::INPUT_BYTES_MAX;

/// Engine settings (from `[abis]` in the configuration).
#[derive(Debug, Clone)]
pub struct AbisConfig {
    /// Threads a search uses (default: every core).
    pub threads: usize,
    /// Most candidates an Identify returns (`candidates_max`, default 30; MOSIP's `maxResults`
    /// may ask for fewer).
    pub candidates_max: usize,
    /// `targetFPIR` when a request gives none (30: 1 in 1,000).
    pub target_fpir_default: u32,
    /// Width of the adjudication band below the match threshold, in decades of FMR.
    pub review_decades: f64,
}

impl Default for AbisConfig {
    fn default() -> Self {
        AbisConfig {
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            candidates_max: tessera_biometrics::iris_gallery::CANDIDATES_MAX,
            target_fpir_default: fusion::TARGET_FPIR_DEFAULT,
            review_decades: fusion::REVIEW_DECADES_DEFAULT,
        }
    }
}

/// The gallery and the mapping between its numeric ids (the reference rows' `seq`) and the
/// callers' reference ids.
#[derive(Debug, Default)]
struct State {
    gallery: Gallery,
    reference_of: HashMap<u64, String>,
}

/// The engine. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    repo: IdRepo,
    fetch: Arc<dyn Fetch>,
    cfg: AbisConfig,
    state: Arc<RwLock<State>>,
    in_flight: AtomicUsize,
}

/// Counts a request as pending while it runs.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn seq_id(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

impl Engine {
    /// Opens the engine, loading every reference into the in-memory gallery. `progress` is called
    /// after each page with (loaded, total).
    ///
    /// # Errors
    /// Storage, vault or keystore errors; a reference that does not open (tampered) is an error,
    /// not a silent gap in de-duplication.
    pub async fn open(
        repo: IdRepo,
        fetch: Arc<dyn Fetch>,
        cfg: AbisConfig,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, AbisError> {
        let total = usize::try_from(rows::count(repo.db()).await?).unwrap_or(0);
        let mut state = State::default();
        let mut after = 0;
        loop {
            let page = rows::page(repo.db(), 0, 1, after, LOAD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let items: Vec<(&str, &[u8])> = page.iter().map(|r| (r.id.as_str(), r.templates.as_slice())).collect();
            let opened = repo.open_many(SEALED_KIND, &items).await?;
            for (row, plain) in page.iter().zip(opened) {
                // A key deleted meanwhile: the reference is being deleted.
                let Some(plain) = plain else { continue };
                let set = TemplateSet::from_bytes(&plain).map_err(|_| AbisError::Corrupt("a stored template set does not parse"))?;
                state.gallery.insert(seq_id(row.seq), &set);
                state.reference_of.insert(seq_id(row.seq), row.reference_id.clone());
            }
            progress(state.reference_of.len(), total.max(state.reference_of.len()));
        }
        Ok(Engine { repo, fetch, cfg, state: Arc::new(RwLock::new(state)), in_flight: AtomicUsize::new(0) })
    }

    /// References in the in-memory gallery.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state.read().map_or(0, |s| s.reference_of.len())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests being served right now.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Serves one MOSIP ABIS request message and returns the answer. Never fails: every fault is
    /// an answer with MOSIP's failure reason (internal faults are logged with their code only).
    pub async fn handle(&self, message: &[u8], now: UnixMillis) -> Response {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        let request = match mosip::parse(message) {
            Ok(r) => r,
            Err(rejected) => return Response::failure(&rejected.id, &rejected.request_id, rejected.reason, now),
        };
        let digest = tessera_crypto::digest::sha256(&[message]).to_vec();
        match self.answered(&request, &digest, now).await {
            Ok(Some(previous)) => return previous,
            Ok(None) => {}
            Err(e) => return self.internal(&request, &e, now),
        }
        let result = match &request.body {
            Body::Ping => Ok(Response::success(Operation::Ping, &request.request_id, now)),
            Body::PendingJobs => {
                let mut r = Response::success(Operation::PendingJobs, &request.request_id, now);
                // This request is not a pending job.
                r.jobs_count = Some(self.pending().saturating_sub(1).to_string());
                Ok(r)
            }
            Body::ReferenceCount => rows::count(self.repo.db()).await.map_err(AbisError::from).map(|n| {
                let mut r = Response::success(Operation::ReferenceCount, &request.request_id, now);
                r.count = Some(n.to_string());
                r
            }),
            Body::Insert { reference_id, reference_url } => self.insert_from_url(&request, reference_id, reference_url, &digest, now).await,
            Body::Delete { reference_id } => self.delete(&request, reference_id, &digest, now).await,
            Body::Identify(identify) => self.identify(&request, identify, &digest, now).await,
        };
        result.unwrap_or_else(|e| self.internal(&request, &e, now))
    }

    fn internal(&self, request: &Request, e: &AbisError, now: UnixMillis) -> Response {
        tracing::error!(operation = request.operation.id(), code = e.code(), error = %e, "ABIS request failed");
        Response::failure(request.operation.id(), &request.request_id, FailureReason::InternalError, now)
    }

    /// The stored answer to this request id, if it was answered; a different request under a
    /// used id is refused.
    async fn answered(&self, request: &Request, digest: &[u8], now: UnixMillis) -> Result<Option<Response>, AbisError> {
        let Some(row) = rows::request(self.repo.db(), &request.request_id).await? else { return Ok(None) };
        if row.digest != digest {
            tracing::warn!(operation = request.operation.id(), "a request id was reused for a different request");
            return Ok(Some(Response::failure(request.operation.id(), &request.request_id, FailureReason::InvalidRequest, now)));
        }
        Ok(Some(serde_json::from_str(&row.response).map_err(|_| AbisError::Corrupt("a stored ABIS answer does not parse"))?))
    }

    /// Stores an answer that changed nothing (a failure, an identify) so a retry gets it again.
    async fn remember(&self, request: &Request, digest: &[u8], response: Response, now: UnixMillis) -> Result<Response, AbisError> {
        let mut tx = self.repo.db().begin().await?;
        match rows::put_request(&mut tx, &row_of(request, digest, &response)?, now).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(response)
            }
            // A concurrent retry answered first: answer what it answered.
            Err(StoreError::Conflict) => Ok(self.answered(request, digest, now).await?.unwrap_or(response)),
            Err(e) => Err(e.into()),
        }
    }

    async fn insert_from_url(
        &self,
        request: &Request,
        reference_id: &str,
        url: &str,
        digest: &[u8],
        now: UnixMillis,
    ) -> Result<Response, AbisError> {
        if rows::reference(self.repo.db(), reference_id).await?.is_some() {
            let r = Response::failure(request.operation.id(), &request.request_id, FailureReason::ReferenceIdExists, now);
            return self.remember(request, digest, r, now).await;
        }
        let set = match self.fetch_templates(url).await {
            Ok(set) => set,
            Err(reason) => {
                let r = Response::failure(request.operation.id(), &request.request_id, reason, now);
                return self.remember(request, digest, r, now).await;
            }
        };
        self.insert_templates(request, reference_id, &set, digest, now).await
    }

    /// Inserts a template set under `reference_id`, answering `request`.
    ///
    /// # Errors
    /// Storage, vault or keystore errors.
    async fn insert_templates(
        &self,
        request: &Request,
        reference_id: &str,
        set: &TemplateSet,
        digest: &[u8],
        now: UnixMillis,
    ) -> Result<Response, AbisError> {
        let (id, sealed) = self.repo.seal_new(SEALED_KIND, &set.to_bytes(), now).await?;
        let ok = Response::success(Operation::Insert, &request.request_id, now);
        let mut tx = self.repo.db().begin().await?;
        let seq = match rows::insert_reference(&mut tx, &id, reference_id, &sealed, now).await {
            Ok(seq) => seq,
            Err(StoreError::Conflict) => {
                drop(tx);
                self.repo.destroy_sealed(&id).await?;
                let r = Response::failure(request.operation.id(), &request.request_id, FailureReason::ReferenceIdExists, now);
                return self.remember(request, digest, r, now).await;
            }
            Err(e) => {
                drop(tx);
                self.repo.destroy_sealed(&id).await?;
                return Err(e.into());
            }
        };
        match rows::put_request(&mut tx, &row_of(request, digest, &ok)?, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                // The same request is being served concurrently and answered first.
                drop(tx);
                self.repo.destroy_sealed(&id).await?;
                return Ok(self.answered(request, digest, now).await?.unwrap_or(ok));
            }
            Err(e) => {
                drop(tx);
                self.repo.destroy_sealed(&id).await?;
                return Err(e.into());
            }
        }
        tx.commit().await?;
        let mut state = self.state.write().map_err(|_| AbisError::Poisoned)?;
        state.gallery.insert(seq_id(seq), set);
        state.reference_of.insert(seq_id(seq), reference_id.to_owned());
        Ok(ok)
    }

    async fn delete(&self, request: &Request, reference_id: &str, digest: &[u8], now: UnixMillis) -> Result<Response, AbisError> {
        let mut tx = self.repo.db().begin().await?;
        let Some((seq, id)) = rows::delete_reference(&mut tx, reference_id).await? else {
            drop(tx);
            let r = Response::failure(request.operation.id(), &request.request_id, FailureReason::ReferenceIdNotFound, now);
            return self.remember(request, digest, r, now).await;
        };
        let ok = Response::success(Operation::Delete, &request.request_id, now);
        // The key is destroyed by a job committed with the deletion, so a crash right after the
        // commit cannot leave the templates decryptable.
        jobs::enqueue(&mut tx, JobKind::AbisDestroyKey, &json!({ "identity_id": id }), &format!("abis_destroy_key:{id}"), now).await?;
        match rows::put_request(&mut tx, &row_of(request, digest, &ok)?, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                drop(tx);
                return Ok(self.answered(request, digest, now).await?.unwrap_or(ok));
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        {
            let mut state = self.state.write().map_err(|_| AbisError::Poisoned)?;
            state.gallery.remove(seq_id(seq));
            state.reference_of.remove(&seq_id(seq));
        }
        // At once as well (the job makes sure of it if this fails).
        if let Err(e) = self.repo.destroy_sealed(&id).await {
            tracing::warn!(code = e.code(), "destroying a deleted reference's key failed; the queued job will retry");
        }
        Ok(ok)
    }

    async fn identify(&self, request: &Request, identify: &mosip::Identify, digest: &[u8], now: UnixMillis) -> Result<Response, AbisError> {
        let fail = |reason| Response::failure(request.operation.id(), &request.request_id, reason, now);
        // The probe: an inserted reference (excluded from its own search), or a referenceURL.
        let (probe, exclude) = if let Some(reference_id) = &identify.reference_id {
            let Some(row) = rows::reference(self.repo.db(), reference_id).await? else {
                return self.remember(request, digest, fail(FailureReason::ReferenceIdNotFound), now).await;
            };
            let opened = self.repo.open_many(SEALED_KIND, &[(row.id.as_str(), row.templates.as_slice())]).await?;
            let Some(Some(plain)) = opened.into_iter().next() else {
                return self.remember(request, digest, fail(FailureReason::ReferenceIdNotFound), now).await;
            };
            let set = TemplateSet::from_bytes(&plain).map_err(|_| AbisError::Corrupt("a stored template set does not parse"))?;
            (set, Some(seq_id(row.seq)))
        } else {
            let url = identify.reference_url.as_deref().unwrap_or("");
            match self.fetch_templates(url).await {
                Ok(set) => (set, None),
                Err(reason) => return self.remember(request, digest, fail(reason), now).await,
            }
        };
        let restrict: Option<HashSet<u64>> = match &identify.gallery {
            None => None,
            Some(ids) => Some(rows::seqs(self.repo.db(), ids).await?.into_iter().map(|(_, s)| seq_id(s)).collect()),
        };
        let k = identify.max_results.unwrap_or(self.cfg.candidates_max).clamp(1, self.cfg.candidates_max);
        let target = identify.target_fpir.unwrap_or(self.cfg.target_fpir_default);
        let list = self.search(probe, exclude, restrict, k, target).await?;
        let mut r = Response::success(Operation::Identify, &request.request_id, now);
        r.candidate_list = Some(list);
        self.remember(request, digest, r, now).await
    }

    /// Searches the gallery (in a blocking thread: it uses every core) and maps the hits to
    /// reference ids.
    async fn search(
        &self,
        probe: TemplateSet,
        exclude: Option<u64>,
        restrict: Option<HashSet<u64>>,
        k: usize,
        target: u32,
    ) -> Result<CandidateList, AbisError> {
        let engine_threads = self.cfg.threads;
        let review_decades = self.cfg.review_decades;
        let state = Arc::clone(&self.state);
        // A search keeps every core busy for a while: off the async workers.
        tokio::task::spawn_blocking(move || {
            let state = state.read().map_err(|_| AbisError::Poisoned)?;
            let n = restrict.as_ref().map_or(state.reference_of.len(), HashSet::len);
            let thresholds = Thresholds::new(n, target, review_decades);
            let opts = SearchOptions { k, threads: engine_threads, min_evidence: thresholds.review, exclude, restrict: restrict.as_ref() };
            let hits = state.gallery.search(&[probe], &opts).into_iter().next().unwrap_or_default();
            let decision = thresholds.decide(hits.first().map(|h| h.evidence));
            let candidates: Vec<Candidate> = hits
                .iter()
                .filter_map(|h| {
                    let reference_id = state.reference_of.get(&h.id)?.clone();
                    let mut analytics = Map::new();
                    analytics.insert("evidence".into(), json!(round3(h.evidence)));
                    analytics.insert("decision".into(), json!(thresholds.decide(Some(h.evidence)).as_str()));
                    let modalities = h
                        .modalities
                        .iter()
                        .map(|m| {
                            let mut a = Map::new();
                            a.insert("score".into(), json!(round3(m.score)));
                            a.insert("evidence".into(), json!(round3(m.evidence)));
                            ModalityScore { biometric_type: m.modality.mosip_code().into(), analytics: a }
                        })
                        .collect();
                    Some(Candidate { reference_id, analytics, modalities })
                })
                .collect();
            let mut analytics = Map::new();
            analytics.insert("decision".into(), json!(decision.as_str()));
            analytics.insert("matchThreshold".into(), json!(round3(thresholds.matched)));
            analytics.insert("reviewThreshold".into(), json!(round3(thresholds.review)));
            analytics.insert("gallerySize".into(), json!(n));
            Ok(CandidateList { count: candidates.len().to_string(), candidates, analytics })
        })
        .await
        .map_err(|_| AbisError::Poisoned)?
    }

    async fn fetch_templates(&self, url: &str) -> Result<TemplateSet, FailureReason> {
        let bytes = self.fetch.fetch(url).await.map_err(|e| {
            tracing::warn!(code = e.code(), "fetching biometrics from a referenceURL failed");
            match e {
                FetchError::Expired => FailureReason::DatashareExpired,
                _ => FailureReason::UnableToFetch,
            }
        })?;
        let birs = cbeff::parse(&bytes).map_err(|e| {
            tracing::warn!(error = %e, "a CBEFF document was rejected");
            FailureReason::InvalidCbeff
        })?;
        TemplateSet::from_birs(&birs).map_err(|e| {
            tracing::warn!(error = %e, "no usable templates in a CBEFF document");
            match e {
                ExtractError::NoData => FailureReason::CbeffHasNoData,
                _ => FailureReason::InvalidCbeff,
            }
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn row_of(request: &Request, digest: &[u8], response: &Response) -> Result<RequestRow, AbisError> {
    Ok(RequestRow {
        request_id: request.request_id.clone(),
        operation: request.operation.id().to_owned(),
        digest: digest.to_vec(),
        response: serde_json::to_string(response).map_err(|_| AbisError::Corrupt("an answer does not serialise"))?,
    })
}

/// The JSON text of a response.
#[must_use]
pub fn to_json(response: &Response) -> Value {
    serde_json::to_value(response).unwrap_or(Value::Null)
}

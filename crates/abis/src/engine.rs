//! The ABIS engine: MOSIP ABIS requests served from an in-memory multi-modal gallery that is
//! loaded from the encrypted reference table at start and kept in step with every insert and
//! delete through the change log (`crate::shard`), or, with `shards > 1`, fanned out to the
//! shard workers that hold the gallery between them.
//!
//! Durability and idempotency: an insert or delete commits its reference row (or its removal)
//! and the answer to its request id in one transaction, and only then touches the in-memory
//! gallery, which is rebuilt from the table at every start; so a crash loses nothing that was
//! answered. A request id seen before is answered with the stored answer, not executed again
//! (MOSIP retries requests whose answer it did not receive); a request id reused for a different
//! request is refused. The templates of each reference are sealed under a data key of their own
//! in the key vault (`IdRepo::seal_new`), so a delete erases them everywhere.

use crate::biosdk::Extract;
use crate::mosip::{self, Body, Candidate, CandidateList, FailureReason, ModalityScore, Operation, Request, Response};
use crate::shard::{self, SearchParams, ShardAnswer, ShardGallery, seq_id};
use crate::{AbisError, Fetch, FetchError};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tessera_biometrics::cbeff;
use tessera_biometrics::fusion::{self, Thresholds};
use tessera_biometrics::templates::{ExtractError, TemplateSet};
use tessera_idrepo::IdRepo;
use tessera_store::abis::{self as rows, RequestRow};
use tessera_store::jobs::{self, JobKind};
use tessera_store::{StoreError, UnixMillis};

/// The kind of sealed item a reference's template set is (`IdRepo::seal_new`).
pub const SEALED_KIND: &str = "abis-templates";
/// Most shards a gallery may be split into.
pub const SHARDS_MAX: u32 = 256;
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
    /// Shards the gallery is split into (1: this process holds all of it; more: searches fan
    /// out to the `--role worker --abis-shard i` processes through the job queue).
    pub shards: u32,
    /// How long a fanned-out search waits for every shard.
    pub shard_timeout: Duration,
}

impl Default for AbisConfig {
    fn default() -> Self {
        AbisConfig {
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            candidates_max: tessera_biometrics::iris_gallery::CANDIDATES_MAX,
            target_fpir_default: fusion::TARGET_FPIR_DEFAULT,
            review_decades: fusion::REVIEW_DECADES_DEFAULT,
            shards: 1,
            shard_timeout: SHARD_TIMEOUT_DEFAULT,
        }
    }
}

/// Default for `AbisConfig::shard_timeout`.
pub const SHARD_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// First and longest pause between looks at a fanned-out search's answers.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);

/// Where searches run.
#[derive(Debug)]
enum Searcher {
    /// The whole gallery, in this process.
    Local(ShardGallery),
    /// Fanned out to this many shard workers.
    Fanout(i64),
}

/// The engine. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    repo: IdRepo,
    fetch: Arc<dyn Fetch>,
    /// Turns images (CBEFF formats 7, 8, 9) into templates; `None`: images are not used.
    extractor: Option<Arc<dyn Extract>>,
    cfg: AbisConfig,
    searcher: Searcher,
    in_flight: AtomicUsize,
}

/// Counts a request as pending while it runs.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Opens the engine. With one shard it loads every reference into the in-memory gallery
    /// (`progress` is called after each page with (loaded, total)); with more it holds nothing
    /// and searches through the shard workers.
    ///
    /// # Errors
    /// A shard count outside `1..=SHARDS_MAX`; storage, vault or keystore errors; a reference
    /// that does not open (tampered) is an error, not a silent gap in de-duplication.
    pub async fn open(
        repo: IdRepo,
        fetch: Arc<dyn Fetch>,
        cfg: AbisConfig,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Self, AbisError> {
        if !(1..=SHARDS_MAX).contains(&cfg.shards) {
            return Err(AbisError::Corrupt("abis.shards must be 1..=256"));
        }
        let searcher = if cfg.shards == 1 {
            let total = usize::try_from(rows::count(repo.db()).await?).unwrap_or(0);
            let local = ShardGallery::open(repo.clone(), 0, 1, cfg.threads, &mut |loaded| progress(loaded, total.max(loaded))).await?;
            progress(local.len(), local.len());
            Searcher::Local(local)
        } else {
            Searcher::Fanout(i64::from(cfg.shards))
        };
        Ok(Engine { repo, fetch, extractor: None, cfg, searcher, in_flight: AtomicUsize::new(0) })
    }

    /// Extracts templates from the images of fetched documents with `extractor` (a MOSIP
    /// BioSDK service: `crate::biosdk`).
    #[must_use]
    pub fn with_extractor(mut self, extractor: Arc<dyn Extract>) -> Self {
        self.extractor = Some(extractor);
        self
    }

    /// References held in this process's memory (none when searches fan out to shards).
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.searcher {
            Searcher::Local(g) => g.len(),
            Searcher::Fanout(_) => 0,
        }
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

    /// Inserts a template set the caller already holds (Tessera's own registration pipeline,
    /// which has no datashare to fetch from) as request `request_id`: durable and idempotent like
    /// a MOSIP Insert (a retried request id gets the stored answer).
    pub async fn insert_set(&self, request_id: &str, reference_id: &str, set: &TemplateSet, now: UnixMillis) -> Response {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        let request = Request {
            operation: Operation::Insert,
            request_id: request_id.to_owned(),
            request_time: String::new(),
            body: Body::Insert { reference_id: reference_id.to_owned(), reference_url: String::new() },
        };
        let bytes = set.to_bytes();
        let digest = tessera_crypto::digest::sha256(&[b"tessera-insert-set\0", reference_id.as_bytes(), b"\0", &bytes]).to_vec();
        let result = async {
            if let Some(previous) = self.answered(&request, &digest, now).await? {
                return Ok(previous);
            }
            if rows::reference(self.repo.db(), reference_id).await?.is_some() {
                let r = Response::failure(request.operation.id(), &request.request_id, FailureReason::ReferenceIdExists, now);
                return self.remember(&request, &digest, r, now).await;
            }
            self.insert_templates(&request, reference_id, set, &digest, now).await
        }
        .await;
        result.unwrap_or_else(|e| self.internal(&request, &e, now))
    }

    /// Identifies an inserted reference against the rest of the gallery as request `request_id`
    /// (idempotent: a retried request id gets the answer first given).
    pub async fn identify_reference(&self, request_id: &str, reference_id: &str, now: UnixMillis) -> Response {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.in_flight);
        let identify = mosip::Identify {
            reference_id: Some(reference_id.to_owned()),
            reference_url: None,
            max_results: None,
            target_fpir: None,
            gallery: None,
        };
        let request = Request {
            operation: Operation::Identify,
            request_id: request_id.to_owned(),
            request_time: String::new(),
            body: Body::Identify(identify.clone()),
        };
        let digest = tessera_crypto::digest::sha256(&[b"tessera-identify-reference\0", reference_id.as_bytes()]).to_vec();
        let result = async {
            if let Some(previous) = self.answered(&request, &digest, now).await? {
                return Ok(previous);
            }
            self.identify(&request, &identify, &digest, now).await
        }
        .await;
        result.unwrap_or_else(|e| self.internal(&request, &e, now))
    }

    /// Deletes a reference as request `request_id` (idempotent).
    pub async fn delete_reference(&self, request_id: &str, reference_id: &str, now: UnixMillis) -> Response {
        let request = Request {
            operation: Operation::Delete,
            request_id: request_id.to_owned(),
            request_time: String::new(),
            body: Body::Delete { reference_id: reference_id.to_owned() },
        };
        let digest = tessera_crypto::digest::sha256(&[b"tessera-delete-reference\0", reference_id.as_bytes()]).to_vec();
        let result = async {
            if let Some(previous) = self.answered(&request, &digest, now).await? {
                return Ok(previous);
            }
            self.delete(&request, reference_id, &digest, now).await
        }
        .await;
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

    /// `remember`, except for an internal error (an extractor that is down): that is not the
    /// request's answer, so a retry under the same request id runs again.
    async fn remember_final(
        &self,
        request: &Request,
        digest: &[u8],
        response: Response,
        reason: FailureReason,
        now: UnixMillis,
    ) -> Result<Response, AbisError> {
        if reason == FailureReason::InternalError { Ok(response) } else { self.remember(request, digest, response, now).await }
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
                return self.remember_final(request, digest, r, reason, now).await;
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
        match rows::insert_reference(&mut tx, &id, reference_id, &sealed, now).await {
            Ok(_) => {}
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
        }
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
        self.catch_up().await;
        Ok(ok)
    }

    async fn delete(&self, request: &Request, reference_id: &str, digest: &[u8], now: UnixMillis) -> Result<Response, AbisError> {
        let mut tx = self.repo.db().begin().await?;
        let Some((_, id)) = rows::delete_reference(&mut tx, reference_id, now).await? else {
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
        self.catch_up().await;
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
            let Some((id, set)) = shard::open_references(&self.repo, std::slice::from_ref(&row)).await?.pop() else {
                return self.remember(request, digest, fail(FailureReason::ReferenceIdNotFound), now).await;
            };
            (set, Some(id))
        } else {
            let url = identify.reference_url.as_deref().unwrap_or("");
            match self.fetch_templates(url).await {
                Ok(set) => (set, None),
                Err(reason) => return self.remember_final(request, digest, fail(reason), reason, now).await,
            }
        };
        let restrict: Option<HashSet<u64>> = match &identify.gallery {
            None => None,
            Some(ids) => Some(rows::seqs(self.repo.db(), ids).await?.into_iter().map(|(_, s)| seq_id(s)).collect()),
        };
        let k = identify.max_results.unwrap_or(self.cfg.candidates_max).clamp(1, self.cfg.candidates_max);
        let target = identify.target_fpir.unwrap_or(self.cfg.target_fpir_default);
        let list = self.search(probe, exclude, restrict, k, target, now).await?;
        let mut r = Response::success(Operation::Identify, &request.request_id, now);
        r.candidate_list = Some(list);
        self.remember(request, digest, r, now).await
    }

    /// Applies committed changes to the local gallery now (after an insert or delete), so the
    /// next search need not; a failure is only logged: every search catches up first anyway.
    async fn catch_up(&self) {
        if let Searcher::Local(g) = &self.searcher
            && let Err(e) = g.sync().await
        {
            tracing::warn!(code = e.code(), "the ABIS gallery could not catch up now; the next search will");
        }
    }

    /// Searches the gallery (locally or through the shards) and maps the hits to reference ids.
    async fn search(
        &self,
        probe: TemplateSet,
        exclude: Option<u64>,
        restrict: Option<HashSet<u64>>,
        k: usize,
        target: u32,
        now: UnixMillis,
    ) -> Result<CandidateList, AbisError> {
        // Caught up once: the size below and the search see the same gallery.
        if let Searcher::Local(g) = &self.searcher {
            g.sync().await?;
        }
        let n = match (&restrict, &self.searcher) {
            (Some(r), _) => r.len(),
            (None, Searcher::Local(g)) => g.len(),
            (None, Searcher::Fanout(_)) => usize::try_from(rows::count(self.repo.db()).await?).unwrap_or(0),
        };
        let thresholds = Thresholds::new(n, target, self.cfg.review_decades);
        let params = SearchParams { k, min_evidence: thresholds.review, exclude, restrict };
        let answer = match &self.searcher {
            Searcher::Local(g) => g.search(probe, params).await?,
            Searcher::Fanout(shards) => self.fan_out(&probe, &params, *shards, now).await?,
        };
        let seqs: Vec<i64> = answer.hits.iter().filter_map(|h| i64::try_from(h.id).ok()).collect();
        // A reference deleted since the search is left out.
        let reference_of: HashMap<u64, String> =
            rows::reference_ids(self.repo.db(), &seqs).await?.into_iter().map(|(seq, r)| (seq_id(seq), r)).collect();
        let decision = thresholds.decide(answer.hits.iter().find(|h| reference_of.contains_key(&h.id)).map(|h| h.evidence));
        let candidates: Vec<Candidate> = answer
            .hits
            .iter()
            .filter_map(|h| {
                let reference_id = reference_of.get(&h.id)?.clone();
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
    }

    /// Fans a search out to every shard through the job queue and merges their answers. The
    /// probe is sealed under a key of its own, destroyed when the search is over; a search
    /// abandoned by a crash is cleaned up by housekeeping (`sweep_searches`).
    async fn fan_out(&self, probe: &TemplateSet, params: &SearchParams, shards: i64, now: UnixMillis) -> Result<ShardAnswer, AbisError> {
        let db = self.repo.db();
        let (id, sealed) = self.repo.seal_new(shard::PROBE_KIND, &probe.to_bytes(), now).await?;
        let row = rows::SearchRow { id: id.clone(), shards, params: params.to_json().to_string(), probe: sealed };
        if let Err(e) = queue_search(db, &row, now).await {
            // No search row refers to the probe's key: destroy it now (housekeeping cannot).
            if let Err(d) = self.repo.destroy_sealed(&id).await {
                tracing::error!(code = d.code(), "a probe key outlived its failed search");
            }
            return Err(e.into());
        }
        let started = std::time::Instant::now();
        let mut pause = POLL_FIRST;
        let answers = loop {
            let got = rows::search_results(db, &id).await?;
            if got.len() >= usize::try_from(shards).unwrap_or(usize::MAX) {
                break Ok(got);
            }
            if started.elapsed() >= self.cfg.shard_timeout {
                break Err(AbisError::ShardTimeout(u64::try_from(self.cfg.shard_timeout.as_millis()).unwrap_or(u64::MAX)));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        };
        // The probe's key first: if that fails the search row stays for housekeeping to retry.
        if self.repo.destroy_sealed(&id).await.is_ok() {
            rows::delete_search(db, &id, shards).await?;
        }
        let parsed = answers?
            .iter()
            .map(|(_, hits)| {
                serde_json::from_str(hits)
                    .map_err(|_| AbisError::Corrupt("a shard's answer is not JSON"))
                    .and_then(|v| ShardAnswer::from_json(&v))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(shard::merge(parsed, params.k))
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
        let birs = self.extract_images(birs).await?;
        TemplateSet::from_birs(&birs).map_err(|e| {
            tracing::warn!(error = %e, "no usable templates in a CBEFF document");
            match e {
                ExtractError::NoData => FailureReason::CbeffHasNoData,
                _ => FailureReason::InvalidCbeff,
            }
        })
    }

    /// With an extractor, replaces the document's images by the templates extracted from them
    /// (the images are checked records already: `cbeff::parse` and the ISO parsers ran).
    async fn extract_images(&self, birs: Vec<cbeff::Bir>) -> Result<Vec<cbeff::Bir>, FailureReason> {
        let Some(extractor) = &self.extractor else { return Ok(birs) };
        let (images, mut rest): (Vec<cbeff::Bir>, Vec<cbeff::Bir>) = birs.into_iter().partition(is_image);
        if images.is_empty() {
            return Ok(rest);
        }
        // Only well-formed records leave the process.
        if images.iter().any(|b| tessera_biometrics::iso19794::parse(&b.bdb).is_err()) {
            tracing::warn!("a malformed image record was refused before extraction");
            return Err(FailureReason::InvalidCbeff);
        }
        let extracted = extractor.extract(&images).await.map_err(|e| {
            tracing::warn!(code = e.code(), error = %e, images = images.len(), "template extraction failed");
            match e {
                crate::biosdk::ExtractorError::Refused(_) => FailureReason::InvalidCbeff,
                _ => FailureReason::InternalError,
            }
        })?;
        rest.extend(extracted);
        Ok(rest)
    }
}

/// A finger image record (CBEFF format `Mosip`/7): the only images an extractor is sent (iris
/// and face need Tessera's own templates; their images stay here and are ignored).
fn is_image(b: &cbeff::Bir) -> bool {
    b.bdb_info.format_type() == Some(7) && b.bdb_info.bio_types.first() == Some(&cbeff::BioType::Finger)
}

/// The search row and one job per shard, in one transaction.
async fn queue_search(db: &tessera_store::Db, row: &rows::SearchRow, now: UnixMillis) -> Result<(), StoreError> {
    let mut tx = db.begin().await?;
    rows::insert_search(&mut tx, row, now).await?;
    for i in 0..row.shards {
        let payload = json!({ "search_id": row.id, "shard": i });
        jobs::enqueue_in(&mut tx, JobKind::AbisSearchShard, &rows::shard_lane(i), &payload, &rows::search_job_key(&row.id, i), now).await?;
    }
    tx.commit().await
}

/// Removes searches older than `before` that their coordinator abandoned (it crashed or gave up
/// waiting): their probe keys and rows. Returns how many.
///
/// # Errors
/// Storage or vault errors.
pub async fn sweep_searches(repo: &IdRepo, before: UnixMillis) -> Result<usize, AbisError> {
    let stale = rows::stale_searches(repo.db(), before, 1000).await?;
    for (id, shards) in &stale {
        repo.destroy_sealed(id).await?;
        rows::delete_search(repo.db(), id, *shards).await?;
    }
    Ok(stale.len())
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

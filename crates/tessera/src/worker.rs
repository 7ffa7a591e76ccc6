//! The background worker: leases jobs from the database queue, runs them, records the outcome;
//! and, between jobs, housekeeping (reaping expired leases, requesting UIN pool refills,
//! signing an audit checkpoint over new entries).
//! Between jobs, too, it delivers due notifications from the outbox (at most
//! `notifications.batch` per poll interval), so a burst of messages never starves the pipeline
//! and the pipeline never starves messages.
//! Stops between jobs when shutdown is signalled; a job cut off mid-way is retried after its
//! lease expires, which is why every handler is idempotent.
//!
//! A process that holds an ABIS shard (`--abis-shard i`) runs a second loop that leases only
//! that shard's lane, so fanned-out searches never queue behind other jobs, and keeps the
//! shard in step with the change log while idle.

use crate::config::Config;
use rand::SeedableRng;
use std::time::Duration;
use tessera_abis::shard::ShardGallery;
use tessera_idrepo::IdRepo;
use tessera_notify::Notifier;
use tessera_registration::{Registration, StageRun};
use tessera_store::jobs::{self, JobKind, Leased};
use tessera_store::{Db, now_ms, uin_pool};
use tokio::sync::watch;

/// Runs until `shutdown` turns true.
pub async fn run(
    repo: IdRepo,
    cfg: Config,
    registration: Option<Registration>,
    notifier: Option<Notifier>,
    mut shutdown: watch::Receiver<bool>,
) {
    let db = repo.db().clone();
    let worker_id = format!("{}-{}", hostname(), std::process::id());
    tracing::info!(worker = %worker_id, "worker started");
    let poll = Duration::from_millis(cfg.worker.poll_interval_ms);
    let housekeeping_every = Duration::from_millis(cfg.worker.housekeeping_interval_ms);
    let mut last_housekeeping: Option<tokio::time::Instant> = None;
    let mut last_notify: Option<tokio::time::Instant> = None;
    // Up to `worker.concurrency` jobs at once; each is leased on its own, so the queue's
    // guarantees (one holder per job, retries, dead letters) are unchanged.
    let concurrency = usize::try_from(cfg.worker.concurrency).unwrap_or(1).max(1);
    let shared = std::sync::Arc::new((repo.clone(), cfg.clone(), registration.clone()));
    let mut running = tokio::task::JoinSet::new();
    while !*shutdown.borrow() {
        if last_housekeeping.is_none_or(|t| t.elapsed() >= housekeeping_every) {
            housekeeping(&repo, &cfg).await;
            last_housekeeping = Some(tokio::time::Instant::now());
        }
        if let Some(n) = &notifier
            && last_notify.is_none_or(|t| t.elapsed() >= poll)
        {
            deliver_notifications(n, cfg.notifications.batch).await;
            last_notify = Some(tokio::time::Instant::now());
        }
        let leased = if running.len() < concurrency {
            match jobs::lease(&db, &worker_id, cfg.worker.lease_ms, now_ms()).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(code = e.code(), error = %e, "cannot lease a job");
                    None
                }
            }
        } else {
            None
        };
        match leased {
            Some(job) => {
                let shared = std::sync::Arc::clone(&shared);
                running.spawn(async move {
                    let (repo, cfg, registration) = &*shared;
                    execute(repo, cfg, registration.as_ref(), job, cfg.worker.lease_ms, None).await;
                });
            }
            // All slots busy: wait for one to free up.
            None if running.len() >= concurrency => {
                let _ = running.join_next().await;
            }
            // Nothing to lease: wait for the poll interval, a job to end, or shutdown.
            None => {
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    // Jobs under way finish before the worker stops (a cut-off one would be retried anyway).
    while running.join_next().await.is_some() {}
    tracing::info!(worker = %worker_id, "worker stopped");
}

/// One round of outbox delivery; a message's own failure is recorded on it, so only an
/// unreachable outbox is logged here.
async fn deliver_notifications(n: &Notifier, batch: u32) {
    match n.deliver_due(now_ms(), batch).await {
        Ok(d) if d.is_empty() => {}
        Ok(d) => {
            for (outcome, count) in [("sent", d.sent), ("retried", d.retried), ("failed", d.failed), ("unknown", d.unknown)] {
                if count > 0 {
                    metrics::counter!("tessera_notifications_total", "outcome" => outcome).increment(u64::from(count));
                }
            }
            tracing::debug!(sent = d.sent, retried = d.retried, failed = d.failed, unknown = d.unknown, "notifications delivered");
        }
        Err(e) => tracing::error!(code = e.code(), error = %e, "cannot deliver notifications"),
    }
}

/// How often an idle shard loop looks for searches (they are waited for by a person or a
/// pipeline, so this is short; a lookup is one indexed query).
const SHARD_POLL: Duration = Duration::from_millis(20);
/// An idle shard catches up with the change log this often.
const SHARD_SYNC_EVERY: Duration = Duration::from_secs(1);

/// The search loop of a shard holder: runs until `shutdown` turns true.
pub async fn run_shard(repo: IdRepo, cfg: Config, gallery: ShardGallery, mut shutdown: watch::Receiver<bool>) {
    let db = repo.db().clone();
    let lane = tessera_store::abis::shard_lane(gallery.shard());
    let worker_id = format!("{}-{}-{lane}", hostname(), std::process::id());
    tracing::info!(worker = %worker_id, "ABIS shard worker started");
    let mut last_sync = tokio::time::Instant::now();
    while !*shutdown.borrow() {
        let leased = match jobs::lease_in(&db, &worker_id, &lane, shard_lease_ms(&cfg), now_ms()).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "cannot lease a shard job");
                None
            }
        };
        if let Some(job) = leased {
            execute(&repo, &cfg, None, job, shard_lease_ms(&cfg), Some(&gallery)).await;
            last_sync = tokio::time::Instant::now();
            continue;
        }
        if last_sync.elapsed() >= SHARD_SYNC_EVERY {
            if let Err(e) = gallery.sync().await {
                tracing::error!(code = e.code(), error = %e, "the ABIS shard cannot catch up with the change log");
            }
            // A search whose worker died (kill -9) comes back to this lane when its lease
            // expires; reaping here rather than only in the common worker's housekeeping lets a
            // replacement answer it while the coordinator still waits.
            if let Err(e) = jobs::reap_expired(&db, now_ms()).await {
                tracing::error!(code = e.code(), error = %e, "cannot reap expired leases");
            }
            last_sync = tokio::time::Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(SHARD_POLL) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(worker = %worker_id, "ABIS shard worker stopped");
}

/// The lease of a shard search: a quarter of the coordinator's wait (at least 5 s; a search of a
/// million-person shard takes about a second), so a search lost with its worker is leased again
/// by the replacement while the coordinator still waits.
fn shard_lease_ms(cfg: &Config) -> i64 {
    i64::try_from(cfg.abis.shard_timeout_ms / 4).unwrap_or(i64::MAX).max(5000)
}

/// A fanned-out search older than this was abandoned by its coordinator: an hour, or twice the
/// coordinator's wait if longer (the clocks of the hosts may differ a little).
fn abandoned_search_ms(cfg: &Config) -> i64 {
    i64::try_from(cfg.abis.shard_timeout_ms.saturating_mul(2)).unwrap_or(i64::MAX).max(3600 * 1000)
}
/// Answers to ABIS request ids are kept this long for retries.
const ABIS_ANSWERS_KEPT_MS: i64 = 30 * 24 * 3600 * 1000;

async fn housekeeping(repo: &IdRepo, cfg: &Config) {
    abis_housekeeping(repo, cfg).await;
    let db = repo.db();
    if let Err(e) = tessera_idrepo::audit::checkpoint_now(db, &**repo.keystore(), now_ms()).await {
        tracing::error!(code = e.code(), error = %e, "cannot sign an audit checkpoint");
    }
    if let Err(e) = jobs::reap_expired(db, now_ms()).await {
        tracing::error!(code = e.code(), error = %e, "cannot reap expired leases");
    }
    match uin_pool::ensure_refill_requested(db, cfg.uin_pool, now_ms()).await {
        Ok(Some(id)) => tracing::info!(job = id, "UIN pool below threshold; refill requested"),
        Ok(None) => {}
        Err(e) => tracing::error!(code = e.code(), error = %e, "cannot check the UIN pool"),
    }
}

/// Prunes the ABIS change log and old request answers, and removes abandoned searches.
async fn abis_housekeeping(repo: &IdRepo, cfg: &Config) {
    let now = now_ms();
    let keep = i64::from(cfg.abis.change_retention_days) * 24 * 3600 * 1000;
    if let Err(e) = tessera_store::abis::prune_changes(repo.db(), now - keep).await {
        tracing::error!(code = e.code(), error = %e, "cannot prune the ABIS change log");
    }
    if let Err(e) = tessera_store::abis::prune_requests(repo.db(), now - ABIS_ANSWERS_KEPT_MS).await {
        tracing::error!(code = e.code(), error = %e, "cannot prune old ABIS answers");
    }
    match tessera_abis::engine::sweep_searches(repo, now.saturating_sub(abandoned_search_ms(cfg))).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(searches = n, "removed abandoned ABIS searches"),
        Err(e) => tracing::error!(code = e.code(), error = %e, "cannot remove abandoned ABIS searches"),
    }
}

async fn execute(
    repo: &IdRepo,
    cfg: &Config,
    registration: Option<&Registration>,
    job: Leased,
    lease_ms: i64,
    shard: Option<&ShardGallery>,
) {
    let db = repo.db();
    let started = std::time::Instant::now();
    let kind = job.kind.as_str();
    let lease = Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0));
    // A job that outlives its lease is abandoned here rather than racing the worker that
    // takes it over.
    let outcome = match tokio::time::timeout(lease, handle(repo, cfg, registration, &job, shard)).await {
        Ok(r) => r,
        Err(_) => Err("job exceeded its lease".to_owned()),
    };
    metrics::histogram!("tessera_job_duration_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(Some(after_ms)) => match jobs::snooze(db, &job, now_ms().saturating_add(after_ms), now_ms()).await {
            Ok(_) => tracing::debug!(job = job.id, kind, after_ms, "job waits"),
            Err(e) => tracing::error!(job = job.id, code = e.code(), error = %e, "cannot put a waiting job back"),
        },
        Ok(None) => {
            metrics::counter!("tessera_jobs_total", "kind" => kind, "outcome" => "done").increment(1);
            match jobs::complete(db, &job, now_ms()).await {
                Ok(true) => tracing::info!(
                    job = job.id,
                    kind,
                    stage = job.payload["stage"].as_str().unwrap_or(""),
                    attempt = job.attempt,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "job done"
                ),
                Ok(false) => tracing::warn!(job = job.id, kind, "job finished after its lease was lost"),
                Err(e) => tracing::error!(job = job.id, code = e.code(), error = %e, "cannot record job completion"),
            }
        }
        Err(msg) => {
            metrics::counter!("tessera_jobs_total", "kind" => kind, "outcome" => "failed").increment(1);
            match jobs::fail(db, &job, &msg, now_ms()).await {
                Ok(Some(state)) => {
                    tracing::warn!(job = job.id, kind, attempt = job.attempt, state = state.as_str(), error = %msg, "job failed")
                }
                Ok(None) => tracing::warn!(job = job.id, kind, "job failed after its lease was lost"),
                Err(e) => tracing::error!(job = job.id, code = e.code(), error = %e, "cannot record job failure"),
            }
        }
    }
}

/// Dispatch on the closed set of job kinds: adding a kind without a handler does not compile.
/// `Ok(Some(ms))`: run the job again after `ms` without counting an attempt.
async fn handle(
    repo: &IdRepo,
    cfg: &Config,
    registration: Option<&Registration>,
    job: &Leased,
    shard: Option<&ShardGallery>,
) -> Result<Option<i64>, String> {
    let db: &Db = repo.db();
    match job.kind {
        JobKind::PacketStage => {
            let Some(r) = registration else { return Err("this worker runs no registration pipeline (abis.enabled is off)".to_owned()) };
            match r.run_stage(&job.payload, now_ms()).await {
                Ok(StageRun::Done) => Ok(None),
                Ok(StageRun::Later(ms)) => Ok(Some(ms)),
                Err(e) => Err(format!("{}: {e}", e.code())),
            }
        }
        JobKind::UinPoolRefill => {
            let batch = job.payload["batch"].as_u64().and_then(|b| u32::try_from(b).ok()).unwrap_or(cfg.uin_pool.refill_batch);
            let mut rng = rand::rngs::StdRng::from_os_rng();
            uin_pool::refill(db, &cfg.uin, &mut rng, batch, now_ms()).await.map(|_| None).map_err(|e| e.to_string())
        }
        JobKind::RewrapKeys => {
            let n = repo.rewrap_keys(target_key(job)?).await.map_err(|e| e.to_string())?;
            tracing::info!(rewrapped = n, "data keys re-wrapped under the current identity key");
            Ok(None)
        }
        JobKind::ReindexLookups => {
            let n = repo.reindex_lookups(target_key(job)?).await.map_err(|e| e.to_string())?;
            tracing::info!(identities = n, "lookup digests moved to the current lookup key");
            Ok(None)
        }
        JobKind::DestroyDataKey => {
            let id = job.payload["identity_id"].as_str().ok_or("payload without identity_id")?;
            repo.destroy_data_key(id).await.map(|_| None).map_err(|e| e.to_string())
        }
        JobKind::AbisDestroyKey => {
            let id = job.payload["identity_id"].as_str().ok_or("payload without identity_id")?;
            repo.destroy_sealed(id).await.map(|_| None).map_err(|e| e.to_string())
        }
        JobKind::AbisSearchShard => {
            let Some(g) = shard else { return Err("this worker holds no ABIS shard".to_owned()) };
            let outcome = g.serve_job(&job.payload, now_ms()).await.map_err(|e| e.code().to_owned());
            if let Err(code) = &outcome
                && job.attempt >= job.max_attempts
                && let Some(search_id) = job.payload["search_id"].as_str()
            {
                // The last attempt: tell the waiting coordinator now rather than at its timeout.
                let answer = serde_json::json!({ "error": code }).to_string();
                if let Err(e) = tessera_store::abis::put_search_result(db, search_id, g.shard(), &answer, now_ms()).await {
                    tracing::error!(code = e.code(), "cannot report a failed shard search");
                }
            }
            outcome.map(|()| None)
        }
    }
}

/// The key version a rotation queued a job for (`{"key": "identity.v2"}`), if named.
fn target_key(job: &Leased) -> Result<Option<tessera_crypto::KeyId>, String> {
    job.payload["key"].as_str().map(tessera_crypto::KeyId::parse).transpose().map_err(|e| e.to_string())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "worker".to_owned(), |h| h.trim().to_owned())
}

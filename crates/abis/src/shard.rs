//! A gallery shard held in memory, kept in step with the reference table, and the search a
//! shard answers.
//!
//! References are spread over `shards` shards by `seq mod shards`. A process that holds shard
//! `i` (the single-process engine holds shard 0 of 1; a `--role worker --abis-shard i` process
//! holds shard i) loads it from the sealed table at start and then follows the ABIS change log
//! (`abis_changes`: every insert and delete, numbered in commit order, without gaps), before
//! every search and once a second when idle, so an insert answered by any process is searched by every
//! shard from then on. A follower that fell behind the pruned part of the log reloads its
//! shard.
//!
//! A fanned-out search (`Engine` with `shards > 1`) stores the probe sealed under a data key
//! of its own (`abis_searches`), queues one `AbisSearchShard` job per shard in the shard's lane,
//! and merges the shards' top-k when all have answered (`abis_search_results`). Each shard
//! answers with its best candidates above the review threshold the coordinator computed for
//! the whole gallery; a shard's index proposals include all of one whole gallery's proposals
//! that fall in it, so the merged list holds at least what one process holding everything
//! would have found.

use crate::AbisError;
use crate::engine::SEALED_KIND;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use tessera_biometrics::fusion::Modality;
use tessera_biometrics::gallery::{Gallery, Hit, ModalityEvidence, SearchOptions};
use tessera_biometrics::templates::TemplateSet;
use tessera_idrepo::IdRepo;
use tessera_store::UnixMillis;
use tessera_store::abis::{self as rows, ChangeOp};

/// The kind of sealed item a fanned-out search's probe is.
pub const PROBE_KIND: &str = "abis-probe";
/// References loaded per page at start.
const LOAD_PAGE: i64 = 2000;
/// Changes applied per round of `sync`.
const SYNC_PAGE: i64 = 2000;
/// Most ids a search restricted to a list (MOSIP's Identify `gallery`) may carry to the shards.
pub const RESTRICT_MAX: usize = 100_000;

/// How a search asks every shard (computed once by whoever answers the request).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    pub k: usize,
    /// Candidates below this fused evidence are not reported.
    pub min_evidence: f64,
    /// The probe's own reference.
    pub exclude: Option<u64>,
    /// Search only these ids.
    pub restrict: Option<HashSet<u64>>,
}

impl SearchParams {
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut restrict: Option<Vec<u64>> = self.restrict.as_ref().map(|r| r.iter().copied().collect());
        if let Some(r) = restrict.as_mut() {
            r.sort_unstable();
        }
        json!({ "k": self.k, "min_evidence": self.min_evidence, "exclude": self.exclude, "restrict": restrict })
    }

    /// # Errors
    /// `Corrupt` for a document this module did not write.
    pub fn from_json(v: &Value) -> Result<Self, AbisError> {
        let bad = || AbisError::Corrupt("stored search parameters do not parse");
        let k = v["k"].as_u64().and_then(|k| usize::try_from(k).ok()).ok_or_else(bad)?;
        let min_evidence = v["min_evidence"].as_f64().ok_or_else(bad)?;
        let exclude = match &v["exclude"] {
            Value::Null => None,
            x => Some(x.as_u64().ok_or_else(bad)?),
        };
        let restrict = match &v["restrict"] {
            Value::Null => None,
            Value::Array(ids) if ids.len() <= RESTRICT_MAX => {
                Some(ids.iter().map(|x| x.as_u64().ok_or_else(bad)).collect::<Result<_, _>>()?)
            }
            _ => return Err(bad()),
        };
        Ok(SearchParams { k, min_evidence, exclude, restrict })
    }
}

/// A shard's answer: the references it searched and its candidates, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardAnswer {
    pub searched: usize,
    pub hits: Vec<Hit>,
}

impl ShardAnswer {
    #[must_use]
    pub fn to_json(&self) -> Value {
        let hits: Vec<Value> = self
            .hits
            .iter()
            .map(|h| {
                let m: Vec<Value> = h.modalities.iter().map(|m| json!([m.modality.mosip_code(), m.score, m.evidence])).collect();
                json!({ "id": h.id, "evidence": h.evidence, "modalities": m })
            })
            .collect();
        json!({ "searched": self.searched, "hits": hits })
    }

    /// # Errors
    /// `Corrupt` for a document this module did not write, `Shard` for a shard that answered
    /// with an error.
    pub fn from_json(v: &Value) -> Result<Self, AbisError> {
        if let Some(code) = v["error"].as_str() {
            return Err(AbisError::Shard(code.chars().take(64).collect()));
        }
        let bad = || AbisError::Corrupt("a shard's answer does not parse");
        let searched = v["searched"].as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(bad)?;
        let hits = v["hits"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|h| {
                let modalities = h["modalities"]
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|m| {
                        let modality = m[0].as_str().and_then(Modality::from_mosip_code).ok_or_else(bad)?;
                        Ok(ModalityEvidence { modality, score: m[1].as_f64().ok_or_else(bad)?, evidence: m[2].as_f64().ok_or_else(bad)? })
                    })
                    .collect::<Result<_, AbisError>>()?;
                Ok(Hit { id: h["id"].as_u64().ok_or_else(bad)?, evidence: h["evidence"].as_f64().ok_or_else(bad)?, modalities })
            })
            .collect::<Result<_, AbisError>>()?;
        Ok(ShardAnswer { searched, hits })
    }
}

/// Merges the shards' answers: every candidate, best first (ties by id, as one gallery ranks
/// them), at most `k`.
#[must_use]
pub fn merge(answers: Vec<ShardAnswer>, k: usize) -> ShardAnswer {
    let searched = answers.iter().map(|a| a.searched).sum();
    let mut hits: Vec<Hit> = answers.into_iter().flat_map(|a| a.hits).collect();
    hits.sort_by(|a, b| b.evidence.total_cmp(&a.evidence).then(a.id.cmp(&b.id)));
    hits.truncate(k);
    ShardAnswer { searched, hits }
}

/// Opens and parses references' template sets, as `(gallery id, templates)`; a reference whose
/// key was destroyed meanwhile (it is being deleted) is left out.
///
/// # Errors
/// Vault or keystore errors; `Corrupt` for a set that opens but does not parse.
pub(crate) async fn open_references(repo: &IdRepo, page: &[rows::ReferenceRow]) -> Result<Vec<(u64, TemplateSet)>, AbisError> {
    let items: Vec<(&str, &[u8])> = page.iter().map(|r| (r.id.as_str(), r.templates.as_slice())).collect();
    let opened = repo.open_many(SEALED_KIND, &items).await?;
    let mut out = Vec::with_capacity(page.len());
    for (row, plain) in page.iter().zip(opened) {
        let Some(plain) = plain else { continue };
        let set = TemplateSet::from_bytes(&plain).map_err(|_| AbisError::Corrupt("a stored template set does not parse"))?;
        out.push((seq_id(row.seq), set));
    }
    Ok(out)
}

/// One shard of the gallery, in memory.
#[derive(Debug)]
pub struct ShardGallery {
    repo: IdRepo,
    shard: i64,
    shards: i64,
    threads: usize,
    gallery: Arc<RwLock<Gallery>>,
    /// The last change applied; held while syncing so two syncs do not interleave.
    synced: tokio::sync::Mutex<i64>,
}

/// A reference row's `seq` as the in-memory gallery's id.
pub(crate) fn seq_id(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

impl ShardGallery {
    /// Loads shard `shard` of `shards`. `progress` is called after each page with (loaded,
    /// pages so far).
    ///
    /// # Errors
    /// `Corrupt` for a shard outside `0..shards`; storage, vault or keystore errors; a reference
    /// that does not open (tampered) is an error, not a silent gap in de-duplication.
    pub async fn open(
        repo: IdRepo,
        shard: i64,
        shards: i64,
        threads: usize,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Self, AbisError> {
        if shards < 1 || !(0..shards).contains(&shard) {
            return Err(AbisError::Corrupt("the shard must be in 0..shards"));
        }
        let g = ShardGallery {
            repo,
            shard,
            shards,
            threads: threads.max(1),
            gallery: Arc::new(RwLock::new(Gallery::default())),
            synced: tokio::sync::Mutex::new(0),
        };
        {
            let mut synced = g.synced.lock().await;
            g.reload(&mut synced, progress).await?;
        }
        Ok(g)
    }

    #[must_use]
    pub fn shard(&self) -> i64 {
        self.shard
    }

    /// References held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.gallery.read().map_or(0, |g| g.len())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole shard again. The head is read first: a change committed after that is
    /// applied again by the next `sync`, which is harmless (insert replaces, delete of an absent
    /// id does nothing).
    async fn reload(&self, synced: &mut i64, progress: &mut (dyn FnMut(usize) + Send)) -> Result<(), AbisError> {
        let db = self.repo.db();
        let head = rows::change_head(db).await?;
        let mut gallery = Gallery::default();
        let mut after = 0;
        loop {
            let page = rows::page(db, self.shard, self.shards, after, LOAD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for (id, set) in open_references(&self.repo, &page).await? {
                gallery.insert(id, &set);
            }
            progress(gallery.len());
        }
        *self.gallery.write().map_err(|_| AbisError::Poisoned)? = gallery;
        *synced = head;
        Ok(())
    }

    /// Applies every committed change not applied yet. Returns how many changes were read.
    ///
    /// # Errors
    /// Storage, vault or keystore errors (the gallery stays as it was before the failed round).
    pub async fn sync(&self) -> Result<usize, AbisError> {
        let mut synced = self.synced.lock().await;
        let mut read = 0;
        loop {
            let (changes, oldest) = rows::changes_after(self.repo.db(), *synced, SYNC_PAGE).await?;
            if oldest.is_some_and(|o| o > synced.saturating_add(1)) {
                tracing::warn!(shard = self.shard, "the ABIS change log was pruned past this shard; reloading it");
                self.reload(&mut synced, &mut |_| {}).await?;
                continue;
            }
            let Some(last) = changes.last().map(|c| c.change) else { break };
            read += changes.len();
            // The final state of each of this shard's references touched (a seq is never reused,
            // so a delete is final).
            let mut inserted: Vec<i64> = Vec::new();
            let mut deleted: HashSet<i64> = HashSet::new();
            for c in changes.iter().filter(|c| c.seq.rem_euclid(self.shards) == self.shard) {
                match c.op {
                    ChangeOp::Insert => inserted.push(c.seq),
                    ChangeOp::Delete => {
                        deleted.insert(c.seq);
                    }
                }
            }
            inserted.retain(|s| !deleted.contains(s));
            // Rows gone by now were deleted by a later change, applied in a later round.
            let rows = rows::references_by_seq(self.repo.db(), &inserted).await?;
            let fresh = open_references(&self.repo, &rows).await?;
            {
                let mut g = self.gallery.write().map_err(|_| AbisError::Poisoned)?;
                for seq in &deleted {
                    g.remove(seq_id(*seq));
                }
                for (id, set) in &fresh {
                    g.insert(*id, set);
                }
            }
            *synced = last;
        }
        Ok(read)
    }

    /// Searches the shard as it is now, using every configured core off the async threads;
    /// callers `sync` first (the engine does once per request, also to size its thresholds).
    ///
    /// # Errors
    /// `Poisoned` when the gallery lock or the search thread panicked.
    pub async fn search(&self, probe: TemplateSet, params: SearchParams) -> Result<ShardAnswer, AbisError> {
        let gallery = Arc::clone(&self.gallery);
        let threads = self.threads;
        tokio::task::spawn_blocking(move || {
            let g = gallery.read().map_err(|_| AbisError::Poisoned)?;
            let opts = SearchOptions {
                k: params.k,
                threads,
                min_evidence: params.min_evidence,
                exclude: params.exclude,
                restrict: params.restrict.as_ref(),
            };
            let hits = g.search(&[probe], &opts).into_iter().next().unwrap_or_default();
            let searched = params.restrict.as_ref().map_or(g.len(), |r| r.iter().filter(|id| g.contains(**id)).count());
            Ok(ShardAnswer { searched, hits })
        })
        .await
        .map_err(|_| AbisError::Poisoned)?
    }

    /// Answers one `AbisSearchShard` job (payload `{"search_id", "shard"}`): opens the probe,
    /// searches, stores the answer. A search that is gone (answered, or abandoned and cleaned
    /// up) is done with nothing to do; a retried job stores nothing twice.
    ///
    /// # Errors
    /// A job for another shard, storage, vault or keystore errors (the job is retried).
    pub async fn serve_job(&self, payload: &Value, now: UnixMillis) -> Result<(), AbisError> {
        let search_id = payload["search_id"].as_str().ok_or(AbisError::Corrupt("a shard job without search_id"))?;
        if payload["shard"].as_i64() != Some(self.shard) {
            return Err(AbisError::Corrupt("a shard job for another shard"));
        }
        let db = self.repo.db();
        let Some(row) = rows::search(db, search_id).await? else { return Ok(()) };
        if row.shards != self.shards {
            // The coordinator and this worker disagree on the layout: answering would search
            // the wrong part of the gallery.
            let answer = json!({ "error": "abis_shard_layout" });
            rows::put_search_result(db, search_id, self.shard, &answer.to_string(), now).await?;
            return Ok(());
        }
        let Some(Some(plain)) = self.repo.open_many(PROBE_KIND, &[(row.id.as_str(), row.probe.as_slice())]).await?.into_iter().next()
        else {
            return Ok(());
        };
        let probe = TemplateSet::from_bytes(&plain).map_err(|_| AbisError::Corrupt("a stored probe does not parse"))?;
        let params: Value = serde_json::from_str(&row.params).map_err(|_| AbisError::Corrupt("stored search parameters do not parse"))?;
        let params = SearchParams::from_json(&params)?;
        self.sync().await?;
        let answer = self.search(probe, params).await?;
        rows::put_search_result(db, search_id, self.shard, &answer.to_json().to_string(), now).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, evidence: f64) -> Hit {
        Hit { id, evidence, modalities: vec![ModalityEvidence { modality: Modality::Iris, score: 0.2, evidence }] }
    }

    #[test]
    fn answers_and_params_round_trip() {
        let a = ShardAnswer { searched: 7, hits: vec![hit(3, 9.5), hit(1, 4.25)] };
        assert_eq!(ShardAnswer::from_json(&a.to_json()).unwrap(), a);
        let p = SearchParams { k: 5, min_evidence: 6.5, exclude: Some(9), restrict: Some([1, 2, 40].into_iter().collect()) };
        assert_eq!(SearchParams::from_json(&p.to_json()).unwrap(), p);
        let p = SearchParams { k: 30, min_evidence: 0.0, exclude: None, restrict: None };
        assert_eq!(SearchParams::from_json(&p.to_json()).unwrap(), p);
        assert!(matches!(ShardAnswer::from_json(&json!({"error": "abis_shard_layout"})), Err(AbisError::Shard(_))));
        assert!(matches!(ShardAnswer::from_json(&json!({"searched": 1, "hits": [{"id": -1}]})), Err(AbisError::Corrupt(_))));
        assert!(SearchParams::from_json(&json!({"k": 1})).is_err());
    }

    #[test]
    fn merge_ranks_across_shards_and_keeps_k() {
        let a = ShardAnswer { searched: 10, hits: vec![hit(4, 8.0), hit(2, 3.0)] };
        let b = ShardAnswer { searched: 11, hits: vec![hit(5, 9.0), hit(1, 3.0)] };
        let m = merge(vec![a, b], 3);
        assert_eq!(m.searched, 21);
        assert_eq!(m.hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![5, 4, 1]);
    }
}

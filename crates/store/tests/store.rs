//! The storage test suite: every scenario runs on SQLite and on PostgreSQL, each in its own
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing
//! database (see `tessera_testkit::storage_tests!`).

use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashSet;
use tessera_core::{IdRules, Uin};
use tessera_store::jobs::{self, JobKind, JobState};
use tessera_store::uin_pool::{self, PoolConfig};
use tessera_store::{Db, StoreError};

tessera_testkit::storage_tests!(
    migrations_are_idempotent,
    concurrent_first_opens_all_succeed,
    pool_refill_allocate_issue,
    pool_rollback_returns_number,
    pool_concurrent_allocators_never_share,
    pool_empty_is_reported,
    pool_retires_numbers_new_rules_reject,
    pool_never_readds_a_known_number,
    pool_refill_request_is_deduplicated,
    jobs_enqueue_is_transactional_and_idempotent,
    jobs_retry_with_backoff_then_dead_letter,
    jobs_expired_lease_is_reaped_and_fenced,
    jobs_concurrent_leases_are_exclusive,
    jobs_unknown_kind_is_dead_lettered,
    abis_change_log_is_gapless_under_concurrent_writers,
    jobs_lanes_are_leased_only_by_their_workers,
    registration_rows_round_trip_and_refuse_conflicts,
);

const T0: i64 = 1_750_000_000_000;

async fn open(url: &str) -> Db {
    Db::open(url).await.expect("open database")
}

async fn migrations_are_idempotent(url: &str) {
    let db = open(url).await;
    db.migrate().await.expect("second migrate");
    let again = open(url).await;
    again.ping().await.expect("ping");
}

/// Several processes opening a fresh database at once (server + CLI) all get a migrated schema.
async fn concurrent_first_opens_all_succeed(url: &str) {
    let opens: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn({
                let url = url.to_owned();
                async move { Db::open(&url).await.map(|db| db.backend()) }
            })
        })
        .collect();
    for o in opens {
        o.await.unwrap().expect("open while others migrate");
    }
}

async fn pool_refill_allocate_issue(url: &str) {
    let db = open(url).await;
    let rules = IdRules::uin_default();
    let added = uin_pool::refill(&db, &rules, &mut StdRng::seed_from_u64(1), 200, T0).await.unwrap();
    assert_eq!(added, 200);
    assert_eq!(uin_pool::stats(&db).await.unwrap().unused, 200);

    let mut tx = db.begin().await.unwrap();
    let uin = uin_pool::allocate(&mut tx, &rules, T0).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(uin_pool::state_of(&db, &uin).await.unwrap().as_deref(), Some("ASSIGNED"));

    let mut tx = db.begin().await.unwrap();
    uin_pool::mark_issued(&mut tx, &uin, T0).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(uin_pool::state_of(&db, &uin).await.unwrap().as_deref(), Some("ISSUED"));

    // Issuing again, or issuing a number never allocated, is refused.
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(uin_pool::mark_issued(&mut tx, &uin, T0).await, Err(StoreError::UinNotAssigned)));
    let stranger = Uin::generate(&rules, &mut StdRng::seed_from_u64(999)).unwrap();
    assert!(matches!(uin_pool::mark_issued(&mut tx, &stranger, T0).await, Err(StoreError::UinNotAssigned)));
    drop(tx);

    let s = uin_pool::stats(&db).await.unwrap();
    assert_eq!((s.unused, s.assigned, s.issued), (199, 0, 1));
}

async fn pool_rollback_returns_number(url: &str) {
    let db = open(url).await;
    let rules = IdRules::uin_default();
    uin_pool::refill(&db, &rules, &mut StdRng::seed_from_u64(2), 5, T0).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    let uin = uin_pool::allocate(&mut tx, &rules, T0).await.unwrap();
    drop(tx); // rolled back: the caller's identity was never created
    assert_eq!(uin_pool::state_of(&db, &uin).await.unwrap().as_deref(), Some("UNUSED"));
    assert_eq!(uin_pool::stats(&db).await.unwrap().unused, 5);
}

async fn pool_concurrent_allocators_never_share(url: &str) {
    const WORKERS: usize = 8;
    const EACH: usize = 25;
    let db = open(url).await;
    let rules = IdRules::uin_default();
    uin_pool::refill(&db, &rules, &mut StdRng::seed_from_u64(3), 250, T0).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..WORKERS {
        let db = db.clone();
        let rules = rules.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..EACH {
                let mut tx = db.begin().await.unwrap();
                let uin = uin_pool::allocate(&mut tx, &rules, T0).await.unwrap();
                uin_pool::mark_issued(&mut tx, &uin, T0).await.unwrap();
                tx.commit().await.unwrap();
                got.push(uin);
            }
            got
        }));
    }
    let mut all = HashSet::new();
    for h in handles {
        for uin in h.await.unwrap() {
            assert!(all.insert(uin), "a UIN was handed out twice");
        }
    }
    assert_eq!(all.len(), WORKERS * EACH);
    let s = uin_pool::stats(&db).await.unwrap();
    assert_eq!((s.unused, s.issued), (50, 200));
}

async fn pool_empty_is_reported(url: &str) {
    let db = open(url).await;
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(uin_pool::allocate(&mut tx, &IdRules::uin_default(), T0).await, Err(StoreError::UinPoolEmpty)));
}

async fn pool_retires_numbers_new_rules_reject(url: &str) {
    let db = open(url).await;
    let old_rules = IdRules::uin_default();
    let mut rng = StdRng::seed_from_u64(4);
    let first = Uin::generate(&old_rules, &mut rng).unwrap();
    let second = Uin::generate(&old_rules, &mut rng).unwrap();
    uin_pool::insert_unused(&db, std::slice::from_ref(&first), T0).await.unwrap();
    uin_pool::insert_unused(&db, std::slice::from_ref(&second), T0 + 1).await.unwrap();
    // The country now restricts a 4-digit block that the first pooled number contains.
    let mut new_rules = old_rules.clone();
    new_rules.restricted_numbers.push(first.expose()[3..7].to_owned());
    assert!(Uin::parse_with(second.expose(), &new_rules).is_ok(), "fixture: second must pass the new rules");

    let mut tx = db.begin().await.unwrap();
    let got = uin_pool::allocate(&mut tx, &new_rules, T0).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(got, second);
    assert_eq!(uin_pool::state_of(&db, &first).await.unwrap().as_deref(), Some("RETIRED"));
}

async fn pool_never_readds_a_known_number(url: &str) {
    let db = open(url).await;
    let rules = IdRules::uin_default();
    let uin = Uin::generate(&rules, &mut StdRng::seed_from_u64(5)).unwrap();
    assert_eq!(uin_pool::insert_unused(&db, std::slice::from_ref(&uin), T0).await.unwrap(), 1);
    let mut tx = db.begin().await.unwrap();
    assert_eq!(uin_pool::allocate(&mut tx, &rules, T0).await.unwrap(), uin);
    uin_pool::mark_issued(&mut tx, &uin, T0).await.unwrap();
    tx.commit().await.unwrap();
    // A later batch that happens to draw the same number does not bring it back as UNUSED.
    assert_eq!(uin_pool::insert_unused(&db, std::slice::from_ref(&uin), T0).await.unwrap(), 0);
    assert_eq!(uin_pool::state_of(&db, &uin).await.unwrap().as_deref(), Some("ISSUED"));
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(uin_pool::allocate(&mut tx, &rules, T0).await, Err(StoreError::UinPoolEmpty)));
}

async fn pool_refill_request_is_deduplicated(url: &str) {
    let db = open(url).await;
    let cfg = PoolConfig { refill_threshold: 10, refill_batch: 40 };
    let first = uin_pool::ensure_refill_requested(&db, cfg, T0).await.unwrap();
    assert!(first.is_some());
    assert_eq!(uin_pool::ensure_refill_requested(&db, cfg, T0).await.unwrap(), None, "second request is a duplicate");
    let job = jobs::lease(&db, "w1", 60_000, T0).await.unwrap().expect("refill job");
    assert_eq!(job.kind, JobKind::UinPoolRefill);
    assert_eq!(job.payload["batch"], 40);
    assert_eq!(uin_pool::ensure_refill_requested(&db, cfg, T0).await.unwrap(), None, "a running refill is not requested again");
    // The job "succeeds" without adding enough numbers: the still-low pool gets a new refill.
    assert!(jobs::complete(&db, &job, T0).await.unwrap());
    let second = uin_pool::ensure_refill_requested(&db, cfg, T0).await.unwrap();
    assert!(second.is_some() && second != first);
    let job = jobs::lease(&db, "w1", 60_000, T0).await.unwrap().expect("second refill job");
    uin_pool::refill(&db, &IdRules::uin_default(), &mut StdRng::seed_from_u64(6), 40, T0).await.unwrap();
    assert!(jobs::complete(&db, &job, T0).await.unwrap());
    // Above the threshold: nothing to request.
    assert_eq!(uin_pool::unused_count(&db).await.unwrap(), 40);
    assert_eq!(uin_pool::ensure_refill_requested(&db, cfg, T0).await.unwrap(), None);
}

async fn jobs_enqueue_is_transactional_and_idempotent(url: &str) {
    let db = open(url).await;
    let payload = serde_json::json!({"batch": 1});
    let mut tx = db.begin().await.unwrap();
    assert!(jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &payload, "k1", T0).await.unwrap().is_some());
    drop(tx);
    assert!(jobs::list(&db, None, 10).await.unwrap().is_empty(), "rolled-back enqueue left a job");

    let mut tx = db.begin().await.unwrap();
    let id = jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &payload, "k1", T0).await.unwrap();
    assert!(id.is_some());
    assert_eq!(jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &payload, "k1", T0).await.unwrap(), None);
    tx.commit().await.unwrap();
    assert_eq!(jobs::list(&db, None, 10).await.unwrap().len(), 1);

    let mut tx = db.begin().await.unwrap();
    assert!(matches!(jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &payload, "", T0).await, Err(StoreError::Invalid(_))));
    assert!(matches!(jobs::list(&db, None, 0).await, Err(StoreError::Invalid(_))));
}

async fn enqueue_one(db: &Db, key: &str, at: i64) -> i64 {
    let mut tx = db.begin().await.unwrap();
    let id = jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &serde_json::json!({"batch": 1}), key, at).await.unwrap();
    tx.commit().await.unwrap();
    id.unwrap()
}

async fn jobs_retry_with_backoff_then_dead_letter(url: &str) {
    let db = open(url).await;
    let id = enqueue_one(&db, "retry", T0).await;
    let max = JobKind::UinPoolRefill.max_attempts();
    let mut now = T0;
    for attempt in 1..=max {
        let job = jobs::lease(&db, "w", 60_000, now).await.unwrap().expect("due job");
        assert_eq!((job.id, job.attempt), (id, attempt));
        let state = jobs::fail(&db, &job, "boom", now).await.unwrap();
        if attempt < max {
            assert_eq!(state, Some(JobState::Ready));
            // Not due before its backoff has passed.
            let wait = jobs::backoff_ms(attempt);
            assert!(jobs::lease(&db, "w", 60_000, now + wait - 1).await.unwrap().is_none());
            now += wait;
        } else {
            assert_eq!(state, Some(JobState::Dead));
        }
    }
    assert!(jobs::lease(&db, "w", 60_000, now + 1_000_000_000).await.unwrap().is_none(), "dead jobs never run");
    let dead = jobs::list(&db, Some(JobState::Dead), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("boom"));

    jobs::redrive(&db, id, now).await.unwrap();
    let job = jobs::lease(&db, "w", 60_000, now).await.unwrap().expect("redriven job");
    assert_eq!(job.attempt, 1);
    assert!(jobs::complete(&db, &job, now).await.unwrap());
    assert!(matches!(jobs::redrive(&db, id, now).await, Err(StoreError::JobState(_))), "only dead jobs are redriven");
}

async fn jobs_expired_lease_is_reaped_and_fenced(url: &str) {
    let db = open(url).await;
    enqueue_one(&db, "lease", T0).await;
    let stale = jobs::lease(&db, "crashed", 1000, T0).await.unwrap().unwrap();
    assert!(jobs::lease(&db, "other", 1000, T0).await.unwrap().is_none(), "a leased job is not handed out twice");
    assert_eq!(jobs::reap_expired(&db, T0 + 999).await.unwrap(), 0, "lease still valid");
    assert_eq!(jobs::reap_expired(&db, T0 + 1001).await.unwrap(), 1);
    let fresh = jobs::lease(&db, "other", 1000, T0 + 1001).await.unwrap().expect("reaped job is due again");
    assert_eq!(fresh.attempt, 2);
    // The crashed worker comes back: its outcome no longer counts.
    assert!(!jobs::complete(&db, &stale, T0 + 1002).await.unwrap());
    assert_eq!(jobs::fail(&db, &stale, "late", T0 + 1002).await.unwrap(), None);
    assert!(jobs::complete(&db, &fresh, T0 + 1003).await.unwrap());
    assert_eq!(jobs::list(&db, Some(JobState::Done), 10).await.unwrap().len(), 1);
}

async fn jobs_concurrent_leases_are_exclusive(url: &str) {
    let db = open(url).await;
    for i in 0..40 {
        enqueue_one(&db, &format!("c{i}"), T0).await;
    }
    let mut handles = Vec::new();
    for w in 0..4 {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(job) = jobs::lease(&db, &format!("w{w}"), 60_000, T0).await.unwrap() {
                assert!(jobs::complete(&db, &job, T0).await.unwrap());
                ids.push(job.id);
            }
            ids
        }));
    }
    let mut seen = HashSet::new();
    for h in handles {
        for id in h.await.unwrap() {
            assert!(seen.insert(id), "job {id} leased twice");
        }
    }
    assert_eq!(seen.len(), 40);
}

async fn jobs_unknown_kind_is_dead_lettered(url: &str) {
    let db = open(url).await;
    // A row written by a newer version (or by hand) with a kind this build does not know.
    let sql = "INSERT INTO jobs (kind, payload, idempotency_key, state, attempts, max_attempts, run_at_ms, created_at_ms, updated_at_ms) \
               VALUES ('from_the_future', '{}', 'x', 'ready', 0, 3, $1, $1, $1)";
    match &db {
        Db::Sqlite(p) => sqlx::query(sql).bind(T0).execute(p).await.map(|_| ()),
        Db::Postgres(p) => sqlx::query(sql).bind(T0).execute(p).await.map(|_| ()),
    }
    .unwrap();
    assert!(matches!(jobs::lease(&db, "w", 1000, T0).await, Err(StoreError::UnknownJobKind(_))));
    assert_eq!(jobs::list(&db, Some(JobState::Dead), 10).await.unwrap().len(), 1);
    assert!(jobs::lease(&db, "w", 1000, T0).await.unwrap().is_none(), "the bad row no longer blocks the queue");
}

mod blobs {
    use bytes::Bytes;
    use tessera_store::{BlobError, BlobKey, BlobStore, blobs::BLOB_BYTES_MAX};

    async fn round_trip(store: BlobStore) {
        let key = BlobKey::parse("packets/one.bin").unwrap();
        assert!(!store.exists(&key).await.unwrap());
        assert!(matches!(store.get(&key).await, Err(BlobError::NotFound)));
        store.put_new(&key, Bytes::from_static(b"first")).await.unwrap();
        assert!(matches!(store.put_new(&key, Bytes::from_static(b"second")).await, Err(BlobError::AlreadyExists)));
        assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"first"));
        store.put(&key, Bytes::from_static(b"replaced")).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"replaced"));
        let big = Bytes::from(vec![0u8; BLOB_BYTES_MAX + 1]);
        assert!(matches!(store.put(&key, big).await, Err(BlobError::TooLarge(_))));
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(!store.exists(&key).await.unwrap());
    }

    #[tokio::test]
    async fn local_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        round_trip(BlobStore::open(root.to_str().unwrap()).unwrap()).await;
        // The same store is reachable through a file:// URL, and writes land under the root.
        let store = BlobStore::open(&format!("file://{}", root.display())).unwrap();
        store.put(&BlobKey::parse("a/b").unwrap(), Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(std::fs::read(root.join("a").join("b")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn in_memory() {
        round_trip(BlobStore::open("memory://").unwrap()).await;
    }
}

/// Eight concurrent writers insert and delete references (some roll back) while a follower
/// reads the change log as a shard holder does: it must see every committed change, in order,
/// each number exactly once, and never a number it would skip.
async fn abis_change_log_is_gapless_under_concurrent_writers(url: &str) {
    use tessera_store::abis::{self, ChangeOp};
    let db = open(url).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    let mut tx = db.begin().await.unwrap();
                    abis::insert_reference(&mut tx, &format!("id-{w}-{i}"), &format!("ref-{w}-{i}"), b"sealed", T0).await.unwrap();
                    if i % 5 == 4 {
                        drop(tx); // rolled back: its number must not become a gap
                        continue;
                    }
                    tx.commit().await.unwrap();
                    if i % 3 == 0 {
                        let mut tx = db.begin().await.unwrap();
                        assert!(abis::delete_reference(&mut tx, &format!("ref-{w}-{i}"), T0).await.unwrap().is_some());
                        tx.commit().await.unwrap();
                    }
                }
            })
        })
        .collect();
    let follower = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut seen = Vec::new();
            // 8 writers × (12 inserts + 4 deletes) committed changes.
            while seen.len() < 8 * 16 {
                let (changes, _) = abis::changes_after(&db, last, 7).await.unwrap();
                for c in &changes {
                    assert_eq!(c.change, last + 1, "the follower would have skipped a change");
                    last = c.change;
                    seen.push(*c);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = follower.await.unwrap();
    assert_eq!(abis::change_head(&db).await.unwrap(), 8 * 16);
    let inserts: HashSet<i64> = seen.iter().filter(|c| c.op == ChangeOp::Insert).map(|c| c.seq).collect();
    let deletes: Vec<i64> = seen.iter().filter(|c| c.op == ChangeOp::Delete).map(|c| c.seq).collect();
    assert_eq!((inserts.len(), deletes.len()), (8 * 12, 8 * 4));
    assert!(deletes.iter().all(|d| inserts.contains(d)));
    assert_eq!(abis::count(&db).await.unwrap(), 8 * 8);
    // Pruning keeps the newest change, so a follower can always tell where the log ends.
    assert_eq!(abis::prune_changes(&db, T0 + 1).await.unwrap(), 8 * 16 - 1);
    let (rest, oldest) = abis::changes_after(&db, 0, 10).await.unwrap();
    assert_eq!((rest.len(), oldest), (1, Some(8 * 16)));
}

/// A lane's job is leased only by a worker of that lane; the common lane's only by common
/// workers.
async fn jobs_lanes_are_leased_only_by_their_workers(url: &str) {
    let db = open(url).await;
    let mut tx = db.begin().await.unwrap();
    jobs::enqueue_in(&mut tx, JobKind::AbisSearchShard, "abis-shard-1", &serde_json::json!({}), "lane-job", T0).await.unwrap();
    jobs::enqueue(&mut tx, JobKind::UinPoolRefill, &serde_json::json!({}), "common-job", T0).await.unwrap();
    tx.commit().await.unwrap();
    assert!(jobs::lease_in(&db, "w0", "abis-shard-0", 60_000, T0).await.unwrap().is_none());
    let j = jobs::lease_in(&db, "w1", "abis-shard-1", 60_000, T0).await.unwrap().unwrap();
    assert_eq!(j.kind, JobKind::AbisSearchShard);
    assert!(jobs::lease_in(&db, "w1", "abis-shard-1", 60_000, T0).await.unwrap().is_none());
    let j = jobs::lease(&db, "w", 60_000, T0).await.unwrap().unwrap();
    assert_eq!(j.kind, JobKind::UinPoolRefill);
    assert!(jobs::lease(&db, "w", 60_000, T0).await.unwrap().is_none());
    assert!(
        jobs::enqueue_in(&mut db.begin().await.unwrap(), JobKind::AbisSearchShard, &"x".repeat(65), &serde_json::json!({}), "k", T0)
            .await
            .is_err()
    );
}

async fn registration_rows_round_trip_and_refuse_conflicts(url: &str) {
    use tessera_store::registration as reg;
    let db = open(url).await;
    reg::insert_centre(&db, "10001", "Centre One", T0).await.unwrap();
    assert!(matches!(reg::insert_centre(&db, "10001", "Again", T0).await, Err(StoreError::Conflict)));
    assert!(matches!(reg::insert_centre(&db, "10002", "", T0).await, Err(StoreError::Invalid(_))));
    reg::insert_machine(&db, "20001", "10001", &[7u8; 32], T0).await.unwrap();
    assert!(matches!(reg::insert_machine(&db, "20001", "10001", &[8u8; 32], T0).await, Err(StoreError::Conflict)));
    assert!(reg::insert_machine(&db, "20002", "99999", &[8u8; 32], T0).await.is_err(), "unknown centre");
    assert!(reg::set_machine_status(&db, "20001", "revoked", T0 + 1).await.unwrap());
    assert_eq!(reg::machine(&db, "20001").await.unwrap().unwrap().status, "revoked");
    assert!(reg::set_machine_status(&db, "20001", "sleeping", T0 + 1).await.is_err(), "CHECK");
    reg::assign_staff(&db, "10001", "officer-1", "operator", T0).await.unwrap();
    reg::assign_staff(&db, "10001", "officer-1", "operator", T0).await.unwrap();
    assert!(reg::is_staff(&db, "10001", "officer-1", "operator").await.unwrap());
    assert!(!reg::is_staff(&db, "10001", "officer-1", "supervisor").await.unwrap());
    assert_eq!(reg::staff(&db, "10001").await.unwrap().len(), 1);

    let p = reg::NewPacket {
        rid: "10001200010000120261207091000".into(),
        digest: vec![1; 32],
        blob: "packets/x".into(),
        centre_id: "10001".into(),
        machine_id: "20001".into(),
        uploaded_by: "token:t".into(),
        stage: "validate".into(),
    };
    let mut tx = db.begin().await.unwrap();
    let seq = reg::insert_packet(&mut tx, &p, T0).await.unwrap();
    reg::add_event(&mut tx, &p.rid, "upload", "accepted", None, None, T0).await.unwrap();
    reg::add_event(&mut tx, &p.rid, "validate", "rejected", Some("schema_invalid"), Some("/fullName:required"), T0 + 5).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(reg::insert_packet(&mut tx, &p, T0).await, Err(StoreError::Conflict)));
    drop(tx);
    let mut tx = db.begin().await.unwrap();
    let u =
        reg::PacketUpdate { status: Some("rejected"), reason_code: Some(Some("schema_invalid")), flow: Some("new"), ..Default::default() };
    reg::update_packet(&mut tx, &p.rid, &u, T0 + 5).await.unwrap();
    assert!(reg::update_packet(&mut tx, "nope", &u, T0).await.is_err());
    tx.commit().await.unwrap();
    let row = reg::packet(&db, &p.rid).await.unwrap().unwrap();
    assert_eq!(
        (row.seq, row.status.as_str(), row.reason_code.as_deref(), row.flow.as_deref()),
        (seq, "rejected", Some("schema_invalid"), Some("new"))
    );
    let ev = reg::events(&db, &p.rid).await.unwrap();
    assert_eq!(ev.iter().map(|e| e.n).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(ev[1].code.as_deref(), Some("schema_invalid"));
    assert_eq!(reg::packets_by_rid(&db, &[p.rid.clone(), "missing".into()]).await.unwrap().len(), 1);
    assert_eq!(reg::list_packets(&db, Some("rejected"), 0, 10).await.unwrap().len(), 1);
    assert!(reg::list_packets(&db, Some("issued"), 0, 10).await.unwrap().is_empty());

    // Candidates are replaced, not duplicated, when a stage runs again.
    let c =
        reg::CandidateRow { candidate_rid: "r2".into(), source: "bio".into(), score: 12.5, decision: "match".into(), detail: "{}".into() };
    for _ in 0..2 {
        let mut tx = db.begin().await.unwrap();
        reg::put_candidates(&mut tx, &p.rid, "bio", std::slice::from_ref(&c)).await.unwrap();
        reg::put_demo_keys(&mut tx, &p.rid, &[vec![1; 32], vec![2; 32]]).await.unwrap();
        reg::put_demo_keys(&mut tx, "r2", &[vec![2; 32]]).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(reg::candidates(&db, &p.rid).await.unwrap(), vec![c]);
    let found = reg::find_demo_keys(&db, &[vec![1; 32], vec![2; 32]], 10).await.unwrap();
    assert_eq!(found, vec![(p.rid.clone(), 2), ("r2".to_owned(), 1)]);
    let mut tx = db.begin().await.unwrap();
    reg::delete_demo_keys(&mut tx, "r2").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(reg::find_demo_keys(&db, &[vec![2; 32]], 10).await.unwrap().len(), 1);

    // A case is opened once and decided once.
    let mut tx = db.begin().await.unwrap();
    let id = reg::open_adjudication(&mut tx, "case-1", &p.rid, T0).await.unwrap();
    assert_eq!(reg::open_adjudication(&mut tx, "case-2", &p.rid, T0).await.unwrap(), id);
    assert!(reg::decide_adjudication(&mut tx, &id, "not_duplicate", None, b"sealed", "token:a", T0 + 9).await.unwrap());
    assert!(!reg::decide_adjudication(&mut tx, &id, "duplicate", Some("r2"), b"sealed", "token:b", T0 + 9).await.unwrap());
    tx.commit().await.unwrap();
    let case = reg::adjudication(&db, &id).await.unwrap().unwrap();
    assert_eq!((case.state.as_str(), case.decision.as_deref()), ("decided", Some("not_duplicate")));
    assert_eq!(reg::adjudications(&db, Some("open"), None, 10).await.unwrap().len(), 0);
    assert_eq!(reg::adjudication_of(&db, &p.rid).await.unwrap().unwrap().id, id);
}

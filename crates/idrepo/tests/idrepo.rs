//! The identity repository on SQLite and PostgreSQL: create, read, update, versions, erasure,
//! key rotation, bulk import and the audit chain, driven through `IdRepo` as the API does.
#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tessera_core::schema::Schema;
use tessera_core::{IdRules, Uin};
use tessera_crypto::{Keystore, MasterKey, Purpose, SoftwareKeystore};
use tessera_idrepo::records::{Change, NewRecord};
use tessera_idrepo::{Actor, IdRepo, ImportLine, RepoError, audit};
use tessera_store::{BlobStore, Db, Vault, uin_pool};
use tessera_testkit::{exec_sql, storage_tests};

const NOW: i64 = 1_790_000_000_000;

struct Fixture {
    repo: IdRepo,
    ks: Arc<SoftwareKeystore>,
    url: String,
    dir: tempfile::TempDir,
}

async fn fixture(url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(url).await.unwrap();
    // SQLite: the vault is a file of its own, as in the embedded default. PostgreSQL: the same
    // test schema (the vault table has its own name).
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, NOW).unwrap());
    let rules = IdRules::uin_default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    uin_pool::refill(&db, &rules, &mut rng, 500, NOW).await.unwrap();
    let repo = IdRepo::new(db, vault, blobs, ks.clone(), Arc::new(Schema::default_schema()), rules);
    Fixture { repo, ks, url: url.to_owned(), dir }
}

fn person(name: &str) -> Value {
    json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": "1990-02-28",
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": "12 Baobab Street"}],
        "city": [{"language": "eng", "value": "Kindia"}],
        "region": [{"language": "eng", "value": "Kindia"}],
        "phone": "+224620000000"
    })
}

fn new(name: &str) -> NewRecord {
    NewRecord { record: person(name), reason: "registration".into(), ..NewRecord::default() }
}

fn change(patch: Value, expected_version: Option<i64>, reason: &str) -> Change {
    Change { patch, expected_version, reason: reason.into(), ..Change::default() }
}

fn actor() -> Actor {
    Actor { id: "token:test".into(), request_id: String::new() }
}

fn name_of(rec: &serde_json::Map<String, Value>) -> &str {
    rec["fullName"][0]["value"].as_str().unwrap()
}

async fn create_read_update_and_versions(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let c = f.repo.create(&a, new("Amina Diallo"), NOW).await.unwrap();
    assert_eq!(c.version, 1);
    assert_eq!(uin_pool::state_of(f.repo.db(), &c.uin).await.unwrap().as_deref(), Some("ISSUED"));
    let got = f.repo.get(&a, &c.uin, NOW).await.unwrap();
    assert_eq!(name_of(&got.record), "Amina Diallo");
    assert_eq!(got.sealed_with, "identity.v1");

    let v2 = f
        .repo
        .update(&a, &c.uin, change(json!({"phone": "+224620000001", "email": "a@example.org"}), Some(1), "moved"), NOW + 1)
        .await
        .unwrap();
    assert_eq!(v2, 2);
    let got = f.repo.get(&a, &c.uin, NOW).await.unwrap();
    assert_eq!(got.record["phone"], "+224620000001");
    assert_eq!(got.record["email"], "a@example.org");
    // Removing a field with null, and a stale expected version.
    let v3 = f.repo.update(&a, &c.uin, change(json!({"email": null}), None, "typo"), NOW + 2).await.unwrap();
    assert_eq!(v3, 3);
    assert!(!f.repo.get(&a, &c.uin, NOW).await.unwrap().record.contains_key("email"));
    let stale = f.repo.update(&a, &c.uin, change(json!({"phone": "+224620000002"}), Some(2), "x"), NOW).await.unwrap_err();
    assert!(matches!(stale, RepoError::VersionConflict { expected: 2, current: 3 }), "{stale:?}");
    // A patch that breaks the schema is refused with every error, and changes nothing.
    let bad = f.repo.update(&a, &c.uin, change(json!({"gender": "x", "dateOfBirth": "2999-01-01"}), None, "x"), NOW).await;
    let Err(RepoError::Invalid(errs)) = bad else { panic!("expected Invalid, got {bad:?}") };
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/dateOfBirth", "/gender"]);

    let versions = f.repo.versions(&a, &c.uin, true, NOW).await.unwrap();
    let summary: Vec<(i64, &str, &str)> = versions.iter().map(|v| (v.version, v.reason.as_str(), v.actor.as_str())).collect();
    assert_eq!(summary, [(1, "registration", "token:test"), (2, "moved", "token:test"), (3, "typo", "token:test")]);
    assert_eq!(versions[1].record.as_ref().unwrap()["email"], "a@example.org");
    assert!(f.repo.versions(&a, &c.uin, false, NOW).await.unwrap().iter().all(|v| v.record.is_none()));

    // An unknown (but valid) UIN is not found; every read above was audited and the chain holds.
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let other = Uin::generate(&IdRules::uin_default(), &mut rng).unwrap();
    assert!(matches!(f.repo.get(&a, &other, NOW).await, Err(RepoError::NotFound)));
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(v.ok(), "{v:?}");
    // create, 3 reads, 2 updates, 2 refused updates, versions ×2, the not-found read
    assert_eq!(v.entries, 1 + 3 + 2 + 2 + 2 + 1);
}

async fn invalid_records_and_duplicate_external_refs(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let mut bad = person("X");
    bad["gender"] = json!("robot");
    bad.as_object_mut().unwrap().remove("city");
    let Err(RepoError::Invalid(errs)) = f.repo.create(&a, NewRecord { record: bad, ..NewRecord::default() }, NOW).await else {
        panic!("expected Invalid")
    };
    assert_eq!(errs.len(), 2);
    let with_ref = NewRecord { external_ref: Some("LEG-1".into()), ..new("Musa Camara") };
    f.repo.create(&a, with_ref.clone(), NOW).await.unwrap();
    assert!(matches!(f.repo.create(&a, with_ref, NOW).await, Err(RepoError::DuplicateExternalRef)));
    // Nothing was issued for the refused ones.
    assert_eq!(uin_pool::stats(f.repo.db()).await.unwrap().issued, 1);
}

async fn attachments_are_sealed_and_read_back(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let mut rec = person("Awa Sow");
    rec["proofOfIdentity"] = json!({"type": "passport", "format": "pdf", "ref": "doc-1"});
    let content = b"%PDF-1.7 PASSPORT-CANARY-7731".to_vec();
    let mut n = NewRecord { record: rec.clone(), ..new("") };
    // A ref without contents is refused.
    assert!(matches!(f.repo.create(&a, n.clone(), NOW).await, Err(RepoError::BadRequest(_))));
    n.attachments.insert("doc-1".into(), content.clone());
    let c = f.repo.create(&a, n, NOW).await.unwrap();
    assert_eq!(f.repo.attachment(&a, &c.uin, "doc-1", NOW).await.unwrap(), content);
    assert!(matches!(f.repo.attachment(&a, &c.uin, "doc-2", NOW).await, Err(RepoError::NotFound)));
    // Updating another field keeps the document; the blob on disk is ciphertext.
    f.repo.update(&a, &c.uin, change(json!({"gender": "other"}), None, ""), NOW).await.unwrap();
    assert_eq!(f.repo.attachment(&a, &c.uin, "doc-1", NOW).await.unwrap(), content);
    for file in walk(&f.dir.path().join("blobs")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(14).any(|w| w == b"PASSPORT-CANAR"), "plaintext in {file:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

async fn erasure_destroys_the_data_key(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let keep = f.repo.create(&a, new("Kept Person"), NOW).await.unwrap();
    let gone = f.repo.create(&a, new("Erased Person"), NOW).await.unwrap();
    let wrapped = f.repo.vault().get(&gone.id).await.unwrap().unwrap().wrapped;
    f.repo.erase(&a, &gone.uin, NOW + 5).await.unwrap();
    assert!(matches!(f.repo.get(&a, &gone.uin, NOW).await, Err(RepoError::Gone)));
    assert!(matches!(f.repo.versions(&a, &gone.uin, true, NOW).await, Err(RepoError::Gone)));
    assert!(matches!(f.repo.erase(&a, &gone.uin, NOW).await, Err(RepoError::Gone)));
    assert!(f.repo.vault().get(&gone.id).await.unwrap().is_none());
    assert!(tessera_store::identities::lookups_of(f.repo.db(), &gone.id).await.unwrap().is_empty());
    // The queued destruction job is harmless once the key is gone, and refuses live people.
    assert!(!f.repo.destroy_data_key(&gone.id).await.unwrap());
    assert!(f.repo.destroy_data_key(&keep.id).await.is_err());
    assert_eq!(name_of(&f.repo.get(&a, &keep.uin, NOW).await.unwrap().record), "Kept Person");
    // With the files in hand: the wrapped key's bytes are nowhere in the vault any more.
    if url.starts_with("sqlite:") {
        for file in walk(f.dir.path()).into_iter().filter(|p| p.to_string_lossy().contains("vault")) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(!bytes.windows(wrapped.len()).any(|w| w == wrapped.as_slice()), "wrapped key still in {file:?}");
        }
    }
    assert!(audit::verify(f.repo.db(), &*f.ks).await.unwrap().ok());
}

async fn rotation_keeps_old_records_readable_and_jobs_move_them(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let before = f.repo.create(&a, new("Before Rotation"), NOW).await.unwrap();
    f.ks.rotate(Purpose::Identity, NOW).unwrap();
    f.ks.rotate(Purpose::Lookup, NOW).unwrap();
    let after = f.repo.create(&a, new("After Rotation"), NOW).await.unwrap();
    let b = f.repo.get(&a, &before.uin, NOW).await.unwrap();
    let c = f.repo.get(&a, &after.uin, NOW).await.unwrap();
    assert_eq!((name_of(&b.record), b.sealed_with.as_str()), ("Before Rotation", "identity.v1"));
    assert_eq!((name_of(&c.record), c.sealed_with.as_str()), ("After Rotation", "identity.v2"));
    let old_lookups = tessera_store::identities::lookups_of(f.repo.db(), &before.id).await.unwrap();
    assert_eq!(old_lookups.iter().map(|l| l.key_version).collect::<Vec<_>>(), [1]);

    assert_eq!(f.repo.rewrap_keys(None).await.unwrap(), 1);
    assert_eq!(f.repo.rewrap_keys(None).await.unwrap(), 0);
    assert_eq!(f.repo.reindex_lookups(None).await.unwrap(), 1);
    assert_eq!(f.repo.reindex_lookups(None).await.unwrap(), 0);
    let b = f.repo.get(&a, &before.uin, NOW).await.unwrap();
    assert_eq!((name_of(&b.record), b.sealed_with.as_str()), ("Before Rotation", "identity.v2"));
    let moved = tessera_store::identities::lookups_of(f.repo.db(), &before.id).await.unwrap();
    assert_eq!(moved.iter().map(|l| l.key_version).collect::<Vec<_>>(), [2]);
}

fn line(n: u64, ext: &str, record: Value) -> ImportLine {
    ImportLine { line: n, external_ref: ext.into(), record, attachments: BTreeMap::new(), reason: "migration".into() }
}

async fn import_is_idempotent_and_reports_bad_lines(url: &str) {
    let f = fixture(url).await;
    let a = Actor::cli();
    let mut bad = person("Bad");
    bad["gender"] = json!(3);
    let batch = vec![
        line(1, "R-1", person("One")),
        line(2, "R-2", person("Two")),
        line(3, "R-3", bad),
        line(4, "R-1", person("One again")),
        line(5, "", person("No ref")),
    ];
    let r = f.repo.import_batch(&a, batch.clone(), NOW).await.unwrap();
    assert_eq!((r.imported, r.already_present), (2, 0));
    let bad_lines: Vec<(u64, &str, &str)> =
        r.invalid.iter().flat_map(|l| l.problems.iter().map(move |p| (l.line, p.path.as_str(), p.code.as_str()))).collect();
    assert_eq!(bad_lines, [(3, "/record/gender", "wrong_type"), (4, "/external_ref", "external_ref_repeated"), (5, "", "bad_request")]);
    // A rerun (resume after an interruption) creates nothing new.
    let again = f.repo.import_batch(&a, batch, NOW).await.unwrap();
    assert_eq!((again.imported, again.already_present), (0, 2));
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap(), (2, 0));
    assert_eq!(uin_pool::stats(f.repo.db()).await.unwrap().issued, 2);
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(v.ok() && v.entries == 2, "{v:?}");
}

async fn audit_verify_names_the_altered_entry(url: &str) {
    let f = fixture(url).await;
    let a = actor();
    let c = f.repo.create(&a, new("Audited"), NOW).await.unwrap();
    for _ in 0..5 {
        f.repo.get(&a, &c.uin, NOW).await.unwrap();
    }
    audit::checkpoint_now(f.repo.db(), &*f.ks, NOW).await.unwrap();
    assert!(audit::verify(f.repo.db(), &*f.ks).await.unwrap().ok());

    // One changed field of entry 3.
    exec_sql(&f.url, "UPDATE audit_log SET actor = 'token:someone-else' WHERE seq = 3").await;
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(!v.ok());
    assert!(v.problems[0].starts_with("entry 3 was altered"), "{v:?}");
    // A forger who also recomputes that entry's hash breaks the link of entry 4 instead, and the
    // signed checkpoint at entry 6 no longer matches.
    exec_sql(&f.url, "UPDATE audit_log SET actor = 'token:test' WHERE seq = 3").await;
    assert!(audit::verify(f.repo.db(), &*f.ks).await.unwrap().ok());
    exec_sql(&f.url, "DELETE FROM audit_log WHERE seq = 4").await;
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(v.problems.iter().any(|p| p.starts_with("entries 4..4 are missing")), "{v:?}");
}

async fn removing_checkpoints_to_hide_a_rewrite_is_reported(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    uin_pool::refill(f.repo.db(), &IdRules::uin_default(), &mut rng, 1000, NOW).await.unwrap();
    let lines: Vec<ImportLine> = (0..1000).map(|i| line(i + 1, &format!("C-{i}"), person("Many"))).collect();
    assert_eq!(f.repo.import_batch(&Actor::cli(), lines, NOW).await.unwrap().imported, 1000);
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(v.ok() && v.signed_through == 1000, "{v:?}");
    exec_sql(&f.url, "DELETE FROM audit_checkpoints WHERE seq = 1000").await;
    let v = audit::verify(f.repo.db(), &*f.ks).await.unwrap();
    assert!(v.problems.iter().any(|p| p.starts_with("checkpoint at entry 1000 is missing")), "{v:?}");
}

storage_tests!(
    removing_checkpoints_to_hide_a_rewrite_is_reported,
    create_read_update_and_versions,
    invalid_records_and_duplicate_external_refs,
    attachments_are_sealed_and_read_back,
    erasure_destroys_the_data_key,
    rotation_keeps_old_records_readable_and_jobs_move_them,
    import_is_idempotent_and_reports_bad_lines,
    audit_verify_names_the_altered_entry,
);

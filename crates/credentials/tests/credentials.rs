//! Issuing, reading and verifying a person's credentials on SQLite and PostgreSQL, as the
//! registration pipeline and the API do: idempotent per source, superseded by the next one,
//! sealed at rest, audited, and unreadable once the person is erased.
#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use serde_json::{Value, json};
use std::sync::Arc;
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_credentials::{CredentialConfig, Credentials, sd_jwt};
use tessera_crypto::{MasterKey, SoftwareKeystore};
use tessera_idrepo::records::{Change, NewRecord};
use tessera_idrepo::{Actor, IdRepo, RepoError};
use tessera_store::{BlobStore, Db, Vault, uin_pool};
use tessera_testkit::storage_tests;

const NOW: i64 = 1_790_000_000_000;

async fn repo(url: &str, dir: &tempfile::TempDir) -> IdRepo {
    let db = Db::open(url).await.unwrap();
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, NOW).unwrap());
    let rules = IdRules::uin_default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    uin_pool::refill(&db, &rules, &mut rng, 50, NOW).await.unwrap();
    IdRepo::new(db, vault, blobs, ks, Arc::new(Schema::default_schema()), rules)
}

fn person() -> Value {
    json!({
        "fullName": [{"language": "eng", "value": "Fatoumata Camara"}],
        "dateOfBirth": "1988-11-03",
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": "7 Rue du Niger"}],
        "city": [{"language": "eng", "value": "Labe"}],
        "region": [{"language": "eng", "value": "Labe"}],
        "phone": "+224620000001"
    })
}

async fn credentials_are_issued_once_superseded_sealed_and_erased(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(url, &dir).await;
    let cfg = CredentialConfig { issuer: "https://id.example.gov".into(), ..CredentialConfig::default() };
    let creds = Credentials::new(repo.clone(), cfg).unwrap();
    let created =
        repo.create(&Actor::system(), NewRecord { record: person(), reason: "r".into(), ..NewRecord::default() }, NOW).await.unwrap();
    let uin = created.uin.clone();
    let id = repo.identity_id_of(&uin).await.unwrap();

    let first = creds.issue_for(&Actor::system(), &id, "rid:10001100010001", NOW).await.unwrap();
    // A retried job issues nothing new.
    let again = creds.issue_for(&Actor::system(), &id, "rid:10001100010001", NOW + 5).await.unwrap();
    assert_eq!(first.id, again.id);

    // An update, then its credential: the first is superseded.
    repo.update(
        &Actor::system(),
        &uin,
        Change { patch: json!({"city": [{"language": "eng", "value": "Mamou"}]}), reason: "moved".into(), ..Change::default() },
        NOW + 10,
    )
    .await
    .unwrap();
    let second = creds.issue_for(&Actor::system(), &id, "rid:10001100010002", NOW + 20).await.unwrap();
    let list = creds.list(&Actor::cli(), &uin, NOW + 30).await.unwrap();
    assert_eq!(
        list.iter().map(|c| (c.id.as_str(), c.status.as_str())).collect::<Vec<_>>(),
        vec![(second.id.as_str(), "active"), (first.id.as_str(), "superseded")]
    );

    // The newest verifies offline against the JWKS and carries the current record.
    let keys = sd_jwt::keys_of_jwks(&creds.jwks().unwrap());
    let v = sd_jwt::verify(
        list[0].credential.as_deref().unwrap(),
        &|kid| keys.get(kid).cloned(),
        Some("https://id.example.gov"),
        NOW / 1000 + 60,
    )
    .unwrap();
    assert_eq!(v.disclosed["uin"], json!(uin.expose()));
    assert_eq!(v.disclosed["city"], json!([{"language": "eng", "value": "Mamou"}]));
    assert_eq!(v.id.as_deref(), Some(second.id.as_str()));

    // At rest: sealed, nothing personal readable in the table.
    let table = dump(repo.db(), &id).await;
    assert!(table.contains(&first.id), "the rows are there");
    assert!(!table.contains("Camara") && !table.contains(uin.expose()) && !table.contains("1988-11-03"), "credential stored in the clear");

    // Audited: the issue and the read.
    let actions: Vec<String> = tessera_store::audit::read(repo.db(), 0, 1000).await.unwrap().into_iter().map(|e| e.action).collect();
    assert!(
        actions.iter().filter(|a| *a == "credential.issue").count() == 2 && actions.iter().any(|a| a == "credential.read"),
        "{actions:?}"
    );

    // Erased: the person's credentials can no longer be read or issued.
    repo.erase(&Actor::system(), &uin, NOW + 40).await.unwrap();
    assert_eq!(creds.list(&Actor::cli(), &uin, NOW + 50).await.unwrap_err().code(), RepoError::Gone.code());
    assert!(creds.issue_for(&Actor::system(), &id, "rid:10001100010003", NOW + 60).await.is_err());
    assert!(repo.open_for_person(&id, "credential", &[(first.id.as_str(), first.sealed.as_slice())]).await.unwrap().is_none());
}

/// A person's credential rows as text, the way a thief with the database would read them.
async fn dump(db: &Db, identity_id: &str) -> String {
    let mut out = String::new();
    for r in tessera_store::credentials::for_identity(db, identity_id).await.unwrap() {
        out.push_str(&format!("{} {} {} {} {}", r.id, r.identity_id, r.source, r.kid, r.status));
        out.push_str(&String::from_utf8_lossy(&r.sealed));
    }
    out
}

storage_tests!(credentials_are_issued_once_superseded_sealed_and_erased);

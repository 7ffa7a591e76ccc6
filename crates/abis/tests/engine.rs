//! The ABIS engine on SQLite and PostgreSQL, driven with MOSIP ABIS messages as MOSIP's
//! registration processor sends them: insert, identify (planted duplicates found, strangers
//! not), delete, reference count, idempotent retries, corrupt input refused with nothing
//! inserted, and the gallery rebuilt from the encrypted table after a restart.
#![allow(clippy::unwrap_used)]

use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tessera_abis::{AbisConfig, Engine, Fetch, FetchError};
use tessera_biometrics::synth::SynthEye;
use tessera_biometrics::synth_face::SynthFace;
use tessera_biometrics::synth_finger::SynthHands;
use tessera_biometrics::templates::{Eye, TemplateSet};
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_crypto::{MasterKey, SoftwareKeystore};
use tessera_idrepo::IdRepo;
use tessera_store::{BlobStore, Db, Vault};
use tessera_testkit::storage_tests;

const NOW: i64 = 1_790_000_000_000;

/// A data share in memory: referenceURL → CBEFF bytes.
#[derive(Debug, Default)]
struct Share(Mutex<HashMap<String, Vec<u8>>>);

impl Share {
    fn put(&self, url: &str, body: Vec<u8>) {
        self.0.lock().unwrap().insert(url.to_owned(), body);
    }
}

impl Fetch for Share {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>> {
        let got = self.0.lock().unwrap().get(url).cloned();
        Box::pin(async move { got.ok_or(FetchError::Unreachable("HTTP 404".into())) })
    }
}

/// A synthetic person: two eyes, a face, ten fingers.
struct Person {
    eyes: [SynthEye; 2],
    face: SynthFace,
    hands: SynthHands,
}

impl Person {
    fn random(rng: &mut impl rand::Rng) -> Self {
        Person { eyes: [SynthEye::random(rng), SynthEye::random(rng)], face: SynthFace::random(rng), hands: SynthHands::random(rng) }
    }

    /// One capture session as a MOSIP CBEFF document.
    fn cbeff(&self, rng: &mut impl rand::Rng) -> Vec<u8> {
        let set = TemplateSet {
            irises: vec![(Eye::Right, self.eyes[0].capture(rng)), (Eye::Left, self.eyes[1].capture(rng))],
            face: Some(self.face.capture(rng)),
            fingers: self.hands.capture(rng).into_iter().enumerate().map(|(i, t)| (u8::try_from(i + 1).unwrap(), t)).collect(),
        };
        tessera_biometrics::cbeff::emit(&set.to_birs("2026-11-25T10:00:00.000Z")).into_bytes()
    }
}

struct Fixture {
    repo: IdRepo,
    share: Arc<Share>,
    _dir: tempfile::TempDir,
}

async fn fixture(url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(url).await.unwrap();
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, NOW).unwrap());
    let repo = IdRepo::new(db, vault, blobs, ks, Arc::new(Schema::default_schema()), IdRules::uin_default());
    Fixture { repo, share: Arc::new(Share::default()), _dir: dir }
}

impl Fixture {
    async fn engine(&self) -> Engine {
        let cfg = AbisConfig { threads: 2, ..AbisConfig::default() };
        Engine::open(self.repo.clone(), self.share.clone(), cfg, &mut |_, _| {}).await.unwrap()
    }
}

fn msg(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn insert(request: &str, reference: &str, url: &str) -> Vec<u8> {
    msg(&json!({"id": "mosip.abis.insert", "version": "1.1", "requestId": request, "requesttime": "2026-11-25T10:00:00.000Z",
        "referenceId": reference, "referenceURL": url}))
}

fn identify(request: &str, reference: Option<&str>, url: Option<&str>) -> Vec<u8> {
    msg(&json!({"id": "mosip.abis.identify", "version": "1.1", "requestId": request, "requesttime": "2026-11-25T10:00:00.000Z",
        "referenceId": reference.unwrap_or(""), "referenceURL": url.unwrap_or(""), "flags": {"maxResults": "10", "targetFPIR": "30"}}))
}

fn simple(id: &str, request: &str, reference: Option<&str>) -> Vec<u8> {
    let mut v = json!({"id": id, "version": "1.1", "requestId": request, "requesttime": "2026-11-25T10:00:00.000Z"});
    if let Some(r) = reference {
        v["referenceId"] = r.into();
    }
    msg(&v)
}

fn json_of(r: &tessera_abis::mosip::Response) -> Value {
    serde_json::to_value(r).unwrap()
}

fn candidates(r: &Value) -> Vec<String> {
    r["candidateList"]["candidates"].as_array().unwrap().iter().map(|c| c["referenceId"].as_str().unwrap().to_owned()).collect()
}

/// The candidates above the match threshold. Strangers may appear below it, in the adjudication
/// band, at the rate the band allows (`N · 10^−review` per search).
fn matches(r: &Value) -> Vec<String> {
    r["candidateList"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["analytics"]["decision"] == "match")
        .map(|c| c["referenceId"].as_str().unwrap().to_owned())
        .collect()
}

async fn count(engine: &Engine, request: &str) -> String {
    json_of(&engine.handle(&simple("mosip.abis.referenceCount", request, None), NOW).await)["count"].as_str().unwrap().to_owned()
}

async fn round_trip(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let people: Vec<Person> = (0..20).map(|_| Person::random(&mut rng)).collect();
    let engine = f.engine().await;
    for (i, p) in people.iter().enumerate() {
        f.share.put(&format!("https://share/{i}"), p.cbeff(&mut rng));
        let r = json_of(&engine.handle(&insert(&format!("ins-{i}"), &format!("ref-{i}"), &format!("https://share/{i}")), NOW).await);
        assert_eq!(r["returnValue"], "1", "{r}");
    }
    assert_eq!(count(&engine, "count-1").await, "20");

    // A new enrolment of person 7 (a fresh capture), inserted then identified as MOSIP does.
    f.share.put("https://share/again", people[7].cbeff(&mut rng));
    assert_eq!(json_of(&engine.handle(&insert("ins-again", "ref-again", "https://share/again"), NOW).await)["returnValue"], "1");
    let r = json_of(&engine.handle(&identify("idf-1", Some("ref-again"), None), NOW).await);
    assert_eq!(r["returnValue"], "1", "{r}");
    assert_eq!(matches(&r), vec!["ref-7".to_owned()], "{r}");
    assert_eq!(candidates(&r)[0], "ref-7", "the planted duplicate ranks first");
    assert_eq!(r["candidateList"]["analytics"]["decision"], "match");
    let modalities: Vec<&str> = r["candidateList"]["candidates"][0]["modalities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["biometricType"].as_str().unwrap())
        .collect();
    assert_eq!(modalities, ["IIR", "FID", "FIR"]);

    // A stranger, by URL without inserting: no candidate.
    f.share.put("https://share/stranger", Person::random(&mut rng).cbeff(&mut rng));
    let r = json_of(&engine.handle(&identify("idf-2", None, Some("https://share/stranger")), NOW).await);
    assert_eq!(r["returnValue"], "1");
    assert!(matches(&r).is_empty(), "{r}");
    assert_ne!(r["candidateList"]["analytics"]["decision"], "match");

    // Restricted to a gallery without person 7: not found; with it: found.
    let mut restricted = serde_json::from_slice::<Value>(&identify("idf-3", Some("ref-again"), None)).unwrap();
    restricted["gallery"] = json!({"referenceIds": [{"referenceId": "ref-1"}, {"referenceId": "ref-2"}]});
    assert!(matches(&json_of(&engine.handle(&msg(&restricted), NOW).await)).is_empty());
    restricted["requestId"] = "idf-4".into();
    restricted["gallery"] = json!({"referenceIds": [{"referenceId": "ref-1"}, {"referenceId": "ref-7"}]});
    assert_eq!(matches(&json_of(&engine.handle(&msg(&restricted), NOW).await)), vec!["ref-7".to_owned()]);

    // A restart rebuilds the gallery from the encrypted table.
    drop(engine);
    let engine = f.engine().await;
    assert_eq!(engine.len(), 21);
    let r = json_of(&engine.handle(&identify("idf-5", Some("ref-again"), None), NOW).await);
    assert_eq!(matches(&r), vec!["ref-7".to_owned()]);

    // Delete person 7: the duplicate is no longer found, the count drops, the key goes.
    let r = json_of(&engine.handle(&simple("mosip.abis.delete", "del-1", Some("ref-7")), NOW).await);
    assert_eq!(r["returnValue"], "1", "{r}");
    assert_eq!(count(&engine, "count-2").await, "20");
    let r = json_of(&engine.handle(&identify("idf-6", Some("ref-again"), None), NOW).await);
    assert!(!candidates(&r).contains(&"ref-7".to_owned()), "{r}");
    let r = json_of(&engine.handle(&simple("mosip.abis.delete", "del-2", Some("ref-7")), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("12")), "deleting twice: not found");
    let r = json_of(&engine.handle(&identify("idf-7", Some("ref-7"), None), NOW).await);
    assert_eq!(r["failureReason"], "12", "identify by a deleted reference");

    // Ping and pending jobs.
    assert_eq!(json_of(&engine.handle(&simple("mosip.abis.ping", "ping-1", None), NOW).await)["returnValue"], "1");
    assert_eq!(json_of(&engine.handle(&simple("mosip.abis.pendingJobs", "pend-1", None), NOW).await)["jobscount"], "0");
}

async fn retries_and_refusals(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let engine = f.engine().await;
    let alice = Person::random(&mut rng);
    f.share.put("https://share/a", alice.cbeff(&mut rng));
    let first = engine.handle(&insert("req-1", "ref-a", "https://share/a"), NOW).await;
    assert!(first.is_success());

    // The same reference id again, under a new request id: refused (10), nothing added.
    let r = json_of(&engine.handle(&insert("req-2", "ref-a", "https://share/a"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("10")));
    assert_eq!(count(&engine, "c1").await, "1");

    // A retried request id is answered again, not executed again: after a delete, a retry of
    // the insert does not bring the reference back.
    assert!(engine.handle(&simple("mosip.abis.delete", "req-3", Some("ref-a")), NOW).await.is_success());
    let again = engine.handle(&insert("req-1", "ref-a", "https://share/a"), NOW + 5000).await;
    assert_eq!(again, first, "the stored answer, with its original response time");
    assert_eq!(count(&engine, "c2").await, "0");
    // The same request id for a different request is refused.
    let r = json_of(&engine.handle(&insert("req-1", "ref-other", "https://share/a"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("4")));

    // Corrupt, truncated, empty and unreachable inputs: refused with MOSIP's reason, nothing
    // inserted.
    let good = alice.cbeff(&mut rng);
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "16"),
        ("not xml", b"\x00\x01garbage".to_vec(), "16"),
        ("doctype", format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{text}").into_bytes(), "16"),
        ("corrupt record", corrupt_first_bdb(&text).into_bytes(), "16"),
        (
            "no data",
            b"<BIR xmlns=\"http://standards.iso.org/iso-iec/19785/-3/ed-2/\"><BIRInfo><Integrity>false</Integrity></BIRInfo></BIR>"
                .to_vec(),
            "11",
        ),
        ("oversized", vec![b' '; tessera_biometrics::cbeff::INPUT_BYTES_MAX + 1], "16"),
    ];
    for (i, (what, body, reason)) in cases.into_iter().enumerate() {
        let url = format!("https://share/bad-{i}");
        f.share.put(&url, body);
        let r = json_of(&engine.handle(&insert(&format!("bad-{i}"), &format!("ref-bad-{i}"), &url), NOW).await);
        assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some(reason)), "{what}: {r}");
    }
    let r = json_of(&engine.handle(&insert("bad-url", "ref-x", "https://share/missing"), NOW).await);
    assert_eq!(r["failureReason"], "7");
    assert_eq!(count(&engine, "c3").await, "0");
    assert!(engine.is_empty());

    // Malformed messages get MOSIP's reasons.
    let r = json_of(&engine.handle(b"{oops", NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("4")));
    let r = json_of(
        &engine.handle(&msg(&json!({"id": "mosip.abis.insert", "version": "1.1", "requesttime": "2026-11-25T10:00:00.000Z"})), NOW).await,
    );
    assert_eq!(r["failureReason"], "6");
}

/// The document with its first BDB replaced by a base64 string that decodes to garbage.
fn corrupt_first_bdb(xml: &str) -> String {
    let start = xml.find("<BDB>").unwrap() + "<BDB>".len();
    let end = start + xml[start..].find("</BDB>").unwrap();
    format!("{}{}{}", &xml[..start], "Rk1SACAyMAAAAA==", &xml[end..])
}

storage_tests!(round_trip, retries_and_refusals);

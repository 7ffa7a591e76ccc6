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
use tessera_abis::biosdk::BioSdk;
use tessera_abis::shard::ShardGallery;
use tessera_abis::{AbisConfig, Engine, Fetch, FetchError};
use tessera_biometrics::synth::SynthPerson;
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_crypto::{MasterKey, SoftwareKeystore};
use tessera_idrepo::IdRepo;
use tessera_store::jobs::{self, JobKind};
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

/// A synthetic person; `cbeff` is one capture session as MOSIP's CBEFF.
struct Person(SynthPerson);

impl Person {
    fn random(rng: &mut impl rand::Rng) -> Self {
        Person(SynthPerson::random(rng))
    }

    fn cbeff(&self, rng: &mut impl rand::Rng) -> Vec<u8> {
        self.0.cbeff(rng, "2026-11-25T10:00:00.000Z")
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
        self.engine_with(AbisConfig { threads: 2, ..AbisConfig::default() }).await
    }

    async fn engine_with(&self, cfg: AbisConfig) -> Engine {
        Engine::open(self.repo.clone(), self.share.clone(), cfg, &mut |_, _| {}).await.unwrap()
    }

    /// A shard holder answering its lane's jobs until `stop`, as `serve --abis-shard i` does.
    async fn shard_worker(&self, shard: i64, shards: i64, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let g = ShardGallery::open(self.repo.clone(), shard, shards, 1, &mut |_| {}).await.unwrap();
        let repo = self.repo.clone();
        tokio::spawn(async move {
            let lane = tessera_store::abis::shard_lane(shard);
            while !*stop.borrow() {
                match jobs::lease_in(repo.db(), "test", &lane, 60_000, tessera_store::now_ms()).await.unwrap() {
                    Some(job) => {
                        assert_eq!(job.kind, JobKind::AbisSearchShard);
                        g.serve_job(&job.payload, NOW).await.unwrap();
                        // False when the coordinator removed the finished search's jobs first.
                        jobs::complete(repo.db(), &job, NOW).await.unwrap();
                    }
                    None => {
                        // As the shard loop does: a search whose worker died comes back.
                        jobs::reap_expired(repo.db(), tessera_store::now_ms()).await.unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            }
        })
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

/// MOSIP's transport: the same requests as JSON messages on a private ActiveMQ broker's queues,
/// answered on the outbound queue with their correlation ids; a request sent again under its
/// request id is answered again with the stored answer, and executed once; garbage is answered
/// with MOSIP's failure reason and the consumer goes on.
async fn over_the_queue(url: &str) {
    use tessera_abis::queue::{self, QueueConfig};
    use tessera_abis::stomp::{Body, Config, Connection, SendOptions, SubscribeOptions};
    use tessera_testkit::activemq::{self, Broker};
    let Some(broker) = Broker::shared() else { return };
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let engine = Arc::new(f.engine().await);
    let stomp = Config::new(broker.stomp_addr()).with_credentials(activemq::USER, activemq::PASSWORD);
    let cfg = QueueConfig {
        inbound: activemq::unique_queue("mosip-to-abis"),
        outbound: activemq::unique_queue("abis-to-mosip"),
        ..QueueConfig::new(stomp.clone())
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(queue::run(Arc::clone(&engine), cfg.clone(), stopped));

    // MOSIP's side: sends bytes messages, reads answers.
    let mosip = Connection::connect(&stomp).await.unwrap();
    let mut answers = mosip.subscribe(&cfg.outbound, &SubscribeOptions::default()).await.unwrap();
    let send = |body: Vec<u8>, correlation: &str| {
        let options = SendOptions { headers: vec![("correlation-id".into(), correlation.into())], ..SendOptions::default() };
        let mosip = &mosip;
        let inbound = cfg.inbound.clone();
        async move { mosip.send(&inbound, Body::Bytes(&body), &options).await.unwrap() }
    };
    let mut receive = async || {
        let m = tokio::time::timeout(std::time::Duration::from_secs(60), answers.next()).await.expect("an answer in time").unwrap();
        answers.ack(&m).await.unwrap();
        (serde_json::from_slice::<Value>(m.body()).unwrap(), m.header("correlation-id").map(str::to_owned))
    };
    let people: Vec<Person> = (0..5).map(|_| Person::random(&mut rng)).collect();
    for (i, p) in people.iter().enumerate() {
        f.share.put(&format!("https://share/q{i}"), p.cbeff(&mut rng));
        send(insert(&format!("q-ins-{i}"), &format!("q-ref-{i}"), &format!("https://share/q{i}")), &format!("c{i}")).await;
    }
    let mut inserted = Vec::new();
    for _ in 0..5 {
        let (r, correlation) = receive().await;
        assert_eq!(r["returnValue"], "1", "{r}");
        assert_eq!(r["id"], "mosip.abis.insert");
        inserted.push((r["requestId"].as_str().unwrap().to_owned(), correlation.unwrap()));
    }
    inserted.sort();
    assert_eq!(inserted, (0..5).map(|i| (format!("q-ins-{i}"), format!("c{i}"))).collect::<Vec<_>>());

    // The planted duplicate of person 3 is found through the queue.
    f.share.put("https://share/q-again", people[3].cbeff(&mut rng));
    send(identify("q-idf", None, Some("https://share/q-again")), "idf").await;
    let (r, _) = receive().await;
    assert_eq!(matches(&r), vec!["q-ref-3".to_owned()], "{r}");

    // A retried insert (MOSIP did not see the answer) is answered the same and not executed.
    send(insert("q-ins-1", "q-ref-1", "https://share/q1"), "again").await;
    let (r, _) = receive().await;
    assert_eq!((r["requestId"].as_str(), r["returnValue"].as_str()), (Some("q-ins-1"), Some("1")), "{r}");
    send(simple("mosip.abis.referenceCount", "q-count", None), "count").await;
    assert_eq!(receive().await.0["count"], "5");

    // Garbage on the queue gets MOSIP's failure answer, and the consumer goes on.
    send(b"{not json".to_vec(), "bad").await;
    let (r, _) = receive().await;
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("4")), "{r}");
    send(simple("mosip.abis.ping", "q-ping", None), "ping").await;
    assert_eq!(receive().await.0["returnValue"], "1");

    stop.send(true).unwrap();
    server.await.unwrap();
    mosip.disconnect().await.unwrap();
}

/// Inserts `people` through `engine` as `ref-<i>`, plus a fresh capture of person 7 as
/// `ref-again`.
async fn enrol(f: &Fixture, engine: &Engine, people: &[Person], rng: &mut impl rand::Rng) {
    for (i, p) in people.iter().enumerate() {
        f.share.put(&format!("https://share/{i}"), p.cbeff(rng));
        let r = json_of(&engine.handle(&insert(&format!("ins-{i}"), &format!("ref-{i}"), &format!("https://share/{i}")), NOW).await);
        assert_eq!(r["returnValue"], "1", "{r}");
    }
    f.share.put("https://share/again", people[7].cbeff(rng));
    assert_eq!(json_of(&engine.handle(&insert("ins-again", "ref-again", "https://share/again"), NOW).await)["returnValue"], "1");
}

/// Two API processes on one database: each follows the other's inserts and deletes through the
/// change log, without a restart.
async fn processes_follow_each_other(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let people: Vec<Person> = (0..12).map(|_| Person::random(&mut rng)).collect();
    let a = f.engine().await;
    let b = f.engine().await;
    enrol(&f, &a, &people, &mut rng).await;
    assert_eq!(b.len(), 0, "b loaded before the inserts");
    let r = json_of(&b.handle(&identify("b-idf-1", Some("ref-again"), None), NOW).await);
    assert_eq!(matches(&r), vec!["ref-7".to_owned()], "{r}");
    assert_eq!(b.len(), 13);
    assert_eq!(json_of(&a.handle(&simple("mosip.abis.delete", "a-del", Some("ref-7")), NOW).await)["returnValue"], "1");
    let r = json_of(&b.handle(&identify("b-idf-2", Some("ref-again"), None), NOW).await);
    assert!(!candidates(&r).contains(&"ref-7".to_owned()), "{r}");
    assert_eq!(b.len(), 12);
}

/// A gallery split over shard workers answers exactly what one process holding everything
/// answers: the same candidates with the same scores, in the same order.
async fn sharded_search_equals_one_gallery(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let people: Vec<Person> = (0..24).map(|_| Person::random(&mut rng)).collect();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    // Shard 0 is held before the inserts (it follows them), shard 1 loads after.
    let w0 = f.shard_worker(0, 2, stop_rx.clone()).await;
    let coordinator = f.engine_with(AbisConfig { threads: 2, shards: 2, ..AbisConfig::default() }).await;
    assert_eq!(coordinator.len(), 0, "a coordinator holds no gallery");
    enrol(&f, &coordinator, &people, &mut rng).await;
    let w1 = f.shard_worker(1, 2, stop_rx.clone()).await;
    let single = f.engine().await;

    let sharded = json_of(&coordinator.handle(&identify("s-idf-1", Some("ref-again"), None), NOW).await);
    assert_eq!(matches(&sharded), vec!["ref-7".to_owned()], "{sharded}");
    assert_eq!(sharded["candidateList"]["analytics"]["gallerySize"], 25);
    let one = json_of(&single.handle(&identify("o-idf-1", Some("ref-again"), None), NOW).await);
    assert_eq!(sharded["candidateList"], one["candidateList"], "sharded and single-process answers differ");
    // A stranger by URL: the same (empty or adjudication-band) answer both ways.
    f.share.put("https://share/stranger", Person::random(&mut rng).cbeff(&mut rng));
    let s = json_of(&coordinator.handle(&identify("s-idf-2", None, Some("https://share/stranger")), NOW).await);
    let o = json_of(&single.handle(&identify("o-idf-2", None, Some("https://share/stranger")), NOW).await);
    assert_eq!(s["candidateList"], o["candidateList"]);
    assert!(matches(&s).is_empty());

    // A delete reaches the shard that holds the reference.
    assert_eq!(json_of(&coordinator.handle(&simple("mosip.abis.delete", "s-del", Some("ref-7")), NOW).await)["returnValue"], "1");
    let r = json_of(&coordinator.handle(&identify("s-idf-3", Some("ref-again"), None), NOW).await);
    assert!(!candidates(&r).contains(&"ref-7".to_owned()), "{r}");

    // Nothing of the searches is left: rows, shard jobs, probe keys.
    let left = tessera_store::abis::stale_searches(f.repo.db(), i64::MAX, 10).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let shard_jobs = jobs::list(f.repo.db(), None, 1000).await.unwrap();
    assert!(shard_jobs.iter().all(|j| j.kind != "abis_search_shard"), "{shard_jobs:?}");
    stop.send(true).unwrap();
    w0.await.unwrap();
    w1.await.unwrap();
}

/// A shard nobody holds: the search gives up after the timeout with MOSIP's internal-error
/// answer (not remembered, so a retry runs again), and housekeeping removes what it left.
async fn missing_shard_times_out(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let people: Vec<Person> = (0..10).map(|_| Person::random(&mut rng)).collect();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let w0 = f.shard_worker(0, 2, stop_rx).await;
    let cfg = AbisConfig { threads: 1, shards: 2, shard_timeout: std::time::Duration::from_millis(300), ..AbisConfig::default() };
    let coordinator = f.engine_with(cfg).await;
    enrol(&f, &coordinator, &people, &mut rng).await;
    let r = json_of(&coordinator.handle(&identify("t-idf", Some("ref-again"), None), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("1")), "{r}");
    assert!(tessera_store::abis::request(f.repo.db(), "t-idf").await.unwrap().is_none(), "a timeout is not a final answer");
    // The search row was removed with its probe key; the unanswered shard job goes with it.
    assert!(tessera_store::abis::stale_searches(f.repo.db(), i64::MAX, 10).await.unwrap().is_empty());
    // Once shard 1 is held, the retried request is answered.
    let (stop1, stop1_rx) = tokio::sync::watch::channel(false);
    let w1 = f.shard_worker(1, 2, stop1_rx).await;
    let r = json_of(&coordinator.handle(&identify("t-idf", Some("ref-again"), None), NOW).await);
    assert_eq!(matches(&r), vec!["ref-7".to_owned()], "{r}");
    stop.send(true).unwrap();
    stop1.send(true).unwrap();
    w0.await.unwrap();
    w1.await.unwrap();
}

/// A shard worker dies holding a search (its lease runs out, it never answers): the replacement
/// takes the search over while the coordinator still waits, and the answer is complete.
async fn search_taken_over_after_its_worker_dies(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let people: Vec<Person> = (0..10).map(|_| Person::random(&mut rng)).collect();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let w0 = f.shard_worker(0, 2, stop_rx.clone()).await;
    let cfg = AbisConfig { threads: 1, shards: 2, shard_timeout: std::time::Duration::from_secs(30), ..AbisConfig::default() };
    let coordinator = Arc::new(f.engine_with(cfg).await);
    enrol(&f, &coordinator, &people, &mut rng).await;
    let c = Arc::clone(&coordinator);
    let search = tokio::spawn(async move { json_of(&c.handle(&identify("d-idf", Some("ref-again"), None), NOW).await) });
    // The doomed worker leases shard 1's job for 300 ms and is never heard of again.
    let lane = tessera_store::abis::shard_lane(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jobs::lease_in(f.repo.db(), "doomed", &lane, 300, tessera_store::now_ms()).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the search never reached shard 1");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let w1 = f.shard_worker(1, 2, stop_rx).await;
    let r = search.await.unwrap();
    assert_eq!(matches(&r), vec!["ref-7".to_owned()], "{r}");
    assert_eq!(r["candidateList"]["analytics"]["gallerySize"], 11);
    stop.send(true).unwrap();
    w0.await.unwrap();
    w1.await.unwrap();
}

/// A holder that fell behind the pruned part of the change log reloads its shard.
async fn pruned_change_log_reloads(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let people: Vec<Person> = (0..10).map(|_| Person::random(&mut rng)).collect();
    let holder = ShardGallery::open(f.repo.clone(), 0, 1, 1, &mut |_| {}).await.unwrap();
    let engine = f.engine().await;
    enrol(&f, &engine, &people, &mut rng).await;
    assert_eq!(json_of(&engine.handle(&simple("mosip.abis.delete", "p-del", Some("ref-3")), NOW).await)["returnValue"], "1");
    // Everything but the newest change is pruned.
    let pruned = tessera_store::abis::prune_changes(f.repo.db(), i64::MAX).await.unwrap();
    assert_eq!(pruned, 11);
    assert_eq!(holder.len(), 0);
    holder.sync().await.unwrap();
    assert_eq!(holder.len(), 10, "reloaded: 11 inserted, 1 deleted");
    let (changes, oldest) = tessera_store::abis::changes_after(f.repo.db(), 0, 100).await.unwrap();
    assert_eq!((changes.len(), oldest), (1, Some(12)));
}

/// A BioSDK service for the tests: answers `extract-template` from a table of image record →
/// minutiae record the test registered (standing in for a vendor's extractor behind MOSIP's
/// BioSDK API); an unknown image is refused as a BioSDK refuses. Counts the calls.
#[derive(Debug, Default)]
struct FakeBioSdk {
    table: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl FakeBioSdk {
    fn answer(&self, body: &[u8]) -> Value {
        use base64::Engine as _;
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let outer: Value = serde_json::from_slice(body).unwrap();
        let inner = base64::engine::general_purpose::STANDARD.decode(outer["request"].as_str().unwrap()).unwrap();
        let inner: Value = serde_json::from_slice(&inner).unwrap();
        assert_eq!(inner["modalitiesToExtract"], json!(["FINGER"]));
        let table = self.table.lock().unwrap();
        let mut segments = Vec::new();
        for seg in inner["sample"]["segments"].as_array().unwrap() {
            let image = base64::engine::general_purpose::STANDARD.decode(seg["bdb"].as_str().unwrap()).unwrap();
            let Some(minutiae) = table.get(&image) else {
                return json!({"version": "1.0", "response": null, "errors": [{"errorCode": "BIOSDK_LIB_EXCEPTION", "message": "no finger found"}]});
            };
            let mut info = seg["bdbInfo"].clone();
            info["format"] = json!({"organization": "Mosip", "type": "2"});
            info["level"] = "PROCESSED".into();
            segments.push(json!({"bdbInfo": info, "bdb": base64::engine::general_purpose::STANDARD.encode(minutiae)}));
        }
        json!({"version": "1.0", "responsetime": "2026-12-07T10:00:00.000Z",
            "response": {"statusCode": 200, "statusMessage": "OK", "response": {"segments": segments}}, "errors": []})
    }

    /// Serves on a free port; returns the base URL.
    async fn serve(self: Arc<Self>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/biosdk-service", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let sdk = Arc::clone(&self);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    let (head_end, length) = loop {
                        let n = stream.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "connection closed mid-request");
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            assert!(head.starts_with("post /biosdk-service/extract-template "), "{head}");
                            let length: usize =
                                head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap()).unwrap();
                            break (i + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = stream.read(&mut chunk).await.unwrap();
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let answer = sdk.answer(&buf[head_end..head_end + length]).to_string();
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    stream.write_all(reply.as_bytes()).await.unwrap();
                });
            }
        });
        base
    }
}

/// One capture of a person as a registration client sends it: finger *images* only (ISO/IEC
/// 19794-4, MOSIP format 7). Each image is registered in `sdk` with the minutiae a real
/// extractor would find in it.
fn finger_images_cbeff(p: &Person, rng: &mut impl rand::Rng, sdk: &FakeBioSdk) -> Vec<u8> {
    use tessera_biometrics::cbeff::{self, BioType, RegistryId};
    use tessera_biometrics::iso19794::ImageEncoding;
    use tessera_biometrics::iso19794::finger_image::{self, FingerImageRecord, Image2005, Record2005, ScaleUnits};
    let birs = cbeff::parse(&p.cbeff(rng)).unwrap();
    let mut out = Vec::new();
    for mut bir in birs.into_iter().filter(|b| b.bdb_info.bio_types.first() == Some(&BioType::Finger)) {
        let pixels: Vec<u8> = (0..64).map(|_| rng.random()).collect();
        let record = FingerImageRecord::Iso2005(Record2005 {
            device_id: 0,
            acquisition_level: 31,
            scale_units: ScaleUnits::PixelsPerInch,
            scan_resolution: (500, 500),
            image_resolution: (500, 500),
            pixel_depth: 8,
            compression: ImageEncoding::Wsq,
            images: vec![Image2005 {
                position: 0,
                view_count: 1,
                view_number: 1,
                quality: 80,
                impression: 0,
                width: 8,
                height: 8,
                data: pixels,
            }],
        });
        let image = finger_image::emit(&record).unwrap();
        sdk.table.lock().unwrap().insert(image.clone(), std::mem::replace(&mut bir.bdb, image));
        bir.bdb_info.format = Some(RegistryId::new("Mosip", "7"));
        out.push(bir);
    }
    assert_eq!(out.len(), 10);
    cbeff::emit(&out).into_bytes()
}

/// Registration packets carry images: without an extractor they cannot be enrolled; with the
/// BioSDK plugin the extracted minutiae are enrolled and the planted duplicate is found by its
/// fingers alone. A malformed image never reaches the SDK; an image the SDK refuses, or an SDK
/// that is down, is MOSIP's failure answer with nothing inserted.
async fn images_through_the_biosdk_plugin(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let sdk = Arc::new(FakeBioSdk::default());
    let people: Vec<Person> = (0..12).map(|_| Person::random(&mut rng)).collect();
    for (i, p) in people.iter().enumerate() {
        f.share.put(&format!("https://share/img-{i}"), finger_images_cbeff(p, &mut rng, &sdk));
    }
    let plain = f.engine().await;
    let r = json_of(&plain.handle(&insert("no-sdk", "ref-x", "https://share/img-0"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("16")), "images without an extractor: {r}");

    let base = Arc::clone(&sdk).serve().await;
    let engine = f.engine().await.with_extractor(Arc::new(BioSdk::new(&base, true).unwrap()));
    for i in 0..people.len() {
        let r =
            json_of(&engine.handle(&insert(&format!("img-ins-{i}"), &format!("ref-{i}"), &format!("https://share/img-{i}")), NOW).await);
        assert_eq!(r["returnValue"], "1", "{r}");
    }
    assert_eq!(sdk.calls.load(std::sync::atomic::Ordering::SeqCst), 12, "one extraction call per document");
    f.share.put("https://share/img-again", finger_images_cbeff(&people[7], &mut rng, &sdk));
    let r = json_of(&engine.handle(&identify("img-idf", None, Some("https://share/img-again")), NOW).await);
    assert_eq!(matches(&r), vec!["ref-7".to_owned()], "{r}");
    let modalities = &r["candidateList"]["candidates"][0]["modalities"];
    assert_eq!(modalities.as_array().unwrap().len(), 1, "fingers only: {modalities}");
    assert_eq!(modalities[0]["biometricType"], "FIR");

    // An image the SDK finds nothing in: refused, nothing inserted.
    let stranger = finger_images_cbeff(&Person::random(&mut rng), &mut rng, &FakeBioSdk::default());
    f.share.put("https://share/img-unknown", stranger);
    let r = json_of(&engine.handle(&insert("img-ins-unknown", "ref-unknown", "https://share/img-unknown"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("16")), "{r}");
    // A truncated image record: refused before any call.
    let calls = sdk.calls.load(std::sync::atomic::Ordering::SeqCst);
    let doc = String::from_utf8(finger_images_cbeff(&people[1], &mut rng, &sdk)).unwrap();
    let cut = corrupt_first_bdb(&doc);
    f.share.put("https://share/img-cut", cut.into_bytes());
    let r = json_of(&engine.handle(&insert("img-ins-cut", "ref-cut", "https://share/img-cut"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("16")), "{r}");
    assert_eq!(sdk.calls.load(std::sync::atomic::Ordering::SeqCst), calls, "a malformed image reached the SDK");
    // The SDK is down: an internal error.
    let down = f.engine().await.with_extractor(Arc::new(BioSdk::new("http://127.0.0.1:9/biosdk-service", true).unwrap()));
    let r = json_of(&down.handle(&insert("img-ins-down", "ref-down", "https://share/img-again"), NOW).await);
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("1")), "{r}");
    assert_eq!(count(&engine, "img-count").await, "12");
    // That was not the request's answer: once the SDK is back, the same request id runs.
    let r = json_of(&engine.handle(&insert("img-ins-down", "ref-down", "https://share/img-again"), NOW).await);
    assert_eq!(r["returnValue"], "1", "{r}");
    assert!(BioSdk::new("http://biosdk/x", false).is_err(), "plain http needs the opt-in");
}

storage_tests!(
    images_through_the_biosdk_plugin,
    round_trip,
    retries_and_refusals,
    over_the_queue,
    processes_follow_each_other,
    sharded_search_equals_one_gallery,
    missing_shard_times_out,
    search_taken_over_after_its_worker_dies,
    pruned_change_log_reloads
);

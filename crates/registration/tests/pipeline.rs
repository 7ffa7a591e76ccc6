//! The registration pipeline on SQLite and PostgreSQL: packets sealed as a registration client
//! seals them, uploaded, and run stage by stage through the job queue. A person enrolled twice
//! under another spelling ends as a duplicate of the first UIN; a namesake with the same birth
//! date gets their own UIN; forged, tampered, misattributed and invalid packets are refused or
//! rejected with their reason in the status, and nothing of them reaches the repository.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use rand::SeedableRng;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tessera_abis::{AbisConfig, Engine, Fetch, FetchError};
use tessera_biometrics::synth::SynthPerson;
use tessera_core::id::{CentreId, MachineId};
use tessera_core::schema::Schema;
use tessera_core::{IdRules, Rid};
use tessera_credentials::{CredentialConfig, Credentials};
use tessera_crypto::{Keystore, MachineKey, MasterKey, Purpose, Recipient, SoftwareKeystore};
use tessera_idrepo::{Actor, IdRepo};
use tessera_registration::adjudication::Decision;
use tessera_registration::packet::{Draft, FileKind, Flow, IDENTITY_FILE, PACKET_BYTES_DEFAULT};
use tessera_registration::{RegConfig, RegError, Registration, StageRun};
use tessera_store::jobs;
use tessera_store::registration as rows;
use tessera_store::{BlobStore, Db, Vault, uin_pool};

const NOW: i64 = 1_796_000_000_000;

tessera_testkit::storage_tests!(
    duplicates_namesakes_and_refusals,
    one_person_twice_in_flight,
    in_flight_found_one_way,
    adjudication_without_biometrics,
    update_lost_and_child_flows
);

#[derive(Debug)]
struct NoShare;

impl Fetch for NoShare {
    fn fetch<'a>(&'a self, _url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>> {
        Box::pin(async { Err(FetchError::Unreachable("no datashare in this test".into())) })
    }
}

struct Fixture {
    engine: Arc<Engine>,
    notifier: tessera_notify::Notifier,
    repo: IdRepo,
    reg: Registration,
    key: MachineKey,
    recipient: Recipient,
    dir: tempfile::TempDir,
}

async fn fixture(url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(url).await.unwrap();
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, NOW).unwrap());
    let recipient = Recipient::parse(&ks.certificate(ks.current(Purpose::Registration)).unwrap()).unwrap();
    let rules = IdRules::uin_default();
    let repo = IdRepo::new(db.clone(), vault, blobs, ks, Arc::new(Schema::default_schema()), rules.clone());
    uin_pool::refill(&db, &rules, &mut rand::rngs::StdRng::seed_from_u64(1), 200, NOW).await.unwrap();
    let engine = Arc::new(
        Engine::open(repo.clone(), Arc::new(NoShare), AbisConfig { threads: 2, ..AbisConfig::default() }, &mut |_, _| {}).await.unwrap(),
    );
    let notifier = tessera_notify::Notifier::new(repo.clone(), tessera_notify::NotifyConfig::embedded(dir.path())).unwrap();
    let reg = Registration::with_parts(
        repo.clone(),
        Arc::clone(&engine),
        RegConfig::default(),
        tessera_demographics::Matcher::default(),
        Some(notifier.clone()),
        Some(Credentials::new(repo.clone(), CredentialConfig { issuer: "https://id.test".into(), ..CredentialConfig::default() }).unwrap()),
    );
    let key = MachineKey::create_file(&dir.path().join("client/machine-key.pem")).unwrap();
    rows::insert_centre(&db, "10001", "Centre One", NOW).await.unwrap();
    rows::insert_machine(&db, "20001", "10001", &key.public_key(), NOW).await.unwrap();
    rows::assign_staff(&db, "10001", "officer-1", "operator", NOW).await.unwrap();
    Fixture { engine, notifier, repo, reg, key, recipient, dir }
}

fn identity(name: &str, born: &str) -> Value {
    json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": born,
        "gender": "female",
        "email": "resident@example.org",
        "addressLine1": [{"language": "eng", "value": "12 Harbour Road"}],
        "city": [{"language": "eng", "value": "Port Town"}],
        "region": [{"language": "eng", "value": "Coast"}],
        "individualBiometrics": {"format": "cbeff", "ref": "bio"},
    })
}

fn rid(seq: u32) -> Rid {
    Rid::new(CentreId::parse("10001").unwrap(), MachineId::parse("20001").unwrap(), seq, time::macros::datetime!(2026-12-07 09:00:00))
        .unwrap()
}

fn draft(seq: u32, record: &Value, cbeff: Vec<u8>) -> Draft {
    Draft {
        rid: rid(seq),
        flow: Flow::New,
        operator: "officer-1".into(),
        supervisor: None,
        created_at_ms: NOW,
        gps: None,
        uin: None,
        guardian_uin: None,
        exceptions: vec![],
        capture: vec![],
        files: vec![
            (IDENTITY_FILE.into(), FileKind::Identity, serde_json::to_vec(record).unwrap()),
            ("bio".into(), FileKind::Biometrics, cbeff),
        ],
    }
}

impl Fixture {
    fn seal(&self, d: &Draft) -> Bytes {
        Bytes::from(d.seal(&self.key, &self.recipient, PACKET_BYTES_DEFAULT).unwrap())
    }

    async fn upload(&self, bytes: Bytes) -> Result<tessera_registration::pipeline::Accepted, RegError> {
        self.reg.upload(&Actor { id: "token:test".into(), request_id: String::new() }, bytes, NOW).await
    }

    /// Runs queued stages until none is left.
    async fn drain(&self) {
        let db = self.repo.db();
        for _ in 0..1000 {
            let Some(job) = jobs::lease(db, "test", 60_000, NOW).await.unwrap() else { return };
            if job.kind != jobs::JobKind::PacketStage {
                // Not the pipeline's (key destruction after an ABIS delete): done as the worker does.
                if job.kind == jobs::JobKind::AbisDestroyKey {
                    self.repo.destroy_sealed(job.payload["identity_id"].as_str().unwrap()).await.unwrap();
                }
                assert!(jobs::complete(db, &job, NOW).await.unwrap());
                continue;
            }
            match self.reg.run_stage(&job.payload, NOW).await.unwrap() {
                StageRun::Done => assert!(jobs::complete(db, &job, NOW).await.unwrap()),
                StageRun::Later(_) => panic!("nothing should wait when packets run one after another"),
            }
        }
        panic!("the queue never drained");
    }

    /// Delivers the outbox; the messages sent so far, as `(template, body)`.
    async fn messages(&self) -> Vec<(String, String)> {
        self.notifier.deliver_due(NOW, 1000).await.unwrap();
        let text = std::fs::read_to_string(self.notifier.file()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["template"].as_str().unwrap().to_owned(), v["body"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// Runs one stage of one packet now, as its job would.
    async fn stage(&self, seq: u32, stage: &str) -> StageRun {
        self.reg.run_stage(&json!({"rid": rid(seq).to_string(), "stage": stage}), NOW).await.unwrap()
    }

    async fn status(&self, seq: u32) -> tessera_registration::pipeline::Status {
        self.reg.status(&rid(seq).to_string()).await.unwrap()
    }
}

async fn duplicates_namesakes_and_refusals(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alice = SynthPerson::random(&mut rng);
    let namesake = SynthPerson::random(&mut rng);

    // First registration: a UIN.
    let first = f.seal(&draft(1, &identity("Amina Diallo", "1990-04-12"), alice.cbeff(&mut rng, "2026-12-07T09:00:00.000Z")));
    assert!(!f.upload(first.clone()).await.unwrap().already);
    assert!(f.upload(first.clone()).await.unwrap().already, "the same packet again is accepted once");
    f.drain().await;
    let s1 = f.status(1).await;
    assert_eq!(s1.status, "issued", "{s1:?}");
    let uin = s1.uin.clone().unwrap();
    assert!(s1.history.iter().any(|e| e.stage == "bio_dedupe" && e.outcome == "searched"));
    assert!(s1.history.iter().any(|e| e.stage == "demo_dedupe" && e.detail.as_deref() == Some("candidates=0")), "{s1:?}");

    // The same person, another spelling, another capture: a duplicate of the first UIN.
    let again = f.seal(&draft(2, &identity("Aminah Dialo", "1990-04-12"), alice.cbeff(&mut rng, "2026-12-07T10:00:00.000Z")));
    f.upload(again).await.unwrap();
    f.drain().await;
    let s2 = f.status(2).await;
    assert_eq!((s2.status.as_str(), s2.reason.as_deref()), ("duplicate", Some("duplicate")), "{s2:?}");
    assert_eq!(s2.uin.as_deref(), Some(uin.as_str()), "the duplicate points at the first UIN");

    // Someone else with the same name and birth date: their own UIN.
    let other = f.seal(&draft(3, &identity("Amina Diallo", "1990-04-12"), namesake.cbeff(&mut rng, "2026-12-07T11:00:00.000Z")));
    f.upload(other).await.unwrap();
    f.drain().await;
    let s3 = f.status(3).await;
    assert_eq!(s3.status, "issued", "{s3:?}");
    assert!(
        s3.history.iter().any(|e| e.stage == "demo_dedupe" && e.detail.as_deref() == Some("candidates=1")),
        "the namesake is a demographic candidate, and the biometrics say it is someone else: {s3:?}"
    );
    assert_ne!(s3.uin.as_deref(), Some(uin.as_str()));
    let issued = tessera_store::identities::counts(f.repo.db()).await.unwrap().0;
    assert_eq!(issued, 2, "two people, two identities");

    // Refused at upload, nothing stored: a flipped bit, a foreign machine key, another packet
    // under a used RID.
    let mut tampered =
        f.seal(&draft(4, &identity("Zed Zulu", "1985-01-01"), namesake.cbeff(&mut rng, "2026-12-07T12:00:00.000Z"))).to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(f.upload(Bytes::from(tampered)).await.unwrap_err().code(), "packet_signature_invalid");
    let stranger = MachineKey::create_file(&f.dir.path().join("stranger.pem")).unwrap();
    let forged = draft(4, &identity("Zed Zulu", "1985-01-01"), vec![1]).seal(&stranger, &f.recipient, PACKET_BYTES_DEFAULT).unwrap();
    assert_eq!(f.upload(Bytes::from(forged)).await.unwrap_err().code(), "packet_signature_invalid");
    let reused = f.seal(&draft(1, &identity("Other Person", "1970-01-01"), vec![1]));
    assert_eq!(f.upload(reused).await.unwrap_err().code(), "packet_conflict");
    let mut unknown = draft(5, &identity("Zed Zulu", "1985-01-01"), vec![1]);
    unknown.rid =
        Rid::new(CentreId::parse("10001").unwrap(), MachineId::parse("29999").unwrap(), 5, time::macros::datetime!(2026-12-07 09:00:00))
            .unwrap();
    assert_eq!(f.upload(f.seal(&unknown)).await.unwrap_err().code(), "machine_unknown");
    assert_eq!(f.upload(Bytes::from_static(b"not a packet")).await.unwrap_err().code(), "packet_malformed");
    assert!(rows::packet(f.repo.db(), &rid(4).to_string()).await.unwrap().is_none());

    // Accepted, then rejected with the reason in the status: a schema error, an operator who is
    // not assigned to the centre, biometrics that do not parse.
    let mut bad = identity("Zed Zulu", "1985-01-01");
    bad["gender"] = json!("unknown");
    f.upload(f.seal(&draft(6, &bad, namesake.cbeff(&mut rng, "2026-12-07T12:00:00.000Z")))).await.unwrap();
    let mut by_stranger = draft(7, &identity("Zed Zulu", "1985-01-01"), namesake.cbeff(&mut rng, "2026-12-07T12:00:00.000Z"));
    by_stranger.operator = "officer-9".into();
    f.upload(f.seal(&by_stranger)).await.unwrap();
    f.upload(f.seal(&draft(8, &identity("Zed Zulu", "1985-01-01"), b"<BIR>".to_vec()))).await.unwrap();
    f.drain().await;
    for (seq, code) in [(6, "schema_invalid"), (7, "operator_not_assigned"), (8, "biometrics_invalid")] {
        let s = f.status(seq).await;
        assert_eq!((s.status.as_str(), s.reason.as_deref()), ("rejected", Some(code)), "{s:?}");
        assert!(s.uin.is_none());
    }
    let s6 = f.status(6).await;
    assert!(s6.history.iter().any(|e| e.detail.as_deref().is_some_and(|d| d.contains("/gender"))), "{s6:?}");
    assert!(!format!("{s6:?}").contains("unknown"), "field values never appear in the status");
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap().0, 2, "nothing partial reached the repository");

    // Each person told once of their outcome: issued (with the UIN), duplicate (without
    // revealing it), issued, and the three rejections; delivering again sends nothing new.
    let sent = f.messages().await;
    let templates: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        templates,
        [
            "registration.issued",
            "registration.duplicate",
            "registration.issued",
            "registration.rejected",
            "registration.rejected",
            "registration.rejected"
        ],
        "{sent:?}"
    );
    assert!(sent[0].1.contains(&uin) && !sent[1].1.contains(&uin), "{sent:?}");
    assert!(sent[3].1.contains("schema_invalid"), "{sent:?}");
    assert_eq!(f.messages().await.len(), 6, "never sent twice");
}

/// Two registrations of one person (under unrelated demographics, so only the biometrics can
/// tell) in flight at once, interleaved the worst way: the second one's search runs after the
/// first one's templates are in the gallery but before the first one's search has committed.
/// The second must still name the first as its candidate, wait for it, and end a duplicate.
async fn one_person_twice_in_flight(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let person = SynthPerson::random(&mut rng);
    let first_bio = person.cbeff(&mut rng, "2026-12-07T09:00:00.000Z");
    let mut second = identity("Fatou Ndiaye", "1971-09-30");
    second["email"] = json!("someone.else@example.org");
    f.upload(f.seal(&draft(1, &identity("Amina Diallo", "1990-04-12"), first_bio.clone()))).await.unwrap();
    f.upload(f.seal(&draft(2, &second, person.cbeff(&mut rng, "2026-12-07T10:00:00.000Z")))).await.unwrap();
    for seq in [1, 2] {
        assert_eq!(f.stage(seq, "validate").await, StageRun::Done);
        assert_eq!(f.stage(seq, "demo_dedupe").await, StageRun::Done);
    }
    // The first one's stage has inserted its templates (as `bio_dedupe` does first) and not
    // yet committed its search.
    let first = rows::packet(f.repo.db(), &rid(1).to_string()).await.unwrap().unwrap();
    let reference = first.abis_ref.clone().expect("the ABIS reference is the packet's from validation on");
    let set = tessera_biometrics::templates::TemplateSet::from_birs(&tessera_biometrics::cbeff::parse(&first_bio).unwrap()).unwrap();
    assert_eq!(f.engine.insert_set(&format!("{reference}-insert"), &reference, &set, NOW).await.return_value, "1");
    // The second one searches now, finds the first, and waits for it.
    assert_eq!(f.stage(2, "bio_dedupe").await, StageRun::Done);
    let found = rows::candidates(f.repo.db(), &rid(2).to_string()).await.unwrap();
    assert!(
        found.iter().any(|c| c.candidate_rid == rid(1).to_string() && c.source == "bio" && c.decision == "match"),
        "the first registration, in flight, is the second's candidate: {found:?}"
    );
    assert!(matches!(f.stage(2, "decide").await, StageRun::Later(_)), "the second waits for the first");
    // The first one goes on (its insert again is the same request), is issued; then the second
    // is a duplicate of it.
    for stage in ["bio_dedupe", "decide", "issue"] {
        assert_eq!(f.stage(1, stage).await, StageRun::Done, "{stage}");
    }
    f.drain().await;
    let (s1, s2) = (f.status(1).await, f.status(2).await);
    assert_eq!(s1.status, "issued", "{s1:?}");
    assert_eq!((s2.status.as_str(), s2.uin.as_deref()), ("duplicate", s1.uin.as_deref()), "{s2:?}");
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap().0, 1, "one person, one identity");
}

/// Two registrations of one person in flight, the second's biometric search run before the
/// first's templates were in the gallery: only the first finds the second biometrically. The
/// second has the first as a *demographic* candidate (a similar name), which its `decide`
/// disregards (both carry biometrics), so the first must not count on the second waiting for
/// it: it waits for the second, and ends a duplicate of the second's UIN.
async fn in_flight_found_one_way(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let person = SynthPerson::random(&mut rng);
    f.upload(f.seal(&draft(1, &identity("Amina Diallo", "1990-04-12"), person.cbeff(&mut rng, "2026-12-07T09:00:00.000Z")))).await.unwrap();
    f.upload(f.seal(&draft(2, &identity("Aminah Dialo", "1990-04-12"), person.cbeff(&mut rng, "2026-12-07T10:00:00.000Z")))).await.unwrap();
    for seq in [1, 2] {
        assert_eq!(f.stage(seq, "validate").await, StageRun::Done);
        assert_eq!(f.stage(seq, "demo_dedupe").await, StageRun::Done);
    }
    let demo = rows::candidates(f.repo.db(), &rid(2).to_string()).await.unwrap();
    assert!(demo.iter().any(|c| c.candidate_rid == rid(1).to_string() && c.source == "demo"), "{demo:?}");
    assert_eq!(f.stage(2, "bio_dedupe").await, StageRun::Done);
    assert_eq!(f.stage(1, "bio_dedupe").await, StageRun::Done);
    let bio = rows::candidates(f.repo.db(), &rid(1).to_string()).await.unwrap();
    assert!(bio.iter().any(|c| c.candidate_rid == rid(2).to_string() && c.source == "bio"), "{bio:?}");
    assert!(matches!(f.stage(1, "decide").await, StageRun::Later(_)), "the first waits for the second");
    for stage in ["decide", "issue"] {
        assert_eq!(f.stage(2, stage).await, StageRun::Done, "{stage}");
    }
    f.drain().await;
    let (s1, s2) = (f.status(1).await, f.status(2).await);
    assert_eq!(s2.status, "issued", "{s2:?}");
    assert_eq!((s1.status.as_str(), s1.uin.as_deref()), ("duplicate", s2.uin.as_deref()), "{s1:?}");
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap().0, 1, "one person, one identity");
}

/// A registration without biometrics (every one an exception) of someone demographically
/// enrolled already.
fn without_biometrics(seq: u32, record: &Value) -> Draft {
    let mut record = record.clone();
    record.as_object_mut().unwrap().remove("individualBiometrics");
    let mut d = draft(seq, &record, vec![]);
    d.files.retain(|(_, kind, _)| *kind == FileKind::Identity);
    d.files.push(("exception-photo".into(), FileKind::ExceptionPhoto, b"jpeg bytes".to_vec()));
    d.exceptions = vec![tessera_registration::packet::BioException {
        modality: "finger".into(),
        position: "Left Thumb".into(),
        reason: "amputated".into(),
    }];
    d
}

async fn adjudication_without_biometrics(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let alice = SynthPerson::random(&mut rng);
    let actor = Actor { id: "token:adjudicator".into(), request_id: String::new() };
    f.upload(f.seal(&draft(1, &identity("Amina Diallo", "1990-04-12"), alice.cbeff(&mut rng, "2026-12-07T09:00:00.000Z")))).await.unwrap();
    f.drain().await;
    let uin = f.status(1).await.uin.unwrap();

    // Another spelling, no biometrics to decide: a person looks.
    f.upload(f.seal(&without_biometrics(2, &identity("Aminah Dialo", "1990-04-12")))).await.unwrap();
    f.drain().await;
    let s2 = f.status(2).await;
    assert_eq!(s2.status, "adjudication", "{s2:?}");
    let cases = f.reg.cases(Some("open"), None, 50).await.unwrap();
    assert_eq!(cases.len(), 1);
    let case = f.reg.case(&actor, &cases[0].id, NOW).await.unwrap();
    assert_eq!(case.registration.rid, rid(2).to_string());
    assert!(!case.registration.biometrics);
    assert_eq!(case.candidates.len(), 1);
    let c = &case.candidates[0];
    assert_eq!(c.uin.as_deref(), Some(uin.as_str()));
    assert_eq!(c.evidence[0]["source"], "demo");
    assert!(c.evidence[0]["detail"].as_array().unwrap().iter().any(|e| e["field"] == "name"), "{c:?}");
    assert!(c.fields.iter().any(|x| x["field"] == "dateOfBirth" && x["same"] == true), "{c:?}");
    assert!(c.fields.iter().all(|x| x["field"] != "individualBiometrics"), "biometrics are not shown");
    let audit = tessera_store::audit::read(f.repo.db(), 0, 1000).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "adjudication.read" && e.actor == "token:adjudicator"), "the read is audited");

    // A UIN that is not a candidate's is refused; the right one ends it as a duplicate; once.
    let wrong = Decision::Duplicate { uin: "2345678901".into() };
    assert_eq!(
        f.reg.decide_case(&actor, &case.summary.id, &wrong, "same face", NOW).await.unwrap_err().code(),
        "adjudication_uin_not_candidate"
    );
    assert_eq!(f.reg.decide_case(&actor, &case.summary.id, &Decision::NotDuplicate, " ", NOW).await.unwrap_err().code(), "bad_request");
    let dup = Decision::Duplicate { uin: uin.clone() };
    f.reg.decide_case(&actor, &case.summary.id, &dup, "same person, documents match", NOW).await.unwrap();
    assert_eq!(
        f.reg.decide_case(&actor, &case.summary.id, &Decision::NotDuplicate, "again", NOW).await.unwrap_err().code(),
        "adjudication_decided"
    );
    f.drain().await;
    let s2 = f.status(2).await;
    assert_eq!((s2.status.as_str(), s2.uin.as_deref()), ("duplicate", Some(uin.as_str())), "{s2:?}");
    let decided = f.reg.case(&actor, &case.summary.id, NOW).await.unwrap();
    assert_eq!(decided.reason.as_deref(), Some("same person, documents match"), "the sealed reason opens for adjudicators");

    // A namesake without biometrics: a person decides they are someone else, and a UIN follows.
    f.upload(f.seal(&without_biometrics(3, &identity("Amina Diallo", "1990-04-12")))).await.unwrap();
    f.drain().await;
    assert_eq!(f.status(3).await.status, "adjudication");
    let id = f.reg.cases(Some("open"), None, 50).await.unwrap()[0].id.clone();
    // Pages of one: both cases, each once, then nothing.
    let first = f.reg.cases(None, None, 1).await.unwrap();
    let second = f.reg.cases(None, Some(&first[0].id), 1).await.unwrap();
    let mut both = [first[0].id.clone(), second[0].id.clone()];
    both.sort();
    let mut expected = [case.summary.id.clone(), id.clone()];
    expected.sort();
    assert_eq!(both, expected);
    assert!(f.reg.cases(None, Some(&second[0].id), 1).await.unwrap().is_empty());
    f.reg.decide_case(&actor, &id, &Decision::NotDuplicate, "different mother's name, other village", NOW).await.unwrap();
    f.drain().await;
    let s3 = f.status(3).await;
    assert_eq!(s3.status, "issued", "{s3:?}");
    assert_ne!(s3.uin.as_deref(), Some(uin.as_str()));
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap().0, 2);
    // Told of the review when the case opened, then of the outcome: once each.
    let mut sent: Vec<String> = f.messages().await.into_iter().map(|(t, _)| t).collect();
    sent.sort();
    assert_eq!(
        sent,
        ["registration.adjudication", "registration.adjudication", "registration.duplicate", "registration.issued", "registration.issued"]
    );
}

async fn update_lost_and_child_flows(url: &str) {
    let f = fixture(url).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let alice = SynthPerson::random(&mut rng);
    let stranger = SynthPerson::random(&mut rng);
    f.upload(f.seal(&draft(1, &identity("Amina Diallo", "1990-04-12"), alice.cbeff(&mut rng, "2026-12-07T09:00:00.000Z")))).await.unwrap();
    f.drain().await;
    let uin = f.status(1).await.uin.unwrap();

    // UPDATE: only the changed field and a fresh capture that proves whose record it is, applied
    // to that identity as a new version; the same change with someone else's biometrics is refused.
    let mut update =
        draft(2, &json!({"city": [{"language": "eng", "value": "New Town"}]}), alice.cbeff(&mut rng, "2026-12-07T09:30:00.000Z"));
    update.files[0].2 = serde_json::to_vec(&json!({
        "city": [{"language": "eng", "value": "New Town"}],
        "individualBiometrics": {"format": "cbeff", "ref": "bio"},
    }))
    .unwrap();
    update.flow = Flow::Update;
    update.uin = Some(uin.clone());
    f.upload(f.seal(&update)).await.unwrap();
    f.drain().await;
    // LOST: a fresh capture of Alice finds her UIN; a stranger's finds nothing.
    let mut lost = draft(3, &identity("Amina Diallo", "1990-04-12"), alice.cbeff(&mut rng, "2026-12-07T10:00:00.000Z"));
    lost.flow = Flow::Lost;
    f.upload(f.seal(&lost)).await.unwrap();
    f.drain().await;
    let mut nobody = draft(4, &identity("Amina Diallo", "1990-04-12"), stranger.cbeff(&mut rng, "2026-12-07T10:00:00.000Z"));
    nobody.flow = Flow::Lost;
    f.upload(f.seal(&nobody)).await.unwrap();
    f.drain().await;
    // CHILD: no biometrics, linked to the guardian; too old for the flow; UPDATE of no one.
    let mut child_record = identity("Sira Diallo", "2024-01-01");
    child_record.as_object_mut().unwrap().remove("individualBiometrics");
    let mut child = draft(5, &child_record, vec![]);
    child.files.retain(|(_, kind, _)| *kind == FileKind::Identity);
    child.flow = Flow::Child;
    child.guardian_uin = Some(uin.clone());
    f.upload(f.seal(&child)).await.unwrap();
    f.drain().await;
    let mut older = child.clone();
    older.rid = rid(6);
    older.files[0].2 = serde_json::to_vec(&{
        let mut r = child_record.clone();
        r["dateOfBirth"] = json!("2010-01-01");
        r
    })
    .unwrap();
    f.upload(f.seal(&older)).await.unwrap();
    f.drain().await;
    let mut forged = update.clone();
    forged.rid = rid(8);
    forged.files[1].2 = stranger.cbeff(&mut rng, "2026-12-07T09:40:00.000Z");
    f.upload(f.seal(&forged)).await.unwrap();
    f.drain().await;
    let mut stray = update.clone();
    stray.rid = rid(7);
    stray.uin = Some(tessera_core::Uin::generate(&IdRules::uin_default(), &mut rng).unwrap().expose().to_owned());
    f.upload(f.seal(&stray)).await.unwrap();
    f.drain().await;
    f.drain().await;

    let s2 = f.status(2).await;
    assert_eq!((s2.status.as_str(), s2.uin.as_deref()), ("updated", Some(uin.as_str())), "{s2:?}");
    let actor = Actor { id: "token:test".into(), request_id: String::new() };
    let now = f.repo.get(&actor, &tessera_core::Uin::parse_with(&uin, &IdRules::uin_default()).unwrap(), NOW).await.unwrap();
    assert_eq!(now.record["city"][0]["value"], "New Town");
    assert_eq!(now.record["fullName"][0]["value"], "Amina Diallo", "the rest of the record is kept");
    assert_eq!(now.version, 2);
    // The credential step: one credential per registration that issued or updated, the update's
    // superseding the first, carrying the updated record; none for a found UIN.
    let creds = Credentials::new(f.repo.clone(), CredentialConfig::default()).unwrap();
    let list = creds.list(&actor, &tessera_core::Uin::parse_with(&uin, &IdRules::uin_default()).unwrap(), NOW).await.unwrap();
    assert_eq!(list.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(), ["active", "superseded"], "{list:?}");
    let keys = tessera_credentials::sd_jwt::keys_of_jwks(&creds.jwks().unwrap());
    let v = tessera_credentials::sd_jwt::verify(
        list[0].credential.as_deref().unwrap(),
        &|k| keys.get(k).cloned(),
        Some("https://id.test"),
        NOW / 1000,
    )
    .unwrap();
    assert_eq!((v.disclosed["uin"].as_str(), v.disclosed["city"][0]["value"].as_str()), (Some(uin.as_str()), Some("New Town")));
    assert!(!v.disclosed.contains_key("individualBiometrics"), "no biometrics in a credential");
    for (seq, want) in [(1, Some(&list[1].id)), (2, Some(&list[0].id)), (3, None)] {
        let got = f.status(seq).await.history.into_iter().find(|e| e.outcome == "credential").and_then(|e| e.detail);
        assert_eq!(got.as_ref(), want, "registration {seq}");
    }
    let s3 = f.status(3).await;
    assert_eq!((s3.status.as_str(), s3.uin.as_deref()), ("found", Some(uin.as_str())), "{s3:?}");
    let s4 = f.status(4).await;
    assert_eq!((s4.status.as_str(), s4.reason.as_deref()), ("rejected", Some("lost_not_found")), "{s4:?}");
    let s5 = f.status(5).await;
    assert_eq!(s5.status, "issued", "{s5:?}");
    let child_id = rows::packet(f.repo.db(), &rid(5).to_string()).await.unwrap().unwrap().identity_id.unwrap();
    let links = rows::links_of(f.repo.db(), &child_id).await.unwrap();
    assert_eq!(links, [("guardian".to_owned(), now.id.clone(), rid(5).to_string())]);
    assert_eq!(f.status(6).await.reason.as_deref(), Some("child_too_old"));
    assert_eq!(f.status(7).await.reason.as_deref(), Some("uin_not_found"));
    assert_eq!(f.status(8).await.reason.as_deref(), Some("update_not_verified"), "another person's biometrics change nothing");
    assert_eq!(tessera_store::identities::counts(f.repo.db()).await.unwrap().0, 2, "Alice and her child");
}

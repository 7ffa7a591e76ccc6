//! The notification outbox on SQLite and PostgreSQL: enqueued once per key, delivered once
//! through the file adapter even across a crash between claim and mark, retried through the
//! SMS webhook under one Idempotency-Key, and never an address in clear in the database.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_crypto::{MasterKey, SoftwareKeystore};
use tessera_idrepo::IdRepo;
use tessera_notify::{Address, Enqueued, NewNotification, Notifier, NotifyConfig, Status, WebhookConfig};
use tessera_store::{BlobStore, Db, Vault, outbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW: i64 = 1_796_000_000_000;
const EMAIL: &str = "amina.diallo@example.org";
const PHONE: &str = "+224620123456";

tessera_testkit::storage_tests!(
    enqueue_twice_is_one_message,
    file_delivery_writes_one_line,
    crash_between_claim_and_mark_still_one_line,
    webhook_is_retried_under_one_idempotency_key,
    no_address_in_clear_in_the_database,
    concurrent_workers_cut_off_at_any_point_send_each_once,
);

struct Fixture {
    repo: IdRepo,
    dir: tempfile::TempDir,
}

async fn fixture(url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(url).await.unwrap();
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, NOW).unwrap());
    let repo = IdRepo::new(db, vault, blobs, ks, Arc::new(Schema::default_schema()), IdRules::uin_default());
    Fixture { repo, dir }
}

impl Fixture {
    fn config(&self) -> NotifyConfig {
        NotifyConfig { lease_ms: 60_000, ..NotifyConfig::embedded(self.dir.path()) }
    }

    fn notifier(&self) -> Notifier {
        Notifier::new(self.repo.clone(), self.config()).unwrap()
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        let path = tessera_notify::outbox_file(self.dir.path());
        let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn issued(key: &str, to: Address) -> NewNotification {
    NewNotification {
        key: key.into(),
        to,
        template: "registration.issued".into(),
        language: Some("fra".into()),
        vars: BTreeMap::from([("name".into(), "Amina Diallo".into()), ("uin".into(), "4783920165".into())]),
    }
}

async fn enqueue_twice_is_one_message(url: &str) {
    let f = fixture(url).await;
    let n = f.notifier();
    let first = n.enqueue_now(&issued("registration.issued:r1:email", Address::Email(EMAIL.into())), NOW).await.unwrap();
    let Enqueued::New(id) = first else { panic!("first enqueue must be new") };
    // Inside a caller's transaction, as the pipeline does it: the same key is a no-op.
    let p = n.prepare(&issued("registration.issued:r1:email", Address::Email(EMAIL.into())), NOW).await.unwrap();
    let mut tx = f.repo.db().begin().await.unwrap();
    assert_eq!(n.enqueue(&mut tx, p, NOW).await.unwrap(), Enqueued::Existing(id.clone()));
    tx.commit().await.unwrap();
    // A rolled-back transaction enqueues nothing.
    let p = n.prepare(&issued("registration.issued:r2:email", Address::Email(EMAIL.into())), NOW).await.unwrap();
    let mut tx = f.repo.db().begin().await.unwrap();
    assert!(matches!(n.enqueue(&mut tx, p, NOW).await.unwrap(), Enqueued::New(_)));
    drop(tx);
    let all = n.list(None, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].id.as_str(), all[0].status, all[0].language.as_str()), (id.as_str(), Status::Pending, "fra"));
    // Refused before anything is stored: a line break in a variable, an unknown event.
    let mut evil = issued("k:evil", Address::Email(EMAIL.into()));
    evil.vars.insert("name".into(), "A\r\nBcc: x@example.org".into());
    assert_eq!(n.enqueue_now(&evil, NOW).await.unwrap_err().code(), "template_variable_invalid");
    let mut unknown = issued("k:unknown", Address::Email(EMAIL.into()));
    unknown.template = "no.such.event".into();
    assert_eq!(n.enqueue_now(&unknown, NOW).await.unwrap_err().code(), "template_missing");
    assert_eq!(n.list(None, 100).await.unwrap().len(), 1);
}

async fn file_delivery_writes_one_line(url: &str) {
    let f = fixture(url).await;
    let n = f.notifier();
    let record = serde_json::json!({
        "fullName": [{"language": "ara", "value": "أمينة ديالو"}, {"language": "eng", "value": "Amina Diallo"}],
        "email": EMAIL,
        "phone": PHONE,
    });
    let vars = BTreeMap::from([("uin".to_owned(), "4783920165".to_owned())]);
    let msgs = NewNotification::for_record("registration.issued:r1", "registration.issued", record.as_object().unwrap(), None, &vars);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        n.enqueue_now(m, NOW).await.unwrap();
    }
    let d = n.deliver_due(NOW, 10).await.unwrap();
    assert_eq!((d.sent, d.retried, d.failed), (2, 0, 0));
    let lines = f.lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["to"], EMAIL);
    assert_eq!(lines[1]["to"], PHONE);
    assert_eq!(lines[0]["language"], "ara");
    assert!(lines[0]["body"].as_str().unwrap().contains("أمينة ديالو") && lines[0]["body"].as_str().unwrap().contains("4783920165"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tessera_notify::outbox_file(f.dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Nothing is due any more, later either: still two lines.
    assert!(n.deliver_due(NOW + 3_600_000, 10).await.unwrap().is_empty());
    assert_eq!(f.lines().len(), 2);
    assert_eq!(outbox::count(f.repo.db(), Status::Sent).await.unwrap(), 2);
    // Sent: the sealed address's key is destroyed.
    let row = outbox::get(f.repo.db(), lines[0]["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(f.repo.open_many("notification", &[(&row.id, &row.payload)]).await.unwrap(), vec![None]);
}

async fn crash_between_claim_and_mark_still_one_line(url: &str) {
    let f = fixture(url).await;
    let n = f.notifier();
    let Enqueued::New(before) = n.enqueue_now(&issued("k:before-write", Address::Email(EMAIL.into())), NOW).await.unwrap() else {
        panic!()
    };
    let Enqueued::New(after) = n.enqueue_now(&issued("k:after-write", Address::Phone(PHONE.into())), NOW + 1).await.unwrap() else {
        panic!()
    };
    // A worker claims both and dies: the first before writing anything, the second after its
    // line reached the file but before it could mark the message sent.
    let c1 = outbox::claim(f.repo.db(), "file", "file", 60_000, NOW + 2).await.unwrap().unwrap();
    let c2 = outbox::claim(f.repo.db(), "file", "file", 60_000, NOW + 2).await.unwrap().unwrap();
    assert_eq!((c1.id.as_str(), c2.id.as_str()), (before.as_str(), after.as_str()));
    let adapter = tessera_notify::FileAdapter::new(tessera_notify::outbox_file(f.dir.path()));
    let m = tessera_notify::adapters::Outgoing {
        id: &after,
        channel: "sms",
        to: PHONE,
        template: "registration.issued",
        language: "fra",
        subject: "s",
        body: "b",
    };
    adapter.send(&m, NOW + 2).await.unwrap();
    // While the lease runs, nobody touches them.
    assert!(n.deliver_due(NOW + 30_000, 10).await.unwrap().is_empty());
    // The lease expires; a new worker settles both.
    let d = n.deliver_due(NOW + 61_000, 10).await.unwrap();
    assert_eq!(d.recovered, 2);
    assert_eq!(d.sent, 1, "the written one is found in the file and marked sent");
    assert_eq!(d.retried, 1, "the unwritten one goes back to the queue");
    let d = n.deliver_due(NOW + 61_000 + tessera_store::jobs::backoff_ms(1), 10).await.unwrap();
    assert_eq!(d.sent, 1);
    let lines = f.lines();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![after.as_str(), before.as_str()], "exactly one line per message");
    // The stale worker wakes up and tries to finish its attempt: fenced, nothing changes.
    assert!(!outbox::finish(f.repo.db(), &c1.id, c1.attempts, Status::Failed, NOW, Some("late"), NOW + 70_000).await.unwrap());
    assert_eq!(outbox::get(f.repo.db(), &before).await.unwrap().unwrap().status, Status::Sent);
    // And a resend through the adapter itself (a stale writer) adds no line.
    adapter.send(&m, NOW + 80_000).await.unwrap();
    assert_eq!(f.lines().len(), 2);
}

/// A tiny HTTP server that answers the listed statuses in turn (then 200) and records each
/// request's Idempotency-Key and body.
async fn gateway(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body by Content-Length.
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break (head, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned());
                    }
                }
            };
            let key = head
                .lines()
                .find_map(|l| {
                    l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")).map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_default();
            log.lock().unwrap().push((key, body));
            let status = statuses.next().unwrap_or(200);
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, seen)
}

async fn webhook_is_retried_under_one_idempotency_key(url: &str) {
    let f = fixture(url).await;
    let (hook, seen) = gateway(vec![500]).await;
    let cfg = NotifyConfig { sms: Some(WebhookConfig { url: hook, allow_http: true, token: None, timeout_ms: 5000 }), ..f.config() };
    let n = Notifier::new(f.repo.clone(), cfg).unwrap();
    let Enqueued::New(id) = n.enqueue_now(&issued("k:sms", Address::Phone(PHONE.into())), NOW).await.unwrap() else { panic!() };
    let d = n.deliver_due(NOW, 10).await.unwrap();
    assert_eq!((d.sent, d.retried), (0, 1));
    let info = &n.list(Some(Status::Pending), 10).await.unwrap()[0];
    assert_eq!((info.attempts, info.last_error.as_deref(), info.adapter.as_deref()), (1, Some("webhook_5xx"), Some("webhook")));
    // Not before its backoff.
    assert!(n.deliver_due(NOW + 10, 10).await.unwrap().is_empty());
    let d = n.deliver_due(NOW + tessera_store::jobs::backoff_ms(1), 10).await.unwrap();
    assert_eq!(d.sent, 1);
    assert!(n.deliver_due(NOW + 3_600_000, 10).await.unwrap().is_empty());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one failed request, one delivered, nothing after");
    assert!(seen.iter().all(|(k, _)| k == &id), "the Idempotency-Key is the notification id on every attempt");
    let body: serde_json::Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!((body["to"].as_str(), body["id"].as_str()), (Some(PHONE), Some(id.as_str())));
    assert!(body["text"].as_str().unwrap().contains("4783920165"));
    // Nothing went to the file.
    assert!(f.lines().is_empty());
}

async fn no_address_in_clear_in_the_database(url: &str) {
    let f = fixture(url).await;
    let n = f.notifier();
    n.enqueue_now(&issued("k:e", Address::Email(EMAIL.into())), NOW).await.unwrap();
    n.enqueue_now(&issued("k:p", Address::Phone(PHONE.into())), NOW).await.unwrap();
    let secrets = [EMAIL, PHONE, "Amina Diallo", "4783920165"];
    for info in n.list(None, 10).await.unwrap() {
        let row = outbox::get(f.repo.db(), &info.id).await.unwrap().unwrap();
        let text = format!("{row:?}");
        let raw = String::from_utf8_lossy(&row.payload);
        for s in secrets {
            assert!(!text.contains(s) && !raw.contains(s), "a row holds {s} in clear");
        }
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        // The raw database files, as a thief with a copy would read them.
        for suffix in ["", "-wal"] {
            let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) else { continue };
            let text = String::from_utf8_lossy(&bytes);
            for s in secrets {
                assert!(!text.contains(s), "the database file{suffix} holds {s} in clear");
            }
        }
    }
}

/// Two workers deliver concurrently and are cut off (their futures dropped, as a killed process
/// stops) after ever-changing budgets, at whatever await point they happen to be; after each
/// round the clock passes the lease. In the end every message is in the file exactly once.
async fn concurrent_workers_cut_off_at_any_point_send_each_once(url: &str) {
    const MESSAGES: usize = 200;
    let f = fixture(url).await;
    let n = f.notifier();
    for i in 0..MESSAGES {
        n.enqueue_now(&issued(&format!("k:{i}"), Address::Phone(PHONE.into())), NOW).await.unwrap();
    }
    let mut now = NOW;
    let mut budget_us: u64 = 300;
    for round in 0..200 {
        let (a, b) = (n.clone(), Notifier::new(f.repo.clone(), f.config()).unwrap());
        let cut = std::time::Duration::from_micros(budget_us);
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { tokio::time::timeout(cut, a.deliver_due(now, 7)).await }),
            tokio::spawn(async move { tokio::time::timeout(cut * 2, b.deliver_due(now, 5)).await }),
        );
        for r in [ra, rb] {
            // A panic inside delivery fails the test; a cut-off (the timeout) is the point.
            if let Ok(d) = r.unwrap() {
                d.unwrap();
            }
        }
        budget_us = (budget_us * 7 + 1300) % 20_000 + 200;
        // Past every lease and backoff: whatever was cut off is settled next round.
        now += 61_000 + tessera_store::jobs::BACKOFF_MAX_MS;
        if outbox::count(f.repo.db(), Status::Sent).await.unwrap() == MESSAGES as i64 {
            assert!(round > 0);
            break;
        }
    }
    // Whatever is left is finished without interruption.
    for _ in 0..3 {
        n.deliver_due(now, 1000).await.unwrap();
        now += 61_000 + tessera_store::jobs::BACKOFF_MAX_MS;
    }
    assert_eq!(outbox::count(f.repo.db(), Status::Sent).await.unwrap(), MESSAGES as i64);
    let lines = f.lines();
    let ids: std::collections::HashSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!((lines.len(), ids.len()), (MESSAGES, MESSAGES), "each message exactly once");
}

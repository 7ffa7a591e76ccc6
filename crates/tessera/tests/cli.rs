//! The `tessera` binary as a user runs it: identifiers, configuration, `init`, and `serve` on
//! SQLite and PostgreSQL (health, readiness, worker refilling the pool, graceful SIGTERM).
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

mod common;

use common::{run as stdout_of, tessera};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera_testkit::{TestDb, exec_sql, mosip};

#[test]
fn generated_uins_are_distinct_and_pass_mosip() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["uin", "generate", "--count", "20000"]));
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 20_000);
    assert_eq!(lines.iter().collect::<HashSet<_>>().len(), 20_000, "duplicates");
    for l in &lines {
        assert!(mosip::uin_ok(l), "{l} fails MOSIP's rules");
    }
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["vid", "generate", "--count", "2000"]));
    assert!(ok);
    assert!(out.lines().all(mosip::vid_ok));
    // Bounded.
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["uin", "generate", "--count", "0"]));
    assert!(!ok && err.contains("--count"));
}

#[test]
fn validate_names_the_broken_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good, _) = stdout_of(tessera(dir.path()).args(["uin", "generate", "--seed", "7"]));
    let good = good.trim();
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["uin", "validate", good]));
    assert!(ok && out.trim() == "valid");

    let last = good.as_bytes()[9] - b'0';
    let wrong_check = format!("{}{}", &good[..9], (last + 1) % 10);
    let cases = [(wrong_check.as_str(), "checksum"), ("1234567890", "sequence"), ("2945294529", "repeating_block"), ("123", "length")];
    for (input, rule) in cases {
        let (ok, _, err) = stdout_of(tessera(dir.path()).args(["uin", "validate", input]));
        assert!(!ok, "{input} accepted");
        assert!(err.contains(&format!("invalid UIN: {rule}:")), "{input}: expected {rule} in {err}");
        assert!(!err.contains(input), "the error repeats the input");
    }
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["vid", "validate", "1234567890123456"]));
    assert!(!ok && err.contains("invalid VID: sequence:"), "{err}");
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["rid", "validate", "10001100010000120250101120000"]));
    assert!(ok && out.contains("\"centre\":\"10001\""), "{out}");
}

#[test]
fn configuration_layers_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // The password never appears when configuration is shown.
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["config", "--database-url", "postgres://u:hunter2@db/x"]));
    assert!(ok);
    assert!(out.contains("postgres://u:****@db/x") && !out.contains("hunter2"), "{out}");
    // Environment overrides the file; nested keys use a double underscore.
    std::fs::create_dir_all(dir.path().join("tessera-data")).unwrap();
    std::fs::write(dir.path().join("tessera-data/tessera.toml"), "listen = \"127.0.0.1:9000\"\n[uin_pool]\nrefill_batch = 60000\n")
        .unwrap();
    let (ok, out, _) = stdout_of(tessera(dir.path()).arg("config").env("TESSERA_UIN_POOL__REFILL_BATCH", "70000"));
    assert!(ok);
    assert!(out.contains("listen = \"127.0.0.1:9000\"") && out.contains("refill_batch = 70000"), "{out}");
    // Every problem is named, and nothing starts.
    std::fs::write(dir.path().join("tessera-data/tessera.toml"), "typo_key = 1\n").unwrap();
    let (ok, _, err) = stdout_of(tessera(dir.path()).arg("config"));
    assert!(!ok && err.contains("typo_key"), "{err}");
    std::fs::write(dir.path().join("tessera-data/tessera.toml"), "listen = \"nowhere\"\n").unwrap();
    let (ok, _, err) = stdout_of(tessera(dir.path()).arg("config"));
    assert!(!ok && err.contains("listen"), "{err}");
    std::fs::write(dir.path().join("tessera-data/tessera.toml"), "[uin_pool]\nrefill_batch = 0\n[worker]\npoll_interval_ms = 1\n").unwrap();
    let (ok, _, err) = stdout_of(tessera(dir.path()).arg("config"));
    assert!(!ok && err.contains("refill_batch") && err.contains("poll_interval_ms"), "{err}");
}

#[test]
fn schema_validation_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("r.json");
    std::fs::write(&record, r#"{"dateOfBirth": "1990-13-45", "email": "not-an-email", "unknownField": 1}"#).unwrap();
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["schema", "validate"]).arg(&record));
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let paths: HashSet<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for p in ["/dateOfBirth", "/email", "/unknownField", "/fullName"] {
        assert!(paths.contains(p), "{p} missing from {out}");
    }
    assert!(!out.contains("not-an-email"), "errors must not echo values");
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["schema", "show"]));
    assert!(ok && out.contains("dateOfBirth"));
}

/// A running `tessera serve`, killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tessera serve` on a free port and waits for its "listening" log line.
fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    serve_until(dir, extra, env, "listening")
}

/// Starts `tessera serve` and waits for a log line with message `ready` (a worker-only process
/// never listens).
fn serve_until(dir: &Path, extra: &[&str], env: &[(&str, &str)], ready: &'static str) -> Server {
    let mut cmd = tessera(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra).stderr(Stdio::piped()).stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Every log line is also kept in a file beside the data directory, for the tests that
    // search the logs for what must never be there.
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        let mut sent = false;
        for line in stderr.lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if !sent
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == ready
            {
                tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_owned()).unwrap();
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server did not start");
    Server { child, base: format!("http://{addr}") }
}

fn get(url: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let res = reqwest::get(url).await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    })
}

fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no graceful exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_on_embedded_default_with_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], &[]);
    let (status, body) = get(&format!("{}/healthz", server.base));
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(&format!("{}/readyz", server.base));
    assert_eq!((status, body["database"].as_str()), (200, Some("sqlite")));
    // First run created the data directory and filled the pool.
    assert!(dir.path().join("tessera-data/tessera.toml").is_file());
    assert!(dir.path().join("tessera-data/tessera.db").is_file());
    assert!(terminate(&mut server).success(), "SIGTERM is a clean exit");
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["uin", "pool", "status"]));
    assert!(ok);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["unused"], 50_000);
}

#[test]
fn serve_on_postgres_refills_the_pool() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TESSERA_DATABASE_URL", db.url()),
        ("TESSERA_UIN_POOL__REFILL_THRESHOLD", "10"),
        ("TESSERA_UIN_POOL__REFILL_BATCH", "25"),
        ("TESSERA_WORKER__HOUSEKEEPING_INTERVAL_MS", "100"),
        ("TESSERA_WORKER__POLL_INTERVAL_MS", "20"),
    ];
    let mut server = serve(dir.path(), &[], &env);
    let (status, body) = get(&format!("{}/readyz", server.base));
    assert_eq!((status, body["database"].as_str()), (200, Some("postgres")));

    // The worker sees an empty pool, enqueues a refill job, and runs it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, err) = stdout_of(tessera(dir.path()).args(["uin", "pool", "status"]).env("TESSERA_DATABASE_URL", db.url()));
        assert!(ok, "{err}");
        let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
        if stats["unused"] == 25 {
            break;
        }
        assert!(Instant::now() < deadline, "pool never refilled: {out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["jobs", "list", "--state", "done"]).env("TESSERA_DATABASE_URL", db.url()));
    assert!(ok && out.contains("uin_pool_refill"), "{out}");
    assert!(terminate(&mut server).success());
}

fn pool_stats(dir: &Path, url: &str) -> serde_json::Value {
    let (ok, out, err) = stdout_of(tessera(dir).args(["uin", "pool", "status", "--database-url", url]));
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// kill -9 in the middle of concurrent allocation: committed numbers stay issued, nothing is
/// left half-assigned, and later allocations never repeat a number.
fn allocation_survives_kill_9(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tessera(dir.path())
        .args(["bench", "uin-pool", "--database-url", url, "--workers", "4", "--count", "200000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The bench first fills the pool, then allocates; wait until allocation is under way.
        let stats = pool_stats(dir.path(), url);
        if stats["issued"].as_i64().unwrap() >= 50 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "bench ended before it could be killed");
        assert!(Instant::now() < deadline, "allocation never started: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = pool_stats(dir.path(), url);
    assert_eq!(before["assigned"], 0, "a killed transaction left a number assigned: {before}");

    // A second run allocates only fresh numbers: the bench checks for duplicates among its own
    // allocations and that the issued count grew by exactly its count.
    let (ok, out, err) =
        stdout_of(tessera(dir.path()).args(["bench", "uin-pool", "--database-url", url, "--workers", "4", "--count", "300"]));
    assert!(ok, "{out}{err}");
    let after = pool_stats(dir.path(), url);
    assert_eq!(after["issued"].as_i64().unwrap(), before["issued"].as_i64().unwrap() + 300);
}

#[test]
fn allocation_survives_kill_9_sqlite() {
    let db = TestDb::sqlite();
    allocation_survives_kill_9(db.url());
}

#[test]
fn allocation_survives_kill_9_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(TestDb::postgres());
    allocation_survives_kill_9(db.url());
}

#[test]
fn keystore_lives_apart_from_its_master_key_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = stdout_of(tessera(dir.path()).arg("init"));
    assert!(ok, "{err}");
    // The master key is beside the data directory, never in it; both are private.
    let key_file = dir.path().join("tessera-data.master-key");
    let keys_json = dir.path().join("tessera-data/keystore/keys.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&keys_json).unwrap().permissions().mode() & 0o777, 0o600);
        for db in ["tessera-data/tessera.db", "tessera-data/keystore/vault.db"] {
            assert_eq!(std::fs::metadata(dir.path().join(db)).unwrap().permissions().mode() & 0o777, 0o600, "{db}");
        }
    }
    let master = std::fs::read_to_string(&key_file).unwrap();
    assert!(!std::fs::read_to_string(&keys_json).unwrap().contains(master.trim()));

    let list = |d: &Path| {
        let (ok, out, err) = stdout_of(tessera(d).args(["keys", "list"]));
        assert!(ok, "{err}");
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(
        list(dir.path()).iter().filter(|k| k["current"] == true).count(),
        tessera_crypto::Purpose::ALL.len(),
        "one current key per purpose"
    );
    let (ok, out, _) = stdout_of(tessera(dir.path()).args(["keys", "rotate", "identity"]));
    assert!(ok && out.trim() == "identity.v2", "{out}");
    let keys = list(dir.path());
    assert!(keys.iter().any(|k| k["id"] == "identity.v1" && k["current"] == false));
    assert!(keys.iter().any(|k| k["id"] == "identity.v2" && k["current"] == true));
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["keys", "rotate", "bogus"]));
    assert!(!ok && err.contains("unknown purpose"));

    // Without the master key file, or with a wrong key, nothing opens.
    std::fs::rename(&key_file, dir.path().join("elsewhere")).unwrap();
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["keys", "list"]));
    assert!(!ok && err.contains("no master key"), "{err}");
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["keys", "list"]).env("TESSERA_MASTER_KEY", wrong));
    assert!(!ok && err.contains("master key does not open"), "{err}");
    let (ok, _, _) = stdout_of(tessera(dir.path()).args(["keys", "list"]).env("TESSERA_MASTER_KEY", master.trim()));
    assert!(ok, "the right key from the environment opens it");
}

#[test]
fn keystore_from_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let pass = ("TESSERA_MASTER_PASSPHRASE", "a long enough passphrase");
    let (ok, _, err) = stdout_of(tessera(dir.path()).arg("init").env(pass.0, pass.1));
    assert!(ok, "{err}");
    assert!(!dir.path().join("tessera-data.master-key").exists(), "no key file when a passphrase is given");
    let (ok, _, _) = stdout_of(tessera(dir.path()).args(["keys", "list"]).env(pass.0, pass.1));
    assert!(ok);
    let (ok, _, err) = stdout_of(tessera(dir.path()).args(["keys", "list"]).env(pass.0, "a different passphrase"));
    assert!(!ok && err.contains("master key does not open"), "{err}");
}

/// Markers that must never appear outside ciphertext: unique strings in a name, an address, a
/// phone number and an e-mail address, created through the API and through import.
const CANARIES: [&str; 7] =
    ["Qzxcanaryname", "Qzxcanaryaddress", "99170031337", "qzxcanarymail", "Qzxcanaryimport", "99170031338", "Qzxcanaryerased"];

/// The forms a marker could take in a file: UTF-8, UTF-16 (both byte orders), and base64 at
/// each of the three alignments (only the characters that depend on the marker alone).
fn forms(marker: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let m = marker.as_bytes();
    let mut out = vec![m.to_vec()];
    out.push(marker.encode_utf16().flat_map(u16::to_le_bytes).collect());
    out.push(marker.encode_utf16().flat_map(u16::to_be_bytes).collect());
    for p in 0..3usize {
        let mut padded = vec![0u8; p];
        padded.extend_from_slice(m);
        let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
        let (from, to) = (4 * p.div_ceil(3), 4 * ((p + m.len()) / 3));
        out.push(enc.as_bytes()[from..to].to_vec());
    }
    out
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
    }
    out
}

/// The first marker found in `bytes`, in any of its forms.
fn find_canary(bytes: &[u8]) -> Option<&'static str> {
    CANARIES.into_iter().find(|c| forms(c).iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_slice())))
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    if let Some(c) = find_canary(bytes) {
        panic!("marker {c} (a form of it) found in {what}");
    }
}

fn call(method: &str, url: &str, token: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut req = c.request(method.parse().unwrap(), url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    })
}

fn canary_person(name: &str, address: &str, phone: &str) -> serde_json::Value {
    serde_json::json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": "1979-03-02",
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": address}],
        "city": [{"language": "eng", "value": "Labe"}],
        "region": [{"language": "eng", "value": "Labe"}],
        "phone": phone
    })
}

/// The issue's acceptance, end to end through the binary: records created through the API and
/// through import, a key rotation while the server runs, erasure, audit verification and
/// tampering; then no marker anywhere in the data directory, logs (or `pg_dump`).
fn identity_repository_end_to_end(db: Option<&TestDb>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db_args: Vec<String> = db.map(|t| vec!["--database-url".to_owned(), t.url().to_owned()]).unwrap_or_default();
    let db_args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    let (ok, out, err) = stdout_of(tessera(d).arg("init").arg("--json").args(&db_args));
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let admin = summary["admin_token"].as_str().unwrap().to_owned();
    // Only once: a second init issues no new token.
    let (_, out, _) = stdout_of(tessera(d).arg("init").arg("--json").args(&db_args));
    assert!(!out.contains("admin_token"));

    let mut server = serve(d, &db_args, &[("TESSERA_LOG", "debug"), ("TESSERA_WORKER__POLL_INTERVAL_MS", "50")]);
    let base = server.base.clone();
    let (s, _) = call("POST", &format!("{base}/v1/identities"), "tsr_wrong", Some(serde_json::json!({})));
    assert_eq!(s, 401);
    let body = serde_json::json!({"record": canary_person("Qzxcanaryname", "Qzxcanaryaddress", "+99170031337"), "reason": "test"});
    let (s, a) = call("POST", &format!("{base}/v1/identities"), &admin, Some(body));
    assert_eq!(s, 201, "{a}");
    let uin_a = a["uin"].as_str().unwrap().to_owned();
    let (s, _) = call(
        "PATCH",
        &format!("{base}/v1/identities/{uin_a}"),
        &admin,
        Some(serde_json::json!({"record": {"email": "qzxcanarymail@example.org"}})),
    );
    assert_eq!(s, 200);

    // Import: one good line, one bad (reported by number, values not echoed), one repeated.
    let line = |r: &str, p: serde_json::Value| serde_json::json!({"external_ref": r, "record": p}).to_string();
    let mut bad = canary_person("Qzxcanaryimport", "x", "+99170031338");
    bad["gender"] = serde_json::json!("Qzxcanaryimport");
    let file = d.join("register.jsonl");
    std::fs::write(
        &file,
        [line("R-1", canary_person("Qzxcanaryimport", "Qzxcanaryaddress", "+99170031338")), line("R-2", bad), String::new()].join("\n"),
    )
    .unwrap();
    let (ok, out, err) = stdout_of(tessera(d).args(["identity", "import", file.to_str().unwrap()]).args(&db_args));
    assert!(!ok && err.contains("line 2: /record/gender not_allowed_value") && !err.contains("Qzxcanary"), "{out}{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["imported"], 1);
    let (_, out, _) = stdout_of(tessera(d).args(["identity", "import", file.to_str().unwrap()]).args(&db_args));
    assert_eq!(serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["already_present"], 1, "a rerun creates nothing");

    // Rotation while the server runs: old and new records both read; different key versions.
    let (ok, out, err) = stdout_of(tessera(d).args(["keys", "rotate", "identity"]).args(&db_args));
    assert!(ok && out.trim() == "identity.v2", "{err}");
    std::thread::sleep(Duration::from_millis(1100)); // the server notices within REFRESH_EVERY
    let body = serde_json::json!({"record": canary_person("Qzxcanaryerased", "Qzxcanaryaddress", "+99170031337")});
    let (s, c) = call("POST", &format!("{base}/v1/identities"), &admin, Some(body));
    assert_eq!(s, 201);
    let uin_c = c["uin"].as_str().unwrap().to_owned();
    let (_, got_c) = call("GET", &format!("{base}/v1/identities/{uin_c}"), &admin, None);
    assert_eq!(
        (got_c["record"]["fullName"][0]["value"].as_str(), got_c["sealed_with"].as_str()),
        (Some("Qzxcanaryerased"), Some("identity.v2"))
    );
    let (_, got_a) = call("GET", &format!("{base}/v1/identities/{uin_a}"), &admin, None);
    assert_eq!(got_a["record"]["fullName"][0]["value"], "Qzxcanaryname");
    // The re-wrap job queued by the rotation moves the old record's key to v2.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, got) = call("GET", &format!("{base}/v1/identities/{uin_a}"), &admin, None);
        if got["sealed_with"] == "identity.v2" {
            break;
        }
        assert!(Instant::now() < deadline, "re-wrap job did not run: {got}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Erasure.
    let (s, _) = call("DELETE", &format!("{base}/v1/identities/{uin_c}"), &admin, None);
    assert_eq!(s, 204);
    let (s, e) = call("GET", &format!("{base}/v1/identities/{uin_c}"), &admin, None);
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("identity_erased")));

    // Positive controls: the search finds markers in the import file, and in encoded forms.
    assert!(find_canary(&std::fs::read(&file).unwrap()).is_some());
    for p in ["", "x", "xy"] {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{p}Qzxcanaryname!"));
        assert_eq!(find_canary(format!("..{b}..").as_bytes()), Some("Qzxcanaryname"), "base64 after {p:?}");
    }
    let utf16: Vec<u8> = "Qzxcanaryname".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(find_canary(&utf16), Some("Qzxcanaryname"));

    // Markers: while the server runs (the SQLite WAL is there) and after it stopped.
    let scan = || {
        for f in files_under(d).into_iter().filter(|f| f != &file) {
            assert_no_canary(&f.display().to_string(), &std::fs::read(&f).unwrap());
        }
    };
    scan();
    assert!(terminate(&mut server).success());
    scan();
    if let Some((server_url, schema)) = db.and_then(TestDb::pg_server_and_schema) {
        let dump = Command::new(pg_dump()).args(["--dbname", server_url, "--schema", schema, "--data-only"]).output().unwrap();
        assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
        assert!(dump.stdout.len() > 1000, "the dump holds the test's data");
        assert_no_canary("pg_dump", &dump.stdout);
    }

    // Erased even with every file in hand: the vault no longer holds the data key.
    let (ok, out, err) = stdout_of(tessera(d).args(["audit", "verify"]).args(&db_args));
    assert!(ok, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["entries"].as_i64().unwrap() >= 10 && v["checkpoints"].as_u64().unwrap() >= 1, "{v}");
    // One changed byte of one entry: verify fails and names it.
    let url = db.map_or_else(|| format!("sqlite://{}", d.join("tessera-data/tessera.db").display()), |t| t.url().to_owned());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(exec_sql(&url, "UPDATE audit_log SET action = 'identity.rebd' WHERE seq = 4"));
    let (ok, _, err) = stdout_of(tessera(d).args(["audit", "verify"]).args(&db_args));
    assert!(!ok && err.contains("entry 4 was altered"), "{err}");
}

fn pg_dump() -> String {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| r.flatten().map(|e| e.path().join("bin/pg_dump")).filter(|p| p.exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().map_or_else(|| "pg_dump".to_owned(), |p| p.display().to_string())
}

#[test]
fn identity_repository_end_to_end_sqlite() {
    identity_repository_end_to_end(None);
}

#[test]
fn identity_repository_end_to_end_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(TestDb::postgres());
    identity_repository_end_to_end(Some(&db));
}

/// The keystore in an HSM (SoftHSM2, which `cargo xtask ci` installs and configures): no key
/// file anywhere, identities sealed and read back, rotation, audit checkpoints signed in the token.
#[test]
fn keystore_in_a_pkcs11_token() {
    let module = std::env::var("TESSERA_TEST_PKCS11_MODULE")
        .expect("TESSERA_TEST_PKCS11_MODULE is not set: run the tests with `cargo xtask ci`, which installs and configures SoftHSM2");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let label = format!("cli-{}", std::process::id());
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", &label, "--pin", "4321", "--so-pin", "87654321"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let hsm = |c: &mut Command| {
        c.env("TESSERA_KEYSTORE__KIND", "pkcs11")
            .env("TESSERA_KEYSTORE__PKCS11_MODULE", &module)
            .env("TESSERA_KEYSTORE__PKCS11_TOKEN", &label)
            .env("TESSERA_PKCS11_PIN", "4321");
    };
    let mut c = tessera(d);
    c.args(["init", "--json"]);
    hsm(&mut c);
    let (ok, out, err) = stdout_of(&mut c);
    assert!(ok, "{err}");
    assert!(out.contains("admin_token"));
    assert!(!d.join("tessera-data.master-key").exists() && !d.join("tessera-data/keystore/keys.json").exists(), "no key file with an HSM");

    let file = d.join("one.jsonl");
    std::fs::write(
        &file,
        serde_json::json!({"external_ref": "H-1", "record": canary_person("Hsm Person", "1 Road", "+224620000009")}).to_string(),
    )
    .unwrap();
    let mut c = tessera(d);
    c.args(["identity", "import", file.to_str().unwrap()]);
    hsm(&mut c);
    let (ok, out, err) = stdout_of(&mut c);
    assert!(ok && out.contains("\"imported\":1"), "{out}{err}");
    let mut c = tessera(d);
    c.args(["keys", "rotate", "identity"]);
    hsm(&mut c);
    let (ok, out, err) = stdout_of(&mut c);
    assert!(ok && out.trim() == "identity.v2", "{err}");
    let mut c = tessera(d);
    c.args(["audit", "checkpoint"]);
    hsm(&mut c);
    assert!(stdout_of(&mut c).0);
    let mut c = tessera(d);
    c.args(["audit", "verify"]);
    hsm(&mut c);
    let (ok, out, err) = stdout_of(&mut c);
    assert!(ok && out.contains("\"signed_through\""), "{out}{err}");
    // A wrong PIN opens nothing.
    let mut c = tessera(d);
    c.args(["keys", "list"]);
    hsm(&mut c);
    c.env("TESSERA_PKCS11_PIN", "0000");
    let (ok, _, err) = stdout_of(&mut c);
    assert!(!ok && err.contains("PKCS#11"), "{err}");
}

/// Serves every file under `dir` over plain HTTP/1.0 on a free port (a data share for the
/// ABIS's referenceURLs); returns the base URL.
fn file_server(dir: std::path::PathBuf) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
            let body = if path.contains("..") { None } else { std::fs::read(dir.join(&path)).ok() };
            let _ = match body {
                Some(b) => stream
                    .write_all(format!("HTTP/1.0 200 OK\r\ncontent-length: {}\r\n\r\n", b.len()).as_bytes())
                    .and_then(|()| stream.write_all(&b)),
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            };
        }
    });
    base
}

fn abis_message(id: &str, request: &str, extra: &serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::json!({"id": id, "version": "1.1", "requestId": request, "requesttime": "2026-12-07T10:00:00.000Z"});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

/// The scaled-out ABIS as an operator runs it on PostgreSQL: one API process with
/// `abis.shards = 2` and two `--role worker --abis-shard i` processes. Planted duplicates are
/// found through the fan-out, a worker killed with -9 mid-life is replaced and the search
/// still answers, and a delete reaches the shard that held the reference.
#[test]
fn sharded_abis_across_processes() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(TestDb::postgres());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, _, err) =
        stdout_of(tessera(d).args(["synth", "biometrics", "--persons", "30", "--duplicates", "4", "--seed", "5", "--out", "pop"]));
    assert!(ok, "{err}");
    let share = file_server(d.join("pop/cbeff"));
    let truth = std::fs::read_to_string(d.join("pop/truth.csv")).unwrap();
    let rows: Vec<(String, String)> =
        truth.lines().skip(1).map(|l| l.split_once(',').map(|(e, p)| (e.to_owned(), p.to_owned())).unwrap()).collect();
    assert_eq!(rows.len(), 34);
    let (ok, out, err) = stdout_of(tessera(d).args(["init", "--json", "--database-url", db.url()]));
    assert!(ok, "{err}");
    let admin = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["admin_token"].as_str().unwrap().to_owned();
    let env = [
        ("TESSERA_DATABASE_URL", db.url()),
        ("TESSERA_ABIS__SHARDS", "2"),
        ("TESSERA_ABIS__DATASHARE_ALLOW_HTTP", "true"),
        ("TESSERA_ABIS__DATASHARE_ENCRYPTED", "false"),
        ("TESSERA_ABIS__SHARD_TIMEOUT_MS", "60000"),
        ("TESSERA_ABIS__THREADS", "1"),
    ];
    let worker = |shard: &str| serve_until(d, &["--role", "worker", "--abis-shard", shard], &env, "ABIS shard worker started");
    let mut api = serve(d, &["--role", "api"], &env);
    let _w0 = worker("0");
    let mut w1 = worker("1");
    let abis = |request: serde_json::Value| {
        let (status, body) = call("POST", &format!("{}/v1/abis", api.base), &admin, Some(request));
        assert_eq!(status, 200, "{body}");
        body
    };
    // Every enrolment as MOSIP sends it: insert, then identify by the inserted reference.
    let mut found = std::collections::HashMap::new();
    for (i, (enrolment, _)) in rows.iter().enumerate() {
        let url = format!("{share}/{enrolment}.xml");
        let r = abis(abis_message(
            "mosip.abis.insert",
            &format!("ins-{i}"),
            &serde_json::json!({"referenceId": enrolment, "referenceURL": url}),
        ));
        assert_eq!(r["returnValue"], "1", "{r}");
        if i == 20 {
            // Shard 1's worker dies; its replacement loads the shard and answers from then on.
            w1.child.kill().unwrap();
            w1.child.wait().unwrap();
            w1 = worker("1");
        }
        let r = abis(abis_message("mosip.abis.identify", &format!("idf-{i}"), &serde_json::json!({"referenceId": enrolment})));
        assert_eq!(r["returnValue"], "1", "{r}");
        let matched: Vec<String> = r["candidateList"]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["analytics"]["decision"] == "match")
            .map(|c| c["referenceId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(r["candidateList"]["analytics"]["gallerySize"], i + 1);
        found.insert(enrolment.clone(), matched);
    }
    // The second enrolment of each planted person matches the first, and nobody else does.
    for (enrolment, person) in &rows {
        let earlier: Vec<String> =
            rows.iter().take_while(|(e, _)| e != enrolment).filter(|(_, p)| p == person).map(|(e, _)| e.clone()).collect();
        assert_eq!(found[enrolment], earlier, "{enrolment}");
    }
    assert_eq!(found.values().filter(|m| !m.is_empty()).count(), 4);
    // A delete reaches its shard: the duplicate is no longer found.
    let (dup, person) = rows.iter().find(|(e, _)| !found[e].is_empty()).unwrap().clone();
    let first = rows.iter().find(|(_, p)| *p == person).unwrap().0.clone();
    let r = abis(abis_message("mosip.abis.delete", "del-1", &serde_json::json!({"referenceId": first})));
    assert_eq!(r["returnValue"], "1", "{r}");
    let r = abis(abis_message("mosip.abis.identify", "idf-after-delete", &serde_json::json!({"referenceId": dup})));
    assert!(r["candidateList"]["candidates"].as_array().unwrap().iter().all(|c| c["referenceId"] != first.as_str()), "{r}");
    let r = abis(abis_message("mosip.abis.referenceCount", "count", &serde_json::json!({})));
    assert_eq!(r["count"], "33");
    assert!(terminate(&mut api).success());
    assert!(terminate(&mut w1).success());
    // The searches really ran in the shard workers (the log of all three processes).
    let log = std::fs::read_to_string(d.join("server.log")).unwrap();
    assert!(log.contains("ABIS searches fan out to the shard workers"));
    // A job may also end after the coordinator removed it ("lease was lost").
    let shard_jobs =
        log.lines().filter(|l| l.contains("abis_search_shard") && (l.contains("job done") || l.contains("lease was lost"))).count();
    assert!(shard_jobs >= 2 * 35, "{shard_jobs} shard jobs done");
}

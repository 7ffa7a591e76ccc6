//! The offline registration client as an operator runs it, through the built binary: a client
//! directory is made and its machine registered; people are enrolled from a CBEFF file and from
//! the SBI simulator while the server is down (the packets stay queued, with a clear message);
//! the server comes up, `sync` uploads, the workers issue UINs and `status --refresh` shows them;
//! an interrupted run uploads again harmlessly; a revoked machine's packet is refused for good
//! with its code; and no personal data reaches the logs or the queue in clear.
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

mod common;

use common::{Proc, free_port, ok_json, run, spawn_until, tessera};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const CANARY: &str = "Qzxclientcanary";

fn serve(dir: &Path, port: u16) -> Proc {
    let mut cmd = tessera(dir);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("TESSERA_ABIS__ENABLED", "true")
        .env("TESSERA_ABIS__THREADS", "1")
        .env("TESSERA_WORKER__POLL_INTERVAL_MS", "50");
    spawn_until(cmd, &dir.join("server.log"), |v| (v["fields"]["message"] == "listening").then(String::new)).0
}

fn person(name: &str, born: &str) -> Value {
    serde_json::json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": born,
        "gender": "female",
        "addressLine1": [{"language": "eng", "value": "12 Harbour Road"}],
        "city": [{"language": "eng", "value": "Port Town"}],
        "region": [{"language": "eng", "value": "Coast"}],
        "proofOfIdentity": {"type": "passport", "format": "pdf", "ref": "passport.pdf"},
    })
}

fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir).unwrap().filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(ext)).count()
}

#[test]
fn offline_client_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The server side: data directory, admin and operator tokens, the registration certificate.
    let admin = ok_json(tessera(d).args(["init", "--json"]));
    assert!(admin["admin_token"].is_string());
    let operator = ok_json(tessera(d).args(["token", "create", "--name", "client", "--role", "operator"]));
    let token = operator["token"].as_str().unwrap().to_owned();
    let (ok, pem, err) = run(tessera(d).args(["machine", "certificate"]));
    assert!(ok, "{err}");
    std::fs::write(d.join("registration.pem"), pem).unwrap();
    let token_file = d.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    // The client directory. A token file others can read is refused.
    let port = free_port();
    let server_url = format!("http://127.0.0.1:{port}");
    let client = d.join("client");
    let init = |extra: &[&str]| {
        let mut c = tessera(d);
        c.args(["client", "init", "--dir", "client", "--server", &server_url, "--centre", "10001", "--machine", "20001"])
            .args(["--operator", "officer-1", "--certificate", "registration.pem", "--token-file", "token"])
            .args(extra);
        run(&mut c)
    };
    let (ok, _, err) = init(&[]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (ok, out, err) = init(&[]);
    assert!(ok, "{err}");
    let public_key = serde_json::from_str::<Value>(out.trim()).unwrap()["public_key"].as_str().unwrap().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&client).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(client.join("machine-key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(!init(&[]).0, "an existing client directory is not overwritten");

    // Register the centre, its operator and the machine.
    ok_json(tessera(d).args(["centre", "create", "--id", "10001", "--name", "Centre One"]));
    ok_json(tessera(d).args(["centre", "assign", "--centre", "10001", "--user", "officer-1", "--role", "operator"]));
    ok_json(tessera(d).args(["machine", "register", "--id", "20001", "--centre", "10001", "--public-key", &public_key]));

    // Person A from a CBEFF file, with a document.
    let (ok, _, err) = run(tessera(d).args(["synth", "biometrics", "--persons", "1", "--seed", "3", "--out", "pop"]));
    assert!(ok, "{err}");
    let truth = std::fs::read_to_string(d.join("pop/truth.csv")).unwrap();
    let enrolment = truth.lines().nth(1).unwrap().split(',').next().unwrap().to_owned();
    let cbeff = d.join(format!("pop/cbeff/{enrolment}.xml"));
    std::fs::write(d.join("passport.pdf"), b"%PDF-1.4 passport scan").unwrap();
    std::fs::write(d.join("a.json"), person(&format!("Amina {CANARY}"), "1990-04-12").to_string()).unwrap();
    let enroll = |extra: &[&str]| {
        let mut c = tessera(d);
        c.args(["client", "enroll", "--dir", "client", "--document", "passport.pdf=passport.pdf", "--json"]).args(extra);
        run(&mut c)
    };
    let (ok, out, err) = enroll(&["--person", "a.json", "--biometrics", cbeff.to_str().unwrap()]);
    assert!(ok, "{err}");
    let rid_a = serde_json::from_str::<Value>(out.trim()).unwrap()["rid"].as_str().unwrap().to_owned();
    assert!(rid_a.starts_with("100012000100001"), "{rid_a}");

    // An invalid person is refused locally, naming fields and never values; no RID is spent.
    let mut bad = person(&format!("Zed {CANARY}"), "1985-01-01");
    bad["gender"] = serde_json::json!(format!("{CANARY}gender"));
    std::fs::write(d.join("bad.json"), bad.to_string()).unwrap();
    let (ok, out, err) = enroll(&["--person", "bad.json", "--biometrics", cbeff.to_str().unwrap()]);
    assert!(!ok && err.contains("/gender") && !err.contains(CANARY) && !out.contains(CANARY), "{err}");
    let (ok, _, err) = enroll(&["--person", "a.json"]);
    assert!(!ok && err.contains("needs biometrics"), "{err}");

    // Person B from the SBI simulator, found by scanning a port range around it.
    let mut sim_cmd = tessera(d);
    sim_cmd.args(["sbi-sim", "--port", "0", "--person-seed", "42"]);
    let (_sim, addr) = spawn_until(sim_cmd, &d.join("sim.log"), |v| v["listening"].as_str().map(str::to_owned));
    let sim_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let range = format!("{}-{}", sim_port.saturating_sub(2), sim_port.saturating_add(2));
    std::fs::write(d.join("b.json"), person(&format!("Bea {CANARY}"), "1982-11-30").to_string()).unwrap();
    let (ok, out, err) = enroll(&["--person", "b.json", "--sbi", &range]);
    assert!(ok, "{err}");
    let b = serde_json::from_str::<Value>(out.trim()).unwrap();
    let rid_b = b["rid"].as_str().unwrap().to_owned();
    assert_eq!(b["captures"], 3, "finger, iris and face devices: {b}");
    assert!(rid_b.starts_with("100012000100002"), "{rid_b}");
    let (ok, _, err) = enroll(&["--person", "b.json", "--sbi", "http://127.0.0.1:1"]);
    assert!(!ok && err.contains("no ready registration device"), "{err}");

    // The server is down: everything stays queued, and the message says so.
    let (ok, out, err) = run(tessera(d).args(["client", "sync", "--dir", "client", "--max-attempts", "2", "--json"]));
    assert!(!ok, "{out}");
    assert!(err.contains("connection failed") && err.contains("stay queued"), "{err}");
    let tally: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((tally["sent"].as_u64(), tally["queued"].as_u64()), (Some(0), Some(2)), "{tally}");
    assert_eq!(count_files(&client.join("queue"), ".tpkt"), 2);
    for entry in std::fs::read_dir(client.join("queue")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()), "a queued packet is readable");
    }

    // The server comes up: both are sent, and their UINs are issued.
    let mut server = serve(d, port);
    let tally = ok_json(tessera(d).args(["client", "sync", "--dir", "client", "--json"]));
    assert_eq!((tally["sent"].as_u64(), tally["queued"].as_u64()), (Some(2), Some(0)), "{tally}");
    assert_eq!(count_files(&client.join("queue"), ".tpkt"), 0);
    assert_eq!(count_files(&client.join("sent"), ".tpkt"), 2);
    let deadline = Instant::now() + Duration::from_secs(120);
    let uins = loop {
        let s =
            ok_json(tessera(d).args(["client", "status", "--dir", "client", "--refresh", "--json"]).env("TESSERA_CLIENT_TOKEN", &token));
        let rows = s["sent_packets"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 2);
        if rows.iter().all(|r| r["status"] != "processing" && r["status"] != "waiting" && r["error"].is_null()) {
            break rows;
        }
        assert!(Instant::now() < deadline, "no UINs in time: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for r in &uins {
        assert_eq!(r["status"], "issued", "{r}");
        assert_eq!(r["uin"].as_str().map(str::len), Some(10), "{r}");
    }
    assert_ne!(uins[0]["uin"], uins[1]["uin"], "two people, two UINs");
    let side: Value = serde_json::from_slice(&std::fs::read(client.join(format!("sent/{rid_b}.json"))).unwrap()).unwrap();
    assert_eq!(side["server_status"]["status"], "issued");

    // A run killed after the upload, before the move: the packet is back in the queue, and
    // uploading it again is accepted as the same packet.
    std::fs::copy(client.join(format!("sent/{rid_a}.tpkt")), client.join(format!("queue/{rid_a}.tpkt"))).unwrap();
    let tally = ok_json(tessera(d).args(["client", "sync", "--dir", "client", "--json"]));
    assert_eq!(tally["sent"], 1, "{tally}");
    let side: Value = serde_json::from_slice(&std::fs::read(client.join(format!("sent/{rid_a}.json"))).unwrap()).unwrap();
    assert_eq!(side["answer"]["already"], true, "{side}");

    // A revoked machine's packet is refused for good, with the server's code.
    ok_json(tessera(d).args(["machine", "revoke", "--id", "20001"]));
    std::fs::write(d.join("c.json"), person(&format!("Cleo {CANARY}"), "1975-06-01").to_string()).unwrap();
    let (ok, out, err) = enroll(&["--person", "c.json", "--biometrics", cbeff.to_str().unwrap()]);
    assert!(ok, "{err}");
    let rid_c = serde_json::from_str::<Value>(out.trim()).unwrap()["rid"].as_str().unwrap().to_owned();
    let tally = ok_json(tessera(d).args(["client", "sync", "--dir", "client", "--json"]));
    assert_eq!((tally["refused"].as_u64(), tally["queued"].as_u64()), (Some(1), Some(0)), "{tally}");
    let refused: Value = serde_json::from_slice(&std::fs::read(client.join(format!("refused/{rid_c}.json"))).unwrap()).unwrap();
    assert_eq!((refused["http_status"].as_u64(), refused["code"].as_str()), (Some(403), Some("machine_revoked")), "{refused}");
    assert!(client.join(format!("refused/{rid_c}.tpkt")).is_file());
    let s = ok_json(tessera(d).args(["client", "status", "--dir", "client", "--json"]));
    assert_eq!((s["queued"].as_u64(), s["sent"].as_u64(), s["refused"].as_u64()), (Some(0), Some(2), Some(1)), "{s}");
    assert_eq!(s["refused_packets"][0]["code"], "machine_revoked");

    // A wrong token stops the run without moving anything.
    std::fs::copy(client.join(format!("refused/{rid_c}.tpkt")), client.join(format!("queue/{rid_c}.tpkt"))).unwrap();
    std::fs::remove_file(client.join(format!("refused/{rid_c}.tpkt"))).unwrap();
    let (ok, _, err) = run(tessera(d).args(["client", "sync", "--dir", "client"]).env("TESSERA_CLIENT_TOKEN", "tsr_wrong"));
    assert!(!ok && err.contains("token"), "{err}");
    assert_eq!(count_files(&client.join("queue"), ".tpkt"), 1);

    let _ = server.child.kill();
    let _ = server.child.wait();
    let log = std::fs::read_to_string(d.join("server.log")).unwrap() + &std::fs::read_to_string(d.join("sim.log")).unwrap();
    assert!(!log.contains(CANARY), "personal data in a log");
}

//! Running the built binary from integration tests: commands with a clean environment, child
//! processes killed on drop, waiting for a server's first log line.
#![allow(dead_code, clippy::unwrap_used)] // each test file uses a part; a panic is the test failing

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn tessera(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.current_dir(dir)
        .env_remove("TESSERA_DATABASE_URL")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_LOG")
        .env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_MASTER_PASSPHRASE")
        .env_remove("TESSERA_CLIENT_TOKEN");
    c
}

pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

pub fn ok_json(c: &mut Command) -> Value {
    let (ok, out, err) = run(c);
    assert!(ok, "{out}\n{err}");
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap_or_else(|_| panic!("not JSON: {out}"))
}

/// A child process killed on drop, with its stderr kept in `log`.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for the first line (of stdout or stderr's JSON log) that `ready`
/// picks a value from.
pub fn spawn_until(mut cmd: Command, log: &Path, ready: fn(&Value) -> Option<String>) -> (Proc, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for reader in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = tx.clone();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if let Some(v) = serde_json::from_str::<Value>(&line).ok().as_ref().and_then(ready) {
                    let _ = tx.send(v);
                }
            }
        });
    }
    let got = rx.recv_timeout(Duration::from_secs(90)).expect("the process did not start");
    (Proc { child }, got)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

//! A private, throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port, `pg_ctl stop` and delete on drop.
//!
//! Uses Debian's `postgresql` package (installed with apt-get when missing). `initdb` refuses to
//! run as root, so as root the cluster is created and run as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TEST_URL_VAR: &str = "TESSERA_TEST_DATABASE_URL";

#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// How a throwaway cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`: for tests, whose data is thrown away.
    Off,
    /// PostgreSQL's defaults (every commit flushed): for benchmarks, so figures mean something.
    Full,
}

/// The URL from `TESSERA_TEST_DATABASE_URL`, or a freshly started cluster (kept alive by the
/// returned guard).
pub fn from_env_or_start(durability: Durability) -> Result<(Option<Cluster>, String), String> {
    if let Ok(url) = std::env::var(TEST_URL_VAR)
        && !url.is_empty()
    {
        eprintln!("xtask: using PostgreSQL from {TEST_URL_VAR}");
        return Ok((None, url));
    }
    let (c, url) = Cluster::start(durability)?;
    Ok((Some(c), url))
}

fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    // Highest major version last (numerically: 15 after 9.6).
    found.sort_by_key(|p| {
        let v = p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).unwrap_or("0").to_owned();
        v.split('.').map(|n| n.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>()
    });
    found.pop()
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Cluster {
    pub fn start(durability: Durability) -> Result<(Cluster, String), String> {
        let bin = match find_bin() {
            Some(b) => b,
            None => {
                crate::debian::install("postgresql").map_err(|e| format!("{e}; install PostgreSQL 15+ or set {TEST_URL_VAR}"))?;
                find_bin().ok_or("PostgreSQL still not found under /usr/lib/postgresql after installing")?
            }
        };
        let as_postgres = crate::debian::is_root();
        let dir = std::env::temp_dir().join(format!("tessera-pg-{}-{}", std::process::id(), free_port()?));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cluster = Cluster { dir: dir.clone(), bin, as_postgres };
        if as_postgres {
            // The postgres user must own the directory (and be able to reach it).
            cluster.sh(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir))?;
        }
        let data = dir.join("data");
        cluster.sh(cluster
            .pg("initdb")
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8", "-D"])
            .arg(&data))?;
        let port = free_port()?;
        let mut opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300", dir.display());
        if durability == Durability::Off {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        cluster.sh(cluster
            .pg("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-o", &opts]))?;
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        eprintln!("xtask: throwaway PostgreSQL at {url} (data in {})", dir.display());
        Ok((cluster, url))
    }

    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn sh(&self, cmd: &mut Command) -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            Err(format!("{cmd:?} failed: {}\n{}\n{log}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn data(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data().join("data");
        let _ = self.pg("pg_ctl").args(["stop", "-m", "immediate", "-w", "-D"]).arg(&data).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The registration client's directory: its configuration, the durable RID sequence, and the
//! packet queue (`queue/`, `sent/`, `refused/`), with every write atomic (temporary file, fsync,
//! rename, fsync of the directory) so a crash or `kill -9` leaves the old state or the new one.
//!
//! ```text
//! DIR/                  0700
//!   client.toml         server, centre, machine, operator, supervisor, file names, limits
//!   machine-key.pem     the machine's Ed25519 key (0600; or the path given to `init --key`)
//!   registration.pem    the server's registration certificate packets are encrypted to
//!   sequence            the last RID sequence number handed out (written before its packet)
//!   sequence.lock       held while a sequence number is allocated
//!   sync.lock           held by a running `sync`
//!   queue/<RID>.tpkt    sealed packets waiting for upload
//!   sent/<RID>.tpkt     accepted by the server, with sent/<RID>.json (the server's answer)
//!   refused/<RID>.tpkt  refused for good, with refused/<RID>.json (HTTP status, error code)
//! ```

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "client.toml";
pub const KEY_FILE: &str = "machine-key.pem";
pub const CERTIFICATE_FILE: &str = "registration.pem";
const SEQUENCE_FILE: &str = "sequence";
const SEQUENCE_LOCK: &str = "sequence.lock";
const SYNC_LOCK: &str = "sync.lock";
pub const QUEUE: &str = "queue";
pub const SENT: &str = "sent";
pub const REFUSED: &str = "refused";
/// The configuration file's format name.
pub const FORMAT: &str = "tessera-client-1";
/// Largest RID sequence number (five digits); the next one after it is 1 again. A RID also
/// carries its creation second, so a wrapped number cannot repeat an earlier RID unless
/// 99,999 packets were made by this machine within one second.
pub const SEQUENCE_MAX: u32 = 99_999;
/// Largest configuration, certificate or sidecar JSON file read.
pub const SMALL_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Most packets one queue listing handles (a listing is sorted, so a run takes the oldest).
pub const LISTING_MAX: usize = 100_000;

/// `client.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub format: String,
    /// Base URL of the Tessera server (`http://host:port`).
    pub server: String,
    pub centre: String,
    pub machine: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<String>,
    /// The machine key: relative to the client directory, or absolute.
    pub key_file: PathBuf,
    pub certificate_file: PathBuf,
    /// A 0600 file holding the API token, if the token is not in `TESSERA_CLIENT_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Largest packet sealed (the server's `registration.packet_bytes_max`).
    pub packet_bytes_max: usize,
}

/// An opened client directory.
#[derive(Debug)]
pub struct ClientDir {
    pub root: PathBuf,
    pub config: ClientConfig,
}

impl ClientDir {
    /// Opens `root` and reads its configuration.
    ///
    /// # Errors
    /// A missing or invalid `client.toml`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let text = read_small(&root.join(CONFIG_FILE))
            .with_context(|| format!("{} is not a registration client directory (run `tessera client init`)", root.display()))?;
        let text = String::from_utf8(text).context("client.toml is not UTF-8")?;
        let config: ClientConfig = toml::from_str(&text).context("client.toml is invalid")?;
        if config.format != FORMAT {
            bail!("client.toml has format {:?}, expected {FORMAT}", config.format);
        }
        Ok(ClientDir { root: root.to_owned(), config })
    }

    /// Writes a new directory's layout and configuration (0700 directories).
    ///
    /// # Errors
    /// I/O errors; an existing configuration.
    pub fn create(root: &Path, config: ClientConfig) -> anyhow::Result<Self> {
        create_private_dir(root)?;
        if root.join(CONFIG_FILE).exists() {
            bail!("{} is already a client directory", root.display());
        }
        for sub in [QUEUE, SENT, REFUSED] {
            create_private_dir(&root.join(sub))?;
        }
        let text = toml::to_string(&config).context("cannot serialise client.toml")?;
        write_atomic(&root.join(CONFIG_FILE), text.as_bytes())?;
        Ok(ClientDir { root: root.to_owned(), config })
    }

    /// A path from the configuration, relative to the directory unless absolute.
    #[must_use]
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.root.join(p) }
    }

    /// The next RID sequence number, persisted (fsync'd) before it is returned, under an
    /// exclusive lock so two processes never get the same number. A crash after this returns
    /// and before the packet is written skips a number; it never hands one out twice.
    ///
    /// # Errors
    /// I/O errors or a corrupt sequence file (never silently reset: that could reuse RIDs).
    pub fn next_sequence(&self) -> anyhow::Result<u32> {
        let lock = lock_file(&self.root.join(SEQUENCE_LOCK))?;
        let path = self.root.join(SEQUENCE_FILE);
        let last = match read_small(&path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).ok();
                text.as_deref()
                    .map(str::trim)
                    .and_then(|t| t.parse::<u32>().ok())
                    .filter(|n| *n <= SEQUENCE_MAX)
                    .with_context(|| format!("{} is corrupt; restore it (never reset it: RIDs would repeat)", path.display()))?
            }
            Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) => 0,
            Err(e) => return Err(e),
        };
        let next = if last >= SEQUENCE_MAX { 1 } else { last + 1 };
        write_atomic(&path, format!("{next}\n").as_bytes())?;
        drop(lock);
        Ok(next)
    }

    /// Holds the sync lock until the returned file is dropped; fails at once if another sync runs.
    ///
    /// # Errors
    /// Another sync holds it, or I/O errors.
    pub fn sync_lock(&self) -> anyhow::Result<File> {
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(self.root.join(SYNC_LOCK))?;
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(std::fs::TryLockError::WouldBlock) => bail!("another `tessera client sync` is running on this directory"),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }

    /// Writes a sealed packet into the queue atomically. Refuses to replace an existing packet.
    ///
    /// # Errors
    /// The RID is queued, sent or refused already, or I/O errors.
    pub fn enqueue(&self, rid: &str, packet: &[u8]) -> anyhow::Result<PathBuf> {
        for sub in [QUEUE, SENT, REFUSED] {
            if self.packet_path(sub, rid).exists() {
                bail!("a packet with RID {rid} exists already in {sub}/");
            }
        }
        let path = self.packet_path(QUEUE, rid);
        write_atomic(&path, packet)?;
        Ok(path)
    }

    #[must_use]
    pub fn packet_path(&self, sub: &str, rid: &str) -> PathBuf {
        self.root.join(sub).join(format!("{rid}.{}", tessera_registration::packet::EXTENSION))
    }

    #[must_use]
    pub fn sidecar_path(&self, sub: &str, rid: &str) -> PathBuf {
        self.root.join(sub).join(format!("{rid}.json"))
    }

    /// The RIDs of the packets in `sub`, sorted (oldest sequence first within a machine).
    /// Temporary files of interrupted writes are not packets and are skipped.
    ///
    /// # Errors
    /// I/O errors.
    pub fn list(&self, sub: &str) -> anyhow::Result<Vec<String>> {
        let mut rids = Vec::new();
        let dir = self.root.join(sub);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(rid) = name.strip_suffix(".tpkt")
                && tessera_core::Rid::parse(rid).is_ok()
            {
                rids.push(rid.to_owned());
                if rids.len() >= LISTING_MAX {
                    break;
                }
            }
        }
        rids.sort();
        Ok(rids)
    }

    /// Moves a queued packet to `sub` with its sidecar JSON: the sidecar is written first, so a
    /// crash between the two leaves the packet queued (and uploaded again, which is idempotent).
    ///
    /// # Errors
    /// I/O errors.
    pub fn settle(&self, rid: &str, sub: &str, sidecar: &serde_json::Value) -> anyhow::Result<()> {
        write_atomic(&self.sidecar_path(sub, rid), serde_json::to_string_pretty(sidecar)?.as_bytes())?;
        let from = self.packet_path(QUEUE, rid);
        let to = self.packet_path(sub, rid);
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            // Moved already by an earlier, interrupted run.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && to.exists() => {}
            Err(e) => return Err(e).with_context(|| format!("cannot move {} to {sub}/", from.display())),
        }
        sync_dir(&self.root.join(QUEUE))?;
        sync_dir(&self.root.join(sub))
    }
}

/// Reads a file of at most [`SMALL_FILE_BYTES_MAX`] bytes.
///
/// # Errors
/// I/O errors (kept as `std::io::Error` inside), or a file too large.
pub fn read_small(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_limited(path, SMALL_FILE_BYTES_MAX)
}

/// Reads a file of at most `max` bytes.
///
/// # Errors
/// I/O errors, or a larger file.
pub fn read_limited(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let f = File::open(path)?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(out)
}

/// Writes `bytes` to a 0600 temporary file beside `path`, fsyncs it, renames it over `path`
/// and fsyncs the directory.
///
/// # Errors
/// I/O errors.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).context("a file path needs a name")?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

/// Creates `dir` (and parents) and makes it 0700.
///
/// # Errors
/// I/O errors.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot protect {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

fn lock_file(path: &Path) -> anyhow::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(f)
}

/// Reads the API token from a file that only its owner can read (like ssh's private keys).
///
/// # Errors
/// A missing or empty file, or one that group or others may read.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("cannot read the token file {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!("the token file {} may be read by others (mode {:o}): chmod 600 it", path.display(), mode & 0o777);
        }
    }
    let bytes = read_small(path).with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = String::from_utf8(bytes).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    token.with_context(|| format!("the token file {} is empty or not text", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig {
            format: FORMAT.into(),
            server: "http://127.0.0.1:1".into(),
            centre: "10001".into(),
            machine: "20001".into(),
            operator: "officer-1".into(),
            supervisor: None,
            key_file: KEY_FILE.into(),
            certificate_file: CERTIFICATE_FILE.into(),
            token_file: None,
            packet_bytes_max: 1024,
        }
    }

    #[test]
    fn the_sequence_is_durable_never_repeats_and_wraps_to_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("c");
        let dir = ClientDir::create(&root, config()).unwrap();
        assert_eq!(dir.next_sequence().unwrap(), 1);
        assert_eq!(dir.next_sequence().unwrap(), 2);
        // Reopened (a new process): continues, never restarts.
        let dir = ClientDir::open(&root).unwrap();
        assert_eq!(dir.next_sequence().unwrap(), 3);
        // Concurrent allocators get distinct numbers.
        let got: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let d = ClientDir::open(&root).unwrap();
                        (0..25).map(|_| d.next_sequence().unwrap()).collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<u32> = got.iter().copied().collect();
        assert_eq!(unique.len(), 100);
        assert_eq!(unique.iter().next_back(), Some(&103));
        std::fs::write(root.join(SEQUENCE_FILE), "99999\n").unwrap();
        assert_eq!(dir.next_sequence().unwrap(), 1);
        // A corrupt sequence is an error, never a silent restart at 1.
        std::fs::write(root.join(SEQUENCE_FILE), "garbage").unwrap();
        assert!(dir.next_sequence().unwrap_err().to_string().contains("corrupt"));
        assert!(ClientDir::create(&root, config()).is_err(), "an existing directory is not overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
        }
    }

    #[test]
    fn queue_files_are_written_whole_listed_and_moved_with_their_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClientDir::create(&tmp.path().join("c"), config()).unwrap();
        let rid = "10001200010000120261207090000";
        dir.enqueue(rid, b"packet").unwrap();
        assert!(dir.enqueue(rid, b"other").is_err(), "a queued RID is never replaced");
        // Leftovers of an interrupted write and strangers are not packets.
        std::fs::write(dir.root.join(QUEUE).join(format!(".{rid}.tpkt.tmp")), b"torn").unwrap();
        std::fs::write(dir.root.join(QUEUE).join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.root.join(QUEUE).join("123.tpkt"), b"x").unwrap();
        assert_eq!(dir.list(QUEUE).unwrap(), vec![rid.to_owned()]);
        let leftover_tmp =
            std::fs::read_dir(dir.root.join(QUEUE)).unwrap().filter_map(Result::ok).any(|e| e.file_name() == ".client.toml.tmp");
        assert!(!leftover_tmp);
        dir.settle(rid, SENT, &serde_json::json!({"status": "processing"})).unwrap();
        assert!(dir.list(QUEUE).unwrap().is_empty());
        assert_eq!(dir.list(SENT).unwrap(), vec![rid.to_owned()]);
        assert_eq!(std::fs::read(dir.packet_path(SENT, rid)).unwrap(), b"packet");
        // Settling again (a rerun after a crash between the two steps) is harmless.
        dir.settle(rid, SENT, &serde_json::json!({"status": "processing"})).unwrap();
        assert!(dir.enqueue(rid, b"again").is_err(), "a sent RID is never queued again");
        let _held = dir.sync_lock().unwrap();
        assert!(dir.sync_lock().is_err(), "one sync at a time");
    }

    #[test]
    fn token_files_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("token");
        write_atomic(&p, b"tsr_secret\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "tsr_secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_token_file(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600") && !e.contains("tsr_secret"), "{e}");
        }
    }
}

//! Opening and creating the keystore, and where the master key comes from:
//! 1. `TESSERA_MASTER_KEY` — 32 bytes in base64 (from a secret manager);
//! 2. `TESSERA_MASTER_PASSPHRASE` — stretched with Argon2id (salt kept in the keystore file);
//! 3. otherwise a key file, `keystore.master_key_file` (default: beside the data directory,
//!    `<data-dir>.master-key`, never inside it, so a copied data directory alone opens nothing).
//!    On first start it is created (0600) with a warning: production uses 1, 2 or an HSM.

use crate::config::{Config, KeystoreKind};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_crypto::master::KdfParams;
use tessera_crypto::{Keystore, MasterKey, SoftwareKeystore};

pub const MASTER_KEY_VAR: &str = "TESSERA_MASTER_KEY";
pub const PASSPHRASE_VAR: &str = "TESSERA_MASTER_PASSPHRASE";
pub const PKCS11_PIN_VAR: &str = "TESSERA_PKCS11_PIN";

/// The PKCS#11 settings, when the keystore is a token.
fn pkcs11_config(cfg: &Config) -> anyhow::Result<Option<tessera_crypto::Pkcs11Config>> {
    if cfg.keystore.kind != KeystoreKind::Pkcs11 {
        return Ok(None);
    }
    let (Some(module), Some(token)) = (&cfg.keystore.pkcs11_module, &cfg.keystore.pkcs11_token) else {
        bail!("keystore.kind = \"pkcs11\" needs keystore.pkcs11_module and keystore.pkcs11_token");
    };
    let pin = std::env::var(PKCS11_PIN_VAR).map_err(|_| anyhow::anyhow!("set {PKCS11_PIN_VAR} to the token's user PIN"))?;
    Ok(Some(tessera_crypto::Pkcs11Config { module: module.clone(), token_label: token.clone(), pin: zeroize::Zeroizing::new(pin) }))
}

/// Where the keystore lives.
#[must_use]
pub fn keystore_dir(cfg: &Config) -> PathBuf {
    cfg.keystore.dir.clone().unwrap_or_else(|| cfg.data_dir.join("keystore"))
}

/// Where the key vault is.
#[must_use]
pub fn vault_url(cfg: &Config) -> String {
    cfg.keystore.vault_url.clone().unwrap_or_else(|| format!("sqlite://{}", keystore_dir(cfg).join("vault.db").display()))
}

/// Where the master key file is (used only when neither variable is set).
#[must_use]
pub fn master_key_file(cfg: &Config) -> PathBuf {
    cfg.keystore.master_key_file.clone().unwrap_or_else(|| {
        let mut name = cfg.data_dir.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_else(|| "tessera-data".into());
        name.push(".master-key");
        cfg.data_dir.parent().unwrap_or(Path::new(".")).join(name)
    })
}

/// Where this process takes its master key from, in order of preference.
enum MasterSource {
    Env(String),
    Passphrase(String),
    File(PathBuf),
}

fn master_source(cfg: &Config) -> MasterSource {
    if let Ok(b64) = std::env::var(MASTER_KEY_VAR) {
        MasterSource::Env(b64)
    } else if let Ok(pass) = std::env::var(PASSPHRASE_VAR) {
        MasterSource::Passphrase(pass)
    } else {
        MasterSource::File(master_key_file(cfg))
    }
}

/// Opens the keystore, creating it (and, with no key configured, the master key file) when it
/// does not exist yet. Returns the keystore and, when something was created, a note for the user.
///
/// # Errors
/// A wrong or missing master key for an existing keystore, or I/O errors.
pub fn open_or_create(cfg: &Config, now_ms: i64) -> anyhow::Result<(Arc<dyn Keystore>, Option<String>)> {
    if let Some(p) = pkcs11_config(cfg)? {
        let token = p.token_label.clone();
        // Idempotent: generates version 1 of any purpose the token does not hold yet.
        let ks = tessera_crypto::Pkcs11Keystore::create(p, now_ms).with_context(|| format!("cannot open the PKCS#11 token {token:?}"))?;
        return Ok((Arc::new(ks), None));
    }
    let dir = keystore_dir(cfg);
    if SoftwareKeystore::exists(&dir) {
        return Ok((open(cfg)?, None));
    }
    let (master, kdf, note) = match master_source(cfg) {
        MasterSource::Env(b64) => (
            MasterKey::from_base64(&b64).with_context(|| MASTER_KEY_VAR.to_owned())?,
            None,
            format!("keystore created in {}, sealed by {MASTER_KEY_VAR}", dir.display()),
        ),
        MasterSource::Passphrase(pass) => {
            let salt = MasterKey::generate()?.to_base64().into_bytes();
            let params = KdfParams::default();
            let m = MasterKey::from_passphrase(&pass, &salt, params).with_context(|| PASSPHRASE_VAR.to_owned())?;
            (m, Some((salt, params)), format!("keystore created in {}, sealed by {PASSPHRASE_VAR} (Argon2id)", dir.display()))
        }
        MasterSource::File(file) => {
            let m = if file.exists() { read_key_file(&file)? } else { write_new_key_file(&file)? };
            let note = format!(
                "keystore created in {}; its master key is in {} (0600). Keep that file apart from the data directory and its \
                 backups. For production set {MASTER_KEY_VAR} from a secret manager, {PASSPHRASE_VAR}, or use an HSM.",
                dir.display(),
                file.display()
            );
            (m, None, note)
        }
    };
    let ks =
        SoftwareKeystore::create(&dir, master, kdf, now_ms).with_context(|| format!("cannot create the keystore in {}", dir.display()))?;
    Ok((Arc::new(ks), Some(note)))
}

/// Opens an existing keystore.
///
/// # Errors
/// No keystore, no master key, or the wrong one.
pub fn open(cfg: &Config) -> anyhow::Result<Arc<dyn Keystore>> {
    if let Some(p) = pkcs11_config(cfg)? {
        let token = p.token_label.clone();
        return Ok(Arc::new(tessera_crypto::Pkcs11Keystore::open(p).with_context(|| format!("cannot open the PKCS#11 token {token:?}"))?));
    }
    let dir = keystore_dir(cfg);
    if !SoftwareKeystore::exists(&dir) {
        bail!("no keystore in {} (run `tessera init`)", dir.display());
    }
    let master = match master_source(cfg) {
        MasterSource::Env(b64) => MasterKey::from_base64(&b64).with_context(|| MASTER_KEY_VAR.to_owned())?,
        MasterSource::Passphrase(pass) => {
            let Some((salt, params)) = SoftwareKeystore::kdf(&dir)? else {
                bail!("{PASSPHRASE_VAR} is set, but this keystore was not made from a passphrase");
            };
            MasterKey::from_passphrase(&pass, &salt, params)?
        }
        MasterSource::File(file) if file.exists() => read_key_file(&file)?,
        MasterSource::File(file) => {
            bail!("no master key: set {MASTER_KEY_VAR} or {PASSPHRASE_VAR}, or provide the key file {}", file.display())
        }
    };
    let ks = SoftwareKeystore::open(&dir, master).with_context(|| format!("cannot open the keystore in {}", dir.display()))?;
    Ok(Arc::new(ks))
}

fn read_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    MasterKey::from_base64(&text).with_context(|| format!("{} does not hold a master key", path.display()))
}

fn write_new_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    use std::io::Write;
    let key = MasterKey::generate()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(key.to_base64().as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// The X.509 certificate (PEM) of `purpose`'s current key.
///
/// # Errors
/// The keystore has no certificate for the purpose.
pub fn certificate_pem(ks: &dyn Keystore, purpose: tessera_crypto::Purpose) -> anyhow::Result<String> {
    let der =
        ks.certificate(ks.current(purpose)).map_err(|e| anyhow::anyhow!("no certificate for {} keys ({})", purpose.as_str(), e.code()))?;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let body: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    Ok(format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----", body.join("\n")))
}

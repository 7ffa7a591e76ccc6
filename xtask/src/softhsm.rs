//! SoftHSM2 for the PKCS#11 keystore tests: installs Debian's `softhsm2` package when its module
//! is missing, and writes a private `softhsm2.conf` whose token directory is a temporary
//! directory (removed on drop), so tests create tokens without touching the system's.

use std::path::{Path, PathBuf};

/// Where Debian's `softhsm2` package puts the PKCS#11 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The variables `crates/crypto/tests/pkcs11.rs` reads.
pub const MODULE_VAR: &str = "TESSERA_TEST_PKCS11_MODULE";
pub const CONF_VAR: &str = "SOFTHSM2_CONF";

/// A SoftHSM2 configuration for one test run; its directory is removed on drop.
#[derive(Debug)]
pub struct SoftHsm {
    dir: Option<PathBuf>,
    env: Vec<(&'static str, String)>,
}

impl SoftHsm {
    /// The variables to set for `cargo test`.
    pub fn env(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

impl Drop for SoftHsm {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `TESSERA_TEST_PKCS11_MODULE` (and `SOFTHSM2_CONF`) from the environment when set; otherwise
/// SoftHSM2 (installed here if needed) with a fresh token directory.
pub fn from_env_or_setup() -> Result<SoftHsm, String> {
    if std::env::var(MODULE_VAR).is_ok_and(|m| !m.is_empty()) {
        eprintln!("xtask: using the PKCS#11 module from {MODULE_VAR}");
        return Ok(SoftHsm { dir: None, env: Vec::new() });
    }
    if !Path::new(MODULE).exists() {
        eprintln!("xtask: {MODULE} not found");
        crate::debian::install("softhsm2")?;
        if !Path::new(MODULE).exists() {
            return Err(format!(
                "{MODULE} is still missing after installing softhsm2; install SoftHSM2 or set {MODULE_VAR} and {CONF_VAR}"
            ));
        }
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("tessera-softhsm-{}-{nanos}", std::process::id()));
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
    // From here on, dropping the guard removes the directory.
    let mut hsm = SoftHsm { dir: Some(dir.clone()), env: Vec::new() };
    let conf = dir.join("softhsm2.conf");
    let text = format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
    std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
    eprintln!("xtask: SoftHSM2 tokens in {}", tokens.display());
    hsm.env = vec![(CONF_VAR, conf.display().to_string()), (MODULE_VAR, MODULE.to_owned())];
    Ok(hsm)
}

//! Registration machines' signing keys (Ed25519). A registration client generates its key pair
//! on the machine itself; the private half stays in a 0600 PKCS#8 PEM file in a 0700 directory
//! on that machine and never leaves this module, and only the 32-byte public half is given to
//! the server's administrator, who registers it with the machine. The server verifies packet
//! signatures with [`verify_machine_signature`].

use crate::CryptoError;
use crate::software::{create_private_dir, write_private_atomic};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;
use zeroize::Zeroizing;

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest key file read (a PKCS#8 Ed25519 PEM is about 200 bytes).
const KEY_FILE_BYTES_MAX: u64 = 4096;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// A machine's signing key. Signs; cannot be read out.
pub struct MachineKey(Ed25519KeyPair);

impl std::fmt::Debug for MachineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineKey").field("public", &STANDARD.encode(self.public_key())).finish_non_exhaustive()
    }
}

impl MachineKey {
    /// Generates a key pair and writes it to `path` (0600, atomically; the directory is created
    /// 0700). Refuses to overwrite an existing key: a machine that loses its key is registered
    /// again, it does not silently get a new identity.
    ///
    /// # Errors
    /// `Invalid` if `path` exists; I/O and RNG failures.
    pub fn create_file(path: &Path) -> Result<Self, CryptoError> {
        if path.exists() {
            return Err(CryptoError::Invalid("a machine key file already exists there"));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).map_err(|_| CryptoError::Rng)?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| CryptoError::Rng)?;
        let pem = Zeroizing::new(to_pem(doc.as_ref()));
        write_private_atomic(path, pem.as_bytes())?;
        Ok(MachineKey(pair))
    }

    /// A key pair that lives only in memory, for a throwaway signer (the SBI simulator's
    /// device key): never registered anywhere, gone when the process ends.
    ///
    /// # Errors
    /// RNG failure.
    pub fn ephemeral() -> Result<Self, CryptoError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).map_err(|_| CryptoError::Rng)?;
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).map(MachineKey).map_err(|_| CryptoError::Rng)
    }

    /// Opens the key written by [`MachineKey::create_file`] (or any PKCS#8 Ed25519 PEM).
    ///
    /// # Errors
    /// `Io` if unreadable, `Corrupt` if it is not an Ed25519 PKCS#8 key.
    pub fn open_file(path: &Path) -> Result<Self, CryptoError> {
        let meta = std::fs::metadata(path).map_err(|e| CryptoError::Io(e.kind().to_string()))?;
        if meta.len() > KEY_FILE_BYTES_MAX {
            return Err(CryptoError::Corrupt("machine key file is too large"));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| CryptoError::Io(e.kind().to_string()))?);
        let body: String = text.lines().map(str::trim).skip_while(|l| *l != PEM_BEGIN).skip(1).take_while(|l| *l != PEM_END).collect();
        let der = Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| CryptoError::Corrupt("machine key file is not PEM"))?);
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|_| CryptoError::Corrupt("machine key file is not an Ed25519 key"))?;
        Ok(MachineKey(pair))
    }

    /// The public key to register with the server.
    #[must_use]
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }

    /// Ed25519 signature over `message`.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }
}

/// Checks a machine's Ed25519 signature.
///
/// # Errors
/// `BadSignature` for a wrong signature, a malformed one or a malformed public key.
pub fn verify_machine_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    verify_ed25519(public_key, message, signature)
}

/// Checks an Ed25519 signature (RFC 8032, pure) under a raw 32-byte public key: a machine's, or
/// the credential issuer's as its JWKS publishes it.
///
/// # Errors
/// `BadSignature` for a wrong signature, a malformed one or a malformed public key.
pub fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
    if public_key.len() != PUBLIC_KEY_LEN || signature.len() != SIGNATURE_LEN {
        return Err(CryptoError::BadSignature);
    }
    UnparsedPublicKey::new(&ED25519, public_key).verify(message, signature).map_err(|_| CryptoError::BadSignature)
}

fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 80);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_what_its_public_half_verifies_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine").join("machine-key.pem");
        let key = MachineKey::create_file(&path).unwrap();
        let sig = key.sign(b"packet digest");
        verify_machine_signature(&key.public_key(), b"packet digest", &sig).unwrap();
        assert_eq!(verify_machine_signature(&key.public_key(), b"other digest", &sig), Err(CryptoError::BadSignature));
        let mut bad = sig;
        bad[10] ^= 1;
        assert_eq!(verify_machine_signature(&key.public_key(), b"packet digest", &bad), Err(CryptoError::BadSignature));
        assert_eq!(verify_machine_signature(&key.public_key()[..31], b"packet digest", &sig), Err(CryptoError::BadSignature));
        assert_eq!(verify_machine_signature(&key.public_key(), b"packet digest", &sig[..63]), Err(CryptoError::BadSignature));

        let reopened = MachineKey::open_file(&path).unwrap();
        assert_eq!(reopened.public_key(), key.public_key());
        verify_machine_signature(&key.public_key(), b"x", &reopened.sign(b"x")).unwrap();
        let other = MachineKey::create_file(&dir.path().join("other.pem")).unwrap();
        assert_eq!(verify_machine_signature(&other.public_key(), b"x", &key.sign(b"x")), Err(CryptoError::BadSignature));
    }

    #[test]
    fn the_key_file_is_private_pem_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k").join("machine-key.pem");
        let key = MachineKey::create_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with(PEM_BEGIN));
        assert!(matches!(MachineKey::create_file(&path), Err(CryptoError::Invalid(_))));
        assert_eq!(MachineKey::open_file(&path).unwrap().public_key(), key.public_key());
        std::fs::write(dir.path().join("junk.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(matches!(MachineKey::open_file(&dir.path().join("junk.pem")), Err(CryptoError::Corrupt(_))));
        assert!(format!("{key:?}").contains("public"));
    }
}

//! The master key: wraps every key the software keystore holds. Comes from the environment
//! (`TESSERA_MASTER_KEY`, 32 random bytes in base64) or from a passphrase through Argon2id.

use crate::CryptoError;
use crate::aead::KEY_LEN;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Argon2id cost, stored in the keystore file so a passphrase opens it on any machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// OWASP's first Argon2id recommendation (19 MiB, 2 iterations, 1 lane).
    fn default() -> Self {
        KdfParams { m_kib: 19 * 1024, t: 2, p: 1 }
    }
}

/// Shortest passphrase accepted.
pub const PASSPHRASE_CHARS_MIN: usize = 12;

#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random master key.
    ///
    /// # Errors
    /// RNG failure.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(MasterKey(crate::aead::random()?))
    }

    /// Parses the base64 form (as in `TESSERA_MASTER_KEY`).
    ///
    /// # Errors
    /// Not base64, or not exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let mut bytes = STANDARD.decode(s.trim()).map_err(|_| CryptoError::InvalidMasterKey("not base64"))?;
        let key: Result<[u8; KEY_LEN], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        key.map(MasterKey).map_err(|_| CryptoError::InvalidMasterKey("must be 32 bytes"))
    }

    /// The base64 form, to store in a secret manager or a 0600 file. Handle as a secret.
    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Derives the key from a passphrase with Argon2id.
    ///
    /// # Errors
    /// A passphrase shorter than `PASSPHRASE_CHARS_MIN`, or invalid cost parameters.
    pub fn from_passphrase(passphrase: &str, salt: &[u8], params: KdfParams) -> Result<Self, CryptoError> {
        if passphrase.chars().count() < PASSPHRASE_CHARS_MIN {
            return Err(CryptoError::InvalidMasterKey("passphrase must be at least 12 characters"));
        }
        let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(KEY_LEN))
            .map_err(|_| CryptoError::InvalidMasterKey("invalid Argon2id parameters"))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = [0u8; KEY_LEN];
        argon.hash_password_into(passphrase.as_bytes(), salt, &mut out).map_err(|_| CryptoError::InvalidMasterKey("Argon2id failed"))?;
        Ok(MasterKey(out))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let k = MasterKey::generate().unwrap();
        assert_eq!(MasterKey::from_base64(&k.to_base64()).unwrap().0, k.0);
        assert_eq!(MasterKey::from_base64("!!").unwrap_err().code(), "master_key_invalid");
        assert_eq!(MasterKey::from_base64(&STANDARD.encode([0u8; 31])).unwrap_err().code(), "master_key_invalid");
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    #[test]
    fn passphrase_is_deterministic_per_salt() {
        let cheap = KdfParams { m_kib: 64, t: 1, p: 1 };
        let a = MasterKey::from_passphrase("correct horse battery", b"salt-salt-salt-1", cheap).unwrap();
        let b = MasterKey::from_passphrase("correct horse battery", b"salt-salt-salt-1", cheap).unwrap();
        let c = MasterKey::from_passphrase("correct horse battery", b"salt-salt-salt-2", cheap).unwrap();
        assert_eq!(a.0, b.0);
        assert_ne!(a.0, c.0);
        assert!(MasterKey::from_passphrase("short", b"salt-salt-salt-1", cheap).is_err());
    }
}

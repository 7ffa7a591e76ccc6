//! Tessera's cryptography: key purposes and ids, AES-256-GCM sealing, per-person data keys,
//! MOSIP's hybrid encryption, and the keystores that hold key-encryption, lookup, token,
//! signing, audit and datashare keys.
//!
//! Architecture invariant: this is the only crate that touches key material. Other crates hold
//! `KeyId`s and ciphertexts; a `DataKey` can be used to seal and open but never read out.

mod aead;
pub mod digest;
pub mod hybrid;
pub mod machine;
pub mod master;
pub mod pkcs11;
pub mod software;
pub mod tokens;
pub mod x509;

pub use aead::DataKey;
pub use hybrid::{hybrid_encrypt, hybrid_encrypt_to};
pub use machine::{MachineKey, verify_ed25519, verify_machine_signature};
pub use master::MasterKey;
pub use pkcs11::{Pkcs11Config, Pkcs11Keystore};
pub use software::SoftwareKeystore;
pub use x509::Recipient;

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a key is for. Each purpose has its own independent series of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Wraps per-person data keys (AES-256-GCM key-encryption key).
    Identity,
    /// Keyed HMAC-SHA-256 index for UIN, VID and other lookup identifiers.
    Lookup,
    /// HMAC-SHA-256 for partner-specific tokens.
    PartnerToken,
    /// Ed25519 signatures (credentials, checkpoints).
    Signing,
    /// Signs audit-log checkpoints (Ed25519).
    Audit,
    /// RSA-2048 that opens what MOSIP encrypts to Tessera with its hybrid scheme (`hybrid`):
    /// the ABIS datashare behind `referenceURL`. Its certificate is what an operator registers
    /// with MOSIP's partner management.
    Datashare,
    /// RSA-2048 that opens registration packets: registration clients encrypt each packet to
    /// this key's certificate with the same hybrid scheme (`hybrid`, VER_R2), which is MOSIP's
    /// packet envelope too.
    Registration,
}

impl Purpose {
    pub const ALL: [Purpose; 7] = [
        Purpose::Identity,
        Purpose::Lookup,
        Purpose::PartnerToken,
        Purpose::Signing,
        Purpose::Audit,
        Purpose::Datashare,
        Purpose::Registration,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Identity => "identity",
            Purpose::Lookup => "lookup",
            Purpose::PartnerToken => "partner_token",
            Purpose::Signing => "signing",
            Purpose::Audit => "audit",
            Purpose::Datashare => "datashare",
            Purpose::Registration => "registration",
        }
    }

    /// # Errors
    /// `UnknownPurpose` for any other name.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(CryptoError::UnknownPurpose)
    }

    /// Whether keystores made by an earlier release may lack this purpose; opening one adds
    /// version 1 of it. Any other purpose missing means a damaged keystore, never a new key.
    pub(crate) fn added_later(self) -> bool {
        matches!(self, Purpose::Datashare | Purpose::Registration)
    }

    fn kind(self) -> KeyKind {
        match self {
            Purpose::Identity => KeyKind::Aes256,
            Purpose::Lookup | Purpose::PartnerToken => KeyKind::Hmac,
            Purpose::Signing | Purpose::Audit => KeyKind::Ed25519,
            Purpose::Datashare | Purpose::Registration => KeyKind::Rsa2048,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Aes256,
    Hmac,
    Ed25519,
    /// RSA-2048 for MOSIP's hybrid encryption: RSA-OAEP (SHA-256) to receive, and
    /// RSASSA-PKCS1-v1_5 (SHA-256) only to sign the key's own certificate.
    Rsa2048,
}

/// Names one version of one key: `identity.v3`. Stored beside every ciphertext, digest and
/// signature, so data sealed before a rotation stays readable after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId {
    pub purpose: Purpose,
    pub version: u32,
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.v{}", self.purpose.as_str(), self.version)
    }
}

impl KeyId {
    /// # Errors
    /// `InvalidKeyId` unless `purpose.vN` with N ≥ 1.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let (p, v) = s.rsplit_once(".v").ok_or(CryptoError::InvalidKeyId)?;
        let version: u32 = v.parse().map_err(|_| CryptoError::InvalidKeyId)?;
        if version == 0 || v.starts_with('0') {
            return Err(CryptoError::InvalidKeyId);
        }
        Ok(KeyId { purpose: Purpose::parse(p).map_err(|_| CryptoError::InvalidKeyId)?, version })
    }
}

/// What `list` shows of a key: never its material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub id: KeyId,
    pub created_at_ms: i64,
    /// The version new data is sealed, hashed or signed with.
    pub current: bool,
}

/// Errors carry no key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("unknown key purpose")]
    UnknownPurpose,
    #[error("invalid key id")]
    InvalidKeyId,
    #[error("key {0} is not in the keystore")]
    UnknownKey(KeyId),
    #[error("decryption failed: wrong key, wrong context, or tampered data")]
    Decrypt,
    #[error("signature does not verify")]
    BadSignature,
    #[error("the master key does not open this keystore")]
    WrongMasterKey,
    #[error("invalid master key: {0}")]
    InvalidMasterKey(&'static str),
    #[error("keystore file is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("keystore I/O: {0}")]
    Io(String),
    #[error("random number generator failed")]
    Rng,
    /// A PKCS#11 module or token failure: the function and its `CKR_` code, never data or PINs.
    #[error("PKCS#11 keystore: {0}")]
    Pkcs11(String),
    /// An input that is not what the operation takes (a recipient that is not an RSA-2048
    /// certificate, a plaintext too large): says what, never repeats it.
    #[error("invalid input: {0}")]
    Invalid(&'static str),
}

impl CryptoError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::UnknownPurpose => "key_purpose_unknown",
            CryptoError::InvalidKeyId => "key_id_invalid",
            CryptoError::UnknownKey(_) => "key_unknown",
            CryptoError::Decrypt => "decrypt_failed",
            CryptoError::BadSignature => "signature_invalid",
            CryptoError::WrongMasterKey => "master_key_wrong",
            CryptoError::InvalidMasterKey(_) => "master_key_invalid",
            CryptoError::Corrupt(_) => "keystore_corrupt",
            CryptoError::Io(_) => "keystore_io",
            CryptoError::Rng => "rng_failed",
            CryptoError::Pkcs11(_) => "keystore_pkcs11",
            CryptoError::Invalid(_) => "crypto_input_invalid",
        }
    }
}

/// A per-person data key sealed under a key-encryption key. The bytes are opaque outside this
/// crate; `kek` names the key that can open them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek: KeyId,
    pub bytes: Vec<u8>,
}

/// Everything a keystore does. Implementations: `SoftwareKeystore` (the embedded default); a
/// PKCS#11 keystore follows.
pub trait Keystore: Send + Sync + fmt::Debug {
    /// Every key version, oldest first per purpose.
    fn list(&self) -> Vec<KeyInfo>;
    /// The version new data uses for `purpose`.
    fn current(&self, purpose: Purpose) -> KeyId;
    /// Looks for key versions added by another process now, instead of at the next periodic
    /// check (a job queued by a rotation calls this before it acts on the new version).
    fn refresh(&self) {}
    /// Adds a new version of `purpose` and makes it current. Old versions stay usable for
    /// reading and verifying.
    ///
    /// # Errors
    /// I/O errors persisting the new key.
    fn rotate(&self, purpose: Purpose, now_ms: i64) -> Result<KeyId, CryptoError>;
    /// Seals `dek` under the current identity key, bound to `context` (e.g. the record id).
    ///
    /// # Errors
    /// Key or RNG failures.
    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError>;
    /// # Errors
    /// `Decrypt` when the key, the context or the bytes are not those it was wrapped with.
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError>;
    /// HMAC-SHA-256 of `data` under a given version of a lookup or token key.
    ///
    /// # Errors
    /// `UnknownKey`, or a key of another kind.
    fn hmac(&self, key: KeyId, data: &[u8]) -> Result<[u8; 32], CryptoError>;
    /// Ed25519 signature under the current version of `purpose` (signing or audit).
    ///
    /// # Errors
    /// A purpose that does not sign.
    fn sign(&self, purpose: Purpose, data: &[u8]) -> Result<(KeyId, Vec<u8>), CryptoError>;
    /// # Errors
    /// `BadSignature`, or `UnknownKey`.
    fn verify(&self, key: KeyId, data: &[u8], signature: &[u8]) -> Result<(), CryptoError>;
    /// The raw 32-byte Ed25519 public key of a signing or audit key version, for verifiers
    /// outside Tessera (the credential issuer's JWKS). Public: not a secret.
    ///
    /// # Errors
    /// `UnknownKey` for a version that is not in the keystore or not an Ed25519 key.
    fn public_key(&self, key: KeyId) -> Result<Vec<u8>, CryptoError>;
    /// Decrypts a MOSIP hybrid payload (`hybrid`: VER_R2 or pre-1.2, base64 text or raw bytes)
    /// sent to `purpose`'s key. The version whose certificate thumbprint the payload carries is
    /// tried first, then every other version, newest first, so payloads sent before a rotation
    /// still open, as do payloads naming a certificate MOSIP re-signed.
    ///
    /// # Errors
    /// `Decrypt` for anything wrong with the payload (one error, whatever the cause); `UnknownKey`
    /// for a purpose that does not decrypt; keystore failures.
    fn hybrid_decrypt(&self, purpose: Purpose, payload: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// The self-signed X.509 certificate (DER) of an RSA key version (`x509`: the same bytes on
    /// every call). Its SHA-256 is the thumbprint MOSIP writes into payloads for this version.
    ///
    /// # Errors
    /// `UnknownKey` for a version that is not in the keystore or not an RSA key.
    fn certificate(&self, key: KeyId) -> Result<Vec<u8>, CryptoError>;
}

//! AES-256-GCM sealing: `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`, with a random nonce
//! per message and caller-supplied associated data binding the ciphertext to its context.

use crate::CryptoError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub(crate) const KEY_LEN: usize = 32;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + 16;

pub(crate) fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| CryptoError::Rng)?;
    Ok(b)
}

pub(crate) fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Rng)?);
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = k
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
        .map_err(|_| CryptoError::Rng)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

pub(crate) fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Decrypt);
    }
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Decrypt)?);
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
    let mut buf = rest.to_vec();
    let n = k.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| CryptoError::Decrypt)?.len();
    buf.truncate(n);
    Ok(buf)
}

/// A person's data-encryption key. It seals and opens that person's data; its bytes never
/// leave this crate except wrapped, and are wiped from memory on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// When the system RNG fails.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(DataKey(random()?))
    }

    pub(crate) fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        DataKey(b)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Seals `plaintext`; `aad` (record id, field name) must be given again to open it.
    ///
    /// # Errors
    /// RNG failure.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal(&self.0, aad, plaintext)
    }

    /// # Errors
    /// `Decrypt` for a wrong key, wrong `aad`, or any altered byte.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.0, aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_tamper_is_caught() {
        let k = DataKey::generate().unwrap();
        let sealed = k.seal(b"rec-1/name", b"Amina").unwrap();
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(k.open(b"rec-1/name", &sealed).unwrap(), b"Amina");
        assert_eq!(k.open(b"rec-2/name", &sealed), Err(CryptoError::Decrypt), "context is bound");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(k.open(b"rec-1/name", &t), Err(CryptoError::Decrypt), "byte {i}");
        }
        assert_eq!(k.open(b"rec-1/name", &sealed[..OVERHEAD - 1]), Err(CryptoError::Decrypt));
        let other = DataKey::generate().unwrap();
        assert_eq!(other.open(b"rec-1/name", &sealed), Err(CryptoError::Decrypt));
        // Same plaintext twice: different ciphertexts (random nonces).
        assert_ne!(k.seal(b"a", b"x").unwrap(), k.seal(b"a", b"x").unwrap());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", DataKey::generate().unwrap()), "DataKey(..)");
    }
}

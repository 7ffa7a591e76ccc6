//! MOSIP's hybrid encryption (key manager `/encrypt`): a fresh AES key encrypts the data and
//! RSA-OAEP wraps the AES key for the recipient's certificate. MOSIP sends Tessera data this way
//! (the ABIS datashare behind `referenceURL`; registration packets and IDA requests reuse it), and
//! Tessera encrypts to MOSIP partners the same way.
//!
//! Wire layouts, byte for byte (`‖` is concatenation; sources: keymanager
//! `CryptomanagerServiceImpl.encrypt`/`decrypt`, `CryptomanagerUtils`, `CryptoCore`, kernel
//! `CryptoUtil.combineByteArray`, and mosip-mock-services mock-abis `CryptoCoreUtil`, which
//! decrypts datashare payloads the way a partner does):
//!
//! - **VER_R2** (MOSIP 1.2, what [`hybrid_encrypt`] writes): `"VER_R2"` (6 ASCII bytes) ‖
//!   thumbprint (32, SHA-256 of the recipient certificate's DER) ‖ RSA-OAEP block (256) ‖
//!   `"#KEY_SPLITTER#"` ‖ AAD (32 random bytes) ‖ AES-GCM ciphertext ‖ tag (16). The GCM nonce is
//!   the AAD's first 12 bytes and the whole 32-byte AAD is authenticated as associated data.
//!   MOSIP 1.2.0 could be configured to leave the thumbprint out (`113nothumbprint.support`); that
//!   variant (`"VER_R2"` ‖ RSA block ‖ splitter ‖ …) is read too.
//! - **pre-1.2** (≤ 1.1.5.5, and 1.2 when a caller passes its own AAD): [thumbprint (32)] ‖
//!   RSA-OAEP block (256) ‖ `"#KEY_SPLITTER#"` ‖ AES-GCM ciphertext ‖ tag (16) ‖ IV (16). The IV is
//!   16 random bytes (Java's `Cipher.getBlockSize()`, so GCM derives its counter block through
//!   GHASH), and there is no associated data. Read, never written.
//!
//! RSA-OAEP is RFC 8017 with SHA-256 and MGF1-SHA-256, empty label (Java's
//! `RSA/ECB/OAEPWITHSHA-256ANDMGF1PADDING` with an explicit `OAEPParameterSpec`); the AES key is
//! 256 bits (128 accepted); GCM tags are 128 bits. RSA keys are 2048 bits, so the RSA block is
//! always 256 bytes and the splitter sits at a fixed offset (6 + 32 + 256 = 294 for VER_R2): it is
//! looked for there, not searched for, so a splitter that random bytes happen to contain cannot
//! move it.
//!
//! In transit the bytes are base64: MOSIP writes the URL-safe alphabet with padding (Java's
//! `Base64.getUrlEncoder()`; the datashare body is that text), older releases the standard one,
//! and MOSIP's readers accept either. [`decode`] accepts both, with or without padding, and the
//! raw bytes too (`#` is in neither alphabet, so the two cannot be confused).
//!
//! Decryption fails with the one error [`CryptoError::Decrypt`] whatever went wrong — malformed
//! or truncated input, an RSA block that is not valid OAEP under any key version, a GCM tag that
//! does not verify — so a sender of chosen payloads learns nothing from which check failed.

use crate::x509::{RSA_BYTES, Recipient};
use crate::{CryptoError, KeyId};
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

/// Separates the wrapped key from the encrypted data (`mosip.kernel.data-key-splitter`).
pub const KEY_SPLITTER: &[u8; 14] = b"#KEY_SPLITTER#";
/// Version header of the 1.2 layout (`CryptomanagerConstant.VERSION_RSA_2048`).
pub const VERSION_R2: &[u8; 6] = b"VER_R2";
/// Length of a certificate thumbprint (SHA-256).
pub const THUMBPRINT_LEN: usize = 32;
/// Length of the random associated data that opens a VER_R2 data block.
pub const AAD_LEN: usize = 32;
/// Length of the IV that closes a pre-1.2 data block.
pub const LEGACY_IV_LEN: usize = 16;
/// Length of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Largest decoded payload accepted (a CBEFF with ten fingers, two irises and a face is a few
/// MB; MOSIP caps registration packets at 5 MB).
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest payload accepted in base64 form.
pub const PAYLOAD_TEXT_MAX: usize = PAYLOAD_BYTES_MAX / 3 * 4 + 4;
/// Largest plaintext [`hybrid_encrypt`] takes.
pub const PLAINTEXT_BYTES_MAX: usize = PAYLOAD_BYTES_MAX - 512;

const AES_256_KEY_LEN: usize = 32;
const AES_128_KEY_LEN: usize = 16;
/// The 1.2 layout's nonce: the first bytes of its AAD (`GCM_NONCE_LENGTH`).
const VER_R2_NONCE_LEN: usize = 12;

/// Which layout a payload had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// MOSIP 1.2: version header, AAD-prefixed data.
    VerR2,
    /// Before 1.2: no header, IV-suffixed data.
    Legacy,
}

/// The data block after the splitter.
#[derive(Debug, Clone, Copy)]
enum Sealed<'a> {
    /// AAD (32) ‖ ciphertext ‖ tag.
    VerR2 { aad: &'a [u8; AAD_LEN], body: &'a [u8] },
    /// ciphertext ‖ tag, then the IV.
    Legacy { body: &'a [u8], iv: &'a [u8; LEGACY_IV_LEN] },
}

/// A hybrid payload split into its parts. Nothing secret has been touched yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) thumbprint: Option<&'a [u8; THUMBPRINT_LEN]>,
    pub(crate) wrapped_key: &'a [u8; RSA_BYTES],
    sealed: Sealed<'a>,
}

impl<'a> Payload<'a> {
    /// Splits raw payload bytes. `Decrypt` for anything that is not one of the layouts.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, CryptoError> {
        if bytes.len() > PAYLOAD_BYTES_MAX {
            return Err(CryptoError::Decrypt);
        }
        // A pre-1.2 payload whose thumbprint happens to start with "VER_R2" is still read.
        let headers: &[usize] = if bytes.starts_with(VERSION_R2) { &[VERSION_R2.len(), 0] } else { &[0] };
        // With a thumbprint first: the normal case since 1.2.0.1.
        for (header, thumbprint_len) in headers.iter().flat_map(|h| [(*h, THUMBPRINT_LEN), (*h, 0)]) {
            let splitter_at = header + thumbprint_len + RSA_BYTES;
            if bytes.get(splitter_at..splitter_at + KEY_SPLITTER.len()) != Some(KEY_SPLITTER.as_slice()) {
                continue;
            }
            let thumbprint = (thumbprint_len > 0).then(|| fixed::<THUMBPRINT_LEN>(bytes, header)).flatten();
            let wrapped_key = fixed::<RSA_BYTES>(bytes, header + thumbprint_len).ok_or(CryptoError::Decrypt)?;
            let data = bytes.get(splitter_at + KEY_SPLITTER.len()..).ok_or(CryptoError::Decrypt)?;
            let sealed = if header > 0 {
                let aad = fixed::<AAD_LEN>(data, 0).ok_or(CryptoError::Decrypt)?;
                let body = data.get(AAD_LEN..).filter(|b| b.len() >= TAG_LEN).ok_or(CryptoError::Decrypt)?;
                Sealed::VerR2 { aad, body }
            } else {
                let body_len = data.len().checked_sub(LEGACY_IV_LEN).filter(|n| *n >= TAG_LEN).ok_or(CryptoError::Decrypt)?;
                let iv = fixed::<LEGACY_IV_LEN>(data, body_len).ok_or(CryptoError::Decrypt)?;
                Sealed::Legacy { body: &data[..body_len], iv }
            };
            return Ok(Payload { thumbprint, wrapped_key, sealed });
        }
        Err(CryptoError::Decrypt)
    }

    pub(crate) fn layout(&self) -> Layout {
        match self.sealed {
            Sealed::VerR2 { .. } => Layout::VerR2,
            Sealed::Legacy { .. } => Layout::Legacy,
        }
    }

    /// Opens the data block with the unwrapped AES key.
    pub(crate) fn open(&self, session_key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self.sealed {
            Sealed::VerR2 { aad, body } => {
                let alg = match session_key.len() {
                    AES_256_KEY_LEN => &AES_256_GCM,
                    AES_128_KEY_LEN => &AES_128_GCM,
                    _ => return Err(CryptoError::Decrypt),
                };
                let key = LessSafeKey::new(UnboundKey::new(alg, session_key).map_err(|_| CryptoError::Decrypt)?);
                let nonce = Nonce::try_assume_unique_for_key(&aad[..VER_R2_NONCE_LEN]).map_err(|_| CryptoError::Decrypt)?;
                let mut buf = body.to_vec();
                let n = key.open_in_place(nonce, Aad::from(aad.as_slice()), &mut buf).map_err(|_| CryptoError::Decrypt)?.len();
                buf.truncate(n);
                Ok(buf)
            }
            Sealed::Legacy { body, iv } => legacy_open(session_key, iv, body),
        }
    }
}

fn fixed<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// AES-GCM with a 16-byte IV (RustCrypto: aws-lc-rs's AEAD takes 12-byte nonces only).
fn legacy_open(session_key: &[u8], iv: &[u8; LEGACY_IV_LEN], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
    use aes_gcm::aead::Aead;
    use aes_gcm::aead::consts::U16;
    use aes_gcm::{AesGcm, KeyInit};
    let nonce = aes_gcm::Nonce::<U16>::from(*iv);
    let opened = match session_key.len() {
        AES_256_KEY_LEN => {
            AesGcm::<aes_gcm::aes::Aes256, U16>::new_from_slice(session_key).map_err(|_| CryptoError::Decrypt)?.decrypt(&nonce, body)
        }
        AES_128_KEY_LEN => {
            AesGcm::<aes_gcm::aes::Aes128, U16>::new_from_slice(session_key).map_err(|_| CryptoError::Decrypt)?.decrypt(&nonce, body)
        }
        _ => return Err(CryptoError::Decrypt),
    };
    opened.map_err(|_| CryptoError::Decrypt)
}

/// The raw payload bytes from what MOSIP hands over: base64 text (URL-safe or standard, padded
/// or not, surrounding whitespace ignored) or the raw bytes themselves. `Decrypt` when it is
/// neither or too large.
///
/// # Errors
/// `Decrypt`, as for every other malformation (see the module documentation).
pub fn decode(input: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CryptoError> {
    if input.windows(KEY_SPLITTER.len()).any(|w| w == KEY_SPLITTER) {
        if input.len() > PAYLOAD_BYTES_MAX {
            return Err(CryptoError::Decrypt);
        }
        return Ok(std::borrow::Cow::Borrowed(input));
    }
    let text = input.trim_ascii();
    if text.len() > PAYLOAD_TEXT_MAX {
        return Err(CryptoError::Decrypt);
    }
    let url_safe = text.iter().any(|b| matches!(b, b'-' | b'_'));
    let standard = text.iter().any(|b| matches!(b, b'+' | b'/'));
    let alphabet = match (url_safe, standard) {
        (true, true) => return Err(CryptoError::Decrypt),
        (true, false) => &alphabet::URL_SAFE,
        (false, _) => &alphabet::STANDARD,
    };
    // Java's decoders accept missing padding and non-zero trailing bits; so do we.
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent).with_decode_allow_trailing_bits(true);
    GeneralPurpose::new(alphabet, config).decode(text).map(std::borrow::Cow::Owned).map_err(|_| CryptoError::Decrypt)
}

/// Which layout a payload has, without decrypting it (for logs and metrics: which MOSIP release
/// is sending).
///
/// # Errors
/// `Decrypt` when it is not a hybrid payload.
pub fn layout(input: &[u8]) -> Result<Layout, CryptoError> {
    let raw = decode(input)?;
    Ok(Payload::parse(&raw)?.layout())
}

/// Base64 as MOSIP writes it: the URL-safe alphabet with padding.
#[must_use]
pub fn encode(payload: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(payload)
}

/// Encrypts `plaintext` to `recipient` (an X.509 certificate or SubjectPublicKeyInfo, DER or
/// PEM, RSA-2048) in the VER_R2 layout, as MOSIP's key manager would. Returns the raw payload;
/// [`encode`] gives the text MOSIP exchanges.
///
/// # Errors
/// `Invalid` for a recipient that is not an RSA-2048 certificate or key, or a plaintext over
/// [`PLAINTEXT_BYTES_MAX`]; `Rng` when the system RNG fails.
pub fn hybrid_encrypt(recipient: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    hybrid_encrypt_to(&Recipient::parse(recipient)?, plaintext)
}

/// [`hybrid_encrypt`] to an already-parsed recipient.
///
/// # Errors
/// As [`hybrid_encrypt`].
pub fn hybrid_encrypt_to(recipient: &Recipient, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plaintext.len() > PLAINTEXT_BYTES_MAX {
        return Err(CryptoError::Invalid("plaintext too large"));
    }
    let session_key = Zeroizing::new(crate::aead::random::<AES_256_KEY_LEN>()?);
    let aad: [u8; AAD_LEN] = crate::aead::random()?;
    let public =
        PublicEncryptingKey::from_der(recipient.spki()).map_err(|_| CryptoError::Invalid("recipient key is not an RSA public key"))?;
    let oaep = OaepPublicEncryptingKey::new(public).map_err(|_| CryptoError::Invalid("recipient key is not an RSA public key"))?;
    let mut wrapped = [0u8; RSA_BYTES];
    let n = oaep.encrypt(&OAEP_SHA256_MGF1SHA256, session_key.as_slice(), &mut wrapped, None).map_err(|_| CryptoError::Rng)?.len();
    if n != RSA_BYTES {
        return Err(CryptoError::Invalid("recipient key is not RSA-2048"));
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, session_key.as_slice()).map_err(|_| CryptoError::Rng)?);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&aad[..VER_R2_NONCE_LEN]);
    let mut out =
        Vec::with_capacity(VERSION_R2.len() + THUMBPRINT_LEN + RSA_BYTES + KEY_SPLITTER.len() + AAD_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(VERSION_R2);
    out.extend_from_slice(&recipient.thumbprint());
    out.extend_from_slice(&wrapped);
    out.extend_from_slice(KEY_SPLITTER);
    out.extend_from_slice(&aad);
    let body_at = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_slice()), &mut out[body_at..])
        .map_err(|_| CryptoError::Rng)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// What a keystore provides for hybrid decryption: its RSA key versions and the OAEP step.
pub(crate) trait RsaKeys {
    /// The versions of `id.purpose`'s key, newest first.
    fn rsa_versions(&self, purpose: crate::Purpose) -> Vec<KeyId>;
    /// SHA-256 of the version's certificate.
    fn rsa_thumbprint(&self, id: KeyId) -> Result<[u8; THUMBPRINT_LEN], CryptoError>;
    /// RSA-OAEP (SHA-256, MGF1-SHA-256) decryption of one block; `Decrypt` when it is not valid
    /// under this version.
    fn rsa_oaep_decrypt(&self, id: KeyId, block: &[u8; RSA_BYTES]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// Decrypts a payload with the key versions of `purpose`: the version whose certificate has the
/// payload's thumbprint first, then the others, newest first (MOSIP may re-sign the certificate
/// we gave it and put the thumbprint of its own copy in the payload).
pub(crate) fn decrypt(keys: &impl RsaKeys, purpose: crate::Purpose, input: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let raw = decode(input)?;
    let payload = Payload::parse(&raw)?;
    let mut order = keys.rsa_versions(purpose);
    if let Some(wanted) = payload.thumbprint
        && let Some(at) = order.iter().position(|id| keys.rsa_thumbprint(*id).is_ok_and(|t| &t == wanted))
    {
        order[..=at].rotate_right(1);
    }
    for id in order {
        match keys.rsa_oaep_decrypt(id, payload.wrapped_key) {
            Ok(session_key) => return payload.open(&session_key),
            Err(CryptoError::Decrypt) => {}
            Err(other) => return Err(other),
        }
    }
    Err(CryptoError::Decrypt)
}

/// Equality mask: all ones when `a == b`, else zero, without a data-dependent branch.
fn eq_mask(a: u8, b: u8) -> u8 {
    let x = u32::from(a ^ b);
    // x - 1 borrows (sets bit 8 and above) exactly when x == 0.
    let borrow = (x.wrapping_sub(1) >> 8) & 1;
    0u8.wrapping_sub(u8::try_from(borrow).unwrap_or(0))
}

/// `if mask { a } else { b }` for an all-ones or all-zero mask.
fn select_usize(mask: u8, a: usize, b: usize) -> usize {
    let m = 0usize.wrapping_sub(usize::from(mask & 1));
    (a & m) | (b & !m)
}

fn mgf1_sha256(seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(32)) {
        let block = crate::digest::sha256(&[seed, &counter.to_be_bytes()]);
        for (o, m) in chunk.iter_mut().zip(block) {
            *o ^= m;
        }
    }
}

/// EME-OAEP decoding (RFC 8017 §7.1.2 step 3) with SHA-256, MGF1-SHA-256 and an empty label, of
/// the block a token's raw RSA (`CKM_RSA_X_509`) returns. Every check is folded into one mask and
/// looked at once, after all the work is done, so neither the result nor the time taken says
/// which check failed (Manger's attack needs exactly that).
pub(crate) fn oaep_sha256_decode(em: &[u8; RSA_BYTES]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    const H: usize = 32;
    let mut seed = Zeroizing::new([0u8; H]);
    let mut db = Zeroizing::new([0u8; RSA_BYTES - H - 1]);
    seed.copy_from_slice(&em[1..=H]);
    db.copy_from_slice(&em[H + 1..]);
    mgf1_sha256(&db[..], &mut seed[..]);
    mgf1_sha256(&seed[..], &mut db[..]);
    let empty_label_hash = crate::digest::sha256(&[]);
    let mut good = eq_mask(em[0], 0);
    for (a, b) in db[..H].iter().zip(empty_label_hash) {
        good &= eq_mask(*a, b);
    }
    // After the label hash: zero or more 0x00, one 0x01, then the message.
    let mut looking: u8 = 0xff;
    let mut one_at = 0usize;
    for (i, b) in db.iter().enumerate().skip(H) {
        let is_one = eq_mask(*b, 1);
        let is_zero = eq_mask(*b, 0);
        one_at = select_usize(looking & is_one, i, one_at);
        good &= !(looking & !is_one & !is_zero);
        looking &= !is_one;
    }
    good &= !looking;
    if good != 0xff {
        return Err(CryptoError::Decrypt);
    }
    Ok(Zeroizing::new(db[one_at + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Purpose;
    use aws_lc_rs::rsa::{KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey};

    /// Java's output (MosipHybridVector.java, the JCE calls MOSIP makes), kept as test data.
    pub(crate) fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/data/mosip_hybrid.json")).unwrap()
    }

    fn b64(s: &serde_json::Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap()).unwrap()
    }

    fn hex(s: &serde_json::Value) -> Vec<u8> {
        let s = s.as_str().unwrap();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RSA keys held in memory, decrypting with aws-lc-rs's OAEP (as the software keystore).
    struct Keys {
        keys: Vec<(KeyId, [u8; 32], OaepPrivateDecryptingKey)>,
        calls: std::cell::Cell<usize>,
    }

    impl RsaKeys for Keys {
        fn rsa_versions(&self, purpose: Purpose) -> Vec<KeyId> {
            let mut v: Vec<KeyId> = self.keys.iter().map(|k| k.0).filter(|id| id.purpose == purpose).collect();
            v.sort_by(|a, b| b.cmp(a));
            v
        }
        fn rsa_thumbprint(&self, id: KeyId) -> Result<[u8; 32], CryptoError> {
            self.keys.iter().find(|k| k.0 == id).map(|k| k.1).ok_or(CryptoError::UnknownKey(id))
        }
        fn rsa_oaep_decrypt(&self, id: KeyId, block: &[u8; RSA_BYTES]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            self.calls.set(self.calls.get() + 1);
            let key = &self.keys.iter().find(|k| k.0 == id).ok_or(CryptoError::UnknownKey(id))?.2;
            let mut out = Zeroizing::new(vec![0u8; RSA_BYTES]);
            let n = key.decrypt(&OAEP_SHA256_MGF1SHA256, block, &mut out, None).map_err(|_| CryptoError::Decrypt)?.len();
            out.truncate(n);
            Ok(out)
        }
    }

    fn datashare(version: u32) -> KeyId {
        KeyId { purpose: Purpose::Datashare, version }
    }

    fn java_keys() -> Keys {
        let v = vectors();
        let key = OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(&b64(&v["private_key_pkcs8_b64"])).unwrap()).unwrap();
        let thumb: [u8; 32] = hex(&v["thumbprint_hex"]).try_into().unwrap();
        Keys { keys: vec![(datashare(1), thumb, key)], calls: 0.into() }
    }

    /// A fresh key with a certificate-like SPKI as its recipient form.
    fn fresh_key(version: u32) -> (Vec<u8>, (KeyId, [u8; 32], OaepPrivateDecryptingKey)) {
        let private = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&private.public_key()).unwrap();
        let spki = spki.as_ref().to_vec();
        let thumb = crate::digest::sha256(&[&spki]);
        (spki, (datashare(version), thumb, OaepPrivateDecryptingKey::new(private).unwrap()))
    }

    #[test]
    fn java_ver_r2_payload_decrypts() {
        let v = vectors();
        let keys = java_keys();
        let text = v["ver_r2"]["payload_b64url"].as_str().unwrap();
        let want = v["ver_r2"]["plaintext"].as_str().unwrap().as_bytes();
        assert_eq!(decrypt(&keys, Purpose::Datashare, text.as_bytes()).unwrap(), want);
        // The datashare body may end with a newline; the raw bytes work as well.
        assert_eq!(decrypt(&keys, Purpose::Datashare, format!("{text}\r\n").as_bytes()).unwrap(), want);
        let raw = decode(text.as_bytes()).unwrap().into_owned();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &raw).unwrap(), want);
        let p = Payload::parse(&raw).unwrap();
        assert_eq!(layout(text.as_bytes()).unwrap(), Layout::VerR2);
        assert_eq!(p.thumbprint.unwrap().as_slice(), hex(&v["thumbprint_hex"]));
        // The thumbprint is what Java computed over its certificate, and Recipient agrees.
        let cert = b64(&v["certificate_der_b64"]);
        assert_eq!(Recipient::parse(&cert).unwrap().thumbprint().as_slice(), hex(&v["thumbprint_hex"]));
    }

    #[test]
    fn java_pre_1_2_payloads_decrypt() {
        let v = vectors();
        let keys = java_keys();
        let want = v["pre_1_2"]["plaintext"].as_str().unwrap().as_bytes();
        for (field, has_thumbprint) in [("payload_b64", true), ("payload_without_thumbprint_b64", false)] {
            let text = v["pre_1_2"][field].as_str().unwrap();
            assert!(text.contains('+') || text.contains('/'), "standard alphabet exercised");
            assert_eq!(decrypt(&keys, Purpose::Datashare, text.as_bytes()).unwrap(), want, "{field}");
            let raw = decode(text.as_bytes()).unwrap();
            let p = Payload::parse(&raw).unwrap();
            assert_eq!((layout(text.as_bytes()).unwrap(), p.thumbprint.is_some()), (Layout::Legacy, has_thumbprint));
            // Without padding too (Java's decoders do not require it).
            assert_eq!(decrypt(&keys, Purpose::Datashare, text.trim_end_matches('=').as_bytes()).unwrap(), want);
        }
    }

    #[test]
    fn oaep_decoding_of_the_raw_rsa_output_matches_java() {
        let v = vectors();
        let em: [u8; RSA_BYTES] = hex(&v["ver_r2"]["oaep_encoded_hex"]).try_into().unwrap();
        assert_eq!(oaep_sha256_decode(&em).unwrap().as_slice(), hex(&v["ver_r2"]["session_key_hex"]));
        // Any changed byte is the one error: the leading zero, the seed, the label hash, the
        // padding, the separator (a change in the message part changes the message instead).
        for i in [0, 1, 20, 32, 33, 40, 64, 65, 100, 150, 200, 222] {
            let mut t = em;
            t[i] ^= 0x01;
            assert_eq!(oaep_sha256_decode(&t).unwrap_err(), CryptoError::Decrypt, "byte {i}");
        }
        assert_eq!(oaep_sha256_decode(&[0u8; RSA_BYTES]).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn oaep_decoding_finds_messages_of_every_length() {
        // Encode by hand (RFC 8017 §7.1.1), decode with ours: lengths from empty to the maximum.
        for len in [0usize, 1, 16, 32, 100, RSA_BYTES - 2 * 32 - 2] {
            let msg: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap() + 1).collect();
            let mut db = vec![0u8; RSA_BYTES - 33];
            db[..32].copy_from_slice(&crate::digest::sha256(&[]));
            let one = db.len() - len - 1;
            db[one] = 1;
            db[one + 1..].copy_from_slice(&msg);
            let seed = [0x5au8; 32];
            let mut masked_db = db.clone();
            mgf1_sha256(&seed, &mut masked_db);
            let mut masked_seed = seed;
            mgf1_sha256(&masked_db, &mut masked_seed);
            let mut em = [0u8; RSA_BYTES];
            em[1..33].copy_from_slice(&masked_seed);
            em[33..].copy_from_slice(&masked_db);
            assert_eq!(oaep_sha256_decode(&em).unwrap().as_slice(), msg.as_slice(), "length {len}");
        }
    }

    #[test]
    fn masks_are_exact() {
        for a in 0..=255u8 {
            for b in [0u8, 1, a, a.wrapping_add(1), 255] {
                assert_eq!(eq_mask(a, b), if a == b { 0xff } else { 0 });
            }
        }
        assert_eq!(select_usize(0xff, 7, 9), 7);
        assert_eq!(select_usize(0, 7, 9), 9);
    }

    #[test]
    fn round_trip_and_text_form() {
        let (spki, key) = fresh_key(1);
        let keys = Keys { keys: vec![key], calls: 0.into() };
        let sealed = hybrid_encrypt(&spki, b"CBEFF bytes").unwrap();
        assert_eq!(sealed.len(), 6 + 32 + 256 + 14 + 32 + 11 + 16);
        assert_eq!(&sealed[..6], b"VER_R2");
        assert_eq!(sealed[6..38], crate::digest::sha256(&[&spki]));
        assert_eq!(&sealed[294..308], KEY_SPLITTER);
        assert_eq!(decrypt(&keys, Purpose::Datashare, &sealed).unwrap(), b"CBEFF bytes");
        let text = encode(&sealed);
        assert!(text.len().is_multiple_of(4), "padded");
        assert!(!text.contains('+') && !text.contains('/'));
        assert_eq!(decrypt(&keys, Purpose::Datashare, text.as_bytes()).unwrap(), b"CBEFF bytes");
        assert_eq!(decrypt(&keys, Purpose::Datashare, &hybrid_encrypt(&spki, b"").unwrap()).unwrap(), b"");
        assert_ne!(hybrid_encrypt(&spki, b"x").unwrap(), hybrid_encrypt(&spki, b"x").unwrap(), "fresh key and AAD each time");
        assert_eq!(hybrid_encrypt(&spki, &vec![0; PLAINTEXT_BYTES_MAX + 1]).unwrap_err(), CryptoError::Invalid("plaintext too large"));
    }

    #[test]
    fn every_tamper_truncation_and_wrong_key_is_the_one_error() {
        let (spki, key) = fresh_key(1);
        let keys = Keys { keys: vec![key], calls: 0.into() };
        let sealed = hybrid_encrypt(&spki, b"0123456789").unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x04;
            let r = decrypt(&keys, Purpose::Datashare, &t);
            // The thumbprint only chooses which version to try first.
            if (6..38).contains(&i) {
                assert_eq!(r.unwrap(), b"0123456789");
            } else {
                assert_eq!(r.unwrap_err(), CryptoError::Decrypt, "byte {i}");
            }
        }
        for n in 0..sealed.len() {
            assert_eq!(decrypt(&keys, Purpose::Datashare, &sealed[..n]).unwrap_err(), CryptoError::Decrypt, "first {n} bytes");
        }
        let (_, other) = fresh_key(1);
        let wrong = Keys { keys: vec![other], calls: 0.into() };
        assert_eq!(decrypt(&wrong, Purpose::Datashare, &sealed).unwrap_err(), CryptoError::Decrypt);
        let none = Keys { keys: vec![], calls: 0.into() };
        assert_eq!(decrypt(&none, Purpose::Datashare, &sealed).unwrap_err(), CryptoError::Decrypt);
        for junk in [&b""[..], b"   ", b"!!!!", b"VER_R2", b"a-b+c", &[0u8; 400]] {
            assert_eq!(decrypt(&keys, Purpose::Datashare, junk).unwrap_err(), CryptoError::Decrypt, "{junk:?}");
        }
        // The error says nothing about the input.
        assert_eq!(CryptoError::Decrypt.to_string(), "decryption failed: wrong key, wrong context, or tampered data");
    }

    #[test]
    fn the_thumbprint_picks_the_version_and_unknown_thumbprints_try_all() {
        let (spki1, k1) = fresh_key(1);
        let (spki2, k2) = fresh_key(2);
        let (spki3, k3) = fresh_key(3);
        let keys = Keys { keys: vec![k1, k2, k3], calls: 0.into() };
        assert_eq!(keys.rsa_versions(Purpose::Datashare), [datashare(3), datashare(2), datashare(1)]);
        let to1 = hybrid_encrypt(&spki1, b"one").unwrap();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &to1).unwrap(), b"one");
        assert_eq!(keys.calls.replace(0), 1, "the thumbprint named version 1: one RSA operation");
        // MOSIP re-signs partner certificates: a thumbprint of no version of ours.
        let mut resigned = hybrid_encrypt(&spki2, b"two").unwrap();
        resigned[6..38].copy_from_slice(&[0xee; 32]);
        assert_eq!(decrypt(&keys, Purpose::Datashare, &resigned).unwrap(), b"two");
        assert_eq!(keys.calls.replace(0), 2, "newest first: 3, then 2");
        assert_eq!(decrypt(&keys, Purpose::Datashare, &hybrid_encrypt(&spki3, b"three").unwrap()).unwrap(), b"three");
        assert_eq!(keys.calls.replace(0), 1);
        // Another purpose's versions are not tried.
        assert_eq!(decrypt(&keys, Purpose::Identity, &to1).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(keys.calls.get(), 0);
    }

    #[test]
    fn aes_128_session_keys_open_in_both_layouts() {
        // MOSIP generates 256-bit keys, but Java accepts 128-bit ones and so do we.
        let (spki, (id, thumb, key)) = fresh_key(1);
        let keys = Keys { keys: vec![(id, thumb, key)], calls: 0.into() };
        let session = [7u8; 16];
        let public = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&spki).unwrap()).unwrap();
        let mut wrapped = [0u8; RSA_BYTES];
        public.encrypt(&OAEP_SHA256_MGF1SHA256, &session, &mut wrapped, None).unwrap();
        // pre-1.2, made with RustCrypto's 16-byte-IV GCM.
        use aes_gcm::aead::Aead;
        use aes_gcm::{AesGcm, KeyInit};
        let iv = [9u8; 16];
        let gcm = AesGcm::<aes_gcm::aes::Aes128, aes_gcm::aead::consts::U16>::new_from_slice(&session).unwrap();
        let body = gcm.encrypt(&aes_gcm::Nonce::<aes_gcm::aead::consts::U16>::from(iv), &b"legacy"[..]).unwrap();
        let legacy = [&wrapped[..], KEY_SPLITTER, &body, &iv].concat();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &legacy).unwrap(), b"legacy");
        // VER_R2 with a 128-bit key.
        let aad = [3u8; 32];
        let k = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &session).unwrap());
        let mut body = b"modern".to_vec();
        let nonce = Nonce::try_assume_unique_for_key(&aad[..12]).unwrap();
        k.seal_in_place_append_tag(nonce, Aad::from(&aad[..]), &mut body).unwrap();
        let modern = [&b"VER_R2"[..], &thumb, &wrapped, KEY_SPLITTER, &aad, &body].concat();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &modern).unwrap(), b"modern");
        // MOSIP 1.2.0 without the thumbprint.
        let bare = [&b"VER_R2"[..], &wrapped, KEY_SPLITTER, &aad, &body].concat();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &bare).unwrap(), b"modern");
        // A 24-byte or 20-byte session key is refused with the one error.
        let mut odd = [0u8; RSA_BYTES];
        public.encrypt(&OAEP_SHA256_MGF1SHA256, &[1u8; 24], &mut odd, None).unwrap();
        let odd_payload = [&odd[..], KEY_SPLITTER, &body, &iv].concat();
        assert_eq!(decrypt(&keys, Purpose::Datashare, &odd_payload).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn decoding_accepts_both_alphabets_and_refuses_mixtures_and_oversize() {
        let bytes: Vec<u8> = (0..=255).collect();
        let url = encode(&bytes);
        let std_ = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_ne!(url, std_);
        assert_eq!(decode(url.as_bytes()).unwrap().as_ref(), bytes.as_slice());
        assert_eq!(decode(std_.as_bytes()).unwrap().as_ref(), bytes.as_slice());
        assert_eq!(decode(b"-+").unwrap_err(), CryptoError::Decrypt);
        let big = vec![b'A'; PAYLOAD_TEXT_MAX + 1];
        assert_eq!(decode(&big).unwrap_err(), CryptoError::Decrypt);
        let mut raw_big = vec![0u8; PAYLOAD_BYTES_MAX + 1];
        raw_big[..14].copy_from_slice(KEY_SPLITTER);
        assert_eq!(decode(&raw_big).unwrap_err(), CryptoError::Decrypt);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..700),
            header in proptest::bool::ANY,
            at in 0usize..700,
        ) {
            let mut input = if header { VERSION_R2.to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            let at = at.min(input.len());
            let mut spliced = input.clone();
            spliced.splice(at..at, KEY_SPLITTER.iter().copied());
            for candidate in [&input, &spliced] {
                if let Ok(p) = Payload::parse(candidate) {
                    let _ = p.open(&[0u8; 32]);
                }
                let _ = decode(candidate);
            }
        }

        #[test]
        fn oaep_decoding_never_panics(block in proptest::collection::vec(proptest::num::u8::ANY, RSA_BYTES..=RSA_BYTES)) {
            let em: [u8; RSA_BYTES] = block.try_into().unwrap();
            let _ = oaep_sha256_decode(&em);
        }
    }
}

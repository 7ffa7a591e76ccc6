//! X.509 for the RSA keys: the self-signed certificate of a key version (what an operator hands
//! to MOSIP's partner management, and whose SHA-256 is the thumbprint MOSIP's hybrid payloads
//! carry), and reading a recipient's RSA public key out of a certificate, a bare
//! SubjectPublicKeyInfo, or their PEM forms.
//!
//! Certificates are assembled by `rcgen` (without a crypto backend: the keystore that holds the
//! key signs the to-be-signed bytes, inside the token for PKCS#11). Every field is derived from the
//! key version itself, and PKCS#1 v1.5 signatures are deterministic, so a version's certificate is
//! the same bytes on every call, in every process, after every restart: its thumbprint never
//! changes and nothing about it has to be stored.
//!
//! The certificate (RFC 5280): v3; serial = the first 16 bytes of SHA-256 over
//! `tessera-certificate-serial-1 ‖ SubjectPublicKeyInfo`, top bit cleared; signature
//! sha256WithRSAEncryption; subject = issuer = `CN=tessera <purpose>.v<N>, O=Tessera`; validity
//! from the key's creation second for [`CERTIFICATE_VALIDITY_DAYS`]; extensions: key usage
//! (critical) keyEncipherment + dataEncipherment, basic constraints CA:FALSE, subject key
//! identifier = the first 20 bytes of SHA-256 of the SubjectPublicKeyInfo (RFC 7093 method 1).

use crate::digest::sha256;
use crate::{CryptoError, KeyId};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose, PKCS_RSA_SHA256, PublicKeyData, SerialNumber,
    SignatureAlgorithm, SigningKey,
};
use std::cell::RefCell;

/// How long a key version's certificate is valid, from the version's creation. MOSIP's own
/// encryption keys live about as long (module keys 1,095 days, `key_policy_def`); rotate before.
pub const CERTIFICATE_VALIDITY_DAYS: i64 = 1095;
/// Modulus size of every RSA key Tessera holds or encrypts to (MOSIP uses RSA-2048 throughout).
pub const RSA_BITS: usize = 2048;
/// Bytes of one RSA block (ciphertext or signature) for [`RSA_BITS`].
pub const RSA_BYTES: usize = RSA_BITS / 8;
/// Largest certificate or public key accepted as a recipient, DER or PEM.
pub const RECIPIENT_BYTES_MAX: usize = 64 * 1024;
/// Organisation written in every certificate's subject.
pub const ORGANISATION: &str = "Tessera";

/// How a keystore signs for a certificate: RSASSA-PKCS1-v1_5 with SHA-256 over the bytes given.
pub(crate) type Sign<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, CryptoError> + 'a;

/// SHA-256 of a certificate's DER: the thumbprint MOSIP's hybrid payloads carry.
#[must_use]
pub fn thumbprint(certificate_der: &[u8]) -> [u8; 32] {
    sha256(&[certificate_der])
}

/// The public half of an RSA key as PKCS#1 `RSAPublicKey` DER (what rcgen and the token's
/// modulus and exponent give).
struct RsaPublic<'a> {
    pkcs1: &'a [u8],
}

impl PublicKeyData for RsaPublic<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.pkcs1
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_RSA_SHA256
    }
}

/// A signer that defers to the keystore. rcgen's error type cannot carry ours, so a failure is
/// kept aside and handed back after rcgen gives up.
struct Signer<'a> {
    public: RsaPublic<'a>,
    sign: &'a Sign<'a>,
    failure: RefCell<Option<CryptoError>>,
}

impl PublicKeyData for Signer<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.public.algorithm()
    }
}

impl SigningKey for Signer<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        (self.sign)(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// The SubjectPublicKeyInfo DER of an RSA public key given as PKCS#1 `RSAPublicKey` DER.
#[must_use]
pub(crate) fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    RsaPublic { pkcs1 }.subject_public_key_info()
}

/// The self-signed certificate of key version `id`, created at `created_at_ms`, whose public key
/// is `public_pkcs1` and whose private key signs through `sign` (RSASSA-PKCS1-v1_5 with SHA-256
/// over the bytes given).
///
/// # Errors
/// What `sign` returns; `Invalid` for a creation time outside what X.509 can say.
pub(crate) fn self_signed(id: KeyId, created_at_ms: i64, public_pkcs1: &[u8], sign: &Sign<'_>) -> Result<Vec<u8>, CryptoError> {
    let spki = spki_from_pkcs1(public_pkcs1);
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("tessera {id}"));
    name.push(DnType::OrganizationName, ORGANISATION);
    params.distinguished_name = name;
    let not_before = time::OffsetDateTime::from_unix_timestamp(created_at_ms.div_euclid(1000))
        .map_err(|_| CryptoError::Invalid("key creation time out of range"))?;
    params.not_before = not_before;
    params.not_after = not_before
        .checked_add(time::Duration::days(CERTIFICATE_VALIDITY_DAYS))
        .ok_or(CryptoError::Invalid("key creation time out of range"))?;
    let mut serial = [0u8; 16];
    serial.copy_from_slice(&sha256(&[b"tessera-certificate-serial-1", &spki])[..16]);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DataEncipherment];
    params.key_identifier_method = KeyIdMethod::PreSpecified(sha256(&[&spki])[..20].to_vec());
    let signer = Signer { public: RsaPublic { pkcs1: public_pkcs1 }, sign, failure: RefCell::new(None) };
    match params.self_signed(&signer) {
        Ok(cert) => Ok(cert.der().to_vec()),
        Err(_) => Err(signer.failure.take().unwrap_or(CryptoError::Invalid("certificate could not be assembled"))),
    }
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` from the
/// big-endian magnitudes a token reports (`CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`).
#[must_use]
pub(crate) fn pkcs1_from_components(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(modulus);
    body.extend_from_slice(&der_unsigned_integer(exponent));
    der_element(0x30, &body)
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        // Fits in the short form by the test above.
        return vec![u8::try_from(len).unwrap_or(0)];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = &bytes[skip..];
    let mut out = vec![0x80 | u8::try_from(significant.len()).unwrap_or(0)];
    out.extend_from_slice(significant);
    out
}

fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&der_length(content.len()));
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER: leading zero bytes dropped, one added back when the top bit is set.
fn der_unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let significant = &magnitude[skip..];
    let mut content = Vec::with_capacity(significant.len() + 1);
    if significant.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    der_element(0x02, &content)
}

/// One DER element: its tag, its content, and the whole element (header and content).
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads the element at the start of `input`, returning it and what follows. Only definite
/// lengths of at most four length bytes (certificates are far smaller than 4 GiB); no panics on
/// any input.
fn read_element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        (len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let (content, after) = rest.split_at(len);
    Some((Element { tag, content, whole: &input[..header + len] }, after))
}

/// The SubjectPublicKeyInfo inside a DER certificate, or the input itself when it already is
/// one. `None` when it is neither (the key inside is checked by whoever uses it).
fn spki_of(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (outer, after) = read_element(der)?;
    if outer.tag != SEQUENCE || !after.is_empty() {
        return None;
    }
    let (first, _) = read_element(outer.content)?;
    if first.tag != SEQUENCE {
        return None;
    }
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE { OID, … }, BIT STRING }
    if read_element(first.content).is_some_and(|(alg_oid, _)| alg_oid.tag == OID) {
        return Some(der);
    }
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serial, signature, issuer, validity,
    // subject, subjectPublicKeyInfo, … }
    let mut fields = first.content;
    let (version_or_serial, rest) = read_element(fields)?;
    fields = if version_or_serial.tag == 0xa0 { read_element(rest)?.1 } else { rest };
    for _ in 0..4 {
        fields = read_element(fields)?.1;
    }
    let (spki, _) = read_element(fields)?;
    (spki.tag == SEQUENCE).then_some(spki.whole)
}

/// The body of a PEM block (`-----BEGIN …-----` … `-----END …-----`), base64-decoded.
fn pem_body(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let start = text.find("-----BEGIN ")?;
    let after_begin = &text[start..];
    let body_start = after_begin.find('\n')? + 1;
    let body = &after_begin[body_start..];
    let end = body.find("-----END ")?;
    let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

/// Someone to encrypt to: an RSA-2048 public key, and the thumbprint to write beside the
/// wrapped key (the certificate's; for a bare public key, SHA-256 of its SubjectPublicKeyInfo,
/// which MOSIP's key manager will not recognise: give it certificates).
#[derive(Clone)]
pub struct Recipient {
    spki: Vec<u8>,
    thumbprint: [u8; 32],
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex: String = self.thumbprint.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Recipient").field("thumbprint", &hex).finish_non_exhaustive()
    }
}

impl Recipient {
    /// Reads an X.509 certificate or a SubjectPublicKeyInfo, DER or PEM, holding an RSA-2048 key.
    ///
    /// # Errors
    /// `Invalid` when it is none of those, too large, or not an RSA key of [`RSA_BITS`].
    pub fn parse(der_or_pem: &[u8]) -> Result<Self, CryptoError> {
        if der_or_pem.len() > RECIPIENT_BYTES_MAX {
            return Err(CryptoError::Invalid("recipient certificate too large"));
        }
        let decoded;
        let der = if der_or_pem.starts_with(b"-----BEGIN ") {
            decoded = pem_body(der_or_pem).ok_or(CryptoError::Invalid("recipient is not valid PEM"))?;
            decoded.as_slice()
        } else {
            der_or_pem
        };
        let spki = spki_of(der).ok_or(CryptoError::Invalid("recipient is not an X.509 certificate or public key"))?;
        let key = aws_lc_rs::rsa::PublicEncryptingKey::from_der(spki)
            .map_err(|_| CryptoError::Invalid("recipient key is not an RSA public key"))?;
        if key.key_size_bits() != RSA_BITS {
            return Err(CryptoError::Invalid("recipient key is not RSA-2048"));
        }
        Ok(Recipient { spki: spki.to_vec(), thumbprint: thumbprint(der) })
    }

    /// What the hybrid payload names the recipient by.
    #[must_use]
    pub fn thumbprint(&self) -> [u8; 32] {
        self.thumbprint
    }

    pub(crate) fn spki(&self) -> &[u8] {
        &self.spki
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Purpose;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn software_key() -> KeyPair {
        let private = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&private).unwrap();
        KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn sign_with(key: &KeyPair) -> impl Fn(&[u8]) -> Result<Vec<u8>, CryptoError> + '_ {
        move |msg| {
            let mut sig = vec![0u8; key.public_modulus_len()];
            key.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), msg, &mut sig).unwrap();
            Ok(sig)
        }
    }

    #[test]
    fn certificates_are_deterministic_self_signed_and_parse_elsewhere() {
        let key = software_key();
        let id = KeyId { purpose: Purpose::Datashare, version: 3 };
        let created = 1_767_225_600_123; // 2026-01-01T00:00:00.123Z
        let der = self_signed(id, created, key.public_key().as_ref(), &sign_with(&key)).unwrap();
        assert_eq!(self_signed(id, created, key.public_key().as_ref(), &sign_with(&key)).unwrap(), der, "same bytes every time");

        let (rest, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(cert.version().0, 2, "v3");
        assert_eq!(cert.subject().to_string(), "CN=tessera datashare.v3, O=Tessera");
        assert_eq!(cert.issuer(), cert.subject());
        assert_eq!(cert.validity().not_before.timestamp(), 1_767_225_600);
        assert_eq!(cert.validity().not_after.timestamp() - 1_767_225_600, CERTIFICATE_VALIDITY_DAYS * 86_400);
        assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), "1.2.840.113549.1.1.11", "sha256WithRSAEncryption");
        cert.verify_signature(None).unwrap();
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_encipherment() && ku.data_encipherment() && !ku.key_cert_sign() && !ku.digital_signature());
        assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.raw_serial()[0] & 0x80 == 0);
        // The public key in the certificate is the key's, and a recipient reads it back.
        let spki = spki_from_pkcs1(key.public_key().as_ref());
        assert_eq!(cert.public_key().raw, spki.as_slice());
        let r = Recipient::parse(&der).unwrap();
        assert_eq!(r.spki(), spki.as_slice());
        assert_eq!(r.thumbprint(), thumbprint(&der));
        // Another version of the same key material is another certificate.
        let other = self_signed(KeyId { purpose: Purpose::Datashare, version: 4 }, created, key.public_key().as_ref(), &sign_with(&key));
        assert_ne!(other.unwrap(), der);
    }

    #[test]
    fn a_signing_failure_is_reported_as_it_was() {
        let key = software_key();
        let id = KeyId { purpose: Purpose::Datashare, version: 1 };
        let failing = |_: &[u8]| Err(CryptoError::Pkcs11("C_Sign returned DeviceError".into()));
        let err = self_signed(id, 0, key.public_key().as_ref(), &failing).unwrap_err();
        assert_eq!(err, CryptoError::Pkcs11("C_Sign returned DeviceError".into()));
    }

    #[test]
    fn recipients_parse_from_certificate_spki_and_pem() {
        let key = software_key();
        let der = self_signed(KeyId { purpose: Purpose::Datashare, version: 1 }, 0, key.public_key().as_ref(), &sign_with(&key)).unwrap();
        let spki = spki_from_pkcs1(key.public_key().as_ref());
        let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(&der));
        assert_eq!(Recipient::parse(pem.as_bytes()).unwrap().thumbprint(), thumbprint(&der));
        let bare = Recipient::parse(&spki).unwrap();
        assert_eq!((bare.spki(), bare.thumbprint()), (spki.as_slice(), sha256(&[&spki])));
        let pem_key = format!("-----BEGIN PUBLIC KEY-----\r\n{}\r\n-----END PUBLIC KEY-----", STANDARD.encode(&spki));
        assert_eq!(Recipient::parse(pem_key.as_bytes()).unwrap().spki(), spki.as_slice());
        // The PKCS#1 form built from components is the one aws-lc-rs reports.
        let parsed = aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
        assert_eq!(pkcs1_from_components(&parsed.n, &parsed.e), key.public_key().as_ref());
        assert_eq!(format!("{bare:?}").len(), "Recipient { thumbprint: \"\", .. }".len() + 64);
    }

    #[test]
    fn recipients_that_are_not_rsa_2048_are_refused() {
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let ec_spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(ec.public_key()).unwrap();
        assert_eq!(Recipient::parse(ec_spki.as_ref()).unwrap_err(), CryptoError::Invalid("recipient key is not an RSA public key"));
        let big = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa3072).unwrap();
        let big_spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&big.public_key()).unwrap();
        assert_eq!(Recipient::parse(big_spki.as_ref()).unwrap_err(), CryptoError::Invalid("recipient key is not RSA-2048"));
        for junk in [&b""[..], b"\x30", b"\x30\x00", b"\x30\x80\x00\x00", b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----"] {
            assert!(matches!(Recipient::parse(junk), Err(CryptoError::Invalid(_))), "{junk:?}");
        }
        assert!(matches!(Recipient::parse(&vec![0x30; RECIPIENT_BYTES_MAX + 1]), Err(CryptoError::Invalid(_))));
    }

    #[test]
    fn integers_encode_as_der() {
        assert_eq!(der_unsigned_integer(&[0, 0, 1, 0, 1]), [0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(der_unsigned_integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_unsigned_integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(der_length(0x7f), [0x7f]);
        assert_eq!(der_length(0x80), [0x81, 0x80]);
        assert_eq!(der_length(0x1234), [0x82, 0x12, 0x34]);
    }

    proptest::proptest! {
        #[test]
        fn reading_der_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = spki_of(&bytes);
            let _ = Recipient::parse(&bytes);
            let mut pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            pem.extend_from_slice(&bytes);
            let _ = Recipient::parse(&pem);
        }

        #[test]
        fn elements_read_back_what_was_written(content in proptest::collection::vec(proptest::num::u8::ANY, 0..70_000), tag in 0u8..=255) {
            let der = der_element(tag, &content);
            let (e, rest) = read_element(&der).unwrap();
            proptest::prop_assert_eq!((e.tag, e.content, e.whole, rest.len()), (tag, content.as_slice(), der.as_slice(), 0));
            proptest::prop_assert!(read_element(&der[..der.len() - 1]).is_none() || content.is_empty());
        }
    }
}

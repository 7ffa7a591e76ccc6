//! Hybrid-encryption scenarios every keystore must pass: run on the software keystore by
//! `tests/hybrid.rs` and on PKCS#11 (SoftHSM2) by `tests/pkcs11.rs`.
#![allow(clippy::unwrap_used, dead_code)]

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use std::time::{Duration, Instant};
use tessera_crypto::hybrid::{self, KEY_SPLITTER};
use tessera_crypto::{CryptoError, KeyId, Keystore, Purpose, hybrid_encrypt, x509};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Java's vectors (see `tests/data/MosipHybridVector.java`).
pub fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../data/mosip_hybrid.json")).unwrap()
}

/// Hex to bytes; Java's `BigInteger.toString(16)` may leave out a leading zero digit.
pub fn hex(s: &serde_json::Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s.to_owned() };
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The certificate of `id` parses with an independent parser, is self-signed by the key it
/// carries, names its version, and is the same bytes every time.
pub fn certificate_is_sound(ks: &dyn Keystore, id: KeyId) -> Vec<u8> {
    let der = ks.certificate(id).unwrap();
    assert_eq!(ks.certificate(id).unwrap(), der, "deterministic");
    let (rest, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.subject().to_string(), format!("CN=tessera {id}, O=Tessera"));
    assert_eq!(cert.issuer(), cert.subject());
    cert.verify_signature(None).unwrap();
    let created = ks.list().into_iter().find(|k| k.id == id).unwrap().created_at_ms;
    assert_eq!(cert.validity().not_before.timestamp(), created.div_euclid(1000));
    let public = PublicEncryptingKey::from_der(cert.public_key().raw).unwrap();
    assert_eq!(public.key_size_bits(), 2048);
    der
}

/// Round trip, rotation, re-signed certificates, tampering, truncation, a foreign key, and
/// purposes that do not decrypt.
pub fn round_trip_rotation_and_rejections(ks: &dyn Keystore, now_ms: i64) {
    let v1 = ks.current(Purpose::Datashare);
    let cert1 = certificate_is_sound(ks, v1);
    let plaintext = b"<BIR><BDB>fingerprint template</BDB></BIR>";
    let to_v1 = hybrid_encrypt(&cert1, plaintext).unwrap();
    assert_eq!(to_v1[6..38], x509::thumbprint(&cert1), "encrypt writes the certificate's thumbprint");
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &to_v1).unwrap(), plaintext);
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, hybrid::encode(&to_v1).as_bytes()).unwrap(), plaintext, "text form");

    let v2 = ks.rotate(Purpose::Datashare, now_ms).unwrap();
    assert_eq!(v2, KeyId { purpose: Purpose::Datashare, version: v1.version + 1 });
    assert_eq!(ks.current(Purpose::Datashare), v2);
    let cert2 = certificate_is_sound(ks, v2);
    assert_ne!(x509::thumbprint(&cert2), x509::thumbprint(&cert1));
    assert_eq!(ks.certificate(v1).unwrap(), cert1, "the old version keeps its certificate");
    let to_v2 = hybrid_encrypt(&cert2, b"after rotation").unwrap();
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &to_v2).unwrap(), b"after rotation");
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &to_v1).unwrap(), plaintext, "sent before the rotation: still opens");
    // MOSIP re-signs a partner's certificate and writes its own copy's thumbprint: no version of
    // ours has it, every version is tried.
    let mut resigned = to_v1.clone();
    resigned[6..38].copy_from_slice(&[0x5a; 32]);
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &resigned).unwrap(), plaintext);

    // One error for everything else.
    let header = 0..6;
    let wrapped_key = 38..294;
    let splitter = 294..308;
    let aad = 308..340;
    let body_and_tag = 340..to_v1.len();
    for range in [header, wrapped_key, splitter, aad, body_and_tag] {
        for i in [range.start, (range.start + range.end) / 2, range.end - 1] {
            let mut t = to_v1.clone();
            t[i] ^= 0x20;
            assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &t).unwrap_err(), CryptoError::Decrypt, "byte {i}");
        }
    }
    for n in [0, 5, 37, 293, 300, 308, 339, 340, 355, to_v1.len() - 1] {
        assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &to_v1[..n]).unwrap_err(), CryptoError::Decrypt, "first {n} bytes");
    }
    // An RSA block not below any modulus: the token refuses it, and that too is the one error.
    let mut huge = to_v1.clone();
    huge[38..294].fill(0xff);
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &huge).unwrap_err(), CryptoError::Decrypt);
    let foreign = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let foreign_spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&foreign.public_key()).unwrap();
    let to_stranger = hybrid_encrypt(foreign_spki.as_ref(), plaintext).unwrap();
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &to_stranger).unwrap_err(), CryptoError::Decrypt, "someone else's key");
    assert!(matches!(ks.hybrid_decrypt(Purpose::Identity, &to_v1), Err(CryptoError::UnknownKey(_))));
    assert!(matches!(ks.certificate(ks.current(Purpose::Signing)), Err(CryptoError::UnknownKey(_))));
    assert!(matches!(ks.certificate(KeyId { purpose: Purpose::Datashare, version: 99 }), Err(CryptoError::UnknownKey(_))));
}

/// A pre-1.2 payload (thumbprint ‖ RSA-OAEP block ‖ splitter ‖ GCM ciphertext ‖ tag ‖ 16-byte
/// IV, standard base64), made here with our certificate's key, opens.
pub fn pre_1_2_layout_decrypts(ks: &dyn Keystore) {
    use aes_gcm::aead::Aead;
    use aes_gcm::aead::consts::U16;
    use aes_gcm::{AesGcm, KeyInit};
    let id = ks.current(Purpose::Datashare);
    let cert = ks.certificate(id).unwrap();
    let (_, parsed) = X509Certificate::from_der(&cert).unwrap();
    let oaep = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(parsed.public_key().raw).unwrap()).unwrap();
    let session_key = [0x42u8; 32];
    let mut wrapped = [0u8; 256];
    oaep.encrypt(&OAEP_SHA256_MGF1SHA256, &session_key, &mut wrapped, None).unwrap();
    let iv = [0x24u8; 16];
    let gcm = AesGcm::<aes_gcm::aes::Aes256, U16>::new_from_slice(&session_key).unwrap();
    let body = gcm.encrypt(&aes_gcm::Nonce::<U16>::from(iv), &b"a 1.1.5 datashare"[..]).unwrap();
    let payload = [&x509::thumbprint(&cert)[..], &wrapped, KEY_SPLITTER, &body, &iv].concat();
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(&payload);
    assert_eq!(hybrid::layout(text.as_bytes()).unwrap(), hybrid::Layout::Legacy);
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, text.as_bytes()).unwrap(), b"a 1.1.5 datashare");
    let mut tampered = payload.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &tampered).unwrap_err(), CryptoError::Decrypt);
}

/// Decryptions per second on one thread for a payload of `bytes`, measured for about `for_`.
pub fn decrypts_per_second(ks: &dyn Keystore, bytes: usize, for_: Duration) -> f64 {
    let cert = ks.certificate(ks.current(Purpose::Datashare)).unwrap();
    let payload = hybrid_encrypt(&cert, &vec![0x5a; bytes]).unwrap();
    ks.hybrid_decrypt(Purpose::Datashare, &payload).unwrap();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < for_ {
        std::hint::black_box(ks.hybrid_decrypt(Purpose::Datashare, &payload).unwrap());
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

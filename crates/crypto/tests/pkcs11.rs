//! The PKCS#11 keystore against a real module (SoftHSM2 under `cargo xtask ci`): each test
//! initialises its own token, so they run in parallel.
//!
//! The module comes from `TESSERA_TEST_PKCS11_MODULE` and SoftHSM2's configuration from
//! `SOFTHSM2_CONF`; `cargo xtask ci` installs SoftHSM2 and sets both. Without them these tests
//! fail, never skip: a keystore test that silently does nothing proves nothing.
#![allow(clippy::unwrap_used)]

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tessera_crypto::pkcs11::REFRESH_AFTER;
use tessera_crypto::{CryptoError, DataKey, KeyId, Keystore, Pkcs11Config, Pkcs11Keystore, Purpose, WrappedKey};
use zeroize::Zeroizing;

const MODULE_VAR: &str = "TESSERA_TEST_PKCS11_MODULE";
const CONF_VAR: &str = "SOFTHSM2_CONF";
const SO_PIN: &str = "so-pin-4321";
const USER_PIN: &str = "user-pin-1234";

fn module() -> PathBuf {
    let missing = |var: &str| -> ! {
        panic!(
            "{var} is not set. Run the tests with `cargo xtask ci` (it installs SoftHSM2 and sets {MODULE_VAR} and {CONF_VAR}), \
             or set {MODULE_VAR}=/usr/lib/softhsm/libsofthsm2.so and {CONF_VAR} to a softhsm2.conf whose tokendir you can write."
        )
    };
    let module = std::env::var_os(MODULE_VAR).filter(|m| !m.is_empty()).unwrap_or_else(|| missing(MODULE_VAR));
    if std::env::var_os(CONF_VAR).is_none_or(|c| c.is_empty()) {
        missing(CONF_VAR);
    }
    PathBuf::from(module)
}

/// The tests' own handle on the module, for setting tokens up and looking inside them. It lives
/// for the whole process, like the keystore's (the module is loaded and initialised once).
fn ctx() -> &'static Pkcs11 {
    static CTX: OnceLock<Pkcs11> = OnceLock::new();
    CTX.get_or_init(|| {
        let ctx = Pkcs11::new(module()).unwrap();
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("cannot initialise {}: {e}", module().display()),
        }
        ctx
    })
}

fn pin(p: &str) -> AuthPin {
    AuthPin::from(p)
}

/// Serialises everything in this process that enumerates slots: `C_GetSlotList` may add a slot,
/// and SoftHSM2 2.6 aborts (an assertion in `SlotManager::insertToken`) when two threads do that
/// at once. The keystore serialises its own enumerations; this lock keeps the tests' ones (and
/// the keystores they open, while tokens are being initialised) apart from each other.
static SLOTS: Mutex<()> = Mutex::new(());

fn slots_lock() -> std::sync::MutexGuard<'static, ()> {
    SLOTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open(cfg: Pkcs11Config) -> Result<Pkcs11Keystore, CryptoError> {
    let _one_at_a_time = slots_lock();
    Pkcs11Keystore::open(cfg)
}

fn create(cfg: Pkcs11Config, now_ms: i64) -> Result<Pkcs11Keystore, CryptoError> {
    let _one_at_a_time = slots_lock();
    Pkcs11Keystore::create(cfg, now_ms)
}

/// Initialises a new token with a unique label on SoftHSM2's free slot and sets its user PIN.
fn fresh_token(name: &str) -> Pkcs11Config {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    // Token labels are at most 32 bytes; unique across test runs sharing a token directory.
    let label = format!("{name:.8}-{:05x}-{nanos:08x}-{}", std::process::id() & 0xf_ffff, COUNTER.fetch_add(1, Ordering::Relaxed));
    let ctx = ctx();
    {
        let _one_at_a_time = slots_lock();
        let slot = ctx
            .get_all_slots()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|t| !t.token_initialized()))
            .expect("SoftHSM2 always offers a slot with an uninitialised token");
        ctx.init_token(slot, &pin(SO_PIN), &label).unwrap();
        let s = ctx.open_rw_session(slot).unwrap();
        s.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
        s.init_pin(&pin(USER_PIN)).unwrap();
        s.logout().unwrap();
    }
    config(&label, USER_PIN)
}

fn config(label: &str, user_pin: &str) -> Pkcs11Config {
    Pkcs11Config { module: module(), token_label: label.to_owned(), pin: Zeroizing::new(user_pin.to_owned()) }
}

fn fresh_keystore(name: &str) -> (Pkcs11Config, Pkcs11Keystore) {
    let cfg = fresh_token(name);
    let again = config(&cfg.token_label, USER_PIN);
    (cfg, create(again, 1).unwrap())
}

/// A logged-in session of the tests' own on a token, for looking at its objects directly.
fn inspect(label: &str) -> Session {
    let ctx = ctx();
    let _one_at_a_time = slots_lock();
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    match s.login(UserType::User, Some(&pin(USER_PIN))) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    s
}

fn find(s: &Session, label: &str, class: ObjectClass) -> ObjectHandle {
    let found = s.find_objects(&[Attribute::Label(label.as_bytes().to_vec()), Attribute::Class(class)]).unwrap();
    assert_eq!(found.len(), 1, "{label}");
    found[0]
}

#[test]
fn create_makes_version_1_of_every_purpose_and_is_idempotent() {
    let (cfg, ks) = fresh_keystore("create");
    let listed = ks.list();
    assert_eq!(listed.len(), Purpose::ALL.len());
    for (k, p) in listed.iter().zip(Purpose::ALL) {
        assert_eq!((k.id, k.created_at_ms, k.current), (KeyId { purpose: p, version: 1 }, 1, true));
    }
    // Creating again adds nothing; opening finds the same keys.
    let again = create(config(&cfg.token_label, USER_PIN), 99).unwrap();
    assert_eq!(again.list(), listed);
    assert_eq!(open(config(&cfg.token_label, USER_PIN)).unwrap().list(), listed);
    let shown = format!("{ks:?} {cfg:?}");
    assert!(!shown.contains(USER_PIN), "{shown}");
}

#[test]
fn wrapped_keys_round_trip_and_are_bound_to_their_context() {
    let (_cfg, ks) = fresh_keystore("wrap");
    let dek = DataKey::generate().unwrap();
    let sealed = dek.seal(b"rec-1/name", b"Amina").unwrap();
    let w = ks.wrap(&dek, b"person-1").unwrap();
    assert_eq!(w.kek, KeyId { purpose: Purpose::Identity, version: 1 });
    assert_eq!(w.bytes.len(), 12 + 32 + 16, "nonce ‖ ciphertext ‖ tag, as aead.rs");
    let back = ks.unwrap(&w, b"person-1").unwrap();
    assert_eq!(back.open(b"rec-1/name", &sealed).unwrap(), b"Amina");
    assert_ne!(ks.wrap(&dek, b"person-1").unwrap().bytes, w.bytes, "random nonces");

    assert_eq!(ks.unwrap(&w, b"person-2").unwrap_err(), CryptoError::Decrypt, "context is bound");
    for i in 0..w.bytes.len() {
        let mut t = w.clone();
        t.bytes[i] ^= 1;
        assert_eq!(ks.unwrap(&t, b"person-1").unwrap_err(), CryptoError::Decrypt, "byte {i}");
    }
    let short = WrappedKey { kek: w.kek, bytes: w.bytes[..20].to_vec() };
    assert_eq!(ks.unwrap(&short, b"person-1").unwrap_err(), CryptoError::Decrypt);
    let unknown = KeyId { purpose: Purpose::Identity, version: 9 };
    assert_eq!(ks.unwrap(&WrappedKey { kek: unknown, ..w.clone() }, b"person-1").unwrap_err(), CryptoError::UnknownKey(unknown));
    let lookup = KeyId { purpose: Purpose::Lookup, version: 1 };
    assert_eq!(ks.unwrap(&WrappedKey { kek: lookup, ..w }, b"person-1").unwrap_err(), CryptoError::UnknownKey(lookup));
}

#[test]
fn hmacs_are_standard_deterministic_and_differ_between_keys() {
    let (cfg, ks) = fresh_keystore("hmac");
    let lookup1 = ks.current(Purpose::Lookup);
    let h = ks.hmac(lookup1, b"4729381650").unwrap();
    assert_eq!(ks.hmac(lookup1, b"4729381650").unwrap(), h, "same key, same data: same digest");
    assert_ne!(ks.hmac(lookup1, b"4729381651").unwrap(), h);
    assert_ne!(ks.hmac(ks.current(Purpose::PartnerToken), b"4729381650").unwrap(), h, "purposes have their own keys");
    let lookup2 = ks.rotate(Purpose::Lookup, 2).unwrap();
    assert_eq!(lookup2, KeyId { purpose: Purpose::Lookup, version: 2 });
    assert_ne!(ks.hmac(lookup2, b"4729381650").unwrap(), h, "versions differ");
    assert_eq!(ks.hmac(lookup1, b"4729381650").unwrap(), h, "old digests still computable");
    assert!(matches!(ks.hmac(ks.current(Purpose::Identity), b"x"), Err(CryptoError::UnknownKey(_))));
    assert!(matches!(ks.hmac(KeyId { purpose: Purpose::Lookup, version: 9 }, b"x"), Err(CryptoError::UnknownKey(_))));

    // A key put into the token by someone else under the label scheme (a key ceremony, say) is
    // picked up, and CKM_SHA256_HMAC is plain HMAC-SHA-256: RFC 4231 test case 6 (SoftHSM2
    // refuses HMAC keys shorter than 32 bytes, hence not the shorter cases).
    let s = inspect(&cfg.token_label);
    s.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Value(vec![0xaa; 131]),
        Attribute::Label(b"tessera/partner_token/v2".to_vec()),
        Attribute::Id(b"tessera/partner_token/v2/5/0123456789abcdef".to_vec()),
    ])
    .unwrap();
    let imported = KeyId { purpose: Purpose::PartnerToken, version: 2 };
    let mac = ks.hmac(imported, b"Test Using Larger Than Block-Size Key - Hash Key First").unwrap();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    let info = open(config(&cfg.token_label, USER_PIN)).unwrap().list();
    assert!(info.iter().any(|k| k.id == imported && k.created_at_ms == 5 && k.current), "{info:?}");
}

#[test]
fn signatures_are_ed25519_and_verify() {
    let (cfg, ks) = fresh_keystore("sign");
    let (id, sig) = ks.sign(Purpose::Signing, b"credential").unwrap();
    assert_eq!(id, KeyId { purpose: Purpose::Signing, version: 1 });
    assert_eq!(sig.len(), 64, "an Ed25519 signature");
    ks.verify(id, b"credential", &sig).unwrap();
    assert_eq!(ks.sign(Purpose::Signing, b"credential").unwrap().1, sig, "Ed25519 is deterministic");
    assert_eq!(ks.verify(id, b"credentiaL", &sig).unwrap_err(), CryptoError::BadSignature);
    let (audit, audit_sig) = ks.sign(Purpose::Audit, b"checkpoint").unwrap();
    ks.verify(audit, b"checkpoint", &audit_sig).unwrap();
    assert_eq!(ks.verify(audit, b"credential", &sig).unwrap_err(), CryptoError::BadSignature, "keys are per purpose");
    assert!(matches!(ks.sign(Purpose::Lookup, b"x"), Err(CryptoError::UnknownKey(_))));
    assert!(matches!(ks.verify(KeyId { purpose: Purpose::Signing, version: 7 }, b"x", &sig), Err(CryptoError::UnknownKey(_))));

    // Anyone holding the public key from the token verifies with aws-lc-rs alone.
    let s = inspect(&cfg.token_label);
    let public = find(&s, "tessera/signing/v1", ObjectClass::PUBLIC_KEY);
    let point = match &s.get_attributes(public, &[AttributeType::EcPoint]).unwrap()[..] {
        [Attribute::EcPoint(p)] => p.clone(),
        other => panic!("{other:?}"),
    };
    let raw = if point.len() == 34 { &point[2..] } else { &point[..] };
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, raw).verify(b"credential", &sig).unwrap();
    // `public_key` is that same key (what the credential issuer's JWKS publishes).
    assert_eq!(ks.public_key(id).unwrap(), raw);
    tessera_crypto::verify_ed25519(&ks.public_key(id).unwrap(), b"credential", &sig).unwrap();
    assert!(matches!(ks.public_key(KeyId { purpose: Purpose::Registration, version: 1 }), Err(CryptoError::UnknownKey(_))));
}

#[test]
fn rotation_keeps_old_versions_and_other_keystores_see_it() {
    let (cfg, ks) = fresh_keystore("rotate");
    let dek = DataKey::generate().unwrap();
    let before = ks.wrap(&dek, b"p").unwrap();
    let h1 = ks.hmac(ks.current(Purpose::Lookup), b"4729381650").unwrap();
    let (sid1, sig1) = ks.sign(Purpose::Audit, b"checkpoint").unwrap();
    for p in Purpose::ALL {
        assert_eq!(ks.rotate(p, 2).unwrap(), KeyId { purpose: p, version: 2 });
        assert_eq!(ks.current(p), KeyId { purpose: p, version: 2 });
    }
    let after = ks.wrap(&dek, b"p").unwrap();
    assert_eq!((before.kek.version, after.kek.version), (1, 2), "ciphertexts name their key version");

    let reopened = open(config(&cfg.token_label, USER_PIN)).unwrap();
    let sealed = dek.seal(b"a", b"b").unwrap();
    for w in [&before, &after] {
        assert_eq!(reopened.unwrap(w, b"p").unwrap().open(b"a", &sealed).unwrap(), b"b");
    }
    let lookup_v1 = KeyId { purpose: Purpose::Lookup, version: 1 };
    assert_eq!(reopened.hmac(lookup_v1, b"4729381650").unwrap(), h1, "old digests still computable");
    assert_ne!(reopened.hmac(reopened.current(Purpose::Lookup), b"4729381650").unwrap(), h1);
    reopened.verify(sid1, b"checkpoint", &sig1).unwrap();
    let (sid2, sig2) = reopened.sign(Purpose::Audit, b"checkpoint").unwrap();
    assert_eq!(sid2.version, 2);
    ks.verify(sid2, b"checkpoint", &sig2).unwrap();
    let listed = reopened.list();
    assert_eq!(listed.len(), 2 * Purpose::ALL.len());
    assert_eq!(listed.iter().filter(|k| k.current).count(), Purpose::ALL.len());
    assert!(listed.iter().all(|k| k.created_at_ms == i64::from(k.id.version)), "{listed:?}");
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "oldest first per purpose");

    // The reopened keystore rotates; the first sees the new version at once for data that names
    // it, and as current once its cache is older than REFRESH_AFTER.
    let v3 = reopened.rotate(Purpose::Identity, 3).unwrap();
    let newer = reopened.wrap(&dek, b"p").unwrap();
    assert_eq!(newer.kek, v3);
    assert_eq!(ks.unwrap(&newer, b"p").unwrap().open(b"a", &sealed).unwrap(), b"b");
    std::thread::sleep(REFRESH_AFTER + Duration::from_millis(50));
    assert_eq!(ks.current(Purpose::Identity), v3);
    assert_eq!(ks.wrap(&dek, b"p").unwrap().kek, v3);
}

/// Set for the child process of `another_process_rotates`: the token it rotates in.
const CHILD_TOKEN_VAR: &str = "TESSERA_TEST_PKCS11_CHILD_TOKEN";

/// One test, two roles: run normally, it makes a keystore and runs this same test binary again
/// as a child process (with `CHILD_TOKEN_VAR` set) that opens the token and rotates the identity
/// key; then it checks that it sees the child's rotation.
#[test]
fn another_process_rotates() {
    if let Ok(label) = std::env::var(CHILD_TOKEN_VAR) {
        let ks = open(config(&label, USER_PIN)).unwrap();
        let id = ks.rotate(Purpose::Identity, 7).unwrap();
        let dek = DataKey::generate().unwrap();
        let w = ks.wrap(&dek, b"from the child").unwrap();
        let hex: String = w.bytes.iter().map(|b| format!("{b:02x}")).collect();
        eprintln!("CHILD-RESULT {id} {hex}");
        return;
    }
    let (cfg, ks) = fresh_keystore("process");
    assert_eq!(ks.current(Purpose::Identity).version, 1);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "another_process_rotates", "--nocapture", "--test-threads", "1"])
        .env(CHILD_TOKEN_VAR, &cfg.token_label)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    let line = stderr.lines().find_map(|l| l.strip_prefix("CHILD-RESULT ")).unwrap_or_else(|| panic!("no result from the child: {stderr}"));
    let (id, hex) = line.split_once(' ').unwrap();
    let id = KeyId::parse(id).unwrap();
    assert_eq!(id, KeyId { purpose: Purpose::Identity, version: 2 });
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    // Data naming the new version opens at once; the version becomes current here within REFRESH_AFTER.
    ks.unwrap(&WrappedKey { kek: id, bytes }, b"from the child").unwrap();
    std::thread::sleep(REFRESH_AFTER + Duration::from_millis(50));
    assert_eq!(ks.current(Purpose::Identity), id);
    assert!(ks.list().iter().any(|k| k.id == id && k.created_at_ms == 7 && k.current));
}

#[test]
fn keys_never_leave_the_token() {
    let (cfg, ks) = fresh_keystore("extract");
    let s = inspect(&cfg.token_label);
    let keys = [
        ("tessera/identity/v1", ObjectClass::SECRET_KEY),
        ("tessera/lookup/v1", ObjectClass::SECRET_KEY),
        ("tessera/partner_token/v1", ObjectClass::SECRET_KEY),
        ("tessera/signing/v1", ObjectClass::PRIVATE_KEY),
        ("tessera/audit/v1", ObjectClass::PRIVATE_KEY),
    ];
    // (The datashare RSA key has no CKA_VALUE: it is checked component by component below.)
    // A key that may wrap others, to try C_WrapKey with.
    let wrapping = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::Token(false), Attribute::ValueLen(32.into()), Attribute::Wrap(true), Attribute::Encrypt(true)],
        )
        .unwrap();
    for (label, class) in keys {
        let h = find(&s, label, class);
        let info = s.get_attribute_info(h, &[AttributeType::Value]).unwrap();
        assert!(matches!(info[..], [AttributeInfo::Sensitive]), "{label}: CKA_VALUE must be refused, got {info:?}");
        assert!(s.get_attributes(h, &[AttributeType::Value]).unwrap().is_empty(), "{label}");
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Private,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Token(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
            Attribute::Private(true),
        ] {
            assert!(attrs.contains(&want), "{label}: {want:?} in {attrs:?}");
        }
        let err = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, h).unwrap_err();
        assert!(matches!(err, P11Error::Pkcs11(RvError::KeyUnextractable, _)), "{label}: {err}");
    }
    // Making a key extractable afterwards is refused too.
    let h = find(&s, "tessera/identity/v1", ObjectClass::SECRET_KEY);
    assert!(s.update_attributes(h, &[Attribute::Extractable(true)]).is_err());
    assert!(s.update_attributes(h, &[Attribute::Sensitive(false)]).is_err());
    // The RSA private key: no private component readable, not wrappable, not extractable later.
    let rsa = find(&s, "tessera/datashare/v1", ObjectClass::PRIVATE_KEY);
    for secret in [AttributeType::PrivateExponent, AttributeType::Prime1, AttributeType::Prime2] {
        let info = s.get_attribute_info(rsa, &[secret]).unwrap();
        assert!(matches!(info[..], [AttributeInfo::Sensitive]), "{secret:?} must be refused, got {info:?}");
    }
    let attrs = s.get_attributes(rsa, &[AttributeType::Extractable, AttributeType::NeverExtractable, AttributeType::Sensitive]).unwrap();
    for want in [Attribute::Extractable(false), Attribute::NeverExtractable(true), Attribute::Sensitive(true)] {
        assert!(attrs.contains(&want), "datashare: {want:?} in {attrs:?}");
    }
    let err = s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, rsa).unwrap_err();
    assert!(matches!(err, P11Error::Pkcs11(RvError::KeyUnextractable, _)), "datashare: {err}");
    assert!(s.update_attributes(rsa, &[Attribute::Extractable(true)]).is_err());
    drop(ks);
}

#[test]
fn hybrid_round_trip_rotation_and_rejections() {
    let (_cfg, ks) = fresh_keystore("hybrid");
    common::round_trip_rotation_and_rejections(&ks, 2);
}

#[test]
fn hybrid_pre_1_2_layout_decrypts() {
    let (_cfg, ks) = fresh_keystore("legacy");
    common::pre_1_2_layout_decrypts(&ks);
}

#[test]
fn the_rsa_key_allows_only_raw_decryption_and_certificate_signing() {
    let (cfg, ks) = fresh_keystore("mechs");
    let s = inspect(&cfg.token_label);
    let rsa = find(&s, "tessera/datashare/v1", ObjectClass::PRIVATE_KEY);
    let allowed = match &s.get_attributes(rsa, &[AttributeType::AllowedMechanisms]).unwrap()[..] {
        [Attribute::AllowedMechanisms(m)] => m.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(allowed, [MechanismType::RSA_X_509, MechanismType::SHA256_RSA_PKCS]);
    // PKCS#1 v1.5 decryption (Bleichenbacher's oracle) and OAEP-SHA-1 are refused by the token.
    let cert = ks.certificate(ks.current(Purpose::Datashare)).unwrap();
    let payload = tessera_crypto::hybrid_encrypt(&cert, b"x").unwrap();
    for mech in [
        Mechanism::RsaPkcs,
        Mechanism::RsaPkcsOaep(PkcsOaepParams::new(MechanismType::SHA1, PkcsMgfType::MGF1_SHA1, PkcsOaepSource::empty())),
    ] {
        let err = s.decrypt(&mech, rsa, &payload[38..294]).unwrap_err();
        assert!(matches!(err, P11Error::Pkcs11(RvError::MechanismInvalid, _)), "{mech:?}: {err}");
    }
    // The public half is a token object anyone logged in can read; it is the certificate's key.
    let public = find(&s, "tessera/datashare/v1", ObjectClass::PUBLIC_KEY);
    let modulus = match &s.get_attributes(public, &[AttributeType::Modulus]).unwrap()[..] {
        [Attribute::Modulus(n)] => n.clone(),
        other => panic!("{other:?}"),
    };
    let der = common::certificate_is_sound(&ks, ks.current(Purpose::Datashare));
    assert!(der.windows(modulus.len()).any(|w| w == modulus.as_slice()));
}

/// A key made elsewhere (here: by Java's keytool, the way MOSIP's mock ABIS holds its partner
/// key) put into the token under the label scheme decrypts what Java's JCE encrypted with the
/// calls MOSIP makes: raw RSA in SoftHSM2 and our OAEP decoding against Java's OAEP.
#[test]
fn java_encrypted_payloads_decrypt_with_an_imported_key() {
    let (cfg, ks) = fresh_keystore("java");
    let v = common::vectors();
    let rsa = &v["rsa"];
    let oid = b"tessera/datashare/v2/7/00000000000000aa".to_vec();
    let s = inspect(&cfg.token_label);
    s.create_object(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Decrypt(true),
        Attribute::Sign(true),
        Attribute::Modulus(common::hex(&rsa["n"])),
        Attribute::PublicExponent(common::hex(&rsa["e"])),
        Attribute::PrivateExponent(common::hex(&rsa["d"])),
        Attribute::Prime1(common::hex(&rsa["p"])),
        Attribute::Prime2(common::hex(&rsa["q"])),
        Attribute::Exponent1(common::hex(&rsa["dp"])),
        Attribute::Exponent2(common::hex(&rsa["dq"])),
        Attribute::Coefficient(common::hex(&rsa["qinv"])),
        Attribute::Label(b"tessera/datashare/v2".to_vec()),
        Attribute::Id(oid.clone()),
    ])
    .unwrap();
    s.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Encrypt(true),
        Attribute::Modulus(common::hex(&rsa["n"])),
        Attribute::PublicExponent(common::hex(&rsa["e"])),
        Attribute::Label(b"tessera/datashare/v2".to_vec()),
        Attribute::Id(oid),
    ])
    .unwrap();
    let imported = KeyId { purpose: Purpose::Datashare, version: 2 };
    // A version added behind the keystore's back is seen at the next periodic look; now, here.
    ks.refresh();
    let ver_r2 = v["ver_r2"]["payload_b64url"].as_str().unwrap();
    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, ver_r2.as_bytes()).unwrap(), v["ver_r2"]["plaintext"].as_str().unwrap().as_bytes());
    for field in ["payload_b64", "payload_without_thumbprint_b64"] {
        let old = v["pre_1_2"][field].as_str().unwrap();
        assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, old.as_bytes()).unwrap(), v["pre_1_2"]["plaintext"].as_str().unwrap().as_bytes());
    }
    // The imported version is listed and current, and gets a certificate of our own.
    assert_eq!(ks.current(Purpose::Datashare), imported);
    let ours = common::certificate_is_sound(&ks, imported);
    assert_ne!(tessera_crypto::x509::thumbprint(&ours).as_slice(), common::hex(&v["thumbprint_hex"]), "Java's certificate is not ours");
}

#[test]
fn tokens_from_before_the_datashare_key_gain_it_on_open() {
    let (cfg, ks) = fresh_keystore("upgrade");
    drop(ks);
    let s = inspect(&cfg.token_label);
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        s.destroy_object(find(&s, "tessera/datashare/v1", class)).unwrap();
    }
    let opened = open(config(&cfg.token_label, USER_PIN)).unwrap();
    let id = opened.current(Purpose::Datashare);
    assert_eq!(id, KeyId { purpose: Purpose::Datashare, version: 1 });
    assert!(opened.list().iter().find(|k| k.id == id).unwrap().created_at_ms > 1_700_000_000_000, "created now");
    let cert = common::certificate_is_sound(&opened, id);
    let payload = tessera_crypto::hybrid_encrypt(&cert, b"after upgrade").unwrap();
    assert_eq!(open(config(&cfg.token_label, USER_PIN)).unwrap().hybrid_decrypt(Purpose::Datashare, &payload).unwrap(), b"after upgrade");
    // A token missing a key of the first release is not refilled: that is damage.
    s.destroy_object(find(&s, "tessera/identity/v1", ObjectClass::SECRET_KEY)).unwrap();
    let err = open(config(&cfg.token_label, USER_PIN)).unwrap_err();
    assert!(err.to_string().contains("has no identity key"), "{err}");
}

#[test]
fn hybrid_decryption_from_many_threads() {
    let (_cfg, ks) = fresh_keystore("hthreads");
    let cert = ks.certificate(ks.current(Purpose::Datashare)).unwrap();
    let ks = &ks;
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            let cert = &cert;
            scope.spawn(move || {
                for i in 0..10u8 {
                    let msg = [t, i];
                    let payload = tessera_crypto::hybrid_encrypt(cert, &msg).unwrap();
                    assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &payload).unwrap(), msg);
                }
            });
        }
    });
}

#[test]
fn a_wrong_pin_or_token_is_a_clear_error() {
    let cfg = fresh_token("pin");
    let err = create(config(&cfg.token_label, "not-the-pin-8642"), 1).unwrap_err();
    assert_eq!(err.code(), "keystore_pkcs11");
    let msg = err.to_string();
    assert!(msg.contains("incorrect PIN") && msg.contains(&cfg.token_label), "{msg}");
    assert!(!msg.contains("not-the-pin-8642") && !msg.contains(USER_PIN), "{msg}");

    let err = open(config("no-such-token", USER_PIN)).unwrap_err();
    assert!(err.to_string().contains("no initialised PKCS#11 token is labelled 'no-such-token'"), "{err}");
    // An empty token is not a keystore until `create` has made its keys.
    let err = open(config(&cfg.token_label, USER_PIN)).unwrap_err();
    assert!(err.to_string().contains("create the keystore first"), "{err}");
    let missing = Pkcs11Config { module: "/nonexistent/libpkcs11.so".into(), ..config(&cfg.token_label, USER_PIN) };
    let err = open(missing).unwrap_err();
    assert!(err.to_string().contains("cannot load PKCS#11 module /nonexistent/libpkcs11.so"), "{err}");
}

#[test]
fn concurrent_use_from_many_threads() {
    let (_cfg, ks) = fresh_keystore("threads");
    let ks = &ks;
    std::thread::scope(|scope| {
        for t in 0..8u8 {
            scope.spawn(move || {
                for i in 0..40u8 {
                    let dek = DataKey::generate().unwrap();
                    let ctx = [t, i];
                    let w = ks.wrap(&dek, &ctx).unwrap();
                    let sealed = dek.seal(b"", &ctx).unwrap();
                    assert_eq!(ks.unwrap(&w, &ctx).unwrap().open(b"", &sealed).unwrap(), ctx);
                    let id = ks.current(Purpose::Lookup);
                    assert_eq!(ks.hmac(id, &ctx).unwrap(), ks.hmac(id, &ctx).unwrap());
                    let (sid, sig) = ks.sign(Purpose::Signing, &ctx).unwrap();
                    ks.verify(sid, &ctx, &sig).unwrap();
                    if t == 0 && i % 10 == 0 {
                        ks.rotate(Purpose::ALL[usize::from(i / 10) % 5], i64::from(i)).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(ks.list().len(), Purpose::ALL.len() + 4);
}

/// Not an assertion: prints rough throughput through the module (`cargo test -- --nocapture`).
#[test]
fn throughput_report() {
    let (_cfg, ks) = fresh_keystore("speed");
    let dek = DataKey::generate().unwrap();
    let n = 2000u32;
    let rate = |f: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        f64::from(n) / t.elapsed().as_secs_f64()
    };
    let wrap = rate(&|| {
        std::hint::black_box(ks.wrap(&dek, b"person").unwrap());
    });
    let w = ks.wrap(&dek, b"person").unwrap();
    let unwrap = rate(&|| {
        std::hint::black_box(ks.unwrap(&w, b"person").unwrap());
    });
    let id = ks.current(Purpose::Lookup);
    let hmac = rate(&|| {
        std::hint::black_box(ks.hmac(id, b"4729381650").unwrap());
    });
    let sign = rate(&|| {
        std::hint::black_box(ks.sign(Purpose::Signing, b"checkpoint").unwrap());
    });
    let threads = 8u32;
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..n {
                    ks.hmac(id, b"4729381650").unwrap();
                }
            });
        }
    });
    let hmac_mt = f64::from(n * threads) / t.elapsed().as_secs_f64();
    eprintln!(
        "pkcs11 throughput (1 thread, ops/s): wrap {wrap:.0}, unwrap {unwrap:.0}, hmac {hmac:.0}, sign {sign:.0}; hmac on {threads} threads: {hmac_mt:.0}"
    );
    let small = common::decrypts_per_second(&ks, 1024, Duration::from_secs(2));
    let large = common::decrypts_per_second(&ks, 1024 * 1024, Duration::from_secs(2));
    eprintln!("pkcs11 hybrid_decrypt, 1 thread: {small:.0}/s (1 KiB payload), {large:.0}/s (1 MiB payload)");
}

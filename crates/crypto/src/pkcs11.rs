//! The PKCS#11 keystore: every key version lives inside a token (an HSM, or SoftHSM2 in tests) as
//! a persistent, sensitive, non-extractable object, and every operation runs inside the token.
//!
//! Objects (hard to change: tokens already in use are read this way):
//! - `CKA_LABEL` = `tessera/<purpose>/v<N>`, e.g. `tessera/partner_token/v3`. The label names the
//!   key version; both halves of a key pair carry it.
//! - `CKA_ID` = ASCII `tessera/<purpose>/v<N>/<created_at_ms>/<16 hex random>`: the label again,
//!   the creation time (`KeyInfo::created_at_ms`), and a random suffix that makes every object's
//!   id unique (it links a key pair's halves, and breaks ties between two processes that rotated
//!   the same purpose at the same moment: the lowest `CKA_ID` wins).
//! - identity: `CKK_AES`, 256 bits, used with `CKM_AES_GCM`. A wrapped data key is
//!   `nonce (12, random) ‖ ciphertext ‖ tag (16)`, the layout of `aead.rs`, with the caller's
//!   context as associated data.
//! - lookup, partner token: `CKK_GENERIC_SECRET`, 32 bytes, used with `CKM_SHA256_HMAC`.
//! - signing, audit: `CKK_EC_EDWARDS` on edwards25519 (`CKM_EC_EDWARDS_KEY_PAIR_GEN`), signing
//!   with `CKM_EDDSA` (pure Ed25519, RFC 8032). Verification uses the public key read from the
//!   token (`CKA_EC_POINT`) with aws-lc-rs, so signatures are those of the software keystore.
//! - datashare: `CKK_RSA`, 2048 bits, public exponent 65537 (`CKM_RSA_PKCS_KEY_PAIR_GEN`); the
//!   private key allows exactly `CKM_RSA_X_509` (decryption) and `CKM_SHA256_RSA_PKCS` (signing
//!   its own certificate) through `CKA_ALLOWED_MECHANISMS`. MOSIP wraps keys with RSA-OAEP
//!   SHA-256/MGF1-SHA-256, which SoftHSM2 refuses (it takes OAEP with SHA-1 only), so the token
//!   does the raw RSA operation and this module removes the OAEP encoding
//!   (`hybrid::oaep_sha256_decode`, constant-time, one error for every failure). What leaves the
//!   token is the OAEP-encoded AES key, which the hybrid scheme hands to the host anyway; MOSIP's
//!   own key manager does the same on PKCS#11 (`RSA/ECB/NoPadding` then unpadding). The public
//!   half (`CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`) is read to build the certificate.
//!
//! `create` makes version 1 of every purpose that has none (it is idempotent); `open` requires a
//! version of every purpose that existed in the first release and adds the purposes that came
//! later (datashare) to tokens that lack them. The version list is cached: `rotate` re-reads
//! the token first (like the software keystore re-reads its file), `list` and `current` re-read
//! it when the cache is older than [`REFRESH_AFTER`], and a key id that is not in the cache is
//! looked for in the token before it is reported unknown. So a rotation made by another process
//! is seen within `REFRESH_AFTER` for new data, and at once for data that names the new version
//! (hybrid payloads name no key id: a new version decrypts once it is seen, within
//! `REFRESH_AFTER`, long before its certificate can have reached MOSIP).
//!
//! Sessions come from a small pool (PKCS#11 sessions are not meant to be shared between threads);
//! the PIN logs the first one in, and PKCS#11 login state is shared by all of a process's sessions
//! on a token. Caveat of PKCS#11 itself: once a process is logged in to a token, a second
//! keystore opened on the same token in the same process is not asked for the PIN again.

use crate::aead::{self, KEY_LEN, OVERHEAD};
use crate::hybrid::{self, RsaKeys};
use crate::x509::{self, RSA_BITS, RSA_BYTES};
use crate::{CryptoError, DataKey, KeyId, KeyInfo, KeyKind, Keystore, Purpose, WrappedKey};
use aws_lc_rs::aead::NONCE_LEN;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Prefix of every label this keystore reads or writes.
pub const LABEL_PREFIX: &str = "tessera/";
/// How old the cached version list may be before `list` and `current` re-read the token.
pub const REFRESH_AFTER: Duration = Duration::from_secs(2);
/// Idle sessions kept open for reuse; more are opened under load and closed afterwards.
const MAX_IDLE_SESSIONS: usize = 16;
/// DER of the edwards25519 curve's object identifier 1.3.101.112 (RFC 8410), for `CKA_EC_PARAMS`.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
const GCM_TAG_BITS: u64 = 128;
/// RSA public exponent 65537, big-endian.
const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// Where the token is and how to log in to it.
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds Tessera's keys.
    pub token_label: String,
    /// The token's user PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config").field("module", &self.module).field("token_label", &self.token_label).finish_non_exhaustive()
    }
}

/// One key version in the token.
#[derive(Clone)]
struct Entry {
    /// The secret key, or a key pair's private half.
    handle: ObjectHandle,
    /// `CKA_ID` of the object (ties between duplicates are broken on it).
    object_id: Vec<u8>,
    created_at_ms: i64,
    /// Ed25519: the 32-byte public key. RSA: PKCS#1 `RSAPublicKey` DER.
    public: Option<Vec<u8>>,
}

struct Cache {
    keys: BTreeMap<KeyId, Entry>,
    refreshed: Instant,
}

pub struct Pkcs11Keystore {
    ctx: Pkcs11,
    slot: Slot,
    token_label: String,
    pin: AuthPin,
    idle: Mutex<Vec<Session>>,
    cache: RwLock<Cache>,
    /// Serialises token scans, so concurrent cache misses cost one scan.
    refresh: Mutex<()>,
    /// Serialises rotations made by this process.
    rotating: Mutex<()>,
    /// RSA certificates already made, by `CKA_ID` (deterministic, but each costs a signature in
    /// the token).
    certificates: Mutex<HashMap<Vec<u8>, Arc<[u8]>>>,
}

impl std::fmt::Debug for Pkcs11Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Keystore").field("token_label", &self.token_label).field("slot", &self.slot).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A short description of a PKCS#11 failure: the function and the `CKR_` code, never data.
fn describe(e: &P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, func) => format!("{func} returned {rv:?}"),
        other => other.to_string(),
    }
}

fn p11(what: &str, e: &P11Error) -> CryptoError {
    CryptoError::Pkcs11(format!("{what}: {}", describe(e)))
}

fn rv(e: &P11Error) -> Option<RvError> {
    match e {
        P11Error::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// Errors after which a session is not worth keeping (and the operation worth one retry on a
/// fresh, freshly logged-in session).
fn session_lost(e: &P11Error) -> bool {
    matches!(
        rv(e),
        Some(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::DeviceError
        )
    )
}

/// The process-wide PKCS#11 context of each module. `C_Initialize` may be called once per process,
/// and finalising would pull the module from under every other user, so contexts live for the
/// whole process.
fn context(module: &Path) -> Result<Pkcs11, CryptoError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut all = lock(CONTEXTS.get_or_init(Mutex::default));
    if let Some(ctx) = all.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| CryptoError::Pkcs11(format!("cannot load PKCS#11 module {}: {e}", module.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Someone else in this process (another library, a test) initialised it: share it.
        Err(e) if rv(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(p11("cannot initialise the PKCS#11 module", &e)),
    }
    all.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Slots holding an initialised token labelled `label`. Slot enumeration is serialised across the
/// process: `C_GetSlotList` may add a slot (SoftHSM2 adds a fresh uninitialised one), and SoftHSM2
/// 2.6 aborts the process when two threads do that at once.
///
/// A slot whose token information cannot be read is skipped: with SoftHSM2 that is a token
/// another process is writing at that moment (`CKR_GENERAL_ERROR`), which is not a reason to fail
/// the search for ours. If ours was among the unreadable ones, the search is repeated a few times.
fn find_token(ctx: &Pkcs11, label: &str) -> Result<Vec<Slot>, CryptoError> {
    static SLOTS: Mutex<()> = Mutex::new(());
    const ATTEMPTS: u32 = 5;
    let _one_at_a_time = lock(&SLOTS);
    let mut attempt = 1;
    loop {
        let mut found = Vec::new();
        let mut unreadable = None;
        for slot in ctx.get_all_slots().map_err(|e| p11("cannot list PKCS#11 slots", &e))? {
            match ctx.get_token_info(slot) {
                Ok(info) if info.token_initialized() && info.label().trim_end() == label => found.push(slot),
                Ok(_) => {}
                // No token in the slot: nothing to look at.
                Err(e) if rv(&e) == Some(RvError::TokenNotPresent) => {}
                Err(e) => unreadable = Some(e),
            }
        }
        match unreadable {
            Some(e) if found.is_empty() && attempt >= ATTEMPTS => return Err(p11("cannot read token information", &e)),
            Some(_) if found.is_empty() => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
            }
            _ => return Ok(found),
        }
    }
}

fn label(id: KeyId) -> String {
    format!("{LABEL_PREFIX}{}/v{}", id.purpose.as_str(), id.version)
}

/// `tessera/<purpose>/v<N>` → the key id; anything else is not ours.
fn parse_label(label: &str) -> Option<KeyId> {
    let (purpose, version) = label.strip_prefix(LABEL_PREFIX)?.split_once("/v")?;
    if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(KeyId { purpose: Purpose::parse(purpose).ok()?, version: version.parse().ok().filter(|v| *v >= 1)? })
}

fn object_id(id: KeyId, created_at_ms: i64) -> Result<Vec<u8>, CryptoError> {
    let suffix: [u8; 8] = aead::random()?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}/{created_at_ms}/{hex}", label(id)).into_bytes())
}

/// The creation time in a `CKA_ID` written by `object_id` for `id`.
fn parse_object_id(id: KeyId, object_id: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(object_id).ok()?;
    let rest = s.strip_prefix(&label(id))?.strip_prefix('/')?;
    let (created, _random) = rest.split_once('/')?;
    created.parse().ok()
}

/// `CKA_EC_POINT` of an Ed25519 key: a DER OCTET STRING (PKCS#11 3.0), or the raw 32 bytes
/// (some older modules).
fn ed25519_public(point: &[u8]) -> Option<Vec<u8>> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => Some(rest.to_vec()),
        raw if raw.len() == 32 => Some(raw.to_vec()),
        _ => None,
    }
}

/// The class and key type a purpose's objects must have (a key pair's public half aside).
fn expected(kind: KeyKind) -> (ObjectClass, KeyType) {
    match kind {
        KeyKind::Aes256 => (ObjectClass::SECRET_KEY, KeyType::AES),
        KeyKind::Hmac => (ObjectClass::SECRET_KEY, KeyType::GENERIC_SECRET),
        KeyKind::Ed25519 => (ObjectClass::PRIVATE_KEY, KeyType::EC_EDWARDS),
        KeyKind::Rsa2048 => (ObjectClass::PRIVATE_KEY, KeyType::RSA),
    }
}

/// PKCS#1 DER of an RSA-2048 public key from the token's attributes; `None` for another size.
fn rsa_public(attrs: Vec<Attribute>) -> Option<Vec<u8>> {
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let (n, e) = (n?, e?);
    let significant = &n[n.iter().take_while(|b| **b == 0).count()..];
    (significant.len() == RSA_BYTES).then(|| x509::pkcs1_from_components(significant, &e))
}

/// Reads every key version in the token. Objects that are not ours, or do not have the class and
/// type their label implies, are ignored. `old` saves re-reading public keys already known.
fn scan(session: &Session, old: &BTreeMap<KeyId, Entry>) -> Result<BTreeMap<KeyId, Entry>, P11Error> {
    let mut keys: BTreeMap<KeyId, Entry> = BTreeMap::new();
    let mut publics: HashMap<Vec<u8>, ObjectHandle> = HashMap::new();
    for handle in session.find_objects(&[Attribute::Token(true)])? {
        let attrs =
            session.get_attributes(handle, &[AttributeType::Label, AttributeType::Id, AttributeType::Class, AttributeType::KeyType])?;
        let (mut lbl, mut oid, mut class, mut ktype) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::Label(v) => lbl = String::from_utf8(v).ok(),
                Attribute::Id(v) => oid = Some(v),
                Attribute::Class(c) => class = Some(c),
                Attribute::KeyType(t) => ktype = Some(t),
                _ => {}
            }
        }
        let (Some(id), Some(oid), Some(class), Some(ktype)) = (lbl.as_deref().and_then(parse_label), oid, class, ktype) else { continue };
        let Some(created_at_ms) = parse_object_id(id, &oid) else { continue };
        let (want_class, want_type) = expected(id.purpose.kind());
        if ktype != want_type {
            continue;
        }
        if class == ObjectClass::PUBLIC_KEY && want_class == ObjectClass::PRIVATE_KEY {
            publics.insert(oid, handle);
            continue;
        }
        if class != want_class {
            continue;
        }
        let candidate = Entry { handle, object_id: oid, created_at_ms, public: None };
        match keys.get(&id) {
            // Two objects claim one version (two processes rotated at once): the lowest id wins,
            // the same choice in every process.
            Some(e) if e.object_id <= candidate.object_id => {}
            _ => {
                keys.insert(id, candidate);
            }
        }
    }
    for (id, e) in &mut keys {
        let kind = id.purpose.kind();
        if !matches!(kind, KeyKind::Ed25519 | KeyKind::Rsa2048) {
            continue;
        }
        if let Some(o) = old.get(id).filter(|o| o.handle == e.handle && o.object_id == e.object_id) {
            e.public.clone_from(&o.public);
            continue;
        }
        let Some(&public) = publics.get(&e.object_id) else { continue };
        if kind == KeyKind::Rsa2048 {
            e.public = rsa_public(session.get_attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent])?);
            continue;
        }
        for a in session.get_attributes(public, &[AttributeType::EcPoint])? {
            if let Attribute::EcPoint(p) = a {
                e.public = ed25519_public(&p);
            }
        }
    }
    Ok(keys)
}

impl Pkcs11Keystore {
    /// Opens the keystore in the token labelled `config.token_label`.
    ///
    /// # Errors
    /// `Pkcs11` when the module cannot be loaded, no token has that label, the PIN is wrong, or
    /// a key purpose of the first release has no version in the token (see `create`).
    pub fn open(config: Pkcs11Config) -> Result<Self, CryptoError> {
        let ks = Self::connect(config)?;
        let missing: Vec<Purpose> = {
            let cache = ks.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            Purpose::ALL.into_iter().filter(|p| !cache.keys.keys().any(|id| id.purpose == *p)).collect()
        };
        if let Some(p) = missing.iter().find(|p| !p.added_later()) {
            return Err(CryptoError::Pkcs11(format!(
                "token '{}' has no {} key: create the keystore first (`tessera init`)",
                ks.token_label,
                p.as_str()
            )));
        }
        if !missing.is_empty() {
            let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let now_ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
            let _rotating = lock(&ks.rotating);
            let existing = ks.rescan()?;
            for p in missing {
                if !existing.keys().any(|id| id.purpose == p) {
                    ks.add_version(KeyId { purpose: p, version: 1 }, now_ms)?;
                }
            }
        }
        Ok(ks)
    }

    /// Opens the keystore in the token and generates, inside it, version 1 of every purpose that
    /// has no version yet. Idempotent: on a token that already has every purpose, it is `open`.
    ///
    /// # Errors
    /// As `open`, and key generation failures.
    pub fn create(config: Pkcs11Config, now_ms: i64) -> Result<Self, CryptoError> {
        let ks = Self::connect(config)?;
        {
            let _rotating = lock(&ks.rotating);
            let existing = ks.rescan()?;
            for p in Purpose::ALL {
                if !existing.keys().any(|id| id.purpose == p) {
                    ks.add_version(KeyId { purpose: p, version: 1 }, now_ms)?;
                }
            }
        }
        Ok(ks)
    }

    fn connect(config: Pkcs11Config) -> Result<Self, CryptoError> {
        let ctx = context(&config.module)?;
        let found = find_token(&ctx, &config.token_label)?;
        let slot = match found.as_slice() {
            [slot] => *slot,
            [] => return Err(CryptoError::Pkcs11(format!("no initialised PKCS#11 token is labelled '{}'", config.token_label))),
            _ => return Err(CryptoError::Pkcs11(format!("several PKCS#11 tokens are labelled '{}'", config.token_label))),
        };
        let ks = Pkcs11Keystore {
            ctx,
            slot,
            token_label: config.token_label,
            pin: AuthPin::from(config.pin.as_str()),
            idle: Mutex::new(Vec::new()),
            cache: RwLock::new(Cache { keys: BTreeMap::new(), refreshed: Instant::now() }),
            refresh: Mutex::new(()),
            rotating: Mutex::new(()),
            certificates: Mutex::new(HashMap::new()),
        };
        // Logs in (a wrong PIN fails here) and fills the cache.
        ks.rescan()?;
        Ok(ks)
    }

    /// A new read-write session, logged in.
    fn new_session(&self) -> Result<Session, CryptoError> {
        let s =
            self.ctx.open_rw_session(self.slot).map_err(|e| p11(&format!("cannot open a session on token '{}'", self.token_label), &e))?;
        match s.login(UserType::User, Some(&self.pin)) {
            Ok(()) => Ok(s),
            Err(e) if rv(&e) == Some(RvError::UserAlreadyLoggedIn) => Ok(s),
            Err(e) if rv(&e) == Some(RvError::PinIncorrect) => {
                Err(CryptoError::Pkcs11(format!("login to token '{}' failed: incorrect PIN", self.token_label)))
            }
            Err(e) if rv(&e) == Some(RvError::PinLocked) => {
                Err(CryptoError::Pkcs11(format!("login to token '{}' failed: the PIN is locked", self.token_label)))
            }
            Err(e) => Err(p11(&format!("login to token '{}' failed", self.token_label), &e)),
        }
    }

    /// Runs `f` on a pooled session. A session that fails in a way that may be the session's
    /// fault is closed, and `f` is tried once more on a new one.
    fn with_session<T>(&self, what: &str, f: impl Fn(&Session) -> Result<T, P11Error>) -> Result<T, CryptoError> {
        self.with_session_raw(f).map_err(|e| match e {
            Ok(e) => p11(what, &e),
            Err(e) => e,
        })
    }

    /// Like `with_session`, but hands PKCS#11 errors back as they are (`Ok`), for callers that
    /// map some of them to other `CryptoError`s; session errors come as `Err`.
    fn with_session_raw<T>(&self, f: impl Fn(&Session) -> Result<T, P11Error>) -> Result<T, Result<P11Error, CryptoError>> {
        let mut retried = false;
        loop {
            let pooled = lock(&self.idle).pop();
            let session = match pooled {
                Some(s) => s,
                None => self.new_session().map_err(Err)?,
            };
            match f(&session) {
                Ok(v) => {
                    self.give_back(session);
                    return Ok(v);
                }
                Err(e) if session_lost(&e) && !retried => {
                    retried = true;
                    drop(session);
                }
                Err(e) => {
                    if !session_lost(&e) {
                        self.give_back(session);
                    }
                    return Err(Ok(e));
                }
            }
        }
    }

    fn give_back(&self, session: Session) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
    }

    /// Re-reads the token's key versions into the cache, and returns them.
    fn rescan(&self) -> Result<BTreeMap<KeyId, Entry>, CryptoError> {
        let _one_at_a_time = lock(&self.refresh);
        self.rescan_locked()
    }

    fn rescan_locked(&self) -> Result<BTreeMap<KeyId, Entry>, CryptoError> {
        let old = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys.clone();
        let keys = self.with_session("cannot read the token's keys", |s| scan(s, &old))?;
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.keys.clone_from(&keys);
        cache.refreshed = Instant::now();
        Ok(keys)
    }

    /// Re-reads the token if the cache is older than `max_age`. When another thread is already
    /// re-reading, waits for it and uses its result. A failure keeps the old cache: `list` and
    /// `current` cannot report errors, and the next operation on the key will.
    fn refresh_if_older(&self, max_age: Duration) {
        let started = Instant::now();
        let stale = |ks: &Self| ks.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner).refreshed + max_age <= started;
        if !stale(self) {
            return;
        }
        let _one_at_a_time = lock(&self.refresh);
        if stale(self) {
            let _ = self.rescan_locked();
        }
    }

    /// The cached entry for `id`, looking in the token once if the cache does not have it (another
    /// process may have made it).
    fn entry(&self, id: KeyId, kind: KeyKind) -> Result<Entry, CryptoError> {
        if id.purpose.kind() != kind {
            return Err(CryptoError::UnknownKey(id));
        }
        let cached = |ks: &Self| ks.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys.get(&id).cloned();
        if let Some(e) = cached(self) {
            return Ok(e);
        }
        self.refresh_if_older(Duration::ZERO);
        cached(self).ok_or(CryptoError::UnknownKey(id))
    }

    /// Generates `id` in the token and re-reads the token into the cache. If another process made
    /// the same version at the same moment and its key won the tie (see the module doc), ours is
    /// removed: nobody can have used it, since every process prefers the winner. Either way `id`
    /// exists afterwards.
    fn add_version(&self, id: KeyId, now_ms: i64) -> Result<(), CryptoError> {
        let mine = self.with_session("cannot generate a key in the token", |s| self.generate(s, id, now_ms))?;
        let after = self.rescan()?;
        if after.get(&id).is_some_and(|e| !mine.contains(&e.handle)) {
            let _ = self.with_session("cannot remove a duplicate key", |s| mine.iter().try_for_each(|h| s.destroy_object(*h)));
            self.rescan()?;
        }
        Ok(())
    }

    /// Generates `id` inside the token: a persistent, private, sensitive, non-extractable key.
    /// Returns the objects made (a key pair's two halves).
    fn generate(&self, s: &Session, id: KeyId, now_ms: i64) -> Result<Vec<ObjectHandle>, P11Error> {
        let lbl = label(id).into_bytes();
        let oid =
            object_id(id, now_ms).map_err(|_| P11Error::Pkcs11(RvError::FunctionFailed, cryptoki::context::Function::GenerateRandom))?;
        let private = |usage: &[Attribute]| {
            let mut t = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Derive(false),
                Attribute::Label(lbl.clone()),
                Attribute::Id(oid.clone()),
            ];
            t.extend_from_slice(usage);
            t
        };
        match id.purpose.kind() {
            KeyKind::Aes256 => s
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &private(&[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(32.into()),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                    ]),
                )
                .map(|h| vec![h]),
            KeyKind::Hmac => s
                .generate_key(
                    &Mechanism::GenericSecretKeyGen,
                    &private(&[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::ValueLen(32.into()),
                        Attribute::Sign(true),
                        Attribute::Verify(true),
                    ]),
                )
                .map(|h| vec![h]),
            KeyKind::Ed25519 => {
                let public = [
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Verify(true),
                    Attribute::EcParams(ED25519_OID.to_vec()),
                    Attribute::Label(lbl.clone()),
                    Attribute::Id(oid.clone()),
                ];
                s.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private(&[Attribute::Sign(true)]))
                    .map(|(public, private)| vec![private, public])
            }
            KeyKind::Rsa2048 => {
                let public = [
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Encrypt(true),
                    Attribute::Verify(true),
                    Attribute::Wrap(false),
                    Attribute::ModulusBits(u64::try_from(RSA_BITS).unwrap_or(2048).into()),
                    Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
                    Attribute::Label(lbl.clone()),
                    Attribute::Id(oid.clone()),
                ];
                let usage = [
                    Attribute::Decrypt(true),
                    Attribute::Sign(true),
                    Attribute::Unwrap(false),
                    Attribute::AllowedMechanisms(vec![MechanismType::RSA_X_509, MechanismType::SHA256_RSA_PKCS]),
                ];
                s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private(&usage)).map(|(public, private)| vec![private, public])
            }
        }
    }

    /// The entry of an RSA version with its public key.
    fn rsa_entry(&self, id: KeyId) -> Result<(Entry, Vec<u8>), CryptoError> {
        let entry = self.entry(id, KeyKind::Rsa2048)?;
        let public =
            entry.public.clone().ok_or_else(|| CryptoError::Pkcs11(format!("the token has no readable RSA-2048 public key for {id}")))?;
        Ok((entry, public))
    }

    fn rsa_certificate(&self, id: KeyId) -> Result<Arc<[u8]>, CryptoError> {
        let (entry, public) = self.rsa_entry(id)?;
        if let Some(c) = lock(&self.certificates).get(&entry.object_id) {
            return Ok(c.clone());
        }
        let sign =
            |tbs: &[u8]| self.with_session("RSA signing in the token failed", |s| s.sign(&Mechanism::Sha256RsaPkcs, entry.handle, tbs));
        let der: Arc<[u8]> = x509::self_signed(id, entry.created_at_ms, &public, &sign)?.into();
        // Deterministic: whoever inserted first made the same bytes.
        Ok(lock(&self.certificates).entry(entry.object_id).or_insert(der).clone())
    }
}

impl Keystore for Pkcs11Keystore {
    fn list(&self) -> Vec<KeyInfo> {
        self.refresh_if_older(REFRESH_AFTER);
        let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .keys
            .iter()
            .map(|(id, e)| KeyInfo {
                id: *id,
                created_at_ms: e.created_at_ms,
                current: !cache.keys.keys().any(|o| o.purpose == id.purpose && o.version > id.version),
            })
            .collect()
    }

    fn refresh(&self) {
        self.refresh_if_older(Duration::ZERO);
    }

    fn current(&self, purpose: Purpose) -> KeyId {
        self.refresh_if_older(REFRESH_AFTER);
        let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        // `open` and `create` guarantee a version of every purpose.
        cache.keys.keys().filter(|id| id.purpose == purpose).max().copied().unwrap_or(KeyId { purpose, version: 1 })
    }

    fn rotate(&self, purpose: Purpose, now_ms: i64) -> Result<KeyId, CryptoError> {
        let _rotating = lock(&self.rotating);
        // Another process may have rotated since we last looked: start from the token.
        let before = self.rescan()?;
        let version = before.keys().filter(|id| id.purpose == purpose).map(|id| id.version).max().unwrap_or(0) + 1;
        let id = KeyId { purpose, version };
        self.add_version(id, now_ms)?;
        Ok(id)
    }

    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let kek = self.current(Purpose::Identity);
        let key = self.entry(kek, KeyKind::Aes256)?;
        let nonce: [u8; NONCE_LEN] = aead::random()?;
        let sealed = self.with_session("AES-GCM encryption in the token failed", |s| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, context, GCM_TAG_BITS.into())?;
            s.encrypt(&Mechanism::AesGcm(params), key.handle, dek.bytes())
        })?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Ok(WrappedKey { kek, bytes })
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        let key = self.entry(wrapped.kek, KeyKind::Aes256)?;
        if wrapped.bytes.len() != KEY_LEN + OVERHEAD {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, sealed) = wrapped.bytes.split_at(NONCE_LEN);
        let raw = self
            .with_session_raw(|s| {
                let mut iv = [0u8; NONCE_LEN];
                iv.copy_from_slice(nonce);
                let params = GcmParams::new(&mut iv, context, GCM_TAG_BITS.into())?;
                s.decrypt(&Mechanism::AesGcm(params), key.handle, sealed).map(Zeroizing::new)
            })
            .map_err(|e| match e {
                // An authentication failure: wrong key, wrong context, or altered bytes. PKCS#11
                // says CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 (2.6) says CKR_GENERAL_ERROR.
                Ok(e)
                    if matches!(
                        rv(&e),
                        Some(
                            RvError::EncryptedDataInvalid
                                | RvError::EncryptedDataLenRange
                                | RvError::DataInvalid
                                | RvError::DataLenRange
                                | RvError::GeneralError
                        )
                    ) =>
                {
                    CryptoError::Decrypt
                }
                Ok(e) => p11("AES-GCM decryption in the token failed", &e),
                Err(e) => e,
            })?;
        let b: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(DataKey::from_bytes(b))
    }

    fn hmac(&self, key: KeyId, data: &[u8]) -> Result<[u8; 32], CryptoError> {
        let entry = self.entry(key, KeyKind::Hmac)?;
        let mac = self.with_session("HMAC in the token failed", |s| s.sign(&Mechanism::Sha256Hmac, entry.handle, data))?;
        mac.as_slice().try_into().map_err(|_| CryptoError::Pkcs11("the token returned an HMAC of the wrong length".into()))
    }

    fn sign(&self, purpose: Purpose, data: &[u8]) -> Result<(KeyId, Vec<u8>), CryptoError> {
        let id = self.current(purpose);
        let entry = self.entry(id, KeyKind::Ed25519)?;
        let sig = self.with_session("EdDSA signing in the token failed", |s| {
            s.sign(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), entry.handle, data)
        })?;
        Ok((id, sig))
    }

    fn verify(&self, key: KeyId, data: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let public = self.public_key(key)?;
        UnparsedPublicKey::new(&ED25519, public).verify(data, signature).map_err(|_| CryptoError::BadSignature)
    }

    fn public_key(&self, key: KeyId) -> Result<Vec<u8>, CryptoError> {
        let entry = self.entry(key, KeyKind::Ed25519)?;
        entry.public.ok_or_else(|| CryptoError::Pkcs11(format!("the token has no readable public key for {key}")))
    }

    fn hybrid_decrypt(&self, purpose: Purpose, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if purpose.kind() != KeyKind::Rsa2048 {
            return Err(CryptoError::UnknownKey(self.current(purpose)));
        }
        hybrid::decrypt(self, purpose, payload)
    }

    fn certificate(&self, key: KeyId) -> Result<Vec<u8>, CryptoError> {
        Ok(self.rsa_certificate(key)?.to_vec())
    }
}

impl RsaKeys for Pkcs11Keystore {
    fn rsa_versions(&self, purpose: Purpose) -> Vec<KeyId> {
        self.refresh_if_older(REFRESH_AFTER);
        let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.keys.keys().rev().filter(|id| id.purpose == purpose).copied().collect()
    }

    fn rsa_thumbprint(&self, id: KeyId) -> Result<[u8; 32], CryptoError> {
        Ok(x509::thumbprint(&self.rsa_certificate(id)?))
    }

    /// Raw RSA in the token, OAEP decoding here (see the module documentation).
    fn rsa_oaep_decrypt(&self, id: KeyId, block: &[u8; RSA_BYTES]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.entry(id, KeyKind::Rsa2048)?;
        let raw =
            self.with_session_raw(|s| s.decrypt(&Mechanism::RsaX509, key.handle, block).map(Zeroizing::new)).map_err(|e| match e {
                // A block not below the modulus, and the like: bad input, the one error.
                Ok(e)
                    if matches!(
                        rv(&e),
                        Some(
                            RvError::EncryptedDataInvalid
                                | RvError::EncryptedDataLenRange
                                | RvError::DataInvalid
                                | RvError::DataLenRange
                                | RvError::GeneralError
                        )
                    ) =>
                {
                    CryptoError::Decrypt
                }
                Ok(e) => p11("RSA decryption in the token failed", &e),
                Err(e) => e,
            })?;
        // The integer, left-padded to the modulus length (a token may drop leading zeros).
        let len = raw.len();
        if len > RSA_BYTES {
            return Err(CryptoError::Decrypt);
        }
        let mut em = Zeroizing::new([0u8; RSA_BYTES]);
        em[RSA_BYTES - len..].copy_from_slice(&raw);
        hybrid::oaep_sha256_decode(&em)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_strangers_are_ignored() {
        for p in Purpose::ALL {
            let id = KeyId { purpose: p, version: 12 };
            assert_eq!(parse_label(&label(id)), Some(id));
            let oid = object_id(id, 1_700_000_000_123).unwrap();
            assert_eq!(parse_object_id(id, &oid), Some(1_700_000_000_123));
            assert_eq!(parse_object_id(KeyId { purpose: p, version: 1 }, &oid), None, "an id must match its label");
        }
        assert_eq!(label(KeyId { purpose: Purpose::PartnerToken, version: 3 }), "tessera/partner_token/v3");
        for bad in [
            "tessera/identity/v0",
            "tessera/identity/v01",
            "tessera/identity/v",
            "tessera/nope/v1",
            "other/identity/v1",
            "tessera/identity/v1x",
        ] {
            assert_eq!(parse_label(bad), None, "{bad}");
        }
    }

    #[test]
    fn ec_points_decode() {
        let raw = [7u8; 32];
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&raw);
        assert_eq!(ed25519_public(&der).unwrap(), raw);
        assert_eq!(ed25519_public(&raw).unwrap(), raw);
        assert_eq!(ed25519_public(&der[..20]), None);
    }

    #[test]
    fn config_debug_hides_the_pin() {
        let c = Pkcs11Config { module: "/x.so".into(), token_label: "t".into(), pin: Zeroizing::new("s3cret-pin".into()) };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-pin"), "{shown}");
        assert!(shown.contains("token_label"));
    }
}

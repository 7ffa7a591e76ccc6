//! The software keystore (the embedded default): every key version in one JSON file, each key's
//! material sealed with AES-256-GCM under the master key and bound to its key id. The file is
//! created 0600 in a 0700 directory and replaced atomically (write, fsync, rename).
//!
//! Stored format `tessera-keystore-1` (hard to change; see ARCHITECTURE.md):
//! `{"format", "kdf": {"salt", "params"} | null, "check", "keys": [{"id", "created_at_ms", "material"}]}`
//! where `check` and `material` are base64 of `nonce ‖ ciphertext ‖ tag`.

use crate::aead::{self, DataKey, KEY_LEN};
use crate::hybrid::{self, RsaKeys};
use crate::master::{KdfParams, MasterKey};
use crate::x509::{self, RSA_BYTES};
use crate::{CryptoError, KeyId, KeyInfo, KeyKind, Keystore, Purpose, WrappedKey};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;

pub const FILE_NAME: &str = "keys.json";
const FORMAT: &str = "tessera-keystore-1";
const CHECK_PLAINTEXT: &[u8] = b"tessera keystore";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfFile {
    salt: String,
    params: KdfParams,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: KeyId,
    created_at_ms: i64,
    material: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    kdf: Option<KdfFile>,
    check: String,
    keys: Vec<KeyEntry>,
}

struct Key {
    created_at_ms: i64,
    material: Zeroizing<Vec<u8>>,
    /// RSA keys only: the parsed key, made on first use (parsing checks the key, which costs
    /// about as much as a decryption) and shared, so RSA work runs outside the state lock.
    rsa: OnceLock<Arc<RsaKey>>,
}

impl Key {
    fn new(created_at_ms: i64, material: Zeroizing<Vec<u8>>) -> Self {
        Key { created_at_ms, material, rsa: OnceLock::new() }
    }
}

/// One RSA key version, parsed from its PKCS#8.
struct RsaKey {
    id: KeyId,
    created_at_ms: i64,
    decrypting: OaepPrivateDecryptingKey,
    /// The same key, to sign its own certificate.
    signing: aws_lc_rs::rsa::KeyPair,
    certificate: OnceLock<Arc<[u8]>>,
}

impl RsaKey {
    fn parse(id: KeyId, created_at_ms: i64, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let corrupt = |_| CryptoError::Corrupt("an RSA key does not parse");
        let decrypting = OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(corrupt)?)
            .map_err(|_| CryptoError::Corrupt("an RSA key does not parse"))?;
        let signing = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(corrupt)?;
        if signing.public_modulus_len() != RSA_BYTES {
            return Err(CryptoError::Corrupt("an RSA key is not RSA-2048"));
        }
        Ok(RsaKey { id, created_at_ms, decrypting, signing, certificate: OnceLock::new() })
    }

    fn certificate(&self) -> Result<Arc<[u8]>, CryptoError> {
        if let Some(c) = self.certificate.get() {
            return Ok(c.clone());
        }
        let sign = |tbs: &[u8]| {
            let mut sig = vec![0u8; self.signing.public_modulus_len()];
            self.signing.sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), tbs, &mut sig).map_err(|_| CryptoError::Rng)?;
            Ok(sig)
        };
        let der: Arc<[u8]> = x509::self_signed(self.id, self.created_at_ms, self.signing.public_key().as_ref(), &sign)?.into();
        // Deterministic: a concurrent caller that got there first made the same bytes.
        Ok(self.certificate.get_or_init(|| der).clone())
    }
}

/// Keys in memory, by id (sorted, so the last of a purpose is its current version).
struct State {
    keys: BTreeMap<KeyId, Key>,
    kdf: Option<(Vec<u8>, KdfParams)>,
    /// The file's stamp when loaded, and when it was last looked at: a rotation by another
    /// process (`tessera keys rotate` beside a running server) is picked up within
    /// `REFRESH_EVERY`, and at once when a key id is asked for that is not loaded yet.
    mtime: Option<FileStamp>,
    checked: std::time::Instant,
}

/// How often a running keystore looks for a rotation made by another process.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What tells one version of the file from the next. The modification time alone does not:
/// the kernel stamps files with a clock that ticks every few milliseconds, and two writes within
/// one tick look alike. Every write renames a new file into place, so on Unix the inode number
/// changes with each write (the new file exists while the old one still does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: std::time::SystemTime,
    inode: u64,
}

fn mtime_of(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let inode = m.len();
    Some(FileStamp { modified: m.modified().ok()?, inode })
}

pub struct SoftwareKeystore {
    path: PathBuf,
    master: MasterKey,
    state: Mutex<State>,
}

impl std::fmt::Debug for SoftwareKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeystore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn material_aad(id: KeyId) -> Vec<u8> {
    format!("{FORMAT}/{id}").into_bytes()
}

fn new_material(kind: KeyKind) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Ok(Zeroizing::new(match kind {
        KeyKind::Aes256 | KeyKind::Hmac => aead::random::<KEY_LEN>()?.to_vec(),
        KeyKind::Ed25519 => {
            let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).map_err(|_| CryptoError::Rng)?;
            doc.as_ref().to_vec()
        }
        KeyKind::Rsa2048 => {
            let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| CryptoError::Rng)?;
            let der: Pkcs8V1Der<'static> = key.as_der().map_err(|_| CryptoError::Rng)?;
            der.as_ref().to_vec()
        }
    }))
}

/// Adds version 1 of every purpose that has no version (a keystore made before the purpose
/// existed). Returns whether anything was added.
fn add_missing_purposes(st: &mut State, now_ms: i64) -> Result<bool, CryptoError> {
    let mut added = false;
    for p in Purpose::ALL {
        if !st.keys.keys().any(|id| id.purpose == p) {
            st.keys.insert(KeyId { purpose: p, version: 1 }, Key::new(now_ms, new_material(p.kind())?));
            added = true;
        }
    }
    Ok(added)
}

fn has_every_purpose(st: &State) -> bool {
    Purpose::ALL.into_iter().all(|p| st.keys.keys().any(|id| id.purpose == p))
}

fn system_now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn io(e: &std::io::Error) -> CryptoError {
    CryptoError::Io(e.kind().to_string())
}

impl SoftwareKeystore {
    /// Whether a keystore exists in `dir`.
    #[must_use]
    pub fn exists(dir: &Path) -> bool {
        dir.join(FILE_NAME).is_file()
    }

    /// The passphrase salt and cost stored in `dir`'s keystore, if it was made from a passphrase.
    ///
    /// # Errors
    /// Unreadable or corrupt file.
    pub fn kdf(dir: &Path) -> Result<Option<(Vec<u8>, KdfParams)>, CryptoError> {
        decode_kdf(read_file(&dir.join(FILE_NAME))?.kdf)
    }

    /// Creates a keystore in `dir` with version 1 of every purpose. `kdf` records how `master`
    /// was derived from a passphrase (None for a random master key).
    ///
    /// # Errors
    /// A keystore already there, or I/O errors.
    pub fn create(dir: &Path, master: MasterKey, kdf: Option<(Vec<u8>, KdfParams)>, now_ms: i64) -> Result<Self, CryptoError> {
        if Self::exists(dir) {
            return Err(CryptoError::Io("a keystore already exists there".into()));
        }
        create_private_dir(dir)?;
        let mut state = State { keys: BTreeMap::new(), kdf, mtime: None, checked: std::time::Instant::now() };
        add_missing_purposes(&mut state, now_ms)?;
        let ks = SoftwareKeystore { path: dir.join(FILE_NAME), master, state: Mutex::new(state) };
        let mut st = ks.lock();
        ks.persist(&st)?;
        st.mtime = mtime_of(&ks.path);
        drop(st);
        Ok(ks)
    }

    /// Opens the keystore in `dir` with `master`. A keystore made before a purpose existed gets
    /// version 1 of it now (created at the system clock's time), written back to the file: that
    /// is how data directories from earlier releases gain the datashare key.
    ///
    /// # Errors
    /// `WrongMasterKey`, a corrupt file, or I/O errors.
    pub fn open(dir: &Path, master: MasterKey) -> Result<Self, CryptoError> {
        let path = dir.join(FILE_NAME);
        let mut state = load(&path, &master)?;
        let ks = if has_every_purpose(&state) {
            SoftwareKeystore { path, master, state: Mutex::new(state) }
        } else {
            add_missing_purposes(&mut state, system_now_ms())?;
            let ks = SoftwareKeystore { path, master, state: Mutex::new(state) };
            let mut st = ks.lock();
            ks.persist(&st)?;
            st.mtime = mtime_of(&ks.path);
            drop(st);
            ks
        };
        Ok(ks)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state, reloaded first if the file changed on disk (checked at most every
    /// `REFRESH_EVERY`, or now when `force`). A file that fails to load keeps the old state: a
    /// half-written rotation cannot happen (writes are atomic), and a damaged file is reported
    /// by the next `open`.
    fn fresh(&self, force: bool) -> std::sync::MutexGuard<'_, State> {
        let mut st = self.lock();
        if force || st.checked.elapsed() >= REFRESH_EVERY {
            st.checked = std::time::Instant::now();
            let mtime = mtime_of(&self.path);
            if mtime != st.mtime
                && let Ok(new) = load(&self.path, &self.master)
                && has_every_purpose(&new)
            {
                *st = new;
            }
        }
        st
    }

    fn persist(&self, st: &State) -> Result<(), CryptoError> {
        let m = self.master.bytes();
        let mut keys = Vec::new();
        for (id, k) in &st.keys {
            let sealed = aead::seal(m, &material_aad(*id), &k.material)?;
            keys.push(KeyEntry { id: *id, created_at_ms: k.created_at_ms, material: STANDARD.encode(sealed) });
        }
        let file = KeyFile {
            format: FORMAT.into(),
            kdf: st.kdf.as_ref().map(|(salt, params)| KdfFile { salt: STANDARD.encode(salt), params: *params }),
            check: STANDARD.encode(aead::seal(m, format!("{FORMAT}/check").as_bytes(), CHECK_PLAINTEXT)?),
            keys,
        };
        let text = serde_json::to_vec_pretty(&file).map_err(|_| CryptoError::Corrupt("serialise"))?;
        write_private_atomic(&self.path, &text)
    }

    fn with_key<T>(&self, id: KeyId, kind: KeyKind, f: impl FnOnce(&[u8]) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        if id.purpose.kind() != kind {
            return Err(CryptoError::UnknownKey(id));
        }
        let mut st = self.fresh(false);
        if !st.keys.contains_key(&id) {
            drop(st);
            st = self.fresh(true);
        }
        let key = st.keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        f(&key.material)
    }

    /// The parsed RSA key of `id`, parsed under the lock once and then shared.
    fn rsa_key(&self, id: KeyId) -> Result<Arc<RsaKey>, CryptoError> {
        if id.purpose.kind() != KeyKind::Rsa2048 {
            return Err(CryptoError::UnknownKey(id));
        }
        let mut st = self.fresh(false);
        if !st.keys.contains_key(&id) {
            drop(st);
            st = self.fresh(true);
        }
        let key = st.keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        if let Some(k) = key.rsa.get() {
            return Ok(k.clone());
        }
        let parsed = Arc::new(RsaKey::parse(id, key.created_at_ms, &key.material)?);
        Ok(key.rsa.get_or_init(|| parsed).clone())
    }
}

fn read_file(path: &Path) -> Result<KeyFile, CryptoError> {
    let text = std::fs::read(path).map_err(|e| io(&e))?;
    let file: KeyFile = serde_json::from_slice(&text).map_err(|_| CryptoError::Corrupt("not a keystore file"))?;
    if file.format != FORMAT {
        return Err(CryptoError::Corrupt("unknown format version"));
    }
    Ok(file)
}

fn decode_kdf(kdf: Option<KdfFile>) -> Result<Option<(Vec<u8>, KdfParams)>, CryptoError> {
    kdf.map(|k| Ok((STANDARD.decode(k.salt).map_err(|_| CryptoError::Corrupt("salt"))?, k.params))).transpose()
}

fn load(path: &Path, master: &MasterKey) -> Result<State, CryptoError> {
    let file = read_file(path)?;
    let m = master.bytes();
    let check = STANDARD.decode(&file.check).map_err(|_| CryptoError::Corrupt("check"))?;
    if aead::open(m, format!("{FORMAT}/check").as_bytes(), &check).map_err(|_| CryptoError::WrongMasterKey)? != CHECK_PLAINTEXT {
        return Err(CryptoError::WrongMasterKey);
    }
    let mut keys = BTreeMap::new();
    for e in file.keys {
        let sealed = STANDARD.decode(&e.material).map_err(|_| CryptoError::Corrupt("material"))?;
        let material =
            Zeroizing::new(aead::open(m, &material_aad(e.id), &sealed).map_err(|_| CryptoError::Corrupt("a key fails to open"))?);
        keys.insert(e.id, Key::new(e.created_at_ms, material));
    }
    // `open` adds the purposes that came after the file was made; any other gap is damage.
    for p in Purpose::ALL {
        if !p.added_later() && !keys.keys().any(|id| id.purpose == p) {
            return Err(CryptoError::Corrupt("a key purpose has no version"));
        }
    }
    let kdf = file
        .kdf
        .map(|k| Ok::<_, CryptoError>((STANDARD.decode(k.salt).map_err(|_| CryptoError::Corrupt("salt"))?, k.params)))
        .transpose()?;
    Ok(State { keys, kdf, mtime: mtime_of(path), checked: std::time::Instant::now() })
}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CryptoError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io(&e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(&e))
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), CryptoError> {
    std::fs::create_dir_all(dir).map_err(|e| io(&e))
}

/// Writes `bytes` to a 0600 temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the directory: a crash leaves the old file or the new one, never a torn one.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(|e| io(&e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(&e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(&e))?;
    }
    Ok(())
}

impl Keystore for SoftwareKeystore {
    fn list(&self) -> Vec<KeyInfo> {
        let st = self.fresh(false);
        st.keys
            .iter()
            .map(|(id, k)| KeyInfo {
                id: *id,
                created_at_ms: k.created_at_ms,
                current: !st.keys.keys().any(|o| o.purpose == id.purpose && o.version > id.version),
            })
            .collect()
    }

    fn current(&self, purpose: Purpose) -> KeyId {
        let st = self.fresh(false);
        // `load` and `create` guarantee a version of every purpose.
        st.keys.keys().filter(|id| id.purpose == purpose).max().copied().unwrap_or(KeyId { purpose, version: 1 })
    }

    fn refresh(&self) {
        drop(self.fresh(true));
    }

    fn rotate(&self, purpose: Purpose, now_ms: i64) -> Result<KeyId, CryptoError> {
        let mut st = self.lock();
        // Another process may have rotated since we loaded: start from the file on disk.
        *st = load(&self.path, &self.master)?;
        let version = st.keys.keys().filter(|id| id.purpose == purpose).map(|id| id.version).max().unwrap_or(0) + 1;
        let id = KeyId { purpose, version };
        st.keys.insert(id, Key::new(now_ms, new_material(purpose.kind())?));
        add_missing_purposes(&mut st, now_ms)?;
        if let Err(e) = self.persist(&st) {
            st.keys.remove(&id);
            return Err(e);
        }
        st.mtime = mtime_of(&self.path);
        Ok(id)
    }

    fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<WrappedKey, CryptoError> {
        let kek = self.current(Purpose::Identity);
        let bytes = self.with_key(kek, KeyKind::Aes256, |k| {
            let k: &[u8; KEY_LEN] = k.try_into().map_err(|_| CryptoError::Corrupt("key length"))?;
            aead::seal(k, context, dek.bytes())
        })?;
        Ok(WrappedKey { kek, bytes })
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, CryptoError> {
        self.with_key(wrapped.kek, KeyKind::Aes256, |k| {
            let k: &[u8; KEY_LEN] = k.try_into().map_err(|_| CryptoError::Corrupt("key length"))?;
            let raw = Zeroizing::new(aead::open(k, context, &wrapped.bytes)?);
            let b: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
            Ok(DataKey::from_bytes(b))
        })
    }

    fn hmac(&self, key: KeyId, data: &[u8]) -> Result<[u8; 32], CryptoError> {
        self.with_key(key, KeyKind::Hmac, |k| {
            let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k), data);
            tag.as_ref().try_into().map_err(|_| CryptoError::Corrupt("hmac length"))
        })
    }

    fn sign(&self, purpose: Purpose, data: &[u8]) -> Result<(KeyId, Vec<u8>), CryptoError> {
        let id = self.current(purpose);
        let sig = self.with_key(id, KeyKind::Ed25519, |k| {
            let pair = Ed25519KeyPair::from_pkcs8(k).map_err(|_| CryptoError::Corrupt("signing key"))?;
            Ok(pair.sign(data).as_ref().to_vec())
        })?;
        Ok((id, sig))
    }

    fn verify(&self, key: KeyId, data: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let public = self.public_key(key)?;
        UnparsedPublicKey::new(&ED25519, public).verify(data, signature).map_err(|_| CryptoError::BadSignature)
    }

    fn public_key(&self, key: KeyId) -> Result<Vec<u8>, CryptoError> {
        self.with_key(key, KeyKind::Ed25519, |k| {
            let pair = Ed25519KeyPair::from_pkcs8(k).map_err(|_| CryptoError::Corrupt("signing key"))?;
            Ok(pair.public_key().as_ref().to_vec())
        })
    }

    fn hybrid_decrypt(&self, purpose: Purpose, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if purpose.kind() != KeyKind::Rsa2048 {
            return Err(CryptoError::UnknownKey(self.current(purpose)));
        }
        hybrid::decrypt(self, purpose, payload)
    }

    fn certificate(&self, key: KeyId) -> Result<Vec<u8>, CryptoError> {
        Ok(self.rsa_key(key)?.certificate()?.to_vec())
    }
}

impl RsaKeys for SoftwareKeystore {
    fn rsa_versions(&self, purpose: Purpose) -> Vec<KeyId> {
        let st = self.fresh(false);
        st.keys.keys().rev().filter(|id| id.purpose == purpose).copied().collect()
    }

    fn rsa_thumbprint(&self, id: KeyId) -> Result<[u8; 32], CryptoError> {
        Ok(x509::thumbprint(&self.rsa_key(id)?.certificate()?))
    }

    fn rsa_oaep_decrypt(&self, id: KeyId, block: &[u8; RSA_BYTES]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.rsa_key(id)?;
        let mut out = Zeroizing::new(vec![0u8; RSA_BYTES]);
        let n = key.decrypting.decrypt(&OAEP_SHA256_MGF1SHA256, block, &mut out, None).map_err(|_| CryptoError::Decrypt)?.len();
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, SoftwareKeystore, String) {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate().unwrap();
        let b64 = master.to_base64();
        let ks = SoftwareKeystore::create(&dir.path().join("keys"), master, None, 1).unwrap();
        (dir, ks, b64)
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _ks, _) = fresh();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("keys")), 0o700);
        assert_eq!(mode(&dir.path().join("keys").join(FILE_NAME)), 0o600);
    }

    #[test]
    fn reopen_needs_the_right_master_key() {
        let (dir, ks, b64) = fresh();
        let dek = DataKey::generate().unwrap();
        let w = ks.wrap(&dek, b"person-1").unwrap();
        let again = SoftwareKeystore::open(&dir.path().join("keys"), MasterKey::from_base64(&b64).unwrap()).unwrap();
        assert_eq!(again.unwrap(&w, b"person-1").unwrap().bytes(), dek.bytes());
        let wrong = SoftwareKeystore::open(&dir.path().join("keys"), MasterKey::generate().unwrap());
        assert_eq!(wrong.unwrap_err(), CryptoError::WrongMasterKey);
        // The file holds no key in clear: a copy of it alone opens nothing.
        let text = std::fs::read_to_string(dir.path().join("keys").join(FILE_NAME)).unwrap();
        assert!(!text.contains(&b64));
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_context() {
        let (_dir, ks, _) = fresh();
        let dek = DataKey::generate().unwrap();
        let w = ks.wrap(&dek, b"person-1").unwrap();
        assert_eq!(ks.unwrap(&w, b"person-2").unwrap_err(), CryptoError::Decrypt);
        let mut t = w.clone();
        t.bytes[20] ^= 1;
        assert_eq!(ks.unwrap(&t, b"person-1").unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn rotation_keeps_old_versions_working() {
        let (dir, ks, b64) = fresh();
        let dek = DataKey::generate().unwrap();
        let before = ks.wrap(&dek, b"p").unwrap();
        let h1 = ks.hmac(ks.current(Purpose::Lookup), b"4729381650").unwrap();
        let (sid1, sig1) = ks.sign(Purpose::Audit, b"checkpoint").unwrap();
        for p in Purpose::ALL {
            assert_eq!(ks.rotate(p, 2).unwrap(), KeyId { purpose: p, version: 2 });
        }
        let after = ks.wrap(&dek, b"p").unwrap();
        assert_eq!((before.kek.version, after.kek.version), (1, 2), "ciphertexts name their key version");
        let reopened = SoftwareKeystore::open(&dir.path().join("keys"), MasterKey::from_base64(&b64).unwrap()).unwrap();
        for w in [&before, &after] {
            assert_eq!(reopened.unwrap(w, b"p").unwrap().bytes(), dek.bytes());
        }
        let lookup_v1 = KeyId { purpose: Purpose::Lookup, version: 1 };
        assert_eq!(reopened.hmac(lookup_v1, b"4729381650").unwrap(), h1, "old digests still computable");
        assert_ne!(reopened.hmac(reopened.current(Purpose::Lookup), b"4729381650").unwrap(), h1);
        reopened.verify(sid1, b"checkpoint", &sig1).unwrap();
        assert_eq!(reopened.verify(sid1, b"checkpoinT", &sig1).unwrap_err(), CryptoError::BadSignature);
        let listed = reopened.list();
        assert_eq!(listed.len(), 2 * Purpose::ALL.len());
        assert_eq!(listed.iter().filter(|k| k.current).count(), Purpose::ALL.len());
    }

    /// Rewrites the keystore file without the keys of `purpose`, as a release before that
    /// purpose existed would have written it.
    fn drop_purpose_from_file(dir: &Path, purpose: Purpose) {
        let path = dir.join(FILE_NAME);
        let mut file: KeyFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        file.keys.retain(|k| k.id.purpose != purpose);
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    }

    #[test]
    fn keystores_from_before_the_datashare_key_gain_it_on_open() {
        let (dir, ks, b64) = fresh();
        let dek = DataKey::generate().unwrap();
        let w = ks.wrap(&dek, b"p").unwrap();
        drop(ks);
        let keys = dir.path().join("keys");
        drop_purpose_from_file(&keys, Purpose::Datashare);
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let opened = SoftwareKeystore::open(&keys, MasterKey::from_base64(&b64).unwrap()).unwrap();
        let id = opened.current(Purpose::Datashare);
        assert_eq!(id, KeyId { purpose: Purpose::Datashare, version: 1 });
        let info = opened.list().into_iter().find(|k| k.id == id).unwrap();
        assert!(i128::try_from(before).unwrap() <= i128::from(info.created_at_ms), "created now, by the system clock");
        assert_eq!(opened.unwrap(&w, b"p").unwrap().bytes(), dek.bytes(), "the other keys are the old ones");
        // Written back: the next open finds the same key, and its certificate is the same.
        let cert = opened.certificate(id).unwrap();
        let again = SoftwareKeystore::open(&keys, MasterKey::from_base64(&b64).unwrap()).unwrap();
        assert_eq!(again.certificate(id).unwrap(), cert);
        let sealed = crate::hybrid_encrypt(&cert, b"after upgrade").unwrap();
        assert_eq!(again.hybrid_decrypt(Purpose::Datashare, &sealed).unwrap(), b"after upgrade");
    }

    #[test]
    fn a_keystore_missing_an_original_purpose_is_corrupt_not_refilled() {
        let (dir, ks, b64) = fresh();
        drop(ks);
        let keys = dir.path().join("keys");
        drop_purpose_from_file(&keys, Purpose::Identity);
        let err = SoftwareKeystore::open(&keys, MasterKey::from_base64(&b64).unwrap()).unwrap_err();
        assert_eq!(err, CryptoError::Corrupt("a key purpose has no version"));
    }

    #[test]
    fn datashare_keys_decrypt_what_is_encrypted_to_their_certificate() {
        let (dir, ks, b64) = fresh();
        let v1 = ks.current(Purpose::Datashare);
        let cert1 = ks.certificate(v1).unwrap();
        assert_eq!(ks.certificate(v1).unwrap(), cert1, "deterministic");
        let sealed1 = crate::hybrid_encrypt(&cert1, b"to v1").unwrap();
        assert_eq!(sealed1[6..38], crate::x509::thumbprint(&cert1), "the thumbprint written is the certificate's");
        assert_eq!(ks.hybrid_decrypt(Purpose::Datashare, &sealed1).unwrap(), b"to v1");
        let v2 = ks.rotate(Purpose::Datashare, 5).unwrap();
        let cert2 = ks.certificate(v2).unwrap();
        assert_ne!(cert2, cert1);
        let reopened = SoftwareKeystore::open(&dir.path().join("keys"), MasterKey::from_base64(&b64).unwrap()).unwrap();
        assert_eq!(reopened.certificate(v1).unwrap(), cert1, "same bytes after a restart");
        assert_eq!(reopened.hybrid_decrypt(Purpose::Datashare, &sealed1).unwrap(), b"to v1", "old versions still decrypt");
        let sealed2 = crate::hybrid_encrypt(&cert2, b"to v2").unwrap();
        assert_eq!(reopened.hybrid_decrypt(Purpose::Datashare, crate::hybrid::encode(&sealed2).as_bytes()).unwrap(), b"to v2");
        assert!(matches!(ks.hybrid_decrypt(Purpose::Identity, &sealed1), Err(CryptoError::UnknownKey(_))));
        assert!(matches!(ks.certificate(ks.current(Purpose::Signing)), Err(CryptoError::UnknownKey(_))));
        assert!(matches!(ks.certificate(KeyId { purpose: Purpose::Datashare, version: 9 }), Err(CryptoError::UnknownKey(_))));
        // The RSA key is stored like every other key: sealed under the master key.
        let text = std::fs::read_to_string(dir.path().join("keys").join(FILE_NAME)).unwrap();
        assert!(text.contains("\"datashare\""));
        let pkcs8 = STANDARD.encode(&ks.lock().keys[&v1].material);
        assert!(pkcs8.starts_with("MII") && !text.contains(&pkcs8[..40]), "no PKCS#8 in clear");
    }

    #[test]
    fn a_rotation_by_another_process_is_picked_up() {
        let (dir, running, b64) = fresh();
        let dek = DataKey::generate().unwrap();
        let other = SoftwareKeystore::open(&dir.path().join("keys"), MasterKey::from_base64(&b64).unwrap()).unwrap();
        let v2 = other.rotate(Purpose::Identity, 2).unwrap();
        // Data the other process seals under v2 opens here at once (unknown id → reload) …
        let w = other.wrap(&dek, b"ctx").unwrap();
        assert_eq!(w.kek, v2);
        running.unwrap(&w, b"ctx").unwrap();
        // … and new data here is sealed under v2 from then on.
        assert_eq!(running.current(Purpose::Identity), v2);
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused() {
        let (_dir, ks, _) = fresh();
        assert!(matches!(ks.hmac(ks.current(Purpose::Identity), b"x"), Err(CryptoError::UnknownKey(_))));
        assert!(matches!(ks.sign(Purpose::Lookup, b"x"), Err(CryptoError::UnknownKey(_))));
        assert!(matches!(ks.hmac(KeyId { purpose: Purpose::Lookup, version: 9 }, b"x"), Err(CryptoError::UnknownKey(_))));
        assert!(matches!(ks.public_key(ks.current(Purpose::Registration)), Err(CryptoError::UnknownKey(_))));
        // The public key of a signing key verifies its signatures, outside the keystore.
        let (id, sig) = ks.sign(Purpose::Signing, b"m").unwrap();
        crate::verify_ed25519(&ks.public_key(id).unwrap(), b"m", &sig).unwrap();
        assert!(crate::verify_ed25519(&ks.public_key(ks.current(Purpose::Audit)).unwrap(), b"m", &sig).is_err());
    }

    #[test]
    fn key_ids_parse() {
        assert_eq!(KeyId::parse("identity.v3").unwrap(), KeyId { purpose: Purpose::Identity, version: 3 });
        for bad in ["identity", "identity.v0", "identity.v01", "nope.v1", "identity.vx"] {
            assert!(KeyId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(KeyId { purpose: Purpose::PartnerToken, version: 2 }.to_string(), "partner_token.v2");
    }
}

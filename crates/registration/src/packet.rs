//! The registration packet, format `tessera-packet-1`: one file per registration, named
//! `<RID>.tpkt`, made by a registration client and opened by the pipeline.
//!
//! Layout (hard to change; `‖` is concatenation, integers big-endian):
//!
//! ```text
//! file    = "TSRP" ‖ version (u8 = 1) ‖ header_len (u16) ‖ header ‖ payload
//! header  = JSON {"rid": "<29 digits>", "signature": "<base64url Ed25519>"}
//!           signature = Ed25519_machine("tessera-packet-1/outer\0" ‖ rid ‖ "\0" ‖ SHA-256(payload))
//! payload = MOSIP hybrid envelope VER_R2 (RSA-OAEP-SHA256 + AES-256-GCM, `tessera_crypto::hybrid`)
//!           of `inner`, encrypted to the server's registration certificate
//! inner   = "TSRI" ‖ version (u8 = 1) ‖ manifest_len (u32) ‖ manifest ‖ signature (64) ‖ file₁ ‖ … ‖ fileₙ
//!           signature = Ed25519_machine("tessera-packet-1/inner\0" ‖ manifest)
//! manifest = JSON `Manifest`: RID, flow, operator, supervisor, time, GPS, UINs the flow names,
//!           biometric exceptions, capture metadata, and per file its name, kind, length, SHA-256
//! ```
//!
//! Two signatures, for two checks: the outer one lets the upload API refuse a packet from an
//! unknown or revoked machine, or one renamed to another RID, without decrypting anything; the
//! inner one (sign-then-encrypt) proves the machine signed the plaintext itself, so someone
//! holding another machine's key cannot re-sign a captured ciphertext as theirs. The manifest
//! carries every file's hash, so one signature covers every byte. The RID's centre and machine
//! parts name the machine whose key must verify both signatures.
//!
//! The identity file (`identity.json`) is the record in the identity schema; its document and
//! biometric fields give `ref`s that are the names of the packet's files, and become the
//! identity's attachments when it is written to the repository. Biometrics are a CBEFF XML file
//! (`tessera_biometrics::cbeff`). Exception photos (a photo of the person when a biometric cannot
//! be captured) are kept in the packet only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tessera_core::Rid;
use tessera_crypto::digest::sha256;
use tessera_crypto::{MachineKey, Recipient, hybrid_encrypt_to, verify_machine_signature};

/// The format name, in the manifest.
pub const FORMAT: &str = "tessera-packet-1";
/// File extension of a packet.
pub const EXTENSION: &str = "tpkt";
const OUTER_MAGIC: &[u8; 4] = b"TSRP";
const INNER_MAGIC: &[u8; 4] = b"TSRI";
const VERSION: u8 = 1;
const OUTER_CONTEXT: &[u8] = b"tessera-packet-1/outer\0";
const INNER_CONTEXT: &[u8] = b"tessera-packet-1/inner\0";
const SIGNATURE_LEN: usize = 64;

/// Default largest packet file (MOSIP's packet limit is 5 MB as well).
pub const PACKET_BYTES_DEFAULT: usize = 5 * 1024 * 1024;
/// Largest outer header.
pub const HEADER_BYTES_MAX: usize = 1024;
/// Largest manifest.
pub const MANIFEST_BYTES_MAX: usize = 64 * 1024;
/// Most files in a packet.
pub const FILES_MAX: usize = 64;
/// Longest file name, in characters (`[A-Za-z0-9._-]`).
pub const FILE_NAME_CHARS_MAX: usize = 64;
/// Largest identity file.
pub const IDENTITY_BYTES_MAX: usize = 64 * 1024;
/// Most biometric exceptions (10 fingers, 2 irises, 1 face) and capture entries.
pub const EXCEPTIONS_MAX: usize = 13;
pub const CAPTURES_MAX: usize = 32;
/// Longest free-text value in the manifest (ids, reasons, device names), in characters.
pub const TEXT_CHARS_MAX: usize = 128;
/// The name of the identity file.
pub const IDENTITY_FILE: &str = "identity.json";

/// Why a packet was refused. Codes are stable; messages never repeat packet contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("the packet is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the packet is malformed: {0}")]
    Malformed(&'static str),
    #[error("packet format version {0} is not supported")]
    Version(u8),
    #[error("the packet's RID is not valid: {0}")]
    Rid(&'static str),
    #[error("the packet's signature does not verify with its machine's key")]
    Signature,
    #[error("the packet cannot be decrypted with the registration key")]
    Decrypt,
    #[error("file {0} of the packet does not match its hash or length in the manifest")]
    Hash(usize),
    #[error("the manifest is invalid: {0}")]
    Manifest(&'static str),
    #[error("the manifest names another RID than the packet")]
    RidMismatch,
    #[error("the packet cannot be sealed: {0}")]
    Seal(&'static str),
}

impl PacketError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PacketError::TooLarge(_) => "packet_too_large",
            PacketError::Malformed(_) => "packet_malformed",
            PacketError::Version(_) => "packet_version_unsupported",
            PacketError::Rid(_) => "packet_rid_invalid",
            PacketError::Signature => "packet_signature_invalid",
            PacketError::Decrypt => "packet_decrypt_failed",
            PacketError::Hash(_) => "packet_hash_mismatch",
            PacketError::Manifest(_) => "packet_manifest_invalid",
            PacketError::RidMismatch => "packet_rid_mismatch",
            PacketError::Seal(_) => "packet_seal_failed",
        }
    }
}

/// What the registration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// A first registration: de-duplicated, then a new UIN.
    New,
    /// A change to the identity of `uin` (demographics, documents or biometrics).
    Update,
    /// A person who lost their number: found by biometrics, no new UIN.
    Lost,
    /// A child under the configured age: no biometrics needed, linked to a guardian's UIN.
    Child,
}

impl Flow {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::New => "new",
            Flow::Update => "update",
            Flow::Lost => "lost",
            Flow::Child => "child",
        }
    }

    /// # Errors
    /// For an unknown flow name.
    pub fn parse(s: &str) -> Result<Self, PacketError> {
        [Flow::New, Flow::Update, Flow::Lost, Flow::Child]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or(PacketError::Manifest("unknown flow"))
    }
}

/// What a file in the packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The identity record (`identity.json`).
    Identity,
    /// A document a field of the record refers to.
    Document,
    /// CBEFF XML with the captured biometrics.
    Biometrics,
    /// A photo of the person taken because a biometric could not be captured.
    ExceptionPhoto,
}

/// One file, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// A biometric that could not be captured, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BioException {
    /// `finger`, `iris` or `face`.
    pub modality: String,
    /// CBEFF subtype (`Left Thumb`, `Right`…), empty for the face.
    pub position: String,
    /// `missing`, `amputated`, `temporary`… (free text within limits).
    pub reason: String,
}

/// How a biometric was captured (from the SBI device's answer, or the file's provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureInfo {
    pub modality: String,
    pub device_id: String,
    pub provider: String,
    pub serial: String,
    /// Quality the device reported (0–100), if any.
    pub quality: Option<u8>,
    pub captured_at_ms: i64,
}

/// Where the registration took place.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gps {
    pub lat: f64,
    pub lon: f64,
}

/// The signed description of a packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub rid: String,
    pub flow: Flow,
    /// The operator's user id (assigned to the RID's centre).
    pub operator: String,
    /// The supervisor who approved it, if the centre requires one.
    pub supervisor: Option<String>,
    pub created_at_ms: i64,
    pub gps: Option<Gps>,
    /// `update`: the UIN being updated. `lost`: none (it is what is looked for).
    pub uin: Option<String>,
    /// `child`: the parent's or guardian's UIN.
    pub guardian_uin: Option<String>,
    #[serde(default)]
    pub exceptions: Vec<BioException>,
    #[serde(default)]
    pub capture: Vec<CaptureInfo>,
    pub files: Vec<FileEntry>,
}

/// A packet's contents in the clear: its manifest and its files by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// What a client puts into a packet; [`Draft::seal`] fills in the file entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub rid: Rid,
    pub flow: Flow,
    pub operator: String,
    pub supervisor: Option<String>,
    pub created_at_ms: i64,
    pub gps: Option<Gps>,
    pub uin: Option<String>,
    pub guardian_uin: Option<String>,
    pub exceptions: Vec<BioException>,
    pub capture: Vec<CaptureInfo>,
    /// `(name, kind, contents)` in the order they are stored.
    pub files: Vec<(String, FileKind, Vec<u8>)>,
}

impl Draft {
    /// The manifest this draft describes.
    #[must_use]
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            rid: self.rid.to_string(),
            flow: self.flow,
            operator: self.operator.clone(),
            supervisor: self.supervisor.clone(),
            created_at_ms: self.created_at_ms,
            gps: self.gps,
            uin: self.uin.clone(),
            guardian_uin: self.guardian_uin.clone(),
            exceptions: self.exceptions.clone(),
            capture: self.capture.clone(),
            files: self
                .files
                .iter()
                .map(|(name, kind, bytes)| FileEntry {
                    name: name.clone(),
                    kind: *kind,
                    bytes: bytes.len() as u64,
                    sha256: hex(&sha256(&[bytes])),
                })
                .collect(),
        }
    }

    /// The signed inner container, before encryption (deterministic: Ed25519 signatures are).
    ///
    /// # Errors
    /// `Seal` when the draft breaks a limit the server would refuse it for.
    pub fn inner(&self, key: &MachineKey) -> Result<Vec<u8>, PacketError> {
        let manifest = self.manifest();
        check_manifest(&manifest, &self.rid).map_err(|e| match e {
            PacketError::Manifest(m) => PacketError::Seal(m),
            _ => PacketError::Seal("the manifest is invalid"),
        })?;
        let json = serde_json::to_vec(&manifest).map_err(|_| PacketError::Seal("the manifest does not serialise"))?;
        if json.len() > MANIFEST_BYTES_MAX {
            return Err(PacketError::Seal("the manifest is too large"));
        }
        let sig = key.sign(&[INNER_CONTEXT, &json].concat());
        let total: usize = self.files.iter().map(|f| f.2.len()).sum();
        let mut out = Vec::with_capacity(4 + 1 + 4 + json.len() + SIGNATURE_LEN + total);
        out.extend_from_slice(INNER_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&u32::try_from(json.len()).map_err(|_| PacketError::Seal("manifest too large"))?.to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&sig);
        for (_, _, bytes) in &self.files {
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// Signs, encrypts to `recipient` (the server's registration certificate) and signs again:
    /// the bytes of `<RID>.tpkt`.
    ///
    /// # Errors
    /// `Seal` for a draft that breaks a limit, or an encryption failure.
    pub fn seal(&self, key: &MachineKey, recipient: &Recipient, packet_bytes_max: usize) -> Result<Vec<u8>, PacketError> {
        let inner = zeroize::Zeroizing::new(self.inner(key)?);
        let payload = hybrid_encrypt_to(recipient, &inner).map_err(|_| PacketError::Seal("encryption failed"))?;
        let rid = self.rid.to_string();
        let sig = key.sign(&outer_message(&rid, &payload));
        let header = serde_json::to_vec(&Header { rid, signature: URL_SAFE_NO_PAD.encode(sig) })
            .map_err(|_| PacketError::Seal("the header does not serialise"))?;
        let mut out = Vec::with_capacity(7 + header.len() + payload.len());
        out.extend_from_slice(OUTER_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&u16::try_from(header.len()).map_err(|_| PacketError::Seal("header too large"))?.to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        if out.len() > packet_bytes_max {
            return Err(PacketError::TooLarge(packet_bytes_max));
        }
        Ok(out)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    rid: String,
    signature: String,
}

fn outer_message(rid: &str, payload: &[u8]) -> Vec<u8> {
    [OUTER_CONTEXT, rid.as_bytes(), b"\0", &sha256(&[payload])].concat()
}

/// The outside of a packet: what can be checked before decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer<'a> {
    pub rid: Rid,
    signature: Vec<u8>,
    /// The encrypted inner container.
    pub payload: &'a [u8],
}

impl<'a> Outer<'a> {
    /// Parses the outside of a packet file.
    ///
    /// # Errors
    /// `TooLarge`, `Malformed`, `Version`, `Rid`.
    pub fn parse(bytes: &'a [u8], packet_bytes_max: usize) -> Result<Self, PacketError> {
        if bytes.len() > packet_bytes_max {
            return Err(PacketError::TooLarge(packet_bytes_max));
        }
        let rest = bytes.strip_prefix(OUTER_MAGIC.as_slice()).ok_or(PacketError::Malformed("not a Tessera packet"))?;
        let (&version, rest) = rest.split_first().ok_or(PacketError::Malformed("truncated"))?;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let (len, rest) = rest.split_first_chunk::<2>().ok_or(PacketError::Malformed("truncated"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len > HEADER_BYTES_MAX || rest.len() < len {
            return Err(PacketError::Malformed("header length"));
        }
        let (header, payload) = rest.split_at(len);
        let header: Header = serde_json::from_slice(header).map_err(|_| PacketError::Malformed("header is not the expected JSON"))?;
        let rid = Rid::parse(&header.rid).map_err(|e| PacketError::Rid(e.code()))?;
        let signature = URL_SAFE_NO_PAD.decode(header.signature.as_bytes()).map_err(|_| PacketError::Malformed("signature encoding"))?;
        if signature.len() != SIGNATURE_LEN {
            return Err(PacketError::Malformed("signature length"));
        }
        if payload.is_empty() {
            return Err(PacketError::Malformed("no payload"));
        }
        Ok(Outer { rid, signature, payload })
    }

    /// Checks the outer signature with the machine's public key.
    ///
    /// # Errors
    /// `Signature`.
    pub fn verify(&self, public_key: &[u8]) -> Result<(), PacketError> {
        verify_machine_signature(public_key, &outer_message(&self.rid.to_string(), self.payload), &self.signature)
            .map_err(|_| PacketError::Signature)
    }
}

/// Opens a decrypted inner container: checks the machine's signature over the manifest, the
/// manifest itself, and every file against its length and hash.
///
/// # Errors
/// `Malformed`, `Version`, `Signature`, `Manifest`, `RidMismatch`, `Hash`.
pub fn open_inner(inner: &[u8], rid: &Rid, public_key: &[u8]) -> Result<Packet, PacketError> {
    let rest = inner.strip_prefix(INNER_MAGIC.as_slice()).ok_or(PacketError::Malformed("inner container"))?;
    let (&version, rest) = rest.split_first().ok_or(PacketError::Malformed("truncated"))?;
    if version != VERSION {
        return Err(PacketError::Version(version));
    }
    let (len, rest) = rest.split_first_chunk::<4>().ok_or(PacketError::Malformed("truncated"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
    if len > MANIFEST_BYTES_MAX || rest.len() < len + SIGNATURE_LEN {
        return Err(PacketError::Malformed("manifest length"));
    }
    let (json, rest) = rest.split_at(len);
    let (sig, mut data) = rest.split_at(SIGNATURE_LEN);
    verify_machine_signature(public_key, &[INNER_CONTEXT, json].concat(), sig).map_err(|_| PacketError::Signature)?;
    let manifest: Manifest = serde_json::from_slice(json).map_err(|_| PacketError::Manifest("not the expected JSON"))?;
    check_manifest(&manifest, rid)?;
    let mut files = BTreeMap::new();
    for (i, f) in manifest.files.iter().enumerate() {
        let n = usize::try_from(f.bytes).map_err(|_| PacketError::Hash(i))?;
        if data.len() < n {
            return Err(PacketError::Hash(i));
        }
        let (content, rest) = data.split_at(n);
        if hex(&sha256(&[content])) != f.sha256 {
            return Err(PacketError::Hash(i));
        }
        files.insert(f.name.clone(), content.to_vec());
        data = rest;
    }
    if !data.is_empty() {
        return Err(PacketError::Malformed("bytes after the last file"));
    }
    Ok(Packet { manifest, files })
}

fn text_ok(s: &str) -> bool {
    s.chars().count() <= TEXT_CHARS_MAX && !s.chars().any(char::is_control)
}

fn id_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().count() <= TEXT_CHARS_MAX && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= FILE_NAME_CHARS_MAX
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Everything about a manifest that can be checked without the schema or the database.
fn check_manifest(m: &Manifest, rid: &Rid) -> Result<(), PacketError> {
    if m.format != FORMAT {
        return Err(PacketError::Manifest("unknown format"));
    }
    if m.rid != rid.to_string() {
        return Err(PacketError::RidMismatch);
    }
    if !id_ok(&m.operator) || m.supervisor.as_deref().is_some_and(|s| !id_ok(s)) {
        return Err(PacketError::Manifest("operator or supervisor id"));
    }
    if m.gps.is_some_and(|g| !(g.lat.is_finite() && g.lon.is_finite() && g.lat.abs() <= 90.0 && g.lon.abs() <= 180.0)) {
        return Err(PacketError::Manifest("GPS position out of range"));
    }
    if m.exceptions.len() > EXCEPTIONS_MAX || m.capture.len() > CAPTURES_MAX {
        return Err(PacketError::Manifest("too many exceptions or capture entries"));
    }
    let texts = m
        .exceptions
        .iter()
        .flat_map(|e| [&e.modality, &e.position, &e.reason])
        .chain(m.capture.iter().flat_map(|c| [&c.modality, &c.device_id, &c.provider, &c.serial]));
    if !texts.into_iter().all(|t| text_ok(t)) || m.capture.iter().any(|c| c.quality.is_some_and(|q| q > 100)) {
        return Err(PacketError::Manifest("a text value is too long or has control characters"));
    }
    if m.exceptions.iter().any(|e| !matches!(e.modality.as_str(), "finger" | "iris" | "face")) {
        return Err(PacketError::Manifest("an exception names an unknown modality"));
    }
    if m.files.len() > FILES_MAX {
        return Err(PacketError::Manifest("too many files"));
    }
    let mut names = BTreeSet::new();
    for f in &m.files {
        if !name_ok(&f.name) || !names.insert(f.name.as_str()) {
            return Err(PacketError::Manifest("a file name is invalid or repeated"));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(PacketError::Manifest("a file hash is not lower-case SHA-256 hex"));
        }
    }
    let identity: Vec<&FileEntry> = m.files.iter().filter(|f| f.kind == FileKind::Identity).collect();
    if identity.len() != 1 || identity[0].name != IDENTITY_FILE {
        return Err(PacketError::Manifest("exactly one identity file, identity.json, is required"));
    }
    if identity[0].bytes > IDENTITY_BYTES_MAX as u64 {
        return Err(PacketError::Manifest("the identity file is too large"));
    }
    if m.files.iter().filter(|f| f.kind == FileKind::Biometrics).count() > 1 {
        return Err(PacketError::Manifest("at most one biometrics file"));
    }
    match m.flow {
        Flow::Update if m.uin.is_none() => return Err(PacketError::Manifest("an update names the UIN it updates")),
        Flow::Child if m.guardian_uin.is_none() => return Err(PacketError::Manifest("a child registration names a guardian's UIN")),
        Flow::New | Flow::Lost if m.uin.is_some() => return Err(PacketError::Manifest("only an update names a UIN")),
        _ => {}
    }
    Ok(())
}

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::id::{CentreId, MachineId};
    use tessera_crypto::Keystore;

    fn rid() -> Rid {
        let at = time::macros::datetime!(2026-12-07 09:10:00);
        Rid::new(CentreId::parse("10001").unwrap(), MachineId::parse("20001").unwrap(), 7, at).unwrap()
    }

    fn draft() -> Draft {
        Draft {
            rid: rid(),
            flow: Flow::New,
            operator: "officer-1".into(),
            supervisor: Some("super-1".into()),
            created_at_ms: 1_796_000_000_000,
            gps: Some(Gps { lat: 12.5, lon: -8.25 }),
            uin: None,
            guardian_uin: None,
            exceptions: vec![],
            capture: vec![],
            files: vec![
                (IDENTITY_FILE.into(), FileKind::Identity, br#"{"fullName":[{"language":"eng","value":"A B"}]}"#.to_vec()),
                ("poi".into(), FileKind::Document, b"%PDF-1.7 document".to_vec()),
            ],
        }
    }

    fn keystore() -> (tempfile::TempDir, tessera_crypto::SoftwareKeystore) {
        let dir = tempfile::tempdir().unwrap();
        let ks =
            tessera_crypto::SoftwareKeystore::create(&dir.path().join("keys"), tessera_crypto::MasterKey::generate().unwrap(), None, 1)
                .unwrap();
        (dir, ks)
    }

    fn open(ks: &dyn Keystore, bytes: &[u8], public: &[u8]) -> Result<Packet, PacketError> {
        let outer = Outer::parse(bytes, PACKET_BYTES_DEFAULT)?;
        outer.verify(public)?;
        let inner = ks.hybrid_decrypt(tessera_crypto::Purpose::Registration, outer.payload).map_err(|_| PacketError::Decrypt)?;
        open_inner(&inner, &outer.rid, public)
    }

    #[test]
    fn a_sealed_packet_opens_to_what_was_put_in() {
        let (dir, ks) = keystore();
        let key = MachineKey::create_file(&dir.path().join("m/key.pem")).unwrap();
        let cert = ks.certificate(ks.current(tessera_crypto::Purpose::Registration)).unwrap();
        let recipient = Recipient::parse(&cert).unwrap();
        let d = draft();
        let bytes = d.seal(&key, &recipient, PACKET_BYTES_DEFAULT).unwrap();
        let p = open(&ks, &bytes, &key.public_key()).unwrap();
        assert_eq!(p.manifest, d.manifest());
        assert_eq!(p.files["poi"], b"%PDF-1.7 document");
        assert_eq!(p.files.len(), 2);
    }

    #[test]
    fn every_tampering_is_refused_with_its_own_code() {
        let (dir, ks) = keystore();
        let key = MachineKey::create_file(&dir.path().join("m/key.pem")).unwrap();
        let other = MachineKey::create_file(&dir.path().join("m/other.pem")).unwrap();
        let recipient = Recipient::parse(&ks.certificate(ks.current(tessera_crypto::Purpose::Registration)).unwrap()).unwrap();
        let bytes = draft().seal(&key, &recipient, PACKET_BYTES_DEFAULT).unwrap();
        // A flipped bit in the ciphertext breaks the outer signature.
        let mut t = bytes.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(open(&ks, &t, &key.public_key()).unwrap_err().code(), "packet_signature_invalid");
        // Another machine's key.
        assert_eq!(open(&ks, &bytes, &other.public_key()).unwrap_err().code(), "packet_signature_invalid");
        // Truncated anywhere: a stable error, never a panic.
        for n in [0, 3, 5, 7, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(open(&ks, &bytes[..n], &key.public_key()).is_err(), "{n}");
        }
        // Too large.
        assert_eq!(Outer::parse(&bytes, 100).unwrap_err().code(), "packet_too_large");
        // Re-signed ciphertext by another machine: the outer signature passes, the inner not.
        let outer = Outer::parse(&bytes, PACKET_BYTES_DEFAULT).unwrap();
        let inner = ks.hybrid_decrypt(tessera_crypto::Purpose::Registration, outer.payload).unwrap();
        assert_eq!(open_inner(&inner, &outer.rid, &other.public_key()).unwrap_err().code(), "packet_signature_invalid");
        // A file changed after signing: its hash no longer matches.
        let mut inner2 = inner.clone();
        let n = inner2.len() - 2;
        inner2[n] ^= 1;
        assert_eq!(open_inner(&inner2, &outer.rid, &key.public_key()).unwrap_err().code(), "packet_hash_mismatch");
        // The manifest names another RID than the file.
        let other_rid = Rid::parse("10001200010000820261207091000").unwrap();
        assert_eq!(open_inner(&inner, &other_rid, &key.public_key()).unwrap_err().code(), "packet_rid_mismatch");
    }

    #[test]
    fn drafts_that_break_a_limit_are_refused_before_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let key = MachineKey::create_file(&dir.path().join("key.pem")).unwrap();
        let mut d = draft();
        d.files.push(("../etc".into(), FileKind::Document, b"x".to_vec()));
        assert_eq!(d.inner(&key).unwrap_err().code(), "packet_seal_failed");
        let mut d = draft();
        d.files.remove(0);
        assert_eq!(d.inner(&key).unwrap_err().code(), "packet_seal_failed");
        let mut d = draft();
        d.flow = Flow::Update;
        assert_eq!(d.inner(&key).unwrap_err().code(), "packet_seal_failed", "an update names its UIN");
        // Deterministic: the same draft and key give the same inner bytes (golden-file friendly).
        assert_eq!(draft().inner(&key).unwrap(), draft().inner(&key).unwrap());
    }

    /// The stored format stays readable: a committed inner container (made by this code with the
    /// committed test machine key) opens to the committed draft, and sealing the draft again
    /// gives the same bytes. `TESSERA_BLESS=1` rewrites the golden file after a deliberate change
    /// of format (which must also change `VERSION`).
    #[test]
    fn golden_inner_container() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let key = MachineKey::open_file(&data.join("machine-key.pem")).unwrap();
        let golden_path = data.join("golden-inner-v1.bin");
        let made = draft().inner(&key).unwrap();
        if std::env::var_os("TESSERA_BLESS").is_some() {
            std::fs::write(&golden_path, &made).unwrap();
        }
        let golden = std::fs::read(&golden_path).unwrap();
        let p = open_inner(&golden, &rid(), &key.public_key()).unwrap();
        assert_eq!(p.manifest, draft().manifest());
        assert_eq!(made, golden);
    }
}

//! The identity repository: the authoritative register every other module reads and writes
//! identities through.
//!
//! Each person's record is sealed (AES-256-GCM) under that person's own data key, with the
//! record id, version and field as associated data; the data key is wrapped by the keystore's
//! identity key and kept in the key vault, apart from the main database. Records are found by
//! keyed HMAC digests of their UIN (and external reference), never by the number itself. Every
//! change is a new sealed version with who, when and why. Erasure destroys the data key.
//! Every action is written to the hash-chained audit log in the same transaction as the change.

pub mod access;
pub mod audit;
mod import;
mod maintenance;
pub mod records;
mod sealed;

pub use access::{Principal, Role};
pub use import::{IMPORT_BATCH_MAX, ImportLine, ImportReport, LineError};
pub use records::{Created, Identity, VersionInfo};

use std::sync::Arc;
use tessera_core::IdRules;
use tessera_core::schema::{FieldError, Schema};
use tessera_crypto::{CryptoError, Keystore};
use tessera_store::{BlobError, BlobStore, Db, StoreError, Vault};

/// Largest attachment (document or biometric) accepted per field.
pub const ATTACHMENT_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Most attachments per record.
pub const ATTACHMENTS_MAX: usize = 32;
/// Longest reason for a change, in characters.
pub const REASON_CHARS_MAX: usize = 500;
/// Longest external reference (legacy register id), in characters.
pub const EXTERNAL_REF_CHARS_MAX: usize = 128;

/// Who is acting, as recorded in versions and the audit log: an id, never a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `token:<uuid>`, `cli`, `system`.
    pub id: String,
    /// The HTTP request id, or empty.
    pub request_id: String,
}

impl Actor {
    #[must_use]
    pub fn cli() -> Self {
        Actor { id: "cli".into(), request_id: String::new() }
    }

    #[must_use]
    pub fn system() -> Self {
        Actor { id: "system".into(), request_id: String::new() }
    }

    /// An audit event of this actor's.
    #[must_use]
    pub fn event(&self, action: &'static str, target: &str, outcome: &str) -> audit::Event {
        audit::Event {
            actor: self.id.clone(),
            action,
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            request_id: self.request_id.clone(),
        }
    }
}

/// Errors of the repository. None carries personal data: field errors name paths and codes.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("the record does not match the identity schema")]
    Invalid(Vec<FieldError>),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("no identity with this number")]
    NotFound,
    #[error("this identity has been erased")]
    Gone,
    #[error("the identity changed meanwhile (expected version {expected}, current {current})")]
    VersionConflict { expected: i64, current: i64 },
    #[error("an identity with this external reference exists already")]
    DuplicateExternalRef,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(&'static str),
}

impl RepoError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            RepoError::Invalid(_) => "record_invalid",
            RepoError::BadRequest(_) => "bad_request",
            RepoError::NotFound => "identity_not_found",
            RepoError::Gone => "identity_erased",
            RepoError::VersionConflict { .. } => "version_conflict",
            RepoError::DuplicateExternalRef => "external_ref_exists",
            RepoError::Store(e) => e.code(),
            RepoError::Blob(e) => e.code(),
            RepoError::Crypto(e) => e.code(),
            RepoError::Corrupt(_) => "repository_corrupt",
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;

/// The repository: database, key vault, blob store, keystore and schema. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IdRepo {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    vault: Vault,
    blobs: BlobStore,
    ks: Arc<dyn Keystore>,
    schema: Arc<Schema>,
    rules: IdRules,
}

impl IdRepo {
    #[must_use]
    pub fn new(db: Db, vault: Vault, blobs: BlobStore, ks: Arc<dyn Keystore>, schema: Arc<Schema>, rules: IdRules) -> Self {
        IdRepo { inner: Arc::new(Inner { db, vault, blobs, ks, schema, rules }) }
    }

    #[must_use]
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    #[must_use]
    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    /// The blob store attachments live in (registration keeps its packets there too).
    #[must_use]
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    #[must_use]
    pub fn keystore(&self) -> &Arc<dyn Keystore> {
        &self.inner.ks
    }

    #[must_use]
    pub fn rules(&self) -> &IdRules {
        &self.inner.rules
    }

    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }
}

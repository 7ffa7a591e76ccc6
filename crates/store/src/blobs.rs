//! The blob store: opaque byte objects (packets, documents, templates) under validated keys,
//! on the local filesystem by default or on S3-compatible storage, through one interface.
//!
//! Blobs are written whole and read whole, with an explicit size limit both ways. Callers
//! encrypt before they store (the crypto crate); this module never sees plaintext PII.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use std::sync::Arc;

/// Largest blob accepted (a registration packet with all biometrics is a few MB).
pub const BLOB_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest key, and most segments in one.
pub const KEY_CHARS_MAX: usize = 512;
pub const KEY_SEGMENTS_MAX: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob key: {0}")]
    InvalidKey(&'static str),
    #[error("blob is {0} bytes; the limit is {BLOB_BYTES_MAX}")]
    TooLarge(usize),
    #[error("blob not found")]
    NotFound,
    #[error("blob already exists")]
    AlreadyExists,
    #[error("unsupported blob store URL (expected a path, file://, memory:// or s3://)")]
    UnsupportedUrl,
    #[error("blob store: {0}")]
    Backend(object_store::Error),
}

impl BlobError {
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            BlobError::InvalidKey(_) => "blob_key_invalid",
            BlobError::TooLarge(_) => "blob_too_large",
            BlobError::NotFound => "blob_not_found",
            BlobError::AlreadyExists => "blob_exists",
            BlobError::UnsupportedUrl => "blob_url_unsupported",
            BlobError::Backend(_) => "blob_backend",
        }
    }
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            object_store::Error::AlreadyExists { .. } => BlobError::AlreadyExists,
            other => BlobError::Backend(other),
        }
    }
}

/// A validated key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty or starting with a
/// dot (no `..`, no hidden files), so a key can never escape the store's root on any backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// # Errors
    /// `InvalidKey` naming the broken rule.
    pub fn parse(s: &str) -> Result<Self, BlobError> {
        if s.is_empty() || s.len() > KEY_CHARS_MAX {
            return Err(BlobError::InvalidKey("length must be 1..=512"));
        }
        let segments: Vec<&str> = s.split('/').collect();
        if segments.len() > KEY_SEGMENTS_MAX {
            return Err(BlobError::InvalidKey("too many segments"));
        }
        for seg in segments {
            if seg.is_empty() {
                return Err(BlobError::InvalidKey("empty segment"));
            }
            if seg.starts_with('.') {
                return Err(BlobError::InvalidKey("segment starts with a dot"));
            }
            if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
                return Err(BlobError::InvalidKey("characters other than A-Z a-z 0-9 . _ -"));
            }
        }
        Ok(BlobKey(s.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> Path {
        Path::from(self.0.as_str())
    }
}

/// A handle on one blob store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// Opens a store from a location:
    /// - a filesystem path or `file:///abs/path` (created if missing) — the embedded default;
    /// - `memory://` — in-process, for tests;
    /// - `s3://bucket[/prefix]` — S3-compatible, configured from the standard `AWS_*`
    ///   environment variables (endpoint, region, credentials); needs the `s3` feature.
    ///
    /// # Errors
    /// An unsupported URL, or a directory that cannot be created.
    pub fn open(location: &str) -> Result<Self, BlobError> {
        if location == "memory://" {
            return Ok(Self::from_store(Arc::new(object_store::memory::InMemory::new())));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            return Self::open_s3(rest);
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(BlobError::UnsupportedUrl);
        }
        let dir = location.strip_prefix("file://").unwrap_or(location);
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Backend(object_store::Error::Generic { store: "local", source: Box::new(e) }))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::from_store(Arc::new(fs)))
    }

    #[cfg(feature = "s3")]
    fn open_s3(rest: &str) -> Result<Self, BlobError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BlobError::UnsupportedUrl);
        }
        let s3 = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build()?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.trim_end_matches('/')))
        };
        Ok(Self::from_store(store))
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(_rest: &str) -> Result<Self, BlobError> {
        Err(BlobError::UnsupportedUrl)
    }

    /// Wraps any `object_store` backend (GCS, Azure, … for integrators who need them).
    #[must_use]
    pub fn from_store(inner: Arc<dyn ObjectStore>) -> Self {
        BlobStore { inner }
    }

    /// Writes a blob, replacing any previous one under the key.
    ///
    /// # Errors
    /// Over the size limit, or a backend error.
    pub async fn put(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobError> {
        check_size(data.len())?;
        self.inner.put(&key.path(), PutPayload::from(data)).await?;
        Ok(())
    }

    /// Writes a blob only if the key is free (write-once objects such as packets).
    ///
    /// # Errors
    /// `AlreadyExists`, over the size limit, or a backend error.
    pub async fn put_new(&self, key: &BlobKey, data: Bytes) -> Result<(), BlobError> {
        check_size(data.len())?;
        self.inner.put_opts(&key.path(), PutPayload::from(data), PutMode::Create.into()).await?;
        Ok(())
    }

    /// Reads a whole blob.
    ///
    /// # Errors
    /// `NotFound`, a stored object over the size limit, or a backend error.
    pub async fn get(&self, key: &BlobKey) -> Result<Bytes, BlobError> {
        let res = self.inner.get(&key.path()).await?;
        check_size(usize::try_from(res.meta.size).unwrap_or(usize::MAX))?;
        Ok(res.bytes().await?)
    }

    /// Whether a blob exists.
    ///
    /// # Errors
    /// Backend errors other than absence.
    pub async fn exists(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self.inner.head(&key.path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob; deleting an absent blob is not an error (deletes are retried by jobs).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.inner.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn check_size(n: usize) -> Result<(), BlobError> {
    if n > BLOB_BYTES_MAX { Err(BlobError::TooLarge(n)) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        for bad in ["", "..", "a/../b", "/abs", "a//b", ".hidden", "a/.x", "a b", "a\\b", "ü", "a/"] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["packets/10001100010000120250101120000.zip", "a", "A-b_c.d/e"] {
            assert!(BlobKey::parse(good).is_ok(), "{good:?} rejected");
        }
        assert!(BlobKey::parse(&["a"; 8].join("/")).is_ok());
        assert!(BlobKey::parse(&["a"; 9].join("/")).is_err());
        assert!(BlobKey::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn urls() {
        assert!(matches!(BlobStore::open("ftp://x"), Err(BlobError::UnsupportedUrl)));
        assert!(BlobStore::open("memory://").is_ok());
    }
}

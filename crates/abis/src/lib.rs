//! Tessera's ABIS (automated biometric identification system) service: the encrypted gallery,
//! durable idempotent insert / identify / delete, MOSIP's ABIS API and its queue transport.

pub mod biosdk;
pub mod datashare;
pub mod engine;
pub mod mosip;
pub mod queue;
pub mod shard;
pub mod stomp;

pub use engine::{AbisConfig, Engine};

use std::future::Future;
use std::pin::Pin;

/// Errors of the ABIS service. Messages carry ids and codes, never biometric data.
#[derive(Debug, thiserror::Error)]
pub enum AbisError {
    #[error(transparent)]
    Store(#[from] tessera_store::StoreError),
    #[error(transparent)]
    Repo(#[from] tessera_idrepo::RepoError),
    #[error("stored ABIS data is inconsistent: {0}")]
    Corrupt(&'static str),
    #[error("the gallery lock was poisoned by a panic")]
    Poisoned,
    #[error("a gallery shard answered with an error: {0}")]
    Shard(String),
    #[error("not every gallery shard answered within {0} ms")]
    ShardTimeout(u64),
}

impl AbisError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            AbisError::Store(e) => e.code(),
            AbisError::Repo(e) => e.code(),
            AbisError::Corrupt(_) => "abis_corrupt",
            AbisError::Poisoned => "abis_poisoned",
            AbisError::Shard(_) => "abis_shard_failed",
            AbisError::ShardTimeout(_) => "abis_shard_timeout",
        }
    }
}

/// Why biometric data could not be fetched from a referenceURL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the referenceURL is not an allowed https URL")]
    BadUrl,
    #[error("the data share could not be reached or answered {0}")]
    Unreachable(String),
    #[error("the data share link has expired or been used up")]
    Expired,
    #[error("the data share answered more than the size limit")]
    TooLarge,
    #[error("the data share payload does not decrypt")]
    Decrypt,
}

impl FetchError {
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::BadUrl => "fetch_bad_url",
            FetchError::Unreachable(_) => "fetch_unreachable",
            FetchError::Expired => "fetch_expired",
            FetchError::TooLarge => "fetch_too_large",
            FetchError::Decrypt => "fetch_decrypt",
        }
    }
}

/// Where the biometrics of a referenceURL come from: MOSIP's data share over HTTPS
/// (`datashare::Datashare`), or anything else a deployment or test plugs in. Returns the CBEFF
/// document, decrypted.
pub trait Fetch: Send + Sync + std::fmt::Debug {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, FetchError>> + Send + 'a>>;
}

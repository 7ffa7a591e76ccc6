//! Registration: how a person gets an identity. Centres, machines and their staff; the packet
//! a registration client seals; the upload; the pipeline that validates, de-duplicates and
//! issues; adjudication of doubtful cases.

pub mod adjudication;
mod demo;
pub mod packet;
pub mod pipeline;

pub use demo::DEMO_CANDIDATES_MAX;

pub use packet::{Flow, PacketError};
pub use pipeline::{Registration, StageRun};

use tessera_crypto::CryptoError;
use tessera_idrepo::RepoError;
use tessera_store::{BlobError, StoreError};

/// Registration settings (`[registration]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegConfig {
    /// Largest packet file accepted.
    pub packet_bytes_max: usize,
    /// A `child` registration is for a person younger than this many years.
    pub child_age_years: i32,
    /// Lowest CBEFF quality score (0–100) a captured biometric may have.
    pub quality_min: u8,
    /// Whether every packet must name a supervisor assigned to its centre.
    pub require_supervisor: bool,
    /// A biometric candidate is an automatic duplicate only when its fused evidence reaches the
    /// ABIS match threshold plus this many decades (3: a stranger gets there in one search in
    /// 10⁹ at MOSIP's default targetFPIR of 1 in 10³); a candidate the ABIS returns below that
    /// goes to adjudication. A genuine re-capture with all modalities scores ~50 decades.
    pub auto_duplicate_decades: u8,
}

impl Default for RegConfig {
    fn default() -> Self {
        RegConfig {
            packet_bytes_max: packet::PACKET_BYTES_DEFAULT,
            child_age_years: 5,
            quality_min: 30,
            require_supervisor: false,
            auto_duplicate_decades: 3,
        }
    }
}

/// Errors of registration. None carries personal data.
#[derive(Debug, thiserror::Error)]
pub enum RegError {
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("the packet's machine is not registered")]
    MachineUnknown,
    #[error("the packet's machine has been revoked")]
    MachineRevoked,
    #[error("the packet's machine belongs to another centre than its RID names")]
    MachineCentre,
    #[error("the packet's centre is not active")]
    CentreInactive,
    #[error("a different packet was uploaded under this RID")]
    PacketConflict,
    #[error("no packet with this RID")]
    NotFound,
    #[error("no adjudication case with this id")]
    CaseNotFound,
    #[error("the adjudication case has been decided already")]
    CaseDecided,
    #[error("the UIN is not one of the case's candidates")]
    CaseUinNotCandidate,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The outbox could not take a notification now: retried.
    #[error(transparent)]
    Notify(tessera_notify::NotifyError),
    /// The credential could not be issued now (keystore, storage): retried.
    #[error(transparent)]
    Credential(tessera_credentials::CredentialError),
    /// The ABIS could not answer now (a shard missing, an internal error): retried.
    #[error("the ABIS failed: reason {0}")]
    Abis(String),
}

impl RegError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            RegError::Packet(e) => e.code(),
            RegError::MachineUnknown => "machine_unknown",
            RegError::MachineRevoked => "machine_revoked",
            RegError::MachineCentre => "machine_centre_mismatch",
            RegError::CentreInactive => "centre_inactive",
            RegError::PacketConflict => "packet_conflict",
            RegError::NotFound => "packet_not_found",
            RegError::CaseNotFound => "adjudication_not_found",
            RegError::CaseDecided => "adjudication_decided",
            RegError::CaseUinNotCandidate => "adjudication_uin_not_candidate",
            RegError::BadRequest(_) => "bad_request",
            RegError::Repo(e) => e.code(),
            RegError::Store(e) => e.code(),
            RegError::Blob(e) => e.code(),
            RegError::Crypto(e) => e.code(),
            RegError::Abis(_) => "abis_failed",
            RegError::Notify(e) => e.code(),
            RegError::Credential(e) => e.code(),
        }
    }
}

pub type Result<T, E = RegError> = std::result::Result<T, E>;

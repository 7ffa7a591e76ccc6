//! Tessera's biometric engine: templates, formats, matchers, fusion and the 1:N gallery. The matching core
//! is pure computation: no I/O, no clock, no randomness of its own.

pub mod cbeff;
pub mod face;
pub mod finger;
pub mod fusion;
pub mod gallery;
pub mod iris;
pub mod iris_gallery;
pub mod iso19794;
pub mod synth;
pub mod synth_face;
pub mod synth_finger;
pub mod templates;

/// Errors of template parsing and matching. Messages carry no biometric data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BioError {
    #[error("an iris code must be {expected} bytes of code and {expected} bytes of mask, got {got}")]
    IrisLength { expected: usize, got: usize },
    #[error("too few unmasked bits in common to compare ({0})")]
    TooFewBits(u32),
}

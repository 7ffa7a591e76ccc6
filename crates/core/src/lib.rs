//! Tessera's pure value types: identifiers (UIN, VID, RID), their check digits and filters, and the
//! configurable identity schema.
//!
//! Architecture invariant: this crate does no I/O. It depends on no async runtime, database, HTTP or
//! filesystem crate; time and randomness are passed in by the caller.

pub mod id;
pub mod schema;
pub mod verhoeff;

pub use id::{IdRule, IdRules, Rid, RidError, Uin, Vid};

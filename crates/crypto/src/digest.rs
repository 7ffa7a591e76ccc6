//! Unkeyed SHA-256 (audit chain links, token hashes) and random secrets. Neither involves key
//! material; they live here because this crate owns the crypto library.

use crate::CryptoError;
use aws_lc_rs::digest::{Context, SHA256};

/// SHA-256 over the concatenation of `parts`.
#[must_use]
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut c = Context::new(&SHA256);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// `N` bytes from the system CSPRNG (bearer tokens, ids).
///
/// # Errors
/// When the system RNG fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    crate::aead::random()
}

/// Equality that takes the same time wherever the inputs differ (for comparing secrets).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_parts_is_sha256_of_their_concatenation() {
        // FIPS 180-2 test vector for "abc".
        let abc = sha256(&[b"a", b"bc"]);
        assert_eq!(abc[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(sha256(&[b"abc"]), abc);
        assert!(constant_time_eq(&abc, &sha256(&[b"ab", b"c"])));
        assert!(!constant_time_eq(&abc, &sha256(&[b"abd"])));
        assert!(!constant_time_eq(&abc, &abc[..31]));
    }
}

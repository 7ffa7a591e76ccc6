//! Keyed digests built on the keystore's HMAC keys: the lookup index (find a record by UIN or
//! VID without storing either) and partner-specific tokens (stable for one partner, unlinkable
//! across partners). Inputs are length-prefixed and domain-separated, so no two different
//! (kind, value) or (UIN, partner) pairs feed the same bytes to the HMAC.

use crate::{CryptoError, KeyId, Keystore, Purpose};

/// Length of a partner token: 36 decimal digits, as MOSIP's partner-specific user token.
pub const PARTNER_TOKEN_DIGITS: usize = 36;

fn framed(domain: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    for p in parts {
        out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The lookup digest of an identifier of `kind` (`uin`, `vid`, `external_ref`, …) under a given
/// lookup key version. Store it with the key id; look up with every version still in use.
///
/// # Errors
/// `key` is not a lookup key in this keystore.
pub fn lookup_digest(ks: &dyn Keystore, key: KeyId, kind: &str, value: &str) -> Result<[u8; 32], CryptoError> {
    if key.purpose != Purpose::Lookup {
        return Err(CryptoError::UnknownKey(key));
    }
    ks.hmac(key, &framed("tessera-lookup-1", &[kind.as_bytes(), value.as_bytes()]))
}

/// The partner-specific token of a person: `HMAC(token key, UIN ‖ partner id)` as 36 decimal
/// digits: the first 119 bits of the MAC (2^119 < 10^36 < 2^120, so every value fits), zero-padded.
///
/// # Errors
/// `key` is not a partner-token key in this keystore.
pub fn partner_token(ks: &dyn Keystore, key: KeyId, uin: &str, partner_id: &str) -> Result<String, CryptoError> {
    if key.purpose != Purpose::PartnerToken {
        return Err(CryptoError::UnknownKey(key));
    }
    let mac = ks.hmac(key, &framed("tessera-partner-token-1", &[uin.as_bytes(), partner_id.as_bytes()]))?;
    let mut first = [0u8; 16];
    first[1..].copy_from_slice(&mac[..15]);
    first[1] &= 0x7f;
    let n = u128::from_be_bytes(first);
    Ok(format!("{n:0width$}", width = PARTNER_TOKEN_DIGITS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterKey, SoftwareKeystore};

    #[test]
    fn tokens_are_stable_per_partner_and_unlinkable_across() {
        let dir = tempfile::tempdir().unwrap();
        let ks = SoftwareKeystore::create(dir.path(), MasterKey::generate().unwrap(), None, 0).unwrap();
        let k = ks.current(Purpose::PartnerToken);
        let a1 = partner_token(&ks, k, "4729381657", "bank-a").unwrap();
        let a2 = partner_token(&ks, k, "4729381657", "bank-a").unwrap();
        let b = partner_token(&ks, k, "4729381657", "bank-b").unwrap();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_eq!(a1.len(), PARTNER_TOKEN_DIGITS);
        assert!(a1.bytes().all(|c| c.is_ascii_digit()));
        // Framing: moving characters between the UIN and the partner id changes the token.
        assert_ne!(partner_token(&ks, k, "47293816", "57bank-a").unwrap(), a1);
        assert!(partner_token(&ks, ks.current(Purpose::Lookup), "1", "p").is_err());
        // Always exactly 36 digits, whatever the MAC (a 120-bit value could need 37).
        for i in 0..500 {
            assert_eq!(partner_token(&ks, k, &i.to_string(), "p").unwrap().len(), PARTNER_TOKEN_DIGITS);
        }
    }

    #[test]
    fn lookup_digests_separate_kinds_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ks = SoftwareKeystore::create(dir.path(), MasterKey::generate().unwrap(), None, 0).unwrap();
        let k = ks.current(Purpose::Lookup);
        let u = lookup_digest(&ks, k, "uin", "4729381657").unwrap();
        assert_eq!(u, lookup_digest(&ks, k, "uin", "4729381657").unwrap());
        assert_ne!(u, lookup_digest(&ks, k, "vid", "4729381657").unwrap());
        // A different keystore (another country, or a stolen database without keys) cannot
        // recompute it.
        let dir2 = tempfile::tempdir().unwrap();
        let other = SoftwareKeystore::create(dir2.path(), MasterKey::generate().unwrap(), None, 0).unwrap();
        assert_ne!(u, lookup_digest(&other, k, "uin", "4729381657").unwrap());
        assert!(lookup_digest(&ks, ks.current(Purpose::PartnerToken), "uin", "1").is_err());
    }
}

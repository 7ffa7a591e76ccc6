//! SD-JWT verifiable credentials: issuing, presenting (a holder keeps only some disclosures) and
//! verifying, as RFC 9901 (Selective Disclosure for JWTs) and draft-ietf-oauth-sd-jwt-vc (SD-JWT
//! VC, media type `dc+sd-jwt`) define them.
//!
//! What Tessera issues, and what this verifier therefore takes:
//! - the issuer-signed JWT: header `{"alg":"EdDSA","kid":<signing key version>,"typ":"dc+sd-jwt"}`
//!   (Ed25519, RFC 8037), payload `iss`, `vct`, `jti`, `iat`, `nbf`, `exp`, `_sd_alg: "sha-256"`
//!   and `_sd`: the sorted digests of every personal claim, padded with decoy digests to a
//!   multiple of `DIGESTS_ROUND`, so the number of claims is hidden too. Nothing personal is in
//!   the clear;
//! - one disclosure per claim: base64url of the JSON array `[salt, name, value]`, the salt 128
//!   random bits; the digest of a disclosure is base64url(SHA-256(its ASCII text));
//! - the compact form `<jwt>~<disclosure>~…~`: no key binding JWT (no holder key is bound at
//!   issuance; OpenID4VCI's proof of possession adds `cnf` later). A presentation that carries
//!   one is refused as unsupported rather than half-checked.
//!
//! Only flat, top-level object disclosures are issued, and only they are accepted: an `_sd` or
//! an array-element disclosure (`{"...": digest}`) nested in a value is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use tessera_crypto::digest::{random_bytes, sha256};
use tessera_crypto::{Keystore, Purpose};

/// The media type (`typ`) of an SD-JWT VC (draft-ietf-oauth-sd-jwt-vc-19 §3.2.1).
pub const TYP: &str = "dc+sd-jwt";
/// The `typ` earlier drafts used; still accepted when verifying.
const TYP_OLD: &str = "vc+sd-jwt";
/// Longest credential or presentation accepted, in bytes.
pub const COMPACT_BYTES_MAX: usize = 256 * 1024;
/// Most disclosures in one credential.
pub const DISCLOSURES_MAX: usize = 128;
/// `_sd` is padded with decoys to a multiple of this.
const DIGESTS_ROUND: usize = 8;
/// Clock skew allowed on `iat` and `nbf`, seconds.
const SKEW_S: i64 = 60;

/// What can be wrong with a credential. Codes are stable; messages never repeat claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdJwtError {
    #[error("not an SD-JWT: {0}")]
    Malformed(&'static str),
    #[error("the credential is larger than {COMPACT_BYTES_MAX} bytes or has more than {DISCLOSURES_MAX} disclosures")]
    TooLarge,
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("the signing key {0:?} is not the issuer's")]
    UnknownKey(String),
    #[error("the issuer's signature does not verify")]
    BadSignature,
    #[error("the credential was issued by {0:?}, not the expected issuer")]
    WrongIssuer(String),
    #[error("the credential has expired")]
    Expired,
    #[error("the credential is not valid yet")]
    NotYetValid,
    #[error("a disclosure is not one the issuer signed")]
    UnknownDisclosure,
    #[error("a disclosure is given twice")]
    DuplicateDisclosure,
    #[error("a disclosure's claim name {0:?} is reserved or already in the credential")]
    ClaimConflict(String),
    #[error("the credential has no claim {0:?} to disclose")]
    NoSuchClaim(String),
    #[error("signing failed: {0}")]
    Signing(&'static str),
}

impl SdJwtError {
    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            SdJwtError::Malformed(_) => "credential_malformed",
            SdJwtError::TooLarge => "credential_too_large",
            SdJwtError::Unsupported(_) => "credential_unsupported",
            SdJwtError::UnknownKey(_) => "credential_key_unknown",
            SdJwtError::BadSignature => "credential_signature_invalid",
            SdJwtError::WrongIssuer(_) => "credential_issuer_wrong",
            SdJwtError::Expired => "credential_expired",
            SdJwtError::NotYetValid => "credential_not_yet_valid",
            SdJwtError::UnknownDisclosure => "credential_disclosure_unknown",
            SdJwtError::DuplicateDisclosure => "credential_disclosure_duplicate",
            SdJwtError::ClaimConflict(_) => "credential_claim_conflict",
            SdJwtError::NoSuchClaim(_) => "credential_claim_missing",
            SdJwtError::Signing(_) => "credential_signing_failed",
        }
    }
}

/// Claims the issuer always writes in the clear; a disclosure may not name them.
const RESERVED: &[&str] = &["iss", "vct", "jti", "iat", "nbf", "exp", "cnf", "status", "sub", "_sd", "_sd_alg", "..."];

/// Whether a claim name is one the issuer writes in the clear (a personal claim may not use it).
#[must_use]
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// What to put in a credential.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    pub issuer: &'a str,
    pub vct: &'a str,
    /// `jti`: the credential's id.
    pub id: &'a str,
    pub issued_at_s: i64,
    pub expires_at_s: i64,
    /// The personal claims, every one selectively disclosable.
    pub disclosable: &'a Map<String, Value>,
}

/// An issued credential: the compact form and the key version that signed it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub compact: String,
    pub kid: String,
}

/// Issues an SD-JWT VC signed with the keystore's current signing key.
///
/// # Errors
/// `ClaimConflict` for a personal claim with a reserved name; `TooLarge`; `Signing` for a
/// keystore failure.
pub fn issue(ks: &dyn Keystore, c: &Claims<'_>) -> Result<Issued, SdJwtError> {
    if c.disclosable.len() > DISCLOSURES_MAX {
        return Err(SdJwtError::TooLarge);
    }
    let mut digests = BTreeSet::new();
    let mut disclosures = Vec::with_capacity(c.disclosable.len());
    for (name, value) in c.disclosable {
        if RESERVED.contains(&name.as_str()) {
            return Err(SdJwtError::ClaimConflict(name.clone()));
        }
        let salt: [u8; 16] = random_bytes().map_err(|_| SdJwtError::Signing("random number generator"))?;
        let d = B64.encode(serde_json::to_vec(&json!([B64.encode(salt), name, value])).unwrap_or_default());
        digests.insert(digest(&d));
        disclosures.push(d);
    }
    while digests.is_empty() || !digests.len().is_multiple_of(DIGESTS_ROUND) {
        let decoy: [u8; 32] = random_bytes().map_err(|_| SdJwtError::Signing("random number generator"))?;
        digests.insert(B64.encode(sha256(&[&decoy])));
    }
    let kid = ks.current(Purpose::Signing).to_string();
    let header = json!({ "alg": "EdDSA", "kid": kid, "typ": TYP });
    let payload = json!({
        "iss": c.issuer,
        "vct": c.vct,
        "jti": c.id,
        "iat": c.issued_at_s,
        "nbf": c.issued_at_s,
        "exp": c.expires_at_s,
        "_sd_alg": "sha-256",
        "_sd": digests.into_iter().collect::<Vec<_>>(),
    });
    let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload.to_string()));
    let (used, signature) = ks.sign(Purpose::Signing, signing_input.as_bytes()).map_err(|_| SdJwtError::Signing("keystore"))?;
    // The header names the version that signed (a rotation between `current` and `sign` would
    // make the two differ: sign again under the name given).
    if used.to_string() != kid {
        return issue(ks, c);
    }
    let mut compact = format!("{signing_input}.{}~", B64.encode(signature));
    for d in &disclosures {
        compact.push_str(d);
        compact.push('~');
    }
    if compact.len() > COMPACT_BYTES_MAX {
        return Err(SdJwtError::TooLarge);
    }
    Ok(Issued { compact, kid })
}

fn digest(disclosure: &str) -> String {
    B64.encode(sha256(&[disclosure.as_bytes()]))
}

/// A credential split into its parts (nothing verified yet).
struct Parts<'a> {
    jwt: &'a str,
    disclosures: Vec<&'a str>,
}

fn split(compact: &str) -> Result<Parts<'_>, SdJwtError> {
    if compact.len() > COMPACT_BYTES_MAX {
        return Err(SdJwtError::TooLarge);
    }
    let compact = compact.trim();
    let Some(body) = compact.strip_suffix('~') else {
        // After the last '~' there may be a key binding JWT (three segments); anything else is
        // a credential cut short.
        let last = compact.rsplit('~').next().unwrap_or_default();
        return Err(if compact.contains('~') && last.split('.').count() == 3 {
            SdJwtError::Unsupported("key binding JWTs")
        } else {
            SdJwtError::Malformed("truncated: no '~' after the last part")
        });
    };
    let mut it = body.split('~');
    let jwt = it.next().unwrap_or_default();
    let disclosures: Vec<&str> = it.collect();
    if disclosures.len() > DISCLOSURES_MAX {
        return Err(SdJwtError::TooLarge);
    }
    if disclosures.iter().any(|d| d.is_empty()) {
        return Err(SdJwtError::Malformed("an empty disclosure"));
    }
    Ok(Parts { jwt, disclosures })
}

/// One disclosure decoded: `(name, value)`.
fn decode_disclosure(d: &str) -> Result<(String, Value), SdJwtError> {
    let bytes = B64.decode(d).map_err(|_| SdJwtError::Malformed("a disclosure is not base64url"))?;
    let Ok(Value::Array(mut a)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(SdJwtError::Malformed("a disclosure is not a JSON array"));
    };
    match a.len() {
        3 => {}
        2 => return Err(SdJwtError::Unsupported("array element disclosures")),
        _ => return Err(SdJwtError::Malformed("a disclosure is not [salt, name, value]")),
    }
    let value = a.pop().unwrap_or(Value::Null);
    let (Some(Value::String(name)), Some(Value::String(_salt))) = (a.pop(), a.pop()) else {
        return Err(SdJwtError::Malformed("a disclosure's salt or name is not a string"));
    };
    Ok((name, value))
}

fn decode_json(segment: &str, what: &'static str) -> Result<Map<String, Value>, SdJwtError> {
    let bytes = B64.decode(segment).map_err(|_| SdJwtError::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SdJwtError::Malformed(what)),
    }
}

/// Keeps only the disclosures of `names` (the holder's choice): what a resident hands a verifier.
///
/// # Errors
/// `NoSuchClaim` for a name the credential does not disclose; a malformed credential.
pub fn present(compact: &str, names: &[&str]) -> Result<String, SdJwtError> {
    let parts = split(compact)?;
    let mut out = format!("{}~", parts.jwt);
    let mut found = BTreeSet::new();
    for d in &parts.disclosures {
        let (name, _) = decode_disclosure(d)?;
        if names.contains(&name.as_str()) {
            found.insert(name);
            out.push_str(d);
            out.push('~');
        }
    }
    if let Some(missing) = names.iter().find(|n| !found.contains(**n)) {
        return Err(SdJwtError::NoSuchClaim((*missing).to_owned()));
    }
    Ok(out)
}

/// A verified credential: the clear claims and the disclosed ones, merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub vct: String,
    pub kid: String,
    pub id: Option<String>,
    pub issued_at_s: Option<i64>,
    pub expires_at_s: Option<i64>,
    /// Every claim the presentation discloses, by name.
    pub disclosed: BTreeMap<String, Value>,
}

/// Verifies a credential or presentation: the issuer's EdDSA signature under the key `kid`
/// names (`key_of` gives its raw 32-byte public key: the issuer's JWKS), the issuer when
/// `expect_issuer` is given, the validity window at `now_s`, and that every disclosure is one
/// the issuer signed, given once.
///
/// # Errors
/// One `SdJwtError` per fault, each with its own code.
pub fn verify(
    compact: &str,
    key_of: &dyn Fn(&str) -> Option<Vec<u8>>,
    expect_issuer: Option<&str>,
    now_s: i64,
) -> Result<Verified, SdJwtError> {
    let parts = split(compact)?;
    let segments: Vec<&str> = parts.jwt.split('.').collect();
    let [h, p, s] = segments[..] else { return Err(SdJwtError::Malformed("the issuer-signed JWT is not three segments")) };
    let header = decode_json(h, "the JWT header is not base64url JSON")?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(SdJwtError::Unsupported("signature algorithms other than EdDSA"));
    }
    if !matches!(header.get("typ").and_then(Value::as_str), Some(TYP | TYP_OLD)) {
        return Err(SdJwtError::Malformed("the JWT typ is not dc+sd-jwt"));
    }
    if header.contains_key("crit") {
        return Err(SdJwtError::Unsupported("critical header parameters"));
    }
    let kid = header.get("kid").and_then(Value::as_str).ok_or(SdJwtError::Malformed("the JWT header names no kid"))?;
    let key = key_of(kid).ok_or_else(|| SdJwtError::UnknownKey(kid.to_owned()))?;
    let signature = B64.decode(s).map_err(|_| SdJwtError::Malformed("the signature is not base64url"))?;
    tessera_crypto::verify_ed25519(&key, format!("{h}.{p}").as_bytes(), &signature).map_err(|_| SdJwtError::BadSignature)?;

    // Signed: the payload is the issuer's.
    let mut payload = decode_json(p, "the JWT payload is not base64url JSON")?;
    let text = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let issuer = text(&payload, "iss").ok_or(SdJwtError::Malformed("no iss"))?;
    if let Some(expected) = expect_issuer
        && expected != issuer
    {
        return Err(SdJwtError::WrongIssuer(issuer));
    }
    let vct = text(&payload, "vct").ok_or(SdJwtError::Malformed("no vct"))?;
    let int = |k: &str| -> Result<Option<i64>, SdJwtError> {
        match payload.get(k) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or(SdJwtError::Malformed("a time claim is not an integer")),
        }
    };
    let (iat, nbf, exp) = (int("iat")?, int("nbf")?, int("exp")?);
    if exp.is_some_and(|e| now_s >= e) {
        return Err(SdJwtError::Expired);
    }
    if nbf.into_iter().chain(iat).any(|t| t > now_s + SKEW_S) {
        return Err(SdJwtError::NotYetValid);
    }
    match payload.get("_sd_alg").and_then(Value::as_str) {
        None | Some("sha-256") => {}
        Some(_) => return Err(SdJwtError::Unsupported("digest algorithms other than sha-256")),
    }
    let digests: BTreeSet<&str> = match payload.get("_sd") {
        None => BTreeSet::new(),
        Some(Value::Array(a)) => {
            a.iter().map(|d| d.as_str().ok_or(SdJwtError::Malformed("an _sd entry is not a string"))).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(SdJwtError::Malformed("_sd is not an array")),
    }
    .into_iter()
    .collect();
    let mut seen = BTreeSet::new();
    let mut disclosed = BTreeMap::new();
    for d in &parts.disclosures {
        let dg = digest(d);
        if !digests.contains(dg.as_str()) {
            return Err(SdJwtError::UnknownDisclosure);
        }
        if !seen.insert(dg) {
            return Err(SdJwtError::DuplicateDisclosure);
        }
        let (name, value) = decode_disclosure(d)?;
        if RESERVED.contains(&name.as_str()) || payload.contains_key(&name) || disclosed.contains_key(&name) {
            return Err(SdJwtError::ClaimConflict(name));
        }
        if nested_sd(&value) {
            return Err(SdJwtError::Unsupported("nested selective disclosure"));
        }
        disclosed.insert(name, value);
    }
    let id = text(&payload, "jti");
    payload.remove("_sd");
    if payload.values().any(nested_sd) {
        return Err(SdJwtError::Unsupported("nested selective disclosure"));
    }
    Ok(Verified { issuer, vct, kid: kid.to_owned(), id, issued_at_s: iat, expires_at_s: exp, disclosed })
}

/// Whether a value holds an `_sd` digest list or an array-element digest anywhere inside.
fn nested_sd(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("_sd") || m.contains_key("...") || m.values().any(nested_sd),
        Value::Array(a) => a.iter().any(nested_sd),
        _ => false,
    }
}

/// The issuer's JSON Web Key Set (RFC 7517, OKP keys as RFC 8037 defines them): every version
/// of the signing key, so credentials signed before a rotation still verify offline.
///
/// # Errors
/// Keystore failures reading a public key.
pub fn jwks(ks: &dyn Keystore) -> Result<Value, tessera_crypto::CryptoError> {
    let mut keys = Vec::new();
    for info in ks.list().into_iter().filter(|k| k.id.purpose == Purpose::Signing) {
        let public = ks.public_key(info.id)?;
        keys.push(
            json!({ "kty": "OKP", "crv": "Ed25519", "x": B64.encode(public), "kid": info.id.to_string(), "use": "sig", "alg": "EdDSA" }),
        );
    }
    Ok(json!({ "keys": keys }))
}

/// The raw public keys of a JWKS, by `kid` (keys that are not Ed25519 OKP keys are skipped).
#[must_use]
pub fn keys_of_jwks(jwks: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for k in jwks.get("keys").and_then(Value::as_array).into_iter().flatten() {
        let field = |n: &str| k.get(n).and_then(Value::as_str);
        if field("kty") == Some("OKP")
            && field("crv") == Some("Ed25519")
            && let (Some(kid), Some(x)) = (field("kid"), field("x"))
            && let Ok(raw) = B64.decode(x)
            && raw.len() == 32
        {
            out.insert(kid.to_owned(), raw);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_crypto::{MasterKey, SoftwareKeystore};

    fn keystore() -> (tempfile::TempDir, SoftwareKeystore) {
        let dir = tempfile::tempdir().unwrap();
        let ks = SoftwareKeystore::create(dir.path(), MasterKey::generate().unwrap(), None, 0).unwrap();
        (dir, ks)
    }

    fn person() -> Map<String, Value> {
        json!({
            "uin": "4527831096",
            "fullName": [{ "language": "eng", "value": "Amina Diallo" }],
            "dateOfBirth": "1990-04-12",
            "gender": "F",
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn issued(ks: &SoftwareKeystore, claims: &Map<String, Value>) -> String {
        let c = Claims {
            issuer: "https://id.example",
            vct: "urn:test:id",
            id: "urn:uuid:1",
            issued_at_s: 1000,
            expires_at_s: 2000,
            disclosable: claims,
        };
        issue(ks, &c).unwrap().compact
    }

    fn keys(ks: &SoftwareKeystore) -> impl Fn(&str) -> Option<Vec<u8>> {
        let set = keys_of_jwks(&jwks(ks).unwrap());
        move |kid| set.get(kid).cloned()
    }

    #[test]
    fn an_issued_credential_verifies_and_hides_what_the_holder_withholds() {
        let (_d, ks) = keystore();
        let cred = issued(&ks, &person());
        // Nothing personal is in the clear.
        let jwt = cred.split('~').next().unwrap();
        let payload = String::from_utf8(B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert!(!payload.contains("Amina") && !payload.contains("1990") && !payload.contains("4527831096"), "{payload}");
        let digests = serde_json::from_str::<Value>(&payload).unwrap()["_sd"].as_array().unwrap().len();
        assert_eq!(digests % DIGESTS_ROUND, 0, "padded with decoys");

        let all = verify(&cred, &keys(&ks), Some("https://id.example"), 1500).unwrap();
        assert_eq!(all.disclosed.len(), 4);
        assert_eq!(all.disclosed["dateOfBirth"], json!("1990-04-12"));
        assert_eq!(all.kid, "signing.v1");

        let shown = present(&cred, &["dateOfBirth"]).unwrap();
        let some = verify(&shown, &keys(&ks), None, 1500).unwrap();
        assert_eq!(some.disclosed.keys().collect::<Vec<_>>(), vec!["dateOfBirth"]);
        assert_eq!(shown.matches('~').count(), 2, "the JWT and one disclosure");
        assert_eq!(present(&cred, &["email"]).unwrap_err().code(), "credential_claim_missing");
    }

    #[test]
    fn each_forgery_has_its_own_code() {
        let (_d, ks) = keystore();
        let cred = issued(&ks, &person());
        let k = keys(&ks);
        let code = |c: &str, now: i64| verify(c, &k, Some("https://id.example"), now).unwrap_err().code();

        // A disclosure the issuer never signed, with a valid shape.
        let forged = B64.encode(serde_json::to_vec(&json!(["c2FsdA", "dateOfBirth", "1970-01-01"])).unwrap());
        assert_eq!(code(&format!("{}{forged}~", present(&cred, &[]).unwrap()), 1500), "credential_disclosure_unknown");
        // The same disclosure twice.
        let d1 = cred.split('~').nth(1).unwrap();
        assert_eq!(code(&format!("{cred}{d1}~"), 1500), "credential_disclosure_duplicate");
        // A payload changed after signing.
        let mut segs: Vec<String> = cred.split('~').next().unwrap().split('.').map(str::to_owned).collect();
        let mut payload: Value = serde_json::from_slice(&B64.decode(&segs[1]).unwrap()).unwrap();
        payload["exp"] = json!(9_999_999_999_i64);
        segs[1] = B64.encode(payload.to_string());
        assert_eq!(code(&format!("{}~", segs.join(".")), 1500), "credential_signature_invalid");
        // Another issuer's key under the same kid.
        let (_d2, other) = keystore();
        assert_eq!(verify(&issued(&other, &person()), &k, None, 1500).unwrap_err().code(), "credential_signature_invalid");
        // A kid the issuer never published.
        assert_eq!(verify(&cred, &|_| None, None, 1500).unwrap_err().code(), "credential_key_unknown");
        assert_eq!(code(&cred, 2000), "credential_expired");
        assert_eq!(code(&cred, 100), "credential_not_yet_valid");
        assert_eq!(verify(&cred, &k, Some("https://other.example"), 1500).unwrap_err().code(), "credential_issuer_wrong");
        // alg none, a key binding JWT, garbage, a truncated credential.
        let none = format!("{}.{}.~", B64.encode(r#"{"alg":"none","typ":"dc+sd-jwt","kid":"signing.v1"}"#), segs[1]);
        assert_eq!(code(&none, 1500), "credential_unsupported");
        assert_eq!(code(&format!("{cred}eyJhbGciOiJFZERTQSJ9.e30.sig"), 1500), "credential_unsupported");
        assert_eq!(code("not a credential", 1500), "credential_malformed");
        assert_eq!(code(&cred[..cred.len() - 5], 1500), "credential_malformed");
        assert_eq!(code(&cred[..cred.len() / 3], 1500), "credential_malformed");
        assert_eq!(code(&"a".repeat(COMPACT_BYTES_MAX + 1), 1500), "credential_too_large");
    }

    #[test]
    fn reserved_names_cannot_be_issued_and_old_keys_still_verify() {
        let (_d, ks) = keystore();
        let mut bad = person();
        bad.insert("iss".into(), json!("https://evil.example"));
        let c = Claims { issuer: "i", vct: "v", id: "x", issued_at_s: 0, expires_at_s: 10, disclosable: &bad };
        assert_eq!(issue(&ks, &c).unwrap_err().code(), "credential_claim_conflict");

        let before = issued(&ks, &person());
        ks.rotate(Purpose::Signing, 1).unwrap();
        let after = issued(&ks, &person());
        let k = keys(&ks);
        assert_eq!(verify(&before, &k, None, 1500).unwrap().kid, "signing.v1");
        assert_eq!(verify(&after, &k, None, 1500).unwrap().kid, "signing.v2");
    }
}

//! Who may call the admin API: roles, what each may do, and bearer tokens.
//!
//! A token is `tsr_` + 43 base64url characters (256 random bits). Only its SHA-256 is stored; it
//! is shown once, when created. Authentication looks the hash up, then checks revocation and
//! expiry, so each failure has its own stable code.

use crate::audit::{self, Event};
use crate::{Actor, RepoError, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use tessera_crypto::Keystore;
use tessera_crypto::digest::{random_bytes, sha256};
use tessera_store::api_tokens::{self, TokenRow};
use tessera_store::{Db, UnixMillis};

const TOKEN_PREFIX: &str = "tsr_";
/// Longest token name, in characters.
pub const TOKEN_NAME_CHARS_MAX: usize = 100;

/// Roles of staff using the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including erasure and token management.
    Admin,
    /// Registration officers: create identities (the pipeline does it for them later).
    Operator,
    /// Supervisors: create, read, correct identities and see their history.
    Supervisor,
    /// Adjudicators: read identities to decide on duplicates.
    Adjudicator,
    /// Auditors: the audit log and change history (who/when/why), never record contents.
    Auditor,
    /// A system using the ABIS (MOSIP's registration processor, Tessera's own pipeline): ABIS
    /// requests only, never identity records.
    AbisClient,
}

/// Things a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    IdentityCreate,
    IdentityRead,
    IdentityUpdate,
    IdentityErase,
    /// Version metadata: who, when, why.
    IdentityHistory,
    AuditRead,
    /// Send ABIS requests (insert, identify, delete, counts).
    AbisRequest,
    /// Upload registration packets (registration clients).
    PacketUpload,
    /// See a packet's status and history (and the UIN once issued).
    PacketRead,
    /// See adjudication cases (a registration beside its candidates; audited) and decide them.
    Adjudicate,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Admin, Role::Operator, Role::Supervisor, Role::Adjudicator, Role::Auditor, Role::AbisClient];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Adjudicator => "adjudicator",
            Role::Auditor => "auditor",
            Role::AbisClient => "abis_client",
        }
    }

    /// # Errors
    /// `BadRequest` for an unknown role.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(RepoError::BadRequest("unknown role"))
    }

    /// The one table of who may do what.
    #[must_use]
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(p, P::IdentityCreate | P::PacketUpload | P::PacketRead),
            Role::Supervisor => {
                matches!(p, P::IdentityCreate | P::IdentityRead | P::IdentityUpdate | P::IdentityHistory | P::PacketUpload | P::PacketRead)
            }
            Role::Adjudicator => matches!(p, P::IdentityRead | P::IdentityHistory | P::PacketRead | P::Adjudicate),
            Role::Auditor => matches!(p, P::IdentityHistory | P::AuditRead),
            Role::AbisClient => matches!(p, P::AbisRequest),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
}

impl Principal {
    #[must_use]
    pub fn actor(&self, request_id: &str) -> Actor {
        Actor { id: format!("token:{}", self.token_id), request_id: request_id.to_owned() }
    }
}

/// Why a bearer token was refused. Each has a stable code; none echoes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the bearer token has been revoked")]
    Revoked,
    #[error("the bearer token has expired")]
    Expired,
}

impl AuthError {
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Invalid => "token_invalid",
            AuthError::Revoked => "token_revoked",
            AuthError::Expired => "token_expired",
        }
    }
}

fn secret_hash(token: &str) -> [u8; 32] {
    sha256(&[b"tessera-api-token-1\0", token.as_bytes()])
}

/// A newly created token: its record and the secret, to show once.
#[derive(Debug)]
pub struct NewToken {
    pub row: TokenRow,
    pub secret: String,
}

/// Creates a token. The secret is returned once and never stored.
///
/// # Errors
/// A bad name, database errors.
pub async fn create_token(
    db: &Db,
    ks: &dyn Keystore,
    actor: &Actor,
    name: &str,
    role: Role,
    expires_at_ms: Option<UnixMillis>,
    now: UnixMillis,
) -> Result<NewToken> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > TOKEN_NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(RepoError::BadRequest("token name must be 1 to 100 printable characters"));
    }
    if expires_at_ms.is_some_and(|e| e <= now) {
        return Err(RepoError::BadRequest("token expiry must be in the future"));
    }
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()?));
    let row = TokenRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        created_at_ms: now,
        expires_at_ms,
        revoked_at_ms: None,
    };
    api_tokens::insert(db, &row, &secret_hash(&secret)).await?;
    record(db, ks, actor, "token.create", &row.id, now).await?;
    Ok(NewToken { row, secret })
}

/// Revokes a token by id. Returns false when it was unknown or already revoked.
///
/// # Errors
/// Database errors.
pub async fn revoke_token(db: &Db, ks: &dyn Keystore, actor: &Actor, id: &str, now: UnixMillis) -> Result<bool> {
    let done = api_tokens::revoke(db, id, now).await?;
    if done {
        record(db, ks, actor, "token.revoke", id, now).await?;
    }
    Ok(done)
}

async fn record(db: &Db, ks: &dyn Keystore, actor: &Actor, action: &'static str, target: &str, now: UnixMillis) -> Result<()> {
    let mut tx = db.begin().await?;
    let e =
        Event { actor: actor.id.clone(), action, target: target.to_owned(), outcome: "ok".into(), request_id: actor.request_id.clone() };
    audit::append(&mut tx, ks, &[e], now).await?;
    tx.commit().await?;
    Ok(())
}

/// Checks a bearer token.
///
/// # Errors
/// `Ok(Err(AuthError))` for a refused token; `Err` for database errors.
pub async fn authenticate(db: &Db, token: &str, now: UnixMillis) -> Result<std::result::Result<Principal, AuthError>> {
    // Shape first: a malformed token costs no database round trip.
    if !token.starts_with(TOKEN_PREFIX) || token.len() != TOKEN_PREFIX.len() + 43 {
        return Ok(Err(AuthError::Invalid));
    }
    let Some(row) = api_tokens::find_by_hash(db, &secret_hash(token)).await? else {
        return Ok(Err(AuthError::Invalid));
    };
    if row.revoked_at_ms.is_some() {
        return Ok(Err(AuthError::Revoked));
    }
    if row.expires_at_ms.is_some_and(|e| e <= now) {
        return Ok(Err(AuthError::Expired));
    }
    let role = Role::parse(&row.role).map_err(|_| RepoError::Corrupt("token with an unknown role"))?;
    Ok(Ok(Principal { token_id: row.id, role }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_erase_and_auditors_never_read_records() {
        for r in Role::ALL {
            assert_eq!(r.allows(Permission::IdentityErase), r == Role::Admin);
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert!(!Role::Auditor.allows(Permission::IdentityRead));
        assert!(!Role::Operator.allows(Permission::IdentityRead));
        assert!(Role::Auditor.allows(Permission::AuditRead));
        assert!(!Role::Supervisor.allows(Permission::AuditRead));
        assert!(Role::AbisClient.allows(Permission::AbisRequest));
        assert!(!Role::AbisClient.allows(Permission::IdentityRead));
        assert!(!Role::Adjudicator.allows(Permission::AbisRequest));
    }
}

//! Verifiable credentials: the issuer's public keys (`/.well-known/jwks.json`, public, as a
//! verifier fetches them) and a person's credentials (`/v1/identities/{uin}/credentials`:
//! listed with `identity_read`, issued afresh with `identity_update`; both audited).

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::identities::parse_uin;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::Value;
use tessera_credentials::{CredentialError, Credentials};
use tessera_idrepo::access::Permission;
use tessera_store::now_ms;
use utoipa::ToSchema;

/// A credential as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialDto {
    #[schema(example = "urn:uuid:01936d4e-8f00-7000-8000-000000000000")]
    pub id: String,
    /// `dc+sd-jwt`: an SD-JWT VC (RFC 9901, draft-ietf-oauth-sd-jwt-vc).
    pub format: String,
    /// `active`, `superseded` (a newer one was issued) or `revoked`.
    pub status: String,
    /// The signing key version (the JWS `kid`, found in the JWKS).
    pub kid: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// The compact credential `<jwt>~<disclosure>~…~`, every disclosure included: the holder
    /// chooses which to present (`tessera credential present`).
    pub credential: Option<String>,
}

impl From<tessera_credentials::Credential> for CredentialDto {
    fn from(c: tessera_credentials::Credential) -> Self {
        CredentialDto {
            id: c.id,
            format: c.format,
            status: c.status,
            kid: c.kid,
            issued_at_ms: c.issued_at_ms,
            expires_at_ms: c.expires_at_ms,
            credential: c.credential,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<CredentialDto>,
}

fn credentials(state: &AppState) -> Result<&Credentials, ApiError> {
    state
        .credentials
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "credentials_disabled", "this server issues no credentials"))
}

fn cred_error(e: CredentialError) -> ApiError {
    let code = e.code();
    match e {
        CredentialError::Repo(r) => r.into(),
        CredentialError::Store(s) => s.into(),
        CredentialError::Format(_) | CredentialError::Crypto(_) | CredentialError::Config(_) => ApiError::internal(code, &e),
    }
}

/// The issuer's JSON Web Key Set: every version of the credential signing key (Ed25519, RFC
/// 8037), so a verifier checks credentials offline, old ones included. Public: no token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "credentials",
    responses(
        (status = 200, description = "The JWKS", body = Object),
        (status = 503, description = "This server issues no credentials (credentials_disabled)", body = ErrorBody),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let set: Value = credentials(&state)?.jwks().map_err(cred_error)?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], Json(set)))
}

/// A person's credentials, newest first (at most 100). Audited (`credential.read`).
#[utoipa::path(get, path = "/v1/identities/{uin}/credentials", tag = "credentials",
    params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The credentials", body = CredentialList),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not read identities", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
        (status = 503, description = "This server issues no credentials", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller, Path(uin): Path<String>) -> Result<Json<CredentialList>, ApiError> {
    caller.require(Permission::IdentityRead)?;
    let uin = parse_uin(&state, &uin)?;
    let list = credentials(&state)?.list(&caller.actor(), &uin, now_ms()).await.map_err(cred_error)?;
    Ok(Json(CredentialList { credentials: list.into_iter().map(CredentialDto::from).collect() }))
}

/// Issues the person a new credential from their current record (after a key rotation, or for
/// an identity created through this API rather than a registration); it supersedes the older
/// ones. Audited (`credential.issue`).
#[utoipa::path(post, path = "/v1/identities/{uin}/credentials", tag = "credentials",
    params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Issued", body = CredentialDto),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not change identities", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
        (status = 503, description = "This server issues no credentials", body = ErrorBody),
    ))]
pub async fn issue(State(state): State<AppState>, caller: Caller, Path(uin): Path<String>) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::IdentityUpdate)?;
    let uin = parse_uin(&state, &uin)?;
    let creds = credentials(&state)?;
    let actor = caller.actor();
    let now = now_ms();
    let id = state.repo.identity_id_of(&uin).await?;
    let source = format!("api:{}", uuid::Uuid::now_v7());
    let row = creds.issue_for(&actor, &id, &source, now).await.map_err(cred_error)?;
    let c = creds.open(&row).await.map_err(cred_error)?;
    Ok((StatusCode::CREATED, Json(CredentialDto::from(c))))
}

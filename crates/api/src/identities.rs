//! `/v1/identities`: the identity repository's admin API. Every handler authenticates the
//! caller, checks the role, and hands over to `IdRepo`, which audits. Bodies and errors carry
//! UINs only where the caller asked for that person; never in logs (routes are logged as
//! templates).

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tessera_core::Uin;
use tessera_idrepo::access::Permission;
use tessera_idrepo::records::{Change, NewRecord};
use tessera_store::now_ms;
use utoipa::{IntoParams, ToSchema};

/// Body of `POST /v1/identities`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentity {
    /// The identity fields, as the identity schema (`tessera schema show`) defines them.
    #[schema(value_type = Object)]
    pub record: Value,
    /// Contents of documents and biometrics, base64, by the `ref` the record gives them.
    #[serde(default)]
    pub attachments: BTreeMap<String, String>,
    /// This person's id in a legacy register (migration); unique.
    #[serde(default)]
    pub external_ref: Option<String>,
    /// Why: kept sealed with the version.
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    #[schema(example = "4527831096")]
    pub uin: String,
    pub version: i64,
}

/// An identity as read.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityDto {
    pub uin: String,
    pub version: i64,
    #[schema(value_type = Object)]
    pub record: Map<String, Value>,
    /// Sizes in bytes of the documents and biometrics held, by ref.
    pub attachments: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The key-encryption key the person's data key is wrapped under (`identity.v2`).
    pub sealed_with: String,
}

/// Body of `PATCH /v1/identities/{uin}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchIdentity {
    /// A JSON merge patch (RFC 7396) of the record: `null` removes a field.
    #[schema(value_type = Object)]
    pub record: Value,
    #[serde(default)]
    pub attachments: BTreeMap<String, String>,
    /// Refuse the change (409) unless this is still the current version.
    #[serde(default)]
    pub expected_version: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    pub version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDto {
    pub version: i64,
    pub at_ms: i64,
    /// Who: `token:<id>`, `cli`, `system`.
    pub actor: String,
    /// Why (only for roles that may read records: a reason can name people).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The record at this version (only for roles that may read records).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub record: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Versions {
    pub versions: Vec<VersionDto>,
}

pub(crate) fn parse_uin(state: &AppState, s: &str) -> Result<Uin, ApiError> {
    Uin::parse_with(s, state.repo.rules())
        .map_err(|rule| ApiError::new(StatusCode::BAD_REQUEST, "uin_invalid", format!("not a valid UIN ({})", rule.code())))
}

fn decode(attachments: BTreeMap<String, String>) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    attachments
        .into_iter()
        .map(|(k, v)| {
            STANDARD
                .decode(v.as_bytes())
                .map(|b| (k, b))
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "attachment_invalid", "an attachment is not valid base64"))
        })
        .collect()
}

/// Creates an identity and issues its UIN from the pool.
#[utoipa::path(post, path = "/v1/identities", tag = "identities", request_body = CreateIdentity,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the UIN is issued", body = Created),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid token (token_missing, token_invalid, token_revoked, token_expired)", body = ErrorBody),
        (status = 403, description = "The role may not create identities", body = ErrorBody),
        (status = 409, description = "The external reference exists already", body = ErrorBody),
        (status = 422, description = "The record does not match the schema; `details` lists every problem", body = ErrorBody),
        (status = 503, description = "The UIN pool is empty (a refill is on its way)", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateIdentity>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::IdentityCreate)?;
    let new =
        NewRecord { record: body.record, attachments: decode(body.attachments)?, external_ref: body.external_ref, reason: body.reason };
    let c = state.repo.create(&caller.actor(), new, now_ms()).await?;
    let location = format!("/v1/identities/{}", c.uin.expose());
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(Created { uin: c.uin.expose().to_owned(), version: c.version })))
}

/// Reads the current version of an identity. Audited.
#[utoipa::path(get, path = "/v1/identities/{uin}", tag = "identities", params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The identity", body = IdentityDto),
        (status = 400, description = "Not a valid UIN", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not read identities", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, caller: Caller, Path(uin): Path<String>) -> Result<Json<IdentityDto>, ApiError> {
    caller.require(Permission::IdentityRead)?;
    let uin = parse_uin(&state, &uin)?;
    let i = state.repo.get(&caller.actor(), &uin, now_ms()).await?;
    Ok(Json(IdentityDto {
        uin: i.uin.expose().to_owned(),
        version: i.version,
        record: i.record,
        attachments: i.attachments,
        external_ref: i.external_ref,
        created_at_ms: i.created_at_ms,
        updated_at_ms: i.updated_at_ms,
        sealed_with: i.sealed_with,
    }))
}

/// Changes an identity: the patched record is validated and stored as a new version.
#[utoipa::path(patch, path = "/v1/identities/{uin}", tag = "identities", request_body = PatchIdentity,
    params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new version", body = Updated),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not change identities", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 409, description = "`expected_version` is not current", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
        (status = 422, description = "The patched record does not match the schema", body = ErrorBody),
    ))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(uin): Path<String>,
    Json(body): Json<PatchIdentity>,
) -> Result<Json<Updated>, ApiError> {
    caller.require(Permission::IdentityUpdate)?;
    let uin = parse_uin(&state, &uin)?;
    let change =
        Change { patch: body.record, attachments: decode(body.attachments)?, expected_version: body.expected_version, reason: body.reason };
    let version = state.repo.update(&caller.actor(), &uin, change, now_ms()).await?;
    Ok(Json(Updated { version }))
}

/// Every version: who changed the identity, when and why; with the records for roles that may
/// read them. Audited.
#[utoipa::path(get, path = "/v1/identities/{uin}/versions", tag = "identities", params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Oldest first", body = Versions),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not see history", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
    ))]
pub async fn versions(State(state): State<AppState>, caller: Caller, Path(uin): Path<String>) -> Result<Json<Versions>, ApiError> {
    caller.require(Permission::IdentityHistory)?;
    let uin = parse_uin(&state, &uin)?;
    let with_records = caller.principal.role.allows(Permission::IdentityRead);
    let versions = state.repo.versions(&caller.actor(), &uin, with_records, now_ms()).await?;
    Ok(Json(Versions {
        versions: versions
            .into_iter()
            .map(|v| VersionDto {
                version: v.version,
                at_ms: v.at_ms,
                actor: v.actor,
                reason: with_records.then_some(v.reason),
                record: v.record,
            })
            .collect(),
    }))
}

/// Erases an identity by destroying the person's data key (crypto-shredding). Afterwards reads
/// answer 410 and the UIN no longer resolves. Irreversible.
#[utoipa::path(delete, path = "/v1/identities/{uin}", tag = "identities", params(("uin" = String, Path, description = "The UIN")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only administrators erase", body = ErrorBody),
        (status = 404, description = "No identity has this UIN", body = ErrorBody),
        (status = 410, description = "Already erased", body = ErrorBody),
    ))]
pub async fn erase(State(state): State<AppState>, caller: Caller, Path(uin): Path<String>) -> Result<StatusCode, ApiError> {
    caller.require(Permission::IdentityErase)?;
    let uin = parse_uin(&state, &uin)?;
    state.repo.erase(&caller.actor(), &uin, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The decrypted contents of one document or biometric of the current version. Audited.
#[utoipa::path(get, path = "/v1/identities/{uin}/attachments/{ref}", tag = "identities",
    params(("uin" = String, Path, description = "The UIN"), ("ref" = String, Path, description = "The ref the record gives the document")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The role may not read identities", body = ErrorBody),
        (status = 404, description = "No such identity or ref", body = ErrorBody),
        (status = 410, description = "The identity was erased", body = ErrorBody),
    ))]
pub async fn attachment(
    State(state): State<AppState>,
    caller: Caller,
    Path((uin, r#ref)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::IdentityRead)?;
    let uin = parse_uin(&state, &uin)?;
    let bytes = state.repo.attachment(&caller.actor(), &uin, &r#ref, now_ms()).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries after this sequence number (default 0).
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Largest audit page.
pub const AUDIT_PAGE_MAX: i64 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    /// The record id acted on (never a UIN).
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    /// Hex SHA-256 of this entry, chained to the previous one.
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryDto>,
}

/// The audit log, oldest first, for auditors.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only auditors and administrators", body = ErrorBody),
    ))]
pub async fn audit_log(State(state): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Permission::AuditRead)?;
    let limit = q.limit.unwrap_or(100).clamp(1, AUDIT_PAGE_MAX);
    let rows = tessera_store::audit::read(state.repo.db(), q.after, limit).await?;
    Ok(Json(AuditPage {
        entries: rows
            .into_iter()
            .map(|r| AuditEntryDto {
                seq: r.seq,
                at_ms: r.at_ms,
                actor: r.actor,
                action: r.action,
                target: r.target,
                outcome: r.outcome,
                request_id: r.request_id,
                hash: r.hash.iter().map(|b| format!("{b:02x}")).collect(),
            })
            .collect(),
    }))
}

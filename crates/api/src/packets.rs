//! `/v1/packets`: registration clients upload sealed packets; operators follow each packet's
//! stage, history and outcome. The upload checks the RID, the machine and its signature before
//! storing anything and answers 202 once the packet and its first job are committed.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tessera_idrepo::access::Permission;
use tessera_registration::RegError;
use tessera_store::now_ms;

/// Largest upload: MOSIP's 5 MB packet limit; `registration.packet_bytes_max` may lower it.
pub const PACKET_BODY_MAX: usize = tessera_registration::packet::PACKET_BYTES_DEFAULT;

pub(crate) fn registration(state: &AppState) -> Result<&tessera_registration::Registration, ApiError> {
    state
        .registration
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registration_disabled", "this process runs no registration"))
}

/// Uploads one packet (`<RID>.tpkt`, `application/octet-stream`).
#[utoipa::path(post, path = "/v1/packets", tag = "registration",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A packet in format tessera-packet-1"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted (or accepted before: `already`): `{\"rid\", \"status\", \"already\"}`", body = Object),
        (status = 400, description = "Not a packet: `packet_malformed`, `packet_rid_invalid`, `packet_version_unsupported`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Role may not upload; `machine_unknown`, `machine_revoked`, `machine_centre_mismatch`, `centre_inactive`, `packet_signature_invalid`", body = ErrorBody),
        (status = 409, description = "`packet_conflict`: another packet was uploaded under this RID", body = ErrorBody),
        (status = 413, description = "Larger than the packet limit", body = ErrorBody),
    ))]
pub async fn upload(State(state): State<AppState>, caller: Caller, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::PacketUpload)?;
    let reg = registration(&state)?;
    let accepted = reg.upload(&caller.actor(), body, now_ms()).await.map_err(reg_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "rid": accepted.rid, "status": accepted.status, "already": accepted.already }))))
}

/// A packet's status: stage, full history with times and reasons, and the UIN once issued.
#[utoipa::path(get, path = "/v1/packets/{rid}", tag = "registration",
    params(("rid" = String, Path, description = "The 29-digit registration id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"rid\", \"status\", \"stage\", \"flow\", \"reason\", \"uin\", \"received_at_ms\", \"updated_at_ms\", \"history\": [{\"stage\", \"outcome\", \"code\", \"detail\", \"at_ms\"}]}`", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Role may not read packets", body = ErrorBody),
        (status = 404, description = "`packet_not_found`", body = ErrorBody),
    ))]
pub async fn status(State(state): State<AppState>, caller: Caller, Path(rid): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::PacketRead)?;
    let reg = registration(&state)?;
    let s = reg.status(&rid).await.map_err(reg_error)?;
    Ok(Json(serde_json::to_value(s).unwrap_or(Value::Null)))
}

/// The one mapping of registration errors to HTTP.
pub(crate) fn reg_error(e: RegError) -> ApiError {
    let code = e.code();
    match e {
        RegError::Packet(p) => match p.code() {
            "packet_too_large" => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, code, p.to_string()),
            "packet_signature_invalid" => ApiError::new(StatusCode::FORBIDDEN, code, p.to_string()),
            _ => ApiError::new(StatusCode::BAD_REQUEST, code, p.to_string()),
        },
        RegError::MachineUnknown | RegError::MachineRevoked | RegError::MachineCentre | RegError::CentreInactive => {
            ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
        }
        RegError::PacketConflict => ApiError::new(StatusCode::CONFLICT, code, e.to_string()),
        RegError::NotFound | RegError::CaseNotFound => ApiError::new(StatusCode::NOT_FOUND, code, e.to_string()),
        RegError::CaseDecided => ApiError::new(StatusCode::CONFLICT, code, e.to_string()),
        RegError::CaseUinNotCandidate => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()),
        RegError::BadRequest(_) => ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string()),
        RegError::Repo(r) => r.into(),
        RegError::Store(s) => s.into(),
        RegError::Blob(_) | RegError::Crypto(_) | RegError::Abis(_) | RegError::Notify(_) | RegError::Credential(_) => {
            ApiError::internal(code, &e)
        }
    }
}

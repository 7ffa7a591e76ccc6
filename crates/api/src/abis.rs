//! `POST /v1/abis`: MOSIP's ABIS API over HTTP. The body is any MOSIP ABIS request (insert,
//! identify, delete, ping, pendingJobs, referenceCount) exactly as MOSIP puts it on its queue;
//! the answer is MOSIP's response, HTTP 200 whether the operation succeeded (`returnValue` 1) or
//! failed (`returnValue` 2 with MOSIP's `failureReason`), as on the queue. HTTP errors are for
//! what MOSIP's protocol has no answer for: no token, wrong role, no ABIS in this process.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use tessera_idrepo::access::Permission;
use tessera_store::now_ms;

/// Serves one MOSIP ABIS request.
#[utoipa::path(post, path = "/v1/abis", tag = "abis",
    request_body(content = Object, description = "A MOSIP ABIS request: `{\"id\": \"mosip.abis.insert\", \"version\": \"1.1\", \"requestId\", \"requesttime\", \"referenceId\", \"referenceURL\"}`, or identify (`flags.maxResults`, `flags.targetFPIR`, `gallery.referenceIds`), delete, ping, pendingJobs, referenceCount"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MOSIP's ABIS response: `returnValue` 1 (success; identify adds `candidateList`) or 2 with `failureReason` 1–18", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only the abis_client role and administrators", body = ErrorBody),
        (status = 503, description = "This process runs no ABIS (`abis_disabled`)", body = ErrorBody),
    ))]
pub async fn request(State(state): State<AppState>, caller: Caller, body: Bytes) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AbisRequest)?;
    let Some(engine) = &state.abis else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "abis_disabled", "this process runs no ABIS"));
    };
    let response = engine.handle(&body, now_ms()).await;
    Ok(Json(tessera_abis::engine::to_json(&response)))
}

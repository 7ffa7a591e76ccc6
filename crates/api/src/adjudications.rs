//! `/v1/adjudications`: registrations whose candidates are in doubt, for adjudicators. Reading
//! a case shows both records side by side and is audited; a decision is made once and the
//! pipeline goes on from it.

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::packets::{reg_error, registration};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tessera_idrepo::access::Permission;
use tessera_registration::adjudication::Decision;
use tessera_store::now_ms;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
pub struct CasesQuery {
    /// `open` (default) or `decided`; `all` for both.
    pub state: Option<String>,
    /// At most this many (default 50, at most 200).
    pub limit: Option<u32>,
    /// The next page: cases after this case id (the previous page's `next`).
    pub after: Option<String>,
}

/// Cases, oldest first (ids, RIDs and states only).
#[utoipa::path(get, path = "/v1/adjudications", tag = "registration", params(CasesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"cases\": [{\"id\", \"rid\", \"state\", \"decision\", \"created_at_ms\", \"decided_at_ms\"}], \"next\"}`; `next` (the last id, when the page is full) is the `after` of the next page", body = Object),
        (status = 400, description = "`bad_request`: unknown state", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only adjudicators and administrators", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, caller: Caller, Query(q): Query<CasesQuery>) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::Adjudicate)?;
    let reg = registration(&state)?;
    let wanted = match q.state.as_deref() {
        None => Some("open"),
        Some("all") => None,
        Some(s) => Some(s),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, tessera_registration::adjudication::CASES_PAGE_MAX);
    let cases = reg.cases(wanted, q.after.as_deref(), limit).await.map_err(reg_error)?;
    let next = (cases.len() == limit as usize).then(|| cases.last().map(|c| c.id.clone())).flatten();
    Ok(Json(json!({ "cases": cases, "next": next })))
}

/// One case: the registration beside each candidate, field by field, with every search's
/// score and per-field or per-modality evidence. The read is audited.
#[utoipa::path(get, path = "/v1/adjudications/{id}", tag = "registration",
    params(("id" = String, Path, description = "The case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`{\"id\", \"rid\", \"state\", \"decision\", \"duplicate_of\", \"reason\", \"registration\": {\"rid\", \"status\", \"flow\", \"biometrics\", \"record\"}, \"candidates\": [{\"rid\", \"uin\", \"record\", \"evidence\": [{\"source\", \"score\", \"decision\", \"detail\"}], \"fields\": [{\"field\", \"registration\", \"candidate\", \"same\"}]}]}`", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only adjudicators and administrators", body = ErrorBody),
        (status = 404, description = "`adjudication_not_found`", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::Adjudicate)?;
    let reg = registration(&state)?;
    let case = reg.case(&caller.actor(), &id, now_ms()).await.map_err(reg_error)?;
    Ok(Json(serde_json::to_value(case).unwrap_or(Value::Null)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `duplicate` or `not_duplicate`.
    pub decision: String,
    /// For `duplicate`: the UIN (one of the candidates') the person already has.
    pub uin: Option<String>,
    /// Why (1 to 500 characters; kept sealed).
    pub reason: String,
}

/// Decides a case once: `duplicate` (of a candidate's UIN) ends the registration without a
/// new UIN; `not_duplicate` sends it on to be issued.
#[utoipa::path(post, path = "/v1/adjudications/{id}/decision", tag = "registration", request_body = DecisionBody,
    params(("id" = String, Path, description = "The case id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The case, decided", body = Object),
        (status = 400, description = "`bad_request`: unknown decision, missing UIN or reason", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Only adjudicators and administrators", body = ErrorBody),
        (status = 404, description = "`adjudication_not_found`", body = ErrorBody),
        (status = 409, description = "`adjudication_decided`: decided already", body = ErrorBody),
        (status = 422, description = "`adjudication_uin_not_candidate`", body = ErrorBody),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<DecisionBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::Adjudicate)?;
    let reg = registration(&state)?;
    let decision = match (body.decision.as_str(), body.uin) {
        ("duplicate", Some(uin)) => Decision::Duplicate { uin },
        ("not_duplicate", None) => Decision::NotDuplicate,
        ("duplicate", None) => return Err(bad_request("a duplicate decision names the candidate's uin")),
        ("not_duplicate", Some(_)) => return Err(bad_request("a not_duplicate decision names no uin")),
        _ => return Err(bad_request("decision is duplicate or not_duplicate")),
    };
    let case = reg.decide_case(&caller.actor(), &id, &decision, &body.reason, now_ms()).await.map_err(reg_error)?;
    Ok(Json(serde_json::to_value(case).unwrap_or(Value::Null)))
}

fn bad_request(message: &'static str) -> ApiError {
    ApiError::new(axum::http::StatusCode::BAD_REQUEST, "bad_request", message)
}

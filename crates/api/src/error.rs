//! The one error type every handler returns, and its mapping to HTTP: a stable machine-readable
//! `code`, a human message, and for 5xx an opaque body (details go to the log, never to clients).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: clients branch on this, never on the message.
    #[schema(example = "not_found")]
    pub code: String,
    pub message: String,
    /// For `record_invalid`: every problem, as a JSON pointer into the request and a code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldProblem>,
}

/// One problem with one value: where and what, never the value itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    #[schema(example = "/record/dateOfBirth")]
    pub path: String,
    #[schema(example = "date_in_future")]
    pub code: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldProblem>,
}

impl ApiError {
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new() }
    }

    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// A server-side failure. `internal` is logged (it must hold no PII: store errors don't);
    /// the client sees only the code.
    #[must_use]
    pub fn internal(code: &'static str, internal: &dyn std::fmt::Display) -> Self {
        tracing::error!(code, error = %internal, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, "internal error")
    }

    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<tessera_store::StoreError> for ApiError {
    fn from(e: tessera_store::StoreError) -> Self {
        use tessera_store::StoreError as E;
        match &e {
            E::UinPoolEmpty => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()),
            E::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()),
            E::JobState(_) | E::UinNotAssigned | E::Conflict => Self::new(StatusCode::CONFLICT, e.code(), e.to_string()),
            E::UnsupportedUrl | E::Sql(_) | E::Migrate(_) | E::UinRules(_) | E::UnknownJobKind(_) => Self::internal(e.code(), &e),
        }
    }
}

impl From<tessera_idrepo::RepoError> for ApiError {
    fn from(e: tessera_idrepo::RepoError) -> Self {
        use tessera_idrepo::RepoError as E;
        let code = e.code();
        match e {
            E::Invalid(errs) => {
                let mut a = Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, "the record does not match the identity schema");
                a.details = errs
                    .into_iter()
                    .map(|f| FieldProblem { path: format!("/record{}", f.path), code: f.code.as_str().to_owned(), message: f.message })
                    .collect();
                a
            }
            E::BadRequest(_) => Self::new(StatusCode::BAD_REQUEST, code, e.to_string()),
            E::NotFound => Self::new(StatusCode::NOT_FOUND, code, e.to_string()),
            E::Gone => Self::new(StatusCode::GONE, code, e.to_string()),
            E::VersionConflict { .. } | E::DuplicateExternalRef => Self::new(StatusCode::CONFLICT, code, e.to_string()),
            E::Store(s) => s.into(),
            E::Blob(ref b) if b.code() == "blob_too_large" => Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, e.to_string()),
            E::Blob(_) | E::Crypto(_) | E::Corrupt(_) => Self::internal(code, &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message, details: self.details } };
        (self.status, Json(body)).into_response()
    }
}

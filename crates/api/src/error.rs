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
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
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
            E::JobState(_) | E::UinNotAssigned => Self::new(StatusCode::CONFLICT, e.code(), e.to_string()),
            E::UnsupportedUrl | E::Sql(_) | E::Migrate(_) | E::UinRules(_) | E::UnknownJobKind(_) => Self::internal(e.code(), &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

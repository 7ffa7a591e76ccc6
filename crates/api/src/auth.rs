//! Bearer-token authentication and role checks for every `/v1` endpoint. A handler takes a
//! `Caller` (which authenticates) and calls `require` with the permission it needs; 401 and 403
//! carry stable codes and never echo the token.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_idrepo::access::{self, AuthError, Permission};
use tessera_idrepo::{Actor, Principal};

/// An authenticated caller of a `/v1` endpoint.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub request_id: String,
}

impl Caller {
    /// # Errors
    /// 403 `forbidden` when the caller's role does not allow `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.principal.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("the role {} may not do this", self.principal.role.as_str())))
        }
    }

    #[must_use]
    pub fn actor(&self) -> Actor {
        self.principal.actor(&self.request_id)
    }
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750).
#[derive(Debug)]
pub struct Unauthorized(AuthError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut res = ApiError::new(StatusCode::UNAUTHORIZED, self.0.code(), self.0.to_string()).into_response();
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tessera\""));
        res
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let Some(token) = token else {
            return Err(Unauthorized(AuthError::Missing).into_response());
        };
        match access::authenticate(state.repo.db(), token, tessera_store::now_ms()).await {
            Ok(Ok(principal)) => {
                let request_id = parts.headers.get(crate::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                Ok(Caller { principal, request_id })
            }
            Ok(Err(e)) => Err(Unauthorized(e).into_response()),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}

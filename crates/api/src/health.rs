//! Operational endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.
//! They are public on purpose (load balancers and scrapers call them) and reveal counts only.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
}

/// Liveness: the process is up and serving. Touches nothing else.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Readiness: the database answers. A load balancer sends traffic only while this is 200.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let database = match state.db.backend() {
        tessera_store::Backend::Sqlite => "sqlite",
        tessera_store::Backend::Postgres => "postgres",
    };
    match tokio::time::timeout(crate::READY_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(Ready { status: "ready", database })),
        Ok(Err(e)) => {
            tracing::warn!(code = e.code(), error = %e, "readiness check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database does not answer"))
        }
        Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database did not answer in time")),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Only the unused count: it is cheap at any register size, and it is what operators alert on.
    if let Ok(n) = tessera_store::uin_pool::unused_count(&state.db).await {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^53
        metrics::gauge!("tessera_uin_pool_unused").set(n as f64);
    }
    state.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// This API's OpenAPI 3 description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.as_str().to_owned())
}

//! Tessera's HTTP API: the axum router, wire DTOs, the error → HTTP mapping, the OpenAPI
//! document, and the middleware every request passes through (request id, limits, timeout,
//! panic guard, metrics, logs).
//!
//! Architecture invariant: this is the only crate that knows HTTP and JSON wire formats. Logs
//! and metrics name the matched route template (`/v1/identities/{uin}`), never the raw path,
//! so an identifier in a URL never reaches a log line or a metric label.

mod abis;
mod adjudications;
mod auth;
mod credentials;
pub mod error;
mod health;
mod identities;
mod packets;
pub mod sbi_sim;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tessera_idrepo::IdRepo;
use tessera_store::Db;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

/// Largest request body accepted anywhere (endpoints that take packets set their own).
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// A request that has not finished by then is answered 408 and abandoned.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub repo: IdRepo,
    /// The ABIS engine, when this process serves one.
    pub abis: Option<Arc<tessera_abis::Engine>>,
    pub registration: Option<tessera_registration::Registration>,
    /// The credential issuer, when this server issues credentials.
    pub credentials: Option<tessera_credentials::Credentials>,
    metrics: PrometheusHandle,
    openapi: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "National foundational identity platform.", license(name = "Apache-2.0")),
    tags(
        (name = "operations", description = "Health, readiness, metrics, API description"),
        (name = "identities", description = "The identity repository (bearer token with a role)"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "abis", description = "MOSIP's ABIS API over HTTP (role abis_client)"),
        (name = "registration", description = "Registration packets: upload and status; adjudication of doubtful cases"),
        (name = "credentials", description = "Verifiable credentials (SD-JWT VC) and the issuer's JWKS"),
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the `/v1` endpoints name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// The process-wide Prometheus recorder (metrics macros need one global recorder).
///
/// # Panics
/// If another metrics recorder was installed first by someone else.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(PrometheusBuilder::install_recorder)
                .expect("the Prometheus recorder is installed once per process")
        })
        .clone()
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .routes(routes!(identities::create))
        .routes(routes!(identities::get, identities::patch, identities::erase))
        .routes(routes!(identities::versions))
        .routes(routes!(identities::attachment))
        .routes(routes!(identities::audit_log))
        .routes(routes!(abis::request))
        .routes(routes!(adjudications::list))
        .routes(routes!(adjudications::get))
        .routes(routes!(adjudications::decide))
        .routes(routes!(credentials::jwks))
        .routes(routes!(credentials::list, credentials::issue))
}

/// Routes whose bodies are packets, with their own (larger) body limit.
fn packet_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(packets::upload)).routes(routes!(packets::status))
}

/// The OpenAPI document of every endpoint this build serves.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_router().split_for_parts().1;
    doc.merge(packet_router().split_for_parts().1);
    doc
}

/// The whole HTTP application over the identity repository (and its database).
pub fn app(repo: IdRepo) -> Router {
    app_with(repo, None)
}

/// `app` with an ABIS engine behind `/v1/abis`.
pub fn app_with(repo: IdRepo, abis: Option<Arc<tessera_abis::Engine>>) -> Router {
    app_full(repo, abis, None, None)
}

/// The router with every part this process runs: the ABIS engine, the registration pipeline
/// (whose upload answers 503 `registration_disabled` without it) and the credential issuer
/// (503 `credentials_disabled` without it).
pub fn app_full(
    repo: IdRepo,
    abis: Option<Arc<tessera_abis::Engine>>,
    registration: Option<tessera_registration::Registration>,
    credentials: Option<tessera_credentials::Credentials>,
) -> Router {
    let (router, mut doc) = api_router().split_for_parts();
    let (packet_routes, packet_doc) = packet_router().split_for_parts();
    doc.merge(packet_doc);
    let doc = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    let packet_limit = registration.as_ref().map_or(packets::PACKET_BODY_MAX, |r| r.config().packet_bytes_max);
    let state =
        AppState { db: repo.db().clone(), repo, abis, registration, credentials, metrics: metrics_handle(), openapi: Arc::new(doc) };
    router
        .layer(RequestBodyLimitLayer::new(BODY_BYTES_MAX))
        .merge(packet_routes.layer(RequestBodyLimitLayer::new(packet_limit)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                    let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), route, request_id = id)
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_millis(), "request");
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(drop_foreign_request_ids))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
}

/// A caller's `x-request-id` is kept only when it is a UUID: anything else is free text that
/// would go straight into our logs (a name, a UIN), so it is replaced by one of ours.
async fn drop_foreign_request_ids(mut req: Request, next: Next) -> Response {
    let keep = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).is_some_and(|v| uuid::Uuid::try_parse(v).is_ok());
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed on this resource")
}

/// Layers below the router (body limit, timeout) answer with bare status codes; give those the
/// same JSON error shape as everything else.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let is_json = res.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return res;
    }
    match res.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body over {BODY_BYTES_MAX} bytes"))
                .into_response()
        }
        StatusCode::REQUEST_TIMEOUT => ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long").into_response(),
        // Extractor rejections (malformed JSON, wrong types, bad path or query): their text may
        // quote the request, which may hold personal data, so it is replaced by a fixed message.
        s @ (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY) => {
            ApiError::new(s, "body_invalid", "the request is not valid JSON of the shape this endpoint takes").into_response()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type_unsupported", "send Content-Type: application/json")
                .into_response()
        }
        _ => res,
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("tessera_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting connections and
/// lets in-flight requests finish.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

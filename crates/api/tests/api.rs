//! The HTTP API driven over real HTTP through `spawn_app()`, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

use std::collections::BTreeSet;
use tessera_store::Db;

struct TestApp {
    base: String,
    db: Db,
    client: reqwest::Client,
}

/// Starts the real router on a free port over a migrated database at `url`.
async fn spawn_app(url: &str) -> TestApp {
    let db = Db::open(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tessera_api::app(db.clone());
    tokio::spawn(tessera_api::serve(listener, app, std::future::pending()));
    TestApp { base, db, client: reqwest::Client::new() }
}

impl TestApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }
}

tessera_testkit::storage_tests!(ready_on_each_database, not_ready_when_database_is_gone);

async fn ready_on_each_database(url: &str) {
    let app = spawn_app(url).await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    let expected = if url.starts_with("sqlite") { "sqlite" } else { "postgres" };
    assert_eq!(body, serde_json::json!({"status": "ready", "database": expected}));
}

async fn not_ready_when_database_is_gone(url: &str) {
    let app = spawn_app(url).await;
    app.db.close().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn sqlite_app() -> (TestApp, tessera_testkit::TestDb) {
    let tdb = tessera_testkit::TestDb::sqlite();
    (spawn_app(tdb.url()).await, tdb)
}

#[tokio::test]
async fn healthz_answers_with_a_request_id() {
    let (app, _db) = sqlite_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-request-id").is_some_and(|v| v.len() == 36), "a UUID request id is assigned");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    // A caller's own request id is kept, so logs can be correlated across services.
    let theirs = "0b6c3e5e-8f0a-4d39-9a57-2f4a8c1d7e21";
    let res = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", theirs).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], theirs);
    // Free text would land in our logs (a name, a UIN): it is replaced by our own UUID.
    let res = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", "uin-4729381650-John-Doe").send().await.unwrap();
    let ours = res.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::try_parse(ours).is_ok() && !ours.contains("4729381650"), "{ours}");
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let (app, _db) = sqlite_app().await;
    let res = app.get("/no/such/thing").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let res = app.client.delete(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let big = vec![b'x'; tessera_api::BODY_BYTES_MAX + 1];
    let res = app.client.post(format!("{}/healthz", app.base)).body(big).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn metrics_name_routes_never_raw_paths() {
    let (app, _db) = sqlite_app().await;
    app.get("/healthz").await;
    // An identifier in an unknown URL must not become a metric label.
    app.get("/v1/identities/4729381650").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"tessera_http_requests_total{method="GET",route="/healthz",status="200"}"#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(text.contains("tessera_uin_pool_unused 0"), "{text}");
    assert!(!text.contains("4729381650"), "raw path leaked into metrics");
}

#[tokio::test]
async fn openapi_is_valid_and_lists_every_endpoint() {
    let (app, _db) = sqlite_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(raw["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3 document");
    let doc: openapiv3::OpenAPI = serde_json::from_str(&text).expect("parses as OpenAPI 3");
    let paths: BTreeSet<&str> = doc.paths.paths.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ["/healthz", "/readyz", "/metrics", "/openapi.json"].into();
    assert_eq!(paths, expected);
    // Every documented path is really served (no doc-only endpoints).
    for p in &paths {
        assert_ne!(app.get(p).await.status(), 404, "{p} documented but not served");
    }
}

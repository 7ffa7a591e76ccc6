//! The HTTP API driven over real HTTP through `spawn_app()`, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)] // test code: a panic is the test failing

use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use tessera_core::IdRules;
use tessera_core::schema::Schema;
use tessera_crypto::{MasterKey, SoftwareKeystore};
use tessera_idrepo::{Actor, IdRepo, Role, access};
use tessera_store::{BlobStore, Db, Vault, now_ms, uin_pool};

struct TestApp {
    base: String,
    db: Db,
    repo: IdRepo,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Starts the real router on a free port over a migrated database at `url`, with a fresh
/// keystore, key vault and blob store in a scratch directory.
async fn spawn_app(url: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(url).await.unwrap();
    let vault_url = if url.starts_with("sqlite:") { format!("sqlite://{}", dir.path().join("vault.db").display()) } else { url.to_owned() };
    let vault = Vault::open(&vault_url).await.unwrap();
    let blobs = BlobStore::open(dir.path().join("blobs").to_str().unwrap()).unwrap();
    let ks = Arc::new(SoftwareKeystore::create(&dir.path().join("keystore"), MasterKey::generate().unwrap(), None, now_ms()).unwrap());
    let repo = IdRepo::new(db.clone(), vault, blobs, ks, Arc::new(Schema::default_schema()), IdRules::uin_default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tessera_api::app(repo.clone());
    tokio::spawn(tessera_api::serve(listener, app, std::future::pending()));
    TestApp { base, db, repo, client: reqwest::Client::new(), _dir: dir }
}

/// `spawn_app` with an ABIS engine behind `/v1/abis`, fetching from data shares over plain HTTP
/// and decrypting with the keystore's `datashare` key, as `tessera serve` sets it up.
async fn spawn_app_with_abis(url: &str) -> TestApp {
    let plain = spawn_app(url).await;
    let ks = plain.repo.keystore().clone();
    let decrypt: tessera_abis::datashare::Decrypt = Arc::new(move |payload: &[u8]| {
        ks.hybrid_decrypt(tessera_crypto::Purpose::Datashare, payload).map_err(|_| tessera_abis::FetchError::Decrypt)
    });
    let fetch = tessera_abis::datashare::Datashare::new(Some("test-token".into()), Some(decrypt)).unwrap().allow_http(true);
    let cfg = tessera_abis::AbisConfig { threads: 2, ..tessera_abis::AbisConfig::default() };
    let engine = tessera_abis::Engine::open(plain.repo.clone(), Arc::new(fetch), cfg, &mut |_, _| {}).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tessera_api::app_with(plain.repo.clone(), Some(Arc::new(engine)));
    tokio::spawn(tessera_api::serve(listener, app, std::future::pending()));
    TestApp { base, ..plain }
}

/// A MOSIP data share: `GET /share/{key}` answers what was put under the key, when the request
/// carries the `Authorization` cookie; an unknown key answers MOSIP's "expired" error, with
/// HTTP 200 as MOSIP does.
async fn spawn_datashare() -> (String, Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>) {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    type Shares = Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>;
    let shares: Shares = Arc::default();
    let get = async |State(shares): State<Shares>, Path(key): Path<String>, headers: HeaderMap| -> (axum::http::StatusCode, String) {
        if headers.get("cookie").and_then(|c| c.to_str().ok()) != Some("Authorization=test-token") {
            return (axum::http::StatusCode::UNAUTHORIZED, String::new());
        }
        match shares.lock().unwrap().get(&key) {
            Some(body) => (axum::http::StatusCode::OK, body.clone()),
            None => (
                axum::http::StatusCode::OK,
                r#"{"id":"mosip.data.share","errors":[{"errorCode":"DAT-SER-006","message":"Data share usuage expired"}]}"#.into(),
            ),
        }
    };
    let app = axum::Router::new().route("/share/{key}", axum::routing::get(get)).with_state(Arc::clone(&shares));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/share", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, shares)
}

/// MOSIP's ABIS API over HTTP with MOSIP's encrypted data share: insert, identify (the planted
/// duplicate), reference count, delete; who may call it; a share that has expired or that does
/// not decrypt gets MOSIP's failure reasons.
async fn abis_over_http(db_url: &str) {
    use reqwest::Method as M;
    use tessera_biometrics::synth::SynthPerson;
    let app = spawn_app_with_abis(db_url).await;
    let (share, shares) = spawn_datashare().await;
    let cert = app.repo.keystore().certificate(app.repo.keystore().current(tessera_crypto::Purpose::Datashare)).unwrap();
    let put = |key: &str, cbeff: &[u8]| {
        let sealed = tessera_crypto::hybrid::encode(&tessera_crypto::hybrid_encrypt(&cert, cbeff).unwrap());
        shares.lock().unwrap().insert(key.to_owned(), sealed);
        format!("{share}/{key}")
    };
    let request = |id: &str, request_id: &str, extra: Value| {
        let mut v = json!({"id": id, "version": "1.1", "requestId": request_id, "requesttime": "2026-12-06T10:00:00.000Z"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let client = app.token(Role::AbisClient).await;
    let call = async |token: &str, body: &Value| {
        let res = app.req(M::POST, "/v1/abis", token).json(body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };

    let ping = request("mosip.abis.ping", "p-1", json!({}));
    assert_eq!(app.client.post(format!("{}/v1/abis", app.base)).json(&ping).send().await.unwrap().status(), 401);
    let operator = app.token(Role::Operator).await;
    assert_eq!(code_of(app.req(M::POST, "/v1/abis", &operator).json(&ping).send().await.unwrap()).await, (403, "forbidden".into()));

    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let people: Vec<SynthPerson> = (0..6).map(|_| SynthPerson::random(&mut rng)).collect();
    for (i, p) in people.iter().enumerate() {
        let url = put(&format!("k{i}"), &p.cbeff(&mut rng, "2026-12-06T10:00:00.000Z"));
        let r = call(
            &client,
            &request("mosip.abis.insert", &format!("ins-{i}"), json!({"referenceId": format!("ref-{i}"), "referenceURL": url})),
        )
        .await;
        assert_eq!(r["returnValue"], "1", "{r}");
    }
    let url = put("again", &people[4].cbeff(&mut rng, "2026-12-06T10:00:00.000Z"));
    let r = call(
        &client,
        &request(
            "mosip.abis.identify",
            "idf-1",
            json!({"referenceId": "", "referenceURL": url, "flags": {"maxResults": "5", "targetFPIR": "30"}}),
        ),
    )
    .await;
    assert_eq!(r["returnValue"], "1", "{r}");
    assert_eq!(r["candidateList"]["candidates"][0]["referenceId"], "ref-4", "{r}");
    assert_eq!(r["candidateList"]["candidates"][0]["analytics"]["decision"], "match", "{r}");
    let r = call(&client, &request("mosip.abis.referenceCount", "cnt-1", json!({}))).await;
    assert_eq!(r["count"], "6", "{r}");
    let r = call(&client, &request("mosip.abis.delete", "del-1", json!({"referenceId": "ref-4"}))).await;
    assert_eq!(r["returnValue"], "1", "{r}");
    let r = call(&client, &request("mosip.abis.referenceCount", "cnt-2", json!({}))).await;
    assert_eq!(r["count"], "5", "{r}");

    // An expired share (17), one encrypted to another key (7: unable to fetch), none inserted.
    let r = call(&client, &request("mosip.abis.insert", "ins-x", json!({"referenceId": "ref-x", "referenceURL": format!("{share}/gone")})))
        .await;
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("17")), "{r}");
    let other =
        tessera_crypto::software::SoftwareKeystore::create(&app._dir.path().join("other"), MasterKey::generate().unwrap(), None, now_ms())
            .unwrap();
    let other_cert =
        tessera_crypto::Keystore::certificate(&other, tessera_crypto::Keystore::current(&other, tessera_crypto::Purpose::Datashare))
            .unwrap();
    let sealed = tessera_crypto::hybrid::encode(
        &tessera_crypto::hybrid_encrypt(&other_cert, &people[0].cbeff(&mut rng, "2026-12-06T10:00:00.000Z")).unwrap(),
    );
    shares.lock().unwrap().insert("wrong-key".into(), sealed);
    let r = call(
        &client,
        &request("mosip.abis.insert", "ins-y", json!({"referenceId": "ref-y", "referenceURL": format!("{share}/wrong-key")})),
    )
    .await;
    assert_eq!((r["returnValue"].as_str(), r["failureReason"].as_str()), (Some("2"), Some("7")), "{r}");
    let r = call(&client, &request("mosip.abis.referenceCount", "cnt-3", json!({}))).await;
    assert_eq!(r["count"], "5", "{r}");

    // A process without an ABIS says so.
    let plain = spawn_app(db_url).await;
    assert_eq!(code_of(plain.req(M::POST, "/v1/abis", &client).json(&ping).send().await.unwrap()).await, (503, "abis_disabled".into()));
}

impl TestApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    async fn token(&self, role: Role) -> String {
        access::create_token(&self.db, &**self.repo.keystore(), &Actor::cli(), "test", role, None, now_ms()).await.unwrap().secret
    }

    fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token)
    }
}

async fn code_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

fn person(name: &str) -> Value {
    json!({
        "fullName": [{"language": "eng", "value": name}],
        "dateOfBirth": "1985-07-14",
        "gender": "male",
        "addressLine1": [{"language": "eng", "value": "4 Harbour Road"}],
        "city": [{"language": "eng", "value": "Boke"}],
        "region": [{"language": "eng", "value": "Boke"}]
    })
}

async fn fill_pool(db: &Db) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    uin_pool::refill(db, &IdRules::uin_default(), &mut rng, 100, now_ms()).await.unwrap();
}

async fn identities_over_http(url: &str) {
    use reqwest::Method as M;
    let app = spawn_app(url).await;
    fill_pool(&app.db).await;
    let admin = app.token(Role::Admin).await;
    let res = app
        .req(M::POST, "/v1/identities", &admin)
        .json(&json!({"record": person("Ibrahima Barry"), "reason": "migration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let uin = created["uin"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/identities/{uin}"));

    let got: Value = app.req(M::GET, &location, &admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["record"]["fullName"][0]["value"], "Ibrahima Barry");
    assert_eq!((got["version"].as_i64(), got["sealed_with"].as_str()), (Some(1), Some("identity.v1")));

    let res = app
        .req(M::PATCH, &location, &admin)
        .json(&json!({"record": {"gender": "other"}, "reason": "correction", "expected_version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res =
        app.req(M::PATCH, &location, &admin).json(&json!({"record": {"gender": "female"}, "expected_version": 1})).send().await.unwrap();
    assert_eq!(code_of(res).await, (409, "version_conflict".into()));
    // Schema errors list every problem, by path, without echoing values.
    let res =
        app.req(M::PATCH, &location, &admin).json(&json!({"record": {"gender": "Secret-Value", "dateOfBirth": "x"}})).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let text = res.text().await.unwrap();
    assert!(!text.contains("Secret-Value"), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let paths: Vec<&str> = body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/record/dateOfBirth", "/record/gender"]);
    // Malformed JSON: a fixed message, not serde's (which quotes the input).
    let res = app
        .req(M::POST, "/v1/identities", &admin)
        .header("content-type", "application/json")
        .body(r#"{"record": 5, "x": "Secret-Value"}"#)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status == 400 || status == 422, "{status}");
    assert!(text.contains("body_invalid") && !text.contains("Secret-Value"), "{text}");

    let versions: Value = app.req(M::GET, &format!("{location}/versions"), &admin).send().await.unwrap().json().await.unwrap();
    let reasons: Vec<&str> = versions["versions"].as_array().unwrap().iter().map(|v| v["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["migration", "correction"]);

    assert_eq!(code_of(app.req(M::GET, "/v1/identities/12345", &admin).send().await.unwrap()).await, (400, "uin_invalid".into()));
    let res = app.req(M::DELETE, &location, &admin).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(code_of(app.req(M::GET, &location, &admin).send().await.unwrap()).await, (410, "identity_erased".into()));
    assert_eq!(code_of(app.req(M::DELETE, &location, &admin).send().await.unwrap()).await, (410, "identity_erased".into()));

    // Auditors see the log, including the reads, with record ids and never the UIN.
    let auditor = app.token(Role::Auditor).await;
    let page = app.req(M::GET, "/v1/audit?limit=1000", &auditor).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("identity.read") && page.contains("identity.erase"), "{page}");
    assert!(!page.contains(&uin) && !page.contains("Ibrahima"), "{page}");
}

async fn tokens_and_roles_are_enforced(url: &str) {
    use reqwest::Method as M;
    let app = spawn_app(url).await;
    fill_pool(&app.db).await;
    let body = json!({"record": person("Fatou Bah")});
    let post = |token: &str| app.req(M::POST, "/v1/identities", token).json(&body).send();

    let res = app.client.post(format!("{}/v1/identities", app.base)).json(&body).send().await.unwrap();
    assert!(res.headers().get("www-authenticate").is_some());
    assert_eq!(code_of(res).await, (401, "token_missing".into()));
    assert_eq!(code_of(post("tsr_not-a-real-token").await.unwrap()).await, (401, "token_invalid".into()));
    let forged = format!("tsr_{}", "A".repeat(43));
    assert_eq!(code_of(post(&forged).await.unwrap()).await, (401, "token_invalid".into()));

    let operator = app.token(Role::Operator).await;
    let res = post(&operator).await.unwrap();
    assert_eq!(res.status(), 201);
    let uin = res.json::<Value>().await.unwrap()["uin"].as_str().unwrap().to_owned();
    let path = format!("/v1/identities/{uin}");
    // An operator creates but may not read, change or erase; an auditor may not read records.
    assert_eq!(code_of(app.req(M::GET, &path, &operator).send().await.unwrap()).await, (403, "forbidden".into()));
    let auditor = app.token(Role::Auditor).await;
    assert_eq!(code_of(app.req(M::GET, &path, &auditor).send().await.unwrap()).await, (403, "forbidden".into()));
    assert_eq!(code_of(post(&auditor).await.unwrap()).await, (403, "forbidden".into()));
    let supervisor = app.token(Role::Supervisor).await;
    assert_eq!(code_of(app.req(M::DELETE, &path, &supervisor).send().await.unwrap()).await, (403, "forbidden".into()));
    assert_eq!(code_of(app.req(M::GET, "/v1/audit", &supervisor).send().await.unwrap()).await, (403, "forbidden".into()));
    assert_eq!(app.req(M::GET, &path, &supervisor).send().await.unwrap().status(), 200);
    // Auditors see history without records.
    let v: Value = app.req(M::GET, &format!("{path}/versions"), &auditor).send().await.unwrap().json().await.unwrap();
    assert!(v["versions"][0].get("record").is_none() && v["versions"][0]["actor"].as_str().unwrap().starts_with("token:"), "{v}");
    // Nor the reason, which may name people.
    assert!(v["versions"][0].get("reason").is_none(), "{v}");

    // Revoked and expired tokens.
    let rows = tessera_store::api_tokens::list(&app.db).await.unwrap();
    let op_id = rows.iter().find(|r| r.role == "operator").unwrap().id.clone();
    assert!(access::revoke_token(&app.db, &**app.repo.keystore(), &Actor::cli(), &op_id, now_ms()).await.unwrap());
    assert_eq!(code_of(post(&operator).await.unwrap()).await, (401, "token_revoked".into()));
    let short = access::create_token(&app.db, &**app.repo.keystore(), &Actor::cli(), "short", Role::Admin, Some(now_ms() + 50), now_ms())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert_eq!(code_of(post(&short.secret).await.unwrap()).await, (401, "token_expired".into()));
}

tessera_testkit::storage_tests!(
    ready_on_each_database,
    not_ready_when_database_is_gone,
    identities_over_http,
    tokens_and_roles_are_enforced,
    abis_over_http,
    packets_over_http,
    credentials_over_http
);

/// A person's credentials over HTTP: issued on request by a role that may change identities,
/// listed by one that may read them, verified offline against the public JWKS, gone with the
/// person; a server without an issuer says so.
async fn credentials_over_http(url: &str) {
    use reqwest::Method as M;
    let plain = spawn_app(url).await;
    fill_pool(&plain.db).await;
    // Without an issuer: 503 with its own code.
    assert_eq!(code_of(plain.get("/.well-known/jwks.json").await).await, (503, "credentials_disabled".into()));
    let cfg = tessera_credentials::CredentialConfig { issuer: "https://id.example.gov".into(), ..Default::default() };
    let creds = tessera_credentials::Credentials::new(plain.repo.clone(), cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(tessera_api::serve(listener, tessera_api::app_full(plain.repo.clone(), None, None, Some(creds)), std::future::pending()));
    let app = TestApp { base, ..plain };

    let admin = app.token(Role::Admin).await;
    let created: Value = app
        .req(M::POST, "/v1/identities", &admin)
        .json(&json!({"record": person("Mariama Sow")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uin = created["uin"].as_str().unwrap().to_owned();
    let path = format!("/v1/identities/{uin}/credentials");
    let none: Value = app.req(M::GET, &path, &admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(none["credentials"], json!([]));

    // Roles: no token, an operator (may not change identities), an auditor (may not read them).
    assert_eq!(code_of(app.client.post(format!("{}{path}", app.base)).send().await.unwrap()).await, (401, "token_missing".into()));
    let operator = app.token(Role::Operator).await;
    assert_eq!(code_of(app.req(M::POST, &path, &operator).send().await.unwrap()).await, (403, "forbidden".into()));
    let auditor = app.token(Role::Auditor).await;
    assert_eq!(code_of(app.req(M::GET, &path, &auditor).send().await.unwrap()).await, (403, "forbidden".into()));

    let res = app.req(M::POST, &path, &admin).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    let second: Value = app.req(M::POST, &path, &admin).send().await.unwrap().json().await.unwrap();
    let list: Value = app.req(M::GET, &path, &admin).send().await.unwrap().json().await.unwrap();
    let states: Vec<(&str, &str)> =
        list["credentials"].as_array().unwrap().iter().map(|c| (c["id"].as_str().unwrap(), c["status"].as_str().unwrap())).collect();
    assert_eq!(states, [(second["id"].as_str().unwrap(), "active"), (first["id"].as_str().unwrap(), "superseded")]);

    // The JWKS needs no token, and verifies the credential offline.
    let res = app.client.get(format!("{}/.well-known/jwks.json", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let keys = tessera_credentials::sd_jwt::keys_of_jwks(&res.json::<Value>().await.unwrap());
    let compact = second["credential"].as_str().unwrap();
    let v =
        tessera_credentials::sd_jwt::verify(compact, &|k| keys.get(k).cloned(), Some("https://id.example.gov"), now_ms() / 1000).unwrap();
    assert_eq!(v.disclosed["uin"], json!(uin));
    assert_eq!(v.disclosed["fullName"][0]["value"], "Mariama Sow");

    assert_eq!(
        code_of(app.req(M::GET, "/v1/identities/12345/credentials", &admin).send().await.unwrap()).await,
        (400, "uin_invalid".into())
    );
    app.req(M::DELETE, &format!("/v1/identities/{uin}"), &admin).send().await.unwrap();
    assert_eq!(code_of(app.req(M::GET, &path, &admin).send().await.unwrap()).await, (410, "identity_erased".into()));
    assert_eq!(code_of(app.req(M::POST, &path, &admin).send().await.unwrap()).await, (410, "identity_erased".into()));
    // The audit log names the issues and reads, never the UIN.
    let page = app.req(M::GET, "/v1/audit?limit=1000", &auditor).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("credential.issue") && page.contains("credential.read") && !page.contains(&uin), "{page}");
}

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

    // Refused before authentication or parsing: the limit is checked on the declared length.
    let big = vec![b'x'; tessera_api::BODY_BYTES_MAX + 1];
    let res = app.client.post(format!("{}/v1/identities", app.base)).body(big).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn metrics_name_routes_never_raw_paths() {
    let (app, _db) = sqlite_app().await;
    app.get("/healthz").await;
    // An identifier in an unknown URL must not become a metric label.
    app.get("/no/such/4729381650").await;
    // A matched route is labelled by its template, whatever the UIN in the path.
    app.get("/v1/identities/4729381650").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"tessera_http_requests_total{method="GET",route="/healthz",status="200"}"#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(text.contains(r#"route="/v1/identities/{uin}",status="401""#), "{text}");
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
    // utoipa writes OpenAPI 3.1 (nullable types are `["string", "null"]`), which 3.0 parsers
    // reject; check the structure that matters directly: every `$ref` resolves, and every
    // operation documents its responses.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&raw, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(raw.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    let path_items = raw["paths"].as_object().unwrap();
    for (path, item) in path_items {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} documents no responses");
        }
    }
    let paths: BTreeSet<&str> = path_items.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/identities",
        "/v1/identities/{uin}",
        "/v1/identities/{uin}/versions",
        "/v1/identities/{uin}/attachments/{ref}",
        "/v1/audit",
        "/v1/abis",
        "/v1/packets",
        "/v1/packets/{rid}",
        "/v1/adjudications",
        "/v1/adjudications/{id}",
        "/v1/adjudications/{id}/decision",
        "/.well-known/jwks.json",
        "/v1/identities/{uin}/credentials",
    ]
    .into();
    assert_eq!(paths, expected);
    // Every documented path is really served (no doc-only endpoints).
    for p in &paths {
        assert_ne!(app.get(p).await.status(), 404, "{p} documented but not served");
    }
}

/// Upload and status of registration packets over HTTP: 202 and idempotent on RID, the status
/// with its history, and every refusal with its code: no token, a role that may not upload, a
/// body over the packet limit, junk, a packet under a used RID, an unknown RID.
async fn packets_over_http(db_url: &str) {
    use reqwest::Method as M;
    use tessera_core::id::{CentreId, MachineId};
    use tessera_registration::packet::{Draft, FileKind, Flow, IDENTITY_FILE, PACKET_BYTES_DEFAULT};
    let plain = spawn_app(db_url).await;
    let engine = tessera_abis::Engine::open(
        plain.repo.clone(),
        Arc::new(tessera_abis::datashare::Datashare::new(None, None).unwrap()),
        tessera_abis::AbisConfig { threads: 2, ..tessera_abis::AbisConfig::default() },
        &mut |_, _| {},
    )
    .await
    .unwrap();
    // A small packet limit, so the over-limit body fits the socket buffers and the 413 is read.
    let cfg = tessera_registration::RegConfig { packet_bytes_max: 64 * 1024, ..tessera_registration::RegConfig::default() };
    let reg = tessera_registration::Registration::new(plain.repo.clone(), Arc::new(engine), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(tessera_api::serve(listener, tessera_api::app_full(plain.repo.clone(), None, Some(reg), None), std::future::pending()));
    let app = TestApp { base, ..plain };

    let key = tessera_crypto::MachineKey::create_file(&app._dir.path().join("machine/key.pem")).unwrap();
    tessera_store::registration::insert_centre(&app.db, "10001", "Centre", now_ms()).await.unwrap();
    tessera_store::registration::insert_machine(&app.db, "20001", "10001", &key.public_key(), now_ms()).await.unwrap();
    let ks = app.repo.keystore();
    let recipient = tessera_crypto::Recipient::parse(&ks.certificate(ks.current(tessera_crypto::Purpose::Registration)).unwrap()).unwrap();
    let draft = |seq: u32, name: &str| Draft {
        rid: tessera_core::Rid::new(
            CentreId::parse("10001").unwrap(),
            MachineId::parse("20001").unwrap(),
            seq,
            time::macros::datetime!(2026-12-07 09:00:00),
        )
        .unwrap(),
        flow: Flow::New,
        operator: "officer-1".into(),
        supervisor: None,
        created_at_ms: now_ms(),
        gps: None,
        uin: None,
        guardian_uin: None,
        exceptions: vec![],
        capture: vec![],
        files: vec![(IDENTITY_FILE.into(), FileKind::Identity, serde_json::to_vec(&person(name)).unwrap())],
    };
    let packet = draft(1, "Awa Ndiaye").seal(&key, &recipient, PACKET_BYTES_DEFAULT).unwrap();
    let operator = app.token(Role::Operator).await;
    let post = |token: &str, body: Vec<u8>| {
        app.req(M::POST, "/v1/packets", token).header("content-type", "application/octet-stream").body(body).send()
    };

    let res = post(&operator, packet.clone()).await.unwrap();
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["already"].as_bool()), (Some("processing"), Some(false)));
    let rid = body["rid"].as_str().unwrap().to_owned();
    let again: Value = post(&operator, packet.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(again["already"], true);

    let status: Value = app.req(M::GET, &format!("/v1/packets/{rid}"), &operator).send().await.unwrap().json().await.unwrap();
    assert_eq!((status["status"].as_str(), status["stage"].as_str()), (Some("processing"), Some("validate")));
    assert_eq!(status["history"][0]["outcome"], "accepted");
    assert!(status["uin"].is_null());

    let reused = draft(1, "Someone Else").seal(&key, &recipient, PACKET_BYTES_DEFAULT).unwrap();
    assert_eq!(code_of(post(&operator, reused).await.unwrap()).await, (409, "packet_conflict".into()));
    assert_eq!(code_of(post(&operator, b"junk".to_vec()).await.unwrap()).await, (400, "packet_malformed".into()));
    // On a connection of its own: the server closes a connection whose body it refused unread,
    // and a pooled connection reused after it would fail the next request.
    let once = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let over = once
        .post(format!("{}/v1/packets", app.base))
        .bearer_auth(&operator)
        .header("content-type", "application/octet-stream")
        .body(vec![0; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(over).await.0, 413);
    let res = app.client.post(format!("{}/v1/packets", app.base)).body(packet.clone()).send().await.unwrap();
    assert_eq!(code_of(res).await, (401, "token_missing".into()));
    let auditor = app.token(Role::Auditor).await;
    assert_eq!(code_of(post(&auditor, packet).await.unwrap()).await, (403, "forbidden".into()));
    assert_eq!(code_of(app.req(M::GET, &format!("/v1/packets/{rid}"), &auditor).send().await.unwrap()).await, (403, "forbidden".into()));
    let missing = app.req(M::GET, "/v1/packets/10001200010000920261207090000", &operator).send().await.unwrap();
    assert_eq!(code_of(missing).await, (404, "packet_not_found".into()));

    // Adjudication: adjudicators only; every refusal with its code (the decisions themselves
    // are exercised end to end in the registration pipeline's tests).
    let adjudicator = app.token(Role::Adjudicator).await;
    assert_eq!(code_of(app.req(M::GET, "/v1/adjudications", &operator).send().await.unwrap()).await, (403, "forbidden".into()));
    let cases: Value = app.req(M::GET, "/v1/adjudications", &adjudicator).send().await.unwrap().json().await.unwrap();
    assert_eq!(cases["cases"], serde_json::json!([]));
    let bogus = app.req(M::GET, "/v1/adjudications?state=bogus", &adjudicator).send().await.unwrap();
    assert_eq!(code_of(bogus).await, (400, "bad_request".into()));
    let unknown = app.req(M::GET, "/v1/adjudications/no-such-case", &adjudicator).send().await.unwrap();
    assert_eq!(code_of(unknown).await, (404, "adjudication_not_found".into()));
    let decide = |body: Value| app.req(M::POST, "/v1/adjudications/no-such-case/decision", &adjudicator).json(&body).send();
    let res = decide(serde_json::json!({"decision": "duplicate", "reason": "same person"})).await.unwrap();
    assert_eq!(code_of(res).await, (400, "bad_request".into()));
    let res = decide(serde_json::json!({"decision": "not_duplicate", "reason": "someone else"})).await.unwrap();
    assert_eq!(code_of(res).await, (404, "adjudication_not_found".into()));
}

//! The worker's HTTP API (`src/api/`) over real HTTP: submissions, idempotency, status and list,
//! authentication (API key and HMAC), vault restrictions, and every kind of bad input. Every JSON
//! answer is checked against `docs/openapi.json` for its path and status.

mod common;
use common::StaticToken;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlvm_backup::api::{ApiConfig, AuthConfig, auth};
use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup_shared::arm::ArmClient;
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::{Backend, Commit};
use sqlvm_backup_shared::workflow::failure::{Failure, FailureClass};
use sqlvm_backup_shared::workflow::state::{Child, ChildStatus, StepRecord};

const SUB: &str = "11111111-2222-3333-4444-555555555555";

fn vault(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg-sql/providers/Microsoft.RecoveryServices/vaults/{name}")
}

fn vm(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg-sql/providers/Microsoft.Compute/virtualMachines/{name}")
}

// ---------------------------------------------------------------------------------------------
// Harness

struct Api {
    base: String,
    http: reqwest::Client,
    engine: Arc<Engine>,
}

/// An engine on an in-memory SQLite store (nothing runs the steps, so workflows stay where the
/// test puts them) and the router on 127.0.0.1:0.
async fn start(cfg: ApiConfig) -> Api {
    cfg.validate().expect("test config is valid");
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().expect("sqlite in memory"));
    // Submissions never call ARM; port 9 (discard) makes any accidental call fail fast.
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("static-token".into())), None).expect("arm client");
    let engine = Arc::new(Engine::new(backend, arm, EngineOptions::default()));
    let app = sqlvm_backup::api::router(engine.clone(), Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api { base: format!("http://{addr}"), http: reqwest::Client::new(), engine }
}

/// Keys: `admin` may act on every vault, `team1` only on vault v1 (written in another case).
fn api_key_config() -> ApiConfig {
    serde_json::from_value(json!({
        "auth": {"mode": "apiKey", "keys": [
            {"name": "admin", "key": "admin-key-0123456789", "vaults": ["*"]},
            {"name": "team1", "key": "team1-key-0123456789", "vaults": [vault("v1").to_uppercase()]}
        ]},
        "maxBodyBytes": 4096
    }))
    .unwrap()
}

fn hmac_config() -> ApiConfig {
    serde_json::from_value(json!({
        "auth": {"mode": "hmac", "maxSkewSeconds": 120, "clients": [
            {"name": "ops", "secret": "ops-hmac-secret", "vaults": ["*"]}
        ]}
    }))
    .unwrap()
}

const ADMIN: &str = "admin-key-0123456789";
const TEAM1: &str = "team1-key-0123456789";

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Api {
    /// Send a request; the answer's JSON body is checked against the OpenAPI document for
    /// `template` (the path as the document spells it) and the status received.
    async fn send(&self, req: reqwest::RequestBuilder, method: &str, template: &str) -> Answer {
        let rsp = req.send().await.unwrap();
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let text = rsp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {template} -> {status}: not JSON ({e}): {text}"));
        check_response(method, template, status.as_u16(), &body);
        if status == StatusCode::UNAUTHORIZED {
            assert!(headers.contains_key("www-authenticate"), "401 without WWW-Authenticate");
        }
        Answer { status, headers, body }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &Value, idem: Option<&str>) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(i) = idem {
            req = req.header("Idempotency-Key", i);
        }
        self.send(req, "post", path).await
    }

    async fn post_raw(&self, path: &str, key: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
        let req = self.http.post(format!("{}{path}", self.base)).header("x-api-key", key).header("content-type", content_type).body(body);
        self.send(req, "post", path).await
    }

    async fn get(&self, path_and_query: &str, template: &str, key: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path_and_query}", self.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        self.send(req, "get", template).await
    }

    /// A request signed as `cred` (HMAC client name, secret), dated `date`.
    async fn signed(&self, method: Method, path_and_query: &str, template: &str, body: &[u8], cred: (&str, &str), date: &str) -> Answer {
        let sig = auth::sign(cred.0, cred.1, method.as_str(), path_and_query, date, body);
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base))
            .header("x-sqlvm-date", date)
            .header("x-sqlvm-signature", sig);
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body.to_vec());
        }
        self.send(req, &method.as_str().to_ascii_lowercase(), template).await
    }
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {}", a.body))
}

fn protect_body(vault_name: Option<&str>) -> Value {
    let mut b = json!({"vmId": vm("sqlvm01"), "policy": "HourlyLogBackup", "databases": {"include": ["sales*"], "exclude": [], "includeSystem": false}, "autoProtect": false, "initialFullBackup": true});
    if let Some(v) = vault_name {
        b["vaultId"] = json!(vault(v));
    }
    b
}

fn backup_body(vault_name: &str) -> Value {
    json!({"vaultId": vault(vault_name), "backupType": "Full", "retentionDays": 45, "items": [{"container": "VMAppContainer;compute;rg-sql;sqlvm01", "item": "SQLDataBase;mssqlserver;sales"}], "vms": ["sqlvm*"]})
}

// ---------------------------------------------------------------------------------------------
// A small OpenAPI 3.0 checker: $ref, type, nullable, enum, required, properties,
// additionalProperties, items, oneOf, minimum/maximum, date-time.

fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).expect("docs/openapi.json");
        serde_json::from_str(&text).expect("openapi.json is JSON")
    })
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let path = r.strip_prefix("#/").unwrap_or_else(|| panic!("only local refs: {r}"));
        v = path.split('/').fold(doc, |node, seg| node.get(seg).unwrap_or_else(|| panic!("dangling $ref {r}")));
    }
    v
}

fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            errors.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = options
            .iter()
            .filter(|o| {
                let mut e = vec![];
                validate(doc, o, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!("{at}: matches {matching} of the oneOf schemas"));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} not in {allowed:?}"));
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else { return };
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        other => panic!("unsupported type {other} at {at}"),
    };
    if !ok {
        errors.push(format!("{at}: expected {ty}, got {value}"));
        return;
    }
    if let Some(n) = value.as_f64()
        && (schema.get("minimum").and_then(Value::as_f64).is_some_and(|m| n < m)
            || schema.get("maximum").and_then(Value::as_f64).is_some_and(|m| n > m))
    {
        errors.push(format!("{at}: {n} out of bounds"));
    }
    if let Some(s) = value.as_str()
        && schema.get("format").and_then(Value::as_str) == Some("date-time")
        && chrono::DateTime::parse_from_rfc3339(s).is_err()
    {
        errors.push(format!("{at}: '{s}' is not a date-time"));
    }
    if let Some(items) = value.as_array() {
        let item_schema = schema.get("items").unwrap_or_else(|| panic!("array without items at {at}"));
        for (i, item) in items.iter().enumerate() {
            validate(doc, item_schema, item, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let req = req.as_str().unwrap();
            if !obj.contains_key(req) {
                errors.push(format!("{at}: missing required '{req}'"));
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, v, &format!("{at}.{k}"), errors),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: unexpected property '{k}'"))
                }
                None => {}
            }
        }
    }
}

fn operation<'a>(method: &str, template: &str) -> &'a Value {
    let doc = openapi();
    doc["paths"].get(template).and_then(|p| p.get(method)).unwrap_or_else(|| panic!("openapi.json has no {method} {template}"))
}

/// The answer's body matches the schema the document gives for this path and status.
fn check_response(method: &str, template: &str, status: u16, body: &Value) {
    let doc = openapi();
    let op = operation(method, template);
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("openapi.json: {method} {template} documents no {status} (body {body})"));
    let response = resolve(doc, response);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {template} {status}: no JSON schema");
    let mut errors = vec![];
    validate(doc, schema, body, "$", &mut errors);
    assert!(errors.is_empty(), "{method} {template} {status} does not match openapi.json: {errors:?}\nbody: {body}");
}

/// A request body is valid (or not) against the document's request schema.
fn request_errors(method: &str, template: &str, body: &Value) -> Vec<String> {
    let doc = openapi();
    let schema = &operation(method, template)["requestBody"]["content"]["application/json"]["schema"];
    let mut errors = vec![];
    validate(doc, schema, body, "$", &mut errors);
    errors
}

// ---------------------------------------------------------------------------------------------
// Submissions

/// A protect request starts a workflow: 202, Location, created, running; its status reads back.
#[tokio::test]
async fn protect_is_accepted_with_location() {
    let api = start(api_key_config()).await;
    let body = protect_body(Some("v1"));
    assert_eq!(request_errors("post", "/api/protect", &body), Vec::<String>::new());
    let a = api.post("/api/protect", Some(ADMIN), &body, None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_eq!(a.body["created"], true);
    assert_eq!(a.body["status"], "running");
    let id = a.body["id"].as_str().unwrap();
    assert_eq!(a.headers["location"], format!("/api/workflows/{id}").as_str());

    let s = api.get(&format!("/api/workflows/{id}"), "/api/workflows/{id}", Some(ADMIN)).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.body["kind"], "protect");
    assert_eq!(s.body["origin"], "api:admin");
    assert_eq!(s.body["input"]["vmId"], vm("sqlvm01"));
    assert!(s.body.get("doneSteps").is_none());
}

/// A backup request starts a workflow too, and its input reads back as a BackupRequest.
#[tokio::test]
async fn backup_is_accepted() {
    let api = start(api_key_config()).await;
    let body = backup_body("v1");
    assert_eq!(request_errors("post", "/api/backups", &body), Vec::<String>::new());
    let a = api.post("/api/backups", Some(TEAM1), &body, None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["id"].as_str().unwrap();
    let s = api.get(&format!("/api/workflows/{id}"), "/api/workflows/{id}", Some(TEAM1)).await;
    assert_eq!(s.body["kind"], "backup");
    assert_eq!(s.body["input"]["backupType"], "Full");
    assert_eq!(s.body["input"]["retentionDays"], 45);
}

/// The same Idempotency-Key answers 200 with the first workflow and starts nothing; another key,
/// or the same key from another caller, starts a new one.
#[tokio::test]
async fn idempotency_key_returns_the_first_workflow() {
    let api = start(api_key_config()).await;
    let body = backup_body("v1");
    let first = api.post("/api/backups", Some(ADMIN), &body, Some("nightly-2026-11-27")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = api.post("/api/backups", Some(ADMIN), &body, Some("nightly-2026-11-27")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["created"], false);
    assert_eq!(again.body["status"], "running");
    assert_eq!(again.headers["location"], first.headers["location"]);

    let other = api.post("/api/backups", Some(ADMIN), &body, Some("nightly-2026-11-28")).await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_ne!(other.body["id"], first.body["id"]);
    // Keys are scoped by caller: team1's "nightly-2026-11-27" is its own.
    let team = api.post("/api/backups", Some(TEAM1), &body, Some("nightly-2026-11-27")).await;
    assert_eq!(team.status, StatusCode::ACCEPTED);
    assert_ne!(team.body["id"], first.body["id"]);

    for bad in ["", &"k".repeat(201), "has space"] {
        let a = api.post("/api/backups", Some(ADMIN), &body, Some(bad)).await;
        assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "InvalidIdempotencyKey"), "key {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Status and list

/// The status shows steps, children (each state), and the failure with class and hint, and it
/// leaves internal fields out.
#[tokio::test]
async fn status_shows_steps_children_and_failure() {
    let api = start(api_key_config()).await;
    let a = api.post("/api/protect", Some(ADMIN), &protect_body(Some("v1")), None).await;
    let id = a.body["id"].as_str().unwrap().to_string();

    // Write what a few steps would have recorded.
    let backend = api.engine.backend();
    let mut v = backend.load(&id).await.unwrap().unwrap();
    let now = chrono::Utc::now();
    v.value.steps.push(StepRecord {
        step: "refreshContainers".into(),
        child: None,
        at: now,
        http_status: Some(202),
        operation_id: Some("op-1".into()),
        job_id: None,
        note: Some("waiting 2 s".into()),
    });
    v.value.steps.push(StepRecord {
        step: "trackJob".into(),
        child: Some(1),
        at: now,
        http_status: Some(200),
        operation_id: None,
        job_id: Some("job-1".into()),
        note: None,
    });
    let child = |item: &str, status: ChildStatus| Child {
        container: "VMAppContainer;compute;rg-sql;sqlvm01".into(),
        item: item.into(),
        friendly_name: item.into(),
        status,
        operation_url: None,
        job_id: None,
        job_status: None,
        trigger_sent_at: Some(now),
    };
    v.value.children = vec![
        child("pending", ChildStatus::Pending),
        Child {
            job_id: Some("job-1".into()),
            job_status: Some("InProgress".into()),
            operation_url: Some("https://x/op".into()),
            ..child("running", ChildStatus::Running)
        },
        child("ok", ChildStatus::Succeeded),
        child("bad", ChildStatus::Failed { failure: Failure::from_code("UserErrorSQLNoSysadminMembership", "no sysadmin", Some(400)) }),
        child("master", ChildStatus::Skipped { reason: "system database".into() }),
    ];
    v.value.target.container = Some("VMAppContainer;compute;rg-sql;sqlvm01".into());
    backend.commit(Commit { state: v.value, expected_version: v.version, next: vec![], ack: None, durable: false }).await.unwrap();

    let s = api.get(&format!("/api/workflows/{id}"), "/api/workflows/{id}", Some(ADMIN)).await;
    assert_eq!(s.body["steps"][0]["operationId"], "op-1");
    assert_eq!(s.body["steps"][1]["jobId"], "job-1");
    let states: Vec<&str> = s.body["children"].as_array().unwrap().iter().map(|c| c["status"]["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["pending", "running", "succeeded", "failed", "skipped"]);
    assert_eq!(s.body["children"][3]["status"]["failure"]["class"], "needsUserAction");
    assert!(s.body["children"][3]["status"]["failure"]["hint"].as_str().unwrap().contains("sysadmin"));
    assert_eq!(s.body["children"][4]["status"]["reason"], "system database");
    assert!(s.body["children"][0].get("triggerSentAt").is_none());

    api.engine.fail_workflow(&id, Failure::local("DeadlineExceeded", "took too long", FailureClass::Permanent)).await;
    let s = api.get(&format!("/api/workflows/{id}"), "/api/workflows/{id}", Some(ADMIN)).await;
    assert_eq!(s.body["status"], "failed");
    assert_eq!(s.body["failure"]["code"], "DeadlineExceeded");
    assert_eq!(s.body["failure"]["class"], "permanent");

    let missing = api.get("/api/workflows/backup-nope", "/api/workflows/{id}", Some(ADMIN)).await;
    assert_eq!((missing.status, code(&missing)), (StatusCode::NOT_FOUND, "NotFound"));
}

/// The list filters by status and kind and honours limit.
#[tokio::test]
async fn list_filters_by_status_kind_and_limit() {
    let api = start(api_key_config()).await;
    let mut ids = HashMap::new();
    for (name, path, body) in [
        ("p1", "/api/protect", protect_body(Some("v1"))),
        ("p2", "/api/protect", protect_body(Some("v2"))),
        ("b1", "/api/backups", backup_body("v1")),
        ("b2", "/api/backups", backup_body("v2")),
    ] {
        let a = api.post(path, Some(ADMIN), &body, None).await;
        ids.insert(name, a.body["id"].as_str().unwrap().to_string());
    }
    api.engine.fail_workflow(&ids["b2"], Failure::local("Boom", "it broke", FailureClass::Permanent)).await;

    let list = |q: &str| {
        let api = &api;
        let q = q.to_string();
        async move {
            let a = api.get(&format!("/api/workflows{q}"), "/api/workflows", Some(ADMIN)).await;
            assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.body);
            let mut got: Vec<String> = a.body["value"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect();
            got.sort();
            (got, a.body)
        }
    };
    let sorted = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|n| ids[n].clone()).collect();
        v.sort();
        v
    };
    assert_eq!(list("").await.0, sorted(&["p1", "p2", "b1", "b2"]));
    assert_eq!(list("?kind=protect").await.0, sorted(&["p1", "p2"]));
    assert_eq!(list("?kind=backup&status=running").await.0, sorted(&["b1"]));
    let (failed, body) = list("?status=failed").await;
    assert_eq!(failed, sorted(&["b2"]));
    assert_eq!(body["value"][0]["failure"]["code"], "Boom");
    assert_eq!(list("?status=succeeded").await.0, Vec::<String>::new());
    assert_eq!(list("?status=partiallySucceeded").await.0, Vec::<String>::new());
    assert_eq!(list("?limit=2").await.0.len(), 2);

    // team1 sees only the workflows of vault v1.
    let a = api.get("/api/workflows", "/api/workflows", Some(TEAM1)).await;
    let mut got: Vec<&str> = a.body["value"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    got.sort();
    let mut want = vec![ids["p1"].as_str(), ids["b1"].as_str()];
    want.sort();
    assert_eq!(got, want);
}

/// Bad query values, unknown and repeated parameters get 400 InvalidQuery.
#[tokio::test]
async fn bad_query_is_400() {
    let api = start(api_key_config()).await;
    for q in [
        "?status=done",
        "?status=Running",
        "?kind=restore",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?limit=-1",
        "?sort=asc",
        "?kind=backup&kind=protect",
    ] {
        let a = api.get(&format!("/api/workflows{q}"), "/api/workflows", Some(ADMIN)).await;
        assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "InvalidQuery"), "{q}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// Malformed JSON, unknown fields, wrong shapes and input the engine refuses all get 400 with a
/// code that says which.
#[tokio::test]
async fn bad_bodies_are_400_with_clear_codes() {
    let api = start(api_key_config()).await;
    let a = api.post_raw("/api/backups", ADMIN, "application/json", "{\"vaultId\": ").await;
    assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "InvalidJson"));
    let a = api.post_raw("/api/protect", ADMIN, "application/json", "not json").await;
    assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "InvalidJson"));

    let mut unknown = backup_body("v1");
    unknown["retentionDayz"] = json!(45);
    assert!(!request_errors("post", "/api/backups", &unknown).is_empty(), "the document refuses unknown fields too");
    let a = api.post("/api/backups", Some(ADMIN), &unknown, None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "UnknownField"));
    assert!(a.body["error"]["message"].as_str().unwrap().contains("retentionDayz"));
    let mut nested = protect_body(Some("v1"));
    nested["databases"]["includeSystm"] = json!(true);
    let a = api.post("/api/protect", Some(ADMIN), &nested, None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, "UnknownField"));

    let cases: Vec<(&str, Value, &str)> = vec![
        ("/api/backups", json!({"vaultId": vault("v1")}), "InvalidRequest"),
        ("/api/backups", json!({"vaultId": vault("v1"), "backupType": "Incremental"}), "InvalidRequest"),
        ("/api/backups", json!([1, 2]), "InvalidRequest"),
        ("/api/backups", json!({"vaultId": "not-an-id", "backupType": "Full"}), "InvalidVaultId"),
        ("/api/backups", json!({"vaultId": vm("x"), "backupType": "Full"}), "InvalidVaultId"),
        ("/api/backups", json!({"vaultId": vault("v1"), "backupType": "Full", "retentionDays": 30}), "InvalidRetention"),
        ("/api/backups", json!({"vaultId": vault("v1"), "backupType": "Full", "retentionDays": 40000}), "InvalidRetention"),
        ("/api/backups", json!({"vaultId": vault("v1"), "backupType": "Log", "retentionDays": 45}), "RetentionNotAllowed"),
        ("/api/protect", json!({"vmId": vault("v1"), "vaultId": vault("v1")}), "InvalidVmId"),
        ("/api/protect", json!({"vmId": "/subscriptions/x/resourceGroups/rg", "vaultId": vault("v1")}), "InvalidVmId"),
        ("/api/protect", json!({"vmId": vm("a"), "vaultId": vault("v1"), "policy": "a/b"}), "InvalidPolicy"),
    ];
    for (path, body, want) in cases {
        let a = api.post(path, Some(ADMIN), &body, None).await;
        assert_eq!((a.status, code(&a)), (StatusCode::BAD_REQUEST, want), "{path} {body}: {}", a.body);
    }
}

/// A body that is not JSON by its content type gets 415.
#[tokio::test]
async fn wrong_content_type_is_415() {
    let api = start(api_key_config()).await;
    let body = backup_body("v1").to_string();
    for ct in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
        let a = api.post_raw("/api/backups", ADMIN, ct, body.clone()).await;
        assert_eq!((a.status, code(&a)), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"), "{ct}");
    }
    let a = api.post_raw("/api/backups", ADMIN, "application/json; charset=utf-8", body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let req = api.http.post(format!("{}/api/backups", api.base)).header("x-api-key", ADMIN).body(backup_body("v1").to_string());
    let a = api.send(req, "post", "/api/backups").await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type at all");
}

/// A body over maxBodyBytes gets 413, whether its length is declared or streamed.
#[tokio::test]
async fn oversized_body_is_413() {
    let api = start(api_key_config()).await;
    let mut body = backup_body("v1");
    body["vms"] = json!(vec!["x".repeat(100); 50]);
    let a = api.post("/api/backups", Some(ADMIN), &body, None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));

    // Chunked, no Content-Length: the cap holds while reading.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(api.base.trim_start_matches("http://")).await.unwrap();
    let mut raw = format!(
        "POST /api/backups HTTP/1.1\r\nhost: x\r\nx-api-key: {ADMIN}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    for _ in 0..10 {
        raw.push_str(&format!("3e8\r\n{}\r\n", " ".repeat(1000)));
    }
    raw.push_str("0\r\n\r\n");
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("PayloadTooLarge"), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorization

/// No key or a wrong key gets 401 with a challenge, on POSTs and GETs alike.
#[tokio::test]
async fn api_key_missing_or_wrong_is_401() {
    let api = start(api_key_config()).await;
    for key in [None, Some("wrong"), Some(""), Some("admin-key-012345678"), Some("admin-key-01234567890")] {
        let a = api.post("/api/backups", key, &backup_body("v1"), None).await;
        assert_eq!((a.status, code(&a)), (StatusCode::UNAUTHORIZED, "Unauthorized"), "{key:?}");
        assert!(a.headers["www-authenticate"].to_str().unwrap().contains("x-api-key"));
        let a = api.get("/api/workflows", "/api/workflows", key).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{key:?}");
        let a = api.get("/api/workflows/x", "/api/workflows/{id}", key).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{key:?}");
    }
    // The message never echoes what was presented.
    let a = api.post("/api/backups", Some("sneaky-value"), &backup_body("v1"), None).await;
    assert!(!a.body.to_string().contains("sneaky-value"));
}

/// A caller limited to some vaults gets 403 for others (and for a protect request with no vault),
/// and sees other vaults' workflows as 404.
#[tokio::test]
async fn vault_not_allowed_is_403_and_hidden_workflows_are_404() {
    let api = start(api_key_config()).await;
    let a = api.post("/api/backups", Some(TEAM1), &backup_body("v2"), None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::FORBIDDEN, "VaultNotAllowed"));
    let a = api.post("/api/protect", Some(TEAM1), &protect_body(Some("v2")), None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::FORBIDDEN, "VaultNotAllowed"));
    let a = api.post("/api/protect", Some(TEAM1), &protect_body(None), None).await;
    assert_eq!((a.status, code(&a)), (StatusCode::FORBIDDEN, "VaultNotAllowed"));
    assert!(a.body["error"]["message"].as_str().unwrap().contains("vaultId"));
    // Vault ids compare case-insensitively.
    let mut upper = backup_body("v1");
    upper["vaultId"] = json!(vault("V1").to_lowercase());
    let a = api.post("/api/backups", Some(TEAM1), &upper, None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);

    // The admin may submit without a vault; team1 cannot see that workflow, nor v2's.
    let no_vault = api.post("/api/protect", Some(ADMIN), &protect_body(None), None).await;
    assert_eq!(no_vault.status, StatusCode::ACCEPTED, "{}", no_vault.body);
    let v2 = api.post("/api/backups", Some(ADMIN), &backup_body("v2"), None).await;
    for id in [&no_vault.body["id"], &v2.body["id"]] {
        let path = format!("/api/workflows/{}", id.as_str().unwrap());
        let a = api.get(&path, "/api/workflows/{id}", Some(TEAM1)).await;
        assert_eq!((a.status, code(&a)), (StatusCode::NOT_FOUND, "NotFound"));
        assert_eq!(api.get(&path, "/api/workflows/{id}", Some(ADMIN)).await.status, StatusCode::OK);
    }
}

/// Correctly signed HMAC requests pass (RFC 3339 or unix-seconds dates); a wrong secret, a
/// tampered body or query, an unknown client, a stale or future date, or missing headers get 401.
#[tokio::test]
async fn hmac_signatures_are_checked() {
    let api = start(hmac_config()).await;
    let now = chrono::Utc::now();
    let date = now.to_rfc3339();
    let body = backup_body("v1").to_string();

    let a = api.signed(Method::POST, "/api/backups", "/api/backups", body.as_bytes(), ("ops", "ops-hmac-secret"), &date).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_string();
    let unix = now.timestamp().to_string();
    let a = api.signed(Method::GET, &format!("/api/workflows/{id}"), "/api/workflows/{id}", b"", ("ops", "ops-hmac-secret"), &unix).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["origin"], "api:ops");
    let a = api.signed(Method::GET, "/api/workflows?kind=backup&limit=5", "/api/workflows", b"", ("ops", "ops-hmac-secret"), &date).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["value"].as_array().unwrap().len(), 1);

    let unauthorized = |a: Answer, why: &str| {
        assert_eq!((a.status, code(&a)), (StatusCode::UNAUTHORIZED, "Unauthorized"), "{why}: {}", a.body);
        assert!(a.headers["www-authenticate"].to_str().unwrap().starts_with("HMAC-SHA256"));
    };
    unauthorized(
        api.signed(Method::POST, "/api/backups", "/api/backups", body.as_bytes(), ("ops", "wrong-secret"), &date).await,
        "wrong secret",
    );
    unauthorized(
        api.signed(Method::POST, "/api/backups", "/api/backups", body.as_bytes(), ("nobody", "ops-hmac-secret"), &date).await,
        "unknown client",
    );
    let stale = (now - chrono::Duration::seconds(600)).to_rfc3339();
    let a = api.signed(Method::GET, "/api/workflows", "/api/workflows", b"", ("ops", "ops-hmac-secret"), &stale).await;
    assert!(a.body["error"]["message"].as_str().unwrap().contains("clock"));
    unauthorized(a, "stale date");
    let future = (now + chrono::Duration::seconds(600)).timestamp().to_string();
    unauthorized(
        api.signed(Method::GET, "/api/workflows", "/api/workflows", b"", ("ops", "ops-hmac-secret"), &future).await,
        "future date",
    );
    unauthorized(
        api.signed(Method::GET, "/api/workflows", "/api/workflows", b"", ("ops", "ops-hmac-secret"), "yesterday").await,
        "bad date",
    );

    // Signed for one request, sent with another body / query.
    let sig = auth::sign("ops", "ops-hmac-secret", "POST", "/api/backups", &date, body.as_bytes());
    let tampered = backup_body("v2").to_string();
    let req = api
        .http
        .post(format!("{}/api/backups", api.base))
        .header("x-sqlvm-date", &date)
        .header("x-sqlvm-signature", &sig)
        .header("content-type", "application/json")
        .body(tampered);
    unauthorized(api.send(req, "post", "/api/backups").await, "tampered body");
    let sig = auth::sign("ops", "ops-hmac-secret", "GET", "/api/workflows?kind=backup", &date, b"");
    let req =
        api.http.get(format!("{}/api/workflows?kind=protect", api.base)).header("x-sqlvm-date", &date).header("x-sqlvm-signature", &sig);
    unauthorized(api.send(req, "get", "/api/workflows").await, "tampered query");
    let req =
        api.http.get(format!("{}/api/workflows", api.base)).header("x-sqlvm-date", &date).header("x-sqlvm-signature", "ops:!!notbase64!!");
    unauthorized(api.send(req, "get", "/api/workflows").await, "signature not base64");
    let req = api.http.get(format!("{}/api/workflows", api.base)).header("x-sqlvm-date", &date).header("x-sqlvm-signature", "no-colon");
    unauthorized(api.send(req, "get", "/api/workflows").await, "signature without client");
    let req = api.http.get(format!("{}/api/workflows", api.base)).header("x-sqlvm-date", &date);
    unauthorized(api.send(req, "get", "/api/workflows").await, "no signature");
    let req = api.http.get(format!("{}/api/workflows", api.base)).header("x-api-key", ADMIN);
    unauthorized(api.send(req, "get", "/api/workflows").await, "api key in hmac mode");
}

/// Unknown routes and methods answer JSON errors rather than empty bodies.
#[tokio::test]
async fn unknown_routes_and_methods() {
    let api = start(api_key_config()).await;
    let rsp = api.http.get(format!("{}/api/nothing", api.base)).header("x-api-key", ADMIN).send().await.unwrap();
    assert_eq!(rsp.status(), StatusCode::NOT_FOUND);
    assert_eq!(rsp.json::<Value>().await.unwrap()["error"]["code"], "NotFound");
    let rsp = api.http.delete(format!("{}/api/backups", api.base)).header("x-api-key", ADMIN).send().await.unwrap();
    assert_eq!(rsp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(rsp.json::<Value>().await.unwrap()["error"]["code"], "MethodNotAllowed");
}

/// The configuration's Debug output never shows a key or secret.
#[test]
fn config_debug_hides_secrets() {
    let printed = format!("{:?} {:?}", api_key_config(), hmac_config());
    for secret in [ADMIN, TEAM1, "ops-hmac-secret"] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    assert!(printed.contains("admin") && printed.contains("ops"));
    assert!(matches!(hmac_config().auth, AuthConfig::Hmac { max_skew_seconds: 120, .. }));
}

/// Every path and status the tests exercise is in the document, and its request bodies refuse
/// unknown properties.
#[test]
fn openapi_document_is_consistent() {
    let doc = openapi();
    assert_eq!(doc["openapi"].as_str().unwrap().split('.').next(), Some("3"));
    for name in ["ProtectRequest", "BackupRequest", "DatabaseFilter", "ItemRef"] {
        assert_eq!(doc["components"]["schemas"][name]["additionalProperties"], false, "{name}");
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["apiKey"]["name"], "x-api-key");
    assert_eq!(schemes["hmacSignature"]["name"], "x-sqlvm-signature");
    // Every $ref resolves.
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if v.get("$ref").is_some() {
                    resolve(doc, v);
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(doc, doc);
}

/// The checker itself catches what it should: unknown and missing properties, wrong types and
/// enums, bad dates, a oneOf matching nothing.
#[test]
fn schema_checker_catches_mismatches() {
    let doc = openapi();
    let schema = json!({"$ref": "#/components/schemas/Workflow"});
    let good = json!({"id": "w", "kind": "backup", "status": "running", "origin": "api:a", "createdAt": "2026-11-27T10:00:00Z",
        "updatedAt": "2026-11-27T10:00:00Z", "deadline": "2026-11-28T10:00:00Z", "input": {"vaultId": "v", "backupType": "Log", "retentionDays": null},
        "target": {}, "steps": [{"step": "s", "at": "2026-11-27T10:00:00Z"}], "children": []});
    let errors_of = |v: &Value| {
        let mut e = vec![];
        validate(doc, &schema, v, "$", &mut e);
        e
    };
    assert_eq!(errors_of(&good), Vec::<String>::new());
    type Mutation = Box<dyn Fn(&mut Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("extra", Box::new(|v| v["doneSteps"] = json!([]))),
        ("missing", Box::new(|v| drop(v.as_object_mut().unwrap().remove("origin")))),
        ("enum", Box::new(|v| v["status"] = json!("done"))),
        ("type", Box::new(|v| v["steps"] = json!({}))),
        ("date", Box::new(|v| v["steps"][0]["at"] = json!("yesterday"))),
        ("oneOf", Box::new(|v| v["input"] = json!({"nothing": 1}))),
        ("null", Box::new(|v| v["input"]["backupType"] = Value::Null)),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!errors_of(&bad).is_empty(), "{what} not caught");
    }
}

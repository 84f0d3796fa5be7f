//! The Event Grid webhook: both handshakes, authentication, filtering with reasons,
//! de-duplication of bursts into one protect workflow, CloudEvents, and the simulator's events.

mod common;
use common::StaticToken;

use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::events::{EventAuth, EventRules, ProtectDefaults, router, router_with_clock};
use sqlvm_backup_shared::arm::ArmClient;
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::ListFilter;
use sqlvm_backup_shared::secret::Secret;
use sqlvm_backup_shared::workflow::state::{WorkflowInput, WorkflowState};

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const OTHER_SUB: &str = "99999999-2222-3333-4444-555555555555";
const KEY: &str = "a-long-event-grid-key-0123456789";
const VAULT: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-sql/providers/Microsoft.RecoveryServices/vaults/v1";

fn vm_in(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}")
}

fn vm(name: &str) -> String {
    vm_in(SUB, "rg-sql-prod", name)
}

fn rules() -> EventRules {
    EventRules {
        subscriptions: vec![],
        resource_groups: vec![],
        dedupe_window_seconds: 600,
        protect: ProtectDefaults::default(),
        auth: EventAuth { key: Secret::new(KEY) },
    }
}

struct Harness {
    engine: Arc<Engine>,
    base: String,
}

fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 12, 44).unwrap()
}

async fn harness(rules: EventRules) -> Harness {
    rules.validate().unwrap();
    let backend = Arc::new(SqliteBackend::in_memory().unwrap());
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("static-token".into())), None).unwrap();
    let engine = Arc::new(Engine::new(backend, arm, EngineOptions::default()));
    let app = router_with_clock(engine.clone(), Arc::new(rules), Arc::new(fixed_now));
    Harness { engine, base: serve(app).await }
}

/// Serve the router on a loopback port; the server lives as long as the test's runtime.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A request: method, path and query, headers, body.
struct Req {
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Req {
    fn post(path: impl Into<String>, body: impl Into<String>) -> Req {
        Req { method: Method::POST, path: path.into(), headers: vec![], body: body.into() }
    }
    fn options(path: impl Into<String>) -> Req {
        Req { method: Method::OPTIONS, path: path.into(), headers: vec![], body: String::new() }
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Req {
        self.headers.push((k, v.into()));
        self
    }
}

impl Harness {
    async fn send(&self, req: Req) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        send(&self.base, req).await
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self.send(notification(body)).await;
        (s, v)
    }

    async fn workflows(&self) -> Vec<WorkflowState> {
        self.engine.backend().list(&ListFilter { limit: 10_000, ..Default::default() }).await.unwrap()
    }
}

async fn send(base: &str, req: Req) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut r = reqwest::Client::new().request(req.method, format!("{base}{}", req.path)).body(req.body);
    for (k, v) in req.headers {
        r = r.header(k, v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (status, v, headers)
}

fn notification(body: Value) -> Req {
    Req::post("/api/events/vm", body.to_string())
        .header("content-type", "application/json")
        .header("aeg-event-type", "Notification")
        .header("aeg-sas-key", KEY)
}

fn event(id: &str, vm_id: &str) -> Value {
    json!({
        "id": id,
        "topic": format!("/subscriptions/{SUB}"),
        "subject": vm_id,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2026-11-27T10:12:44.1234567Z",
        "data": {
            "resourceProvider": "Microsoft.Compute",
            "resourceUri": vm_id,
            "operationName": "Microsoft.Compute/virtualMachines/write",
            "status": "Succeeded",
            "subscriptionId": SUB,
        },
        "dataVersion": "2",
        "metadataVersion": "1"
    })
}

fn reasons(v: &Value) -> Vec<(String, String)> {
    v["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap().to_string(), i["reason"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn subscription_validation_handshake() {
    let h = harness(rules()).await;
    let body = json!([{
        "id": "2c0c4a8e-0f4b-4d5e-b1b8-3f2a6c7d8e9f",
        "topic": format!("/subscriptions/{SUB}"),
        "subject": "",
        "data": { "validationCode": "0a1b2c3d-4e5f", "validationUrl": "https://rp-westeurope.eventgrid.azure.net:553/x" },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-11-27T10:00:00.0000000Z",
        "metadataVersion": "1",
        "dataVersion": "1"
    }]);
    let req = Req::post(format!("/api/events/vm?code={KEY}"), body.to_string())
        .header("content-type", "application/json")
        .header("aeg-event-type", "SubscriptionValidation");
    let (status, v, _) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v, json!({ "validationResponse": "0a1b2c3d-4e5f" }));
    assert!(h.workflows().await.is_empty());

    // The validation needs the key too.
    let req = Req::post("/api/events/vm", body.to_string()).header("aeg-event-type", "SubscriptionValidation");
    assert_eq!(h.send(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cloudevents_options_handshake() {
    let h = harness(rules()).await;
    let req = Req::options(format!("/api/events/vm?code={KEY}")).header("WebHook-Request-Origin", "eventgrid.azure.net");
    let (status, _, headers) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("webhook-allowed-origin").unwrap(), "eventgrid.azure.net");

    let unauth = Req::options("/api/events/vm?code=wrong").header("WebHook-Request-Origin", "eventgrid.azure.net");
    assert_eq!(h.send(unauth).await.0, StatusCode::UNAUTHORIZED);
    let no_origin = Req::options("/api/events/vm").header("aeg-sas-key", KEY);
    assert_eq!(h.send(no_origin).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_duplicates_makes_one_workflow() {
    let h = harness(rules()).await;
    let id = vm("sqlvm01");
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let base = h.base.clone();
            let body = json!([event(&format!("e{i}"), &id)]);
            tokio::spawn(async move { send(&base, notification(body)).await })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for handle in handles {
        let (status, v, _) = handle.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{v}");
        let a = &v["accepted"][0];
        assert_eq!(a["vmId"], json!(id));
        created += usize::from(a["created"].as_bool().unwrap());
        ids.insert(a["workflowId"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);

    // Repeats, one request with several copies, and other id casing: still the same workflow.
    let upper = id.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions").replace("RESOURCEGROUPS", "resourcegroups");
    let (status, v) = h.post(json!([event("r1", &id), event("r2", &id), event("r3", &upper)])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["accepted"].as_array().unwrap().len(), 3);
    assert!(
        v["accepted"].as_array().unwrap().iter().all(|a| a["created"] == json!(false) && ids.contains(a["workflowId"].as_str().unwrap()))
    );

    let wfs = h.workflows().await;
    assert_eq!(wfs.len(), 1);
    assert_eq!(wfs[0].origin, "event-grid");
    match &wfs[0].input {
        WorkflowInput::Protect(p) => {
            assert_eq!(p.vm_id, id);
            assert_eq!(p.vault_id, None);
            assert_eq!(p.policy, None);
        }
        other => panic!("{other:?}"),
    }

    // Another VM is its own workflow.
    let (_, v) = h.post(json!([event("o1", &vm("sqlvm02"))])).await;
    assert_eq!(v["accepted"][0]["created"], json!(true));
    assert_eq!(h.workflows().await.len(), 2);
}

#[tokio::test]
async fn a_new_window_starts_a_new_workflow() {
    let backend = Arc::new(SqliteBackend::in_memory().unwrap());
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("static-token".into())), None).unwrap();
    let engine = Arc::new(Engine::new(backend, arm, EngineOptions::default()));
    let rules = Arc::new(rules());
    let now = fixed_now();
    let first = router_with_clock(engine.clone(), rules.clone(), Arc::new(move || now));
    let later = router_with_clock(engine.clone(), rules.clone(), Arc::new(move || now + chrono::Duration::seconds(700)));
    let (first, later) = (serve(first).await, serve(later).await);
    let (_, a, _) = send(&first, notification(json!([event("a", &vm("x"))]))).await;
    let (_, b, _) = send(&later, notification(json!([event("b", &vm("x"))]))).await;
    assert_eq!(a["accepted"][0]["created"], json!(true));
    assert_eq!(b["accepted"][0]["created"], json!(true));
    assert_ne!(a["accepted"][0]["workflowId"], b["accepted"][0]["workflowId"]);
}

#[tokio::test]
async fn unwanted_events_are_ignored_with_reasons() {
    let mut r = rules();
    r.subscriptions = vec![SUB.to_uppercase()];
    r.resource_groups = vec!["rg-sql-*".into(), "legacy".into()];
    let h = harness(r).await;

    let mut other_op = event("op", &vm("a"));
    other_op["data"]["operationName"] = json!("Microsoft.Compute/virtualMachines/extensions/write");
    let mut failed = event("failed", &vm("b"));
    failed["data"]["status"] = json!("Failed");
    let mut delete = event("delete", &vm("c"));
    delete["eventType"] = json!("Microsoft.Resources.ResourceDeleteSuccess");
    let other_sub = event("sub", &vm_in(OTHER_SUB, "rg-sql-prod", "d"));
    let other_rg = event("rg", &vm_in(SUB, "rg-web", "e"));
    let not_vm = {
        let id = format!("/subscriptions/{SUB}/resourceGroups/rg-sql-prod/providers/Microsoft.Storage/storageAccounts/st1");
        event("notvm", &id)
    };
    let mut garbage_id = event("garbage", "not-an-id");
    garbage_id["data"]["resourceUri"] = json!("/subscriptions/x/../etc");
    // No status at all is accepted; subject is the fallback for the id; "LEGACY" matches "legacy".
    let mut no_status = event("nostatus", &vm_in(SUB, "LEGACY", "f"));
    no_status["data"].as_object_mut().unwrap().remove("status");
    no_status["data"].as_object_mut().unwrap().remove("resourceUri");
    let good = event("good", &vm_in(SUB, "RG-SQL-PROD", "g"));

    let (status, v) = h.post(json!([other_op, failed, delete, other_sub, other_rg, not_vm, garbage_id, no_status, good])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let accepted: Vec<_> = v["accepted"].as_array().unwrap().iter().map(|a| a["eventId"].as_str().unwrap().to_string()).collect();
    assert_eq!(accepted, ["nostatus", "good"]);
    let r = reasons(&v);
    let reason = |id: &str| r.iter().find(|(i, _)| i == id).map(|(_, why)| why.clone()).unwrap_or_else(|| panic!("{id} not ignored: {v}"));
    assert!(reason("op").contains("extensions/write"));
    assert!(reason("failed").contains("Failed"));
    assert!(reason("delete").contains("ResourceDeleteSuccess"));
    assert!(reason("sub").contains("subscription"));
    assert!(reason("rg").contains("rg-web"));
    assert!(reason("notvm").contains("virtualMachines"));
    assert!(reason("garbage").contains("invalid resource id"));
    assert_eq!(r.len(), 7);
    assert_eq!(h.workflows().await.len(), 2);
}

#[tokio::test]
async fn a_bad_key_is_401() {
    let h = harness(rules()).await;
    let body = json!([event("e", &vm("a"))]).to_string();
    for req in [
        Req::post("/api/events/vm", body.clone()).header("aeg-event-type", "Notification"),
        Req::post("/api/events/vm", body.clone()).header("aeg-sas-key", "wrong"),
        Req::post("/api/events/vm?code=wrong", body.clone()),
        Req::post(format!("/api/events/vm?code={KEY}x"), body.clone()),
    ] {
        let (status, v, _) = h.send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    }
    assert!(h.workflows().await.is_empty());
    // The key in the query works as well as the header.
    let ok = Req::post(format!("/api/events/vm?code={KEY}"), body).header("content-type", "application/json");
    assert_eq!(h.send(ok).await.0, StatusCode::OK);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let h = harness(rules()).await;
    for body in
        ["{not json", "42", "\"text\"", "[1, 2]", "{\"eventType\": \"x\", \"id\": \"1\"}", "[{\"id\": \"1\"}]", "[{\"eventType\": \"x\"}]"]
    {
        let req = Req::post("/api/events/vm", body).header("aeg-sas-key", KEY).header("content-type", "application/json");
        let (status, v, _) = h.send(req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A validation event without its code.
    let (status, _) = h.post(json!([{ "id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {} }])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cloudevents_single_object() {
    let h = harness(rules()).await;
    let id = vm("sqlvm01");
    let ce = json!({
        "specversion": "1.0",
        "type": "Microsoft.Resources.ResourceWriteSuccess",
        "source": format!("/subscriptions/{SUB}"),
        "subject": id,
        "id": "ce-1",
        "time": "2026-11-27T10:12:44.1234567Z",
        "data": { "resourceUri": id, "operationName": "Microsoft.Compute/virtualMachines/write", "status": "Succeeded", "subscriptionId": SUB }
    });
    let req = Req::post("/api/events/vm", ce.to_string())
        .header("content-type", "application/cloudevents+json; charset=utf-8")
        .header("aeg-sas-key", KEY);
    let (status, v, _) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"][0]["vmId"], json!(id));
    assert_eq!(v["accepted"][0]["created"], json!(true));
    // A batch of CloudEvents works too.
    let req = Req::post("/api/events/vm", json!([ce]).to_string())
        .header("content-type", "application/cloudevents-batch+json")
        .header("aeg-sas-key", KEY);
    let (status, v, _) = h.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["accepted"][0]["created"], json!(false));
    assert_eq!(h.workflows().await.len(), 1);
}

#[tokio::test]
async fn protect_defaults_are_passed_on() {
    let mut r = rules();
    r.protect = ProtectDefaults {
        vault_id: Some(VAULT.into()),
        policy: Some("HourlyLogBackup".into()),
        auto_protect: true,
        initial_full_backup: true,
        ..Default::default()
    };
    let h = harness(r).await;
    let (status, v) = h.post(json!([event("e", &vm("a"))])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let wfs = h.workflows().await;
    match &wfs[0].input {
        WorkflowInput::Protect(p) => {
            assert_eq!(p.vault_id.as_deref(), Some(VAULT));
            assert_eq!(p.policy.as_deref(), Some("HourlyLogBackup"));
            assert!(p.auto_protect && p.initial_full_backup);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_config_and_validation() {
    let r: EventRules = serde_json::from_value(json!({ "auth": { "key": KEY }, "resourceGroups": ["rg-*"] })).unwrap();
    assert_eq!(r.dedupe_window_seconds, 600);
    assert!(r.subscriptions.is_empty());
    r.validate().unwrap();
    assert!(!format!("{r:?}").contains(KEY));
    assert!(serde_json::from_value::<EventRules>(json!({ "auth": { "key": KEY }, "requiredTags": {} })).is_err());
    // No key: refused by the webhook (serve), fine behind the Functions trigger (host-authenticated).
    let keyless: EventRules = serde_json::from_value(json!({})).unwrap();
    assert!(keyless.validate().unwrap_err().to_string().contains("auth.key"));
    keyless.validate_filters().unwrap();
    let short: EventRules = serde_json::from_value(json!({ "auth": { "key": "short" } })).unwrap();
    assert!(short.validate().is_err());
    let bad_vault: EventRules = serde_json::from_value(json!({ "auth": { "key": KEY }, "protect": { "vaultId": "nope" } })).unwrap();
    assert!(bad_vault.validate().unwrap_err().to_string().contains("protect"));
}

#[tokio::test]
async fn the_simulators_event_is_accepted() {
    let backend = Arc::new(SqliteBackend::in_memory().unwrap());
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("static-token".into())), None).unwrap();
    let engine = Arc::new(Engine::new(backend, arm, EngineOptions::default()));
    let base = serve(router(engine.clone(), Arc::new(rules()))).await;
    let id = vm("sqlvm-sim");
    let body = sqlvm_backup_emulator::control::write_success_event(SUB, &id, Utc::now());
    let (status, v, _) = send(&base, notification(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"][0]["vmId"], json!(id));
    assert_eq!(v["accepted"][0]["created"], json!(true));
    assert!(v["ignored"].as_array().unwrap().is_empty());
}

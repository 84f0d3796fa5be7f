//! The control API under `/_sim`, for tests and demos: deploy VMs and databases at run time
//! (optionally announcing them with an Event Grid `ResourceWriteSuccess` event), read counters,
//! the ordered request log, jobs and schema violations, change settings, advance the clock,
//! mint tokens, and reset. It is never rate limited, faulted or authenticated: bind the
//! simulator to loopback (the default).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::names::{key, timestamp, vm_id};
use crate::scenario::{DatabaseSpec, VmSpec};
use crate::server::{Shared, lock};
use crate::settings::Settings;
use crate::world::World;

/// Where VM deployments are announced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventGridTarget {
    pub url: String,
    /// Extra headers sent with each event (e.g. a webhook key). Values are not echoed back.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/requests", get(requests))
        .route("/counters", get(counters))
        .route("/jobs", get(jobs))
        .route("/schema-violations", get(violations))
        .route("/reset", post(reset))
        .route("/settings", get(get_settings).patch(patch_settings))
        .route("/clock/advance", post(advance))
        .route("/tokens", post(token))
        .route("/event-grid", get(get_event_grid).put(put_event_grid))
        .route("/vms", post(create_vm))
        .route("/vms/{subscription}/{resource_group}/{name}/databases", post(add_database))
}

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": { "code": "BadRequest", "message": msg.into() } }))).into_response()
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn requests(State(s): State<Arc<Shared>>, Query(q): Query<Since>) -> Json<Value> {
    let r = lock(&s.recorder);
    Json(json!({ "total": r.total(), "requests": r.log_since(q.since.unwrap_or(0)) }))
}

async fn counters(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(lock(&s.recorder).counters()))
}

async fn jobs(State(s): State<Arc<Shared>>) -> Json<Value> {
    let now = s.clock.now();
    let mut w = lock(&s.world);
    w.tick(now);
    let mut out = Vec::new();
    for v in w.vaults.values() {
        for j in &v.jobs {
            out.push(json!({
                "vault": v.id(), "id": j.id, "operation": j.operation, "status": j.status.as_str(), "entity": j.entity_friendly_name,
                "startTime": timestamp(j.start), "endTime": j.end.map(timestamp),
                "error": j.error.as_ref().map(|e| json!({ "errorCode": e.error_code, "errorTitle": e.title }))
            }));
        }
    }
    Json(json!({ "jobs": out }))
}

async fn violations(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "violations": *lock(&s.violations), "validating": s.schema.is_some() }))
}

async fn reset(State(s): State<Arc<Shared>>) -> Json<Value> {
    let scenario = lock(&s.scenario).clone();
    *lock(&s.world) = World::from_scenario(&scenario);
    lock(&s.recorder).reset();
    lock(&s.throttle).reset();
    lock(&s.violations).clear();
    Json(json!({ "reset": true }))
}

async fn get_settings(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!(lock(&s.world).settings))
}

/// Merge a partial settings object (JSON merge-patch semantics for objects).
async fn patch_settings(State(s): State<Arc<Shared>>, Json(patch): Json<Value>) -> Response {
    let mut w = lock(&s.world);
    let mut current = json!(w.settings);
    merge(&mut current, &patch);
    match serde_json::from_value::<Settings>(current) {
        Ok(new) => {
            w.settings = new;
            Json(json!(w.settings)).into_response()
        }
        Err(e) => bad(format!("invalid settings: {e}")),
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance(State(s): State<Arc<Shared>>, Json(a): Json<Advance>) -> Response {
    if !(a.seconds.is_finite() && a.seconds >= 0.0 && a.seconds < 1e9) {
        return bad("seconds must be a non-negative number");
    }
    s.clock.advance(chrono::Duration::milliseconds((a.seconds * 1000.0) as i64));
    let now = s.clock.now();
    lock(&s.world).tick(now);
    Json(json!({ "now": timestamp(now) })).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    audience: Option<String>,
}

async fn token(State(s): State<Arc<Shared>>, body: Option<Json<TokenRequest>>) -> Json<Value> {
    let aud = body.and_then(|b| b.0.audience).unwrap_or_else(|| "https://management.azure.com".into());
    let (tok, exp) = s.identity.issue(
        &aud,
        crate::identity::DEFAULT_MANAGED_IDENTITY_CLIENT_ID,
        crate::identity::MANAGED_IDENTITY_TENANT_ID,
        s.clock.now(),
    );
    Json(json!({ "access_token": tok, "expires_on": exp.timestamp().to_string(), "token_type": "Bearer" }))
}

async fn get_event_grid(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "url": lock(&s.event_grid).as_ref().map(|t| t.url.clone()) }))
}

async fn put_event_grid(State(s): State<Arc<Shared>>, Json(t): Json<EventGridTarget>) -> Response {
    if url::Url::parse(&t.url).is_err() {
        return bad("url is not a valid URL");
    }
    *lock(&s.event_grid) = Some(t);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateVm {
    #[serde(flatten)]
    vm: VmSpec,
}

#[derive(Deserialize)]
struct Notify {
    notify: Option<bool>,
    /// Send the event this many times (Event Grid delivers at least once).
    repeat: Option<u32>,
}

/// Deploy a VM. With `?notify=true` (default when a target is configured) the simulator posts
/// the `Microsoft.Resources.ResourceWriteSuccess` event a deployment would raise.
async fn create_vm(
    State(s): State<Arc<Shared>>,
    Query(n): Query<Notify>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(raw)) = body else { return bad("body must be a JSON VM description") };
    let spec: VmSpec = match serde_json::from_value::<CreateVm>(raw) {
        Ok(c) => c.vm,
        Err(e) => return bad(format!("invalid VM: {e}")),
    };
    let id = match lock(&s.world).add_vm(&spec) {
        Ok(id) => id,
        Err(e) => return (StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), Json(e.body())).into_response(),
    };
    let target = lock(&s.event_grid).clone();
    let mut deliveries = Vec::new();
    if let Some(t) = target.filter(|_| n.notify.unwrap_or(true)) {
        let event = write_success_event(&spec.subscription_id, &id, s.clock.now());
        for _ in 0..n.repeat.unwrap_or(1).clamp(1, 100) {
            deliveries.push(deliver(&s, &t, &event).await);
        }
    }
    (StatusCode::CREATED, Json(json!({ "id": id, "eventDeliveries": deliveries }))).into_response()
}

/// The event shape of azure-functions.md §5.1.
pub fn write_success_event(subscription: &str, resource_id: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!([{
        "id": uuid::Uuid::new_v4().to_string(),
        "topic": format!("/subscriptions/{subscription}"),
        "subject": resource_id,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": timestamp(now),
        "data": {
            "authorization": { "scope": resource_id, "action": "Microsoft.Compute/virtualMachines/write", "evidence": { "role": "Contributor", "principalType": "ServicePrincipal" } },
            "claims": { "appid": crate::identity::DEFAULT_MANAGED_IDENTITY_CLIENT_ID, "ver": "1.0" },
            "correlationId": uuid::Uuid::new_v4().to_string(),
            "resourceProvider": "Microsoft.Compute",
            "resourceUri": resource_id,
            "operationName": "Microsoft.Compute/virtualMachines/write",
            "status": "Succeeded",
            "subscriptionId": subscription,
            "tenantId": crate::identity::MANAGED_IDENTITY_TENANT_ID
        },
        "dataVersion": "2",
        "metadataVersion": "1"
    }])
}

async fn deliver(s: &Shared, t: &EventGridTarget, event: &Value) -> Value {
    let mut req =
        s.http.post(&t.url).header("aeg-event-type", "Notification").header("content-type", "application/json").body(event.to_string());
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(r) => json!({ "status": r.status().as_u16() }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddDatabase {
    instance: String,
    database: DatabaseSpec,
}

/// Create a database on a VM (found by a later inquiry, as in the service).
async fn add_database(
    State(s): State<Arc<Shared>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    body: Result<Json<AddDatabase>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(req)) = body else { return bad("body must be {\"instance\": ..., \"database\": {\"name\": ...}}") };
    let mut w = lock(&s.world);
    let sub_id = w.subscriptions.get(&key(&sub)).map(|x| x.id.clone()).unwrap_or(sub);
    let Some(vm) = w.vms.get_mut(&key(&vm_id(&sub_id, &rg, &name))) else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": { "code": "NotFound", "message": "no such VM" } }))).into_response();
    };
    match vm.instances.iter_mut().find(|i| i.name.eq_ignore_ascii_case(&req.instance)) {
        Some(inst) => {
            if inst.databases.iter().any(|d| d.name.eq_ignore_ascii_case(&req.database.name)) {
                return bad("the database exists already");
            }
            inst.databases.push(req.database);
        }
        None => vm.instances.push(crate::world::SqlInstance { name: req.instance, databases: vec![req.database] }),
    }
    StatusCode::CREATED.into_response()
}

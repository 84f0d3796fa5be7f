//! Event Grid webhook: a VM created or updated (`Microsoft.Resources.ResourceWriteSuccess` for
//! `Microsoft.Compute/virtualMachines/write`) starts a protect workflow for that VM.
//!
//! `POST /api/events/vm` takes the Event Grid schema (a JSON array of events) or CloudEvents 1.0
//! (one object, or an array, `application/cloudevents+json`); `OPTIONS /api/events/vm` answers
//! the CloudEvents abuse-protection handshake. Every request must carry the configured key, in
//! the `aeg-sas-key` header or the `code` query parameter (put it in the subscription's endpoint
//! URL).
//!
//! The handler answers fast and never calls ARM: it filters, de-duplicates and submits. Event
//! Grid retries 5xx answers (a backend error), and does not retry 400/401.
//!
//! De-duplication: one deployment raises several write events for one VM, and Event Grid
//! redelivers. Each accepted event is submitted with the key
//! `vm-event:{vm id lowercased}:{floor(now / window)}`, so every event for a VM within one
//! window maps to the same workflow (`created: false` for the repeats). The protect workflow is
//! idempotent anyway, so a second workflow across a window boundary does no harm.
//!
//! Tags: a write event does not carry the VM's tags, and this handler does not read ARM. Rules
//! that depend on tags (which vault and policy, opting out) are applied by the protect workflow
//! when it reads the VM: leave `protect.vaultId` / `protect.policy` empty to have them resolved
//! from the VM's tags there.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

use sqlvm_backup_shared::engine::{self, Engine, SubmitError};
use sqlvm_backup_shared::ports::BackendError;
use sqlvm_backup_shared::resource_id::ResourceId;
use sqlvm_backup_shared::secret::Secret;
use sqlvm_backup_shared::workflow::select::glob;
use sqlvm_backup_shared::workflow::state::{DatabaseFilter, ProtectInput, WorkflowInput};

pub const PATH: &str = "/api/events/vm";
pub const ORIGIN: &str = "event-grid";
const VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
const WRITE_SUCCESS: &str = "Microsoft.Resources.ResourceWriteSuccess";
const VM_WRITE: &str = "Microsoft.Compute/virtualMachines/write";

fn default_window() -> u64 {
    600
}

/// Which VM events start a protect workflow, and with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRules {
    /// Allowed subscription ids (any when empty).
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Allowed resource groups, patterns with `*`, case-insensitive (any when empty).
    #[serde(default)]
    pub resource_groups: Vec<String>,
    /// Events for one VM within this window share one workflow (default 600 s).
    #[serde(default = "default_window")]
    pub dedupe_window_seconds: u64,
    #[serde(default)]
    pub protect: ProtectDefaults,
    /// Required by the webhook (`serve`); not used behind the Functions Event Grid trigger.
    #[serde(default)]
    pub auth: EventAuth,
}

/// What the protect workflow is asked to do; `None` vault / policy are resolved by the workflow
/// (from the VM's tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectDefaults {
    #[serde(default)]
    pub vault_id: Option<String>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub databases: DatabaseFilter,
    #[serde(default)]
    pub auto_protect: bool,
    #[serde(default)]
    pub initial_full_backup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventAuth {
    /// Expected in the `aeg-sas-key` header or the `code` query parameter.
    pub key: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event rules: {0}")]
pub struct RulesError(pub String);

impl EventRules {
    /// Checks the rules for the webhook, which authenticates callers with `auth.key` itself.
    pub fn validate(&self) -> Result<(), RulesError> {
        if self.auth.key.expose().chars().count() < 16 {
            return Err(RulesError("auth.key must be at least 16 characters".into()));
        }
        self.validate_filters()
    }

    /// Checks everything but the key: behind an Event Grid trigger the Functions host has
    /// authenticated the delivery, and the key is not used.
    pub fn validate_filters(&self) -> Result<(), RulesError> {
        if self.dedupe_window_seconds == 0 || self.dedupe_window_seconds > 7 * 24 * 3600 {
            return Err(RulesError(format!("dedupeWindowSeconds must be 1..=604800, not {}", self.dedupe_window_seconds)));
        }
        if self.resource_groups.iter().any(|p| p.trim().is_empty()) {
            return Err(RulesError("resourceGroups has an empty pattern".into()));
        }
        // The same check a submit makes, with a placeholder VM, so a bad vault or policy shows at
        // start-up rather than on every event.
        let probe = self
            .input("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm");
        engine::validate(&probe).map_err(|e| RulesError(format!("protect: {e}")))
    }

    fn input(&self, vm_id: &str) -> WorkflowInput {
        WorkflowInput::Protect(ProtectInput {
            vm_id: vm_id.to_string(),
            vault_id: self.protect.vault_id.clone(),
            policy: self.protect.policy.clone(),
            databases: self.protect.databases.clone(),
            auto_protect: self.protect.auto_protect,
            initial_full_backup: self.protect.initial_full_backup,
        })
    }
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    rules: Arc<EventRules>,
    clock: Clock,
}

/// The webhook routes (`POST` and `OPTIONS /api/events/vm`).
pub fn router(engine: Arc<Engine>, rules: Arc<EventRules>) -> Router {
    router_with_clock(engine, rules, Arc::new(Utc::now))
}

/// [`router`] with the clock that picks the de-duplication window (tests).
pub fn router_with_clock(engine: Arc<Engine>, rules: Arc<EventRules>, clock: Clock) -> Router {
    Router::new().route(PATH, post(notify).options(handshake)).with_state(AppState { engine, rules, clock })
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": { "code": code, "message": message.into() } }))).into_response()
}

/// Compare digests so the time taken says nothing about the key (not even its length).
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(expected.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(rules: &EventRules, headers: &HeaderMap, query: &HashMap<String, String>) -> bool {
    let expected = rules.auth.key.expose();
    if expected.is_empty() {
        return false;
    }
    let header = headers.get("aeg-sas-key").and_then(|v| v.to_str().ok());
    let code = query.get("code").map(String::as_str);
    // Evaluate both so the answer's timing does not depend on which one was sent.
    let h = header.is_some_and(|h| same_secret(h, expected));
    let c = code.is_some_and(|c| same_secret(c, expected));
    h | c
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "Unauthorized", "a valid key is required in the aeg-sas-key header or the code query parameter")
}

/// CloudEvents abuse protection: `WebHook-Request-Origin` → 200 with `WebHook-Allowed-Origin`.
async fn handshake(State(s): State<AppState>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    if !authorized(&s.rules, &headers, &query) {
        return unauthorized();
    }
    let Some(origin) = headers.get("webhook-request-origin").cloned() else {
        return error(StatusCode::BAD_REQUEST, "MissingOrigin", "the WebHook-Request-Origin header is required");
    };
    let mut h = HeaderMap::new();
    h.insert("webhook-allowed-origin", origin);
    h.insert("webhook-allowed-rate", HeaderValue::from_static("*"));
    h.insert("allow", HeaderValue::from_static("POST, OPTIONS"));
    (StatusCode::OK, h).into_response()
}

/// One event, Event Grid or CloudEvents schema, reduced to what is used.
#[derive(Debug)]
struct Event {
    id: String,
    event_type: String,
    subject: Option<String>,
    data: Value,
}

fn parse_event(v: &Value, cloud: bool) -> Result<Event, String> {
    let o = v.as_object().ok_or("each event must be a JSON object")?;
    let cloud = cloud || o.contains_key("specversion");
    let type_field = if cloud { "type" } else { "eventType" };
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    if cloud && text("specversion").as_deref() != Some("1.0") {
        return Err("CloudEvents: specversion must be \"1.0\"".into());
    }
    let id = text("id").ok_or("an event has no string 'id'")?;
    let event_type = text(type_field).ok_or_else(|| format!("event '{id}' has no string '{type_field}'"))?;
    let data = o.get("data").cloned().unwrap_or(Value::Null);
    if !(data.is_object() || data.is_null()) {
        return Err(format!("event '{id}': 'data' must be an object"));
    }
    Ok(Event { id, event_type, subject: text("subject"), data })
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, String> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let cloud = content_type.starts_with("application/cloudevents");
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match &v {
        Value::Array(items) => items.iter().map(|e| parse_event(e, cloud)).collect(),
        Value::Object(o) if cloud || o.contains_key("specversion") => Ok(vec![parse_event(&v, true)?]),
        _ => Err("expected a JSON array of Event Grid events or one CloudEvents 1.0 object".into()),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    event_id: String,
    vm_id: String,
    workflow_id: String,
    created: bool,
}

#[derive(Debug, Serialize)]
struct Ignored {
    id: String,
    reason: String,
}

/// Why an event does not start a workflow, or the VM it is about.
fn select(rules: &EventRules, e: &Event) -> Result<ResourceId, String> {
    if !e.event_type.eq_ignore_ascii_case(WRITE_SUCCESS) {
        return Err(format!("event type '{}' is not handled (only {WRITE_SUCCESS})", e.event_type));
    }
    let field = |k: &str| e.data.get(k).and_then(Value::as_str);
    match field("operationName") {
        Some(op) if op.eq_ignore_ascii_case(VM_WRITE) => {}
        Some(op) => return Err(format!("operation '{op}' is not {VM_WRITE}")),
        None => return Err("the event has no data.operationName".into()),
    }
    if let Some(status) = field("status")
        && !status.eq_ignore_ascii_case("Succeeded")
    {
        return Err(format!("status '{status}' is not Succeeded"));
    }
    let id = field("resourceUri")
        .or(e.subject.as_deref())
        .filter(|s| !s.is_empty())
        .ok_or("the event names no resource (data.resourceUri, subject)")?;
    let vm = ResourceId::parse_vm(id).map_err(|err| err.to_string())?;
    if !rules.subscriptions.is_empty() && !rules.subscriptions.iter().any(|s| s.eq_ignore_ascii_case(&vm.subscription)) {
        return Err(format!("subscription {} is not in the allowed subscriptions", vm.subscription));
    }
    if !rules.resource_groups.is_empty() && !rules.resource_groups.iter().any(|p| glob(p, &vm.resource_group)) {
        return Err(format!("resource group '{}' matches no allowed resource group pattern", vm.resource_group));
    }
    Ok(vm)
}

async fn notify(State(s): State<AppState>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s.rules, &headers, &query) {
        return unauthorized();
    }
    let events = match parse_body(&headers, &body) {
        Ok(e) => e,
        Err(why) => return error(StatusCode::BAD_REQUEST, "InvalidEvents", why),
    };
    let aeg_type = headers.get("aeg-event-type").and_then(|v| v.to_str().ok()).unwrap_or("");

    // Subscription validation (Event Grid schema): answer with the code.
    if let Some(v) = events.iter().find(|e| e.event_type.eq_ignore_ascii_case(VALIDATION_EVENT)) {
        return match v.data.get("validationCode").and_then(Value::as_str) {
            Some(code) => {
                tracing::info!(event_id = %v.id, "Event Grid subscription validated");
                (StatusCode::OK, axum::Json(json!({ "validationResponse": code }))).into_response()
            }
            None => error(StatusCode::BAD_REQUEST, "InvalidEvents", "the validation event has no data.validationCode"),
        };
    }
    if aeg_type.eq_ignore_ascii_case("SubscriptionValidation") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidEvents",
            format!("aeg-event-type is SubscriptionValidation but no {VALIDATION_EVENT} was sent"),
        );
    }
    if aeg_type.eq_ignore_ascii_case("SubscriptionDeletion") || aeg_type.eq_ignore_ascii_case("Unsubscribe") {
        return (StatusCode::OK, axum::Json(json!({ "accepted": [], "ignored": [] }))).into_response();
    }

    match submit_events(&s.engine, &s.rules, &events, (s.clock)()).await {
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, "BackendUnavailable", format!("could not store the workflow: {err}")),
    }
}

/// What a batch of events started and what it ignored (with why).
#[derive(Debug, Serialize)]
pub struct EventsOutcome {
    accepted: Vec<Accepted>,
    ignored: Vec<Ignored>,
}

impl EventsOutcome {
    /// The workflow ids accepted events started (or found started).
    pub fn workflow_ids(&self) -> Vec<&str> {
        self.accepted.iter().map(|a| a.workflow_id.as_str()).collect()
    }
}

/// Filter events and submit a protect workflow per selected VM, de-duplicated per VM and window.
/// Only stores and enqueues, never calls ARM: an Event Grid delivery must be answered quickly.
/// A backend error fails the whole batch so that it is delivered again.
async fn submit_events(engine: &Engine, rules: &EventRules, events: &[Event], now: DateTime<Utc>) -> Result<EventsOutcome, BackendError> {
    let window = rules.dedupe_window_seconds.max(1) as i64;
    let bucket = now.timestamp().div_euclid(window);
    let mut accepted = Vec::new();
    let mut ignored = Vec::new();
    for e in events {
        let vm = match select(rules, e) {
            Ok(vm) => vm,
            Err(reason) => {
                tracing::debug!(event_id = %e.id, %reason, "event ignored");
                ignored.push(Ignored { id: e.id.clone(), reason });
                continue;
            }
        };
        let vm_id = vm.to_string();
        let key = format!("vm-event:{}:{bucket}", vm_id.to_lowercase());
        match engine.submit(rules.input(&vm_id), ORIGIN, Some(&key)).await {
            Ok(sub) => {
                tracing::info!(event_id = %e.id, vm_id = %vm_id, workflow_id = %sub.id, created = sub.created, "VM event accepted");
                accepted.push(Accepted { event_id: e.id.clone(), vm_id, workflow_id: sub.id, created: sub.created });
            }
            Err(SubmitError::Invalid(f)) => ignored.push(Ignored { id: e.id.clone(), reason: f.message }),
            Err(SubmitError::Backend(err)) => {
                tracing::error!(event_id = %e.id, error = %err, "VM event not stored; it will be delivered again");
                return Err(err);
            }
        }
    }
    Ok(EventsOutcome { accepted, ignored })
}

/// Events delivered by an Event Grid trigger of the Functions host, which has authenticated
/// them already: each one an Event Grid or CloudEvents object. `Err` is for the host: answer
/// non-2xx so the delivery is retried (a bad event is ignored with its reason, not an error).
pub async fn submit_trigger_events(
    engine: &Engine,
    rules: &EventRules,
    events: &[Value],
    now: DateTime<Utc>,
) -> Result<EventsOutcome, BackendError> {
    let mut parsed = Vec::new();
    let mut bad = Vec::new();
    for (i, v) in events.iter().enumerate() {
        match parse_event(v, false) {
            Ok(e) => parsed.push(e),
            Err(reason) => {
                bad.push(Ignored { id: v.get("id").and_then(Value::as_str).map_or_else(|| format!("#{i}"), str::to_string), reason })
            }
        }
    }
    let mut outcome = submit_events(engine, rules, &parsed, now).await?;
    outcome.ignored.extend(bad);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_patterns() {
        assert!(glob("rg-sql-*", "RG-SQL-prod"));
        assert!(glob("*", "x"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("rg-sql-*", "rg-web"));
        assert!(glob("exact", "EXACT"));
        assert!(!glob("exact", "exactly"));
    }
}

//! `sqlvm-backup functions`: the Azure Functions custom handler. The host runs this binary,
//! POSTs every trigger firing to `http://127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT/{FunctionName}`
//! and waits for `GET /` to answer before the first one (azure-functions.md §1).
//!
//! Each function is a thin adapter: decode the host's envelope (`functions_host`), hand the
//! work to the same engine, API and rules `serve` uses, and encode the answer. Step messages
//! go to the Storage queue the `RunStep` trigger listens on, with their delay as the message's
//! visibility, so waits cost no compute; workflow state lives in blobs.
//!
//! | function | trigger | does |
//! |---|---|---|
//! | `RunStep` | queue (`STEP_QUEUE`) | one workflow step ([`step`]) |
//! | `RunSchedule` | timer (`BACKUP_SCHEDULE`) | submits the backup plans that are due |
//! | `Protect`, `Backups`, `Workflow` | HTTP | the `/api` routes of `serve`, same auth ([`http`]) |
//! | `OnVmWrite` | Event Grid | filters VM write events and submits protect workflows |

mod http;
mod step;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use std::sync::Arc;

use crate::azure_storage::backend::AzureStorageBackend;
use crate::azure_storage::config::AzureStorageConfig;
use crate::config::Config;
use crate::events::EventRules;
use crate::functions_host::{EventGridInvocation, InvocationRequest, InvocationResponse, TimerInvocation};
use crate::scheduler::Scheduler;
use sqlvm_backup_shared::engine::Engine;

/// Function names (the folders under `functions/`) and the binding names their `function.json`
/// files give the trigger.
pub const FUNCTIONS: [(&str, &str); 6] =
    [("RunStep", "step"), ("RunSchedule", "timer"), ("Protect", "req"), ("Backups", "req"), ("Workflow", "req"), ("OnVmWrite", "event")];

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on 127.0.0.1:{0}: {1}")]
    Listen(u16, std::io::Error),
}

/// Everything the functions share.
#[derive(Clone)]
pub struct Handler {
    engine: Arc<Engine>,
    storage: Arc<AzureStorageBackend>,
    api: Router,
    scheduler: Option<Arc<Scheduler>>,
    events: Option<Arc<EventRules>>,
    /// The host's `maxDequeueCount` (host.json): the attempt that reaches it is the last.
    max_dequeue_count: u32,
}

/// Settings from the environment the host gives the handler.
pub struct HostSettings {
    pub port: u16,
    pub config: Config,
    pub max_dequeue_count: u32,
}

impl HostSettings {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, `SQLVM_BACKUP_CONFIG` (inline JSON or a path), the
    /// identity-based `StepQueue__*` settings when the configuration has no `azureStorage`, and
    /// `maxDequeueCount` from `host.json` in the working directory.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<HostSettings, HandlerError> {
        let port = get("FUNCTIONS_CUSTOMHANDLER_PORT").ok_or_else(|| {
            HandlerError::Config("FUNCTIONS_CUSTOMHANDLER_PORT is not set: is this started by the Functions host?".into())
        })?;
        let port = port.trim().parse().map_err(|_| HandlerError::Config(format!("FUNCTIONS_CUSTOMHANDLER_PORT {port:?} is not a port")))?;
        let setting = get("SQLVM_BACKUP_CONFIG").ok_or_else(|| {
            HandlerError::Config("SQLVM_BACKUP_CONFIG is not set: give the configuration as inline JSON or a file path".into())
        })?;
        let mut config = Config::from_setting(&setting).map_err(|e| HandlerError::Config(e.to_string()))?;
        if config.azure_storage.is_none() {
            config.azure_storage = AzureStorageConfig::from_app_settings(get);
        }
        if let (Some(scheduler), Some(expr)) = (&mut config.scheduler, get("BACKUP_SCHEDULE")) {
            // The timer is the scheduler's tick here: an occurrence can be found up to one timer
            // period late, and the scheduler's grace (twice the tick) must cover that, or plans
            // would be skipped as missed.
            let period = timer_period(&expr).map_err(|why| HandlerError::Config(format!("BACKUP_SCHEDULE {expr:?}: {why}")))?;
            scheduler.tick_seconds = scheduler.tick_seconds.max(period.as_secs()).min(3600);
        }
        let host_json = std::fs::read_to_string("host.json").ok();
        Ok(HostSettings { port, config, max_dequeue_count: max_dequeue_count(host_json.as_deref()) })
    }
}

/// The longest gap between the timer's next occurrences (NCRONTAB, as the host reads it).
pub fn timer_period(expr: &str) -> Result<std::time::Duration, String> {
    let cron = crate::scheduler::parse_schedule(expr)?;
    let mut at = Utc::now();
    let mut longest = chrono::Duration::zero();
    let mut previous = None;
    for _ in 0..16 {
        let Ok(next) = cron.find_next_occurrence(&at, false) else { break };
        if let Some(p) = previous {
            longest = longest.max(next - p);
        }
        previous = Some(next);
        at = next;
    }
    longest.to_std().map_err(|e| e.to_string())
}

/// `extensions.queues.maxDequeueCount` of host.json; 5 (the host's default) when absent.
pub fn max_dequeue_count(host_json: Option<&str>) -> u32 {
    host_json
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v.pointer("/extensions/queues/maxDequeueCount").and_then(serde_json::Value::as_u64))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(5)
}

impl Handler {
    /// Build from the configuration; sends no request (the host waits for readiness only).
    pub fn new(settings: &HostSettings) -> Result<Handler, HandlerError> {
        let cfg = &settings.config;
        let storage_cfg = cfg.azure_storage.as_ref().ok_or_else(|| {
            HandlerError::Config(
                "Azure Functions mode needs Azure Storage: set azureStorage in the configuration or StepQueue__queueServiceUri".into(),
            )
        })?;
        let storage = storage_cfg.backend().map_err(|e| HandlerError::Config(format!("azureStorage: {e}")))?;
        cfg.api.validate().map_err(|e| HandlerError::Config(format!("api: {e}")))?;
        let engine = crate::serve::engine(cfg, storage.clone()).map_err(|e| HandlerError::Config(e.to_string()))?;
        let scheduler = match &cfg.scheduler {
            Some(s) => Some(Arc::new(Scheduler::new(engine.clone(), s.clone()).map_err(|e| HandlerError::Config(e.to_string()))?)),
            None => None,
        };
        if let Some(rules) = &cfg.events {
            rules.validate_filters().map_err(|e| HandlerError::Config(format!("events: {e}")))?;
        }
        Ok(Handler {
            api: crate::api::router(engine.clone(), Arc::new(cfg.api.clone())),
            engine,
            storage,
            scheduler,
            events: cfg.events.clone().map(Arc::new),
            max_dequeue_count: settings.max_dequeue_count,
        })
    }

    pub fn router(self) -> Router {
        Router::new().route("/", get(ready)).route("/{function}", post(invoke)).with_state(self)
    }
}

/// Serve on loopback until `shutdown`; `ready` is called once listening.
pub async fn run(
    settings: HostSettings,
    ready: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), HandlerError> {
    let handler = Handler::new(&settings)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port)).await.map_err(|e| HandlerError::Listen(settings.port, e))?;
    let addr = listener.local_addr().map_err(|e| HandlerError::Listen(settings.port, e))?;
    ready(addr);
    let _ = axum::serve(listener, handler.router()).with_graceful_shutdown(shutdown).await;
    Ok(())
}

/// The host's readiness probe.
async fn ready() -> &'static str {
    "ready"
}

/// An answer the host accepts: 200 and the envelope.
fn envelope(resp: InvocationResponse) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], resp.to_body()).into_response()
}

/// Make the host count this invocation as failed (it retries, or moves a queue message to the
/// poison queue). The host drops the body, so the reason goes to the log as well.
fn failed(function: &str, reason: &str) -> Response {
    tracing::error!(function, reason, "invocation failed");
    (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], InvocationResponse::default().with_log(reason).to_body())
        .into_response()
}

async fn invoke(State(h): State<Handler>, Path(function): Path<String>, body: Bytes) -> Response {
    let Some((name, binding)) = FUNCTIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&function)) else {
        return (StatusCode::NOT_FOUND, format!("no function {function}")).into_response();
    };
    let request = match InvocationRequest::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return failed(name, &format!("the host's envelope could not be read: {e}")),
    };
    match *name {
        "RunStep" => step::run(&h, &request, binding).await,
        "RunSchedule" => schedule(&h, &request, binding).await,
        "OnVmWrite" => vm_events(&h, &request, binding).await,
        _ => http::forward(&h, &request, binding).await,
    }
}

/// The timer only wakes the scheduler; which plans are due is decided from their own schedules
/// and their once-per-occurrence claims, so a late or repeated timer fires nothing twice.
async fn schedule(h: &Handler, request: &InvocationRequest, binding: &str) -> Response {
    let timer = match TimerInvocation::from_request(request, binding) {
        Ok(t) => t,
        Err(e) => return failed("RunSchedule", &e.to_string()),
    };
    let Some(scheduler) = &h.scheduler else {
        return envelope(InvocationResponse::default().with_log("no backup plans are configured"));
    };
    let fired = scheduler.tick(Utc::now()).await;
    let mut resp = InvocationResponse::default().with_log(format!("{} plan(s) fired (past due: {})", fired.len(), timer.is_past_due));
    for f in fired {
        resp = resp.with_log(format!("plan {} for {} started workflow {}", f.plan, f.occurrence, f.workflow_id));
    }
    envelope(resp)
}

/// Filters and enqueues only: the host gives an Event Grid invocation about 30 s and redelivers
/// the whole batch when one fails, so no ARM call happens here.
async fn vm_events(h: &Handler, request: &InvocationRequest, binding: &str) -> Response {
    let Some(rules) = &h.events else {
        return envelope(InvocationResponse::default().with_log("no event rules are configured; event ignored"));
    };
    let events = match EventGridInvocation::from_request(request, binding) {
        Ok(e) => e,
        // Redelivering an event that cannot be read would not help: log it and let it go.
        Err(e) => return envelope(InvocationResponse::default().with_log(format!("event ignored: {e}"))),
    };
    match crate::events::submit_trigger_events(&h.engine, rules, &events.events, Utc::now()).await {
        Ok(outcome) => envelope(
            InvocationResponse::default()
                .with_log(serde_json::to_string(&outcome).unwrap_or_default())
                .with_log(format!("workflows: {}", outcome.workflow_ids().join(", "))),
        ),
        Err(e) => failed("OnVmWrite", &format!("could not store the workflow: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_period_is_the_longest_gap_between_firings() {
        assert_eq!(timer_period("0 */5 * * * *").unwrap().as_secs(), 300);
        assert_eq!(timer_period("*/30 * * * * *").unwrap().as_secs(), 30);
        // Weekdays at 09:00: the weekend gap counts.
        assert_eq!(timer_period("0 0 9 * * 1-5").unwrap().as_secs(), 3 * 86400);
        assert!(timer_period("not a schedule").is_err());
    }

    #[test]
    fn max_dequeue_count_comes_from_host_json() {
        assert_eq!(max_dequeue_count(Some(include_str!("../../host.json"))), 5);
        assert_eq!(max_dequeue_count(Some(r#"{"extensions":{"queues":{"maxDequeueCount":9}}}"#)), 9);
        assert_eq!(max_dequeue_count(Some("{}")), 5);
        assert_eq!(max_dequeue_count(None), 5);
    }
}

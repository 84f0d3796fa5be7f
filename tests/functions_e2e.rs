//! The seed workflow end to end as it runs on Azure Functions: the handler binary started the
//! way the host starts it, a stand-in host driving the queue trigger over Azurite, workflow
//! state in Azurite blobs, and the simulator as the Backup service. Then the same with the host
//! and the handler killed and restarted mid-way: it completes and nothing is done twice.

mod common;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::azurite::{Azurite, DEV_ACCOUNT, DEV_KEY};
use common::host::{FakeHost, HandlerProcess, QueueSettings, http_envelope};
use common::{VAULT, VM};
use sqlvm_backup::azure_storage::config::AzureStorageConfig;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};

const KEY: &str = "test-key-0123456789";

struct World {
    _azurite: Azurite,
    sim: RunningSimulator,
    dir: std::path::PathBuf,
    config: Value,
    storage: AzureStorageConfig,
    http: reqwest::Client,
}

async fn world(name: &str, scenario: sqlvm_backup_emulator::scenario::Scenario) -> World {
    let azurite = Azurite::start();
    let spec = sqlvm_backup_emulator::schema::Spec::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/azure-specs/recoveryservicesbackup/2026-10-01/bms.json"
    )))
    .expect("bms.json (../shared beside the checkout)");
    let sim = server::start(scenario, SimulatorOptions { schema: Some(Arc::new(spec)), ..Default::default() }).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sqlvm-fn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The app root: the handler reads maxDequeueCount from host.json there, as deployed.
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/host.json"), dir.join("host.json")).unwrap();
    let storage = json!({
        "queueEndpoint": azurite.queue_endpoint, "blobEndpoint": azurite.blob_endpoint,
        "accountName": DEV_ACCOUNT, "accountKey": DEV_KEY, "queue": "sqlvm-steps", "container": "sqlvm-state"
    });
    let config = json!({
        "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
        "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "test", "key": KEY, "vaults": ["*"] }] } },
        "engine": { "delayFloorSeconds": 0.0, "delayCeilingSeconds": 1.0, "jobPollSeconds": 0.2 },
        "azureStorage": storage,
    });
    let storage: AzureStorageConfig = serde_json::from_value(storage).unwrap();
    // What the infrastructure creates in Azure.
    storage.backend().unwrap().create_resources().await.unwrap();
    World { _azurite: azurite, sim, dir, config, storage, http: reqwest::Client::new() }
}

impl World {
    async fn handler(&self) -> HandlerProcess {
        let (ep, hdr) = (self.sim.identity_endpoint(), self.sim.identity_header());
        HandlerProcess::start(&self.dir, &self.config, &[("IDENTITY_ENDPOINT", &ep), ("IDENTITY_HEADER", &hdr)]).await
    }

    /// A running handler with the stand-in host pumping its queue.
    async fn up(&self) -> Running {
        let handler = self.handler().await;
        let host = self.host(&handler);
        let pump = host.spawn();
        Running { handler, host, pump }
    }

    fn host(&self, handler: &HandlerProcess) -> Arc<FakeHost> {
        let backend = self.storage.backend().unwrap();
        FakeHost::new(&handler.base, backend.queue().clone(), backend.poison_queue().clone(), QueueSettings::default())
    }

    async fn sim_get(&self, path: &str) -> Value {
        self.http.get(format!("{}{path}", self.sim.base_url)).send().await.unwrap().json().await.unwrap()
    }
}

struct Running {
    handler: HandlerProcess,
    host: Arc<FakeHost>,
    pump: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The host stops polling and the handler dies with SIGKILL, both mid-work.
    fn kill(self) {
        self.pump.abort();
        self.handler.kill();
    }
}

/// Start a workflow through an HTTP function; checks the reply shape the host needs.
async fn submit(host: &FakeHost, function: &str, path: &str, body: Value) -> String {
    let env = http_envelope(
        function,
        "POST",
        path,
        &[("Content-Type", "application/json"), ("x-api-key", KEY)],
        Some(&body.to_string()),
        json!({}),
    );
    let (status, reply) = host.invoke(function, &env).await;
    assert_eq!(status, 200, "the host always gets 200 from an HTTP function: {reply:#}");
    let res = &reply["Outputs"]["res"];
    assert_eq!(res["statusCode"], 202, "{reply:#}");
    assert!(res["headers"].as_object().unwrap().values().all(Value::is_string), "header values are strings: {res:#}");
    let body: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    body["id"].as_str().unwrap().to_string()
}

/// Read a workflow through the `Workflow` function until `done`.
async fn until(host: &FakeHost, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let env = http_envelope("Workflow", "GET", &format!("/api/workflows/{id}"), &[("x-api-key", KEY)], None, json!({ "id": id }));
        let (status, reply) = host.invoke("Workflow", &env).await;
        assert_eq!(status, 200);
        let st: Value = serde_json::from_str(reply["Outputs"]["res"]["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        if done(&st) {
            return st;
        }
        assert!(start.elapsed() < limit, "timed out: {st:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has_step(st: &Value, name: &str) -> bool {
    st["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == name))
}

fn protect_body() -> Value {
    json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } })
}

fn backup_body() -> Value {
    json!({ "vaultId": VAULT, "backupType": "Full", "retentionDays": 45, "databases": { "includeSystem": true } })
}

/// What the service saw: one registration, one protected item and one Full job per database.
/// After a crash an idempotent PUT may be sent again (the step died between its call and its
/// commit, and runs again); the backup POST never is.
async fn assert_done_once(w: &World, crashed: bool) {
    let jobs = w.sim_get("/_sim/jobs").await;
    let jobs = jobs["jobs"].as_array().unwrap();
    let count = |op: &str| jobs.iter().filter(|j| j["operation"] == op).count();
    assert_eq!(count("Register"), 1, "registered once: {jobs:#?}");
    assert_eq!(count("Backup (Full)"), 5, "one backup job per database: {jobs:#?}");
    assert!(jobs.iter().all(|j| j["status"] == "Completed"), "{jobs:#?}");
    let log = w.sim_get("/_sim/requests").await;
    let calls: Vec<&str> = log["requests"].as_array().unwrap().iter().map(|r| r["operationId"].as_str().unwrap_or("")).collect();
    let n = |op: &str| calls.iter().filter(|c| **c == op).count();
    assert_eq!(n("ProtectionContainers_Register"), 1);
    let puts = n("ProtectedItems_CreateOrUpdate");
    if crashed {
        assert!(puts >= 5, "a PUT per database at least: {puts}");
    } else {
        assert_eq!(puts, 5, "one PUT per database");
    }
    assert_eq!(n("Backups_Trigger"), 5, "one POST per database");
    let items: Value = w
        .http
        .get(format!("{}{VAULT}/backupProtectedItems?api-version=2026-10-01", w.sim.base_url))
        .bearer_auth(w.sim.arm_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = items["value"].as_array().unwrap();
    assert_eq!(items.len(), 5, "one protected item per database: {items:#?}");
    assert!(items.iter().all(|i| i["properties"]["protectionState"] == "Protected"), "{items:#?}");
    let violations = w.sim_get("/_sim/schema-violations").await;
    assert!(violations["violations"].as_array().is_none_or(Vec::is_empty), "{violations:#}");
}

async fn queues_empty(w: &World) {
    let b = w.storage.backend().unwrap();
    assert!(b.poison_queue().peek(32).await.unwrap().is_empty(), "nothing was poisoned");
    let left = b.queue().peek(32).await.unwrap();
    assert!(left.is_empty(), "step messages left on the queue: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_workflow_runs_on_the_functions_host_over_azure_storage() {
    let w = world("seed", common::seed()).await;
    let Running { handler, host, pump } = w.up().await;

    let id = submit(&host, "Protect", "/api/protect", protect_body()).await;
    let st = until(&host, &id, Duration::from_secs(60), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    assert_eq!(st["children"].as_array().map(Vec::len), Some(5), "{st:#}");

    let id = submit(&host, "Backups", "/api/backups", backup_body()).await;
    let st = until(&host, &id, Duration::from_secs(60), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");

    pump.abort();
    assert_done_once(&w, false).await;
    queues_empty(&w).await;
    assert_eq!(host.poisoned.load(std::sync::atomic::Ordering::Relaxed), 0);
    drop(handler);
    w.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&w.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_handler_killed_mid_workflow_then_restarted_complete_without_doing_anything_twice() {
    let mut scenario = common::seed();
    let t = &mut scenario.settings.timings;
    (t.register_ms, t.configure_ms, t.full_backup_job_ms) = (600, 500, 1500);
    let w = world("kill", scenario).await;

    // Protect: kill both once the registration started, and again in the middle of the fan-out.
    let run = w.up().await;
    let id = submit(&run.host, "Protect", "/api/protect", protect_body()).await;
    until(&run.host, &id, Duration::from_secs(30), |s| has_step(s, "register")).await;
    run.kill();
    let run = w.up().await;
    until(&run.host, &id, Duration::from_secs(30), |s| has_step(s, "protectItem")).await;
    run.kill();
    let run = w.up().await;
    let st = until(&run.host, &id, Duration::from_secs(60), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");

    // Backup: kill right after the first triggers went out.
    let id = submit(&run.host, "Backups", "/api/backups", backup_body()).await;
    until(&run.host, &id, Duration::from_secs(30), |s| has_step(s, "trigger")).await;
    run.kill();
    let Running { handler, host, pump } = w.up().await;
    let st = until(&host, &id, Duration::from_secs(60), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    pump.abort();

    assert_done_once(&w, true).await;
    // Re-sent duplicates may remain after a crash; each is dropped when delivered. Drain them
    // through the host so the queue ends empty and none of them calls the service.
    let calls_before = w.sim_get("/_sim/requests").await["requests"].as_array().unwrap().len();
    while host.pump_once().await.unwrap() > 0 {}
    tokio::time::sleep(Duration::from_millis(3500)).await; // leases of the killed host run out
    while host.pump_once().await.unwrap() > 0 {}
    let calls_after = w.sim_get("/_sim/requests").await["requests"].as_array().unwrap().len();
    assert_eq!(calls_before, calls_after, "a leftover duplicate called the service");
    queues_empty(&w).await;
    drop(handler);
    w.sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&w.dir);
}

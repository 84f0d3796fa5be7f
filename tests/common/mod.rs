//! Helpers for the engine's end-to-end tests: an in-process simulator on the seed scenario, an
//! engine on an in-memory SQLite backend, and a worker pool running until the test ends.
#![allow(dead_code)]

pub mod azurite;
pub mod host;
pub mod serve_process;

use std::sync::Arc;
use std::time::Duration;

use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};
use sqlvm_backup_emulator::settings::Timings;
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions};
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::Backend;
use sqlvm_backup_shared::workflow::state::{WorkflowState, WorkflowStatus};
use sqlvm_backup_shared::workflow::steps::StepOptions;

pub const SUB: &str = "00000000-0000-0000-0000-0000000000";
pub const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012";
pub const VM: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";

pub fn seed() -> Scenario {
    let mut s: Scenario = serde_json::from_str(include_str!("../../emulator/scenarios/seed.json")).expect("seed");
    s.settings.retry_after_seconds = 0;
    s.settings.timings = Timings {
        refresh_ms: 150,
        register_ms: 150,
        unregister_ms: 100,
        inquire_ms: 150,
        configure_ms: 150,
        delete_ms: 100,
        backup_operation_ms: 100,
        full_backup_job_ms: 300,
        differential_backup_job_ms: 200,
        log_backup_job_ms: 200,
        cancel_ms: 100,
    };
    s
}

/// The seed document's protect request: sqlserver-0's databases, system ones included, with
/// HourlyLogBackup.
pub fn seed_protect_input() -> sqlvm_backup_shared::workflow::state::ProtectInput {
    use sqlvm_backup_shared::workflow::state::*;
    ProtectInput {
        vm_id: VM.into(),
        vault_id: Some(VAULT.into()),
        policy: Some("HourlyLogBackup".into()),
        databases: DatabaseFilter { include_system: true, ..Default::default() },
        auto_protect: false,
        initial_full_backup: false,
    }
}

/// A token credential handing out one fixed token (the simulator issued it).
#[derive(Debug)]
pub struct StaticToken(pub String);

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _o: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        Ok(azure_core::credentials::AccessToken::new(
            azure_core::credentials::Secret::new(self.0.clone()),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

pub fn fast_options() -> EngineOptions {
    EngineOptions {
        steps: StepOptions {
            delay_floor: Duration::from_millis(50),
            delay_ceiling: Duration::from_secs(2),
            job_poll_interval: Duration::from_millis(100),
            discovery_rounds: 4,
            ..StepOptions::default()
        },
        ..EngineOptions::default()
    }
}

pub struct Harness {
    pub sim: RunningSimulator,
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
    stop: tokio::sync::watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl Harness {
    pub async fn start(scenario: Scenario) -> Harness {
        Self::start_with(scenario, fast_options()).await
    }

    pub async fn start_with(scenario: Scenario, opts: EngineOptions) -> Harness {
        // Every answer the workflows get is checked against the swagger (bms.json).
        let spec = sqlvm_backup_emulator::schema::Spec::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/azure-specs/recoveryservicesbackup/2026-10-01/bms.json"
        )))
        .expect("bms.json (../shared beside the checkout)");
        let sim_opts = SimulatorOptions { schema: Some(Arc::new(spec)), ..Default::default() };
        let sim = server::start(scenario, sim_opts).await.expect("simulator");
        let cred = Arc::new(StaticToken(sim.arm_token()));
        let arm = ArmClient::new(&sim.base_url, cred, Some(ArmClientOptions::default())).expect("client");
        let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::in_memory().expect("sqlite"));
        let engine = Arc::new(Engine::new(backend, arm, opts));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let e = engine.clone();
        let worker = tokio::spawn(async move {
            worker::run(e, WorkerOptions { concurrency: 8, idle_poll: Duration::from_millis(10), ..Default::default() }, async move {
                let _ = stopped.changed().await;
            })
            .await
        });
        Harness { sim, engine, http: reqwest::Client::new(), stop, worker }
    }

    /// Wait until the workflow ends (or fail the test after `limit`).
    pub async fn wait(&self, id: &str, limit: Duration) -> WorkflowState {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let st = self.engine.backend().load(id).await.expect("load").expect("workflow exists").value;
            if st.status != WorkflowStatus::Running {
                return st;
            }
            assert!(tokio::time::Instant::now() < deadline, "workflow {id} still running: {st:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn sim_get(&self, path: &str) -> serde_json::Value {
        self.http.get(format!("{}{path}", self.sim.base_url)).send().await.expect("get").json().await.expect("json")
    }

    /// The simulator's request log as (operationId, status) pairs.
    pub async fn calls(&self) -> Vec<(String, u16)> {
        let log = self.sim_get("/_sim/requests").await;
        log["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| (r["operationId"].as_str().unwrap_or("").to_string(), r["status"].as_u64().unwrap_or(0) as u16))
            .collect()
    }

    pub async fn violations(&self) -> Vec<serde_json::Value> {
        self.sim_get("/_sim/schema-violations").await["violations"].as_array().cloned().unwrap_or_default()
    }

    /// Stop everything; fails the test if any answer of the run did not match the swagger.
    pub async fn stop(self) {
        let violations = self.violations().await;
        assert!(violations.is_empty(), "answers that do not match bms.json: {violations:#?}");
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        self.sim.shutdown().await;
    }
}

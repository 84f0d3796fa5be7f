//! What running on Azure Storage costs against the embedded store: one fleet of protect
//! workflows, the simulator answering at once, run three ways in one process run so the ratios
//! compare like with like:
//!
//! 1. the engine on the embedded SQLite store (the reference);
//! 2. the engine on the Azure Storage backend (Azurite): what `serve` with `azureStorage` does;
//! 3. the Functions path: the handler binary, with a stand-in host (tests/common/host.rs)
//!    polling the queue, invoking `RunStep` and deleting, as the Functions host does.
//!
//! Azurite is a local emulator, not Azure: the absolute figures say what the adapter's own
//! work costs (HTTP round trips, base64, JSON, ETag writes), not Azure Storage's latency.
//! Run: `cargo bench --bench azure_storage` (env BENCH_VMS, BENCH_DBS, BENCH_PUMPS).

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlvm_backup::azure_storage::config::AzureStorageConfig;
use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_emulator::fleet::{FleetSpec, generate};
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::RunningSimulator;
use sqlvm_backup_emulator::settings::Timings;
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions, PacingOptions};
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::Backend;
use sqlvm_backup_shared::workflow::state::*;
use sqlvm_backup_shared::workflow::steps::StepOptions;

mod support;

use support::common::{azurite, host};
use support::{StaticToken, protect_input, start_isolated};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fleet() -> Scenario {
    let mut sc = generate(&FleetSpec {
        subscriptions: 2,
        vaults_per_subscription: 2,
        vms: env("BENCH_VMS", 40),
        databases_per_vm: env("BENCH_DBS", 5),
        simple_every: 0,
    });
    sc.settings.timings = Timings::instant();
    sc.settings.retry_after_seconds = 0;
    sc.settings.throttling.enabled = false;
    sc.settings.request_log_capacity = 1000;
    sc
}

fn engine_on(sim: &RunningSimulator, backend: Arc<dyn Backend>) -> Arc<Engine> {
    let opts = ArmClientOptions { pacing: PacingOptions { enabled: false, ..Default::default() }, ..Default::default() };
    let arm = ArmClient::new(&sim.base_url, Arc::new(StaticToken(sim.arm_token())), Some(opts)).expect("client");
    let steps = StepOptions {
        delay_floor: Duration::ZERO,
        delay_ceiling: Duration::from_secs(1),
        job_poll_interval: Duration::ZERO,
        ..StepOptions::default()
    };
    Arc::new(Engine::new(backend, arm, EngineOptions { steps, ..EngineOptions::default() }))
}

/// Submit the fleet and wait for every workflow; (steps per second, steps, seconds).
async fn run_fleet(engine: &Engine, sc: &Scenario) -> (f64, usize, f64) {
    let start = Instant::now();
    let mut ids = Vec::new();
    for vm in &sc.virtual_machines {
        ids.push(engine.submit(protect_input(sc, vm), "bench", None).await.expect("submit").id);
    }
    let mut total = 0;
    for id in &ids {
        loop {
            let st = engine.backend().load(id).await.expect("load").expect("exists").value;
            if st.status.is_terminal() {
                assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
                total += st.steps.len();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (total as f64 / secs, total, secs)
}

/// The worker pool of `serve` over `backend` until the fleet is done.
async fn with_worker(engine: Arc<Engine>, sc: &Scenario, max_idle_poll: Duration) -> (f64, usize, f64) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let opts = WorkerOptions { concurrency: 64, idle_poll: Duration::from_millis(5), max_idle_poll };
    let w = tokio::spawn(worker::run(engine.clone(), opts, async move {
        let _ = stopped.changed().await;
    }));
    let out = run_fleet(&engine, sc).await;
    let _ = stop.send(true);
    let _ = w.await;
    out
}

/// The `azureStorage` section for a queue and container of their own on Azurite.
fn storage_json(az: &azurite::Azurite, name: &str) -> serde_json::Value {
    json!({
        "queueEndpoint": az.queue_endpoint, "blobEndpoint": az.blob_endpoint,
        "accountName": azurite::DEV_ACCOUNT, "accountKey": azurite::DEV_KEY,
        "queue": format!("{name}-steps"), "container": format!("{name}-state")
    })
}

fn storage(az: &azurite::Azurite, name: &str) -> AzureStorageConfig {
    serde_json::from_value(storage_json(az, name)).expect("storage config")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let sc = fleet();
        let az = azurite::Azurite::start();

        let sim = start_isolated(sc.clone());
        let dir = std::env::temp_dir().join(format!("sqlvm-bench-az-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let sqlite: Arc<dyn Backend> = Arc::new(SqliteBackend::open(&dir.join("state.db")).expect("sqlite"));
        let (sqlite_rate, steps, sqlite_secs) = with_worker(engine_on(&sim, sqlite), &sc, Duration::from_millis(25)).await;
        drop(sim);

        let sim = start_isolated(sc.clone());
        let backend = storage(&az, "serve").backend().expect("backend");
        backend.create_resources().await.expect("create");
        let (serve_rate, _, serve_secs) = with_worker(engine_on(&sim, backend), &sc, Duration::from_millis(100)).await;
        drop(sim);

        // The Functions path: the release handler binary and a stand-in host.
        let sim = start_isolated(sc.clone());
        let cfg = storage(&az, "functions");
        let backend = cfg.backend().expect("backend");
        backend.create_resources().await.expect("create");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/host.json"), dir.join("host.json")).expect("host.json");
        let config = json!({
            "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
            "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "bench", "key": "bench-key-0123456789", "vaults": ["*"] }] } },
            "engine": { "delayFloorSeconds": 0.0, "delayCeilingSeconds": 1.0, "jobPollSeconds": 0.0 },
            "azureStorage": storage_json(&az, "functions"),
        });
        let (ep, hdr) = (sim.identity_endpoint(), sim.identity_header());
        let handler = host::HandlerProcess::start(&dir, &config, &[("IDENTITY_ENDPOINT", &ep), ("IDENTITY_HEADER", &hdr)]).await;
        let fake =
            host::FakeHost::new(&handler.base, backend.queue().clone(), backend.poison_queue().clone(), host::QueueSettings::default());
        let pumps: Vec<_> = (0..env("BENCH_PUMPS", 4)).map(|_| fake.spawn()).collect();
        let submitter = engine_on(&sim, backend);
        let (fn_rate, _, fn_secs) = run_fleet(&submitter, &sc).await;
        for p in pumps {
            p.abort();
        }
        drop(handler);
        drop(sim);
        let _ = std::fs::remove_dir_all(&dir);

        println!(
            "| run ({} VMs x {} DBs, {steps} steps, simulator answering at once) | steps/s | wall | vs embedded |",
            sc.virtual_machines.len(),
            env("BENCH_DBS", 5)
        );
        println!("|---|---|---|---|");
        println!("| embedded SQLite, worker pool | {sqlite_rate:.0} | {sqlite_secs:.1} s | 1.00 |");
        println!(
            "| Azure Storage (Azurite), worker pool (`serve`) | {serve_rate:.0} | {serve_secs:.1} s | {:.2} |",
            serve_rate / sqlite_rate
        );
        println!(
            "| Functions path: handler binary + stand-in host, {} pollers x batch 16 (Azurite) | {fn_rate:.0} | {fn_secs:.1} s | {:.2} |",
            env("BENCH_PUMPS", 4),
            fn_rate / sqlite_rate
        );
    });
}

//! Engine benchmarks (issue 3's performance targets), printed as a table for docs/benchmarks.md:
//!
//! 1. Steps per second on the embedded store with the simulator answering at once (target
//!    >= 2,000 on 2 cores): protect workflows for a fleet, every step a real ARM call over
//!    > loopback and a real SQLite commit.
//! 2. A workflow's wall time against the sum of the `Retry-After` delays the service imposed
//!    (target: within 2%).
//! 3. `serve` process start to ready (ms), resident memory idle and with 1,000 workflows in
//!    flight.
//!
//! Run: `cargo bench --bench engine` (env BENCH_VMS, BENCH_DBS, BENCH_RETRY_AFTER).

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_emulator::fleet::{FleetSpec, generate};
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};
use sqlvm_backup_emulator::settings::Timings;
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions, PacingOptions};
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::Backend;
use sqlvm_backup_shared::workflow::state::*;
use sqlvm_backup_shared::workflow::steps::StepOptions;

mod support;

use support::{StaticToken, protect_input, start_isolated};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlvm-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir
}

fn engine_on(sim: &RunningSimulator, db: &std::path::Path, steps: StepOptions) -> Arc<Engine> {
    let opts = ArmClientOptions { pacing: PacingOptions { enabled: false, ..Default::default() }, ..Default::default() };
    let arm = ArmClient::new(&sim.base_url, Arc::new(StaticToken(sim.arm_token())), Some(opts)).expect("client");
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::open(db).expect("sqlite"));
    Arc::new(Engine::new(backend, arm, EngineOptions { steps, ..EngineOptions::default() }))
}

async fn wait_all(engine: &Engine, ids: &[String]) -> Vec<WorkflowState> {
    let mut out = Vec::new();
    for id in ids {
        loop {
            let st = engine.backend().load(id).await.expect("load").expect("exists").value;
            if st.status.is_terminal() {
                out.push(st);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    out
}

/// Benchmark 1: steps per second with instant answers, the fleet spread over several vaults.
/// Every protect workflow pages through all protectable items of its vault, so the size of
/// the vault weighs on each one.
async fn steps_per_second(vms: usize, dbs: usize, subscriptions: usize, vaults: usize) -> (f64, usize, f64) {
    let mut sc = generate(&FleetSpec { subscriptions, vaults_per_subscription: vaults, vms, databases_per_vm: dbs, simple_every: 0 });
    sc.settings.timings = Timings::instant();
    sc.settings.retry_after_seconds = 0;
    sc.settings.throttling.enabled = false;
    sc.settings.request_log_capacity = 1000;
    // The simulator runs on a runtime of its own, as it would in another process, so its
    // request handling does not queue behind the engine's tasks.
    let sim = start_isolated(sc.clone());
    let dir = tmp("steps");
    let steps = StepOptions {
        delay_floor: Duration::ZERO,
        delay_ceiling: Duration::from_secs(1),
        job_poll_interval: Duration::ZERO,
        ..StepOptions::default()
    };
    let engine = engine_on(&sim, &dir.join("state.db"), steps);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let e = engine.clone();
    let w = tokio::spawn(worker::run(
        e,
        WorkerOptions {
            concurrency: std::env::var("BENCH_CONC").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
            idle_poll: Duration::from_millis(5),
            ..Default::default()
        },
        async move {
            let _ = stopped.changed().await;
        },
    ));
    let start = Instant::now();
    let mut ids = Vec::new();
    for vm in &sc.virtual_machines {
        ids.push(engine.submit(protect_input(&sc, vm), "bench", None).await.expect("submit").id);
    }
    let states = wait_all(&engine, &ids).await;
    let secs = start.elapsed().as_secs_f64();
    let total: usize = states.iter().map(|s| s.steps.len()).sum();
    let ok = states.iter().filter(|s| s.status == WorkflowStatus::Succeeded).count();
    assert_eq!(ok, states.len(), "all workflows succeed");
    let _ = stop.send(true);
    let _ = w.await;
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    (total as f64 / secs, total, secs)
}

/// 2. Wall time of protect + backup against the service's imposed delays.
async fn delay_overhead(retry_after: u64) -> (f64, f64, usize) {
    let mut sc: Scenario = serde_json::from_str(include_str!("../emulator/scenarios/seed.json")).expect("seed");
    sc.settings.timings = Timings::instant();
    sc.settings.retry_after_seconds = retry_after;
    let sim = server::start(sc.clone(), SimulatorOptions::default()).await.expect("sim");
    let dir = tmp("delays");
    let steps = StepOptions {
        delay_floor: Duration::ZERO,
        delay_ceiling: Duration::from_secs(600),
        job_poll_interval: Duration::ZERO,
        ..StepOptions::default()
    };
    let engine = engine_on(&sim, &dir.join("state.db"), steps);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let e = engine.clone();
    let w = tokio::spawn(worker::run(e, WorkerOptions::default(), async move {
        let _ = stopped.changed().await;
    }));
    let vm = sc.virtual_machines.iter().find(|v| v.name == "sqlserver-0").expect("vm").clone();
    let start = Instant::now();
    let id = engine.submit(protect_input(&sc, &vm), "bench", None).await.expect("submit").id;
    let p = wait_all(&engine, &[id]).await;
    let vault = if let WorkflowInput::Protect(pi) = &p[0].input { pi.vault_id.clone().expect("vault") } else { unreachable!() };
    let id = engine
        .submit(
            WorkflowInput::Backup(BackupInput {
                vault_id: vault,
                items: vec![],
                databases: DatabaseFilter::default(),
                vms: vec![],
                backup_type: BackupType::Full,
                retention_days: None,
            }),
            "bench",
            None,
        )
        .await
        .expect("submit")
        .id;
    let b = wait_all(&engine, &[id]).await;
    let secs = start.elapsed().as_secs_f64();
    assert!(p[0].status == WorkflowStatus::Succeeded && b[0].status == WorkflowStatus::Succeeded);
    // Waits on the critical path: refresh, register, inquire, protect (children in parallel),
    // backup trigger (children in parallel): five Retry-After delays.
    let imposed = 5.0 * retry_after as f64;
    let calls = p[0].steps.len() + b[0].steps.len();
    let _ = stop.send(true);
    let _ = w.await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    (secs, imposed, calls)
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// 3. Start to ready, and resident memory idle and with 1,000 workflows in flight.
async fn process_figures(workflows: usize) -> (f64, f64, f64, usize) {
    let mut sc =
        generate(&FleetSpec { subscriptions: 1, vaults_per_subscription: 1, vms: workflows, databases_per_vm: 2, simple_every: 0 });
    // Slow operations keep every workflow in flight while memory is sampled.
    sc.settings.timings.register_ms = 60_000;
    sc.settings.retry_after_seconds = 5;
    sc.settings.throttling.enabled = false;
    let sim = server::start(sc.clone(), SimulatorOptions::default()).await.expect("sim");
    let dir = tmp("serve");
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({
            "listen": "127.0.0.1:0",
            "database": dir.join("state.db"),
            "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
            "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "bench", "key": "bench-key-0123456789", "vaults": ["*"] }] } },
            "engine": { "delayFloorSeconds": 1.0, "concurrency": 32 }
        })
        .to_string(),
    )
    .expect("config");
    let t0 = Instant::now();
    let serve = support::common::serve_process::ServeProcess::start(&config, &sim);
    let ready_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let base = serve.base.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kb(serve.child.id()) as f64 / 1024.0;
    let http = reqwest::Client::new();
    let mut submitted = 0;
    for vm in &sc.virtual_machines {
        let WorkflowInput::Protect(p) = protect_input(&sc, vm) else { unreachable!() };
        let r = http.post(format!("{base}/api/protect")).header("x-api-key", "bench-key-0123456789").json(&p).send().await.expect("post");
        if r.status().as_u16() == 202 {
            submitted += 1;
        }
    }
    let mut peak = 0u64;
    for _ in 0..30 {
        peak = peak.max(rss_kb(serve.child.id()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(serve);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    (ready_ms, idle, peak as f64 / 1024.0, submitted)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::env::var("BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2))
        .enable_all()
        .build()
        .expect("runtime");
    let vms = env("BENCH_VMS", 300) as usize;
    let dbs = env("BENCH_DBS", 10) as usize;
    let ra = env("BENCH_RETRY_AFTER", 2);
    let (rate, steps, secs) = rt.block_on(steps_per_second(vms, dbs, 4, 2));
    let (rate1, steps1, secs1) = rt.block_on(steps_per_second(vms, dbs, 1, 1));
    let (wall, imposed, calls) = rt.block_on(delay_overhead(ra));
    let (ready_ms, idle, peak, submitted) = rt.block_on(process_figures(1000));
    println!("| benchmark | result | target |");
    println!("|---|---|---|");
    println!(
        "| steps/s, embedded SQLite store, simulator answering at once ({vms} protect workflows x {dbs} DBs over 8 vaults) | {rate:.0} ({steps} steps in {secs:.2} s) | >= 2,000 |"
    );
    println!(
        "| steps/s, same fleet in one vault (each workflow pages through all {} protectable items) | {rate1:.0} ({steps1} steps in {secs1:.2} s) | (report) |",
        vms * (dbs + 1)
    );
    println!(
        "| seed protect + Full backup with Retry-After {ra} s: wall time vs imposed delays | {wall:.3} s vs {imposed:.1} s ({:+.2}%, {calls} steps) | within 2% |",
        (wall - imposed) / imposed * 100.0
    );
    println!("| `serve` start to ready | {ready_ms:.0} ms | (report) |");
    println!("| `serve` resident memory idle | {idle:.1} MB | (report) |");
    println!("| `serve` resident memory, {submitted} workflows in flight (peak over 3 s) | {peak:.1} MB | (report) |");
}

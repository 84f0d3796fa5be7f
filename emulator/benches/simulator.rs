//! Simulator benchmarks (issue 2's performance targets), printed as a table:
//!
//! 1. Simple authenticated GETs per second over loopback (target >= 20,000 on 2 cores): a GET of
//!    a backup policy (the largest single-resource body of the workflow). Load comes from `wrk`
//!    in a second process when it is installed (Debian package `wrk`), as the target means; the
//!    in-process hyper client is also measured, and is slower because it shares the two cores.
//! 2. Resident memory of a fleet of VMS x DBS (target: 10,000 x 10 in < 500 MB), with every VM
//!    discovered, registered and inquired and every database protected.
//!
//! Run: `cargo bench -p sqlvm-backup-emulator --bench simulator` (env BENCH_SECONDS, BENCH_CONNS,
//! BENCH_VMS, BENCH_DBS to change the sizes). Results go to docs/benchmarks.md by hand.

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sqlvm_backup_emulator::fleet::{FleetSpec, generate};
use sqlvm_backup_emulator::names::key;
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, SimulatorOptions};
use sqlvm_backup_emulator::settings::Timings;
use sqlvm_backup_emulator::world::World;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Requests per second `wrk` measured against the URL, if `wrk` is installed.
async fn wrk_rate(url: &str, auth: &str, seconds: u64, conns: u64) -> Option<f64> {
    let out = tokio::process::Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{seconds}s"), "-H", &format!("Authorization: {auth}"), url])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let non_2xx = text.lines().any(|l| l.contains("Non-2xx"));
    let rate = text.lines().find(|l| l.starts_with("Requests/sec:"))?.split_whitespace().nth(1)?.parse().ok()?;
    (!non_2xx).then_some(rate)
}

async fn gets_per_second(seconds: u64, conns: u64) -> (f64, u64, u64, Option<f64>) {
    let seed: Scenario = serde_json::from_str(include_str!("../scenarios/seed.json")).expect("seed");
    let mut sc = seed;
    sc.settings.throttling.enabled = false;
    sc.settings.request_log_capacity = 10_000;
    let sim = server::start(sc, SimulatorOptions::default()).await.expect("start");
    let url: hyper::Uri = format!("{}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupPolicies/HourlyLogBackup?api-version=2026-10-01", sim.base_url).parse().expect("uri");
    let auth = format!("Bearer {}", sim.arm_token());
    let wrk = wrk_rate(&url.to_string(), &auth, seconds, conns).await;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(conns as usize).build_http();
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, auth, ok, bad) = (client.clone(), url.clone(), auth.clone(), ok.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let req = hyper::Request::get(url.clone()).header("authorization", &auth).body(Empty::new()).expect("req");
                match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        if status == 200 {
                            ok.fetch_add(1, Ordering::Relaxed)
                        } else {
                            bad.fetch_add(1, Ordering::Relaxed)
                        };
                    }
                    Err(_) => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    sim.shutdown().await;
    let n = ok.load(Ordering::Relaxed);
    (n as f64 / elapsed, n, bad.load(Ordering::Relaxed), wrk)
}

/// Build the fleet world and drive it to "everything protected" through the world API.
fn fleet_memory(vms: usize, dbs: usize) -> (f64, f64, usize, f64) {
    let before = rss_mb();
    let t0 = Instant::now();
    let mut sc = generate(&FleetSpec { subscriptions: 4, vaults_per_subscription: 2, vms, databases_per_vm: dbs, simple_every: 0 });
    sc.settings.timings = Timings::instant();
    let mut world = World::from_scenario(&sc);
    let now = chrono::Utc::now();
    let vault_keys: Vec<String> = world.vaults.keys().cloned().collect();
    for v in &vault_keys {
        world.start_refresh(v, "2026-10-01", now);
    }
    world.tick(now);
    let mut protected = 0;
    for v in &vault_keys {
        let containers: Vec<String> = world.protectable_containers(v).iter().map(|vm| vm.container_name()).collect();
        for c in &containers {
            world.start_register(v, c, None, false, "2026-10-01", now).expect("register");
        }
    }
    world.tick(now);
    for v in &vault_keys {
        let vault = world.vault(v).expect("vault");
        let policy_id = format!("{}/backupPolicies/SqlDaily", vault.id());
        let work: Vec<(String, String)> = vault
            .containers
            .values()
            .flat_map(|c| c.inquired.iter().map(move |(i, d)| (c.name.clone(), format!("SQLDataBase;{i};{d}"))))
            .collect();
        for (c, item) in work {
            let planned = world.plan_item(v, &c, &item, &policy_id).expect("plan");
            world.start_configure(v, planned, "2026-10-01", now);
            protected += 1;
        }
        world.tick(now);
    }
    // Completed operations stay resolvable, as in the service; they are part of the footprint.
    let held = world.vaults.values().map(|v| v.items.len()).sum::<usize>();
    assert_eq!(held, protected);
    assert!(world.vms.contains_key(&key(&world.vms.values().next().expect("vm").id())));
    let after = rss_mb();
    (before, after, held, t0.elapsed().as_secs_f64())
}

fn main() {
    let seconds = env("BENCH_SECONDS", 5);
    let conns = env("BENCH_CONNS", 32);
    let vms = env("BENCH_VMS", 10_000) as usize;
    let dbs = env("BENCH_DBS", 10) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (rate, ok, bad, wrk) = rt.block_on(gets_per_second(seconds, conns));
    drop(rt);
    let (before, after, items, secs) = fleet_memory(vms, dbs);
    println!("| benchmark | result | target |");
    println!("|---|---|---|");
    match wrk {
        Some(w) => println!(
            "| simple GETs/s over loopback, load from wrk in a second process ({conns} connections, {seconds} s) | {w:.0} | >= 20,000 |"
        ),
        None => println!("| simple GETs/s over loopback, load from wrk | wrk not installed (apt-get install wrk) | >= 20,000 |"),
    }
    println!(
        "| simple GETs/s over loopback, load from an in-process client sharing the 2 cores ({conns} connections, {seconds} s) | {rate:.0} ({ok} ok, {bad} failed) | >= 20,000 |"
    );
    println!(
        "| fleet {vms} VMs x {dbs} DBs, all registered and protected: resident memory | {:.0} MB (process {after:.0} MB, {items} protected items, built in {secs:.1} s) | < 500 MB |",
        after - before
    );
}

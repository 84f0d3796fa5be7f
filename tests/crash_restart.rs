//! The worker killed with SIGKILL in the middle of workflows and restarted on the same SQLite
//! file: every workflow reaches its terminal state and nothing is done twice (one registration,
//! one protected item per database, one backup job per database).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, SimulatorOptions};

const KEY: &str = "test-key-0123456789";
const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012";
const VM: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";

struct Worker {
    child: Child,
    base: String,
}

fn start_worker(config: &std::path::Path, identity_endpoint: &str, identity_header: &str) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlvm-backup"))
        .args(["serve", "--config"])
        .arg(config)
        .env("IDENTITY_ENDPOINT", identity_endpoint)
        .env("IDENTITY_HEADER", identity_header)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("a line").expect("utf8");
    let base = line.strip_prefix("ready on ").expect("ready line").to_string();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Worker { child, base }
}

async fn api(http: &reqwest::Client, w: &Worker, method: &str, path: &str, body: Option<Value>) -> Value {
    let req = match method {
        "POST" => http.post(format!("{}{path}", w.base)).json(&body.unwrap_or(Value::Null)),
        _ => http.get(format!("{}{path}", w.base)),
    };
    let resp = req.header("x-api-key", KEY).send().await.expect("api call");
    resp.json().await.expect("json")
}

/// Poll the workflow until `done(state)`; returns the state.
async fn until(http: &reqwest::Client, w: &Worker, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = api(http, w, "GET", &format!("/api/workflows/{id}"), None).await;
        if done(&st) {
            return st;
        }
        assert!(start.elapsed() < limit, "timed out: {st:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn kill(mut w: Worker) {
    // SIGKILL: no chance to finish anything.
    w.child.kill().expect("kill");
    let _ = w.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workflow_then_restart_completes_without_doing_anything_twice() {
    let mut scenario: Scenario = serde_json::from_str(include_str!("../emulator/scenarios/seed.json")).unwrap();
    scenario.settings.retry_after_seconds = 0;
    let t = &mut scenario.settings.timings;
    (t.refresh_ms, t.register_ms, t.inquire_ms, t.configure_ms, t.backup_operation_ms, t.full_backup_job_ms) =
        (300, 400, 300, 400, 200, 1200);
    let sim = server::start(scenario, SimulatorOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sqlvm-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({
            "listen": "127.0.0.1:0",
            "database": dir.join("state.db"),
            "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
            "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "test", "key": KEY, "vaults": ["*"] }] } },
            "engine": { "delayFloorSeconds": 0.05, "delayCeilingSeconds": 1.0, "jobPollSeconds": 0.1, "leaseSeconds": 1.0 }
        })
        .to_string(),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let (ep, hdr) = (sim.identity_endpoint(), sim.identity_header());

    // Protect: kill after the registration started and again in the middle of the fan-out.
    let w = start_worker(&config, &ep, &hdr);
    let input = json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } });
    let id = api(&http, &w, "POST", "/api/protect", Some(input)).await["id"].as_str().unwrap().to_string();
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "register")))
        .await;
    kill(w);
    let w = start_worker(&config, &ep, &hdr);
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "protectItem")))
        .await;
    kill(w);
    let w = start_worker(&config, &ep, &hdr);
    let st = until(&http, &w, &id, Duration::from_secs(30), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");

    // Backup: kill right after the first triggers went out.
    let input = json!({ "vaultId": VAULT, "backupType": "Full", "databases": { "includeSystem": true } });
    let id = api(&http, &w, "POST", "/api/backups", Some(input)).await["id"].as_str().unwrap().to_string();
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "trigger")))
        .await;
    kill(w);
    let w = start_worker(&config, &ep, &hdr);
    let st = until(&http, &w, &id, Duration::from_secs(40), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    kill(w);

    // Nothing done twice, as the service sees it.
    let jobs: Value = http.get(format!("{}/_sim/jobs", sim.base_url)).send().await.unwrap().json().await.unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    let count = |op: &str| jobs.iter().filter(|j| j["operation"] == op).count();
    assert_eq!(count("Register"), 1, "registered once");
    assert_eq!(count("Backup (Full)"), 5, "one backup job per database: {jobs:#?}");
    assert!(jobs.iter().all(|j| j["status"] == "Completed"), "{jobs:#?}");
    let items: Value = http
        .get(format!("{}{VAULT}/backupProtectedItems?api-version=2026-10-01", sim.base_url))
        .bearer_auth(sim.arm_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(items["value"].as_array().unwrap().len(), 5);
    assert!(items["value"].as_array().unwrap().iter().all(|i| i["properties"]["protectionState"] == "Protected"));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! The worker killed with SIGKILL in the middle of workflows and restarted on the same SQLite
//! file: every workflow reaches its terminal state and nothing is done twice (one registration,
//! one protected item per database, one backup job per database).

use serde_json::{Value, json};
use std::time::{Duration, Instant};

mod common;

use common::serve_process::ServeProcess;
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, SimulatorOptions};

const KEY: &str = "test-key-0123456789";
const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012";
const VM: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";

async fn api(http: &reqwest::Client, w: &ServeProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let req = match method {
        "POST" => http.post(format!("{}{path}", w.base)).json(&body.unwrap_or(Value::Null)),
        _ => http.get(format!("{}{path}", w.base)),
    };
    let resp = req.header("x-api-key", KEY).send().await.expect("api call");
    resp.json().await.expect("json")
}

/// Poll the workflow until `done(state)`; returns the state.
async fn until(http: &reqwest::Client, w: &ServeProcess, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
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

    // Protect: kill after the registration started and again in the middle of the fan-out.
    let w = ServeProcess::start(&config, &sim);
    let input = json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } });
    let id = api(&http, &w, "POST", "/api/protect", Some(input)).await["id"].as_str().unwrap().to_string();
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "register")))
        .await;
    w.kill();
    let w = ServeProcess::start(&config, &sim);
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "protectItem")))
        .await;
    w.kill();
    let w = ServeProcess::start(&config, &sim);
    let st = until(&http, &w, &id, Duration::from_secs(30), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");

    // Backup: kill right after the first triggers went out.
    let input = json!({ "vaultId": VAULT, "backupType": "Full", "databases": { "includeSystem": true } });
    let id = api(&http, &w, "POST", "/api/backups", Some(input)).await["id"].as_str().unwrap().to_string();
    until(&http, &w, &id, Duration::from_secs(20), |s| s["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == "trigger")))
        .await;
    w.kill();
    let w = ServeProcess::start(&config, &sim);
    let st = until(&http, &w, &id, Duration::from_secs(40), |s| s["status"] != "running").await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    w.kill();

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

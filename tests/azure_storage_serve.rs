//! `sqlvm-backup serve` on Azure Storage (Azurite): the standalone worker polls the step queue
//! itself, as it does in a container beside the Function App. Also `requeue-poison` on the
//! `<queue>-poison` queue.

mod common;

use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

use common::azurite::{Azurite, DEV_ACCOUNT, DEV_KEY};
use common::serve_process::ServeProcess;
use common::{VAULT, VM};
use sqlvm_backup::azure_storage::config::AzureStorageConfig;
use sqlvm_backup_emulator::server::{self, SimulatorOptions};

const KEY: &str = "test-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_azure_storage_runs_the_seed_workflow_and_requeues_poison() {
    let azurite = Azurite::start();
    let sim = server::start(common::seed(), SimulatorOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sqlvm-serve-az-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let storage = json!({
        "queueEndpoint": azurite.queue_endpoint, "blobEndpoint": azurite.blob_endpoint,
        "accountName": DEV_ACCOUNT, "accountKey": DEV_KEY, "queue": "serve-steps", "container": "serve-state"
    });
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({
            "listen": "127.0.0.1:0",
            "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
            "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "test", "key": KEY, "vaults": ["*"] }] } },
            "engine": { "delayFloorSeconds": 0.0, "delayCeilingSeconds": 1.0, "jobPollSeconds": 0.2, "leaseSeconds": 5 },
            "azureStorage": storage,
        })
        .to_string(),
    )
    .unwrap();
    let serve = ServeProcess::start(&config, &sim);
    let base = serve.base.clone();

    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).header("x-api-key", KEY).json(&body).send();
    let wait = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let start = Instant::now();
            loop {
                let st: Value =
                    http.get(format!("{base}/api/workflows/{id}")).header("x-api-key", KEY).send().await.unwrap().json().await.unwrap();
                if st["status"] != "running" {
                    return st;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "{st:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let r =
        post("/api/protect", json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } }))
            .await
            .unwrap();
    assert_eq!(r.status(), 202);
    let st = wait(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()).await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    assert_eq!(st["children"].as_array().unwrap().len(), 5);
    let r = post("/api/backups", json!({ "vaultId": VAULT, "backupType": "Full", "databases": { "includeSystem": true } })).await.unwrap();
    let st = wait(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()).await;
    assert_eq!(st["status"], "succeeded", "{st:#}");
    // The list comes from blob metadata, newest first.
    let list: Value =
        http.get(format!("{base}/api/workflows?kind=backup")).header("x-api-key", KEY).send().await.unwrap().json().await.unwrap();
    let items = list["value"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    assert_eq!(items[0]["kind"], "backup");
    drop(serve);

    // requeue-poison moves the poison queue's messages back, text unchanged.
    let cfg: AzureStorageConfig = serde_json::from_value(storage).unwrap();
    let backend = cfg.backend().unwrap();
    backend.poison_queue().send(r#"{"not":"a step"}"#, Duration::ZERO).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sqlvm-backup")).args(["requeue-poison", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 message(s)"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(backend.poison_queue().peek(32).await.unwrap().is_empty());
    assert_eq!(backend.queue().peek(32).await.unwrap(), vec![r#"{"not":"a step"}"#.to_string()]);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A start whose first message cannot be sent fails and leaves no workflow that nothing would
/// ever move; the same request repeated once the queue works starts it for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_send_its_first_step_leaves_nothing_behind() {
    use sqlvm_backup_shared::arm::ArmClient;
    use sqlvm_backup_shared::engine::{Engine, EngineOptions, SubmitError};
    use sqlvm_backup_shared::ports::Backend;
    use sqlvm_backup_shared::workflow::state::{BackupInput, BackupType, WorkflowInput};
    use std::sync::Arc;

    let azurite = Azurite::start();
    let good = json!({
        "queueEndpoint": azurite.queue_endpoint, "blobEndpoint": azurite.blob_endpoint,
        "accountName": DEV_ACCOUNT, "accountKey": DEV_KEY, "queue": "start-steps", "container": "start-state"
    });
    // The blob service answers queue calls with an error at once: a queue that refuses.
    let mut broken = good.clone();
    broken["queueEndpoint"] = json!(azurite.blob_endpoint);
    let engine_on = |storage: &Value| {
        let cfg: AzureStorageConfig = serde_json::from_value(storage.clone()).unwrap();
        let backend = cfg.backend().unwrap();
        let arm = ArmClient::new("https://127.0.0.1:1", Arc::new(common::StaticToken("unused".into())), None).unwrap();
        (backend.clone(), Engine::new(backend, arm, EngineOptions::default()))
    };
    let (good_backend, good_engine) = engine_on(&good);
    good_backend.create_resources().await.unwrap();
    let (_, broken_engine) = engine_on(&broken);
    let input = || {
        WorkflowInput::Backup(BackupInput {
            vault_id: VAULT.into(),
            items: vec![],
            databases: Default::default(),
            vms: vec![],
            backup_type: BackupType::Full,
            retention_days: None,
        })
    };

    let err = broken_engine.submit(input(), "test", Some("start-key")).await.unwrap_err();
    assert!(matches!(err, SubmitError::Backend(_)), "{err}");
    let id = sqlvm_backup_shared::engine::workflow_id(sqlvm_backup_shared::workflow::state::WorkflowKind::Backup, Some("start-key"));
    assert!(good_backend.load(&id).await.unwrap().is_none(), "no workflow is left without its first message");

    let sub = good_engine.submit(input(), "test", Some("start-key")).await.unwrap();
    assert!(sub.created);
    assert_eq!(sub.id, id);
    let queued = good_backend.queue().peek(32).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(queued[0].contains(&id));
}

//! The protect workflow's options: vault and policy resolved from configuration rules and the
//! VM's tag, auto-protection through a deterministic protection intent, an initial Full backup;
//! and a backup of explicitly named items.

mod common;

use common::*;
use std::time::Duration;

use sqlvm_backup_shared::engine::EngineOptions;
use sqlvm_backup_shared::workflow::state::*;
use sqlvm_backup_shared::workflow::steps::{Rules, VaultRule};

fn rules_options() -> EngineOptions {
    let mut o = fast_options();
    o.steps.rules = Rules {
        policy_tag: None,
        default_policy: None,
        vaults: vec![VaultRule { vault_id: VAULT.into(), location: "westcentralus".into() }],
    };
    o
}

fn bare(auto_protect: bool, initial_full_backup: bool) -> WorkflowInput {
    WorkflowInput::Protect(ProtectInput {
        vm_id: VM.into(),
        vault_id: None,
        policy: None,
        databases: DatabaseFilter::default(),
        auto_protect,
        initial_full_backup,
    })
}

/// Vault from the rules (same subscription and region), policy from the VM's `backup-policy` tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_and_policy_resolved_from_rules_and_tag() {
    let mut s = seed();
    s.virtual_machines.iter_mut().find(|v| v.name == "sqlserver-0").unwrap().tags.insert("backup-policy".into(), "HourlyLogBackup".into());
    let h = Harness::start_with(s, rules_options()).await;
    let id = h.engine.submit(bare(false, false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert_eq!(st.target.policy_id.as_deref(), Some(format!("{VAULT}/backupPolicies/HourlyLogBackup").as_str()));
    assert_eq!(st.steps[0].step, "resolveTarget");
    assert_eq!(h.calls().await[0].0, "VirtualMachines_Get");
    h.stop().await;
}

/// Without a tag or default policy the workflow says what to do instead of guessing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_policy_tag_needs_user_action() {
    let h = Harness::start_with(seed(), rules_options()).await;
    let id = h.engine.submit(bare(false, false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Failed);
    assert_eq!(st.failure.unwrap().code, "NoPolicyForVm");
    h.stop().await;
}

/// Auto-protection creates one intent per instance with a deterministic name (so a second run
/// updates it), and the initial Full backup runs after protection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_protection_and_initial_full_backup() {
    let mut s = seed();
    s.virtual_machines.iter_mut().find(|v| v.name == "sqlserver-0").unwrap().tags.insert("backup-policy".into(), "HourlyLogBackup".into());
    let h = Harness::start_with(s, rules_options()).await;
    let id = h.engine.submit(bare(true, true), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert!(st.children.iter().filter(|c| c.status == ChildStatus::Succeeded).all(|c| c.job_status.as_deref() == Some("Completed")));
    let intents = h.calls().await.iter().filter(|(o, _)| o == "ProtectionIntent_CreateOrUpdate").count();
    assert_eq!(intents, 1, "one SQL instance, one intent");
    // A second run puts the same intent again instead of a new one.
    let id = h.engine.submit(bare(true, false), "test", None).await.unwrap().id;
    h.wait(&id, Duration::from_secs(30)).await;
    let list = h
        .http
        .get(format!("{}{VAULT}/backupProtectionIntents?api-version=2026-10-01", h.sim.base_url))
        .bearer_auth(h.sim.arm_token())
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list:#}");
    h.stop().await;
}

/// A backup of explicitly named items touches only those; an unknown item fails by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_named_items() {
    let h = Harness::start(seed()).await;
    let p = ProtectInput {
        vm_id: VM.into(),
        vault_id: Some(VAULT.into()),
        policy: Some("HourlyLogBackup".into()),
        databases: DatabaseFilter::default(),
        auto_protect: false,
        initial_full_backup: false,
    };
    let id = h.engine.submit(WorkflowInput::Protect(p), "test", None).await.unwrap().id;
    h.wait(&id, Duration::from_secs(30)).await;
    let c = "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0";
    let items = vec![
        ItemRef { container: c.into(), item: "SQLDataBase;mssqlserver;salesdb".into() },
        ItemRef { container: c.into(), item: "SQLDataBase;mssqlserver;nosuchdb".into() },
    ];
    let b = BackupInput {
        vault_id: VAULT.into(),
        items,
        databases: DatabaseFilter::default(),
        vms: vec![],
        backup_type: BackupType::CopyOnlyFull,
        retention_days: Some(7),
    };
    let id = h.engine.submit(WorkflowInput::Backup(b), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::PartiallySucceeded, "{st:#?}");
    assert_eq!(st.children.len(), 2);
    assert_eq!(h.calls().await.iter().filter(|(o, _)| o == "Backups_Trigger").count(), 1);
    h.stop().await;
}

//! The seed document's workflow end to end, through the engine on the embedded backend, against
//! the simulator: protect sqlserver-0's databases with HourlyLogBackup, then take an on-demand
//! Full backup of each, and check the simulator saw exactly the seed's sequence of calls.

mod common;

use common::*;
use std::time::Duration;

use sqlvm_backup_shared::workflow::state::*;

/// Collapse consecutive repeats: the sequence of distinct calls, as the seed document lists it.
fn sequence(calls: &[(String, u16)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (op, _) in calls {
        if out.last() != Some(op) {
            out.push(op.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_workflow_end_to_end_makes_exactly_the_seed_calls() {
    let h = Harness::start(seed()).await;
    let p = h.engine.submit(WorkflowInput::Protect(seed_protect_input()), "test", None).await.expect("submit");
    let st = h.wait(&p.id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert_eq!(st.children.len(), 5, "msdb and four more databases");
    assert!(st.children.iter().all(|c| c.status == ChildStatus::Succeeded));
    assert_eq!(st.target.container.as_deref(), Some("VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0"));
    let protect_calls = h.calls().await;

    let b = BackupInput {
        vault_id: VAULT.into(),
        items: vec![],
        databases: DatabaseFilter { include_system: true, ..Default::default() },
        vms: vec![],
        backup_type: BackupType::Full,
        retention_days: Some(45),
    };
    let b = h.engine.submit(WorkflowInput::Backup(b), "test", None).await.expect("submit backup");
    let st = h.wait(&b.id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert_eq!(st.children.len(), 5);
    for c in &st.children {
        assert_eq!(c.job_status.as_deref(), Some("Completed"), "{c:?}");
        assert!(c.job_id.is_some());
    }

    // The seed document's sequence, and nothing the workflow did not need.
    let calls = h.calls().await;
    assert!(calls.iter().all(|(_, s)| *s < 400), "no call failed: {calls:?}");
    let seq = sequence(&protect_calls);
    let head: Vec<&str> = seq.iter().map(String::as_str).take(7).collect();
    assert_eq!(
        head,
        [
            "ProtectionContainers_Refresh",
            "ProtectionContainerRefreshOperationResults_Get",
            "ProtectableContainers_List",
            "ProtectionContainers_Register",
            "ProtectionContainerOperationStatuses_Get",
            "ProtectionContainers_Inquire",
            "ProtectionContainerOperationStatuses_Get",
        ]
    );
    assert_eq!(seq[7], "BackupProtectableItems_List");
    let count = |op: &str| calls.iter().filter(|(o, _)| o == op).count();
    assert_eq!(count("ProtectionContainers_Refresh"), 1);
    assert_eq!(count("ProtectionContainers_Register"), 1);
    assert_eq!(count("ProtectionContainers_Inquire"), 1);
    assert_eq!(count("ProtectedItems_CreateOrUpdate"), 5, "one PUT per database");
    assert_eq!(count("Backups_Trigger"), 5, "one backup per database");
    assert_eq!(count("BackupProtectedItems_List"), 1);
    assert_eq!(count("ProtectableContainers_List"), 1);
    assert_eq!(count("BackupProtectableItems_List"), 1);
    let allowed = [
        "ProtectionContainers_Refresh",
        "ProtectionContainerRefreshOperationResults_Get",
        "ProtectableContainers_List",
        "ProtectionContainers_Register",
        "ProtectionContainerOperationStatuses_Get",
        "ProtectionContainers_Inquire",
        "BackupProtectableItems_List",
        "ProtectedItems_CreateOrUpdate",
        "ProtectedItemOperationStatuses_Get",
        "BackupProtectedItems_List",
        "Backups_Trigger",
        "JobDetails_Get",
    ];
    for (op, _) in &calls {
        assert!(allowed.contains(&op.as_str()), "unexpected call {op}");
    }
    // Every item became Protected after its Full backup.
    let items = h.sim_get("/_sim/jobs").await;
    let backups = items["jobs"].as_array().unwrap().iter().filter(|j| j["operation"] == "Backup (Full)").count();
    assert_eq!(backups, 5);
    assert!(h.violations().await.is_empty(), "{:?}", h.violations().await);
    h.stop().await;
}

//! The workflows under the conditions the service throws at them: discovery lag, failed
//! registration, missing sysadmin rights, failing and conflicting backups, throttling storms and
//! 5xx answers. Each must reach the right terminal state and do nothing twice.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

use sqlvm_backup_emulator::scenario::{FailureSpec, Scenario};
use sqlvm_backup_shared::workflow::failure::FailureClass;
use sqlvm_backup_shared::workflow::state::*;

fn protect(include_system: bool) -> WorkflowInput {
    WorkflowInput::Protect(ProtectInput {
        vm_id: VM.into(),
        vault_id: Some(VAULT.into()),
        policy: Some("HourlyLogBackup".into()),
        databases: DatabaseFilter { include_system, ..Default::default() },
        auto_protect: false,
        initial_full_backup: false,
    })
}

fn backup(bt: BackupType, retention_days: Option<u32>) -> WorkflowInput {
    WorkflowInput::Backup(BackupInput {
        vault_id: VAULT.into(),
        items: vec![],
        databases: DatabaseFilter::default(),
        vms: vec![],
        backup_type: bt,
        retention_days,
    })
}

fn with_vm(f: impl FnOnce(&mut sqlvm_backup_emulator::scenario::VmSpec)) -> Scenario {
    let mut s = seed();
    let vm = s.virtual_machines.iter_mut().find(|v| v.name == "sqlserver-0").expect("vm");
    f(vm);
    s
}

async fn count(h: &Harness, op: &str) -> usize {
    h.calls().await.iter().filter(|(o, _)| o == op).count()
}

/// A VM the vault only discovers on the third refresh is still protected, after three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_discovered_late_is_protected_after_more_refreshes() {
    let h = Harness::start(with_vm(|vm| vm.conditions.discoverable_after_refreshes = Some(3))).await;
    let id = h.engine.submit(protect(false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert_eq!(count(&h, "ProtectionContainers_Refresh").await, 3);
    assert_eq!(count(&h, "ProtectionContainers_Register").await, 1);
    h.stop().await;
}

/// A VM that is never discovered fails with VmNotDiscovered after the configured rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_never_discovered_fails_with_a_hint() {
    let h = Harness::start(with_vm(|vm| vm.conditions.never_discoverable = true)).await;
    let id = h.engine.submit(protect(false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Failed);
    let f = st.failure.unwrap();
    assert_eq!(f.code, "VmNotDiscovered");
    assert_eq!(f.class, FailureClass::NeedsUserAction);
    assert!(f.hint.is_some());
    assert_eq!(count(&h, "ProtectionContainers_Refresh").await, 4);
    assert_eq!(count(&h, "ProtectionContainers_Register").await, 0);
    h.stop().await;
}

/// A registration the service fails ends the workflow with the service's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_registration_is_reported_with_its_code() {
    let h = Harness::start(with_vm(|vm| {
        vm.conditions.registration_fails = Some(FailureSpec {
            code: "UserErrorVMInternetConnectivityIssue".into(),
            message: Some("no network".into()),
            error_code: Some(1),
        })
    }))
    .await;
    let id = h.engine.submit(protect(false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Failed);
    let f = st.failure.unwrap();
    assert_eq!(f.code, "UserErrorVMInternetConnectivityIssue");
    assert_eq!(f.class, FailureClass::NeedsUserAction);
    assert!(f.hint.unwrap().contains("outbound"));
    assert_eq!(count(&h, "ProtectionContainers_Inquire").await, 0);
    h.stop().await;
}

/// An inquiry failing for lack of sysadmin rights stops the workflow with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysadmin_inquiry_error_needs_user_action() {
    let h = Harness::start(with_vm(|vm| vm.conditions.backup_service_lacks_sysadmin = true)).await;
    let id = h.engine.submit(protect(false), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Failed, "{st:#?}");
    let f = st.failure.unwrap();
    assert_eq!(f.code, "UserErrorSQLNoSysadminMembership");
    assert!(f.hint.unwrap().contains("sysadmin"));
    assert_eq!(count(&h, "ProtectedItems_CreateOrUpdate").await, 0);
    h.stop().await;
}

async fn protect_all(h: &Harness, include_system: bool) {
    let id = h.engine.submit(protect(include_system), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
}

/// A failing backup job fails its child with the job's error; the other databases succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backup_job_fails_only_its_database() {
    let h = Harness::start(with_vm(|vm| {
        let db = vm.sql_instances[0].databases.iter_mut().find(|d| d.name == "SalesDB").unwrap();
        db.backup_fails = Some(FailureSpec {
            code: "UserErrorBackupFailedAsTransactionLogIsFull".into(),
            message: Some("log full".into()),
            error_code: Some(590017),
        });
    }))
    .await;
    protect_all(&h, false).await;
    let id = h.engine.submit(backup(BackupType::Full, None), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert_eq!(st.status, WorkflowStatus::PartiallySucceeded, "{st:#?}");
    let sales = st.children.iter().find(|c| c.friendly_name == "SalesDB").unwrap();
    match &sales.status {
        ChildStatus::Failed { failure } => {
            assert_eq!(failure.code, "UserErrorBackupFailedAsTransactionLogIsFull");
            assert!(failure.hint.is_some());
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(sales.job_status.as_deref(), Some("Failed"));
    assert_eq!(st.children.iter().filter(|c| c.status == ChildStatus::Succeeded).count(), 3);
    h.stop().await;
}

/// Two backup workflows at once on the same databases: the service fails the second job with
/// the conflicting-operation error; the engine re-triggers later and both end Succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_backups_are_retried_and_complete() {
    let mut s = seed();
    s.settings.timings.full_backup_job_ms = 600;
    let h = Harness::start(s).await;
    protect_all(&h, false).await;
    let a = h.engine.submit(backup(BackupType::Full, None), "test", None).await.unwrap().id;
    let b = h.engine.submit(backup(BackupType::Full, None), "test", None).await.unwrap().id;
    let sa = h.wait(&a, Duration::from_secs(60)).await;
    let sb = h.wait(&b, Duration::from_secs(60)).await;
    assert_eq!(sa.status, WorkflowStatus::Succeeded, "{sa:#?}");
    assert_eq!(sb.status, WorkflowStatus::Succeeded, "{sb:#?}");
    let jobs = h.sim_get("/_sim/jobs").await;
    let conflicts = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["error"]["errorCode"] == 510008).count();
    assert!(conflicts > 0, "the service reported conflicts");
    let retried = sa.steps.iter().chain(sb.steps.iter()).filter(|r| r.note.as_deref() == Some("conflict: re-trigger")).count();
    assert_eq!(retried, conflicts, "every conflict was retried once");
    h.stop().await;
}

/// Differential and Log before any Full are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_before_full_is_skipped_without_a_call() {
    let h = Harness::start(seed()).await;
    protect_all(&h, false).await;
    let id = h.engine.submit(backup(BackupType::Differential, None), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(30)).await;
    assert!(st.children.iter().all(|c| matches!(&c.status, ChildStatus::Skipped { reason } if reason.contains("Full"))), "{st:#?}");
    assert_eq!(count(&h, "Backups_Trigger").await, 0);
    h.stop().await;
}

/// A 429 storm (a tiny ARM bucket) slows the workflow down but never fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_never_fails_a_workflow() {
    let mut s = seed();
    s.settings.throttling.reads_capacity = 3.0;
    s.settings.throttling.reads_per_second = 20.0;
    s.settings.throttling.writes_capacity = 2.0;
    s.settings.throttling.writes_per_second = 10.0;
    let h = Harness::start(s).await;
    let id = h.engine.submit(protect(true), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert_eq!(
        count(&h, "ProtectedItems_CreateOrUpdate").await
            - h.calls().await.iter().filter(|(o, s)| o == "ProtectedItems_CreateOrUpdate" && *s == 429).count(),
        5
    );
    h.stop().await;
}

/// 5xx answers on a third of the calls are absorbed by retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let mut s = seed();
    s.settings.faults.error_500_rate = 0.2;
    s.settings.faults.error_503_rate = 0.15;
    s.settings.faults.seed = Some(42);
    s.settings.faults.only_operations = vec![
        "ProtectableContainers_List".into(),
        "ProtectionContainerOperationStatuses_Get".into(),
        "BackupProtectableItems_List".into(),
        "ProtectedItemOperationStatuses_Get".into(),
        "JobDetails_Get".into(),
        "ProtectionContainers_Register".into(),
    ];
    let h = Harness::start(s).await;
    protect_all(&h, false).await;
    let id = h.engine.submit(backup(BackupType::Full, None), "test", None).await.unwrap().id;
    let st = h.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    let calls = h.calls().await;
    assert!(calls.iter().any(|(_, s)| *s >= 500), "faults were injected");
    assert_eq!(calls.iter().filter(|(o, s)| o == "Backups_Trigger" && *s == 202).count(), 4);
    h.stop().await;
}

/// Submitting twice with one idempotency key starts one workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_submit() {
    let h = Harness::start(seed()).await;
    let a = h.engine.submit(protect(false), "test", Some("k1")).await.unwrap();
    let b = h.engine.submit(protect(false), "test", Some("k1")).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    let _ = json!({});
    h.stop().await;
}

//! The workflow steps as pure functions: (message, state, ARM answer) in, (state change, next
//! messages with delays) out. No I/O; each case states the rule it pins down.

use serde_json::{Value, json};
use std::time::Duration;

use sqlvm_backup_shared::arm::{ArmAnswer, ArmError};
use sqlvm_backup_shared::workflow::failure::FailureClass;
use sqlvm_backup_shared::workflow::message::{MESSAGE_VERSION, Step, StepMessage};
use sqlvm_backup_shared::workflow::state::*;
use sqlvm_backup_shared::workflow::steps::{Plan, StepCtx, StepOptions, decide, intent_name, plan};

const VAULT: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v";
const VM: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-sql/providers/Microsoft.Compute/virtualMachines/sql1";
const C: &str = "VMAppContainer;Compute;rg-sql;sql1";

fn opts() -> StepOptions {
    StepOptions {
        delay_floor: Duration::from_secs(2),
        delay_ceiling: Duration::from_secs(120),
        job_poll_interval: Duration::from_secs(30),
        ..StepOptions::default()
    }
}

fn protect_state() -> WorkflowState {
    let now = chrono::Utc::now();
    WorkflowState {
        id: "wf".into(),
        kind: WorkflowKind::Protect,
        input: WorkflowInput::Protect(ProtectInput {
            vm_id: VM.into(),
            vault_id: Some(VAULT.into()),
            policy: Some("P".into()),
            databases: DatabaseFilter::default(),
            auto_protect: false,
            initial_full_backup: false,
        }),
        status: WorkflowStatus::Running,
        created_at: now,
        updated_at: now,
        deadline: now + chrono::Duration::hours(1),
        polls: 0,
        poll_budget: 100,
        origin: "test".into(),
        target: Target { vault_id: Some(VAULT.into()), policy_id: Some(format!("{VAULT}/backupPolicies/P")), container: None },
        steps: vec![],
        children: vec![],
        failure: None,
        done_steps: Default::default(),
        outbox: Default::default(),
        open: 1,
    }
}

fn backup_state(bt: BackupType) -> WorkflowState {
    let mut s = protect_state();
    s.kind = WorkflowKind::Backup;
    s.input = WorkflowInput::Backup(BackupInput {
        vault_id: VAULT.into(),
        items: vec![],
        databases: DatabaseFilter::default(),
        vms: vec![],
        backup_type: bt,
        retention_days: None,
    });
    s
}

fn msg(step: Step, child: Option<usize>, url: Option<&str>) -> StepMessage {
    StepMessage {
        v: MESSAGE_VERSION,
        workflow_id: "wf".into(),
        step_id: "x".into(),
        step,
        child,
        tracking_url: url.map(str::to_string),
        attempt: 0,
        wait_ms: None,
    }
}

fn ans(
    status: u16,
    body: Value,
    location: Option<&str>,
    asyncop: Option<&str>,
    retry_after: Option<u64>,
) -> Option<Result<ArmAnswer, ArmError>> {
    Some(Ok(ArmAnswer {
        status,
        body,
        location: location.map(str::to_string),
        azure_async_operation: asyncop.map(str::to_string),
        retry_after: retry_after.map(Duration::from_secs),
        ..Default::default()
    }))
}

/// Run one decide with dequeue count 1.
fn check(m: &StepMessage, st: &mut WorkflowState, a: Option<Result<ArmAnswer, ArmError>>) -> Vec<(Step, Option<String>, Duration)> {
    let o = opts();
    let ctx = StepCtx { now: chrono::Utc::now(), opts: &o, dequeue_count: 1 };
    decide(m, st, a.as_ref(), &ctx).into_iter().map(|s| (s.message.step, s.message.tracking_url, s.delay)).collect()
}

fn child(item: &str) -> Child {
    Child {
        container: C.into(),
        item: item.into(),
        friendly_name: item.rsplit(';').next().unwrap().into(),
        status: ChildStatus::Running,
        operation_url: None,
        job_id: None,
        job_status: None,
        trigger_sent_at: None,
    }
}

#[test]
fn refresh_posts_with_the_workload_filter_and_follows_location_after_retry_after() {
    let st = protect_state();
    let o = opts();
    let ctx = StepCtx { now: chrono::Utc::now(), opts: &o, dequeue_count: 1 };
    let Plan::Arm(call) = plan(&msg(Step::Refresh { round: 0 }, None, None), &st, &ctx) else { panic!() };
    assert_eq!(call.method, "POST");
    assert!(
        call.url
            .starts_with(&format!("{VAULT}/backupFabrics/Azure/refreshContainers?$filter=backupManagementType%20eq%20%27AzureWorkload%27")),
        "{}",
        call.url
    );
    let mut st = st;
    let next = check(&msg(Step::Refresh { round: 0 }, None, None), &mut st, ans(202, Value::Null, Some("https://h/op/1"), None, Some(60)));
    assert_eq!(next, vec![(Step::PollRefresh { round: 0 }, Some("https://h/op/1".into()), Duration::from_secs(60))]);
}

#[test]
fn retry_after_is_clamped_to_floor_and_ceiling() {
    let mut st = protect_state();
    let m = msg(Step::PollRefresh { round: 0 }, None, Some("https://h/op/1"));
    assert_eq!(check(&m, &mut st, ans(202, Value::Null, None, None, Some(900)))[0].2, Duration::from_secs(120));
    assert_eq!(check(&m, &mut st, ans(202, Value::Null, None, None, Some(0)))[0].2, Duration::from_secs(2));
    // No Retry-After on an operation-status answer: keep the pace the 202 set.
    let mut m2 = m.clone();
    m2.wait_ms = Some(7000);
    assert_eq!(check(&m2, &mut st, ans(200, json!({"status": "InProgress"}), None, None, None))[0].2, Duration::from_secs(7));
}

#[test]
fn find_container_matches_container_id_case_insensitively_and_pages() {
    let mut st = protect_state();
    let m = msg(Step::FindContainer { round: 0 }, None, None);
    let found = json!({"value": [{"name": C, "properties": {"containerId": VM.to_uppercase()}}], "nextLink": null});
    assert_eq!(check(&m, &mut st, ans(200, found, None, None, None))[0].0, Step::Register { container: C.into() });
    assert_eq!(st.target.container.as_deref(), Some(C));
    let page = json!({"value": [], "nextLink": "https://h/next?$skipToken=2"});
    assert_eq!(
        check(&m, &mut st, ans(200, page, None, None, None))[0],
        (Step::FindContainer { round: 0 }, Some("https://h/next?$skipToken=2".into()), Duration::ZERO)
    );
    let none = json!({"value": []});
    assert_eq!(check(&m, &mut st, ans(200, none, None, None, None))[0].0, Step::FindRegistered { round: 0 });
}

#[test]
fn not_found_anywhere_refreshes_again_then_fails_needing_user_action() {
    let mut st = protect_state();
    let none = json!({"value": []});
    let next = check(&msg(Step::FindRegistered { round: 0 }, None, None), &mut st, ans(200, none.clone(), None, None, None));
    assert_eq!(next[0].0, Step::Refresh { round: 1 });
    assert!(next[0].2 >= Duration::from_secs(2), "backs off between rounds");
    let last = opts().discovery_rounds - 1;
    assert!(check(&msg(Step::FindRegistered { round: last }, None, None), &mut st, ans(200, none, None, None, None)).is_empty());
    let f = st.failure.unwrap();
    assert_eq!((f.code.as_str(), f.class), ("VmNotDiscovered", FailureClass::NeedsUserAction));
}

#[test]
fn operation_status_failed_carries_the_service_code_and_hint() {
    let mut st = protect_state();
    let body = json!({"id": "1", "status": "Failed", "error": {"code": "UserErrorSQLNoSysadminMembership", "message": "no"}});
    assert!(
        check(&msg(Step::PollInquire { container: C.into() }, None, Some("https://h/s/1")), &mut st, ans(200, body, None, None, None))
            .is_empty()
    );
    let f = st.failure.unwrap();
    assert_eq!(f.code, "UserErrorSQLNoSysadminMembership");
    assert!(f.hint.unwrap().contains("sysadmin"));
}

#[test]
fn protectable_items_fan_out_only_wanted_unprotected_databases_of_this_container() {
    let mut st = protect_state();
    let item = |c: &str, name: &str, friendly: &str, kind: &str, state: &str| {
        json!({"id": format!("{VAULT}/backupFabrics/Azure/protectionContainers/{c}/protectableItems/{name}"), "name": name,
               "properties": {"protectableItemType": kind, "friendlyName": friendly, "protectionState": state}})
    };
    let body = json!({"value": [
        item(&C.to_lowercase(), "sqlinstance;mssqlserver", "MSSQLSERVER", "SQLInstance", "NotProtected"),
        item(&C.to_lowercase(), "sqldatabase;mssqlserver;msdb", "msdb", "SQLDataBase", "NotProtected"),
        item(&C.to_lowercase(), "sqldatabase;mssqlserver;sales", "Sales", "SQLDataBase", "NotProtected"),
        item(&C.to_lowercase(), "sqldatabase;mssqlserver;hr", "HR", "SQLDataBase", "Protected"),
        item("VMAppContainer;Compute;other;vm2", "sqldatabase;mssqlserver;x", "x", "SQLDataBase", "NotProtected"),
    ]});
    let next = check(&msg(Step::ListProtectable { container: C.into() }, None, None), &mut st, ans(200, body, None, None, None));
    assert_eq!(next, vec![(Step::ProtectItem { container: C.into(), item: "sqldatabase;mssqlserver;sales".into() }, None, Duration::ZERO)]);
    assert_eq!(st.children.len(), 3, "msdb skipped as system, HR skipped as protected, other container ignored");
    assert!(matches!(&st.children[0].status, ChildStatus::Skipped { reason } if reason.contains("system")));
    assert!(matches!(&st.children[2].status, ChildStatus::Skipped { reason } if reason.contains("already protected")));
}

#[test]
fn a_redelivered_trigger_looks_for_its_job_instead_of_posting_again() {
    let mut st = backup_state(BackupType::Full);
    st.children.push(child("SQLDataBase;mssqlserver;sales"));
    let m = msg(Step::Trigger { container: C.into(), item: "SQLDataBase;mssqlserver;sales".into() }, Some(0), None);
    let o = opts();
    let ctx = StepCtx { now: chrono::Utc::now(), opts: &o, dequeue_count: 2 };
    let next = decide(&m, &mut st, None, &ctx);
    assert!(matches!(next[0].message.step, Step::CheckJobs { .. }));
}

#[test]
fn a_backup_post_that_may_have_arrived_is_not_resent_but_checked() {
    let mut st = backup_state(BackupType::Full);
    st.children.push(child("SQLDataBase;mssqlserver;sales"));
    let m = msg(Step::Trigger { container: C.into(), item: "SQLDataBase;mssqlserver;sales".into() }, Some(0), None);
    let err = ArmError::Http { status: 500, code: "InternalServerError".into(), message: "x".into(), retry_after: None, request_id: None };
    assert!(matches!(check(&m, &mut st, Some(Err(err)))[0].0, Step::CheckJobs { .. }));
    // A 429 means nothing started: the same POST may go again later.
    let err = ArmError::Throttled { retry_after: Duration::from_secs(5), attempts: 3 };
    let next = check(&m, &mut st, Some(Err(err)));
    assert!(matches!(next[0].0, Step::Trigger { .. }));
    assert_eq!(next[0].2, Duration::from_secs(5));
}

#[test]
fn full_backup_sends_45_days_by_default_and_log_sends_no_expiry() {
    let o = opts();
    let ctx = StepCtx { now: chrono::Utc::now(), opts: &o, dequeue_count: 1 };
    let m = msg(Step::Trigger { container: C.into(), item: "i".into() }, Some(0), None);
    let Plan::Arm(full) = plan(&m, &backup_state(BackupType::Full), &ctx) else { panic!() };
    let expiry = full.body.as_ref().unwrap()["properties"]["recoveryPointExpiryTimeInUTC"].as_str().unwrap().to_string();
    let days = (chrono::DateTime::parse_from_rfc3339(&expiry).unwrap().with_timezone(&chrono::Utc) - ctx.now).num_hours();
    assert!((45 * 24 - 1..=45 * 24).contains(&days), "{days}");
    assert!(!full.retriable, "a backup POST is never retried blindly");
    let Plan::Arm(log) = plan(&m, &backup_state(BackupType::Log), &ctx) else { panic!() };
    assert!(log.body.unwrap()["properties"].get("recoveryPointExpiryTimeInUTC").is_none());
}

#[test]
fn a_conflicting_job_is_retried_a_bounded_number_of_times() {
    let mut st = backup_state(BackupType::Full);
    st.children.push(child("i"));
    let failed = json!({"name": "j", "properties": {"status": "Failed", "errorDetails": [{"errorCode": 510008, "errorTitle": "OperationCancelledBecauseConflictingOperationRunningUserError", "errorString": "busy"}]}});
    let m = msg(Step::PollJob { container: C.into(), item: "i".into(), job_id: "j".into() }, Some(0), None);
    for _ in 0..opts().conflict_retries {
        st.steps.push(StepRecord {
            step: "pollJob".into(),
            child: Some(0),
            at: chrono::Utc::now(),
            http_status: Some(200),
            operation_id: None,
            job_id: None,
            note: None,
        });
        let next = check(&m, &mut st, ans(200, failed.clone(), None, None, None));
        assert!(matches!(next[0].0, Step::PrepareTrigger { .. }));
        assert!(st.children[0].trigger_sent_at.is_none());
    }
    st.steps.push(StepRecord {
        step: "pollJob".into(),
        child: Some(0),
        at: chrono::Utc::now(),
        http_status: Some(200),
        operation_id: None,
        job_id: None,
        note: None,
    });
    assert!(check(&m, &mut st, ans(200, failed, None, None, None)).is_empty());
    assert!(matches!(&st.children[0].status, ChildStatus::Failed { failure } if failure.class == FailureClass::Retryable));
}

#[test]
fn transient_errors_repeat_the_step_with_back_off() {
    let mut st = protect_state();
    let m = msg(Step::PollRegister { container: C.into() }, None, Some("https://h/s/1"));
    let err = ArmError::Transport { message: "reset".into(), sent: true };
    let next = check(&m, &mut st, Some(Err(err)));
    assert_eq!(next[0].0, m.step);
    assert!(st.failure.is_none());
}

#[test]
fn intent_names_are_deterministic() {
    assert_eq!(intent_name(C, "x/SQLInstance;MSSQLSERVER"), intent_name(&C.to_lowercase(), "x/sqlinstance;mssqlserver"));
    assert_ne!(intent_name(C, "a"), intent_name(C, "b"));
}

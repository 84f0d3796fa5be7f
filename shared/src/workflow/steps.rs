//! The steps of the protect and backup workflows (issue 3 §4), as two pure functions:
//! [`plan`] says which ARM request a step makes, [`decide`] turns the answer into a state change
//! and the next messages, each with its delay. No I/O and no sleeping here: the engine performs
//! the request and stores the outcome; a wait is a delayed message (azure-backup-api.md §3–§5).

use chrono::{DateTime, Duration as TimeDelta, Utc};
use serde_json::{Value, json};
use std::time::Duration;

use super::failure::{Failure, FailureClass};
use super::message::{MESSAGE_VERSION, Step, StepMessage};
use super::select::select;
use super::state::*;
use crate::arm::models::{OpState, OperationStatus};
use crate::arm::{ArmAnswer, ArmError};
use crate::ports::Scheduled;
use crate::resource_id::ResourceId;

/// Tunables the steps read (a subset of the engine's options).
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// `Retry-After` is clamped to [floor, ceiling]; also the default when it is absent.
    pub delay_floor: Duration,
    pub delay_ceiling: Duration,
    /// Interval between job polls (jobs carry no Retry-After).
    pub job_poll_interval: Duration,
    /// Discovery rounds (refresh + look) before "VM not discovered" is final.
    pub discovery_rounds: u32,
    /// Re-triggers after a conflicting-operation failure.
    pub conflict_retries: u32,
    /// Retries of a step after a transient ARM error.
    pub transient_retries: u32,
    /// Compute api-version for reading the VM.
    pub compute_api_version: String,
    pub rules: Rules,
}

/// How a protect request without an explicit vault or policy is resolved (issue 3 §4).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rules {
    /// VM tag naming the policy (default `backup-policy`).
    pub policy_tag: Option<String>,
    /// Policy used when the VM has no such tag.
    pub default_policy: Option<String>,
    /// Candidate vaults: the first in the VM's subscription and region is used.
    pub vaults: Vec<VaultRule>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultRule {
    pub vault_id: String,
    /// Region of the vault (the VM must be in the same region).
    pub location: String,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            delay_floor: Duration::from_secs(2),
            delay_ceiling: Duration::from_secs(300),
            job_poll_interval: Duration::from_secs(30),
            discovery_rounds: 4,
            conflict_retries: 3,
            transient_retries: 8,
            compute_api_version: "2024-07-01".into(),
            rules: Rules::default(),
        }
    }
}

/// What the engine must do for a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Make this ARM request and call [`decide`] with the answer.
    Arm(ArmCall),
    /// No I/O: call [`decide`] with no answer.
    Local,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArmCall {
    pub method: &'static str,
    /// A path (the client adds endpoint and api-version) or a URL the service returned.
    pub url: String,
    pub body: Option<Value>,
    /// False for the backup POST: never retried blindly.
    pub retriable: bool,
}

impl ArmCall {
    fn get(url: String) -> Self {
        ArmCall { method: "GET", url, body: None, retriable: true }
    }
}

/// Context of one step run.
pub struct StepCtx<'a> {
    pub now: DateTime<Utc>,
    pub opts: &'a StepOptions,
    /// How many times this message was delivered (a redelivered trigger is uncertain).
    pub dequeue_count: u32,
}

const WORKLOAD: &str = "backupManagementType eq 'AzureWorkload'";

fn enc(filter: &str) -> String {
    percent_encoding::utf8_percent_encode(filter, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn vault(state: &WorkflowState) -> String {
    match &state.input {
        WorkflowInput::Backup(b) => b.vault_id.clone(),
        WorkflowInput::Protect(p) => p.vault_id.clone().or_else(|| state.target.vault_id.clone()).unwrap_or_default(),
    }
}

fn protect_input(state: &WorkflowState) -> Option<&ProtectInput> {
    match &state.input {
        WorkflowInput::Protect(p) => Some(p),
        _ => None,
    }
}

fn container_path(state: &WorkflowState, container: &str) -> String {
    format!("{}/backupFabrics/Azure/protectionContainers/{}", vault(state), enc_segment(container))
}

/// Percent-encode a path segment (names contain `;` and may contain spaces).
fn enc_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'/').add(b'?').add(b'#').add(b'%').add(b'"');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The ARM request a step makes.
pub fn plan(msg: &StepMessage, state: &WorkflowState, ctx: &StepCtx) -> Plan {
    let v = vault(state);
    let tracked = || msg.tracking_url.clone();
    match &msg.step {
        Step::ResolveTarget => {
            let vm = protect_input(state).map(|p| p.vm_id.clone()).unwrap_or_default();
            Plan::Arm(ArmCall::get(format!("{vm}?api-version={}", ctx.opts.compute_api_version)))
        }
        Step::Refresh { .. } => Plan::Arm(ArmCall {
            method: "POST",
            url: format!("{v}/backupFabrics/Azure/refreshContainers?$filter={}", enc(WORKLOAD)),
            body: None,
            retriable: true,
        }),
        Step::PollRefresh { .. }
        | Step::PollRegister { .. }
        | Step::PollInquire { .. }
        | Step::PollProtect { .. }
        | Step::PollBackup { .. } => Plan::Arm(ArmCall::get(tracked().unwrap_or_default())),
        Step::FindContainer { .. } => Plan::Arm(ArmCall::get(
            tracked().unwrap_or_else(|| format!("{v}/backupFabrics/Azure/protectableContainers?$filter={}", enc(WORKLOAD))),
        )),
        Step::FindRegistered { .. } => {
            Plan::Arm(ArmCall::get(tracked().unwrap_or_else(|| format!("{v}/backupProtectionContainers?$filter={}", enc(WORKLOAD)))))
        }
        Step::Register { container } => {
            let p = protect_input(state);
            let vm = p.map(|p| p.vm_id.clone()).unwrap_or_default();
            let name = ResourceId::parse(&vm).map(|r| r.name).unwrap_or_default();
            let body = json!({ "properties": {
                "containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase",
                "sourceResourceId": vm, "friendlyName": name
            }});
            Plan::Arm(ArmCall { method: "PUT", url: container_path(state, container), body: Some(body), retriable: true })
        }
        Step::VerifyRegistration { container } => Plan::Arm(ArmCall::get(container_path(state, container))),
        Step::Inquire { container } => Plan::Arm(ArmCall {
            method: "POST",
            url: format!("{}/inquire?$filter={}", container_path(state, container), enc("workloadType eq 'SQLDataBase'")),
            body: None,
            retriable: true,
        }),
        Step::ListProtectable { .. } => Plan::Arm(ArmCall::get(tracked().unwrap_or_else(|| {
            format!("{v}/backupProtectableItems?$filter={}", enc(&format!("{WORKLOAD} and workloadType eq 'SQLDataBase'")))
        }))),
        Step::AutoProtect { container, instance_item_id } => {
            let name = intent_name(container, instance_item_id);
            let body = json!({ "properties": {
                "protectionIntentItemType": "AzureWorkloadSQLAutoProtectionIntent", "backupManagementType": "AzureWorkload",
                "itemId": instance_item_id, "policyId": state.target.policy_id.clone().unwrap_or_default(), "workloadItemType": "SQLInstance"
            }});
            Plan::Arm(ArmCall {
                method: "PUT",
                url: format!("{v}/backupFabrics/Azure/backupProtectionIntent/{name}"),
                body: Some(body),
                retriable: true,
            })
        }
        Step::ProtectItem { container, item } => {
            let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": state.target.policy_id.clone().unwrap_or_default() } });
            Plan::Arm(ArmCall {
                method: "PUT",
                url: format!("{}/protectedItems/{}", container_path(state, container), enc_segment(item)),
                body: Some(body),
                retriable: true,
            })
        }
        Step::SelectItems => {
            Plan::Arm(ArmCall::get(tracked().unwrap_or_else(|| {
                format!("{v}/backupProtectedItems?$filter={}", enc(&format!("{WORKLOAD} and itemType eq 'SQLDataBase'")))
            })))
        }
        Step::PrepareTrigger { .. } => Plan::Local,
        // Delivered before: the POST may have reached the service, so `decide` looks for the
        // job instead of sending it again.
        Step::Trigger { .. } if ctx.dequeue_count > 1 => Plan::Local,
        Step::Trigger { container, item } => {
            let (bt, days) = match &state.input {
                WorkflowInput::Backup(b) => (b.backup_type, b.retention_days),
                // An initial backup after protection is a Full kept the minimum 45 days.
                WorkflowInput::Protect(_) => (BackupType::Full, None),
            };
            let mut props = json!({ "objectType": "AzureWorkloadBackupRequest", "backupType": bt.as_str() });
            if let Some(d) = effective_retention_days(bt, days) {
                let until = ctx.now + TimeDelta::days(i64::from(d));
                props["recoveryPointExpiryTimeInUTC"] = json!(until.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            }
            Plan::Arm(ArmCall {
                method: "POST",
                url: format!("{}/protectedItems/{}/backup", container_path(state, container), enc_segment(item)),
                body: Some(json!({ "properties": props })),
                retriable: false,
            })
        }
        Step::CheckJobs { .. } => {
            Plan::Arm(ArmCall::get(format!("{v}/backupJobs?$filter={}", enc(&format!("operation eq 'Backup' and {WORKLOAD}")))))
        }
        Step::PollJob { job_id, .. } => Plan::Arm(ArmCall::get(format!("{v}/backupJobs/{}", enc_segment(job_id)))),
    }
}

/// Retention sent with a backup: Full 45 days unless stated, CopyOnlyFull 30; none for
/// Differential and Log (their retention follows the policy).
pub fn effective_retention_days(bt: BackupType, days: Option<u32>) -> Option<u32> {
    match bt {
        BackupType::Full => Some(days.unwrap_or(45)),
        BackupType::CopyOnlyFull => Some(days.unwrap_or(30)),
        BackupType::Differential | BackupType::Log => None,
    }
}

/// A deterministic protection-intent name: the same instance always gets the same intent, so a
/// repeated request updates it instead of creating another (the CLI uses random names).
pub fn intent_name(container: &str, instance_item_id: &str) -> String {
    // FNV-1a, stable across builds and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in container.to_ascii_lowercase().bytes().chain([0u8]).chain(instance_item_id.to_ascii_lowercase().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("sqlvm-backup-{h:016x}")
}

/// What a polled operation says.
enum Poll {
    Running(Duration),
    Done(Value),
    Failed(Failure),
}

fn clamp(d: Option<Duration>, o: &StepOptions) -> Duration {
    d.unwrap_or(o.delay_floor).clamp(o.delay_floor, o.delay_ceiling)
}

/// Read a poll of either kind of tracking URL: operationResults (202 while running, then 200/204)
/// or operationsStatus (200 with a status).
fn read_poll(a: &ArmAnswer, o: &StepOptions, last: Option<u64>) -> Poll {
    let retry_after = a.retry_after.or(last.map(Duration::from_millis));
    if a.status == 202 {
        return Poll::Running(clamp(retry_after, o));
    }
    if let Some(status) = a.body.get("status").and_then(Value::as_str)
        && a.body.get("properties").and_then(|p| p.get("registrationStatus")).is_none()
    {
        let op: OperationStatus = serde_json::from_value(a.body.clone()).unwrap_or_default();
        return match op.state() {
            OpState::Succeeded => Poll::Done(a.body.clone()),
            OpState::Failed | OpState::Canceled => {
                let (code, message) = op
                    .error
                    .map(|e| (e.code.unwrap_or_else(|| "OperationFailed".into()), e.message.unwrap_or_default()))
                    .unwrap_or(("OperationFailed".into(), format!("The operation ended {status}.")));
                Poll::Failed(Failure::from_code(&code, message, None))
            }
            _ => Poll::Running(clamp(retry_after, o)),
        };
    }
    Poll::Done(a.body.clone())
}

/// The result of [`decide`]: the next messages (the state is changed in place).
pub type Next = Vec<Scheduled>;

fn message(state: &WorkflowState, step: Step, child: Option<usize>, tracking_url: Option<String>, attempt: u32) -> StepMessage {
    let seq = state.steps.len();
    let who = child.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    StepMessage {
        v: MESSAGE_VERSION,
        workflow_id: state.id.clone(),
        step_id: format!("{}/{who}/{}/{seq}", state.id, step.name()),
        step,
        child,
        tracking_url,
        attempt,
        wait_ms: None,
    }
}

fn after(state: &WorkflowState, step: Step, child: Option<usize>, url: Option<String>, attempt: u32, delay: Duration) -> Scheduled {
    let mut m = message(state, step, child, url, attempt);
    // Polls of one operation keep the pace its last Retry-After set.
    if m.tracking_url.is_some() && !delay.is_zero() {
        m.wait_ms = Some(delay.as_millis() as u64);
    }
    Scheduled { message: m, delay }
}

fn now_(state: &WorkflowState, step: Step, child: Option<usize>, url: Option<String>) -> Scheduled {
    after(state, step, child, url, 0, Duration::ZERO)
}

fn fail_workflow(state: &mut WorkflowState, f: Failure) -> Next {
    if state.failure.is_none() {
        state.failure = Some(f);
    }
    vec![]
}

fn fail_child(state: &mut WorkflowState, child: Option<usize>, f: Failure) -> Next {
    match child.and_then(|c| state.children.get_mut(c)) {
        Some(c) => {
            c.status = ChildStatus::Failed { failure: f };
            vec![]
        }
        None => fail_workflow(state, f),
    }
}

fn failure_of(e: &ArmError) -> Failure {
    Failure::from_code(e.code(), e.to_string(), e.status())
}

fn next_link(body: &Value) -> Option<String> {
    body.get("nextLink").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

fn items(body: &Value) -> &[Value] {
    body.get("value").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = cur.get(p).unwrap_or(&Value::Null);
    }
    cur.as_str().unwrap_or_default()
}

/// The container name inside an item id: the segment after `protectionContainers/`.
fn container_of(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let start = lower.find("/protectioncontainers/")? + "/protectioncontainers/".len();
    let rest = &id[start..];
    let end = rest.find('/').unwrap_or(rest.len());
    percent_encoding::percent_decode_str(&rest[..end]).decode_utf8().ok().map(|c| c.into_owned())
}

/// Apply an answer to the state and produce the next messages.
pub fn decide(msg: &StepMessage, state: &mut WorkflowState, answer: Option<&Result<ArmAnswer, ArmError>>, ctx: &StepCtx) -> Next {
    let o = ctx.opts;
    let child = msg.child;
    // Transient errors: the same step again later, a bounded number of times.
    let answer = match answer {
        Some(Err(e)) if e.is_retryable() && msg.attempt < o.transient_retries && !matches!(msg.step, Step::Trigger { .. }) => {
            let delay = clamp(e.retry_after().or(Some(o.delay_floor * 2u32.pow(msg.attempt.min(6)))), o);
            return vec![after(state, msg.step.clone(), child, msg.tracking_url.clone(), msg.attempt + 1, delay)];
        }
        a => a,
    };
    match (msg.step.clone(), answer) {
        // ----- protect -----------------------------------------------------------------
        (Step::ResolveTarget, Some(Ok(a))) => resolve_target(state, &a.body, o),
        (Step::Refresh { round }, Some(Ok(a))) => follow(state, a, o, Step::PollRefresh { round }, Step::FindContainer { round }),
        (Step::PollRefresh { round }, Some(Ok(a))) => match read_poll(a, o, msg.wait_ms) {
            Poll::Running(d) => poll_again(state, msg, d),
            Poll::Done(_) => vec![now_(state, Step::FindContainer { round }, None, None)],
            Poll::Failed(f) => fail_workflow(state, f),
        },
        (Step::FindContainer { round }, Some(Ok(a))) => match (vm_container_in_page(state, &a.body, "containerId"), next_link(&a.body)) {
            (Some(name), _) => vec![now_(state, Step::Register { container: name }, None, None)],
            (None, Some(next)) => vec![now_(state, Step::FindContainer { round }, None, Some(next))],
            (None, None) => vec![now_(state, Step::FindRegistered { round }, None, None)],
        },
        (Step::FindRegistered { round }, Some(Ok(a))) => {
            match (vm_container_in_page(state, &a.body, "sourceResourceId"), next_link(&a.body)) {
                (Some(name), _) => vec![now_(state, Step::VerifyRegistration { container: name }, None, None)],
                (None, Some(next)) => vec![now_(state, Step::FindRegistered { round }, None, Some(next))],
                (None, None) if round + 1 < o.discovery_rounds => {
                    // Not discovered yet: refresh again, backing off between rounds.
                    let delay = clamp(Some(o.delay_floor * 2u32.pow((round + 1).min(8))), o);
                    vec![after(state, Step::Refresh { round: round + 1 }, None, None, 0, delay)]
                }
                (None, None) => fail_workflow(
                    state,
                    Failure {
                        code: "VmNotDiscovered".into(),
                        message: format!(
                            "The vault did not discover {} after {} refreshes.",
                            protect_input(state).map(|p| p.vm_id.as_str()).unwrap_or_default(),
                            o.discovery_rounds
                        ),
                        class: FailureClass::NeedsUserAction,
                        hint: Some("Check that the VM runs Windows with SQL Server, is running, has the VM agent, and is in the vault's subscription and region.".into()),
                        http_status: None,
                    },
                ),
            }
        }
        (Step::Register { container }, Some(Ok(a))) => {
            follow(state, a, o, Step::PollRegister { container: container.clone() }, Step::Inquire { container })
        }
        (Step::Register { container }, Some(Err(e))) if e.code().to_ascii_lowercase().contains("alreadyregistered") => {
            vec![now_(state, Step::VerifyRegistration { container: container.clone() }, None, None)]
        }
        (Step::PollRegister { container }, Some(Ok(a))) => match read_poll(a, o, msg.wait_ms) {
            Poll::Running(d) => poll_again(state, msg, d),
            Poll::Done(_) => vec![now_(state, Step::Inquire { container: container.clone() }, None, None)],
            Poll::Failed(f) => fail_workflow(state, f),
        },
        (Step::VerifyRegistration { container }, Some(Ok(a))) => {
            let reg = s(&a.body, &["properties", "registrationStatus"]);
            if reg.eq_ignore_ascii_case("Registered") {
                vec![now_(state, Step::Inquire { container: container.clone() }, None, None)]
            } else if msg.attempt < o.transient_retries {
                vec![after(state, msg.step.clone(), None, None, msg.attempt + 1, o.delay_floor)]
            } else {
                fail_workflow(
                    state,
                    Failure::local("ContainerNotRegistered", format!("Container {container} stays '{reg}'."), FailureClass::Retryable),
                )
            }
        }
        (Step::Inquire { container }, Some(Ok(a))) => {
            follow(state, a, o, Step::PollInquire { container: container.clone() }, Step::ListProtectable { container })
        }
        (Step::PollInquire { container }, Some(Ok(a))) => match read_poll(a, o, msg.wait_ms) {
            Poll::Running(d) => poll_again(state, msg, d),
            Poll::Done(body) => {
                // operationResults may answer with the container, whose inquiry can have failed.
                let inq = &body["properties"]["extendedInfo"]["inquiryInfo"];
                let status = s(inq, &["status"]);
                if status.eq_ignore_ascii_case("Failed") {
                    let code = s(inq, &["errorDetail", "code"]).to_string();
                    fail_workflow(state, Failure::from_code(&code, s(inq, &["errorDetail", "message"]).to_string(), None))
                } else {
                    vec![now_(state, Step::ListProtectable { container: container.clone() }, None, None)]
                }
            }
            Poll::Failed(f) => fail_workflow(state, f),
        },
        (Step::ListProtectable { container }, Some(Ok(a))) => list_protectable(state, &container, &a.body),
        (Step::AutoProtect { .. }, Some(Ok(_))) => vec![],
        (Step::ProtectItem { container, item }, Some(Ok(a))) => {
            set_child(state, child, |c| c.status = ChildStatus::Running);
            match a.tracking_url() {
                Some(u) if a.status == 202 => {
                    let u = u.to_string();
                    set_child(state, child, |c| c.operation_url = Some(u.clone()));
                    vec![after(
                        state,
                        Step::PollProtect { container: container.clone(), item: item.clone() },
                        child,
                        Some(u),
                        0,
                        clamp(a.retry_after, o),
                    )]
                }
                _ => protected(state, child, &container, &item, None),
            }
        }
        (Step::PollProtect { container, item }, Some(Ok(a))) => match read_poll(a, o, msg.wait_ms) {
            Poll::Running(d) => poll_again(state, msg, d),
            Poll::Done(body) => {
                let job = body["properties"]["jobId"].as_str().map(str::to_string);
                protected(state, child, &container, &item, job)
            }
            Poll::Failed(f) => fail_child(state, child, f),
        },
        // ----- backup ------------------------------------------------------------------
        (Step::SelectItems, Some(Ok(a))) => select_items(state, &a.body),
        (Step::PrepareTrigger { container, item }, None) => {
            let uncertain = child.and_then(|c| state.children.get(c)).is_some_and(|c| c.trigger_sent_at.is_some());
            set_child(state, child, |c| {
                c.status = ChildStatus::Running;
                c.trigger_sent_at = Some(ctx.now);
            });
            let step = if uncertain {
                Step::CheckJobs { container: container.clone(), item: item.clone() }
            } else {
                Step::Trigger { container: container.clone(), item: item.clone() }
            };
            vec![now_(state, step, child, None)]
        }
        (Step::Trigger { container, item }, _) if ctx.dequeue_count > 1 => {
            // This trigger was delivered before: the POST may have reached the service.
            vec![now_(state, Step::CheckJobs { container: container.clone(), item: item.clone() }, child, None)]
        }
        (Step::Trigger { container, item }, Some(Ok(a))) => match a.tracking_url() {
            Some(u) => {
                let u = u.to_string();
                set_child(state, child, |c| c.operation_url = Some(u.clone()));
                vec![after(
                    state,
                    Step::PollBackup { container: container.clone(), item: item.clone() },
                    child,
                    Some(u),
                    0,
                    clamp(a.retry_after, o),
                )]
            }
            None => fail_child(
                state,
                child,
                Failure::local("NoTrackingUrl", "The backup was accepted without a tracking URL.", FailureClass::Permanent),
            ),
        },
        (Step::Trigger { container, item }, Some(Err(e))) if refused_unprocessed(e) && msg.attempt < o.transient_retries => {
            // Throttled or never sent: nothing was started, the same POST may go again.
            vec![after(
                state,
                Step::Trigger { container, item },
                child,
                None,
                msg.attempt + 1,
                clamp(e.retry_after().or(Some(o.delay_floor)), o),
            )]
        }
        (Step::Trigger { container, item }, Some(Err(e))) if uncertain_send(e) => {
            // It may or may not have started a job: look before sending again.
            vec![after(
                state,
                Step::CheckJobs { container: container.clone(), item: item.clone() },
                child,
                None,
                0,
                clamp(e.retry_after(), o),
            )]
        }
        (Step::CheckJobs { container, item }, Some(Ok(a))) => {
            let (friendly, since) =
                child.and_then(|c| state.children.get(c)).map(|c| (c.friendly_name.clone(), c.trigger_sent_at)).unwrap_or_default();
            let needle = format!("/{}", friendly.to_ascii_lowercase());
            let since = since.map(|t| t - TimeDelta::minutes(2));
            let found = items(&a.body).iter().find(|j| {
                let entity = s(j, &["properties", "entityFriendlyName"]).to_ascii_lowercase();
                let started = DateTime::parse_from_rfc3339(s(j, &["properties", "startTime"])).ok().map(|t| t.with_timezone(&Utc));
                (entity.contains(&format!("{needle} ")) || entity.ends_with(&needle))
                    && since.is_none_or(|s0| started.is_some_and(|t| t >= s0))
            });
            match found {
                Some(j) => {
                    let job_id = s(j, &["name"]).to_string();
                    set_child(state, child, |c| c.job_id = Some(job_id.clone()));
                    vec![now_(state, Step::PollJob { container: container.clone(), item: item.clone(), job_id }, child, None)]
                }
                None => vec![now_(state, Step::Trigger { container: container.clone(), item: item.clone() }, child, None)],
            }
        }
        (Step::PollBackup { container, item }, Some(Ok(a))) => match read_poll(a, o, msg.wait_ms) {
            Poll::Running(d) => poll_again(state, msg, d),
            Poll::Done(body) => match body["properties"]["jobId"].as_str() {
                Some(job) => {
                    let job = job.to_string();
                    set_child(state, child, |c| c.job_id = Some(job.clone()));
                    vec![now_(state, Step::PollJob { container: container.clone(), item: item.clone(), job_id: job }, child, None)]
                }
                None => fail_child(
                    state,
                    child,
                    Failure::local("NoJobId", "The backup operation succeeded without naming its job.", FailureClass::Permanent),
                ),
            },
            Poll::Failed(f) => fail_child(state, child, f),
        },
        (Step::PollJob { container, item, job_id }, Some(Ok(a))) => poll_job(state, msg, child, &container, &item, &job_id, &a.body, o),
        // ----- errors ------------------------------------------------------------------
        (_, Some(Err(e))) => {
            let f = failure_of(e);
            if child.is_some() { fail_child(state, child, f) } else { fail_workflow(state, f) }
        }
        (step, _) => fail_workflow(
            state,
            Failure::local("EngineError", format!("step {} got an answer it cannot use", step.name()), FailureClass::Permanent),
        ),
    }
}

/// The service refused the request before doing anything (429, or it never arrived).
fn refused_unprocessed(e: &ArmError) -> bool {
    matches!(e, ArmError::Throttled { .. } | ArmError::Transport { sent: false, .. }) || e.status() == Some(429)
}

/// An accepted request (202): poll its tracking URL after the `Retry-After`. An answer that is
/// already final goes straight on to `then`.
fn follow(state: &WorkflowState, a: &ArmAnswer, o: &StepOptions, poll: Step, then: Step) -> Next {
    match a.tracking_url() {
        Some(u) if a.status == 202 => vec![after(state, poll, None, Some(u.to_string()), 0, clamp(a.retry_after, o))],
        _ => vec![now_(state, then, None, None)],
    }
}

/// The same poll again after `delay`, keeping its URL.
fn poll_again(state: &WorkflowState, msg: &StepMessage, delay: Duration) -> Next {
    vec![after(state, msg.step.clone(), msg.child, msg.tracking_url.clone(), msg.attempt + 1, delay)]
}

/// The name of the container whose `properties.{field}` is this workflow's VM (compared
/// case-insensitively, as ARM ids are), recorded as the workflow's target.
fn vm_container_in_page(state: &mut WorkflowState, body: &Value, field: &str) -> Option<String> {
    let vm = protect_input(state).map(|p| p.vm_id.clone()).unwrap_or_default();
    let name = items(body).iter().find(|c| ResourceId::same(s(c, &["properties", field]), &vm)).map(|c| s(c, &["name"]).to_string())?;
    state.target.container = Some(name.clone());
    Some(name)
}

fn uncertain_send(e: &ArmError) -> bool {
    match e {
        ArmError::Transport { sent, .. } => *sent,
        _ => e.status().is_some_and(|s| s >= 500 || s == 408),
    }
}

fn set_child(state: &mut WorkflowState, child: Option<usize>, f: impl FnOnce(&mut Child)) {
    if let Some(c) = child.and_then(|c| state.children.get_mut(c)) {
        f(c);
    }
}

fn protected(state: &mut WorkflowState, child: Option<usize>, container: &str, item: &str, job: Option<String>) -> Next {
    let initial = protect_input(state).is_some_and(|p| p.initial_full_backup);
    set_child(state, child, |c| {
        c.job_id = job;
        if !initial {
            c.status = ChildStatus::Succeeded;
        }
    });
    if initial {
        // The service names the protected item in its canonical casing; the protectable name
        // is accepted for the POST as well, so the same name is used.
        vec![now_(state, Step::PrepareTrigger { container: container.to_string(), item: item.to_string() }, child, None)]
    } else {
        vec![]
    }
}

fn resolve_target(state: &mut WorkflowState, vm: &Value, o: &StepOptions) -> Next {
    let Some(p) = protect_input(state).cloned() else { return vec![] };
    let prov = s(vm, &["properties", "provisioningState"]);
    if !prov.is_empty() && !prov.eq_ignore_ascii_case("Succeeded") {
        return fail_workflow(
            state,
            Failure::local("VmNotReady", format!("The VM is '{prov}', not 'Succeeded'."), FailureClass::Retryable),
        );
    }
    let location = s(vm, &["location"]).to_string();
    let sub = ResourceId::parse(&p.vm_id).map(|r| r.subscription).unwrap_or_default();
    let vault_id = p.vault_id.clone().or_else(|| {
        o.rules
            .vaults
            .iter()
            .find(|r| {
                r.location.eq_ignore_ascii_case(&location)
                    && ResourceId::parse(&r.vault_id).is_ok_and(|v| v.subscription.eq_ignore_ascii_case(&sub))
            })
            .map(|r| r.vault_id.clone())
    });
    let Some(vault_id) = vault_id else {
        return fail_workflow(
            state,
            Failure {
                code: "NoVaultForVm".into(),
                message: format!("No configured vault is in the VM's subscription {sub} and region {location}."),
                class: FailureClass::NeedsUserAction,
                hint: Some("Add a vault rule for this subscription and region, or pass vaultId.".into()),
                http_status: None,
            },
        );
    };
    let tag = o.rules.policy_tag.clone().unwrap_or_else(|| "backup-policy".into());
    let from_tag = vm
        .get("tags")
        .and_then(Value::as_object)
        .and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case(&tag)).and_then(|(_, v)| v.as_str().map(str::to_string)));
    let Some(policy) = p.policy.clone().or(from_tag).or_else(|| o.rules.default_policy.clone()) else {
        return fail_workflow(
            state,
            Failure {
                code: "NoPolicyForVm".into(),
                message: format!("The VM has no '{tag}' tag and no default policy is configured."),
                class: FailureClass::NeedsUserAction,
                hint: Some(format!("Tag the VM with {tag}=<policy name>, or pass policy.")),
                http_status: None,
            },
        );
    };
    state.target.policy_id = Some(format!("{vault_id}/backupPolicies/{policy}"));
    state.target.vault_id = Some(vault_id);
    vec![now_(state, Step::Refresh { round: 0 }, None, None)]
}

fn list_protectable(state: &mut WorkflowState, container: &str, body: &Value) -> Next {
    let Some(p) = protect_input(state).cloned() else { return vec![] };
    let mut next = Vec::new();
    for it in items(body) {
        let in_container = container_of(s(it, &["id"])).is_some_and(|c| c.eq_ignore_ascii_case(container));
        if !in_container {
            continue;
        }
        let kind = s(it, &["properties", "protectableItemType"]);
        let name = s(it, &["name"]).to_string();
        if kind.eq_ignore_ascii_case("SQLInstance") && p.auto_protect {
            let id = s(it, &["id"]).to_string();
            next.push(now_(state, Step::AutoProtect { container: container.to_string(), instance_item_id: id }, None, None));
            continue;
        }
        if !kind.eq_ignore_ascii_case("SQLDataBase") {
            continue;
        }
        if state.children.iter().any(|c| c.item.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let friendly = s(it, &["properties", "friendlyName"]).to_string();
        let status = match select(&p.databases, &friendly) {
            Err(reason) => ChildStatus::Skipped { reason },
            Ok(()) if s(it, &["properties", "protectionState"]).eq_ignore_ascii_case("Protected") => {
                ChildStatus::Skipped { reason: "already protected".into() }
            }
            Ok(()) => ChildStatus::Pending,
        };
        state.children.push(Child {
            container: container.to_string(),
            item: name,
            friendly_name: friendly,
            status,
            operation_url: None,
            job_id: None,
            job_status: None,
            trigger_sent_at: None,
        });
    }
    if let Some(link) = next_link(body) {
        next.push(now_(state, Step::ListProtectable { container: container.to_string() }, None, Some(link)));
        return next;
    }
    fan_out(state, &mut next, |c| Step::ProtectItem { container: c.container.clone(), item: c.item.clone() });
    if state.children.is_empty()
        && let Some(r) = state.steps.last_mut()
    {
        r.note = Some("no databases found in the container".into());
    }
    next
}

fn fan_out(state: &WorkflowState, next: &mut Next, step: impl Fn(&Child) -> Step) {
    for (i, c) in state.children.iter().enumerate() {
        if c.status == ChildStatus::Pending {
            next.push(now_(state, step(c), Some(i), None));
        }
    }
}

fn select_items(state: &mut WorkflowState, body: &Value) -> Next {
    let WorkflowInput::Backup(b) = state.input.clone() else { return vec![] };
    for it in items(body) {
        let name = s(it, &["name"]).to_string();
        let Some(container) =
            container_of(s(it, &["id"])).or_else(|| Some(s(it, &["properties", "containerName"]).to_string()).filter(|c| !c.is_empty()))
        else {
            continue;
        };
        let friendly = s(it, &["properties", "friendlyName"]).to_string();
        let explicit = !b.items.is_empty();
        if explicit && !b.items.iter().any(|r| r.item.eq_ignore_ascii_case(&name) && r.container.eq_ignore_ascii_case(&container)) {
            continue;
        }
        if !explicit {
            let host = s(it, &["properties", "serverName"]).split('.').next().unwrap_or_default().to_string();
            let vm = container.rsplit(';').next().unwrap_or_default().to_string();
            if !b.vms.is_empty() && !b.vms.iter().any(|p| super::select::glob(p, &vm) || super::select::glob(p, &host)) {
                continue;
            }
            if select(&b.databases, &friendly).is_err() {
                continue;
            }
        }
        if state.children.iter().any(|c| c.item.eq_ignore_ascii_case(&name) && c.container.eq_ignore_ascii_case(&container)) {
            continue;
        }
        let st = s(it, &["properties", "protectionState"]);
        let status = if st.eq_ignore_ascii_case("ProtectionStopped") || st.eq_ignore_ascii_case("BackupsSuspended") {
            ChildStatus::Skipped { reason: format!("protection is {st}") }
        } else if matches!(b.backup_type, BackupType::Differential | BackupType::Log)
            && (st.eq_ignore_ascii_case("IRPending") || s(it, &["properties", "lastBackupStatus"]).eq_ignore_ascii_case("IRPending"))
        {
            ChildStatus::Skipped { reason: format!("no Full backup yet: a {} backup needs one first", b.backup_type.as_str()) }
        } else {
            ChildStatus::Pending
        };
        state.children.push(Child {
            container,
            item: name,
            friendly_name: friendly,
            status,
            operation_url: None,
            job_id: None,
            job_status: None,
            trigger_sent_at: None,
        });
    }
    let mut next = Vec::new();
    if let Some(link) = next_link(body) {
        next.push(now_(state, Step::SelectItems, None, Some(link)));
        return next;
    }
    // Explicit items the vault does not have.
    for r in &b.items {
        if !state.children.iter().any(|c| c.item.eq_ignore_ascii_case(&r.item) && c.container.eq_ignore_ascii_case(&r.container)) {
            state.children.push(Child {
                container: r.container.clone(),
                item: r.item.clone(),
                friendly_name: r.item.rsplit(';').next().unwrap_or_default().to_string(),
                status: ChildStatus::Failed {
                    failure: Failure::local(
                        "ItemNotProtected",
                        format!("{} is not a protected item of this vault.", r.item),
                        FailureClass::Permanent,
                    ),
                },
                operation_url: None,
                job_id: None,
                job_status: None,
                trigger_sent_at: None,
            });
        }
    }
    if state.children.is_empty() {
        return fail_workflow(
            state,
            Failure {
                code: "NothingSelected".into(),
                message: "No protected SQL database of the vault matches the selection.".into(),
                class: FailureClass::NeedsUserAction,
                hint: Some("Protect the databases first, or widen the items, databases or vms selection.".into()),
                http_status: None,
            },
        );
    }
    fan_out(state, &mut next, |c| Step::PrepareTrigger { container: c.container.clone(), item: c.item.clone() });
    next
}

#[allow(clippy::too_many_arguments)]
fn poll_job(
    state: &mut WorkflowState,
    msg: &StepMessage,
    child: Option<usize>,
    container: &str,
    item: &str,
    job_id: &str,
    body: &Value,
    o: &StepOptions,
) -> Next {
    let status = s(body, &["properties", "status"]).to_string();
    let terminal =
        ["Completed", "CompletedWithWarnings", "Failed", "Cancelled", "Canceled"].iter().any(|t| t.eq_ignore_ascii_case(&status));
    if !terminal {
        return vec![after(state, msg.step.clone(), child, None, msg.attempt + 1, o.job_poll_interval)];
    }
    set_child(state, child, |c| c.job_status = Some(status.clone()));
    if status.eq_ignore_ascii_case("Completed") || status.eq_ignore_ascii_case("CompletedWithWarnings") {
        set_child(state, child, |c| c.status = ChildStatus::Succeeded);
        return vec![];
    }
    let err = body["properties"]["errorDetails"].as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null);
    let code = Some(s(&err, &["errorTitle"]).to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| if status.to_ascii_lowercase().starts_with("cancel") { "JobCancelled".into() } else { "JobFailed".into() });
    let message = Some(s(&err, &["errorString"]).to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("Backup job {job_id} ended {status}."));
    let failure = Failure::from_code(&code, message, None);
    let retries = state.steps.iter().filter(|r| r.child == child && r.note.as_deref() == Some("conflict: re-trigger")).count() as u32;
    if failure.class == FailureClass::Retryable && retries < o.conflict_retries {
        // Another operation held the database: try again later from a clean slate.
        set_child(state, child, |c| {
            c.trigger_sent_at = None;
            c.operation_url = None;
            c.job_id = None;
            c.job_status = None;
        });
        if let Some(r) = state.steps.last_mut() {
            r.note = Some("conflict: re-trigger".into());
        }
        let delay = clamp(Some(o.delay_floor * 4), o);
        return vec![after(
            state,
            Step::PrepareTrigger { container: container.to_string(), item: item.to_string() },
            child,
            None,
            0,
            delay,
        )];
    }
    fail_child(state, child, failure)
}

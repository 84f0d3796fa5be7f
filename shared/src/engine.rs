//! The engine: runs one delivered step message against a [`Backend`] and the ARM client.
//!
//! The flow of one step (docs/ARCHITECTURE.md): load the workflow → skip duplicates and ended
//! workflows → check deadline and poll budget → [`steps::plan`] → one ARM call → record the step
//! → [`steps::decide`] → commit state + next messages + acknowledgement as one unit. A commit
//! that loses a race reloads the state and decides again with the same answer, so a race never
//! repeats an ARM call. Nothing here sleeps on an operation: waits are delayed messages.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::arm::{ArmAnswer, ArmClient, ArmError, ArmRequest};
use crate::ports::{Backend, BackendError, Commit, Delivery, Scheduled, Versioned};
use crate::resource_id::ResourceId;
use crate::workflow::failure::{Failure, FailureClass};
use crate::workflow::message::{MESSAGE_VERSION, Step, StepMessage};
use crate::workflow::state::*;
use crate::workflow::steps::{self, Plan, StepCtx, StepOptions};

/// Engine settings; every default is in `Default`.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub steps: StepOptions,
    /// A workflow fails with `DeadlineExceeded` this long after it started (default 24 h).
    pub deadline: Duration,
    /// ARM calls one workflow may make (default 5000).
    pub poll_budget: u32,
    /// Deliveries of one message before it is poisoned (default 8).
    pub max_deliveries: u32,
    /// Lease on a received message (default 5 min).
    pub lease: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            steps: StepOptions::default(),
            deadline: Duration::from_secs(24 * 3600),
            poll_budget: 5000,
            max_deliveries: 8,
            lease: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: String,
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid request: {}", .0.message)]
    Invalid(Failure),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What running one delivery did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        step: &'static str,
        sent: usize,
    },
    Duplicate,
    /// Another copy of this message is making the step's one-time call: given back to run
    /// after it.
    Deferred,
    WorkflowEnded,
    Poisoned(String),
}

pub struct Engine {
    backend: Arc<dyn Backend>,
    arm: ArmClient,
    opts: EngineOptions,
    /// One step at a time per workflow in this process: children of one workflow then never
    /// race for its state (other processes are handled by versioned commits).
    running: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The state this process last committed for each workflow, with its version: the next
    /// step usually runs here, and then needs no read. A stale entry (another process wrote
    /// since) makes the commit conflict, and the state is then read from the backend.
    cache: Mutex<HashMap<String, Versioned<WorkflowState>>>,
}

/// Entries kept in the state cache before it is emptied.
const CACHE_LIMIT: usize = 10_000;

/// How long the claim that a step's non-idempotent call was made is kept: far beyond any
/// redelivery of that step.
const ONCE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a second copy of such a step waits for the first to be applied: longer than the
/// call and the commit take.
const ONCE_WAIT: Duration = Duration::from_secs(60);

fn bad(code: &str, message: impl Into<String>) -> SubmitError {
    SubmitError::Invalid(Failure::local(code, message, FailureClass::Permanent))
}

/// Check a request before anything is sent (resource ids, retention rules).
pub fn validate(input: &WorkflowInput) -> Result<(), SubmitError> {
    match input {
        WorkflowInput::Protect(p) => {
            ResourceId::parse_vm(&p.vm_id).map_err(|e| bad("InvalidVmId", e.to_string()))?;
            if let Some(v) = &p.vault_id {
                ResourceId::parse_vault(v).map_err(|e| bad("InvalidVaultId", e.to_string()))?;
            }
            if let Some(pol) = &p.policy
                && (pol.is_empty() || pol.contains(['/', '?', '#']))
            {
                return Err(bad("InvalidPolicy", "policy is a policy name of the vault, not an id"));
            }
        }
        WorkflowInput::Backup(b) => {
            ResourceId::parse_vault(&b.vault_id).map_err(|e| bad("InvalidVaultId", e.to_string()))?;
            match (b.backup_type, b.retention_days) {
                (BackupType::Full, Some(d)) if !(45..=36135).contains(&d) => {
                    return Err(bad(
                        "InvalidRetention",
                        format!("an on-demand Full backup is kept 45 days to 99 years (36135 days), not {d}"),
                    ));
                }
                (BackupType::CopyOnlyFull, Some(0)) => return Err(bad("InvalidRetention", "retentionDays must be at least 1")),
                (BackupType::Differential | BackupType::Log, Some(_)) => {
                    return Err(bad(
                        "RetentionNotAllowed",
                        format!("{} backups are kept as the policy says; omit retentionDays", b.backup_type.as_str()),
                    ));
                }
                _ => {}
            }
            for i in &b.items {
                if i.container.is_empty() || i.item.is_empty() || i.item.contains('/') || i.container.contains('/') {
                    return Err(bad("InvalidItem", "items need the container and protected-item names the service returned"));
                }
            }
        }
    }
    Ok(())
}

/// The first step of a new workflow.
fn first_step(input: &WorkflowInput) -> Step {
    match input {
        WorkflowInput::Protect(p) if p.vault_id.is_some() && p.policy.is_some() => Step::Refresh { round: 0 },
        WorkflowInput::Protect(_) => Step::ResolveTarget,
        WorkflowInput::Backup(_) => Step::SelectItems,
    }
}

/// A workflow id: random, or derived from an idempotency key so a repeated submit finds the
/// first one.
pub fn workflow_id(kind: WorkflowKind, key: Option<&str>) -> String {
    let prefix = kind.as_str();
    match key {
        Some(k) => {
            // SHA-256, not a fast hash: a caller must not be able to aim a key at another
            // caller's workflow id.
            use sha2::Digest;
            let digest = sha2::Sha256::digest(k.as_bytes());
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("{prefix}-k{hex}")
        }
        None => format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
    }
}

impl Engine {
    pub fn new(backend: Arc<dyn Backend>, arm: ArmClient, opts: EngineOptions) -> Engine {
        Engine { backend, arm, opts, running: Mutex::new(HashMap::new()), cache: Mutex::new(HashMap::new()) }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Validate and start a workflow.
    pub async fn submit(&self, input: WorkflowInput, origin: &str, key: Option<&str>) -> Result<Submitted, SubmitError> {
        validate(&input)?;
        let now = Utc::now();
        let kind = match input {
            WorkflowInput::Protect(_) => WorkflowKind::Protect,
            WorkflowInput::Backup(_) => WorkflowKind::Backup,
        };
        let id = workflow_id(kind, key);
        let mut target = Target::default();
        if let WorkflowInput::Protect(p) = &input
            && let (Some(v), Some(pol)) = (&p.vault_id, &p.policy)
        {
            target.vault_id = Some(v.clone());
            target.policy_id = Some(format!("{v}/backupPolicies/{pol}"));
        }
        let step = first_step(&input);
        let mut state = WorkflowState {
            id: id.clone(),
            kind,
            input,
            status: WorkflowStatus::Running,
            created_at: now,
            updated_at: now,
            deadline: now + chrono::Duration::from_std(self.opts.deadline).unwrap_or(chrono::Duration::days(1)),
            polls: 0,
            poll_budget: self.opts.poll_budget,
            origin: origin.to_string(),
            target,
            steps: vec![],
            children: vec![],
            failure: None,
            done_steps: Default::default(),
            outbox: Default::default(),
            open: 1,
        };
        let first = StepMessage {
            v: MESSAGE_VERSION,
            workflow_id: id.clone(),
            step_id: format!("{id}/-/{}/start", step.name()),
            step,
            child: None,
            tracking_url: None,
            attempt: 0,
            wait_ms: None,
        };
        state.updated_at = now;
        let atomic = self.backend.atomic_commit();
        if !atomic {
            state.outbox.insert(SUBMIT_OUTBOX_KEY.to_string(), vec![OutboxMessage { message: first.clone(), delay_ms: 0 }]);
        }
        let created = self.backend.start(&state, vec![Scheduled { message: first, delay: Duration::ZERO }]).await?;
        if !created && !atomic {
            self.resend_unsent_start(&id).await?;
        }
        tracing::info!(workflow_id = %id, created, origin, "workflow submitted");
        Ok(Submitted { id, created })
    }

    /// A repeated submit of a workflow whose first step never ran: the first start may have
    /// stored the state and died before sending, so send the first message again (a duplicate
    /// is recognised by its step id).
    async fn resend_unsent_start(&self, id: &str) -> Result<(), BackendError> {
        for _ in 0..4 {
            let Some(loaded) = self.backend.load(id).await? else { return Ok(()) };
            let next = resend(&loaded.value, SUBMIT_OUTBOX_KEY);
            if next.is_empty() || loaded.value.status.is_terminal() {
                return Ok(());
            }
            let commit = Commit { state: loaded.value, expected_version: loaded.version, next, ack: None, durable: false };
            match self.backend.commit(commit).await {
                Err(BackendError::Conflict) => continue,
                other => return other.map(|_| ()),
            }
        }
        Ok(())
    }

    fn lock_for(&self, workflow_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, m| Arc::strong_count(m) > 1);
        }
        map.entry(workflow_id.to_string()).or_default().clone()
    }

    /// Run one delivered message: the whole flow of one step.
    pub async fn run_delivery(&self, d: Delivery) -> Result<Outcome, EngineError> {
        let lock = self.lock_for(&d.message.workflow_id);
        let _guard = lock.lock().await;
        let msg = d.message.clone();
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(&msg.workflow_id);
        let loaded = match cached {
            Some(v) => Some(v),
            None => self.backend.load(&msg.workflow_id).await?,
        };
        let Some(loaded) = loaded else {
            let reason = format!("no workflow {}", msg.workflow_id);
            self.backend.poison(&d.receipt, &reason).await?;
            return Ok(Outcome::Poisoned(reason));
        };
        let atomic = self.backend.atomic_commit();
        if loaded.value.status.is_terminal() || loaded.value.done_steps.contains(&msg.step_id) {
            let outcome = if loaded.value.status.is_terminal() { Outcome::WorkflowEnded } else { Outcome::Duplicate };
            self.commit_with_retry(loaded, &msg, &d, |st| (st.clone(), already_applied(st, &msg.step_id, atomic).unwrap_or_default()))
                .await?;
            return Ok(outcome);
        }
        let now = Utc::now();
        let mut ctx = StepCtx { now, opts: &self.opts.steps, dequeue_count: d.dequeue_count };
        // Deadline and budget end the workflow before any further ARM call.
        let stop = if now > loaded.value.deadline {
            Some(Failure::local("DeadlineExceeded", "The workflow ran past its deadline.", FailureClass::Permanent))
        } else if loaded.value.polls >= loaded.value.poll_budget {
            Some(Failure::local(
                "PollBudgetExhausted",
                format!("The workflow used its {} ARM calls.", loaded.value.poll_budget),
                FailureClass::Permanent,
            ))
        } else {
            None
        };
        let mut plan = steps::plan(&msg, &loaded.value, &ctx);
        if let (None, Plan::Arm(call)) = (&stop, &plan)
            && !call.retriable
            && !self.backend.claim(&format!("once:{}", msg.step_id), ONCE_TTL, now).await?
        {
            // Another copy of this message sent (or is sending) the call: two copies can be in
            // flight at once when a step's outbox was sent again after a crash. Give the other
            // copy time to finish (this one is then a duplicate); if it is still not applied
            // after that, it died, and this copy acts as a redelivery: it looks for what the
            // other did instead of calling again.
            if self.backend.claim(&format!("once-wait:{}", msg.step_id), ONCE_TTL, now).await? {
                self.backend.release(&d.receipt, ONCE_WAIT).await?;
                return Ok(Outcome::Deferred);
            }
            ctx.dequeue_count = ctx.dequeue_count.max(2);
            plan = steps::plan(&msg, &loaded.value, &ctx);
        }
        let answer = match (&stop, plan) {
            (Some(_), _) | (None, Plan::Local) => None,
            (None, Plan::Arm(call)) => {
                let mut req = match call.method {
                    "PUT" => ArmRequest::put(&call.url, call.body.unwrap_or_default()),
                    "POST" => ArmRequest::post(&call.url, call.body),
                    "DELETE" => ArmRequest::delete(&call.url),
                    _ => ArmRequest::get(&call.url),
                };
                if !call.retriable {
                    req = req.not_retriable();
                }
                Some(self.arm.send(req).await)
            }
        };
        let step_name = msg.step.name();
        let sent = std::sync::atomic::AtomicUsize::new(0);
        let decide = |state: &WorkflowState| -> (WorkflowState, Vec<Scheduled>) {
            // Someone applied this step (or ended the workflow) while we raced; or our own
            // write landed and only its answer was lost (a retried conditional write fails).
            if let Some(again) = already_applied(state, &msg.step_id, atomic) {
                return (state.clone(), again);
            }
            let mut st = state.clone();
            st.updated_at = now;
            if answer.is_some() {
                st.polls += 1;
            }
            st.done_steps.insert(msg.step_id.clone());
            st.steps.push(record(&msg, answer.as_ref(), now));
            let next = match &stop {
                Some(f) => {
                    st.failure.get_or_insert(f.clone());
                    vec![]
                }
                None => steps::decide(&msg, &mut st, answer.as_ref(), &ctx),
            };
            st.open = (st.open + next.len() as u32).saturating_sub(1);
            if !atomic {
                track_outbox(&mut st, &msg.step_id, &next);
            }
            finish_if_done(&mut st);
            sent.store(next.len(), std::sync::atomic::Ordering::Relaxed);
            (st, next)
        };
        self.commit_with_retry(loaded, &msg, &d, decide).await?;
        Ok(Outcome::Applied { step: step_name, sent: sent.load(std::sync::atomic::Ordering::Relaxed) })
    }

    /// Commit the state `apply` builds from the stored one; on a lost race, reload and apply
    /// again (the ARM answer is reused, never re-fetched).
    async fn commit_with_retry(
        &self,
        mut loaded: Versioned<WorkflowState>,
        msg: &StepMessage,
        d: &Delivery,
        apply: impl Fn(&WorkflowState) -> (WorkflowState, Vec<Scheduled>),
    ) -> Result<(), EngineError> {
        for _ in 0..8 {
            let (state, next) = apply(&loaded.value);
            // The write-ahead marker of a backup POST must survive even a power loss.
            let durable = next.iter().any(|n| matches!(n.message.step, Step::Trigger { .. }));
            let committed = state.clone();
            let commit = Commit { state, expected_version: loaded.version.clone(), next, ack: Some(d.receipt.clone()), durable };
            match self.backend.commit(commit).await {
                Ok(version) => {
                    self.remember(committed, version);
                    return Ok(());
                }
                Err(BackendError::Conflict) => match self.backend.load(&msg.workflow_id).await? {
                    Some(l) => loaded = l,
                    None => return Ok(()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        // Give the message back; it will run again later.
        self.backend.release(&d.receipt, Duration::from_secs(1)).await?;
        Ok(())
    }

    /// Keep the state just committed with the version the backend gave it.
    fn remember(&self, state: WorkflowState, version: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        if state.status.is_terminal() {
            cache.remove(&state.id);
        } else {
            cache.insert(state.id.clone(), Versioned { value: state, version });
        }
    }

    /// Run a delivery; on an engine error give the message back with a back-off, and on the
    /// last allowed delivery record the workflow as failed before poisoning the message.
    pub async fn run_or_give_back(&self, d: Delivery) -> Result<Outcome, EngineError> {
        let receipt = d.receipt.clone();
        let count = d.dequeue_count;
        let wf = d.message.workflow_id.clone();
        match self.run_delivery(d).await {
            Ok(o) => Ok(o),
            Err(e) if count >= self.opts.max_deliveries => {
                let reason = format!("gave up after {count} deliveries: {e}");
                self.fail_workflow(&wf, Failure::local("StepFailedRepeatedly", reason.clone(), FailureClass::Retryable)).await;
                self.backend.poison(&receipt, &reason).await?;
                Ok(Outcome::Poisoned(reason))
            }
            Err(e) => {
                tracing::warn!(workflow_id = %wf, error = %e, "step failed; message given back");
                let delay = Duration::from_secs(2u64.saturating_pow(count.min(8)));
                self.backend.release(&receipt, delay).await?;
                Err(e)
            }
        }
    }

    /// Mark a workflow failed (used before a message is poisoned).
    pub async fn fail_workflow(&self, workflow_id: &str, failure: Failure) {
        for _ in 0..5 {
            let Ok(Some(loaded)) = self.backend.load(workflow_id).await else { return };
            if loaded.value.status.is_terminal() {
                return;
            }
            let mut st = loaded.value.clone();
            st.failure.get_or_insert(failure.clone());
            st.status = WorkflowStatus::Failed;
            st.outbox.clear();
            st.updated_at = Utc::now();
            let c = Commit { state: st, expected_version: loaded.version, next: vec![], ack: None, durable: true };
            if self.backend.commit(c).await.is_ok() {
                return;
            }
        }
    }
}

/// The history entry of a step.
fn record(msg: &StepMessage, answer: Option<&Result<ArmAnswer, ArmError>>, now: DateTime<Utc>) -> StepRecord {
    let op_id = |u: &str| u.split('?').next().and_then(|p| p.rsplit('/').next()).map(str::to_string);
    let (http_status, operation_id, job_id, note) = match answer {
        Some(Ok(a)) => {
            let tracked = a.tracking_url().map(str::to_string).or_else(|| msg.tracking_url.clone());
            let is_op = tracked.as_deref().is_some_and(|u| {
                let l = u.to_ascii_lowercase();
                l.contains("/operationresults/") || l.contains("/operationsstatus/") || l.contains("/backupoperations/")
            });
            let job = a.body.get("properties").and_then(|p| p.get("jobId")).and_then(|j| j.as_str()).map(str::to_string).or_else(|| {
                match &msg.step {
                    Step::PollJob { job_id, .. } => Some(job_id.clone()),
                    _ => None,
                }
            });
            (Some(a.status), if is_op { tracked.as_deref().and_then(op_id) } else { None }, job, None)
        }
        Some(Err(e)) => (e.status(), None, None, Some(format!("{}: {}", e.code(), e))),
        None => (None, None, None, None),
    };
    StepRecord { step: msg.step.name().to_string(), child: msg.child, at: now, http_status, operation_id, job_id, note }
}

/// `None` while step `step_id` still has to run. Otherwise it is applied (or the workflow has
/// ended) and the result is what to send again: on a non-atomic backend what the step sent may
/// never have left (a partial commit, or a write whose answer was lost), so its outbox goes out
/// again; duplicates are dropped by step id.
fn already_applied(st: &WorkflowState, step_id: &str, atomic: bool) -> Option<Vec<Scheduled>> {
    if st.status.is_terminal() {
        return Some(vec![]);
    }
    if !st.done_steps.contains(step_id) {
        return None;
    }
    Some(if atomic { vec![] } else { resend(st, step_id) })
}

/// The messages `sender` sent that have not been applied yet, to send again.
fn resend(st: &WorkflowState, sender: &str) -> Vec<Scheduled> {
    let Some(sent) = st.outbox.get(sender) else { return vec![] };
    sent.iter()
        .filter(|m| !st.done_steps.contains(&m.message.step_id))
        .map(|m| Scheduled { message: m.message.clone(), delay: Duration::from_millis(m.delay_ms) })
        .collect()
}

/// Step `applied` has been applied: it leaves the outbox entry that sent it, and what it sends
/// now becomes its own entry.
fn track_outbox(st: &mut WorkflowState, applied: &str, sent: &[Scheduled]) {
    st.outbox.retain(|_, msgs| {
        msgs.retain(|m| m.message.step_id != applied);
        !msgs.is_empty()
    });
    if !sent.is_empty() {
        let entry = sent.iter().map(|s| OutboxMessage { message: s.message.clone(), delay_ms: s.delay.as_millis() as u64 }).collect();
        st.outbox.insert(applied.to_string(), entry);
    }
}

/// When nothing is in flight, the workflow has ended: decide how.
fn finish_if_done(st: &mut WorkflowState) {
    let parent_failed = st.failure.is_some();
    if st.open > 0 && !(parent_failed && st.children.iter().all(|c| c.status.is_terminal())) {
        return;
    }
    let failed = st.children.iter().filter(|c| matches!(c.status, ChildStatus::Failed { .. })).count();
    let ok = st.children.iter().filter(|c| matches!(c.status, ChildStatus::Succeeded)).count();
    for c in st.children.iter_mut().filter(|c| !c.status.is_terminal()) {
        c.status = ChildStatus::Failed {
            failure: Failure::local("Abandoned", "The workflow ended before this database's work did.", FailureClass::Permanent),
        };
    }
    st.outbox.clear();
    st.status = match (failed, ok) {
        _ if parent_failed => WorkflowStatus::Failed,
        (0, _) => WorkflowStatus::Succeeded,
        (_, 0) => WorkflowStatus::Failed,
        _ => WorkflowStatus::PartiallySucceeded,
    };
}

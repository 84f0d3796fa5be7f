//! A workflow's durable state: its input, where it stands, the history of its steps (with the
//! ARM operation and job ids), and each child's outcome. Stored by a `Backend` between steps.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::failure::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkflowKind {
    Protect,
    Backup,
}

impl WorkflowKind {
    /// The serialised name, also the prefix of workflow ids and the stores' `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKind::Protect => "protect",
            WorkflowKind::Backup => "backup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WorkflowStatus {
    Running,
    Succeeded,
    /// Every child ended, some failed.
    PartiallySucceeded,
    Failed,
}

impl WorkflowStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, WorkflowStatus::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Succeeded => "succeeded",
            WorkflowStatus::PartiallySucceeded => "partiallySucceeded",
            WorkflowStatus::Failed => "failed",
        }
    }
}

/// Which databases a workflow acts on, by name pattern (`*` wildcards, case-insensitive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseFilter {
    /// Database names to include (all when empty).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Include master, model, msdb (excluded by default).
    #[serde(default)]
    pub include_system: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectInput {
    /// ARM id of the VM.
    pub vm_id: String,
    /// ARM id of the vault; resolved from rules when absent.
    #[serde(default)]
    pub vault_id: Option<String>,
    /// Policy name in the vault; resolved from rules when absent.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub databases: DatabaseFilter,
    /// Also turn on auto-protection of each SQL instance (protection intent).
    #[serde(default)]
    pub auto_protect: bool,
    /// Take a Full backup of each newly protected database.
    #[serde(default)]
    pub initial_full_backup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupType {
    Full,
    Differential,
    Log,
    CopyOnlyFull,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "Full",
            BackupType::Differential => "Differential",
            BackupType::Log => "Log",
            BackupType::CopyOnlyFull => "CopyOnlyFull",
        }
    }
}

/// One item named explicitly: container and protected-item names as the service returned them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRef {
    pub container: String,
    pub item: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupInput {
    pub vault_id: String,
    /// Explicit items; when empty, every protected SQL database matching `databases`.
    #[serde(default)]
    pub items: Vec<ItemRef>,
    #[serde(default)]
    pub databases: DatabaseFilter,
    /// Only items of VMs whose name matches one of these patterns (all when empty).
    #[serde(default)]
    pub vms: Vec<String>,
    pub backup_type: BackupType,
    /// Retention in days for Full (45..=36135) and CopyOnlyFull (1..); must be absent for
    /// Differential and Log, whose retention follows the policy.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum WorkflowInput {
    Protect(ProtectInput),
    Backup(BackupInput),
}

/// What the protect workflow resolved as it went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ChildStatus {
    Pending,
    Running,
    Succeeded,
    Failed { failure: Failure },
    Skipped { reason: String },
}

impl ChildStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, ChildStatus::Succeeded | ChildStatus::Failed { .. } | ChildStatus::Skipped { .. })
    }
}

/// One database's part of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Child {
    pub container: String,
    pub item: String,
    /// Database name as the service shows it.
    pub friendly_name: String,
    pub status: ChildStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Final job status (`Completed`, `Failed` ...), when there is a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    /// Set just before a backup POST is sent: after a crash, the job is looked for instead of
    /// sending a second POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_sent_at: Option<DateTime<Utc>>,
}

/// One step as it happened, for the status API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<usize>,
    pub at: DateTime<Utc>,
    /// HTTP status of the ARM answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Operation id (last segment of the tracking URL) when the step started or followed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowState {
    pub id: String,
    pub kind: WorkflowKind,
    pub input: WorkflowInput,
    pub status: WorkflowStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// After this the workflow fails with `DeadlineExceeded`.
    pub deadline: DateTime<Utc>,
    /// ARM polls spent, against `poll_budget`.
    pub polls: u32,
    pub poll_budget: u32,
    /// Who asked for it (API caller, schedule, event), for the status API.
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub target: Target,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub children: Vec<Child>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Step ids already applied: a redelivered duplicate is acknowledged and ignored.
    #[serde(default)]
    pub done_steps: BTreeSet<String>,
    /// Step messages in flight (parent chain plus each child's chain). Each applied step consumes
    /// one and adds the messages it sends; the workflow ends when none is left.
    #[serde(default)]
    pub open: u32,
    /// Messages sent by applied steps and not applied yet themselves, keyed by the step that sent
    /// them (`submit` for the first one). Kept only on backends whose commit is not one atomic
    /// unit (Azure Storage writes the state, then sends, then deletes): a step redelivered after a
    /// crash between those calls finds its step applied and sends these again, so the chain never
    /// breaks. Empty on the embedded store.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbox: BTreeMap<String, Vec<OutboxMessage>>,
}

/// A message as sent: kept in [`WorkflowState::outbox`] until it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub message: crate::workflow::message::StepMessage,
    pub delay_ms: u64,
}

/// The outbox key of the first message of a workflow (sent by `submit`, not by a step).
pub const SUBMIT_OUTBOX_KEY: &str = "submit";

impl WorkflowState {
    pub fn subscription_id(&self) -> Option<String> {
        let id = match &self.input {
            WorkflowInput::Protect(p) => p.vault_id.clone().or_else(|| self.target.vault_id.clone()).unwrap_or_else(|| p.vm_id.clone()),
            WorkflowInput::Backup(b) => b.vault_id.clone(),
        };
        crate::resource_id::ResourceId::parse(&id).ok().map(|r| r.subscription)
    }
}

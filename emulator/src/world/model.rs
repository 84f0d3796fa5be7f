//! The simulated service's resources, as plain data. Behaviour lives in the sibling modules.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::scenario::{DatabaseSpec, FailureSpec, PolicySpec, VmConditions};

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    /// Resource-group keys that exist.
    pub resource_groups: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub provisioning_state: String,
    pub fqdn: String,
    pub vm_guid: String,
    pub instances: Vec<SqlInstance>,
    pub conditions: VmConditions,
}

impl Vm {
    pub fn id(&self) -> String {
        crate::names::vm_id(&self.subscription_id, &self.resource_group, &self.name)
    }
    pub fn container_name(&self) -> String {
        crate::names::container_name(&self.resource_group, &self.name)
    }
    pub fn find_db(&self, inst_key: &str, db_key: &str) -> Option<(&SqlInstance, &DatabaseSpec)> {
        let inst = self.instances.iter().find(|i| i.name.eq_ignore_ascii_case(inst_key))?;
        let db = inst.databases.iter().find(|d| d.name.eq_ignore_ascii_case(db_key))?;
        Some((inst, db))
    }
}

#[derive(Debug, Clone)]
pub struct SqlInstance {
    pub name: String,
    pub databases: Vec<DatabaseSpec>,
}

#[derive(Debug, Clone)]
pub struct Vault {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub policies: Vec<PolicySpec>,
    /// Completed refreshes seen by each VM key (drives "discoverable after N refreshes").
    pub refreshes_seen: HashMap<String, u32>,
    /// VM keys this vault has discovered.
    pub discovered: BTreeSet<String>,
    /// Registered (or registering) containers, keyed by container-name key.
    pub containers: BTreeMap<String, Container>,
    /// Protected items keyed by (container key, item key).
    pub items: BTreeMap<(String, String), ProtectedItem>,
    pub intents: BTreeMap<String, Intent>,
    pub jobs: Vec<Job>,
    pub job_index: HashMap<String, usize>,
}

impl Vault {
    pub fn id(&self) -> String {
        crate::names::vault_id(&self.subscription_id, &self.resource_group, &self.name)
    }
    pub fn policy(&self, name: &str) -> Option<&PolicySpec> {
        self.policies.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.job_index.get(&crate::names::key(id)).map(|&i| &self.jobs[i])
    }
    pub fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        let i = *self.job_index.get(&crate::names::key(id))?;
        Some(&mut self.jobs[i])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Registering,
    Registered,
}

#[derive(Debug, Clone)]
pub struct Inquiry {
    /// `Success` or `Failed` (the seed shows `Success`).
    pub status: &'static str,
    pub error: Option<(String, String)>,
    pub item_count: usize,
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub vm_key: String,
    pub registration: Registration,
    pub last_updated: DateTime<Utc>,
    pub inquiry: Option<Inquiry>,
    /// (instance key, db key) pairs the last successful inquiry found.
    pub inquired: BTreeSet<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    IrPending,
    Protected,
    ProtectionStopped,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::IrPending => "IRPending",
            ItemState::Protected => "Protected",
            ItemState::ProtectionStopped => "ProtectionStopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecoveryPoint {
    pub id: String,
    pub time: DateTime<Utc>,
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
pub struct ProtectedItem {
    pub name: String,
    pub container_key: String,
    pub vm_key: String,
    pub instance: String,
    pub database: String,
    pub policy_id: String,
    pub policy_name: Option<String>,
    pub state: ItemState,
    pub last_backup_status: &'static str,
    pub last_backup_time: Option<DateTime<Utc>>,
    pub last_backup_error: Option<(String, String)>,
    pub datasource_id: String,
    /// A completed Full backup exists (parent for Differential and Log).
    pub has_full: bool,
    pub recovery_points: Vec<RecoveryPoint>,
    pub log_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub recovery_model: String,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub name: String,
    pub intent_type: String,
    pub item_id: String,
    pub policy_id: String,
    pub container_key: String,
    pub instance_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupType {
    Full,
    Differential,
    Log,
    CopyOnlyFull,
}

impl BackupType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "full" => BackupType::Full,
            "differential" => BackupType::Differential,
            "log" => BackupType::Log,
            "copyonlyfull" => BackupType::CopyOnlyFull,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "Full",
            BackupType::Differential => "Differential",
            BackupType::Log => "Log",
            BackupType::CopyOnlyFull => "CopyOnlyFull",
        }
    }
    /// The decorated operation string SQL jobs carry (azure-backup-api.md §5).
    pub fn job_operation(self) -> &'static str {
        match self {
            BackupType::Full => "Backup (Full)",
            BackupType::Differential => "Backup (Differential)",
            BackupType::Log => "Backup (Log)",
            BackupType::CopyOnlyFull => "Backup (Copy Only Full)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    InProgress,
    Completed,
    CompletedWithWarnings,
    Failed,
    Cancelling,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::CompletedWithWarnings => "CompletedWithWarnings",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelling => "Cancelling",
            JobStatus::Cancelled => "Cancelled",
        }
    }
    pub fn is_running(self) -> bool {
        matches!(self, JobStatus::InProgress | JobStatus::Cancelling)
    }
}

/// An error reported in a job (`AzureWorkloadErrorInfo`).
#[derive(Debug, Clone)]
pub struct JobError {
    pub error_code: i64,
    pub title: String,
    pub message: String,
    pub recommendations: Vec<String>,
}

impl JobError {
    pub fn from_spec(spec: &FailureSpec) -> Self {
        JobError {
            error_code: spec.error_code.unwrap_or(0),
            title: spec.code.clone(),
            message: spec.message.clone().unwrap_or_else(|| format!("The operation failed with {}.", spec.code)),
            recommendations: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub operation: String,
    pub status: JobStatus,
    pub entity_friendly_name: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub activity_id: String,
    /// The protected item (container key, item key) the job acts on.
    pub item: Option<(String, String)>,
    pub backup_type: Option<BackupType>,
    pub error: Option<JobError>,
    /// How the job will end if nobody cancels it.
    pub planned_error: Option<JobError>,
    pub retention_until: Option<DateTime<Utc>>,
    pub cancellable: bool,
}

/// Where an operation's tracking URLs live.
#[derive(Debug, Clone)]
pub enum OpScope {
    Fabric,
    Container(String),
    Item(String, String),
    /// Vault-level `backupOperations` / `backupOperationResults` (item delete).
    Vault,
    Job(String),
}

#[derive(Debug, Clone)]
pub enum OpKind {
    Refresh,
    Register { container_key: String },
    Unregister { container_key: String },
    Inquire { container_key: String },
    Configure { container_key: String, item_key: String },
    Stop { container_key: String, item_key: String },
    Delete { container_key: String, item_key: String },
    Backup { container_key: String, item_key: String },
    CancelJob { job_id: String },
}

#[derive(Debug, Clone)]
pub enum OpStatus {
    InProgress,
    Succeeded,
    Failed { code: String, message: String, http_status: u16 },
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub vault_key: String,
    pub kind: OpKind,
    pub scope: OpScope,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub status: OpStatus,
    pub job_id: Option<String>,
    /// The api-version the starting request used, echoed in tracking URLs like the service does.
    pub api_version: String,
    /// For a configure operation: the body to apply when it completes.
    pub pending_item: Option<ProtectedItem>,
}

//! Response bodies, converted from the engine's types at this edge. The stored `WorkflowState`
//! is never serialised as it is: what the API promises is what `docs/openapi.json` describes,
//! and internal fields (`doneSteps`, poll counters, `triggerSentAt`) stay internal.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlvm_backup_shared::workflow::failure::{Failure, FailureClass};
use sqlvm_backup_shared::workflow::state::{Child, ChildStatus, StepRecord, WorkflowInput, WorkflowState, WorkflowStatus};

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The answer to a submission.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    pub id: String,
    pub status: &'static str,
    pub created: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureBody {
    pub code: String,
    pub message: String,
    pub class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl From<&Failure> for FailureBody {
    fn from(f: &Failure) -> Self {
        FailureBody {
            code: f.code.clone(),
            message: f.message.clone(),
            class: match f.class {
                FailureClass::Retryable => "retryable",
                FailureClass::NeedsUserAction => "needsUserAction",
                FailureClass::Quota => "quota",
                FailureClass::Permanent => "permanent",
            },
            hint: f.hint.clone(),
            http_status: f.http_status,
        }
    }
}

pub fn status_str(s: WorkflowStatus) -> &'static str {
    s.as_str()
}

/// The vault a workflow acts on, when known: the backup's vault, or the protect request's vault,
/// or the one the protect workflow resolved from the rules.
pub fn vault_of(state: &WorkflowState) -> Option<&str> {
    match &state.input {
        WorkflowInput::Backup(b) => Some(b.vault_id.as_str()),
        WorkflowInput::Protect(p) => p.vault_id.as_deref().or(state.target.vault_id.as_deref()),
    }
}

/// One entry of `GET /api/workflows`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSummary {
    pub id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureBody>,
}

impl From<&WorkflowState> for WorkflowSummary {
    fn from(s: &WorkflowState) -> Self {
        WorkflowSummary {
            id: s.id.clone(),
            kind: s.kind.as_str(),
            status: status_str(s.status),
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
            failure: s.failure.as_ref().map(FailureBody::from),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WorkflowList {
    pub value: Vec<WorkflowSummary>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepBody {
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<usize>,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<&StepRecord> for StepBody {
    fn from(r: &StepRecord) -> Self {
        StepBody {
            step: r.step.clone(),
            child: r.child,
            at: ts(r.at),
            http_status: r.http_status,
            operation_id: r.operation_id.clone(),
            job_id: r.job_id.clone(),
            note: r.note.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChildStatusBody {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&ChildStatus> for ChildStatusBody {
    fn from(s: &ChildStatus) -> Self {
        let (state, failure, reason) = match s {
            ChildStatus::Pending => ("pending", None, None),
            ChildStatus::Running => ("running", None, None),
            ChildStatus::Succeeded => ("succeeded", None, None),
            ChildStatus::Failed { failure } => ("failed", Some(FailureBody::from(failure)), None),
            ChildStatus::Skipped { reason } => ("skipped", None, Some(reason.clone())),
        };
        ChildStatusBody { state, failure, reason }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildBody {
    pub container: String,
    pub item: String,
    pub friendly_name: String,
    pub status: ChildStatusBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_url: Option<String>,
}

impl From<&Child> for ChildBody {
    fn from(c: &Child) -> Self {
        ChildBody {
            container: c.container.clone(),
            item: c.item.clone(),
            friendly_name: c.friendly_name.clone(),
            status: ChildStatusBody::from(&c.status),
            job_id: c.job_id.clone(),
            job_status: c.job_status.clone(),
            operation_url: c.operation_url.clone(),
        }
    }
}

/// `GET /api/workflows/{id}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowBody {
    pub id: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub origin: String,
    pub created_at: String,
    pub updated_at: String,
    pub deadline: String,
    /// The request as submitted (a `ProtectRequest` or a `BackupRequest`).
    pub input: serde_json::Value,
    pub target: TargetBody,
    pub steps: Vec<StepBody>,
    pub children: Vec<ChildBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureBody>,
}

impl From<&WorkflowState> for WorkflowBody {
    fn from(s: &WorkflowState) -> Self {
        // The inputs are the request bodies the API accepted, so they serialise back into the
        // request schemas; a failure here would be a bug in serde, so fall back on null.
        let input = match &s.input {
            WorkflowInput::Protect(p) => serde_json::to_value(p),
            WorkflowInput::Backup(b) => serde_json::to_value(b),
        }
        .unwrap_or(serde_json::Value::Null);
        WorkflowBody {
            id: s.id.clone(),
            kind: s.kind.as_str(),
            status: status_str(s.status),
            origin: s.origin.clone(),
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
            deadline: ts(s.deadline),
            input,
            target: TargetBody {
                vault_id: s.target.vault_id.clone(),
                policy_id: s.target.policy_id.clone(),
                container: s.target.container.clone(),
            },
            steps: s.steps.iter().map(StepBody::from).collect(),
            children: s.children.iter().map(ChildBody::from).collect(),
            failure: s.failure.as_ref().map(FailureBody::from),
        }
    }
}

//! The step message: the only serialised contract between steps, and everything a handler needs
//! to resume a workflow ("à la HTTP": the operation URL being followed travels in the message).
//!
//! Messages carry a format version; a reader refuses versions it does not know rather than
//! guessing.

use serde::{Deserialize, Serialize};

/// The message format this build writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepMessage {
    /// Format version ([`MESSAGE_VERSION`]).
    pub v: u32,
    pub workflow_id: String,
    /// Unique per step instance and deterministic, so a redelivered duplicate is recognised.
    pub step_id: String,
    pub step: Step,
    /// Index of the child (one database) this step works for; `None` for the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<usize>,
    /// The operation-status, operation-result or `nextLink` URL being followed, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    /// How many times this step has polled so far.
    #[serde(default)]
    pub attempt: u32,
    /// The last `Retry-After` the service gave for this operation (ms): operation-status answers
    /// carry none, so polls keep the pace the 202 set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// What a step does. Names are stable: they are stored in queues and in workflow histories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Step {
    // ----- protect -----
    /// Read the VM (location, tags) to resolve vault and policy from rules.
    ResolveTarget,
    /// POST refreshContainers (discovery round `round`, from 0).
    Refresh {
        round: u32,
    },
    /// Follow the refresh's Location URL until 204.
    PollRefresh {
        round: u32,
    },
    /// Page through protectableContainers looking for the VM by `properties.containerId`.
    FindContainer {
        round: u32,
    },
    /// Page through registered containers: the VM may be registered already.
    FindRegistered {
        round: u32,
    },
    /// PUT the container (register).
    Register {
        container: String,
    },
    PollRegister {
        container: String,
    },
    /// GET the container to confirm `registrationStatus`.
    VerifyRegistration {
        container: String,
    },
    Inquire {
        container: String,
    },
    PollInquire {
        container: String,
    },
    /// Page through backupProtectableItems and fan out one child per database to protect.
    ListProtectable {
        container: String,
    },
    /// PUT a protection intent (auto-protection of an instance).
    AutoProtect {
        container: String,
        instance_item_id: String,
    },
    /// Child: PUT the protected item.
    ProtectItem {
        container: String,
        item: String,
    },
    PollProtect {
        container: String,
        item: String,
    },
    // ----- backup -----
    /// Page through backupProtectedItems and fan out one child per selected item.
    SelectItems,
    /// Child: record that a trigger is about to be sent (write-ahead), then trigger.
    PrepareTrigger {
        container: String,
        item: String,
    },
    /// Child: POST backup.
    Trigger {
        container: String,
        item: String,
    },
    /// Child: a trigger may have been sent before a crash; look for its job before re-sending.
    CheckJobs {
        container: String,
        item: String,
    },
    /// Child: follow the backup operation until it names its job.
    PollBackup {
        container: String,
        item: String,
    },
    /// Child: follow the job to a terminal status.
    PollJob {
        container: String,
        item: String,
        job_id: String,
    },
}

impl Step {
    /// The stable name used in step ids and histories.
    pub fn name(&self) -> &'static str {
        match self {
            Step::ResolveTarget => "resolveTarget",
            Step::Refresh { .. } => "refresh",
            Step::PollRefresh { .. } => "pollRefresh",
            Step::FindContainer { .. } => "findContainer",
            Step::FindRegistered { .. } => "findRegistered",
            Step::Register { .. } => "register",
            Step::PollRegister { .. } => "pollRegister",
            Step::VerifyRegistration { .. } => "verifyRegistration",
            Step::Inquire { .. } => "inquire",
            Step::PollInquire { .. } => "pollInquire",
            Step::ListProtectable { .. } => "listProtectable",
            Step::AutoProtect { .. } => "autoProtect",
            Step::ProtectItem { .. } => "protectItem",
            Step::PollProtect { .. } => "pollProtect",
            Step::SelectItems => "selectItems",
            Step::PrepareTrigger { .. } => "prepareTrigger",
            Step::Trigger { .. } => "trigger",
            Step::CheckJobs { .. } => "checkJobs",
            Step::PollBackup { .. } => "pollBackup",
            Step::PollJob { .. } => "pollJob",
        }
    }
}

impl StepMessage {
    /// Decode a message, refusing unknown versions and shapes with a reason (for the poison queue).
    pub fn decode(text: &str) -> Result<StepMessage, String> {
        let m: StepMessage = serde_json::from_str(text).map_err(|e| format!("undecodable step message: {e}"))?;
        if m.v != MESSAGE_VERSION {
            return Err(format!("step message version {} is not supported (this build reads {MESSAGE_VERSION})", m.v));
        }
        Ok(m)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let m = StepMessage {
            v: MESSAGE_VERSION,
            workflow_id: "wf".into(),
            step_id: "wf/poll#3".into(),
            step: Step::PollJob { container: "c".into(), item: "i".into(), job_id: "j".into() },
            child: Some(2),
            tracking_url: Some("https://management.azure.com/x".into()),
            attempt: 3,
            wait_ms: Some(1000),
        };
        let text = m.encode();
        assert!(text.contains("\"kind\":\"pollJob\""), "{text}");
        assert_eq!(StepMessage::decode(&text).unwrap(), m);
        assert!(StepMessage::decode(&text.replace("\"v\":1", "\"v\":9")).unwrap_err().contains("version 9"));
        assert!(StepMessage::decode("{}").is_err());
    }
}

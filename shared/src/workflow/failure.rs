//! Why something failed, in a form that survives storage and tells the operator what to do:
//! the ARM error code and message, a class that decides whether to retry, and a fix hint for
//! the user errors the research lists (user-needs-and-alternatives.md §2 and §3.2).

use serde::{Deserialize, Serialize};

/// What kind of failure this is, which decides what the engine does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureClass {
    /// Transient (throttling, 5xx, conflicting operation): retried with back-off.
    Retryable,
    /// Only a person can fix it (permissions, network, extension): not retried.
    NeedsUserAction,
    /// A daily or service quota: retrying soon is pointless.
    Quota,
    /// The request can never succeed as sent.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub class: FailureClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
}

impl Failure {
    /// A failure from an ARM or job error code, classified with its hint.
    pub fn from_code(code: &str, message: impl Into<String>, http_status: Option<u16>) -> Failure {
        let (class, hint) = classify(code, http_status);
        Failure { code: code.to_string(), message: message.into(), class, hint: hint.map(str::to_string), http_status }
    }

    /// A failure the worker decided on itself (validation, budget, deadline).
    pub fn local(code: &str, message: impl Into<String>, class: FailureClass) -> Failure {
        Failure { code: code.to_string(), message: message.into(), class, hint: None, http_status: None }
    }
}

/// The class and fix hint of a code. Unknown codes fall back on the HTTP status.
pub fn classify(code: &str, http_status: Option<u16>) -> (FailureClass, Option<&'static str>) {
    use FailureClass::*;
    let known: Option<(FailureClass, &'static str)> = match code {
        "UserErrorSQLNoSysadminMembership" => Some((
            NeedsUserAction,
            "Add NT SERVICE\\AzureWLBackupPluginSvc to the sysadmin role on every SQL instance of the VM (including unused ones), then re-run the inquiry.",
        )),
        "UserErrorOpeningSQLConnection" => {
            Some((NeedsUserAction, "Give NT AUTHORITY\\SYSTEM a public login on every instance and check SQL Server is running."))
        }
        "UserErrorVMInternetConnectivityIssue" => Some((
            NeedsUserAction,
            "Allow outbound traffic to Azure Backup, Azure Storage and Microsoft Entra ID (service tags AzureBackup, Storage, AzureActiveDirectory, or private endpoints).",
        )),
        "UserErrorParentFullBackupMissing" => {
            Some((Permanent, "Take a Full backup of the database first, then the Differential or Log backup."))
        }
        "UserErrorSQLPODoesNotSupportBackupType" => Some((
            Permanent,
            "This database does not support that backup type (SIMPLE recovery model refuses Log; master refuses Differential and Log).",
        )),
        "UserErrorSQLLSNValidationFailure" => {
            Some((NeedsUserAction, "Another tool broke the log chain: stop other backups of this database and take a Full backup."))
        }
        "UserErrorBackupFailedAsTransactionLogIsFull" => {
            Some((NeedsUserAction, "Free space in the transaction log (or grow it), then retry."))
        }
        "UserErrorSQLPODoesNotExist" | "BMSUserErrorDataSourceObjectNotFound" => Some((
            NeedsUserAction,
            "The database no longer exists or was renamed: re-run the inquiry, then stop protection of the old item.",
        )),
        "OperationCancelledBecauseConflictingOperationRunningUserError" | "UserErrorBackupOperationInProgress" => {
            Some((Retryable, "Another operation runs on this database; it is retried later."))
        }
        "CloudDosAbsoluteLimitReached" | "CloudDosAbsoluteLimitReachedWithRetry" | "CloudDosTimeboudLimitReached" => {
            Some((Quota, "The daily limit of operations on this item was reached; retry after 24 hours."))
        }
        "VMNotInRunningStateUserError" | "GuestAgentStatusUnavailableUserError" => {
            Some((Retryable, "Start the VM and make sure the VM agent is healthy."))
        }
        "WorkloadExtensionNotReachable"
        | "UserErrorWorkloadExtensionNotInstalled"
        | "WorkloadExtensionNotPresent"
        | "WorkloadExtensionDidntDequeueMsg" => Some((NeedsUserAction, "Re-register the VM with the vault (operationType Reregister).")),
        "FabricSvcBackupPreferenceCheckFailedUserError" => {
            Some((NeedsUserAction, "Register every node of the availability group with the vault."))
        }
        "AutoProtectionCancelledOrNotValid" => Some((NeedsUserAction, "Auto-protection was turned off while it ran; turn it on again.")),
        "BMSUserErrorInvalidInput" | "InvalidRequestContent" | "BMSUserErrorInvalidPolicyType" => {
            Some((Permanent, "The request was refused as invalid; check the inputs."))
        }
        "BMSUserErrorContainerHasDatasources" => {
            Some((NeedsUserAction, "Stop protection and delete the backup data of every item before unregistering the VM."))
        }
        "SubscriptionRequestsThrottled" | "TooManyRequests" | "ServiceUnavailable" | "InternalServerError" | "GatewayTimeout" => {
            Some((Retryable, ""))
        }
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
            Some((NeedsUserAction, "Give the worker's identity Backup Contributor on the vault and Reader on the VM."))
        }
        "InvalidAuthenticationToken" | "ExpiredAuthenticationToken" | "AuthenticationFailed" | "InvalidAuthenticationTokenAudience" => {
            Some((NeedsUserAction, "Check the worker's credential configuration."))
        }
        _ => None,
    };
    match known {
        Some((class, hint)) => (class, (!hint.is_empty()).then_some(hint)),
        None => match http_status {
            Some(408 | 429) | Some(500..=599) => (FailureClass::Retryable, None),
            Some(401 | 403) => (FailureClass::NeedsUserAction, None),
            _ if code.starts_with("UserError") || code.starts_with("BMSUserError") => (FailureClass::NeedsUserAction, None),
            _ => (FailureClass::Permanent, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_get_class_and_hint() {
        let f = Failure::from_code("UserErrorSQLNoSysadminMembership", "x", Some(400));
        assert_eq!(f.class, FailureClass::NeedsUserAction);
        assert!(f.hint.unwrap().contains("sysadmin"));
        assert_eq!(classify("CloudDosAbsoluteLimitReached", None).0, FailureClass::Quota);
        assert_eq!(classify("OperationCancelledBecauseConflictingOperationRunningUserError", None).0, FailureClass::Retryable);
    }

    #[test]
    fn unknown_codes_fall_back_on_status() {
        assert_eq!(classify("Whatever", Some(503)).0, FailureClass::Retryable);
        assert_eq!(classify("Whatever", Some(403)).0, FailureClass::NeedsUserAction);
        assert_eq!(classify("Whatever", Some(400)).0, FailureClass::Permanent);
        assert_eq!(classify("UserErrorSomethingNew", Some(400)).0, FailureClass::NeedsUserAction);
    }
}

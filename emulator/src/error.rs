//! The service's error answers: an HTTP status plus the ARM body `{"error":{"code","message"}}`.
//!
//! Codes are the ones Azure really returns where the research notes document them
//! (azure-backup-api.md §7, user-needs-and-alternatives.md §3.2, ARM's own codes). Where the real
//! code is unknown the simulator uses a name of its own; those are listed in [`INVENTED_CODES`] and
//! in `docs/simulator.md` so nobody mistakes them for the service's.

use serde_json::json;

/// An error answer of the simulated ARM / Backup service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ArmError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ArmError { status, code: code.to_string(), message: message.into() }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }
    /// The invalid-input error the Backup RP gives for a body it cannot use.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(400, "BMSUserErrorInvalidInput", message)
    }
    pub fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ArmError {}

/// Codes this simulator uses although the real service's code for the situation is not known.
pub const INVENTED_CODES: &[(&str, &str)] = &[
    ("BMSUserErrorContainerNotDiscovered", "PUT of a container the vault has not discovered (not in protectableContainers)"),
    ("BMSUserErrorContainerAlreadyRegisteredToAnotherVault", "PUT of a container whose VM is registered with another vault"),
    ("BMSUserErrorContainerNotFound", "GET/DELETE/POST on a container that is not registered"),
    ("BMSUserErrorProtectedItemNotFound", "GET/DELETE/backup on an item that is not protected"),
    ("BMSUserErrorProtectableItemNotFound", "PUT of a protected item the last inquiry did not find"),
    ("BMSUserErrorPolicyNotFound", "policyId names no policy of this vault"),
    ("BMSUserErrorInvalidPolicyType", "policyId names a policy that is not an AzureWorkload policy"),
    ("BMSUserErrorInvalidRetention", "on-demand Full retention outside 45 days .. 99 years"),
    ("BMSUserErrorJobNotFound", "unknown job id"),
    ("BMSUserErrorJobNotCancellable", "cancel of a job that has ended"),
    ("BMSUserErrorOperationNotFound", "unknown operation id"),
    ("BMSUserErrorProtectionIntentNotFound", "unknown protection intent"),
    ("BMSUserErrorRecoveryPointNotFound", "unknown recovery point"),
    ("BMSUserErrorInvalidFabricName", "a fabric other than Azure"),
    ("BMSUserErrorRegistrationFailed", "scenario-scripted registration failure without a code of its own"),
];

//! The `azureStorage` section of the configuration, and the same settings read from a Function
//! App's identity-based connection settings (`StepQueue__queueServiceUri`, `STEP_QUEUE`, …).

use serde::Deserialize;
use std::sync::Arc;

use sqlvm_backup_shared::credentials::{CredentialConfig, build_credential};
use sqlvm_backup_shared::secret::Secret;

use super::auth::StorageAuth;
use super::backend::AzureStorageBackend;
use super::blob::BlobStore;
use super::error::StorageError;
use super::queue::StepQueue;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureStorageConfig {
    /// The storage account: endpoints default to `https://{account}.queue|blob.core.windows.net`.
    #[serde(default)]
    pub account_name: Option<String>,
    /// Queue service endpoint, e.g. `http://127.0.0.1:10001/devstoreaccount1` for Azurite.
    #[serde(default)]
    pub queue_endpoint: Option<String>,
    #[serde(default)]
    pub blob_endpoint: Option<String>,
    /// The step queue; the poison queue is `<queue>-poison`, as the Functions host names it.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// The blob container holding workflow states and claims.
    #[serde(default = "default_container")]
    pub container: String,
    /// How to get Entra tokens for Storage (default: managed identity).
    #[serde(default)]
    pub credential: Option<CredentialConfig>,
    /// The account key, only for Azurite or an account that still allows shared keys: an
    /// account SAS is signed with it in process (the Rust SDK has no shared-key auth).
    #[serde(default)]
    pub account_key: Option<Secret>,
}

pub fn default_queue() -> String {
    "sqlvm-steps".into()
}

pub fn default_container() -> String {
    "sqlvm-state".into()
}

/// Queue and container names: 3–63 lowercase letters, digits and single hyphens (the Storage
/// naming rules; checked here so a typo is a clear configuration error, not a 400 later).
fn check_name(what: &str, name: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(StorageError::Config(format!("{what} {name:?} is not a valid name (3-63 lowercase letters, digits, hyphens)")))
    }
}

impl AzureStorageConfig {
    fn endpoint(&self, explicit: &Option<String>, service: &str) -> Result<String, StorageError> {
        match (explicit, &self.account_name) {
            (Some(e), _) => Ok(e.trim_end_matches('/').to_string()),
            (None, Some(a)) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) => {
                Ok(format!("https://{a}.{service}.core.windows.net"))
            }
            (None, Some(a)) => Err(StorageError::Config(format!("accountName {a:?} is not a storage account name"))),
            (None, None) => Err(StorageError::Config(format!("azureStorage needs accountName or {service}Endpoint"))),
        }
    }

    /// The account name, for signing a SAS: given, or the first path segment of an Azurite URL.
    fn account(&self) -> Option<String> {
        self.account_name.clone().or_else(|| {
            let e = self.queue_endpoint.as_deref()?;
            url::Url::parse(e).ok()?.path_segments()?.find(|s| !s.is_empty()).map(str::to_string)
        })
    }

    pub fn queue_url(&self) -> Result<String, StorageError> {
        check_name("queue", &self.queue)?;
        Ok(format!("{}/{}", self.endpoint(&self.queue_endpoint, "queue")?, self.queue))
    }

    pub fn poison_queue_url(&self) -> Result<String, StorageError> {
        Ok(format!("{}-poison", self.queue_url()?))
    }

    pub fn container_url(&self) -> Result<String, StorageError> {
        check_name("container", &self.container)?;
        Ok(format!("{}/{}", self.endpoint(&self.blob_endpoint, "blob")?, self.container))
    }

    pub fn auth(&self) -> Result<StorageAuth, StorageError> {
        if let Some(key) = &self.account_key {
            let account = self.account().ok_or_else(|| StorageError::Config("accountKey needs accountName".into()))?;
            return Ok(StorageAuth::AccountKey { account, key: key.clone() });
        }
        let cfg = self.credential.clone().unwrap_or(CredentialConfig::ManagedIdentity { client_id: None });
        let credential = build_credential(&cfg, None).map_err(|e| StorageError::Config(format!("storage credential: {e}")))?;
        Ok(StorageAuth::Token(credential))
    }

    /// The backend these settings describe (no request is sent).
    pub fn backend(&self) -> Result<Arc<AzureStorageBackend>, StorageError> {
        let auth = self.auth()?;
        let queue = StepQueue::new(&self.queue_url()?, &auth)?;
        let poison = StepQueue::new(&self.poison_queue_url()?, &auth)?;
        let blobs = BlobStore::new(&self.container_url()?, &auth)?;
        Ok(Arc::new(AzureStorageBackend::new(queue, poison, blobs)))
    }

    /// The settings of a Function App, where the queue trigger's connection `StepQueue` is an
    /// identity-based connection (`StepQueue__queueServiceUri` or `StepQueue__accountName`, with
    /// `StepQueue__clientId` for a user-assigned identity), the queue name is `STEP_QUEUE` and the
    /// state container `STATE_CONTAINER`. `None` when no such setting exists.
    pub fn from_app_settings(get: &dyn Fn(&str) -> Option<String>) -> Option<AzureStorageConfig> {
        let queue_endpoint = get("StepQueue__queueServiceUri");
        let account_name = get("StepQueue__accountName").or_else(|| {
            let host = url::Url::parse(queue_endpoint.as_deref()?).ok()?.host_str()?.to_string();
            host.strip_suffix(".queue.core.windows.net").map(str::to_string)
        });
        if queue_endpoint.is_none() && account_name.is_none() {
            return None;
        }
        let blob_endpoint = get("StepQueue__blobServiceUri");
        let client_id = get("StepQueue__clientId");
        Some(AzureStorageConfig {
            account_name,
            queue_endpoint,
            blob_endpoint,
            queue: get("STEP_QUEUE").unwrap_or_else(default_queue),
            container: get("STATE_CONTAINER").unwrap_or_else(default_container),
            credential: Some(CredentialConfig::ManagedIdentity { client_id }),
            account_key: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn app_settings_give_the_account_endpoints_and_identity() {
        let env: HashMap<&str, &str> = [
            ("StepQueue__queueServiceUri", "https://stsqlvm.queue.core.windows.net"),
            ("StepQueue__clientId", "11111111-2222-3333-4444-555555555555"),
            ("STEP_QUEUE", "steps"),
        ]
        .into();
        let cfg = AzureStorageConfig::from_app_settings(&|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.queue_url().unwrap(), "https://stsqlvm.queue.core.windows.net/steps");
        assert_eq!(cfg.poison_queue_url().unwrap(), "https://stsqlvm.queue.core.windows.net/steps-poison");
        assert_eq!(cfg.container_url().unwrap(), "https://stsqlvm.blob.core.windows.net/sqlvm-state");
        assert_eq!(
            cfg.credential,
            Some(CredentialConfig::ManagedIdentity { client_id: Some("11111111-2222-3333-4444-555555555555".into()) })
        );
        assert!(AzureStorageConfig::from_app_settings(&|_| None).is_none());
    }

    #[test]
    fn bad_names_are_configuration_errors() {
        let mut cfg = AzureStorageConfig::from_app_settings(&|k| (k == "StepQueue__accountName").then(|| "acct".into())).unwrap();
        cfg.queue = "Steps_1".into();
        assert!(matches!(cfg.queue_url(), Err(StorageError::Config(_))));
        cfg.queue = "ok-queue".into();
        cfg.container = "-x".into();
        assert!(matches!(cfg.container_url(), Err(StorageError::Config(_))));
        cfg.account_name = Some("Not.An.Account".into());
        assert!(matches!(cfg.queue_url(), Err(StorageError::Config(_))));
    }
}

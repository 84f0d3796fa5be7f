//! The world a user describes: subscriptions, VMs with their SQL instances and databases, vaults
//! and their policies, plus the timings and faults the simulator should play.
//!
//! A scenario is plain data (JSON or TOML, chosen by file extension) so that users can write one
//! by hand and tests can build one in code. `docs/simulator.md` documents every field; this file
//! is the source of truth for names and defaults. Nothing here knows about HTTP.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use crate::settings::Settings;

/// A whole simulated world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Timings, paging, throttling and faults; every field has a default.
    #[serde(default)]
    pub settings: Settings,
    /// Subscriptions that exist. VMs and vaults may only live in these.
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Recovery Services vaults.
    #[serde(default)]
    pub vaults: Vec<VaultSpec>,
    /// Azure VMs, with the SQL Server instances the backup extension would find in them.
    #[serde(default)]
    pub virtual_machines: Vec<VmSpec>,
    /// Clients allowed to use the client-credentials token endpoint.
    #[serde(default)]
    pub clients: Vec<crate::identity::ClientRegistration>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub id: String,
    /// Resource groups that exist in this subscription (VM and vault groups are added implicitly).
    #[serde(default)]
    pub resource_groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultSpec {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
}

/// A backup policy, described by the few numbers that matter to the simulator; the ARM body is
/// derived from them so that it always validates against the swagger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    pub name: String,
    /// `AzureWorkload` (SQL in VM) unless stated; other kinds exist so that a client that picks a
    /// non-workload policy can be shown the service's refusal.
    #[serde(default = "default_policy_kind")]
    pub kind: String,
    /// Daily full backup time, `HH:MM` UTC.
    #[serde(default = "default_full_time")]
    pub full_time: String,
    #[serde(default = "default_full_retention_days")]
    pub full_retention_days: u32,
    /// Weekly differential day (e.g. `Sunday`); none when absent.
    #[serde(default)]
    pub differential_day: Option<String>,
    #[serde(default = "default_diff_retention_days")]
    pub differential_retention_days: u32,
    /// Log backup frequency in minutes; no log backups when absent.
    #[serde(default)]
    pub log_frequency_minutes: Option<u32>,
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
}

fn default_policy_kind() -> String {
    "AzureWorkload".into()
}
fn default_full_time() -> String {
    "02:00".into()
}
fn default_full_retention_days() -> u32 {
    30
}
fn default_diff_retention_days() -> u32 {
    30
}
fn default_log_retention_days() -> u32 {
    15
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSpec {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// ARM `provisioningState` of the VM (`Succeeded` unless stated).
    #[serde(default = "default_provisioning_state")]
    pub provisioning_state: String,
    /// Host name the backup extension reports (`serverName`); `{name}.contoso.com` by default.
    #[serde(default)]
    pub fqdn: Option<String>,
    #[serde(default)]
    pub sql_instances: Vec<SqlInstanceSpec>,
    #[serde(default)]
    pub conditions: VmConditions,
}

fn default_provisioning_state() -> String {
    "Succeeded".into()
}

/// Things that go wrong on a VM, as the service would report them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmConditions {
    /// The VM shows up in `protectableContainers` only after this many completed refreshes of a
    /// vault (default 1: a refresh is always needed first, as with a brand-new VM).
    #[serde(default)]
    pub discoverable_after_refreshes: Option<u32>,
    /// Never discoverable (no SQL, no agent, wrong OS ...).
    #[serde(default)]
    pub never_discoverable: bool,
    /// `NT SERVICE\AzureWLBackupPluginSvc` lacks sysadmin: inquiries report
    /// `UserErrorSQLNoSysadminMembership` and find no databases.
    #[serde(default)]
    pub backup_service_lacks_sysadmin: bool,
    /// The registration operation fails with this error.
    #[serde(default)]
    pub registration_fails: Option<FailureSpec>,
}

/// An error the service would report: ARM `code` and `message`, plus the integer job error code
/// used in `AzureWorkloadErrorInfo.errorCode`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureSpec {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_code: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlInstanceSpec {
    /// `MSSQLSERVER` for the default instance.
    pub name: String,
    #[serde(default)]
    pub databases: Vec<DatabaseSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseSpec {
    pub name: String,
    /// `Full` (default), `BulkLogged` or `Simple`. Log backups of a `Simple` database fail.
    #[serde(default = "default_recovery_model")]
    pub recovery_model: String,
    /// Every backup job of this database fails with this error.
    #[serde(default)]
    pub backup_fails: Option<FailureSpec>,
}

fn default_recovery_model() -> String {
    "Full".into()
}

impl DatabaseSpec {
    pub fn new(name: &str) -> Self {
        DatabaseSpec { name: name.into(), recovery_model: default_recovery_model(), backup_fails: None }
    }
}

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario {path} is not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("scenario {path} is not valid TOML: {source}")]
    Toml { path: String, source: toml::de::Error },
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
}

impl Scenario {
    /// Read a scenario file; `.toml` files are TOML, anything else JSON.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: shown.clone(), source })?;
        let scenario: Scenario = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
            toml::from_str(&text).map_err(|source| ScenarioError::Toml { path: shown, source })?
        } else {
            serde_json::from_str(&text).map_err(|source| ScenarioError::Json { path: shown, source })?
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Check references the type system cannot: subscriptions exist, names are unique.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let has_sub = |id: &str| self.subscriptions.iter().any(|s| s.id.eq_ignore_ascii_case(id));
        let mut seen = std::collections::HashSet::new();
        for v in &self.vaults {
            if !has_sub(&v.subscription_id) {
                return Err(ScenarioError::Invalid(format!("vault {} names unknown subscription {}", v.name, v.subscription_id)));
            }
            if !seen.insert(format!("v/{}/{}/{}", v.subscription_id, v.resource_group, v.name).to_ascii_lowercase()) {
                return Err(ScenarioError::Invalid(format!("vault {} is declared twice", v.name)));
            }
            let mut names = std::collections::HashSet::new();
            for p in &v.policies {
                if !names.insert(p.name.to_ascii_lowercase()) {
                    return Err(ScenarioError::Invalid(format!("policy {} is declared twice in vault {}", p.name, v.name)));
                }
            }
        }
        for vm in &self.virtual_machines {
            if !has_sub(&vm.subscription_id) {
                return Err(ScenarioError::Invalid(format!("VM {} names unknown subscription {}", vm.name, vm.subscription_id)));
            }
            if !seen.insert(format!("m/{}/{}/{}", vm.subscription_id, vm.resource_group, vm.name).to_ascii_lowercase()) {
                return Err(ScenarioError::Invalid(format!("VM {} is declared twice", vm.name)));
            }
            if vm.name.is_empty() || vm.name.contains(['/', ';']) {
                return Err(ScenarioError::Invalid(format!("VM name {:?} is not a valid Azure VM name", vm.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sqlvm-scn-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn toml_and_json_scenarios_load_alike() {
        let toml = r#"
[[subscriptions]]
id = "11111111-2222-3333-4444-555555555555"

[[vaults]]
subscriptionId = "11111111-2222-3333-4444-555555555555"
resourceGroup = "rg"
name = "v"
location = "westeurope"
policies = [{ name = "P", logFrequencyMinutes = 60 }]

[[virtualMachines]]
subscriptionId = "11111111-2222-3333-4444-555555555555"
resourceGroup = "rg-sql"
name = "sql1"
location = "westeurope"
conditions = { discoverableAfterRefreshes = 2 }
sqlInstances = [{ name = "MSSQLSERVER", databases = [{ name = "db1", recoveryModel = "Simple" }] }]
"#;
        let p = write("a.toml", toml);
        let s = Scenario::load(&p).unwrap();
        assert_eq!(s.vaults[0].policies[0].kind, "AzureWorkload");
        assert_eq!(s.virtual_machines[0].conditions.discoverable_after_refreshes, Some(2));
        assert_eq!(s.virtual_machines[0].sql_instances[0].databases[0].recovery_model, "Simple");
        let j = write("a.json", &serde_json::to_string(&s).unwrap());
        assert_eq!(Scenario::load(&j).unwrap().virtual_machines[0].name, "sql1");
        let _ = (std::fs::remove_file(p), std::fs::remove_file(j));
    }

    #[test]
    fn inconsistent_scenarios_are_refused_with_a_reason() {
        let p = write("bad.json", r#"{"vaults":[{"subscriptionId":"x","resourceGroup":"r","name":"v","location":"l"}]}"#);
        assert!(Scenario::load(&p).unwrap_err().to_string().contains("unknown subscription"));
        let p2 = write("typo.json", r#"{"virtualMachine": []}"#);
        assert!(Scenario::load(&p2).unwrap_err().to_string().contains("virtualMachine"));
        let _ = (std::fs::remove_file(p), std::fs::remove_file(p2));
    }
}

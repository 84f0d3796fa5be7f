//! Generated worlds for load tests and benchmarks: N VMs × M databases spread over several
//! subscriptions and vaults, deterministic for a given set of parameters.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::scenario::{DatabaseSpec, PolicySpec, Scenario, SqlInstanceSpec, SubscriptionSpec, VaultSpec, VmSpec};

/// What to generate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FleetSpec {
    pub subscriptions: usize,
    /// Vaults per subscription; VMs are spread over them by region.
    pub vaults_per_subscription: usize,
    pub vms: usize,
    pub databases_per_vm: usize,
    /// Every `n`th database uses the SIMPLE recovery model (0: none).
    pub simple_every: usize,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec { subscriptions: 2, vaults_per_subscription: 2, vms: 10, databases_per_vm: 5, simple_every: 0 }
    }
}

const REGIONS: &[&str] = &["westeurope", "northeurope", "eastus", "westus2", "southeastasia", "uksouth"];

/// Build the scenario. VM `i` lives in subscription `i % subscriptions` and in the region of
/// vault `(i / subscriptions) % vaults_per_subscription` of that subscription.
pub fn generate(spec: &FleetSpec) -> Scenario {
    let subs = spec.subscriptions.max(1);
    let vps = spec.vaults_per_subscription.clamp(1, REGIONS.len());
    let sub_id = |s: usize| format!("{:08x}-0000-4000-8000-{:012x}", s + 1, s + 1);
    let mut scenario = Scenario::default();
    for s in 0..subs {
        scenario.subscriptions.push(SubscriptionSpec { id: sub_id(s), resource_groups: vec![] });
        for region in REGIONS.iter().take(vps) {
            scenario.vaults.push(VaultSpec {
                subscription_id: sub_id(s),
                resource_group: "rg-backup".into(),
                name: format!("rsv-{region}"),
                location: (*region).into(),
                policies: vec![PolicySpec {
                    name: "SqlDaily".into(),
                    kind: "AzureWorkload".into(),
                    full_time: "02:00".into(),
                    full_retention_days: 30,
                    differential_day: Some("Sunday".into()),
                    differential_retention_days: 30,
                    log_frequency_minutes: Some(60),
                    log_retention_days: 15,
                }],
            });
        }
    }
    for i in 0..spec.vms {
        let s = i % subs;
        let v = (i / subs) % vps;
        let databases = (0..spec.databases_per_vm)
            .map(|d| {
                let mut db = DatabaseSpec::new(&format!("db{d:03}"));
                if spec.simple_every > 0 && (i * spec.databases_per_vm + d).is_multiple_of(spec.simple_every) {
                    db.recovery_model = "Simple".into();
                }
                db
            })
            .collect();
        let mut tags = BTreeMap::new();
        tags.insert("backup-policy".to_string(), "SqlDaily".to_string());
        scenario.virtual_machines.push(VmSpec {
            subscription_id: sub_id(s),
            resource_group: format!("rg-sql-{:03}", i % 100),
            name: format!("sqlvm-{i:05}"),
            location: REGIONS[v].into(),
            tags,
            provisioning_state: "Succeeded".into(),
            fqdn: None,
            sql_instances: vec![SqlInstanceSpec { name: "MSSQLSERVER".into(), databases }],
            conditions: Default::default(),
        });
    }
    scenario
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_is_consistent_and_sized() {
        let s = generate(&FleetSpec { subscriptions: 3, vaults_per_subscription: 2, vms: 30, databases_per_vm: 4, simple_every: 5 });
        s.validate().unwrap();
        assert_eq!(s.vaults.len(), 6);
        assert_eq!(s.virtual_machines.len(), 30);
        assert_eq!(s.virtual_machines.iter().map(|v| v.sql_instances[0].databases.len()).sum::<usize>(), 120);
        // Every VM has a vault in its subscription and region.
        for vm in &s.virtual_machines {
            assert!(s.vaults.iter().any(|v| v.subscription_id == vm.subscription_id && v.location == vm.location));
        }
    }
}

//! The simulated service's state and the rules that change it.
//!
//! Everything here is synchronous and clock-driven: a request handler passes `now`, the world
//! first applies every completion that became due ([`World::tick`]), then answers. Completions
//! are kept in a time-ordered map, so the cost of time passing is proportional to what finishes,
//! not to the size of the fleet. Nothing in this module knows HTTP; errors are [`ArmError`] values
//! that the `arm` layer turns into answers.

pub mod model;
pub mod operations;
pub mod render;

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::ArmError;
use crate::names::key;
use crate::scenario::{Scenario, VmSpec};
use crate::settings::Settings;
pub use model::*;

/// Something that happens at a given time.
#[derive(Debug, Clone)]
enum Event {
    CompleteOperation(String),
    FinishJob { vault_key: String, job_id: String },
}

/// The whole simulated world.
pub struct World {
    pub settings: Settings,
    pub subscriptions: BTreeMap<String, Subscription>,
    pub vms: BTreeMap<String, Vm>,
    pub vaults: BTreeMap<String, Vault>,
    pub operations: HashMap<String, Operation>,
    /// Due events keyed by (milliseconds since epoch, sequence number).
    events: BTreeMap<(i64, u64), Event>,
    seq: u64,
    /// Counter feeding `protectedItemDataSourceId` and recovery point ids.
    next_number: u64,
    /// Which vault each VM is registered to (VM key -> vault key): one vault per VM.
    pub registered_to: HashMap<String, String>,
}

impl World {
    /// Build the world a scenario describes.
    pub fn from_scenario(scenario: &Scenario) -> World {
        let mut world = World {
            settings: scenario.settings.clone(),
            subscriptions: BTreeMap::new(),
            vms: BTreeMap::new(),
            vaults: BTreeMap::new(),
            operations: HashMap::new(),
            events: BTreeMap::new(),
            seq: 0,
            next_number: 17_592_741_727_863,
            registered_to: HashMap::new(),
        };
        for s in &scenario.subscriptions {
            let sub = world
                .subscriptions
                .entry(key(&s.id))
                .or_insert_with(|| Subscription { id: s.id.clone(), resource_groups: BTreeSet::new() });
            sub.resource_groups.extend(s.resource_groups.iter().map(|g| key(g)));
        }
        for v in &scenario.vaults {
            world.ensure_resource_group(&v.subscription_id, &v.resource_group);
            let vault = Vault {
                subscription_id: world.subscription_display(&v.subscription_id),
                resource_group: v.resource_group.clone(),
                name: v.name.clone(),
                location: v.location.clone(),
                policies: v.policies.clone(),
                refreshes_seen: HashMap::new(),
                discovered: BTreeSet::new(),
                containers: BTreeMap::new(),
                items: BTreeMap::new(),
                intents: BTreeMap::new(),
                jobs: Vec::new(),
                job_index: HashMap::new(),
            };
            world.vaults.insert(key(&vault.id()), vault);
        }
        for vm in &scenario.virtual_machines {
            // Validated scenarios never fail here; a duplicate is simply replaced.
            let _ = world.add_vm(vm);
        }
        world
    }

    fn subscription_display(&self, id: &str) -> String {
        self.subscriptions.get(&key(id)).map(|s| s.id.clone()).unwrap_or_else(|| id.to_string())
    }

    fn ensure_resource_group(&mut self, sub: &str, rg: &str) {
        if let Some(s) = self.subscriptions.get_mut(&key(sub)) {
            s.resource_groups.insert(key(rg));
        }
    }

    /// Add (or replace) a VM, as a deployment would. Fails for an unknown subscription.
    pub fn add_vm(&mut self, spec: &VmSpec) -> Result<String, ArmError> {
        if !self.subscriptions.contains_key(&key(&spec.subscription_id)) {
            return Err(ArmError::not_found(
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", spec.subscription_id),
            ));
        }
        self.ensure_resource_group(&spec.subscription_id, &spec.resource_group);
        let vm = Vm {
            subscription_id: self.subscription_display(&spec.subscription_id),
            resource_group: spec.resource_group.clone(),
            name: spec.name.clone(),
            location: spec.location.clone(),
            tags: spec.tags.clone(),
            provisioning_state: spec.provisioning_state.clone(),
            fqdn: spec.fqdn.clone().unwrap_or_else(|| format!("{}.contoso.com", spec.name)),
            vm_guid: uuid::Uuid::new_v4().to_string(),
            instances: spec.sql_instances.iter().map(|i| SqlInstance { name: i.name.clone(), databases: i.databases.clone() }).collect(),
            conditions: spec.conditions.clone(),
        };
        let id = vm.id();
        self.vms.insert(key(&id), vm);
        Ok(id)
    }

    /// Apply every completion due at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        let now_ms = now.timestamp_millis();
        while let Some((&(at, seq), _)) = self.events.first_key_value() {
            if at > now_ms {
                break;
            }
            let Some(event) = self.events.remove(&(at, seq)) else { break };
            let when = DateTime::<Utc>::from_timestamp_millis(at).unwrap_or(now);
            match event {
                Event::CompleteOperation(op_id) => self.complete_operation(&op_id, when),
                Event::FinishJob { vault_key, job_id } => self.finish_job(&vault_key, &job_id, when),
            }
        }
    }

    fn schedule(&mut self, at: DateTime<Utc>, event: Event) {
        self.seq += 1;
        self.events.insert((at.timestamp_millis(), self.seq), event);
    }

    fn next_number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number
    }

    pub fn vault(&self, vault_key: &str) -> Option<&Vault> {
        self.vaults.get(vault_key)
    }

    pub fn vault_mut(&mut self, vault_key: &str) -> Option<&mut Vault> {
        self.vaults.get_mut(vault_key)
    }

    /// VMs a vault can see: same subscription and region (the service requires both).
    pub fn vms_visible_to<'a>(&'a self, vault: &'a Vault) -> impl Iterator<Item = (&'a String, &'a Vm)> + 'a {
        self.vms.iter().filter(move |(_, vm)| {
            vm.subscription_id.eq_ignore_ascii_case(&vault.subscription_id) && vm.location.eq_ignore_ascii_case(&vault.location)
        })
    }

    /// Protectable containers of a vault: discovered, not registered anywhere.
    pub fn protectable_containers(&self, vault_key: &str) -> Vec<&Vm> {
        let Some(vault) = self.vaults.get(vault_key) else { return vec![] };
        vault
            .discovered
            .iter()
            .filter(|vm_key| !self.registered_to.contains_key(*vm_key))
            .filter_map(|vm_key| self.vms.get(vm_key))
            .collect()
    }

    /// A backup job runs on this item right now.
    pub fn running_backup(&self, vault_key: &str, item: &(String, String)) -> Option<&Job> {
        let vault = self.vaults.get(vault_key)?;
        vault.jobs.iter().rev().find(|j| j.status.is_running() && j.backup_type.is_some() && j.item.as_ref() == Some(item))
    }
}

/// A new GUID, as the service uses for operations and jobs.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

//! Long-running operations and jobs: how each one starts, what it checks, and what it changes
//! when it completes (azure-backup-api.md §3–§5).

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::names::{self, key};

/// What the caller of a start function gets back.
pub struct Started {
    pub op_id: String,
}

fn ms(v: u64) -> Duration {
    Duration::milliseconds(v.min(i64::MAX as u64 / 2) as i64)
}

impl World {
    fn new_operation(
        &mut self,
        vault_key: &str,
        kind: OpKind,
        scope: OpScope,
        api_version: &str,
        now: DateTime<Utc>,
        takes: Duration,
    ) -> String {
        let id = new_guid();
        let op = Operation {
            id: id.clone(),
            vault_key: vault_key.to_string(),
            kind,
            scope,
            start: now,
            end: None,
            status: OpStatus::InProgress,
            job_id: None,
            api_version: api_version.to_string(),
            pending_item: None,
        };
        self.operations.insert(key(&id), op);
        self.schedule(now + takes, Event::CompleteOperation(key(&id)));
        id
    }

    fn new_job(&mut self, vault_key: &str, operation: &str, entity: String, item: Option<(String, String)>, now: DateTime<Utc>) -> String {
        let id = new_guid();
        let job = Job {
            id: id.clone(),
            operation: operation.to_string(),
            status: JobStatus::InProgress,
            entity_friendly_name: entity,
            start: now,
            end: None,
            activity_id: new_guid(),
            item,
            backup_type: None,
            error: None,
            planned_error: None,
            retention_until: None,
            cancellable: false,
        };
        if let Some(vault) = self.vaults.get_mut(vault_key) {
            vault.job_index.insert(key(&id), vault.jobs.len());
            vault.jobs.push(job);
        }
        id
    }

    /// A job that is over as soon as it starts (configure, register ...).
    fn instant_job(
        &mut self,
        vault_key: &str,
        operation: &str,
        entity: String,
        item: Option<(String, String)>,
        now: DateTime<Utc>,
        error: Option<JobError>,
    ) -> String {
        let id = self.new_job(vault_key, operation, entity, item, now);
        if let Some(job) = self.vaults.get_mut(vault_key).and_then(|v| v.job_mut(&id)) {
            job.end = Some(now);
            job.status = if error.is_some() { JobStatus::Failed } else { JobStatus::Completed };
            job.error = error;
        }
        id
    }

    fn db_entity(&self, vm_key: &str, instance: &str, db: &str) -> String {
        let fqdn = self.vms.get(vm_key).map(|v| v.fqdn.as_str()).unwrap_or("unknown");
        format!("{instance}/{db} [{fqdn}]")
    }

    // ----- refresh -------------------------------------------------------------------------

    pub fn start_refresh(&mut self, vault_key: &str, api_version: &str, now: DateTime<Utc>) -> Started {
        let takes = ms(self.settings.timings.refresh_ms);
        Started { op_id: self.new_operation(vault_key, OpKind::Refresh, OpScope::Fabric, api_version, now, takes) }
    }

    fn complete_refresh(&mut self, vault_key: &str) {
        let Some(vault) = self.vaults.get(vault_key) else { return };
        let eligible: Vec<(String, u32, bool)> = self
            .vms_visible_to(vault)
            .map(|(k, vm)| (k.clone(), vm.conditions.discoverable_after_refreshes.unwrap_or(1).max(1), vm.conditions.never_discoverable))
            .collect();
        let Some(vault) = self.vaults.get_mut(vault_key) else { return };
        for (vm_key, needed, never) in eligible {
            let seen = vault.refreshes_seen.entry(vm_key.clone()).or_insert(0);
            *seen += 1;
            if *seen >= needed && !never {
                vault.discovered.insert(vm_key);
            }
        }
    }

    // ----- containers ----------------------------------------------------------------------

    /// Register (or re-register) the container named in the path.
    pub fn start_register(
        &mut self,
        vault_key: &str,
        container_name: &str,
        source_resource_id: Option<&str>,
        reregister: bool,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        let c_key = key(container_name);
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        // The container must name a VM the vault discovered (or one already registered here).
        let vm_key = match vault.containers.get(&c_key) {
            Some(c) => c.vm_key.clone(),
            None => vault
                .discovered
                .iter()
                .find(|k| self.vms.get(*k).is_some_and(|vm| key(&vm.container_name()) == c_key))
                .cloned()
                .ok_or_else(|| {
                    ArmError::bad_request(
                        "BMSUserErrorContainerNotDiscovered",
                        format!("Container '{container_name}' is not discovered by vault '{}'. Run refreshContainers and take the container name from protectableContainers.", vault.name),
                    )
                })?,
        };
        if let Some(other) = self.registered_to.get(&vm_key)
            && other != vault_key
        {
            let other_name = self.vaults.get(other).map(|v| v.name.clone()).unwrap_or_default();
            return Err(ArmError::bad_request(
                "BMSUserErrorContainerAlreadyRegisteredToAnotherVault",
                format!("The virtual machine is already registered with vault '{other_name}'. Unregister it there first."),
            ));
        }
        let vm = self.vms.get(&vm_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "VM no longer exists"))?;
        if let Some(src) = source_resource_id {
            // The service takes the VM id; the seed document sends the vault-side protectable
            // container path instead and the service accepts that too.
            let ok = src.eq_ignore_ascii_case(&vm.id()) || key(src).ends_with(&format!("/protectablecontainers/{c_key}"));
            if !ok {
                return Err(ArmError::invalid_input(format!(
                    "sourceResourceId '{src}' does not identify the virtual machine of container '{container_name}'."
                )));
            }
        }
        let canonical = vm.container_name();
        let vault = self.vaults.get_mut(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        let existing = vault.containers.get(&c_key).map(|c| c.registration);
        // Re-registration repairs a registered container (extension rot, VM changes); there is
        // nothing to re-register before a first registration.
        if reregister && existing != Some(Registration::Registered) {
            return Err(container_not_found(container_name));
        }
        if existing.is_none() {
            vault.containers.insert(
                c_key.clone(),
                Container {
                    name: canonical,
                    vm_key: vm_key.clone(),
                    registration: Registration::Registering,
                    last_updated: now,
                    inquiry: None,
                    inquired: BTreeSet::new(),
                },
            );
        }
        self.registered_to.insert(vm_key, vault_key.to_string());
        let takes = ms(self.settings.timings.register_ms);
        let op_id = self.new_operation(
            vault_key,
            OpKind::Register { container_key: c_key.clone() },
            OpScope::Container(c_key),
            api_version,
            now,
            takes,
        );
        Ok(Started { op_id })
    }

    fn complete_register(&mut self, op_id: &str, vault_key: &str, c_key: &str, now: DateTime<Utc>) {
        let Some(vm_key) = self.vaults.get(vault_key).and_then(|v| v.containers.get(c_key)).map(|c| c.vm_key.clone()) else {
            self.fail_op(op_id, 404, "BMSUserErrorContainerNotFound", "The container no longer exists.", now);
            return;
        };
        let failure = self.vms.get(&vm_key).and_then(|vm| vm.conditions.registration_fails.clone());
        let entity = self.vms.get(&vm_key).map(|v| v.name.clone()).unwrap_or_default();
        if let Some(f) = failure {
            if let Some(vault) = self.vaults.get_mut(vault_key)
                && vault.containers.get(c_key).is_some_and(|c| c.registration == Registration::Registering)
            {
                vault.containers.remove(c_key);
                self.registered_to.remove(&vm_key);
            }
            let err = JobError::from_spec(&f);
            let job = self.instant_job(vault_key, "Register", entity, None, now, Some(err.clone()));
            self.set_op_job(op_id, &job);
            self.fail_op(op_id, 400, &f.code, &err.message, now);
            return;
        }
        if let Some(c) = self.vaults.get_mut(vault_key).and_then(|v| v.containers.get_mut(c_key)) {
            c.registration = Registration::Registered;
            c.last_updated = now;
        }
        let job = self.instant_job(vault_key, "Register", entity, None, now, None);
        self.set_op_job(op_id, &job);
        // Registration installs the workload extension, which runs a first inquiry.
        self.run_inquiry(vault_key, c_key, now);
        self.succeed_op(op_id, now);
    }

    pub fn start_unregister(
        &mut self,
        vault_key: &str,
        container_name: &str,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        let c_key = key(container_name);
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        if !vault.containers.contains_key(&c_key) {
            return Err(container_not_found(container_name));
        }
        if vault.items.keys().any(|(c, _)| *c == c_key) {
            return Err(ArmError::bad_request(
                "BMSUserErrorContainerHasDatasources",
                "The container has protected data sources. Stop protection and delete backup data of every item before unregistering it.",
            ));
        }
        let takes = ms(self.settings.timings.unregister_ms);
        let op_id = self.new_operation(
            vault_key,
            OpKind::Unregister { container_key: c_key.clone() },
            OpScope::Container(c_key),
            api_version,
            now,
            takes,
        );
        Ok(Started { op_id })
    }

    fn complete_unregister(&mut self, op_id: &str, vault_key: &str, c_key: &str, now: DateTime<Utc>) {
        let removed = self.vaults.get_mut(vault_key).and_then(|v| v.containers.remove(c_key));
        if let Some(c) = removed {
            self.registered_to.remove(&c.vm_key);
            let entity = self.vms.get(&c.vm_key).map(|v| v.name.clone()).unwrap_or_default();
            let job = self.instant_job(vault_key, "UnRegister", entity, None, now, None);
            self.set_op_job(op_id, &job);
        }
        self.succeed_op(op_id, now);
    }

    pub fn start_inquire(
        &mut self,
        vault_key: &str,
        container_name: &str,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        let c_key = key(container_name);
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        match vault.containers.get(&c_key) {
            Some(c) if c.registration == Registration::Registered => {}
            _ => return Err(container_not_found(container_name)),
        }
        let takes = ms(self.settings.timings.inquire_ms);
        let op_id = self.new_operation(
            vault_key,
            OpKind::Inquire { container_key: c_key.clone() },
            OpScope::Container(c_key),
            api_version,
            now,
            takes,
        );
        Ok(Started { op_id })
    }

    /// Look inside the VM: record the databases, or the sysadmin failure. Returns the failure.
    fn run_inquiry(&mut self, vault_key: &str, c_key: &str, now: DateTime<Utc>) -> Option<(String, String)> {
        let vm_key = self.vaults.get(vault_key)?.containers.get(c_key)?.vm_key.clone();
        let vm = self.vms.get(&vm_key)?;
        let (inquiry, found) = if vm.conditions.backup_service_lacks_sysadmin {
            let msg = "Azure Backup service does not have sufficient permissions on SQL Server: NT Service\\AzureWLBackupPluginSvc is not a member of the sysadmin role on every instance.".to_string();
            (Inquiry { status: "Failed", error: Some(("UserErrorSQLNoSysadminMembership".into(), msg)), item_count: 0 }, BTreeSet::new())
        } else {
            let found: BTreeSet<(String, String)> =
                vm.instances.iter().flat_map(|i| i.databases.iter().map(move |d| (key(&i.name), key(&d.name)))).collect();
            (Inquiry { status: "Success", error: None, item_count: found.len() }, found)
        };
        let failure = inquiry.error.clone();
        if let Some(c) = self.vaults.get_mut(vault_key).and_then(|v| v.containers.get_mut(c_key)) {
            c.inquiry = Some(inquiry);
            if failure.is_none() {
                c.inquired = found;
            }
            c.last_updated = now;
        }
        if failure.is_none() {
            self.apply_intents(vault_key, c_key, now);
        }
        failure
    }

    fn complete_inquire(&mut self, op_id: &str, vault_key: &str, c_key: &str, now: DateTime<Utc>) {
        match self.run_inquiry(vault_key, c_key, now) {
            Some((code, message)) => self.fail_op(op_id, 400, &code, &message, now),
            None => self.succeed_op(op_id, now),
        }
    }

    // ----- protected items -----------------------------------------------------------------

    /// Check a configure request and build the item it would create (no change yet).
    pub fn plan_item(&self, vault_key: &str, container_name: &str, item_name: &str, policy_id: &str) -> Result<ProtectedItem, ArmError> {
        let c_key = key(container_name);
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        let container = vault
            .containers
            .get(&c_key)
            .filter(|c| c.registration == Registration::Registered)
            .ok_or_else(|| container_not_found(container_name))?;
        let (inst_key, db_key) = names::parse_db_item_name(item_name).ok_or_else(|| ArmError::invalid_input(format!("'{item_name}' is not a SQL database item name (SQLDataBase;<instance>;<database>). Take item names from backupProtectableItems.")))?;
        if !container.inquired.contains(&(inst_key.clone(), db_key.clone())) {
            return Err(ArmError::not_found(
                "BMSUserErrorProtectableItemNotFound",
                format!(
                    "Item '{item_name}' was not found in container '{container_name}'. Run inquire on the container and list backupProtectableItems."
                ),
            ));
        }
        let policy_name = self.check_policy(vault, policy_id)?;
        let vm = self.vms.get(&container.vm_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "VM no longer exists"))?;
        let (inst, db) = vm.find_db(&inst_key, &db_key).ok_or_else(|| {
            ArmError::not_found("BMSUserErrorProtectableItemNotFound", format!("Database '{item_name}' no longer exists on the VM."))
        })?;
        let existing = vault.items.get(&(c_key.clone(), key(&names::protected_db_name(&inst.name, &db.name))));
        Ok(ProtectedItem {
            name: names::protected_db_name(&inst.name, &db.name),
            container_key: c_key,
            vm_key: container.vm_key.clone(),
            instance: inst.name.clone(),
            database: db.name.clone(),
            policy_id: policy_id.to_string(),
            policy_name: Some(policy_name),
            state: existing
                .map(|e| {
                    if e.state == ItemState::ProtectionStopped {
                        if e.has_full { ItemState::Protected } else { ItemState::IrPending }
                    } else {
                        e.state
                    }
                })
                .unwrap_or(ItemState::IrPending),
            last_backup_status: existing.map(|e| e.last_backup_status).unwrap_or("IRPending"),
            last_backup_time: existing.and_then(|e| e.last_backup_time),
            last_backup_error: existing.and_then(|e| e.last_backup_error.clone()),
            datasource_id: existing.map(|e| e.datasource_id.clone()).unwrap_or_default(),
            has_full: existing.is_some_and(|e| e.has_full),
            recovery_points: existing.map(|e| e.recovery_points.clone()).unwrap_or_default(),
            log_range: existing.and_then(|e| e.log_range),
            recovery_model: db.recovery_model.clone(),
        })
    }

    /// `policyId` must name an AzureWorkload policy of this vault; returns the policy name.
    fn check_policy(&self, vault: &Vault, policy_id: &str) -> Result<String, ArmError> {
        let prefix = format!("{}/backuppolicies/", key(&vault.id()));
        let p_key = key(policy_id);
        let name = p_key.strip_prefix(&prefix).filter(|n| !n.is_empty() && !n.contains('/')).ok_or_else(|| {
            ArmError::new(
                404,
                "BMSUserErrorPolicyNotFound",
                format!("policyId '{policy_id}' does not name a backup policy of vault '{}'.", vault.name),
            )
        })?;
        let policy = vault.policy(name).ok_or_else(|| {
            ArmError::new(404, "BMSUserErrorPolicyNotFound", format!("Policy '{name}' does not exist in vault '{}'.", vault.name))
        })?;
        if !policy.kind.eq_ignore_ascii_case("AzureWorkload") {
            return Err(ArmError::bad_request(
                "BMSUserErrorInvalidPolicyType",
                format!("Policy '{}' is a {} policy; SQL databases need an AzureWorkload policy.", policy.name, policy.kind),
            ));
        }
        Ok(policy.name.clone())
    }

    pub fn start_configure(&mut self, vault_key: &str, mut item: ProtectedItem, api_version: &str, now: DateTime<Utc>) -> Started {
        if item.datasource_id.is_empty() {
            item.datasource_id = self.next_number().to_string();
        }
        let (c_key, i_key) = (item.container_key.clone(), key(&item.name));
        let takes = ms(self.settings.timings.configure_ms);
        let op_id = self.new_operation(
            vault_key,
            OpKind::Configure { container_key: c_key.clone(), item_key: i_key.clone() },
            OpScope::Item(c_key, i_key),
            api_version,
            now,
            takes,
        );
        if let Some(op) = self.operations.get_mut(&key(&op_id)) {
            op.pending_item = Some(item);
        }
        Started { op_id }
    }

    fn complete_configure(&mut self, op_id: &str, vault_key: &str, now: DateTime<Utc>) {
        let Some(item) = self.operations.get_mut(&key(op_id)).and_then(|o| o.pending_item.take()) else { return };
        let entity = self.db_entity(&item.vm_key, &item.instance, &item.database);
        let ik = (item.container_key.clone(), key(&item.name));
        if let Some(vault) = self.vaults.get_mut(vault_key) {
            vault.items.insert(ik.clone(), item);
        }
        let job = self.instant_job(vault_key, "ConfigureBackup", entity, Some(ik), now, None);
        self.set_op_job(op_id, &job);
        self.succeed_op(op_id, now);
    }

    /// Find a protected item by the names in a path.
    pub fn item(&self, vault_key: &str, container_name: &str, item_name: &str) -> Result<&ProtectedItem, ArmError> {
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        vault.items.get(&(key(container_name), key(item_name))).ok_or_else(|| item_not_found(item_name))
    }

    pub fn start_stop(
        &mut self,
        vault_key: &str,
        container_name: &str,
        item_name: &str,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        self.item(vault_key, container_name, item_name)?;
        let (c_key, i_key) = (key(container_name), key(item_name));
        let takes = ms(self.settings.timings.configure_ms);
        Ok(Started {
            op_id: self.new_operation(
                vault_key,
                OpKind::Stop { container_key: c_key.clone(), item_key: i_key.clone() },
                OpScope::Item(c_key, i_key),
                api_version,
                now,
                takes,
            ),
        })
    }

    pub fn start_delete(
        &mut self,
        vault_key: &str,
        container_name: &str,
        item_name: &str,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        self.item(vault_key, container_name, item_name)?;
        let (c_key, i_key) = (key(container_name), key(item_name));
        let takes = ms(self.settings.timings.delete_ms);
        Ok(Started {
            op_id: self.new_operation(
                vault_key,
                OpKind::Delete { container_key: c_key, item_key: i_key },
                OpScope::Vault,
                api_version,
                now,
                takes,
            ),
        })
    }

    fn complete_stop_or_delete(&mut self, op_id: &str, vault_key: &str, ik: (String, String), delete: bool, now: DateTime<Utc>) {
        let Some(vault) = self.vaults.get_mut(vault_key) else { return };
        let entity_parts = vault.items.get(&ik).map(|i| (i.vm_key.clone(), i.instance.clone(), i.database.clone()));
        if delete {
            vault.items.remove(&ik);
        } else if let Some(item) = vault.items.get_mut(&ik) {
            item.state = ItemState::ProtectionStopped;
            item.policy_id = String::new();
            item.policy_name = None;
        }
        if let Some((vm, inst, db)) = entity_parts {
            let entity = self.db_entity(&vm, &inst, &db);
            let job = self.instant_job(vault_key, if delete { "DeleteBackupData" } else { "DisableBackup" }, entity, Some(ik), now, None);
            self.set_op_job(op_id, &job);
        }
        self.succeed_op(op_id, now);
    }

    // ----- backups -------------------------------------------------------------------------

    /// Trigger an on-demand backup. Request-level checks give HTTP errors; the rules the
    /// service applies later (parent Full, recovery model, conflicts) fail the job instead.
    #[allow(clippy::too_many_arguments)] // one argument per field of the service's request
    pub fn start_backup(
        &mut self,
        vault_key: &str,
        container_name: &str,
        item_name: &str,
        backup_type: BackupType,
        expiry: Option<DateTime<Utc>>,
        api_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Started, ArmError> {
        let item = self.item(vault_key, container_name, item_name)?.clone();
        if item.state == ItemState::ProtectionStopped {
            return Err(ArmError::bad_request(
                "BMSUserErrorProtectionStopped",
                format!("Protection of '{}' is stopped; resume protection before taking a backup.", item.name),
            ));
        }
        let retention = match backup_type {
            BackupType::Full => {
                let until = expiry.unwrap_or(now + Duration::days(45));
                if until < now + Duration::days(45) - Duration::minutes(5) || until > now + Duration::days(99 * 366) {
                    return Err(ArmError::bad_request(
                        "BMSUserErrorInvalidRetention",
                        "An on-demand Full backup must be retained for at least 45 days and at most 99 years (recoveryPointExpiryTimeInUTC).",
                    ));
                }
                Some(until)
            }
            BackupType::CopyOnlyFull => Some(expiry.unwrap_or(now + Duration::days(30))),
            // Retention of Differential and Log follows the policy; an expiry is ignored.
            BackupType::Differential | BackupType::Log => None,
        };
        let ik = (item.container_key.clone(), key(&item.name));
        let vm = self.vms.get(&item.vm_key).cloned();
        let db_spec = vm.as_ref().and_then(|vm| vm.find_db(&item.instance, &item.database).map(|(_, d)| d.clone()));
        let is_master = item.database.eq_ignore_ascii_case("master");
        // Refusals of the request itself end the job at once; a scripted failure (backup_fails)
        // fails after the job has run its course, as a real transfer failure would.
        let refusal = if self.running_backup(vault_key, &ik).is_some() {
            Some(JobError {
                error_code: 510008,
                title: "OperationCancelledBecauseConflictingOperationRunningUserError".into(),
                message: "Operation canceled as a conflicting operation was already running on the same database.".into(),
                recommendations: vec!["Please try again after sometime.".into()],
            })
        } else if matches!(backup_type, BackupType::Differential | BackupType::Log) && !item.has_full {
            Some(JobError {
                error_code: 590012,
                title: "UserErrorParentFullBackupMissing".into(),
                message: "The parent full backup for this differential or log backup is missing.".into(),
                recommendations: vec!["Trigger a full backup and retry.".into()],
            })
        } else if (backup_type == BackupType::Log && item.recovery_model.eq_ignore_ascii_case("Simple"))
            || (is_master && matches!(backup_type, BackupType::Differential | BackupType::Log))
        {
            Some(JobError {
                error_code: 590013,
                title: "UserErrorSQLPODoesNotSupportBackupType".into(),
                message: format!(
                    "The database does not support {} backups (recovery model {}).",
                    backup_type.as_str(),
                    item.recovery_model
                ),
                recommendations: vec!["Use a backup type the database supports.".into()],
            })
        } else {
            None
        };
        let immediate_failure = refusal.is_some();
        let planned_error = refusal.or_else(|| db_spec.as_ref().and_then(|d| d.backup_fails.as_ref()).map(JobError::from_spec));
        let entity = self.db_entity(&item.vm_key, &item.instance, &item.database);
        let job_id = self.new_job(vault_key, backup_type.job_operation(), entity, Some(ik.clone()), now);
        let job_ms = match backup_type {
            BackupType::Full | BackupType::CopyOnlyFull => self.settings.timings.full_backup_job_ms,
            BackupType::Differential => self.settings.timings.differential_backup_job_ms,
            BackupType::Log => self.settings.timings.log_backup_job_ms,
        };
        if let Some(job) = self.vaults.get_mut(vault_key).and_then(|v| v.job_mut(&job_id)) {
            job.backup_type = Some(backup_type);
            job.retention_until = retention;
            job.cancellable = true;
            job.planned_error = planned_error;
        }
        let op_ms = self.settings.timings.backup_operation_ms;
        let finish_at = now + ms(op_ms) + if immediate_failure { Duration::zero() } else { ms(job_ms) };
        self.schedule(finish_at, Event::FinishJob { vault_key: vault_key.to_string(), job_id: job_id.clone() });
        let op_id = self.new_operation(
            vault_key,
            OpKind::Backup { container_key: ik.0.clone(), item_key: ik.1.clone() },
            OpScope::Item(ik.0, ik.1),
            api_version,
            now,
            ms(op_ms),
        );
        if let Some(op) = self.operations.get_mut(&key(&op_id)) {
            op.job_id = Some(job_id);
        }
        Ok(Started { op_id })
    }

    pub(super) fn finish_job(&mut self, vault_key: &str, job_id: &str, now: DateTime<Utc>) {
        let number = self.next_number();
        let Some(vault) = self.vaults.get_mut(vault_key) else { return };
        let Some(job) = vault.job_mut(job_id) else { return };
        if !job.status.is_running() {
            return;
        }
        job.end = Some(now);
        job.cancellable = false;
        if job.status == JobStatus::Cancelling {
            job.status = JobStatus::Cancelled;
            return;
        }
        let (item_key, backup_type, error) = (job.item.clone(), job.backup_type, job.planned_error.take());
        if let Some(err) = error {
            job.status = JobStatus::Failed;
            job.error = Some(err.clone());
            if let Some(item) = item_key.and_then(|k| vault.items.get_mut(&k))
                && err.error_code != 510008
            {
                item.last_backup_status = "Unhealthy";
                item.last_backup_error = Some((err.title.clone(), err.message.clone()));
            }
            return;
        }
        job.status = JobStatus::Completed;
        let (Some(ik), Some(bt)) = (item_key, backup_type) else { return };
        let Some(item) = vault.items.get_mut(&ik) else { return };
        item.last_backup_status = "Healthy";
        item.last_backup_time = Some(now);
        item.last_backup_error = None;
        match bt {
            BackupType::Full => {
                item.has_full = true;
                if item.state == ItemState::IrPending {
                    item.state = ItemState::Protected;
                }
                item.recovery_points.push(RecoveryPoint { id: number.to_string(), time: now, kind: "Full" });
            }
            BackupType::CopyOnlyFull => item.recovery_points.push(RecoveryPoint { id: number.to_string(), time: now, kind: "Full" }),
            BackupType::Differential => {
                item.recovery_points.push(RecoveryPoint { id: number.to_string(), time: now, kind: "Differential" })
            }
            BackupType::Log => {
                let start = item
                    .log_range
                    .map(|r| r.0)
                    .or_else(|| item.recovery_points.iter().find(|r| r.kind == "Full").map(|r| r.time))
                    .unwrap_or(now);
                item.log_range = Some((start, now));
            }
        }
    }

    pub fn start_cancel(&mut self, vault_key: &str, job_id: &str, api_version: &str, now: DateTime<Utc>) -> Result<Started, ArmError> {
        let vault = self.vaults.get_mut(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        let job = vault.job_mut(job_id).ok_or_else(|| job_not_found(job_id))?;
        if !job.status.is_running() || !job.cancellable {
            return Err(ArmError::bad_request(
                "BMSUserErrorJobNotCancellable",
                format!("Job '{job_id}' cannot be cancelled in state {}.", job.status.as_str()),
            ));
        }
        job.status = JobStatus::Cancelling;
        let id = job.id.clone();
        let takes = ms(self.settings.timings.cancel_ms);
        self.schedule(now + takes, Event::FinishJob { vault_key: vault_key.to_string(), job_id: id.clone() });
        Ok(Started {
            op_id: self.new_operation(vault_key, OpKind::CancelJob { job_id: id.clone() }, OpScope::Job(id), api_version, now, takes),
        })
    }

    // ----- protection intents (auto-protection) --------------------------------------------

    /// Create or update an auto-protection intent; synchronous like the service.
    pub fn put_intent(
        &mut self,
        vault_key: &str,
        name: &str,
        intent_type: &str,
        item_id: &str,
        policy_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Intent, ArmError> {
        let vault = self.vaults.get(vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault not found"))?;
        self.check_policy(vault, policy_id)?;
        // itemId: {vault}/backupFabrics/Azure/protectionContainers/{container}/protectableItems/{SQLInstance;x}
        let lower = key(item_id);
        let (container_key, inst_key) = vault
            .containers
            .iter()
            .filter(|(_, c)| c.registration == Registration::Registered)
            .find_map(|(ck, c)| {
                let marker = format!("/protectioncontainers/{ck}/protectableitems/");
                let rest = lower.split_once(&marker)?.1;
                let inst = names::parse_instance_item_name(rest)?;
                let vm = self.vms.get(&c.vm_key)?;
                vm.instances.iter().any(|i| key(&i.name) == inst).then(|| (ck.clone(), inst))
            })
            .ok_or_else(|| {
                ArmError::invalid_input(format!(
                    "itemId '{item_id}' does not name a SQLInstance protectable item of a registered container in this vault."
                ))
            })?;
        let intent = Intent {
            name: name.to_string(),
            intent_type: intent_type.to_string(),
            item_id: item_id.to_string(),
            policy_id: policy_id.to_string(),
            container_key: container_key.clone(),
            instance_key: inst_key,
        };
        if let Some(v) = self.vaults.get_mut(vault_key) {
            v.intents.insert(key(name), intent.clone());
        }
        self.apply_intents(vault_key, &container_key, now);
        Ok(intent)
    }

    /// Protect every inquired, unprotected database of auto-protected instances.
    fn apply_intents(&mut self, vault_key: &str, c_key: &str, now: DateTime<Utc>) {
        let Some(vault) = self.vaults.get(vault_key) else { return };
        let Some(container) = vault.containers.get(c_key) else { return };
        let mut todo = Vec::new();
        for intent in vault.intents.values().filter(|i| i.container_key == c_key) {
            for (inst, db) in container.inquired.iter().filter(|(i, _)| *i == intent.instance_key) {
                let Some(vm) = self.vms.get(&container.vm_key) else { continue };
                let Some((i, d)) = vm.find_db(inst, db) else { continue };
                let name = names::protected_db_name(&i.name, &d.name);
                if !vault.items.contains_key(&(c_key.to_string(), key(&name))) {
                    todo.push((name, intent.policy_id.clone()));
                }
            }
        }
        let container_name = container.name.clone();
        for (name, policy) in todo {
            if let Ok(mut item) = self.plan_item(vault_key, &container_name, &name, &policy) {
                item.datasource_id = self.next_number().to_string();
                let entity = self.db_entity(&item.vm_key, &item.instance, &item.database);
                let ik = (item.container_key.clone(), key(&item.name));
                if let Some(v) = self.vaults.get_mut(vault_key) {
                    v.items.insert(ik.clone(), item);
                }
                self.instant_job(vault_key, "ConfigureBackup", entity, Some(ik), now, None);
            }
        }
    }

    // ----- completion plumbing -------------------------------------------------------------

    pub(super) fn complete_operation(&mut self, op_key: &str, now: DateTime<Utc>) {
        let Some(op) = self.operations.get(op_key) else { return };
        if !matches!(op.status, OpStatus::InProgress) {
            return;
        }
        let (vault_key, kind) = (op.vault_key.clone(), op.kind.clone());
        match kind {
            OpKind::Refresh => {
                self.complete_refresh(&vault_key);
                self.succeed_op(op_key, now);
            }
            OpKind::Register { container_key } => self.complete_register(op_key, &vault_key, &container_key, now),
            OpKind::Unregister { container_key } => self.complete_unregister(op_key, &vault_key, &container_key, now),
            OpKind::Inquire { container_key } => self.complete_inquire(op_key, &vault_key, &container_key, now),
            OpKind::Configure { .. } => self.complete_configure(op_key, &vault_key, now),
            OpKind::Stop { container_key, item_key } => {
                self.complete_stop_or_delete(op_key, &vault_key, (container_key, item_key), false, now)
            }
            OpKind::Delete { container_key, item_key } => {
                self.complete_stop_or_delete(op_key, &vault_key, (container_key, item_key), true, now)
            }
            OpKind::Backup { .. } | OpKind::CancelJob { .. } => self.succeed_op(op_key, now),
        }
    }

    fn set_op_job(&mut self, op_id: &str, job_id: &str) {
        if let Some(op) = self.operations.get_mut(&key(op_id)) {
            op.job_id = Some(job_id.to_string());
        }
    }

    fn succeed_op(&mut self, op_id: &str, now: DateTime<Utc>) {
        if let Some(op) = self.operations.get_mut(&key(op_id)) {
            op.status = OpStatus::Succeeded;
            op.end = Some(now);
        }
    }

    fn fail_op(&mut self, op_id: &str, http_status: u16, code: &str, message: &str, now: DateTime<Utc>) {
        if let Some(op) = self.operations.get_mut(&key(op_id)) {
            op.status = OpStatus::Failed { code: code.to_string(), message: message.to_string(), http_status };
            op.end = Some(now);
        }
    }
}

pub fn container_not_found(name: &str) -> ArmError {
    ArmError::not_found("BMSUserErrorContainerNotFound", format!("Container '{name}' is not registered with this vault."))
}

pub fn item_not_found(name: &str) -> ArmError {
    ArmError::not_found("BMSUserErrorProtectedItemNotFound", format!("Protected item '{name}' was not found."))
}

pub fn job_not_found(id: &str) -> ArmError {
    ArmError::not_found("BMSUserErrorJobNotFound", format!("Job '{id}' was not found in this vault."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourcegroups/sqlserverselfhost/providers/microsoft.recoveryservices/vaults/sqlserver2012";

    /// Re-registration repairs a registered container; before the first registration it is refused.
    #[test]
    fn reregister_needs_a_registered_container() {
        let scenario: Scenario = serde_json::from_str(include_str!("../../scenarios/seed.json")).unwrap();
        let mut w = World::from_scenario(&scenario);
        let now = chrono::Utc::now();
        let far = now + Duration::hours(1);
        w.start_refresh(VAULT, "2026-10-01", now);
        w.tick(far);
        let c = "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0";
        assert_eq!(
            w.start_register(VAULT, c, None, true, "2026-10-01", far).err().map(|e| e.code),
            Some("BMSUserErrorContainerNotFound".into())
        );
        w.start_register(VAULT, c, None, false, "2026-10-01", far).unwrap();
        w.tick(far + Duration::hours(1));
        assert!(w.start_register(VAULT, c, None, true, "2026-10-01", far + Duration::hours(1)).is_ok());
    }
}

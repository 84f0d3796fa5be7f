//! ARM bodies of the simulated resources, shaped after bms.json and the seed document.
//!
//! Every body produced here is validated against the swagger by the test suite (see
//! `schema.rs`), so a field that is not in the spec cannot slip in unnoticed.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::names::{self, timestamp};

const FABRIC: &str = "Azure";

pub fn vm(vm: &Vm) -> Value {
    json!({
        "id": vm.id(),
        "name": vm.name,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": vm.tags,
        "properties": {
            "vmId": vm.vm_guid,
            "provisioningState": vm.provisioning_state,
            "storageProfile": { "osDisk": { "osType": "Windows" } },
            "osProfile": { "computerName": vm.name }
        }
    })
}

pub fn protectable_container(vault: &Vault, vm: &Vm) -> Value {
    let name = vm.container_name();
    json!({
        "id": format!("{}/backupFabrics/{FABRIC}/protectableContainers/{name}", vault.id()),
        "name": name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectableContainers",
        "properties": {
            "friendlyName": vm.name,
            "backupManagementType": "AzureWorkload",
            "protectableContainerType": "VMAppContainer",
            "healthStatus": "Healthy",
            "containerId": vm.id()
        }
    })
}

fn error_detail(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message, "recommendations": [""] })
}

pub fn container(vault: &Vault, c: &Container, vm: Option<&Vm>) -> Value {
    let registration = match c.registration {
        Registration::Registering => "Registering",
        Registration::Registered => "Registered",
    };
    let mut props = json!({
        "friendlyName": vm.map(|v| v.name.as_str()).unwrap_or_default(),
        "backupManagementType": "AzureWorkload",
        "registrationStatus": registration,
        "healthStatus": "Healthy",
        "containerType": "VMAppContainer",
        "protectableObjectType": "VMAppContainer",
        "sourceResourceId": vm.map(|v| v.id()).unwrap_or_default(),
        "lastUpdatedTime": timestamp(c.last_updated),
        "workloadType": "SQLDataBase"
    });
    // A stand-alone VM: no distributed (Always On / FCI) nodes, shown as an empty list.
    let mut ext = json!({ "hostServerName": vm.map(|v| v.fqdn.as_str()).unwrap_or_default(), "nodesList": [] });
    if let Some(inq) = &c.inquiry {
        let (code, msg) = inq.error.clone().unwrap_or_else(|| ("Success".into(), String::new()));
        ext["inquiryInfo"] = json!({
            "status": inq.status,
            "errorDetail": error_detail(&code, &msg),
            "inquiryDetails": [{
                "type": "SQL",
                "itemCount": inq.item_count,
                "inquiryValidation": { "status": inq.status, "errorDetail": error_detail(&code, &msg) }
            }]
        });
    }
    props["extendedInfo"] = ext;
    json!({
        "id": format!("{}/backupFabrics/{FABRIC}/protectionContainers/{}", vault.id(), c.name),
        "name": c.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers",
        "properties": props
    })
}

/// One protectable item, before rendering: lists are filtered and paged on these, and only
/// the page is rendered (a vault can hold thousands of databases).
pub struct ProtectableEntry<'a> {
    pub container: &'a Container,
    pub vm: &'a Vm,
    pub instance: &'a SqlInstance,
    /// `None` for the instance item itself.
    pub database: Option<&'a crate::scenario::DatabaseSpec>,
    /// Databases of the instance the last inquiry found.
    pub found: usize,
}

impl ProtectableEntry<'_> {
    pub fn item_type(&self) -> &'static str {
        if self.database.is_some() { "SQLDataBase" } else { "SQLInstance" }
    }
    pub fn friendly_name(&self) -> &str {
        self.database.map_or(self.instance.name.as_str(), |d| d.name.as_str())
    }
}

/// The protectable items (instances then databases) of one registered container.
pub fn protectable_entries<'a>(c: &'a Container, vm: &'a Vm) -> Vec<ProtectableEntry<'a>> {
    let mut out = Vec::new();
    for inst in &vm.instances {
        let dbs: Vec<_> = inst.databases.iter().filter(|d| c.inquired.contains(&(names::key(&inst.name), names::key(&d.name)))).collect();
        if dbs.is_empty() {
            continue;
        }
        out.push(ProtectableEntry { container: c, vm, instance: inst, database: None, found: dbs.len() });
        out.extend(dbs.into_iter().map(|d| ProtectableEntry { container: c, vm, instance: inst, database: Some(d), found: 0 }));
    }
    out
}

pub fn protectable_item(vault: &Vault, e: &ProtectableEntry) -> Value {
    let c_key = crate::names::key(&e.container.name);
    let base =
        format!("{}/backupFabrics/{FABRIC}/protectionContainers/{}/protectableItems", vault.id(), e.container.name.to_ascii_lowercase());
    let inst = e.instance;
    match e.database {
        None => {
            let auto = vault.intents.values().any(|i| i.container_key == c_key && i.instance_key == names::key(&inst.name));
            let name = names::protectable_instance_name(&inst.name);
            json!({
                "id": format!("{base}/{name}"),
                "name": name,
                "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectableItems",
                "properties": {
                    "parentName": inst.name,
                    "serverName": e.vm.fqdn,
                    "isAutoProtectable": true,
                    "isAutoProtected": auto,
                    "subinquireditemcount": e.found,
                    "subprotectableitemcount": e.found,
                    "backupManagementType": "AzureWorkload",
                    "workloadType": "SQL",
                    "protectableItemType": "SQLInstance",
                    "friendlyName": inst.name,
                    "protectionState": if auto { "Protected" } else { "NotProtected" }
                }
            })
        }
        Some(db) => {
            let name = names::protectable_db_name(&inst.name, &db.name);
            let protected = vault
                .items
                .get(&(c_key, names::key(&names::protected_db_name(&inst.name, &db.name))))
                .is_some_and(|i| i.state != ItemState::ProtectionStopped);
            json!({
                "id": format!("{base}/{name}"),
                "name": name,
                "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectableItems",
                "properties": {
                    "parentName": inst.name,
                    "serverName": e.vm.fqdn,
                    "isAutoProtectable": false,
                    "subinquireditemcount": 0,
                    "subprotectableitemcount": 0,
                    "backupManagementType": "AzureWorkload",
                    "workloadType": "SQL",
                    "protectableItemType": "SQLDataBase",
                    "friendlyName": db.name,
                    "protectionState": if protected { "Protected" } else { "NotProtected" }
                }
            })
        }
    }
}

/// Workload items (`C/items`): the same discovery seen from the container.
pub fn workload_items(vault: &Vault, c: &Container, vm: &Vm) -> Vec<Value> {
    let base = format!("{}/backupFabrics/{FABRIC}/protectionContainers/{}/items", vault.id(), c.name);
    let mut out = Vec::new();
    for inst in &vm.instances {
        let dbs: Vec<_> = inst.databases.iter().filter(|d| c.inquired.contains(&(names::key(&inst.name), names::key(&d.name)))).collect();
        if dbs.is_empty() {
            continue;
        }
        let name = format!("SQLInstance;{}", inst.name);
        out.push(json!({
            "id": format!("{base}/{name}"), "name": name,
            "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/items",
            "properties": {
                "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase", "workloadItemType": "SQLInstance",
                "friendlyName": inst.name, "protectionState": "NotProtected", "parentName": inst.name, "serverName": vm.fqdn,
                "isAutoProtectable": true, "subinquireditemcount": dbs.len(), "subWorkloadItemCount": dbs.len(),
                "dataDirectoryPaths": [{ "type": "Data", "path": DATA_DIR }, { "type": "Log", "path": LOG_DIR }]
            }
        }));
        for db in dbs {
            let name = format!("SQLDataBase;{};{}", inst.name, db.name);
            out.push(json!({
                "id": format!("{base}/{name}"), "name": name,
                "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/items",
                "properties": {
                    "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase", "workloadItemType": "SQLDataBase",
                    "friendlyName": db.name, "protectionState": "NotProtected", "parentName": inst.name, "serverName": vm.fqdn,
                    "isAutoProtectable": false, "subinquireditemcount": 0, "subWorkloadItemCount": 0
                }
            }));
        }
    }
    out
}

pub fn protected_item(vault: &Vault, item: &ProtectedItem, vm: Option<&Vm>) -> Value {
    let container_name = vault.containers.get(&item.container_key).map(|c| c.name.clone()).unwrap_or_default();
    let (health, status) = match item.state {
        ItemState::IrPending => ("IRPending", "Healthy"),
        _ if item.last_backup_status == "Unhealthy" => ("Unhealthy", "Unhealthy"),
        _ => ("Healthy", "Healthy"),
    };
    let (code, msg) = item.last_backup_error.clone().unwrap_or_else(|| ("Success".into(), String::new()));
    let mut props = json!({
        "friendlyName": item.database,
        "serverName": vm.map(|v| v.fqdn.as_str()).unwrap_or_default(),
        "parentName": item.instance,
        "parentType": "AzureVmWorkloadSQLInstance",
        "protectionStatus": status,
        "protectionState": item.state.as_str(),
        "lastBackupStatus": item.last_backup_status,
        "lastBackupErrorDetail": { "code": code, "message": msg },
        "protectedItemDataSourceId": item.datasource_id,
        "protectedItemHealthStatus": health,
        "extendedInfo": {
            "recoveryPointCount": item.recovery_points.len() + usize::from(item.log_range.is_some()),
            "policyState": "Consistent",
            "recoveryModel": item.recovery_model
        },
        "protectedItemType": "AzureVmWorkloadSQLDatabase",
        "backupManagementType": "AzureWorkload",
        "workloadType": "SQLDataBase",
        "containerName": container_name,
        // What the service returned in the seed document: not an ARM id (azure-backup-api.md §8.16).
        "sourceResourceId": vm.map(|v| format!("/subscriptions/{}/resourceGroups/{}/providers/VMAppContainer/{}", v.subscription_id, v.resource_group, v.name)).unwrap_or_default(),
        "policyId": item.policy_id
    });
    if let Some(t) = item.last_backup_time {
        props["lastBackupTime"] = json!(timestamp(t));
    }
    if let Some(p) = &item.policy_name {
        props["policyName"] = json!(p);
    }
    if let (Some(first), Some(last)) = (item.recovery_points.first(), item.recovery_points.last()) {
        props["extendedInfo"]["oldestRecoveryPoint"] = json!(timestamp(first.time));
        props["extendedInfo"]["oldestRecoveryPointInVault"] = json!(timestamp(first.time));
        // The workload extendedInfo has no "newest" field; the base item's lastRecoveryPoint is it.
        props["lastRecoveryPoint"] = json!(timestamp(last.time));
    }
    json!({
        "id": format!("{}/backupFabrics/{FABRIC}/protectionContainers/{}/protectedItems/{}", vault.id(), container_name, item.name),
        "name": item.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems",
        "properties": props
    })
}

pub fn policy(vault: &Vault, p: &crate::scenario::PolicySpec) -> Value {
    let id = format!("{}/backupPolicies/{}", vault.id(), p.name);
    let protected = vault.items.values().filter(|i| i.policy_name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&p.name))).count();
    if !p.kind.eq_ignore_ascii_case("AzureWorkload") {
        return json!({ "id": id, "name": p.name, "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
            "properties": { "backupManagementType": p.kind, "protectedItemsCount": protected } });
    }
    let run_time = format!("2026-01-01T{}:00Z", p.full_time);
    let mut subs = vec![json!({
        "policyType": "Full",
        "schedulePolicy": { "schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily", "scheduleRunTimes": [run_time], "scheduleWeeklyFrequency": 0 },
        "retentionPolicy": { "retentionPolicyType": "LongTermRetentionPolicy",
            "dailySchedule": { "retentionTimes": [run_time], "retentionDuration": { "count": p.full_retention_days, "durationType": "Days" } } }
    })];
    if let Some(day) = &p.differential_day {
        subs.push(json!({
            "policyType": "Differential",
            "schedulePolicy": { "schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Weekly", "scheduleRunDays": [day], "scheduleRunTimes": [run_time], "scheduleWeeklyFrequency": 0 },
            "retentionPolicy": { "retentionPolicyType": "SimpleRetentionPolicy", "retentionDuration": { "count": p.differential_retention_days, "durationType": "Days" } }
        }));
    }
    if let Some(freq) = p.log_frequency_minutes {
        subs.push(json!({
            "policyType": "Log",
            "schedulePolicy": { "schedulePolicyType": "LogSchedulePolicy", "scheduleFrequencyInMins": freq },
            "retentionPolicy": { "retentionPolicyType": "SimpleRetentionPolicy", "retentionDuration": { "count": p.log_retention_days, "durationType": "Days" } }
        }));
    }
    json!({
        "id": id, "name": p.name, "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
        "properties": {
            "backupManagementType": "AzureWorkload",
            "workLoadType": "SQLDataBase",
            "settings": { "timeZone": "UTC", "issqlcompression": false, "isCompression": false },
            "subProtectionPolicy": subs,
            "protectedItemsCount": protected
        }
    })
}

pub fn job(vault: &Vault, j: &Job, now: DateTime<Utc>) -> Value {
    let mut props = json!({
        "jobType": "AzureWorkloadJob",
        "entityFriendlyName": j.entity_friendly_name,
        "backupManagementType": "AzureWorkload",
        "operation": j.operation,
        "status": j.status.as_str(),
        "startTime": timestamp(j.start),
        "activityId": j.activity_id,
        "workloadType": "SQLDataBase",
        "duration": names::iso_duration(j.end.unwrap_or(now) - j.start),
        "actionsInfo": if j.cancellable && j.status == JobStatus::InProgress { json!(["Cancellable"]) } else { json!([]) },
        "errorDetails": j.error.as_ref().map(|e| json!([{
            "errorCode": e.error_code, "errorString": e.message, "errorTitle": e.title, "recommendations": e.recommendations
        }])).unwrap_or_else(|| json!([]))
    });
    if let Some(end) = j.end {
        props["endTime"] = json!(timestamp(end));
    }
    let mut bag = serde_json::Map::new();
    if let Some(bt) = j.backup_type {
        bag.insert("Backup Type".into(), json!(bt.as_str()));
        let transfer = match j.status {
            JobStatus::Completed | JobStatus::CompletedWithWarnings => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Cancelled => "Cancelled",
            _ => "InProgress",
        };
        props["extendedInfo"] = json!({ "tasksList": [{ "taskId": "Transfer data to vault", "status": transfer }] });
        bag.insert("Data Transferred (in MB)".into(), json!(if transfer == "Completed" { "128" } else { "0" }));
        if let Some(until) = j.retention_until {
            bag.insert("Recovery point expiry time in UTC".into(), json!(timestamp(until)));
        }
        props["extendedInfo"]["propertyBag"] = Value::Object(bag);
    }
    json!({
        "id": format!("{}/backupJobs/{}", vault.id(), j.id),
        "name": j.id,
        "type": "Microsoft.RecoveryServices/vaults/backupJobs",
        "properties": props
    })
}

/// `OperationStatus` as the operationsStatus URLs answer it.
pub fn operation_status(op: &Operation) -> Value {
    let status = match &op.status {
        OpStatus::InProgress => "InProgress",
        OpStatus::Succeeded => "Succeeded",
        OpStatus::Failed { .. } => "Failed",
    };
    let mut body = json!({
        "id": op.id,
        "name": op.id,
        "status": status,
        "startTime": timestamp(op.start),
        // While running the service writes .NET's minimum date here.
        "endTime": op.end.map(timestamp).unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
    });
    if let OpStatus::Failed { code, message, .. } = &op.status {
        body["error"] = json!({ "code": code, "message": message });
    }
    if let (OpStatus::Succeeded, Some(job)) = (&op.status, &op.job_id)
        && matches!(op.kind, OpKind::Configure { .. } | OpKind::Backup { .. } | OpKind::Stop { .. } | OpKind::Delete { .. })
    {
        body["properties"] = json!({ "objectType": "OperationStatusJobExtendedInfo", "jobId": job });
    }
    body
}

pub fn intent(vault: &Vault, i: &Intent) -> Value {
    let mut props = json!({
        "protectionIntentItemType": i.intent_type,
        "backupManagementType": "AzureWorkload",
        "itemId": i.item_id,
        "policyId": i.policy_id,
        "protectionState": "Protected"
    });
    if i.intent_type == "AzureWorkloadSQLAutoProtectionIntent" {
        props["workloadItemType"] = json!("SQLInstance");
    }
    json!({
        "id": format!("{}/backupFabrics/{FABRIC}/backupProtectionIntent/{}", vault.id(), i.name),
        "name": i.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/backupProtectionIntent",
        "properties": props
    })
}

/// Default data and log directories of a simulated SQL instance (as in the spec's example).
const DATA_DIR: &str = "F:\\DATA\\";
const LOG_DIR: &str = "F:\\LOG\\";

/// `AzureWorkloadSQLRecoveryPointExtendedInfo`: the database's files at `at`. The service fills
/// it when one recovery point is read, or when Log points are listed with `extendedInfo eq 'true'`.
pub fn sql_recovery_point_extended_info(item: &ProtectedItem, at: &str) -> Value {
    json!({
        "dataDirectoryTimeInUTC": at,
        "dataDirectoryPaths": [
            { "type": "Data", "path": format!("{DATA_DIR}{}.mdf", item.database), "logicalName": item.database },
            { "type": "Log", "path": format!("{LOG_DIR}{}_log.ldf", item.database), "logicalName": format!("{}_log", item.database) }
        ]
    })
}

pub fn recovery_points(vault: &Vault, item: &ProtectedItem) -> Vec<Value> {
    let container_name = vault.containers.get(&item.container_key).map(|c| c.name.clone()).unwrap_or_default();
    let base = format!(
        "{}/backupFabrics/{FABRIC}/protectionContainers/{}/protectedItems/{}/recoveryPoints",
        vault.id(),
        container_name,
        item.name
    );
    let mut out: Vec<Value> = item
        .recovery_points
        .iter()
        .rev()
        .map(|rp| {
            json!({
                "id": format!("{base}/{}", rp.id), "name": rp.id,
                "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems/recoveryPoints",
                "properties": { "objectType": "AzureWorkloadSQLRecoveryPoint", "recoveryPointTimeInUTC": timestamp(rp.time), "type": rp.kind }
            })
        })
        .collect();
    if let Some((start, end)) = item.log_range {
        out.push(json!({
            "id": format!("{base}/DefaultRangeRecoveryPoint"), "name": "DefaultRangeRecoveryPoint",
            "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems/recoveryPoints",
            "properties": { "objectType": "AzureWorkloadSQLPointInTimeRecoveryPoint", "type": "Log",
                "timeRanges": [{ "startTime": timestamp(start), "endTime": timestamp(end) }] }
        }));
    }
    out
}

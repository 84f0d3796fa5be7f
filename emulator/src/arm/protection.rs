//! Protection: policies, protected items (enable, change, stop, delete), on-demand backups,
//! auto-protection intents and recovery points (azure-backup-api.md §3.6–§3.10).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::query::Filter;
use super::{ArmResponse, Ctx, accepted};
use crate::error::ArmError;
use crate::names::key;
use crate::world::operations::item_not_found;
use crate::world::{BackupType, World, render};

pub fn list_policies(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "workloadtype"])?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> =
        vault.policies.iter().filter(|p| f.allows("backupmanagementtype", &p.kind)).map(|p| render::policy(vault, p)).collect();
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

pub fn get_policy(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let p = vault.policy(name).ok_or_else(|| {
        ArmError::not_found("BMSUserErrorPolicyNotFound", format!("Policy '{name}' does not exist in vault '{}'.", vault.name))
    })?;
    Ok(ArmResponse::ok("", render::policy(vault, p)))
}

pub fn get_item(world: &mut World, ctx: &Ctx, container: &str, item: &str) -> Result<ArmResponse, ArmError> {
    Filter::parse(ctx.query.get("$filter"), &["expand"])?;
    let it = world.item(&ctx.vault_key, container, item)?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    Ok(ArmResponse::ok("", render::protected_item(vault, it, world.vms.get(&it.vm_key))))
}

/// The protected-item types of SQL databases. The seed document's body has none and sends
/// `backupManagementType` + `workloadType` instead, which the service accepts.
fn check_item_type(props: &serde_json::Map<String, Value>) -> Result<(), ArmError> {
    match props.get("protectedItemType").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("AzureVmWorkloadSQLDatabase") => Ok(()),
        Some(t) => Err(ArmError::invalid_input(format!(
            "protectedItemType '{t}' is not valid for a SQL database; use AzureVmWorkloadSQLDatabase."
        ))),
        None => {
            let bmt = props.get("backupManagementType").and_then(Value::as_str);
            let wt = props.get("workloadType").and_then(Value::as_str);
            match (bmt, wt) {
                (Some(b), Some(w)) if b.eq_ignore_ascii_case("AzureWorkload") && w.eq_ignore_ascii_case("SQLDataBase") => Ok(()),
                _ => Err(ArmError::invalid_input("properties.protectedItemType is required (AzureVmWorkloadSQLDatabase).")),
            }
        }
    }
}

pub fn put_item(world: &mut World, ctx: &Ctx, container: &str, item: &str) -> Result<ArmResponse, ArmError> {
    let body = ctx.json_body()?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ArmError::invalid_input("The body needs a 'properties' object."))?;
    check_item_type(props)?;
    let policy_id = match props.get("policyId") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ArmError::invalid_input("policyId must be a string.")),
    };
    let stop = match props.get("protectionState").and_then(Value::as_str) {
        None => false,
        Some(s) if s.eq_ignore_ascii_case("ProtectionStopped") => true,
        Some(s) if s.eq_ignore_ascii_case("Protected") || s.eq_ignore_ascii_case("IRPending") => false,
        Some(s) => {
            return Err(ArmError::invalid_input(format!(
                "protectionState '{s}' cannot be set by a PUT (use ProtectionStopped to stop protection)."
            )));
        }
    };
    let started = if stop {
        world.start_stop(&ctx.vault_key, container, item, &ctx.api_version, ctx.req.now)?
    } else {
        if policy_id.is_empty() {
            return Err(ArmError::invalid_input("properties.policyId is required to enable protection."));
        }
        let planned = world.plan_item(&ctx.vault_key, container, item, policy_id)?;
        world.start_configure(&ctx.vault_key, planned, &ctx.api_version, ctx.req.now)
    };
    item_accepted(world, ctx, container, item, &started.op_id)
}

/// 202 with item-level tracking URLs (canonical container name, item name as requested).
fn item_accepted(world: &World, ctx: &Ctx, container: &str, item: &str, op_id: &str) -> Result<ArmResponse, ArmError> {
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let c_name = vault.containers.get(&key(container)).map(|c| c.name.clone()).unwrap_or_else(|| container.to_string());
    // The item name is echoed as the request spelled it: the seed document PUTs and POSTs to
    // `sqldatabase;mssqlserver;msdb` and gets tracking URLs with that spelling, although the
    // body it later returns says `SQLDataBase;mssqlserver;msdb`.
    let i_name = item;
    let base = format!("{}/backupFabrics/Azure/protectionContainers/{c_name}/protectedItems/{i_name}", ctx.vault_url(world));
    Ok(accepted(
        world,
        format!("{base}/operationResults/{op_id}?api-version={}", ctx.api_version),
        Some(format!("{base}/operationsStatus/{op_id}?api-version={}", ctx.api_version)),
    ))
}

pub fn delete_item(world: &mut World, ctx: &Ctx, container: &str, item: &str) -> Result<ArmResponse, ArmError> {
    let started = world.start_delete(&ctx.vault_key, container, item, &ctx.api_version, ctx.req.now)?;
    let base = ctx.vault_url(world);
    Ok(accepted(
        world,
        format!("{base}/backupOperationResults/{}?api-version={}", started.op_id, ctx.api_version),
        Some(format!("{base}/backupOperations/{}?api-version={}", started.op_id, ctx.api_version)),
    ))
}

pub fn backup(world: &mut World, ctx: &Ctx, container: &str, item: &str) -> Result<ArmResponse, ArmError> {
    let body = ctx.json_body()?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ArmError::invalid_input("The body needs a 'properties' object."))?;
    match props.get("objectType").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("AzureWorkloadBackupRequest") => {}
        Some(t) => {
            return Err(ArmError::invalid_input(format!(
                "objectType '{t}' is not valid for a SQL database backup; use AzureWorkloadBackupRequest."
            )));
        }
        None => return Err(ArmError::invalid_input("properties.objectType is required (AzureWorkloadBackupRequest).")),
    }
    let bt_text = props
        .get("backupType")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::invalid_input("properties.backupType is required (Full, Differential, Log or CopyOnlyFull)."))?;
    let bt = BackupType::parse(bt_text).ok_or_else(|| {
        ArmError::invalid_input(format!(
            "backupType '{bt_text}' is not supported for SQL databases (Full, Differential, Log, CopyOnlyFull)."
        ))
    })?;
    if let Some(c) = props.get("enableCompression")
        && !c.is_boolean()
    {
        return Err(ArmError::invalid_input("enableCompression must be a boolean."));
    }
    let expiry = match props.get("recoveryPointExpiryTimeInUTC") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| ArmError::invalid_input(format!("recoveryPointExpiryTimeInUTC '{s}' is not an RFC 3339 date-time.")))?,
        ),
        Some(_) => return Err(ArmError::invalid_input("recoveryPointExpiryTimeInUTC must be a date-time string.")),
    };
    let started = world.start_backup(&ctx.vault_key, container, item, bt, expiry, &ctx.api_version, ctx.req.now)?;
    item_accepted(world, ctx, container, item, &started.op_id)
}

pub fn list_items(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(
        ctx.query.get("$filter"),
        &["backupmanagementtype", "itemtype", "workloadtype", "policyname", "containername", "friendlyname", "protectionstate"],
    )?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> = if f.allows("backupmanagementtype", "AzureWorkload")
        && f.allows("itemtype", "SQLDataBase")
        && f.allows("workloadtype", "SQLDataBase")
    {
        vault
            .items
            .values()
            .filter(|i| {
                f.allows("policyname", i.policy_name.as_deref().unwrap_or_default())
                    && f.allows("friendlyname", &i.database)
                    && f.allows("protectionstate", i.state.as_str())
            })
            .filter(|i| {
                f.get("containername")
                    .is_none_or(|c| vault.containers.get(&i.container_key).is_some_and(|k| k.name.eq_ignore_ascii_case(c)))
            })
            .map(|i| render::protected_item(vault, i, world.vms.get(&i.vm_key)))
            .collect()
    } else {
        vec![]
    };
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

/// Intent types that turn on auto-protection of a SQL instance.
const INTENT_TYPES: &[&str] = &[
    "AzureWorkloadSQLAutoProtectionIntent",
    "RecoveryServiceVaultItem",
    "AzureWorkloadAutoProtectionIntent",
    "AzureWorkloadContainerAutoProtectionIntent",
];

pub fn put_intent(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let body = ctx.json_body()?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ArmError::invalid_input("The body needs a 'properties' object."))?;
    let t = props
        .get("protectionIntentItemType")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::invalid_input("properties.protectionIntentItemType is required."))?;
    let t = INTENT_TYPES.iter().find(|k| k.eq_ignore_ascii_case(t)).ok_or_else(|| {
        ArmError::invalid_input(format!(
            "protectionIntentItemType '{t}' is not valid for SQL auto-protection ({}).",
            INTENT_TYPES.join(", ")
        ))
    })?;
    let item_id = props
        .get("itemId")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::invalid_input("properties.itemId is required (the SQLInstance protectable item id)."))?;
    let policy_id =
        props.get("policyId").and_then(Value::as_str).ok_or_else(|| ArmError::invalid_input("properties.policyId is required."))?;
    let intent = world.put_intent(&ctx.vault_key, name, t, item_id, policy_id, ctx.req.now)?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    Ok(ArmResponse::ok("", render::intent(vault, &intent)))
}

fn intent_not_found(name: &str) -> ArmError {
    ArmError::not_found("BMSUserErrorProtectionIntentNotFound", format!("Protection intent '{name}' was not found."))
}

pub fn get_intent(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let i = vault.intents.get(&key(name)).ok_or_else(|| intent_not_found(name))?;
    Ok(ArmResponse::ok("", render::intent(vault, i)))
}

pub fn delete_intent(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let vault = world.vault_mut(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    vault.intents.remove(&key(name)).ok_or_else(|| intent_not_found(name))?;
    Ok(ArmResponse::status("", 204))
}

pub fn list_intents(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "itemtype", "itemname", "parentname", "policyname"])?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> = if f.allows("backupmanagementtype", "AzureWorkload") && f.allows("itemtype", "SQLInstance") {
        vault
            .intents
            .values()
            .filter(|i| f.get("itemname").is_none_or(|n| key(&i.item_id).ends_with(&key(n))))
            .map(|i| render::intent(vault, i))
            .collect()
    } else {
        vec![]
    };
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

pub fn recovery_points(world: &mut World, ctx: &Ctx, container: &str, item: &str, rp: Option<&str>) -> Result<ArmResponse, ArmError> {
    let it = world.item(&ctx.vault_key, container, item).map_err(|_| item_not_found(item))?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let all = render::recovery_points(vault, it);
    // Extended info (the database files) comes with a single point, and with a Log-only list
    // asked for `extendedInfo eq 'true'` (AzureWorkloadSQLRecoveryPoint.extendedInfo in bms.json).
    let with_extended_info = |mut r: Value| {
        let at = r["properties"]["recoveryPointTimeInUTC"]
            .as_str()
            .or_else(|| r["properties"]["timeRanges"][0]["endTime"].as_str())
            .unwrap_or_default()
            .to_string();
        r["properties"]["extendedInfo"] = render::sql_recovery_point_extended_info(it, &at);
        r
    };
    match rp {
        Some(id) => all
            .into_iter()
            .find(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(id)))
            .map(|r| ArmResponse::ok("", with_extended_info(r)))
            .ok_or_else(|| ArmError::not_found("BMSUserErrorRecoveryPointNotFound", format!("Recovery point '{id}' was not found."))),
        None => {
            let f = Filter::parse(ctx.query.get("$filter"), &["startdate", "enddate", "restorepointquerytype", "extendedinfo"])?;
            let extended = f.allows("restorepointquerytype", "Log")
                && f.get("restorepointquerytype").is_some()
                && f.get("extendedinfo").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let items: Vec<Value> = all
                .into_iter()
                .map(|r| if extended { with_extended_info(r) } else { r })
                .filter(|r| match f.get("restorepointquerytype").map(str::to_ascii_lowercase).as_deref() {
                    None | Some("all") => true,
                    Some("log") => r["properties"]["type"] == json!("Log"),
                    Some("full") => r["properties"]["type"] == json!("Full"),
                    Some("differential") => r["properties"]["type"] == json!("Differential"),
                    Some("fullanddifferential") => r["properties"]["type"] != json!("Log"),
                    Some(_) => true,
                })
                .collect();
            Ok(ArmResponse::ok("", ctx.page(world, items)?))
        }
    }
}

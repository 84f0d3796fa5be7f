//! Discovery: refresh, protectable containers, register / unregister, inquire, protectable and
//! workload items (azure-backup-api.md §3.1–§3.5).

use serde_json::Value;

use super::query::Filter;
use super::{ArmResponse, Ctx, accepted};
use crate::error::ArmError;
use crate::names::key;
use crate::world::operations::container_not_found;
use crate::world::{World, render};

pub fn refresh(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    // Cross-subscription discovery (2026-10-01) takes containerSubscriptionId; only the vault's
    // own subscription is simulated.
    Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "containersubscriptionid"])?;
    let started = world.start_refresh(&ctx.vault_key, &ctx.api_version, ctx.req.now);
    let location =
        format!("{}/backupFabrics/Azure/operationResults/{}?api-version={}", ctx.vault_url(world), started.op_id, ctx.api_version);
    Ok(accepted(world, location, None))
}

pub fn protectable_containers(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "workloadtype", "friendlyname", "status"])?;
    let Some(bmt) = f.get("backupmanagementtype") else {
        return Err(ArmError::invalid_input("The $filter must name backupManagementType (e.g. backupManagementType eq 'AzureWorkload')."));
    };
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> = if bmt.eq_ignore_ascii_case("AzureWorkload") {
        world
            .protectable_containers(&ctx.vault_key)
            .into_iter()
            .filter(|vm| f.allows("friendlyname", &vm.name))
            .map(|vm| render::protectable_container(vault, vm))
            .collect()
    } else {
        vec![]
    };
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

fn container_body(world: &World, ctx: &Ctx, name: &str) -> Result<Value, ArmError> {
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let c = vault.containers.get(&key(name)).ok_or_else(|| container_not_found(name))?;
    Ok(render::container(vault, c, world.vms.get(&c.vm_key)))
}

pub fn get_container(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    Ok(ArmResponse::ok("", container_body(world, ctx, name)?))
}

pub fn register(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let body = ctx.json_body()?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| ArmError::invalid_input("The body needs a 'properties' object."))?;
    let ctype = props
        .get("containerType")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::invalid_input("properties.containerType is required (VMAppContainer for SQL Server in Azure VMs)."))?;
    if !ctype.eq_ignore_ascii_case("VMAppContainer") {
        return Err(ArmError::invalid_input(format!(
            "containerType '{ctype}' is not supported here; SQL Server in Azure VMs uses VMAppContainer."
        )));
    }
    if let Some(b) = props.get("backupManagementType").and_then(Value::as_str)
        && !b.eq_ignore_ascii_case("AzureWorkload")
    {
        return Err(ArmError::invalid_input(format!(
            "backupManagementType '{b}' does not match containerType VMAppContainer (AzureWorkload)."
        )));
    }
    if let Some(w) = props.get("workloadType").and_then(Value::as_str)
        && !w.eq_ignore_ascii_case("SQLDataBase")
    {
        return Err(ArmError::invalid_input(format!("workloadType '{w}' is not simulated; use SQLDataBase.")));
    }
    let reregister = match props.get("operationType").and_then(Value::as_str) {
        None => false,
        Some(o) if o.eq_ignore_ascii_case("Register") => false,
        Some(o) if o.eq_ignore_ascii_case("Reregister") => true,
        Some(o) => {
            return Err(ArmError::invalid_input(format!("operationType '{o}' is not valid for registration (Register or Reregister).")));
        }
    };
    let source = props.get("sourceResourceId").and_then(Value::as_str);
    let started = world.start_register(&ctx.vault_key, name, source, reregister, &ctx.api_version, ctx.req.now)?;
    let canonical =
        world.vault(&ctx.vault_key).and_then(|v| v.containers.get(&key(name))).map(|c| c.name.clone()).unwrap_or_else(|| name.to_string());
    let base = format!("{}/backupFabrics/Azure/protectionContainers/{}", ctx.vault_url(world), canonical);
    Ok(accepted(
        world,
        format!("{base}/operationResults/{}?api-version={}", started.op_id, ctx.api_version),
        Some(format!("{base}/operationsStatus/{}?api-version={}", started.op_id, ctx.api_version)),
    ))
}

pub fn unregister(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let canonical =
        world.vault(&ctx.vault_key).and_then(|v| v.containers.get(&key(name))).map(|c| c.name.clone()).unwrap_or_else(|| name.to_string());
    let started = world.start_unregister(&ctx.vault_key, name, &ctx.api_version, ctx.req.now)?;
    let base = format!("{}/backupFabrics/Azure/protectionContainers/{}", ctx.vault_url(world), canonical);
    Ok(accepted(
        world,
        format!("{base}/operationResults/{}?api-version={}", started.op_id, ctx.api_version),
        Some(format!("{base}/operationsStatus/{}?api-version={}", started.op_id, ctx.api_version)),
    ))
}

pub fn inquire(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["workloadtype", "backupmanagementtype"])?;
    if !f.allows("workloadtype", "SQLDataBase") {
        return Err(ArmError::invalid_input("Only workloadType 'SQLDataBase' is simulated."));
    }
    let started = world.start_inquire(&ctx.vault_key, name, &ctx.api_version, ctx.req.now)?;
    let canonical =
        world.vault(&ctx.vault_key).and_then(|v| v.containers.get(&key(name))).map(|c| c.name.clone()).unwrap_or_else(|| name.to_string());
    let base = format!("{}/backupFabrics/Azure/protectionContainers/{}", ctx.vault_url(world), canonical);
    Ok(accepted(
        world,
        format!("{base}/operationResults/{}?api-version={}", started.op_id, ctx.api_version),
        Some(format!("{base}/operationsStatus/{}?api-version={}", started.op_id, ctx.api_version)),
    ))
}

pub fn protectable_items(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(
        ctx.query.get("$filter"),
        &["backupmanagementtype", "workloadtype", "protectableitemtype", "friendlyname", "servername", "parentname", "containername"],
    )?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let mut entries = Vec::new();
    if f.allows("backupmanagementtype", "AzureWorkload")
        && f.get("workloadtype").is_none_or(|w| w.eq_ignore_ascii_case("SQLDataBase") || w.eq_ignore_ascii_case("SQL"))
    {
        for c in vault.containers.values().filter(|c| c.registration == crate::world::Registration::Registered) {
            if !f.allows("containername", &c.name) {
                continue;
            }
            let Some(vm) = world.vms.get(&c.vm_key) else { continue };
            entries.extend(render::protectable_entries(c, vm).into_iter().filter(|e| {
                f.allows("protectableitemtype", e.item_type())
                    && f.allows("friendlyname", e.friendly_name())
                    && f.allows("servername", &e.vm.fqdn)
                    && f.allows("parentname", &e.instance.name)
            }));
        }
    }
    Ok(ArmResponse::ok("", ctx.page_lazy(world, entries, |e| render::protectable_item(vault, &e))?))
}

pub fn workload_items(world: &mut World, ctx: &Ctx, name: &str) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "workloaditemtype", "workloadtype", "protectionstatus"])?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let c = vault.containers.get(&key(name)).ok_or_else(|| container_not_found(name))?;
    let vm = world.vms.get(&c.vm_key).ok_or_else(|| container_not_found(name))?;
    let items: Vec<Value> = render::workload_items(vault, c, vm)
        .into_iter()
        .filter(|i| f.allows("workloaditemtype", i["properties"]["workloadItemType"].as_str().unwrap_or_default()))
        .collect();
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

pub fn list_containers(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(ctx.query.get("$filter"), &["backupmanagementtype", "friendlyname", "status", "workloadtype", "containertype"])?;
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> = if f.allows("backupmanagementtype", "AzureWorkload") && f.allows("containertype", "VMAppContainer") {
        vault
            .containers
            .values()
            .filter_map(|c| {
                let vm = world.vms.get(&c.vm_key);
                let body = render::container(vault, c, vm);
                let reg = body["properties"]["registrationStatus"].as_str().unwrap_or_default().to_string();
                (f.allows("friendlyname", vm.map(|v| v.name.as_str()).unwrap_or_default()) && f.allows("status", &reg)).then_some(body)
            })
            .collect()
    } else {
        vec![]
    };
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

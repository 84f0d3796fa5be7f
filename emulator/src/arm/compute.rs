//! The small Compute surface the workflows need: read a VM (location, tags, provisioning
//! state) and list VMs of a subscription or resource group.

use serde_json::Value;

use super::query::{COMPUTE_API_VERSIONS, Query};
use super::{ArmRequest, ArmResponse, check_scope};
use crate::error::ArmError;
use crate::names::{key, vm_id};
use crate::world::{World, render};

pub fn get_vm(world: &mut World, q: &Query, sub: &str, rg: &str, name: &str) -> ArmResponse {
    let op = "VirtualMachines_Get";
    let run = || -> Result<Value, ArmError> {
        q.api_version(COMPUTE_API_VERSIONS, "Microsoft.Compute")?;
        let sub = check_scope(world, sub, rg)?;
        let vm = world.vms.get(&key(&vm_id(&sub, rg, name))).ok_or_else(|| {
            ArmError::not_found(
                "ResourceNotFound",
                format!("The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' was not found."),
            )
        })?;
        Ok(render::vm(vm))
    };
    match run() {
        Ok(v) => ArmResponse::ok(op, v),
        Err(e) => ArmResponse::error(op, &e),
    }
}

pub fn list_vms(world: &mut World, req: &ArmRequest, q: &Query, sub: &str, rg: Option<&str>) -> ArmResponse {
    let op = if rg.is_some() { "VirtualMachines_List" } else { "VirtualMachines_ListAll" };
    let run = || -> Result<Value, ArmError> {
        q.api_version(COMPUTE_API_VERSIONS, "Microsoft.Compute")?;
        let sub_id = match rg {
            Some(rg) => check_scope(world, sub, rg)?,
            None => world
                .subscriptions
                .get(&key(sub))
                .map(|s| s.id.clone())
                .ok_or_else(|| ArmError::not_found("SubscriptionNotFound", format!("The subscription '{sub}' could not be found.")))?,
        };
        let size = world.settings.page_size.max(1);
        let start: usize = match q.get("$skiptoken") {
            None => 0,
            Some(t) => t.parse().map_err(|_| ArmError::bad_request("InvalidSkipToken", format!("The skip token '{t}' is not valid.")))?,
        };
        let all: Vec<&crate::world::Vm> = world
            .vms
            .values()
            .filter(|vm| vm.subscription_id.eq_ignore_ascii_case(&sub_id) && rg.is_none_or(|g| vm.resource_group.eq_ignore_ascii_case(g)))
            .collect();
        let page: Vec<Value> = all.iter().skip(start).take(size).map(|vm| render::vm(vm)).collect();
        let next = if start + size < all.len() {
            Value::String(format!(
                "{}{}?api-version={}&$skiptoken={}",
                req.base_url,
                req.path,
                q.get("api-version").unwrap_or_default(),
                start + size
            ))
        } else {
            Value::Null
        };
        Ok(serde_json::json!({ "value": page, "nextLink": next }))
    };
    match run() {
        Ok(v) => ArmResponse::ok(op, v),
        Err(e) => ArmResponse::error(op, &e),
    }
}

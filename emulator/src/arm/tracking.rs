//! Following work: operation results (Location), operation statuses (Azure-AsyncOperation),
//! their vault-level twins, and jobs (azure-backup-api.md §4–§5).
//!
//! Every operation id resolves at vault level as well as under the path that started it, as the
//! service does (the Azure CLI polls `backupOperations/{id}` for item operations).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::query::Filter;
use super::{ArmResponse, Ctx, accepted};
use crate::error::ArmError;
use crate::names::key;
use crate::world::operations::job_not_found;
use crate::world::{OpKind, OpStatus, Operation, World, render};

fn operation<'w>(world: &'w World, ctx: &Ctx, op: &str) -> Result<&'w Operation, ArmError> {
    world
        .operations
        .get(&key(op))
        .filter(|o| o.vault_key == ctx.vault_key)
        .ok_or_else(|| ArmError::not_found("BMSUserErrorOperationNotFound", format!("Operation '{op}' was not found in this vault.")))
}

/// This request's own URL, for the `Location` of a 202 that says "still running".
fn self_url(ctx: &Ctx) -> String {
    format!("{}{}?api-version={}", ctx.req.base_url, ctx.req.path, ctx.api_version)
}

fn failed(status: &OpStatus) -> Option<ArmError> {
    match status {
        OpStatus::Failed { code, message, http_status } => Some(ArmError::new(*http_status, code, message.clone())),
        _ => None,
    }
}

/// `backupFabrics/{f}/operationResults/{id}`: 202 while the refresh runs, then 204.
pub fn fabric_result(world: &mut World, ctx: &Ctx, op: &str) -> Result<ArmResponse, ArmError> {
    let o = operation(world, ctx, op)?;
    match &o.status {
        OpStatus::InProgress => Ok(accepted(world, self_url(ctx), None)),
        OpStatus::Succeeded => Ok(ArmResponse::status("", 204)),
        s => Err(failed(s).unwrap_or_else(|| ArmError::new(500, "InternalError", "unexpected"))),
    }
}

/// Container `operationResults`: 202, then 200 with the container (204 once it is gone).
pub fn container_result(world: &mut World, ctx: &Ctx, op: &str) -> Result<ArmResponse, ArmError> {
    let o = operation(world, ctx, op)?;
    let async_url = self_url(ctx).replacen("/operationResults/", "/operationsStatus/", 1);
    match (&o.status, &o.kind) {
        (OpStatus::InProgress, _) => Ok(accepted(world, self_url(ctx), Some(async_url))),
        (OpStatus::Succeeded, OpKind::Register { container_key } | OpKind::Inquire { container_key }) => {
            let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
            match vault.containers.get(container_key) {
                Some(c) => Ok(ArmResponse::ok("", render::container(vault, c, world.vms.get(&c.vm_key)))),
                None => Ok(ArmResponse::status("", 204)),
            }
        }
        (OpStatus::Succeeded, _) => Ok(ArmResponse::status("", 204)),
        (s, _) => Err(failed(s).unwrap_or_else(|| ArmError::new(500, "InternalError", "unexpected"))),
    }
}

/// Protected item `operationResults`: 202, then 200 with the item (configure, stop) or 204.
pub fn item_result(world: &mut World, ctx: &Ctx, op: &str) -> Result<ArmResponse, ArmError> {
    let o = operation(world, ctx, op)?;
    let async_url = self_url(ctx).replacen("/operationResults/", "/operationsStatus/", 1);
    match (&o.status, &o.kind) {
        (OpStatus::InProgress, _) => Ok(accepted(world, self_url(ctx), Some(async_url))),
        (OpStatus::Succeeded, OpKind::Configure { container_key, item_key } | OpKind::Stop { container_key, item_key }) => {
            let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
            match vault.items.get(&(container_key.clone(), item_key.clone())) {
                Some(i) => Ok(ArmResponse::ok("", render::protected_item(vault, i, world.vms.get(&i.vm_key)))),
                None => Ok(ArmResponse::status("", 204)),
            }
        }
        (OpStatus::Succeeded, _) => Ok(ArmResponse::status("", 204)),
        (s, _) => Err(failed(s).unwrap_or_else(|| ArmError::new(500, "InternalError", "unexpected"))),
    }
}

/// `backupOperationResults/{id}` and `backupJobs/{job}/operationResults/{id}`: 202, then 204.
pub fn vault_result(world: &mut World, ctx: &Ctx, op: &str) -> Result<ArmResponse, ArmError> {
    let o = operation(world, ctx, op)?;
    match &o.status {
        OpStatus::InProgress => Ok(accepted(world, self_url(ctx), None)),
        OpStatus::Succeeded => Ok(ArmResponse::status("", 204)),
        s => Err(failed(s).unwrap_or_else(|| ArmError::new(500, "InternalError", "unexpected"))),
    }
}

/// Any operationsStatus URL: 200 with `OperationStatus`, whatever the state.
pub fn status(world: &mut World, ctx: &Ctx, op: &str) -> Result<ArmResponse, ArmError> {
    let o = operation(world, ctx, op)?;
    let mut body = render::operation_status(o);
    if matches!(o.kind, OpKind::Refresh) && key(ctx.req.path).contains("/backupfabrics/") {
        // The fabric-level status carries the ARM path as its id (2026-10-01 example); the
        // vault-level `backupOperations/{id}` keeps the bare GUID like every other operation.
        if let Some(v) = world.vault(&ctx.vault_key) {
            body["id"] = Value::String(format!("{}/backupFabrics/Azure/operationsStatus/{}", v.id(), o.id));
        }
    }
    Ok(ArmResponse::ok("", body))
}

pub fn get_job(world: &mut World, ctx: &Ctx, job: &str) -> Result<ArmResponse, ArmError> {
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let j = vault.job(job).ok_or_else(|| job_not_found(job))?;
    Ok(ArmResponse::ok("", render::job(vault, j, ctx.req.now)))
}

pub fn cancel_job(world: &mut World, ctx: &Ctx, job: &str) -> Result<ArmResponse, ArmError> {
    let started = world.start_cancel(&ctx.vault_key, job, &ctx.api_version, ctx.req.now)?;
    let location =
        format!("{}/backupJobs/{}/operationResults/{}?api-version={}", ctx.vault_url(world), job, started.op_id, ctx.api_version);
    Ok(accepted(world, location, None))
}

/// Job filter dates: `2016-01-01 00:00:00 AM` (the CLI's `%Y-%m-%d %I:%M:%S %p`, and the spec
/// example's hour 00) or RFC 3339.
fn parse_job_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    let (main, ampm) = match s.rsplit_once(' ') {
        Some((m, p)) if p.eq_ignore_ascii_case("AM") || p.eq_ignore_ascii_case("PM") => (m, Some(p.eq_ignore_ascii_case("PM"))),
        _ => (s, None),
    };
    let naive = NaiveDateTime::parse_from_str(main, "%Y-%m-%d %H:%M:%S").ok()?;
    let hour = chrono::Timelike::hour(&naive);
    let adjust = match ampm {
        Some(true) if hour < 12 => chrono::Duration::hours(12),
        Some(false) if hour == 12 => chrono::Duration::hours(-12),
        _ => chrono::Duration::zero(),
    };
    Some((naive + adjust).and_utc())
}

pub fn list_jobs(world: &mut World, ctx: &Ctx) -> Result<ArmResponse, ArmError> {
    let f = Filter::parse(
        ctx.query.get("$filter"),
        &["operation", "status", "backupmanagementtype", "starttime", "endtime", "jobid", "entityfriendlyname"],
    )?;
    let bound = |k: &str| -> Result<Option<DateTime<Utc>>, ArmError> {
        f.get(k)
            .map(|v| {
                parse_job_time(v).ok_or_else(|| {
                    ArmError::bad_request("BMSUserErrorInvalidFilter", format!("{k} '{v}' is not a date like '2016-01-01 12:00:00 AM'."))
                })
            })
            .transpose()
    };
    let (from, to) = (bound("starttime")?, bound("endtime")?);
    let vault = world.vault(&ctx.vault_key).ok_or_else(|| ArmError::not_found("ResourceNotFound", "vault"))?;
    let items: Vec<Value> = if f.allows("backupmanagementtype", "AzureWorkload") {
        vault
            .jobs
            .iter()
            .rev()
            .filter(|j| f.get("operation").is_none_or(|o| j.operation.to_ascii_lowercase().starts_with(&o.to_ascii_lowercase())))
            .filter(|j| {
                f.allows("status", j.status.as_str()) && f.allows("jobid", &j.id) && f.allows("entityfriendlyname", &j.entity_friendly_name)
            })
            .filter(|j| from.is_none_or(|t| j.start >= t) && to.is_none_or(|t| j.start <= t))
            .map(|j| render::job(vault, j, ctx.req.now))
            .collect()
    } else {
        vec![]
    };
    Ok(ArmResponse::ok("", ctx.page(world, items)?))
}

#[cfg(test)]
mod tests {
    use super::parse_job_time;

    #[test]
    fn job_filter_dates() {
        assert_eq!(parse_job_time("2016-01-01 00:00:00 AM").unwrap().to_rfc3339(), "2016-01-01T00:00:00+00:00");
        assert_eq!(parse_job_time("2016-01-01 12:30:00 AM").unwrap().to_rfc3339(), "2016-01-01T00:30:00+00:00");
        assert_eq!(parse_job_time("2016-01-01 01:00:00 PM").unwrap().to_rfc3339(), "2016-01-01T13:00:00+00:00");
        assert!(parse_job_time("yesterday").is_none());
    }
}

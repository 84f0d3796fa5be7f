//! The ARM surface: one synchronous function from a request to an answer, over the [`World`].
//!
//! The HTTP server (`server.rs`) does authentication, throttling and faults, then calls
//! [`handle`] with the world locked. Handlers are grouped by the part of the workflow they serve:
//! `discovery` (refresh, containers, inquiry, protectable items), `protection` (protected items,
//! backups, intents, recovery points), `tracking` (operations and jobs), `compute` (VM reads).

mod compute;
mod discovery;
mod protection;
pub mod query;
pub mod route;
mod tracking;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::ArmError;
use crate::names::key;
use crate::world::World;
use query::{BACKUP_API_VERSIONS, Query};
use route::{Route, RouteError, VaultPath, VaultRoute};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
    Other,
}

impl Method {
    pub fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// One ARM request, already read off the wire.
pub struct ArmRequest<'a> {
    pub method: Method,
    /// Raw path (still percent-encoded), used to build `nextLink`.
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    /// `scheme://host[:port]` the client reached us on; tracking URLs are built on it.
    pub base_url: &'a str,
    pub now: DateTime<Utc>,
}

/// The answer, before it becomes HTTP.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// The swagger operationId (or the simulator's name for paths the swagger lacks).
    pub operation_id: &'static str,
}

impl ArmResponse {
    pub fn ok(operation_id: &'static str, body: Value) -> Self {
        ArmResponse { status: 200, headers: vec![], body: Some(body), operation_id }
    }
    pub fn status(operation_id: &'static str, status: u16) -> Self {
        ArmResponse { status, headers: vec![], body: None, operation_id }
    }
    pub fn error(operation_id: &'static str, e: &ArmError) -> Self {
        ArmResponse { status: e.status, headers: vec![], body: Some(e.body()), operation_id }
    }
}

/// Context shared by the handlers of one request.
pub(crate) struct Ctx<'a> {
    pub req: &'a ArmRequest<'a>,
    pub query: Query,
    pub api_version: String,
    pub vault_key: String,
}

impl Ctx<'_> {
    /// `scheme://host` + the vault's id, the prefix of every tracking URL.
    pub fn vault_url(&self, world: &World) -> String {
        let id = world.vault(&self.vault_key).map(|v| v.id()).unwrap_or_default();
        format!("{}{}", self.req.base_url, id)
    }

    pub fn json_body(&self) -> Result<Value, ArmError> {
        if self.req.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body is empty.",
            ));
        }
        serde_json::from_slice(self.req.body).map_err(|e| {
            ArmError::bad_request("InvalidRequestContent", format!("The request content was invalid and could not be deserialized: '{e}'."))
        })
    }

    /// Build a list answer with `nextLink` paging.
    pub fn page(&self, world: &World, items: Vec<Value>) -> Result<Value, ArmError> {
        self.page_lazy(world, items, |v| v)
    }

    /// Page a list of cheap entries and render only the page.
    pub fn page_lazy<T>(&self, world: &World, items: Vec<T>, render: impl Fn(T) -> Value) -> Result<Value, ArmError> {
        let size = world.settings.page_size.max(1);
        let start = match self.query.get("$skiptoken") {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| ArmError::bad_request("BMSUserErrorInvalidSkipToken", format!("The skip token '{t}' is not valid.")))?,
        };
        let total = items.len();
        let end = (start + size).min(total);
        let page: Vec<Value> = items.into_iter().skip(start).take(size).map(render).collect();
        let next = if end < total {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("api-version", &self.api_version);
            if let Some(f) = self.query.get("$filter") {
                q.append_pair("$filter", f);
            }
            q.append_pair("$skipToken", &end.to_string());
            json!(format!("{}{}?{}", self.req.base_url, self.req.path, q.finish().replace('+', "%20")))
        } else {
            Value::Null
        };
        Ok(json!({ "value": page, "nextLink": next }))
    }
}

/// Answer one ARM request.
pub fn handle(world: &mut World, req: &ArmRequest) -> ArmResponse {
    handle_parsed(world, req, route::parse(req.path))
}

/// [`handle`] for a path the caller already parsed (the server parses once per request).
pub fn handle_parsed(world: &mut World, req: &ArmRequest, parsed: Result<Route, RouteError>) -> ArmResponse {
    world.tick(req.now);
    let route = match parsed {
        Ok(r) => r,
        Err(RouteError::NotArm) => {
            return ArmResponse::error("Unknown", &ArmError::not_found("NotFound", format!("No ARM route matches '{}'.", req.path)));
        }
        Err(RouteError::BadEncoding) => {
            return ArmResponse::error(
                "Unknown",
                &ArmError::bad_request("InvalidRequestUri", "The request path is not valid percent-encoded UTF-8."),
            );
        }
        Err(RouteError::UnknownResourceType(t)) => {
            return ArmResponse::error(
                "Unknown",
                &ArmError::not_found(
                    "InvalidResourceType",
                    format!("The resource type '{t}' could not be found in the namespace of this provider."),
                ),
            );
        }
    };
    let op_id = operation_id(&route, req.method);
    let query = match Query::parse(req.query) {
        Ok(q) => q,
        Err(e) => return ArmResponse::error(op_id, &e),
    };
    match route {
        Route::Vm { subscription, resource_group, name } => compute::get_vm(world, &query, &subscription, &resource_group, &name),
        Route::VmList { subscription, resource_group } => compute::list_vms(world, req, &query, &subscription, resource_group.as_deref()),
        Route::Vault(vp, vr) => {
            let api_version = match query.api_version(BACKUP_API_VERSIONS, "Microsoft.RecoveryServices") {
                Ok(v) => v,
                Err(e) => return ArmResponse::error(op_id, &e),
            };
            if op_id == "MethodNotAllowed" {
                return ArmResponse::error(
                    op_id,
                    &ArmError::new(405, "MethodNotAllowed", "The requested method is not allowed for this resource."),
                );
            }
            let vault_key = match resolve_vault(world, &vp) {
                Ok(k) => k,
                Err(e) => return ArmResponse::error(op_id, &e),
            };
            let ctx = Ctx { req, query, api_version, vault_key };
            let result = dispatch(world, &ctx, vr);
            match result {
                Ok(mut r) => {
                    r.operation_id = op_id;
                    r
                }
                Err(e) => ArmResponse::error(op_id, &e),
            }
        }
    }
}

/// Check subscription, resource group and vault with ARM's own error codes.
fn resolve_vault(world: &World, vp: &VaultPath) -> Result<String, ArmError> {
    let sub = check_scope(world, &vp.subscription, &vp.resource_group)?;
    let vault_key = key(&crate::names::vault_id(&sub, &vp.resource_group, &vp.vault));
    if world.vault(&vault_key).is_none() {
        return Err(ArmError::not_found(
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.RecoveryServices/vaults/{}' under resource group '{}' was not found.",
                vp.vault, vp.resource_group
            ),
        ));
    }
    Ok(vault_key)
}

/// Subscription then resource group; returns the subscription id as the scenario spells it.
pub(crate) fn check_scope(world: &World, subscription: &str, resource_group: &str) -> Result<String, ArmError> {
    let Some(sub) = world.subscriptions.get(&key(subscription)) else {
        // ARM rejects malformed ids outright; a well-formed unknown one is "not found". The
        // seed's malformed id is accepted when the scenario declares it (docs/simulator.md).
        return Err(if uuid::Uuid::parse_str(subscription).is_err() {
            ArmError::bad_request(
                "InvalidSubscriptionId",
                format!("The provided subscription identifier '{subscription}' is malformed or invalid."),
            )
        } else {
            ArmError::not_found("SubscriptionNotFound", format!("The subscription '{subscription}' could not be found."))
        });
    };
    if !sub.resource_groups.contains(&key(resource_group)) {
        return Err(ArmError::not_found("ResourceGroupNotFound", format!("Resource group '{resource_group}' could not be found.")));
    }
    Ok(sub.id.clone())
}

fn check_fabric(fabric: &str) -> Result<(), ArmError> {
    if fabric.eq_ignore_ascii_case("Azure") {
        Ok(())
    } else {
        Err(ArmError::not_found("BMSUserErrorInvalidFabricName", format!("Fabric '{fabric}' does not exist; the only fabric is 'Azure'.")))
    }
}

fn dispatch(world: &mut World, ctx: &Ctx, vr: VaultRoute) -> Result<ArmResponse, ArmError> {
    use Method::*;
    use VaultRoute as V;
    let m = ctx.req.method;
    match vr {
        V::RefreshContainers { fabric } => check_fabric(&fabric).and_then(|_| discovery::refresh(world, ctx)),
        V::FabricOperationResult { fabric, op } => check_fabric(&fabric).and_then(|_| tracking::fabric_result(world, ctx, &op)),
        V::FabricOperationStatus { fabric, op } => check_fabric(&fabric).and_then(|_| tracking::status(world, ctx, &op)),
        V::ProtectableContainers { fabric } => check_fabric(&fabric).and_then(|_| discovery::protectable_containers(world, ctx)),
        V::Container { fabric, container } => check_fabric(&fabric).and_then(|_| match m {
            Get => discovery::get_container(world, ctx, &container),
            Put => discovery::register(world, ctx, &container),
            _ => discovery::unregister(world, ctx, &container),
        }),
        V::Inquire { fabric, container } => check_fabric(&fabric).and_then(|_| discovery::inquire(world, ctx, &container)),
        V::WorkloadItems { fabric, container } => check_fabric(&fabric).and_then(|_| discovery::workload_items(world, ctx, &container)),
        V::ContainerOperationResult { fabric, container: _, op } => {
            check_fabric(&fabric).and_then(|_| tracking::container_result(world, ctx, &op))
        }
        V::ContainerOperationStatus { fabric, container: _, op } => check_fabric(&fabric).and_then(|_| tracking::status(world, ctx, &op)),
        V::Item { fabric, container, item } => check_fabric(&fabric).and_then(|_| match m {
            Get => protection::get_item(world, ctx, &container, &item),
            Put => protection::put_item(world, ctx, &container, &item),
            _ => protection::delete_item(world, ctx, &container, &item),
        }),
        V::Backup { fabric, container, item } => check_fabric(&fabric).and_then(|_| protection::backup(world, ctx, &container, &item)),
        V::ItemOperationResult { fabric, op, .. } => check_fabric(&fabric).and_then(|_| tracking::item_result(world, ctx, &op)),
        V::ItemOperationStatus { fabric, op, .. } => check_fabric(&fabric).and_then(|_| tracking::status(world, ctx, &op)),
        V::RecoveryPoints { fabric, container, item } => {
            check_fabric(&fabric).and_then(|_| protection::recovery_points(world, ctx, &container, &item, None))
        }
        V::RecoveryPoint { fabric, container, item, rp } => {
            check_fabric(&fabric).and_then(|_| protection::recovery_points(world, ctx, &container, &item, Some(&rp)))
        }
        V::Intent { fabric, name } => check_fabric(&fabric).and_then(|_| match m {
            Get => protection::get_intent(world, ctx, &name),
            Put => protection::put_intent(world, ctx, &name),
            _ => protection::delete_intent(world, ctx, &name),
        }),
        V::ProtectableItems => discovery::protectable_items(world, ctx),
        V::Policies => protection::list_policies(world, ctx),
        V::Policy { name } => protection::get_policy(world, ctx, &name),
        V::ProtectedItems => protection::list_items(world, ctx),
        V::ProtectionContainers => discovery::list_containers(world, ctx),
        V::Intents => protection::list_intents(world, ctx),
        V::Jobs => tracking::list_jobs(world, ctx),
        V::Job { job } => tracking::get_job(world, ctx, &job),
        V::CancelJob { job } => tracking::cancel_job(world, ctx, &job),
        V::JobOperationResult { op, .. } => tracking::vault_result(world, ctx, &op),
        V::VaultOperationResult { op } => tracking::vault_result(world, ctx, &op),
        V::VaultOperationStatus { op } => tracking::status(world, ctx, &op),
    }
}

/// The swagger operationId of a route + method; `MethodNotAllowed` when the pair does not exist.
pub fn operation_id(route: &Route, m: Method) -> &'static str {
    use Method::*;
    use VaultRoute as V;
    match (route, m) {
        (Route::Vm { .. }, Get) => "VirtualMachines_Get",
        (Route::VmList { resource_group: Some(_), .. }, Get) => "VirtualMachines_List",
        (Route::VmList { resource_group: None, .. }, Get) => "VirtualMachines_ListAll",
        (Route::Vault(_, vr), m) => match (vr, m) {
            (V::RefreshContainers { .. }, Post) => "ProtectionContainers_Refresh",
            (V::FabricOperationResult { .. }, Get) => "ProtectionContainerRefreshOperationResults_Get",
            (V::FabricOperationStatus { .. }, Get) => "ProtectionContainerRefreshOperationStatuses_Get",
            (V::ProtectableContainers { .. }, Get) => "ProtectableContainers_List",
            (V::Container { .. }, Get) => "ProtectionContainers_Get",
            (V::Container { .. }, Put) => "ProtectionContainers_Register",
            (V::Container { .. }, Delete) => "ProtectionContainers_Unregister",
            (V::Inquire { .. }, Post) => "ProtectionContainers_Inquire",
            (V::WorkloadItems { .. }, Get) => "BackupWorkloadItems_List",
            (V::ContainerOperationResult { .. }, Get) => "ProtectionContainerOperationResults_Get",
            // Not in the swagger although the service sends its URL (azure-backup-api.md §2 notes).
            (V::ContainerOperationStatus { .. }, Get) => "ProtectionContainerOperationStatuses_Get",
            (V::Item { .. }, Get) => "ProtectedItems_Get",
            (V::Item { .. }, Put) => "ProtectedItems_CreateOrUpdate",
            (V::Item { .. }, Delete) => "ProtectedItems_Delete",
            (V::Backup { .. }, Post) => "Backups_Trigger",
            (V::ItemOperationResult { .. }, Get) => "ProtectedItemOperationResults_Get",
            (V::ItemOperationStatus { .. }, Get) => "ProtectedItemOperationStatuses_Get",
            (V::RecoveryPoints { .. }, Get) => "RecoveryPoints_List",
            (V::RecoveryPoint { .. }, Get) => "RecoveryPoints_Get",
            (V::Intent { .. }, Get) => "ProtectionIntent_Get",
            (V::Intent { .. }, Put) => "ProtectionIntent_CreateOrUpdate",
            (V::Intent { .. }, Delete) => "ProtectionIntent_Delete",
            (V::ProtectableItems, Get) => "BackupProtectableItems_List",
            (V::Policies, Get) => "BackupPolicies_List",
            (V::Policy { .. }, Get) => "ProtectionPolicies_Get",
            (V::ProtectedItems, Get) => "BackupProtectedItems_List",
            (V::ProtectionContainers, Get) => "BackupProtectionContainers_List",
            (V::Intents, Get) => "BackupProtectionIntent_List",
            (V::Jobs, Get) => "BackupJobs_List",
            (V::Job { .. }, Get) => "JobDetails_Get",
            (V::CancelJob { .. }, Post) => "JobCancellations_Trigger",
            (V::JobOperationResult { .. }, Get) => "JobOperationResults_Get",
            (V::VaultOperationResult { .. }, Get) => "BackupOperationResults_Get",
            (V::VaultOperationStatus { .. }, Get) => "BackupOperationStatuses_Get",
            _ => "MethodNotAllowed",
        },
        _ => "MethodNotAllowed",
    }
}

/// The three headers of an accepted long-running request.
pub(crate) fn accepted(world: &World, location: String, async_op: Option<String>) -> ArmResponse {
    let mut headers = vec![("Location", location)];
    if let Some(a) = async_op {
        headers.push(("Azure-AsyncOperation", a));
    }
    headers.push(("Retry-After", world.settings.retry_after_seconds.to_string()));
    ArmResponse { status: 202, headers, body: None, operation_id: "" }
}

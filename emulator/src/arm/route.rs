//! Turning an ARM path into a typed route.
//!
//! ARM matches path segments case-insensitively and the Azure SDKs percent-encode them (`;` may
//! arrive raw or as `%3B`), so every segment is decoded first and keywords are compared in lower
//! case; names keep the casing the caller sent (azure-backup-api.md §1.3–§1.4).

use percent_encoding::percent_decode_str;

/// The vault a Backup route lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultPath {
    pub subscription: String,
    pub resource_group: String,
    pub vault: String,
}

/// Every path the simulator serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// GET a VM.
    Vm {
        subscription: String,
        resource_group: String,
        name: String,
    },
    /// List VMs of a subscription or resource group.
    VmList {
        subscription: String,
        resource_group: Option<String>,
    },
    Vault(VaultPath, VaultRoute),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultRoute {
    RefreshContainers { fabric: String },
    FabricOperationResult { fabric: String, op: String },
    FabricOperationStatus { fabric: String, op: String },
    ProtectableContainers { fabric: String },
    Container { fabric: String, container: String },
    Inquire { fabric: String, container: String },
    WorkloadItems { fabric: String, container: String },
    ContainerOperationResult { fabric: String, container: String, op: String },
    ContainerOperationStatus { fabric: String, container: String, op: String },
    Item { fabric: String, container: String, item: String },
    Backup { fabric: String, container: String, item: String },
    ItemOperationResult { fabric: String, container: String, item: String, op: String },
    ItemOperationStatus { fabric: String, container: String, item: String, op: String },
    RecoveryPoints { fabric: String, container: String, item: String },
    RecoveryPoint { fabric: String, container: String, item: String, rp: String },
    Intent { fabric: String, name: String },
    ProtectableItems,
    Policies,
    Policy { name: String },
    ProtectedItems,
    ProtectionContainers,
    Intents,
    Jobs,
    Job { job: String },
    CancelJob { job: String },
    JobOperationResult { job: String, op: String },
    VaultOperationResult { op: String },
    VaultOperationStatus { op: String },
}

/// Why a path did not match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not an ARM path of a provider the simulator knows.
    NotArm,
    /// Under a known provider, but no such resource type.
    UnknownResourceType(String),
    /// A segment is not valid percent-encoding or UTF-8.
    BadEncoding,
}

/// Split and decode a raw request path.
pub fn segments(path: &str) -> Result<Vec<String>, RouteError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| RouteError::BadEncoding))
        .collect()
}

pub fn parse(path: &str) -> Result<Route, RouteError> {
    let segs = segments(path)?;
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let s = |i: usize| segs[i].clone();
    match l.as_slice() {
        ["subscriptions", _, "providers", "microsoft.compute", "virtualmachines"] => {
            Ok(Route::VmList { subscription: s(1), resource_group: None })
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "virtualmachines"] => {
            Ok(Route::VmList { subscription: s(1), resource_group: Some(s(3)) })
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "virtualmachines", _] => {
            Ok(Route::Vm { subscription: s(1), resource_group: s(3), name: s(7) })
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", ..] => {
            Err(RouteError::UnknownResourceType(lower[6..].join("/")))
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.recoveryservices", "vaults", _, rest @ ..] => {
            let vp = VaultPath { subscription: s(1), resource_group: s(3), vault: s(7) };
            let r = &segs[8..];
            vault_route(rest, r).map(|vr| Route::Vault(vp, vr)).ok_or_else(|| RouteError::UnknownResourceType(rest.join("/")))
        }
        _ => Err(RouteError::NotArm),
    }
}

fn vault_route(l: &[&str], r: &[String]) -> Option<VaultRoute> {
    use VaultRoute::*;
    let s = |i: usize| r[i].clone();
    Some(match l {
        ["backupfabrics", _, "refreshcontainers"] => RefreshContainers { fabric: s(1) },
        ["backupfabrics", _, "operationresults", _] => FabricOperationResult { fabric: s(1), op: s(3) },
        ["backupfabrics", _, "operationsstatus", _] => FabricOperationStatus { fabric: s(1), op: s(3) },
        ["backupfabrics", _, "protectablecontainers"] => ProtectableContainers { fabric: s(1) },
        ["backupfabrics", _, "backupprotectionintent", _] => Intent { fabric: s(1), name: s(3) },
        ["backupfabrics", _, "protectioncontainers", _] => Container { fabric: s(1), container: s(3) },
        ["backupfabrics", _, "protectioncontainers", _, "inquire"] => Inquire { fabric: s(1), container: s(3) },
        ["backupfabrics", _, "protectioncontainers", _, "items"] => WorkloadItems { fabric: s(1), container: s(3) },
        ["backupfabrics", _, "protectioncontainers", _, "operationresults", _] => {
            ContainerOperationResult { fabric: s(1), container: s(3), op: s(5) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "operationsstatus", _] => {
            ContainerOperationStatus { fabric: s(1), container: s(3), op: s(5) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _] => Item { fabric: s(1), container: s(3), item: s(5) },
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _, "backup"] => {
            Backup { fabric: s(1), container: s(3), item: s(5) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _, "operationresults", _] => {
            ItemOperationResult { fabric: s(1), container: s(3), item: s(5), op: s(7) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _, "operationsstatus", _] => {
            ItemOperationStatus { fabric: s(1), container: s(3), item: s(5), op: s(7) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _, "recoverypoints"] => {
            RecoveryPoints { fabric: s(1), container: s(3), item: s(5) }
        }
        ["backupfabrics", _, "protectioncontainers", _, "protecteditems", _, "recoverypoints", _] => {
            RecoveryPoint { fabric: s(1), container: s(3), item: s(5), rp: s(7) }
        }
        ["backupprotectableitems"] => ProtectableItems,
        ["backuppolicies"] => Policies,
        ["backuppolicies", _] => Policy { name: s(1) },
        ["backupprotecteditems"] => ProtectedItems,
        ["backupprotectioncontainers"] => ProtectionContainers,
        ["backupprotectionintents"] => Intents,
        ["backupjobs"] => Jobs,
        ["backupjobs", _] => Job { job: s(1) },
        ["backupjobs", _, "cancel"] => CancelJob { job: s(1) },
        ["backupjobs", _, "operationresults", _] => JobOperationResult { job: s(1), op: s(3) },
        ["backupoperationresults", _] => VaultOperationResult { op: s(1) },
        ["backupoperations", _] => VaultOperationStatus { op: s(1) },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_ignores_case() {
        let raw = "/Subscriptions/s/resourcegroups/RG/providers/microsoft.recoveryservices/vaults/V/backupFabrics/Azure/protectionContainers/VMAppContainer%3BCompute%3Brg%3Bvm/protectedItems/sqldatabase;mssqlserver;msdb/backup";
        let Route::Vault(vp, VaultRoute::Backup { container, item, .. }) = parse(raw).unwrap() else { panic!() };
        assert_eq!(vp.vault, "V");
        assert_eq!(container, "VMAppContainer;Compute;rg;vm");
        assert_eq!(item, "sqldatabase;mssqlserver;msdb");
    }

    #[test]
    fn unknown_paths_are_told_apart() {
        assert_eq!(parse("/foo"), Err(RouteError::NotArm));
        assert!(matches!(
            parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.RecoveryServices/vaults/v/nope"),
            Err(RouteError::UnknownResourceType(_))
        ));
        assert_eq!(parse("/subscriptions/%FF/x"), Err(RouteError::BadEncoding));
    }
}

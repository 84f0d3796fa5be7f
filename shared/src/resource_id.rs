//! ARM resource ids, validated before anything is sent: a caller's id is external input.

use std::fmt;

/// A parsed `/subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}` id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    pub namespace: String,
    pub resource_type: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource id '{id}': {why}")]
pub struct InvalidResourceId {
    pub id: String,
    pub why: &'static str,
}

fn valid_rg(s: &str) -> bool {
    (1..=90).contains(&s.len()) && s.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c)) && !s.ends_with('.')
}

fn valid_name(s: &str) -> bool {
    (1..=260).contains(&s.len()) && !s.chars().any(|c| c.is_control() || "/\\?#%&".contains(c))
}

/// Subscription ids are GUIDs; hex and dashes of a GUID's length are accepted (the seed
/// document's id is one group short and the simulator serves it).
fn valid_subscription(s: &str) -> bool {
    (32..=36).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

impl ResourceId {
    pub fn parse(id: &str) -> Result<ResourceId, InvalidResourceId> {
        let bad = |why| InvalidResourceId { id: id.chars().take(300).collect(), why };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() != 9 || !parts[0].is_empty() {
            return Err(bad("expected /subscriptions/{id}/resourceGroups/{group}/providers/{namespace}/{type}/{name}"));
        }
        if !parts[1].eq_ignore_ascii_case("subscriptions")
            || !parts[3].eq_ignore_ascii_case("resourceGroups")
            || !parts[5].eq_ignore_ascii_case("providers")
        {
            return Err(bad("expected /subscriptions/{id}/resourceGroups/{group}/providers/..."));
        }
        if !valid_subscription(parts[2]) {
            return Err(bad("the subscription id is not a GUID"));
        }
        if !valid_rg(parts[4]) {
            return Err(bad("the resource group name is not valid"));
        }
        if !parts[6].contains('.') || !parts[6].chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(bad("the provider namespace is not valid"));
        }
        if parts[7].is_empty() || !parts[7].chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad("the resource type is not valid"));
        }
        if !valid_name(parts[8]) {
            return Err(bad("the resource name is not valid"));
        }
        Ok(ResourceId {
            subscription: parts[2].to_string(),
            resource_group: parts[4].to_string(),
            namespace: parts[6].to_string(),
            resource_type: parts[7].to_string(),
            name: parts[8].to_string(),
        })
    }

    /// A VM id (`Microsoft.Compute/virtualMachines`).
    pub fn parse_vm(id: &str) -> Result<ResourceId, InvalidResourceId> {
        let r = Self::parse(id)?;
        if r.namespace.eq_ignore_ascii_case("Microsoft.Compute") && r.resource_type.eq_ignore_ascii_case("virtualMachines") {
            Ok(r)
        } else {
            Err(InvalidResourceId { id: id.to_string(), why: "not a Microsoft.Compute/virtualMachines id" })
        }
    }

    /// A Recovery Services vault id.
    pub fn parse_vault(id: &str) -> Result<ResourceId, InvalidResourceId> {
        let r = Self::parse(id)?;
        if r.namespace.eq_ignore_ascii_case("Microsoft.RecoveryServices") && r.resource_type.eq_ignore_ascii_case("vaults") {
            Ok(r)
        } else {
            Err(InvalidResourceId { id: id.to_string(), why: "not a Microsoft.RecoveryServices/vaults id" })
        }
    }

    /// Case-insensitive comparison, as ARM compares ids.
    pub fn same(a: &str, b: &str) -> bool {
        a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/'))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.subscription, self.resource_group, self.namespace, self.resource_type, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let vm = ResourceId::parse_vm(
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/rg-sql/providers/Microsoft.Compute/virtualMachines/sqlvm01",
        )
        .unwrap();
        assert_eq!(vm.name, "sqlvm01");
        assert!(ResourceId::parse_vault(&vm.to_string()).is_err());
        for bad in [
            "",
            "/subscriptions/x",
            "/subscriptions/not-a-guid!/resourceGroups/r/providers/A.B/c/d",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/r/providers/A.B/c/d/e",
            "subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/r/providers/A.B/c/d",
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/r/providers/A.B/c/na%2fme",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceId::same("/Subscriptions/A/x", "/subscriptions/a/X/"));
    }
}

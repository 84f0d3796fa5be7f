//! Lenient typed views of the Backup API bodies the workflows read (azure-backup-api.md §4, §5,
//! §13.1 point 7). Every field is optional or defaulted, `null` is the same as absent, scalars of
//! the wrong type are read as text, and unknown enum strings are kept as `String`: a new value
//! from the service must never make a poll fail. Views only read; requests are built as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ArmError;

/// Parse a JSON value into a view.
pub fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ArmError> {
    T::deserialize(v).map_err(|e| ArmError::Decode(e.to_string()))
}

/// Parse every item of a list (as returned by `ArmClient::list_all`).
pub fn parse_all<T: serde::de::DeserializeOwned>(items: &[Value]) -> Result<Vec<T>, ArmError> {
    items.iter().map(parse).collect()
}

mod lenient {
    use super::*;

    /// `null` (or any value that does not fit) becomes the default.
    pub fn or_default<'de, D: Deserializer<'de>, T: Default + serde::de::DeserializeOwned>(d: D) -> Result<T, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(T::deserialize(v).unwrap_or_default())
    }

    /// Strings as they are, numbers and booleans as text, anything else `None`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(opt_string(d)?.unwrap_or_default())
    }

    /// Integers, or strings holding one; anything else 0.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).unwrap_or(0),
            Value::String(s) => s.trim().parse().unwrap_or(0),
            _ => 0,
        })
    }

    /// A list of strings; non-string items as text, `null` empty.
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(a) => a
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect(),
            Value::String(s) => vec![s],
            _ => Vec::new(),
        })
    }

    /// A string map; non-string values as text, `null` values dropped.
    pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Object(m) => m
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Null => None,
                    other => Some((k, other.to_string())),
                })
                .collect(),
            _ => BTreeMap::new(),
        })
    }

    pub fn values<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        })
    }
}

/// `{code, message}` of an operation status or a container inquiry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ErrorInfo {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub code: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub message: Option<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub recommendations: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Operation status (the Azure-AsyncOperation body)

/// `OperationStatus` (§4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OperationStatus {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub status: String,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_time: Option<String>,
    /// May be the .NET minimum `0001-01-01T00:00:00…` while running; see [`Self::ended_at`].
    #[serde(deserialize_with = "lenient::opt_string")]
    pub end_time: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub error: Option<ErrorInfo>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: Option<OperationStatusProperties>,
}

/// `OperationStatusExtendedInfo` (polymorphic on `objectType`; only the job ids are read).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OperationStatusProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub object_type: Option<String>,
    /// `OperationStatusJobExtendedInfo`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub job_id: Option<String>,
    /// `OperationStatusJobsExtendedInfo`.
    #[serde(deserialize_with = "lenient::strings")]
    pub job_ids: Vec<String>,
}

/// The state of an asynchronous operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpState {
    InProgress,
    Succeeded,
    Failed,
    /// `Canceled` or `Cancelled`.
    Canceled,
    /// Any other text (`Invalid`, a future value, empty): keep polling until the deadline.
    Unknown(String),
}

impl OpState {
    pub fn parse(s: &str) -> OpState {
        match s.trim().to_ascii_lowercase().as_str() {
            "inprogress" => OpState::InProgress,
            "succeeded" => OpState::Succeeded,
            "failed" => OpState::Failed,
            "canceled" | "cancelled" => OpState::Canceled,
            _ => OpState::Unknown(s.to_string()),
        }
    }
    /// Succeeded, Failed or Canceled.
    pub fn is_terminal(&self) -> bool {
        matches!(self, OpState::Succeeded | OpState::Failed | OpState::Canceled)
    }
}

impl OperationStatus {
    pub fn state(&self) -> OpState {
        OpState::parse(&self.status)
    }
    /// The job the operation created (`properties.jobId`, else the first of `jobIds`).
    pub fn job_id(&self) -> Option<&str> {
        let p = self.properties.as_ref()?;
        p.job_id.as_deref().or(p.job_ids.first().map(String::as_str)).filter(|s| !s.is_empty())
    }
    /// `end_time` unless it is empty or the .NET minimum date.
    pub fn ended_at(&self) -> Option<&str> {
        self.end_time.as_deref().filter(|t| is_set_time(t))
    }
}

/// False for empty and `0001-01-01…` (.NET `DateTime.MinValue`) timestamps.
pub fn is_set_time(t: &str) -> bool {
    let t = t.trim();
    !t.is_empty() && !t.starts_with("0001-01-01")
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// `JobResource` (§5).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Job {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: JobProperties,
}

/// `AzureWorkloadJob` properties.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub job_type: Option<String>,
    /// `InProgress`, `Completed`, `CompletedWithWarnings`, `Failed`, `Cancelled`, `Cancelling`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// May be decorated (`Backup (Full)`): match on prefix.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub operation: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub entity_friendly_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub backup_management_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub workload_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub end_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub activity_id: Option<String>,
    /// ISO-8601 (`PT9.87S`) or .NET TimeSpan (`00:03:13.6439467`); see [`Self::duration`].
    #[serde(deserialize_with = "lenient::opt_string")]
    pub duration: Option<String>,
    /// Numbers (`[1]`) or strings (`["Cancellable"]`).
    #[serde(deserialize_with = "lenient::values")]
    pub actions_info: Vec<Value>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub error_details: Vec<JobErrorInfo>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub extended_info: Option<Value>,
}

/// `AzureWorkloadErrorInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobErrorInfo {
    #[serde(deserialize_with = "lenient::int")]
    pub error_code: i64,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub error_string: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub error_title: Option<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub recommendations: Vec<String>,
}

impl Job {
    /// Completed, CompletedWithWarnings, Failed or Cancelled (any case; `Canceled` too).
    pub fn terminal(&self) -> bool {
        let s = self.properties.status.as_deref().unwrap_or("").trim().to_ascii_lowercase();
        matches!(s.as_str(), "completed" | "completedwithwarnings" | "failed" | "cancelled" | "canceled")
    }
    /// The job id (`name`, else the last segment of `id`).
    pub fn job_id(&self) -> Option<&str> {
        self.name.as_deref().filter(|s| !s.is_empty()).or_else(|| self.id.as_deref().and_then(|i| i.rsplit('/').next()))
    }
}

impl JobProperties {
    pub fn duration(&self) -> Option<Duration> {
        self.duration.as_deref().and_then(parse_duration)
    }
    /// `actionsInfo` has `Cancellable` (or its number, 1).
    pub fn is_cancellable(&self) -> bool {
        self.actions_info.iter().any(|a| match a {
            Value::Number(n) => n.as_i64() == Some(1),
            Value::String(s) => s.eq_ignore_ascii_case("Cancellable") || s.trim() == "1",
            _ => false,
        })
    }
    /// `end_time` unless empty or the .NET minimum date.
    pub fn ended_at(&self) -> Option<&str> {
        self.end_time.as_deref().filter(|t| is_set_time(t))
    }
}

/// An ISO-8601 duration (`PT9.8782791S`, `P1DT2H3M4S`) or a .NET TimeSpan
/// (`00:03:13.6439467`, `1.02:03:04.5`). Negative or unreadable values are `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('P').or_else(|| s.strip_prefix('p')) {
        return parse_iso_duration(rest);
    }
    parse_timespan(s)
}

fn parse_iso_duration(rest: &str) -> Option<Duration> {
    let mut secs = 0f64;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            'T' if num.is_empty() => in_time = true,
            d if d.is_ascii_digit() || d == '.' || d == ',' => num.push(if d == ',' { '.' } else { d }),
            unit => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                any = true;
                secs += n * match (unit, in_time) {
                    ('W', false) => 604_800.0,
                    ('D', false) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return None,
                };
            }
        }
    }
    (any && num.is_empty() && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

fn parse_timespan(s: &str) -> Option<Duration> {
    // [d.]hh:mm:ss[.fffffff]
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let (days, hours) = match parts[0].split_once('.') {
        Some((d, h)) => (d.parse::<u64>().ok()?, h.parse::<u64>().ok()?),
        None => (0, parts[0].parse::<u64>().ok()?),
    };
    let minutes = parts[1].parse::<u64>().ok()?;
    let seconds: f64 = parts[2].parse().ok()?;
    if minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(Duration::from_secs(days * 86_400 + hours * 3_600 + minutes * 60) + Duration::from_secs_f64(seconds))
}

// ---------------------------------------------------------------------------------------------
// Containers and items

/// A VM the vault discovered and that can be registered (`ProtectableContainerResource`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectableContainer {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: ProtectableContainerProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectableContainerProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub friendly_name: Option<String>,
    /// The VM's ARM id.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub container_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub protectable_container_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub backup_management_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub health_status: Option<String>,
}

/// A registered container (`ProtectionContainerResource`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectionContainer {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: ProtectionContainerProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectionContainerProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub friendly_name: Option<String>,
    /// `Registered`, `Registering`, `NotRegistered`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub registration_status: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub health_status: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub source_resource_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub container_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub backup_management_type: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub extended_info: Option<ContainerExtendedInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerExtendedInfo {
    #[serde(deserialize_with = "lenient::or_default")]
    pub inquiry_info: Option<InquiryInfo>,
}

/// The last inquiry of a workload container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InquiryInfo {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// `code: "Success"` when it went well.
    #[serde(deserialize_with = "lenient::or_default")]
    pub error_detail: Option<ErrorInfo>,
}

impl ProtectionContainer {
    pub fn is_registered(&self) -> bool {
        self.properties.registration_status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Registered"))
    }
    pub fn inquiry(&self) -> Option<&InquiryInfo> {
        self.properties.extended_info.as_ref()?.inquiry_info.as_ref()
    }
}

/// A SQL instance or database that can be protected (`WorkloadProtectableItemResource`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectableItem {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: ProtectableItemProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectableItemProperties {
    /// `SQLDataBase`, `SQLInstance`, `SQLAvailabilityGroupContainer`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub protectable_item_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub friendly_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub parent_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub parent_unique_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub server_name: Option<String>,
    /// `NotProtected`, `Protecting`, `Protected`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub protection_state: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub workload_type: Option<String>,
}

impl ProtectableItem {
    /// The container segment of `id` (`…/protectionContainers/{name}/…`), percent-decoded.
    pub fn container_name(&self) -> Option<String> {
        self.id.as_deref().and_then(container_segment)
    }
}

/// A protected database (`ProtectedItemResource`, `AzureVmWorkloadSQLDatabase`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectedItem {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: ProtectedItemProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProtectedItemProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub protected_item_type: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub friendly_name: Option<String>,
    /// `IRPending`, `Protected`, `ProtectionStopped`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub protection_state: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub last_backup_status: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub last_backup_time: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub policy_id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub container_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub parent_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub server_name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub source_resource_id: Option<String>,
}

impl ProtectedItem {
    /// The container segment of `id`, percent-decoded; else `properties.containerName`.
    pub fn container_name(&self) -> Option<String> {
        self.id.as_deref().and_then(container_segment).or_else(|| self.properties.container_name.clone().filter(|s| !s.is_empty()))
    }
}

/// The segment after `protectionContainers/` (any case), percent-decoded.
pub fn container_segment(id: &str) -> Option<String> {
    const KEY: &str = "protectioncontainers/";
    // ASCII lower-casing keeps byte offsets, so the index is valid in `id`.
    let at = id.to_ascii_lowercase().find(KEY)? + KEY.len();
    let seg = id[at..].split(['/', '?']).next().filter(|s| !s.is_empty())?;
    Some(percent_encoding::percent_decode_str(seg).decode_utf8_lossy().into_owned())
}

/// A backup policy (`ProtectionPolicyResource`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Policy {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: PolicyProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PolicyProperties {
    /// `AzureWorkload` for SQL in a VM.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub backup_management_type: Option<String>,
    /// `SQLDataBase` for SQL policies (the swagger spells it `workLoadType`).
    #[serde(rename = "workLoadType", alias = "workloadType", deserialize_with = "lenient::opt_string")]
    pub work_load_type: Option<String>,
}

impl Policy {
    pub fn is_azure_workload(&self) -> bool {
        self.properties.backup_management_type.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("AzureWorkload"))
    }
}

/// A Compute VM (`Microsoft.Compute/virtualMachines`), the few fields the worker reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualMachine {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub location: Option<String>,
    #[serde(deserialize_with = "lenient::string_map")]
    pub tags: BTreeMap<String, String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub properties: VirtualMachineProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    #[serde(deserialize_with = "lenient::opt_string")]
    pub provisioning_state: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    pub vm_id: Option<String>,
}

impl VirtualMachine {
    /// A tag value, the tag name compared without regard to case (ARM tag names are
    /// case-insensitive).
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn odd_operation_status_shapes() {
        let s: OperationStatus = parse(&json!({
            "id": "a", "name": "a", "status": "inprogress",
            "startTime": "2019-03-24T18:07:22.5249744Z", "endTime": "0001-01-01T00:00:00.00000Z"
        }))
        .unwrap();
        assert_eq!(s.state(), OpState::InProgress);
        assert_eq!(s.ended_at(), None);
        assert_eq!(s.job_id(), None);
        let s: OperationStatus = parse(&json!({"status": "Cancelled", "error": null, "properties": null})).unwrap();
        assert_eq!(s.state(), OpState::Canceled);
        let s: OperationStatus = parse(&json!({"status": null})).unwrap();
        assert_eq!(s.state(), OpState::Unknown(String::new()));
        let s: OperationStatus = parse(&json!({"status": "Running"})).unwrap();
        assert!(!s.state().is_terminal());
        let s: OperationStatus = parse(&json!({"status": "Failed", "error": {"code": "X", "message": "m"},
            "properties": {"objectType": "OperationStatusJobsExtendedInfo", "jobIds": ["j1"]}}))
        .unwrap();
        assert_eq!(s.state(), OpState::Failed);
        assert_eq!(s.error.as_ref().and_then(|e| e.code.as_deref()), Some("X"));
        assert_eq!(s.job_id(), Some("j1"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT9.8782791S"), Some(Duration::from_secs_f64(9.8782791)));
        assert_eq!(parse_duration("PT1H2M3S"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_duration("P1DT1S"), Some(Duration::from_secs(86_401)));
        assert_eq!(parse_duration("00:03:13.6439467"), Some(Duration::from_secs_f64(193.6439467)));
        assert_eq!(parse_duration("1.02:00:00"), Some(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("PT"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("00:61:00"), None);
    }

    #[test]
    fn container_segments() {
        let id = "/Subscriptions/s/resourceGroups/r/providers/microsoft.recoveryservices/vaults/v/backupFabrics/Azure/\
                  ProtectionContainers/VMAppContainer%3Bcompute%3Brg%3Bvm/protectableItems/sqldatabase;mssqlserver;db";
        assert_eq!(container_segment(id).as_deref(), Some("VMAppContainer;compute;rg;vm"));
        assert_eq!(container_segment("/subscriptions/s/x"), None);
    }
}

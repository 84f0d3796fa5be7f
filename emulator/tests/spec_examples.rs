//! Replays every Microsoft example in azure-specs whose operation the simulator serves, over
//! real HTTP: same status code as the example, and the simulator's body validates against that
//! operation's response schema in bms.json (both through the validation middleware and by a
//! direct `Spec::validate_response` call).
//!
//! Each example gets a simulator whose subscription, resource group and vault are the example's
//! parameters. The world is first put into the state the example presumes (a registered
//! container, a protected database, a running backup ...) through the API itself. Three ways an
//! example is replayed:
//! - literally: method, path, query and body exactly as the example's parameters give them;
//! - with SQL state: the example's placeholder ids (operation, job, recovery point) are replaced
//!   by the real ones the setup produced, and IaaS VM / Azure Files names in the path by their
//!   SQL-in-VM equivalents (`VMAppContainer;Compute;{rg};{vm}`, `SQLDataBase;mssqlserver;...`);
//! - not simulated ([`NOT_SIMULATED`]): the request body is IaaS- or Storage-specific, or the
//!   operation is not served; the literal request must be refused with an ARM error, and where
//!   a SQL equivalent exists it is replayed too and must give the example's status.
//!
//! The specs are reference data outside the repo (`../shared/azure-specs` beside the checkout), loaded by path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};
use sqlvm_backup_emulator::scenario::{DatabaseSpec, PolicySpec, Scenario, SqlInstanceSpec, SubscriptionSpec, VaultSpec, VmSpec};
use sqlvm_backup_emulator::schema::Spec;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};
use sqlvm_backup_emulator::settings::Settings;

const SPECS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/azure-specs/recoveryservicesbackup");

/// Example folders: the pinned version first, then the older fallback folders.
const EXAMPLE_VERSIONS: [&str; 4] = ["2026-10-01", "2026-02-01", "2026-01-01", "2025-08-01"];

/// Examples whose request the simulator refuses on purpose, with why. Each is still sent
/// literally (and must get a 400, or 405 for an operation the simulator does not serve, with an
/// ARM error body); where a SQL equivalent exists that is replayed as well.
const NOT_SIMULATED: &[(&str, &str)] = &[
    (
        "2025-08-01/examples/AzureIaasVm/StopProtection.json",
        "IaaS VM protected item body (protectedItemType Microsoft.Compute/virtualMachines)",
    ),
    (
        "2026-10-01/examples/AzureIaasVm/StopProtection.json",
        "IaaS VM protected item body (protectedItemType Microsoft.Compute/virtualMachines)",
    ),
    (
        "2026-01-01/examples/AzureIaasVm/ConfigureProtection.json",
        "IaaS VM protected item body (protectedItemType Microsoft.Compute/virtualMachines)",
    ),
    ("2026-01-01/examples/AzureIaasVm/ProtectionIntent_CreateOrUpdate.json", "IaaS VM intent (protectionIntentItemType AzureResourceItem)"),
    (
        "2026-02-01/examples/AzureStorage/ProtectionContainers_Register.json",
        "Azure Files storage account container (containerType StorageContainer)",
    ),
    ("2026-02-01/examples/Common/TriggerBackup_Post.json", "IaaS VM backup request (objectType IaasVMBackupRequest)"),
    ("2026-10-01/examples/Common/TriggerBackup_Post.json", "IaaS VM backup request (objectType IaasVMBackupRequest)"),
    (
        "2026-02-01/examples/AzureWorkload/ProtectionPolicies_CreateOrUpdate_Complex.json",
        "policy create/update is not served (policies come from the scenario)",
    ),
    (
        "2026-10-01/examples/AzureWorkload/ProtectionPolicies_CreateOrUpdate_Complex.json",
        "policy create/update is not served (policies come from the scenario)",
    ),
];

/// Members an example's body shows (on a resource of the same kind as ours) that the simulator
/// does not produce, with why. Any other missing member fails the test; a stale entry too.
const KNOWN_MISSING: &[(&str, &str, &str)] = &[(
    "2026-10-01/examples/AzureWorkload/RecoveryPoints_Get_Snapshot.json",
    "/properties/extendedInfo/snapshotRecoveryPointInfo",
    "snapshot-based SQL backups (disk snapshots) are not simulated",
)];

const POLICY: &str = "HourlyLogBackup";
const SQL_DB: &str = "inventory";

fn spec() -> &'static Arc<Spec> {
    static SPEC: OnceLock<Arc<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| Arc::new(Spec::load(&Path::new(SPECS).join("2026-10-01/bms.json")).expect("bms.json 2026-10-01 loads")))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One operation of bms.json: method and path template.
#[derive(Debug, Clone)]
struct OpInfo {
    method: reqwest::Method,
    template: String,
}

/// operationId -> (method, path template), and `./examples/<rel>` -> operationId, from bms.json
/// (the same mapping `schema_examples.rs` uses).
fn operations(bms: &Value) -> (BTreeMap<String, OpInfo>, BTreeMap<String, String>) {
    let mut ops = BTreeMap::new();
    let mut examples = BTreeMap::new();
    let paths = bms.get("paths").and_then(Value::as_object).expect("paths");
    for (template, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, op) in item {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else { continue };
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("HTTP method");
            ops.insert(id.to_owned(), OpInfo { method, template: template.clone() });
            for example in op.get("x-ms-examples").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
                if let Some(r) = example.get("$ref").and_then(Value::as_str) {
                    let previous = examples.insert(r.to_owned(), id.to_owned());
                    assert!(previous.is_none_or(|p| p == id), "{r} is an example of two operations");
                }
            }
        }
    }
    (ops, examples)
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// One example file with its operation.
struct Example {
    /// `<version>/examples/<rel>`.
    name: String,
    op: String,
    info: OpInfo,
    doc: Value,
}

impl Example {
    fn param(&self, k: &str) -> Option<&str> {
        self.doc["parameters"].get(k).and_then(Value::as_str)
    }
    /// The request body: the object-valued parameter, for PUT/POST only.
    fn body(&self) -> Option<Value> {
        if self.info.method != reqwest::Method::PUT && self.info.method != reqwest::Method::POST {
            return None;
        }
        self.doc["parameters"].as_object()?.values().find(|v| v.is_object()).cloned()
    }
    fn declared(&self) -> Vec<u16> {
        self.doc["responses"].as_object().map(|m| m.keys().filter_map(|k| k.parse().ok()).collect()).unwrap_or_default()
    }
    fn example_body(&self, status: u16) -> Option<&Value> {
        self.doc["responses"].get(status.to_string())?.get("body")
    }
    /// (resource group, VM name) of the SQL VM standing in for the example's container: the
    /// last two `;` segments of its container name, or a default VM.
    fn vm(&self) -> (String, String) {
        match self.param("containerName") {
            Some(c) => {
                let parts: Vec<&str> = c.split(';').collect();
                (parts[parts.len() - 2].to_owned(), parts[parts.len() - 1].to_owned())
            }
            None => (self.param("resourceGroupName").unwrap_or("rg").to_owned(), "sqlvm-1".to_owned()),
        }
    }
    fn sql_container(&self) -> String {
        let (rg, vm) = self.vm();
        format!("VMAppContainer;Compute;{rg};{vm}")
    }
    fn sql_item(&self) -> String {
        match self.param("protectedItemName") {
            Some(i) if i.to_ascii_lowercase().starts_with("sqldatabase;") => i.to_owned(),
            _ => format!("SQLDataBase;mssqlserver;{SQL_DB}"),
        }
    }
}

fn load_examples() -> Vec<Example> {
    let (ops, examples) = operations(&read_json(&Path::new(SPECS).join("2026-10-01/bms.json")));
    let mut out = Vec::new();
    for version in EXAMPLE_VERSIONS {
        let root = Path::new(SPECS).join(version).join("examples");
        let mut files = Vec::new();
        json_files(&root, &mut files);
        files.sort();
        assert!(!files.is_empty(), "no examples under {}", root.display());
        for path in files {
            let rel = path.strip_prefix(&root).expect("under root").to_string_lossy().replace('\\', "/");
            let op = examples.get(&format!("./examples/{rel}")).unwrap_or_else(|| panic!("{version}/{rel}: no operation"));
            out.push(Example { name: format!("{version}/examples/{rel}"), op: op.clone(), info: ops[op].clone(), doc: read_json(&path) });
        }
    }
    out
}

const SEGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'/').add(b'?').add(b'#').add(b'%').add(b'"').add(b'<').add(b'>');

/// The request URL (path + query) of an example, with some parameters overridden.
fn request_path(ex: &Example, overrides: &[(&str, &str)]) -> String {
    let params = ex.doc["parameters"].as_object().expect("parameters");
    let value = |k: &str| -> Option<String> {
        overrides
            .iter()
            .find(|(o, _)| *o == k)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| params.get(k).and_then(Value::as_str).map(str::to_owned))
    };
    let mut path = String::new();
    let mut rest = ex.info.template.as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closing brace") + start;
        path.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        let v = value(name).unwrap_or_else(|| panic!("{}: no parameter {name}", ex.name));
        path.push_str(&utf8_percent_encode(&v, SEGMENT).to_string());
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if (k == "api-version" || k.starts_with('$'))
            && let Some(v) = value(k).or_else(|| v.as_str().map(str::to_owned))
        {
            q.append_pair(k, &v);
        }
    }
    format!("{path}?{}", q.finish().replace('+', "%20"))
}

/// An HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Option<Value>,
}

impl Answer {
    /// The operation id at the end of a tracking header.
    fn op_id(&self, header: &str) -> String {
        let v = self.headers.get(header).unwrap_or_else(|| panic!("no {header} header")).to_str().expect("header text");
        let path = v.split('?').next().expect("url");
        path.rsplit('/').next().expect("segment").to_owned()
    }
}

struct Sim {
    sim: RunningSimulator,
    http: reqwest::Client,
    token: String,
    sub: String,
    rg: String,
    vault: String,
    api: String,
}

impl Sim {
    async fn new(ex: &Example) -> Sim {
        let sub = ex.param("subscriptionId").expect("subscriptionId").to_owned();
        let rg = ex.param("resourceGroupName").expect("resourceGroupName").to_owned();
        let vault = ex.param("vaultName").expect("vaultName").to_owned();
        let (vm_rg, vm_name) = ex.vm();
        let mut settings = Settings::default();
        settings.throttling.enabled = false;
        let db = |n: &str| DatabaseSpec::new(n);
        let scenario = Scenario {
            settings,
            subscriptions: vec![SubscriptionSpec { id: sub.clone(), resource_groups: vec![rg.clone()] }],
            vaults: vec![VaultSpec {
                subscription_id: sub.clone(),
                resource_group: rg.clone(),
                name: vault.clone(),
                location: "westus".into(),
                policies: vec![PolicySpec {
                    name: POLICY.into(),
                    kind: "AzureWorkload".into(),
                    full_time: "02:00".into(),
                    full_retention_days: 30,
                    differential_day: Some("Sunday".into()),
                    differential_retention_days: 30,
                    log_frequency_minutes: Some(60),
                    log_retention_days: 15,
                }],
            }],
            virtual_machines: vec![VmSpec {
                subscription_id: sub.clone(),
                resource_group: vm_rg,
                name: vm_name,
                location: "westus".into(),
                tags: BTreeMap::new(),
                provisioning_state: "Succeeded".into(),
                fqdn: None,
                sql_instances: vec![SqlInstanceSpec { name: "MSSQLSERVER".into(), databases: vec![db("master"), db("msdb"), db(SQL_DB)] }],
                conditions: Default::default(),
            }],
            clients: vec![],
        };
        scenario.validate().expect("scenario is consistent");
        let sim = server::start(scenario, SimulatorOptions { schema: Some(spec().clone()), ..Default::default() })
            .await
            .expect("simulator starts");
        let token = sim.arm_token();
        let api = ex.param("api-version").expect("api-version").to_owned();
        Sim { sim, http: reqwest::Client::new(), token, sub, rg, vault, api }
    }

    fn vault_path(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}", self.sub, self.rg, self.vault)
    }

    fn vault_id(&self) -> String {
        format!("/subscriptions/{}/resourceGroups/{}/providers/microsoft.recoveryservices/vaults/{}", self.sub, self.rg, self.vault)
    }

    /// Send a request; `url` is a path with query.
    async fn send(&self, method: reqwest::Method, url: &str, body: Option<&Value>) -> Answer {
        let mut req = self.http.request(method, format!("{}{url}", self.sim.base_url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let rsp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = rsp.status().as_u16();
        let headers = rsp.headers().clone();
        let text = rsp.text().await.expect("body");
        let body =
            if text.trim().is_empty() { None } else { Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))) };
        Answer { status, headers, body }
    }

    /// A setup call under the vault; must answer `want`.
    async fn setup(&self, method: reqwest::Method, rel: &str, body: Option<Value>, want: u16) -> Answer {
        let sep = if rel.contains('?') { '&' } else { '?' };
        let url = format!("{}{rel}{sep}api-version={}", self.vault_path(), self.api);
        let a = self.send(method.clone(), &url, body.as_ref()).await;
        assert_eq!(a.status, want, "setup {method} {url}: {:?}", a.body);
        a
    }

    async fn advance(&self, seconds: i64) {
        self.sim.shared.clock.advance(chrono::Duration::seconds(seconds));
    }

    /// Refresh, register the VM's container and wait for it; returns its name.
    async fn register(&self, ex: &Example) -> String {
        let (vm_rg, vm) = ex.vm();
        let container = ex.sql_container();
        self.setup(
            reqwest::Method::POST,
            "/backupFabrics/Azure/refreshContainers?$filter=backupManagementType%20eq%20%27AzureWorkload%27",
            None,
            202,
        )
        .await;
        self.advance(10).await;
        let body = json!({ "properties": {
            "containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase",
            "friendlyName": vm,
            "sourceResourceId": format!("/subscriptions/{}/resourceGroups/{vm_rg}/providers/Microsoft.Compute/virtualMachines/{vm}", self.sub)
        }});
        self.setup(reqwest::Method::PUT, &format!("/backupFabrics/Azure/protectionContainers/{container}"), Some(body), 202).await;
        self.advance(10).await;
        let c = self.setup(reqwest::Method::GET, &format!("/backupFabrics/Azure/protectionContainers/{container}"), None, 200).await;
        assert_eq!(c.body.as_ref().map(|b| b["properties"]["registrationStatus"].clone()), Some(json!("Registered")));
        container
    }

    fn item_path(container: &str, item: &str) -> String {
        format!("/backupFabrics/Azure/protectionContainers/{container}/protectedItems/{item}")
    }

    /// Start protecting the SQL database; returns the operation id (not yet completed).
    async fn start_protect(&self, container: &str, item: &str) -> String {
        let body = json!({ "properties": {
            "protectedItemType": "AzureVmWorkloadSQLDatabase",
            "policyId": format!("{}/backupPolicies/{POLICY}", self.vault_id())
        }});
        self.setup(reqwest::Method::PUT, &Self::item_path(container, item), Some(body), 202).await.op_id("Location")
    }

    /// Register and protect; returns (container, item).
    async fn protect(&self, ex: &Example) -> (String, String) {
        let container = self.register(ex).await;
        let item = ex.sql_item();
        self.start_protect(&container, &item).await;
        self.advance(10).await;
        self.setup(reqwest::Method::GET, &Self::item_path(&container, &item), None, 200).await;
        (container, item)
    }

    /// Trigger a Full backup; returns (operation id, job id) with the job still running.
    async fn start_full_backup(&self, container: &str, item: &str) -> (String, String) {
        let body = json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Full" } });
        let op = self
            .setup(reqwest::Method::POST, &format!("{}/backup", Self::item_path(container, item)), Some(body), 202)
            .await
            .op_id("Location");
        self.advance(2).await;
        let status =
            self.setup(reqwest::Method::GET, &format!("{}/operationsStatus/{op}", Self::item_path(container, item)), None, 200).await;
        let job = status
            .body
            .as_ref()
            .and_then(|b| b["properties"]["jobId"].as_str())
            .expect("jobId once the backup operation succeeded")
            .to_owned();
        (op, job)
    }

    /// A completed Full backup; returns the id of its recovery point.
    async fn full_backup(&self, container: &str, item: &str) -> String {
        self.start_full_backup(container, item).await;
        self.advance(60).await;
        let rps = self.setup(reqwest::Method::GET, &format!("{}/recoveryPoints", Self::item_path(container, item)), None, 200).await;
        rps.body.as_ref().and_then(|b| b["value"][0]["name"].as_str()).expect("a recovery point").to_owned()
    }

    /// An auto-protection intent of type `kind` for the SQL instance, under `name`.
    async fn put_intent(&self, container: &str, name: &str, kind: &str) {
        let body = json!({ "properties": {
            "protectionIntentItemType": kind,
            "backupManagementType": "AzureWorkload",
            "itemId": format!("{}/backupFabrics/Azure/protectionContainers/{container}/protectableItems/SQLInstance;mssqlserver", self.vault_id()),
            "policyId": format!("{}/backupPolicies/{POLICY}", self.vault_id())
        }});
        self.setup(reqwest::Method::PUT, &format!("/backupFabrics/Azure/backupProtectionIntent/{name}"), Some(body), 200).await;
    }

    async fn violations(&self) -> Vec<String> {
        let v: Value = self.http.get(format!("{}/_sim/schema-violations", self.sim.base_url)).send().await.unwrap().json().await.unwrap();
        assert_eq!(v["validating"], json!(true));
        v["violations"].as_array().expect("violations").iter().map(|x| x.as_str().unwrap_or_default().to_owned()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Literal,
    SqlState,
    NotSimulated,
}

/// Check one replayed answer against the example: status, body schema, error shape.
fn check(ex: &Example, what: &str, a: &Answer, want: u16, failures: &mut Vec<String>) {
    if a.status != want {
        failures.push(format!("{} [{what}]: status {} instead of {want}: {:?}", ex.name, a.status, a.body));
        return;
    }
    let body = a.body.clone().unwrap_or(Value::Null);
    if want < 400 && !ex.declared().contains(&want) {
        failures.push(format!("{} [{what}]: {want} is not among the example's statuses {:?}", ex.name, ex.declared()));
    }
    if want >= 400 {
        let shape = body["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
            && body["error"]["message"].as_str().is_some_and(|m| !m.is_empty());
        if !shape {
            failures.push(format!("{} [{what}]: not an ARM error body: {body}", ex.name));
        }
    }
    if let Err(v) = spec().validate_response(&ex.op, want, &body) {
        failures.push(format!("{} [{what}] {} {want}: {}", ex.name, ex.op, v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")));
    }
    if want == 202 && !a.headers.contains_key("location") {
        failures.push(format!("{} [{what}]: 202 without Location", ex.name));
    }
}

/// Members the example's body has and ours lacks (objects compared by key, arrays by their
/// first element), for bodies describing the same kind of resource.
fn missing_members(example: &Value, ours: &Value, path: &str, out: &mut Vec<String>) {
    match (example, ours) {
        (Value::Object(e), Value::Object(o)) => {
            for (k, v) in e {
                match o.get(k) {
                    None => out.push(format!("{path}/{k}")),
                    Some(w) => missing_members(v, w, &format!("{path}/{k}"), out),
                }
            }
        }
        (Value::Array(e), Value::Array(o)) => {
            if let (Some(e0), Some(o0)) = (e.first(), o.first()) {
                missing_members(e0, o0, &format!("{path}/0"), out);
            }
        }
        _ => {}
    }
}

/// The discriminating type of a resource body, to compare only like with like.
fn resource_kind(b: &Value) -> Option<String> {
    let b = if b.get("value").is_some() { b["value"].get(0)? } else { b };
    if b.get("status").is_some() && b.get("startTime").is_some() {
        return Some("OperationStatus".to_owned());
    }
    let p = &b["properties"];
    for k in [
        "protectedItemType",
        "containerType",
        "jobType",
        "protectionIntentItemType",
        "workloadItemType",
        "protectableItemType",
        "objectType",
        "backupManagementType",
    ] {
        if let Some(v) = p.get(k).and_then(Value::as_str) {
            return Some(format!("{k}={v}"));
        }
    }
    None
}

/// Replay one example; returns how, pushing failures and notes.
async fn replay(ex: &Example, failures: &mut Vec<String>, notes: &mut Vec<String>, seen_missing: &mut BTreeSet<usize>) -> Kind {
    use reqwest::Method as M;
    let s = Sim::new(ex).await;
    let method = ex.info.method.clone();
    let first = ex.declared().first().copied().unwrap_or(0);
    let literal = |o: &[(&str, &str)]| request_path(ex, o);
    let not_simulated = NOT_SIMULATED.iter().any(|(f, _)| *f == ex.name);
    let mut answers: Vec<(Answer, u16)> = Vec::new();
    let kind = match ex.op.as_str() {
        _ if not_simulated => {
            let a = s.send(method.clone(), &literal(&[]), ex.body().as_ref()).await;
            let want = if ex.op == "ProtectionPolicies_CreateOrUpdate" { 405 } else { 400 };
            check(ex, "literal request refused", &a, want, failures);
            // The SQL equivalent of the same request gives the example's status.
            match ex.op.as_str() {
                "ProtectedItems_CreateOrUpdate" => {
                    let (container, item) = if ex.body().is_some_and(|b| b["properties"]["protectionState"] == json!("ProtectionStopped")) {
                        s.protect(ex).await
                    } else {
                        (s.register(ex).await, ex.sql_item())
                    };
                    let body = if ex.body().is_some_and(|b| b["properties"]["protectionState"] == json!("ProtectionStopped")) {
                        json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "protectionState": "ProtectionStopped" } })
                    } else {
                        json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": format!("{}/backupPolicies/{POLICY}", s.vault_id()) } })
                    };
                    let a = s.send(method, &literal(&[("containerName", &container), ("protectedItemName", &item)]), Some(&body)).await;
                    check(ex, "SQL equivalent", &a, 202, failures);
                }
                "Backups_Trigger" => {
                    let (container, item) = s.protect(ex).await;
                    let body = json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Full" } });
                    let a = s.send(method, &literal(&[("containerName", &container), ("protectedItemName", &item)]), Some(&body)).await;
                    check(ex, "SQL equivalent", &a, first, failures);
                }
                "ProtectionIntent_CreateOrUpdate" => {
                    let container = s.register(ex).await;
                    let body = json!({ "properties": {
                        "protectionIntentItemType": "AzureWorkloadSQLAutoProtectionIntent",
                        "itemId": format!("{}/backupFabrics/Azure/protectionContainers/{container}/protectableItems/SQLInstance;mssqlserver", s.vault_id()),
                        "policyId": format!("{}/backupPolicies/{POLICY}", s.vault_id())
                    }});
                    let a = s.send(method, &literal(&[]), Some(&body)).await;
                    check(ex, "SQL equivalent", &a, first, failures);
                }
                "ProtectionContainers_Register" => {
                    s.setup(M::POST, "/backupFabrics/Azure/refreshContainers", None, 202).await;
                    s.advance(10).await;
                    let (vm_rg, vm) = ex.vm();
                    let body = json!({ "properties": {
                        "containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase",
                        "sourceResourceId": format!("/subscriptions/{}/resourceGroups/{vm_rg}/providers/Microsoft.Compute/virtualMachines/{vm}", s.sub)
                    }});
                    let a = s.send(method, &literal(&[("containerName", &ex.sql_container())]), Some(&body)).await;
                    check(ex, "SQL equivalent", &a, 202, failures);
                }
                _ => {}
            }
            Kind::NotSimulated
        }
        "ProtectionContainers_Refresh" => {
            answers.push((s.send(method, &literal(&[]), None).await, first));
            Kind::Literal
        }
        "ProtectionContainerRefreshOperationResults_Get" => {
            let op = s.setup(M::POST, "/backupFabrics/Azure/refreshContainers", None, 202).await.op_id("Location");
            let url = literal(&[("operationId", &op)]);
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "refresh running", &a, 202, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, 204));
            Kind::SqlState
        }
        "ProtectionContainerRefreshOperationStatuses_Get" => {
            let op = s.setup(M::POST, "/backupFabrics/Azure/refreshContainers", None, 202).await.op_id("Location");
            let url = literal(&[("operationId", &op)]);
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "refresh running", &a, 200, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, first));
            Kind::SqlState
        }
        "ProtectableContainers_List" => {
            s.setup(M::POST, "/backupFabrics/Azure/refreshContainers", None, 202).await;
            s.advance(10).await;
            answers.push((s.send(method, &literal(&[]), None).await, first));
            // The same list for SQL finds the discovered VM.
            let sql = s
                .setup(
                    M::GET,
                    "/backupFabrics/Azure/protectableContainers?$filter=backupManagementType%20eq%20%27AzureWorkload%27",
                    None,
                    200,
                )
                .await;
            if sql.body.as_ref().and_then(|b| b["value"].as_array()).is_none_or(Vec::is_empty) {
                failures.push(format!("{}: the AzureWorkload protectable container list is empty after a refresh", ex.name));
            }
            Kind::Literal
        }
        "ProtectionContainers_Get" | "BackupWorkloadItems_List" => {
            let container = s.register(ex).await;
            let literal_names = container == ex.param("containerName").unwrap_or_default();
            answers.push((s.send(method, &literal(&[("containerName", &container)]), None).await, first));
            if literal_names { Kind::Literal } else { Kind::SqlState }
        }
        "ProtectionContainers_Unregister" => {
            let container = s.register(ex).await;
            let a = s.send(method, &literal(&[("containerName", &container)]), None).await;
            let op = a.op_id("Location");
            answers.push((a, 202));
            s.advance(10).await;
            s.setup(M::GET, &format!("/backupFabrics/Azure/protectionContainers/{container}/operationResults/{op}"), None, 204).await;
            Kind::SqlState
        }
        "ProtectionContainers_Inquire" => {
            let container = s.register(ex).await;
            answers.push((s.send(method, &literal(&[("containerName", &container)]), None).await, first));
            Kind::SqlState
        }
        "ProtectionContainerOperationResults_Get" => {
            let container = s.register(ex).await;
            let op = s
                .setup(M::POST, &format!("/backupFabrics/Azure/protectionContainers/{container}/inquire"), None, 202)
                .await
                .op_id("Location");
            let url = literal(&[("containerName", &container), ("operationId", &op)]);
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "inquiry running", &a, 202, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, 200));
            Kind::SqlState
        }
        "BackupProtectableItems_List" | "BackupProtectionContainers_List" | "BackupPolicies_List" => {
            if ex.op != "BackupPolicies_List" {
                s.register(ex).await;
            }
            answers.push((s.send(method, &literal(&[]), None).await, first));
            Kind::Literal
        }
        "ProtectedItems_Get" | "RecoveryPoints_List" | "ProtectedItems_Delete" => {
            let (container, item) = s.protect(ex).await;
            if ex.op == "RecoveryPoints_List" {
                s.full_backup(&container, &item).await;
            }
            let want = if ex.op == "ProtectedItems_Delete" { 202 } else { first };
            answers.push((s.send(method, &literal(&[("containerName", &container), ("protectedItemName", &item)]), None).await, want));
            Kind::SqlState
        }
        "RecoveryPoints_Get" => {
            let (container, item) = s.protect(ex).await;
            let rp = s.full_backup(&container, &item).await;
            answers.push((
                s.send(method, &literal(&[("containerName", &container), ("protectedItemName", &item), ("recoveryPointId", &rp)]), None)
                    .await,
                first,
            ));
            Kind::SqlState
        }
        "ProtectedItemOperationResults_Get" | "ProtectedItemOperationStatuses_Get" => {
            let container = s.register(ex).await;
            let item = ex.sql_item();
            let op = s.start_protect(&container, &item).await;
            let url = literal(&[("containerName", &container), ("protectedItemName", &item), ("operationId", &op)]);
            let running = if ex.op == "ProtectedItemOperationResults_Get" { 202 } else { 200 };
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "configure running", &a, running, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, 200));
            Kind::SqlState
        }
        "BackupOperationResults_Get" | "BackupOperationStatuses_Get" => {
            let (container, item) = s.protect(ex).await;
            let op = s.setup(M::DELETE, &Sim::item_path(&container, &item), None, 202).await.op_id("Location");
            let url = literal(&[("operationId", &op)]);
            let (running, done) = if ex.op == "BackupOperationResults_Get" { (202, 204) } else { (200, 200) };
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "delete running", &a, running, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, done));
            Kind::SqlState
        }
        "BackupJobs_List" | "BackupProtectedItems_List" => {
            let (container, item) = s.protect(ex).await;
            s.full_backup(&container, &item).await;
            answers.push((s.send(method, &literal(&[]), None).await, first));
            Kind::Literal
        }
        "JobDetails_Get" | "JobCancellations_Trigger" => {
            let (container, item) = s.protect(ex).await;
            let (_, job) = s.start_full_backup(&container, &item).await;
            answers.push((s.send(method, &literal(&[("jobName", &job)]), None).await, first));
            Kind::SqlState
        }
        "JobOperationResults_Get" => {
            let (container, item) = s.protect(ex).await;
            let (_, job) = s.start_full_backup(&container, &item).await;
            let op = s.setup(M::POST, &format!("/backupJobs/{job}/cancel"), None, 202).await.op_id("Location");
            let url = literal(&[("jobName", &job), ("operationId", &op)]);
            let a = s.send(method.clone(), &url, None).await;
            check(ex, "cancellation running", &a, 202, failures);
            s.advance(10).await;
            answers.push((s.send(method, &url, None).await, 204));
            Kind::SqlState
        }
        "ProtectionIntent_Get" | "ProtectionIntent_Delete" | "BackupProtectionIntent_List" => {
            let container = s.register(ex).await;
            // The intent type the example shows (the container-level one), else SQL's own.
            let shown = ex.example_body(200).map(|b| if b.get("value").is_some() { &b["value"][0] } else { b });
            let kind =
                shown.and_then(|b| b["properties"]["protectionIntentItemType"].as_str()).unwrap_or("AzureWorkloadSQLAutoProtectionIntent");
            s.put_intent(&container, ex.param("intentObjectName").unwrap_or("sql-instance-intent"), kind).await;
            answers.push((s.send(method, &literal(&[]), None).await, first));
            Kind::Literal
        }
        other => {
            failures.push(format!("{}: no replay for operation {other}", ex.name));
            Kind::NotSimulated
        }
    };
    for (a, want) in &answers {
        check(ex, "replay", a, *want, failures);
        if let (Some(ours), Some(theirs)) = (&a.body, ex.example_body(*want)) {
            let (kind_ours, kind_theirs) = (resource_kind(ours), resource_kind(theirs));
            if kind_ours == kind_theirs {
                let mut missing = Vec::new();
                missing_members(theirs, ours, "", &mut missing);
                missing.retain(|m| match KNOWN_MISSING.iter().position(|(f, p, _)| *f == ex.name && p == m) {
                    Some(i) => {
                        seen_missing.insert(i);
                        false
                    }
                    None => true,
                });
                if !missing.is_empty() {
                    failures.push(format!("{} ({:?}): example members absent from ours: {}", ex.name, kind_ours, missing.join(", ")));
                }
            } else {
                notes.push(format!("{}: members not compared (example {kind_theirs:?}, ours {kind_ours:?})", ex.name));
            }
            if let Some(v) = ours.get("value").and_then(Value::as_array)
                && v.is_empty()
                && theirs["value"].as_array().is_some_and(|t| !t.is_empty())
            {
                notes.push(format!("{}: empty list (example has items)", ex.name));
            }
        }
    }
    let violations = s.violations().await;
    if !violations.is_empty() {
        failures.push(format!("{}: schema violations recorded by the simulator:\n    {}", ex.name, violations.join("\n    ")));
    }
    s.sim.shutdown().await;
    kind
}

#[tokio::test]
async fn every_spec_example_is_replayed() {
    let examples = load_examples();
    let names: BTreeSet<&str> = examples.iter().map(|e| e.name.as_str()).collect();
    for (f, why) in NOT_SIMULATED {
        assert!(names.contains(f), "NOT_SIMULATED names a missing example {f} ({why})");
    }
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut report = Vec::new();
    let mut seen_missing = BTreeSet::new();
    for ex in &examples {
        let kind = replay(ex, &mut failures, &mut notes, &mut seen_missing).await;
        *counts.entry(kind).or_default() += 1;
        report.push(format!("{kind:?}: {} -> {}", ex.name, ex.op));
        let listed = NOT_SIMULATED.iter().any(|(f, _)| *f == ex.name);
        assert_eq!(listed, kind == Kind::NotSimulated, "{}: NOT_SIMULATED and the replay disagree", ex.name);
    }
    for (i, (f, p, why)) in KNOWN_MISSING.iter().enumerate() {
        if !seen_missing.contains(&i) {
            failures.push(format!("stale KNOWN_MISSING entry {f} {p} ({why})"));
        }
    }
    println!("{}", report.join("\n"));
    println!("notes:\n  {}", notes.join("\n  "));
    let (lit, sql, not) = (
        counts.get(&Kind::Literal).copied().unwrap_or(0),
        counts.get(&Kind::SqlState).copied().unwrap_or(0),
        counts.get(&Kind::NotSimulated).copied().unwrap_or(0),
    );
    println!("{} examples: {lit} replayed literally, {sql} replayed with SQL state, {not} not simulated", examples.len());
    assert_eq!(lit + sql + not, examples.len());
    assert_eq!(not, NOT_SIMULATED.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

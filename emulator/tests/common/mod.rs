//! Shared helpers of the simulator's integration tests: start a simulator on the seed scenario
//! with small timings and swagger validation on, talk to it over real HTTP with a bearer token,
//! poll, and walk the common workflow steps.

#![allow(dead_code)]

pub mod seed_bodies;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::schema::Spec;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};
use sqlvm_backup_emulator::settings::{Settings, Timings};

/// The seed document's subscription id (one group short of a GUID, declared by the scenario).
pub const SUB: &str = "00000000-0000-0000-0000-0000000000";
pub const API: &str = "2016-12-01";
pub const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012";
pub const CONTAINER: &str = "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0";
pub const VM_ID: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";
pub const POLICY_ID: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupPolicies/HourlyLogBackup";

/// Every request of a test gives up after this long: a hang is a failure, not a stuck run.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn spec() -> Arc<Spec> {
    static SPEC: OnceLock<Arc<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/azure-specs/recoveryservicesbackup/2026-10-01/bms.json");
        Arc::new(Spec::load(Path::new(p)).expect("bms.json 2026-10-01 loads"))
    })
    .clone()
}

/// The seed scenario as shipped (service timings, `Retry-After: 60`).
pub fn seed_scenario() -> Scenario {
    Scenario::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/seed.json"))).expect("seed scenario loads")
}

/// Timings of a few tens to a few hundred milliseconds, so every 202 is seen at least once
/// when polled promptly but tests stay fast.
pub fn small_timings() -> Timings {
    Timings {
        refresh_ms: 50,
        register_ms: 100,
        unregister_ms: 50,
        inquire_ms: 100,
        configure_ms: 50,
        delete_ms: 50,
        backup_operation_ms: 50,
        full_backup_job_ms: 300,
        differential_backup_job_ms: 200,
        log_backup_job_ms: 200,
        cancel_ms: 100,
    }
}

/// Test settings: small timings, the given `Retry-After`, throttling off (a test that wants it
/// turns it on through `/_sim/settings`).
pub fn fast_settings(retry_after_seconds: u64) -> Settings {
    let mut s = Settings { retry_after_seconds, timings: small_timings(), ..Settings::default() };
    s.throttling.enabled = false;
    s
}

/// The seed scenario with [`fast_settings`]`(0)`.
pub fn fast_seed() -> Scenario {
    let mut s = seed_scenario();
    s.settings = fast_settings(0);
    s
}

/// A VM of the seed scenario, to change its conditions.
pub fn vm_mut<'a>(s: &'a mut Scenario, name: &str) -> &'a mut sqlvm_backup_emulator::scenario::VmSpec {
    s.virtual_machines.iter_mut().find(|v| v.name == name).expect("VM in scenario")
}

/// An answer read off the wire.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body, `Null` when empty.
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Assert the status and an ARM error body with this code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_arm_error(self);
        assert_eq!(self.body["error"]["code"], code, "{}", self.text);
    }
}

/// `{"error":{"code","message"}}` with non-empty strings.
pub fn assert_arm_error(r: &Resp) {
    let e = &r.body["error"];
    assert!(e["code"].as_str().is_some_and(|c| !c.is_empty()), "no error.code in {} {}", r.status, r.text);
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "no error.message in {} {}", r.status, r.text);
}

pub struct Sim {
    pub sim: RunningSimulator,
    pub client: reqwest::Client,
    pub token: String,
}

/// Start a simulator with schema validation on.
pub async fn start(scenario: Scenario) -> Sim {
    let sim = server::start(scenario, SimulatorOptions { schema: Some(spec()), ..Default::default() }).await.expect("simulator starts");
    let token = sim.arm_token();
    let client = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().expect("client");
    Sim { sim, client, token }
}

impl Sim {
    pub fn base(&self) -> &str {
        &self.sim.base_url
    }

    /// Absolute URL of a path (with query) on the simulator.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.sim.base_url) }
    }

    /// `VAULT + rest` with `api-version=2016-12-01` appended.
    pub fn vault_url(&self, rest: &str) -> String {
        let sep = if rest.contains('?') { '&' } else { '?' };
        self.url(&format!("{VAULT}{rest}{sep}api-version={API}"))
    }

    /// Send an ARM request with the bearer token.
    pub async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, self.url(url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("request answered")).await
    }

    /// Send raw bytes (bad-input tests).
    pub async fn send_raw(&self, method: Method, url: &str, body: impl Into<reqwest::Body>) -> Resp {
        let req = self.client.request(method, self.url(url)).bearer_auth(&self.token).header("content-type", "application/json").body(body);
        read(req.send().await.expect("request answered")).await
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.send(Method::GET, url, None).await
    }
    pub async fn post(&self, url: &str, body: Option<Value>) -> Resp {
        self.send(Method::POST, url, body).await
    }
    pub async fn put(&self, url: &str, body: Value) -> Resp {
        self.send(Method::PUT, url, Some(body)).await
    }
    pub async fn delete(&self, url: &str) -> Resp {
        self.send(Method::DELETE, url, None).await
    }

    /// A `/_sim` control call (no token needed); returns the answer.
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}/_sim{path}", self.sim.base_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("control answered")).await
    }

    /// Merge-patch the settings.
    pub async fn settings(&self, patch: Value) {
        let r = self.control(Method::PATCH, "/settings", Some(patch)).await;
        assert_eq!(r.status, 200, "settings patch: {}", r.text);
    }

    /// The end-of-test check: every ARM answer matched the swagger.
    pub async fn assert_no_violations(&self) {
        let r = self.control(Method::GET, "/schema-violations", None).await;
        assert_eq!(r.body["validating"], true);
        assert_eq!(r.body["violations"], json!([]), "schema violations");
    }

    /// Follow a `Location` URL until it stops answering 202; every 202 must carry a Location.
    pub async fn follow_location(&self, location: &str) -> Resp {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut url = location.to_string();
        loop {
            let r = self.get(&url).await;
            if r.status != 202 {
                return r;
            }
            url = r.header("location").expect("202 without Location").to_string();
            assert!(Instant::now() < deadline, "timed out following {location}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Poll an operationsStatus URL until the status is no longer InProgress.
    pub async fn follow_status(&self, url: &str) -> Value {
        poll_until("operation status to end", || async {
            let r = self.get(url).await;
            assert_eq!(r.status, 200, "{}", r.text);
            (r.body["status"] != "InProgress").then_some(r.body)
        })
        .await
    }

    /// GET a job until it reaches a terminal status.
    pub async fn wait_job(&self, job_id: &str) -> Value {
        let url = self.vault_url(&format!("/backupJobs/{job_id}"));
        poll_until("job to end", || async {
            let r = self.get(&url).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let s = r.body["properties"]["status"].as_str().unwrap_or_default().to_string();
            (!matches!(s.as_str(), "InProgress" | "Cancelling")).then_some(r.body)
        })
        .await
    }

    // ----- workflow steps ---------------------------------------------------------------------

    /// Refresh and wait for it to finish.
    pub async fn refresh(&self) {
        let r = self
            .post(&self.vault_url("/backupFabrics/Azure/refreshContainers?$filter=backupManagementType eq 'AzureWorkload'"), None)
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let done = self.follow_location(r.header("location").expect("Location")).await;
        assert_eq!(done.status, 204, "{}", done.text);
    }

    /// Names of the protectable containers.
    pub async fn protectable_container_names(&self) -> Vec<String> {
        let r =
            self.get(&self.vault_url("/backupFabrics/Azure/protectableContainers?$filter=backupManagementType eq 'AzureWorkload'")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["value"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
    }

    /// Start registering a container of VM `vm` (resource group SQLServerPMDemo).
    pub async fn start_register(&self, vm: &str) -> Resp {
        let body = json!({ "properties": {
            "containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase",
            "friendlyName": vm,
            "sourceResourceId": format!("/subscriptions/{SUB}/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/{vm}")
        }});
        self.put(&self.vault_url(&format!("/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;{vm}")), body)
            .await
    }

    /// Refresh, register `vm` and wait for the registration (which also runs a first inquiry).
    pub async fn register(&self, vm: &str) -> Value {
        self.refresh().await;
        let r = self.start_register(vm).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let done = self.follow_location(r.header("location").unwrap()).await;
        assert_eq!(done.status, 200, "{}", done.text);
        done.body
    }

    /// Inquire a container and return the operation's final status body.
    pub async fn inquire(&self, container: &str) -> Value {
        let r = self
            .post(
                &self.vault_url(&format!(
                    "/backupFabrics/Azure/protectionContainers/{container}/inquire?$filter=workloadType eq 'SQLDataBase'"
                )),
                None,
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        self.follow_status(r.header("azure-asyncoperation").expect("Azure-AsyncOperation")).await
    }

    /// All protectable items of the vault (every page).
    pub async fn protectable_items(&self) -> Vec<Value> {
        self.list_all(&self.vault_url("/backupProtectableItems?$filter=backupManagementType eq 'AzureWorkload'")).await
    }

    /// Follow nextLink verbatim until null.
    pub async fn list_all(&self, first: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(url) = next {
            let r = self.get(&url).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text);
            out.extend(r.body["value"].as_array().cloned().unwrap_or_default());
            next = r.body["nextLink"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        }
        out
    }

    /// Path (under the vault) of a database's protected item.
    pub fn item_path(db: &str) -> String {
        format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/protectedItems/SQLDataBase;mssqlserver;{}", db.to_ascii_lowercase())
    }

    /// Enable protection of a database of sqlserver-0 with the seed's policy and wait for it.
    pub async fn protect(&self, db: &str) -> Value {
        let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": POLICY_ID } });
        let r = self.put(&self.vault_url(&Self::item_path(db)), body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let done = self.follow_location(r.header("location").unwrap()).await;
        assert_eq!(done.status, 200, "{}", done.text);
        done.body
    }

    /// Register sqlserver-0 and protect `db`.
    pub async fn register_and_protect(&self, db: &str) -> Value {
        self.register("sqlserver-0").await;
        self.protect(db).await
    }

    /// Trigger a backup and return the accepted answer.
    pub async fn start_backup(&self, db: &str, backup_type: &str, expiry: Option<&str>) -> Resp {
        let mut props = json!({ "objectType": "AzureWorkloadBackupRequest", "backupType": backup_type });
        if let Some(e) = expiry {
            props["recoveryPointExpiryTimeInUTC"] = json!(e);
        }
        self.post(&self.vault_url(&format!("{}/backup", Self::item_path(db))), Some(json!({ "properties": props }))).await
    }

    /// Trigger a backup and return its job id (the operation must succeed).
    pub async fn backup_job(&self, db: &str, backup_type: &str) -> String {
        let r = self.start_backup(db, backup_type, None).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let st = self.follow_status(r.header("azure-asyncoperation").unwrap()).await;
        assert_eq!(st["status"], "Succeeded", "{st}");
        st["properties"]["jobId"].as_str().expect("jobId").to_string()
    }
}

async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    Resp { status, headers, body, text }
}

/// Call `check` every 20 ms until it returns `Some`, failing after 10 s.
pub async fn poll_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replace `https://management.azure.com` in a seed URL with the simulator's base URL.
pub fn seed_url(sim: &Sim, seed: &str) -> String {
    seed.replacen("https://management.azure.com", sim.base(), 1)
}

//! The ARM client and credentials against an in-process simulator: tokens from the simulated
//! identity endpoints (managed identity over http, client secret over https), the "token only to
//! the endpoint" rule, retries, pacing, the never-repeated backup trigger, paging, and the typed
//! views on real simulator bodies.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use serde_json::{Value, json};
use sqlvm_backup_emulator::identity::ClientRegistration;
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions, TlsOptions};
use sqlvm_backup_emulator::settings::Timings;
use sqlvm_backup_shared::arm::models::{self, OpState};
use sqlvm_backup_shared::arm::{ArmAnswer, ArmClient, ArmClientOptions, ArmError, ArmRequest, PacingOptions, RetryOptions};
use sqlvm_backup_shared::credentials::{CredentialConfig, build_credential};
use sqlvm_backup_shared::secret::Secret;

const SUB: &str = "00000000-0000-0000-0000-0000000000";
const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012";
const CONTAINERS: &str = "/backupFabrics/Azure/protectableContainers?$filter=backupManagementType eq 'AzureWorkload'";
const CONTAINER: &str = "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0";

// ----- helpers ---------------------------------------------------------------------------------

/// The seed world with instant operations, `Retry-After: 0` on 202s and throttling off.
fn scenario() -> Scenario {
    let mut s = Scenario::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../emulator/scenarios/seed.json"))).expect("seed loads");
    s.settings.timings = Timings::instant();
    s.settings.retry_after_seconds = 0;
    s.settings.throttling.enabled = false;
    s
}

async fn start(s: Scenario) -> RunningSimulator {
    server::start(s, SimulatorOptions::default()).await.expect("simulator starts")
}

/// Quick retries so failure paths take milliseconds.
fn fast() -> ArmClientOptions {
    ArmClientOptions {
        retry: RetryOptions { max_retries: 3, initial_delay: Duration::from_millis(10), max_delay: Duration::from_secs(5), jitter: true },
        timeout: Duration::from_secs(10),
        ..ArmClientOptions::default()
    }
}

/// A credential handing out given tokens (then the last one forever), counting its calls.
#[derive(Debug)]
struct TestCredential {
    tokens: Mutex<VecDeque<String>>,
    last: Mutex<String>,
    calls: AtomicUsize,
}

impl TestCredential {
    fn new(tokens: &[&str]) -> Arc<TestCredential> {
        Arc::new(TestCredential {
            tokens: Mutex::new(tokens.iter().map(|t| t.to_string()).collect()),
            last: Mutex::new(String::new()),
            calls: AtomicUsize::new(0),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl TokenCredential for TestCredential {
    async fn get_token(&self, scopes: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://management.azure.com/.default"]);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut last = self.last.lock().unwrap();
        if let Some(t) = self.tokens.lock().unwrap().pop_front() {
            *last = t;
        }
        Ok(AccessToken::new(last.clone(), azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1)))
    }
}

fn client(sim: &RunningSimulator, options: ArmClientOptions) -> (ArmClient, Arc<TestCredential>) {
    let cred = TestCredential::new(&[&sim.arm_token()]);
    (ArmClient::new(&sim.base_url, cred.clone(), Some(options)).expect("client"), cred)
}

/// A client trusting the simulator's certificate when it serves HTTPS.
fn http_for(sim: &RunningSimulator) -> reqwest::Client {
    match &sim.cert_pem {
        Some(pem) => reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM")])
            .build()
            .expect("http client"),
        None => reqwest::Client::new(),
    }
}

async fn control(sim: &RunningSimulator, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = http_for(sim).request(method, format!("{}/_sim{path}", sim.base_url));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("control answers");
    assert!(r.status().is_success(), "control {path}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

async fn settings(sim: &RunningSimulator, patch: Value) {
    control(sim, reqwest::Method::PATCH, "/settings", Some(patch)).await;
}

/// The simulator's request log.
async fn requests(sim: &RunningSimulator) -> Vec<Value> {
    control(sim, reqwest::Method::GET, "/requests", None).await["requests"].as_array().cloned().unwrap_or_default()
}

fn count(log: &[Value], op: &str, status: Option<u16>) -> usize {
    log.iter().filter(|r| r["operationId"] == op && status.is_none_or(|s| r["status"] == s)).count()
}

/// Follow `Location` while it answers 202.
async fn follow_location(c: &ArmClient, first: &ArmAnswer) -> ArmAnswer {
    let mut url = first.location.clone().expect("Location");
    for _ in 0..50 {
        let a = c.send(ArmRequest::get(&url)).await.expect("operation result");
        if a.status != 202 {
            return a;
        }
        url = a.location.clone().expect("202 with Location");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation did not end");
}

/// Poll the tracking URL (Azure-AsyncOperation preferred) until a terminal state.
async fn follow_status(c: &ArmClient, first: &ArmAnswer) -> models::OperationStatus {
    let url = first.azure_async_operation.clone().expect("Azure-AsyncOperation");
    assert_eq!(first.tracking_url(), Some(url.as_str()));
    for _ in 0..50 {
        let s: models::OperationStatus = c.send(ArmRequest::get(&url)).await.expect("status").json().expect("OperationStatus");
        if s.state().is_terminal() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("operation did not end");
}

// ----- credentials -----------------------------------------------------------------------------

/// Managed identity through the App Service endpoint named by IDENTITY_ENDPOINT/IDENTITY_HEADER
/// gives a token the simulator accepts, explicitly and through `Auto`. The only test that touches
/// the environment.
#[tokio::test]
async fn managed_identity_from_the_environment() {
    let sim = start(scenario()).await;
    // SAFETY: no other test of this binary reads or writes these variables.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", sim.identity_endpoint());
        std::env::set_var("IDENTITY_HEADER", sim.identity_header());
        for k in ["AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"] {
            std::env::remove_var(k);
        }
    }
    for cfg in [CredentialConfig::ManagedIdentity { client_id: None }, CredentialConfig::Auto] {
        let cred = build_credential(&cfg, None).expect("credential builds");
        let c = ArmClient::new(&sim.base_url, cred, Some(fast())).unwrap();
        let items = c.list_all(&format!("{VAULT}{CONTAINERS}")).await.unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
        assert!(items.is_empty(), "nothing discovered before a refresh: {items:?}");
        let a = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.expect("second call with the cached token");
        assert_eq!(a.status, 200);
    }
    let log = requests(&sim).await;
    assert_eq!(count(&log, "ProtectableContainers_List", Some(200)), 2);
    sim.shutdown().await;
}

/// A client secret over HTTPS: token from the simulator's Entra endpoint (custom authority host,
/// transport trusting the self-signed certificate), then an ARM GET over TLS.
#[tokio::test]
async fn client_secret_over_https() {
    let mut s = scenario();
    let (tenant, client_id) = ("72f988bf-86f1-41af-91ab-2d7cd011db47", "5f0b4f33-1d2a-4a6f-9d1e-0a5b1c3d2e4f");
    s.clients.push(ClientRegistration { tenant_id: tenant.into(), client_id: client_id.into(), client_secret: "s3cr3t-value".into() });
    let sim = server::start(s, SimulatorOptions { tls: Some(TlsOptions { cert_out: None, sans: vec![] }), ..Default::default() })
        .await
        .expect("TLS simulator starts");
    assert!(sim.base_url.starts_with("https://"));
    let http = http_for(&sim);
    let cfg = CredentialConfig::ClientSecret {
        tenant_id: tenant.into(),
        client_id: client_id.into(),
        client_secret: Secret::new("s3cr3t-value"),
        authority_host: Some(sim.base_url.clone()),
    };
    assert!(!format!("{cfg:?}").contains("s3cr3t"), "secret in Debug output");
    let cred = build_credential(&cfg, Some(http.clone())).expect("credential builds");
    assert!(!format!("{cred:?}").contains("s3cr3t"));
    let c = ArmClient::new(&sim.base_url, cred, Some(fast())).unwrap().with_http_client(http);
    let policies = c.list_all(&format!("{VAULT}/backupPolicies")).await.expect("GET over https");
    let policies: Vec<models::Policy> = models::parse_all(&policies).unwrap();
    assert_eq!(policies.len(), 1);
    assert!(policies[0].is_azure_workload());
    assert_eq!(policies[0].name.as_deref(), Some("HourlyLogBackup"));

    // A wrong secret is a credential error, and nothing reaches ARM.
    let before = requests(&sim).await.len();
    let bad = CredentialConfig::ClientSecret {
        tenant_id: tenant.into(),
        client_id: client_id.into(),
        client_secret: Secret::new("wrong"),
        authority_host: Some(sim.base_url.clone()),
    };
    let http = http_for(&sim);
    let c =
        ArmClient::new(&sim.base_url, build_credential(&bad, Some(http.clone())).unwrap(), Some(fast())).unwrap().with_http_client(http);
    let e = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap_err();
    assert!(matches!(e, ArmError::Credential(_)), "{e:?}");
    assert_eq!(requests(&sim).await.len(), before);
    sim.shutdown().await;
}

// ----- the token only goes to the endpoint -----------------------------------------------------

/// Tracking URLs on another host, port or scheme are refused before any token is fetched or
/// request sent.
#[tokio::test]
async fn untrusted_urls_are_never_followed() {
    let sim = start(scenario()).await;
    let (c, cred) = client(&sim, fast());
    let port = sim.addr.port();
    let other_port = if port == 65535 { 1 } else { port + 1 };
    for url in [
        format!("https://127.0.0.1:{port}{VAULT}/backupOperations/x?api-version=2026-10-01"),
        format!("http://127.0.0.1:{other_port}{VAULT}/backupOperations/x?api-version=2026-10-01"),
        format!("http://localhost:{port}{VAULT}/backupOperations/x"),
        format!("https://evil.example.com{VAULT}/backupOperations/x"),
        format!("http://user:pw@127.0.0.1:{port}{VAULT}/backupOperations/x"),
        format!("//evil.example.com{VAULT}/backupOperations/x"),
        "ftp://127.0.0.1/x".to_string(),
        "backupOperations/x".to_string(),
    ] {
        let e = c.send(ArmRequest::get(&url)).await.unwrap_err();
        assert!(matches!(e, ArmError::UntrustedUrl(_)), "{url}: {e:?}");
        assert!(!e.is_retryable());
    }
    let e = c.list_all("https://evil.example.com/x").await.unwrap_err();
    assert!(matches!(e, ArmError::UntrustedUrl(_)));
    assert_eq!(cred.calls(), 0, "a token was fetched for an untrusted URL");
    assert!(requests(&sim).await.is_empty(), "something was sent");

    // The same URL on the endpoint is followed verbatim (its own api-version kept).
    let ok = format!("{}{VAULT}/backupPolicies?api-version=2016-12-01", sim.base_url);
    assert_eq!(c.send(ArmRequest::get(&ok)).await.unwrap().status, 200);
    let log = requests(&sim).await;
    assert_eq!(log.len(), 1);
    assert!(log[0]["url"].as_str().unwrap().ends_with("api-version=2016-12-01"), "{log:?}");
    sim.shutdown().await;
}

/// The endpoint is checked when the client is built; `Debug` shows no token.
#[tokio::test]
async fn endpoint_is_validated_and_debug_hides_the_token() {
    let cred = TestCredential::new(&["tok"]);
    for bad in ["ftp://x", "https://management.azure.com/sub", "https://management.azure.com?x=1", "not a url", "https://u:p@h"] {
        let e = ArmClient::new(bad, cred.clone(), None).unwrap_err();
        assert!(matches!(e, ArmError::InvalidEndpoint(_)), "{bad}: {e:?}");
    }
    let c = ArmClient::new("https://management.azure.com/", cred.clone(), None).unwrap();
    assert_eq!(c.endpoint(), "https://management.azure.com");
    assert_eq!(c.api_version(), "2026-10-01");

    let sim = start(scenario()).await;
    let token = sim.arm_token();
    let (c, _) = client(&sim, fast());
    c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(&token) && !shown.contains(&token[..20]), "{shown}");
    sim.shutdown().await;
}

// ----- headers and tokens ----------------------------------------------------------------------

/// Each call sends a fresh x-ms-client-request-id (echoed back); the token is fetched once and
/// reused; the default api-version is added to paths without one.
#[tokio::test]
async fn request_ids_token_cache_and_api_version() {
    let sim = start(scenario()).await;
    let (c, cred) = client(&sim, fast());
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let a = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap();
        let id = a.client_request_id.clone().expect("x-ms-client-request-id echoed");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert!(ids.insert(id));
        assert!(a.request_id.is_some() && a.correlation_id.is_some());
    }
    assert_eq!(cred.calls(), 1, "token not cached");
    let log = requests(&sim).await;
    assert!(log.iter().all(|r| r["url"].as_str().unwrap().ends_with("?api-version=2026-10-01")), "{log:?}");
    sim.shutdown().await;
}

/// A 401 (expired or revoked token) makes the client fetch a new token and try once more.
#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let sim = start(scenario()).await;
    let cred = TestCredential::new(&["not-a-token", &sim.arm_token()]);
    let c = ArmClient::new(&sim.base_url, cred.clone(), Some(fast())).unwrap();
    let a = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.expect("second token works");
    assert_eq!(a.status, 200);
    assert_eq!(cred.calls(), 2);
    // A credential that keeps giving bad tokens: the 401 comes back as an error.
    let cred = TestCredential::new(&["still-not-a-token"]);
    let c = ArmClient::new(&sim.base_url, cred.clone(), Some(fast())).unwrap();
    let e = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(cred.calls(), 2);
    sim.shutdown().await;
}

// ----- retries -----------------------------------------------------------------------------------

/// A tiny token bucket (2 reads, 2 per second): 10 quick GETs all succeed, by honouring
/// Retry-After when pacing is off, and with fewer 429s when pacing is on.
#[tokio::test]
async fn throttling_is_survived_and_paced() {
    let mut s = scenario();
    s.settings.throttling.enabled = true;
    s.settings.throttling.reads_capacity = 2.0;
    s.settings.throttling.reads_per_second = 2.0;
    let (unpaced, paced) = tokio::join!(
        ten_gets(s.clone(), PacingOptions { enabled: false, ..PacingOptions::default() }),
        ten_gets(s, PacingOptions { enabled: true, low_watermark: 2, max_pause: Duration::from_secs(1) }),
    );
    assert!(unpaced >= 2, "expected 429s without pacing, saw {unpaced}");
    assert!(paced <= 1, "pacing should avoid most 429s, saw {paced}");
}

/// Runs 10 GETs; returns how many 429s the simulator answered.
async fn ten_gets(s: Scenario, pacing: PacingOptions) -> usize {
    let sim = start(s).await;
    let (c, _) = client(&sim, ArmClientOptions { pacing, ..fast() });
    let started = Instant::now();
    for i in 0..10 {
        let a = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap_or_else(|e| panic!("GET {i}: {e}"));
        assert_eq!(a.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    let log = requests(&sim).await;
    assert_eq!(count(&log, "BackupPolicies_List", Some(200)), 10);
    sim.shutdown().await;
    count(&log, "BackupPolicies_List", Some(429))
}

/// A 429 whose Retry-After exceeds `max_delay` is returned at once as Throttled, for the caller
/// to reschedule.
#[tokio::test]
async fn long_throttling_is_handed_back() {
    let mut s = scenario();
    s.settings.throttling.enabled = true;
    s.settings.throttling.reads_capacity = 1.0;
    s.settings.throttling.reads_per_second = 0.01;
    let sim = start(s).await;
    let mut o = fast();
    o.retry.max_delay = Duration::from_secs(2);
    let (c, _) = client(&sim, o);
    c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap();
    let started = Instant::now();
    let e = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap_err();
    assert!(matches!(e, ArmError::Throttled { attempts: 1, .. }), "{e:?}");
    assert!(e.retry_after().unwrap() >= Duration::from_secs(50), "{e:?}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(1));
    sim.shutdown().await;
}

/// A 500 on every call: retried `max_retries` times, then the classified error.
#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let sim = start(scenario()).await;
    settings(&sim, json!({"faults": {"error500Rate": 1.0, "onlyOperations": ["BackupPolicies_List"]}})).await;
    let (c, _) = client(&sim, fast());
    let e = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await.unwrap_err();
    match &e {
        ArmError::Http { status: 500, code, request_id, .. } => {
            assert_eq!(code, "InternalServerError");
            assert!(request_id.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_retryable());
    assert_eq!(count(&requests(&sim).await, "BackupPolicies_List", Some(500)), 4, "1 attempt + 3 retries");

    // A 503 (with Retry-After: 1) that clears while the client waits.
    settings(&sim, json!({"faults": {"error500Rate": 0.0, "error503Rate": 1.0}})).await;
    let c2 = c.clone();
    let call = tokio::spawn(async move { c2.send(ArmRequest::get(format!("{VAULT}/backupPolicies"))).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    settings(&sim, json!({"faults": {"error503Rate": 0.0}})).await;
    assert_eq!(call.await.unwrap().expect("succeeds after the 503s").status, 200);
    let log = requests(&sim).await;
    assert!(count(&log, "BackupPolicies_List", Some(503)) >= 1);
    assert_eq!(count(&log, "BackupPolicies_List", Some(200)), 1);

    // 4xx user errors are not retried.
    let e = c.send(ArmRequest::get(format!("{VAULT}/backupPolicies/NoSuchPolicy"))).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(count(&requests(&sim).await, "ProtectionPolicies_Get", None), 1);
    sim.shutdown().await;
}

/// The backup trigger (not retriable) is sent exactly once on a 500 or a dropped connection,
/// while an ordinary POST would be retried.
#[tokio::test]
async fn backup_trigger_is_never_repeated() {
    let sim = start(scenario()).await;
    let (c, _) = client(&sim, fast());
    let url = format!("{VAULT}/backupFabrics/Azure/protectionContainers/{CONTAINER}/protectedItems/SQLDataBase;mssqlserver;salesdb/backup");
    let body = json!({"properties": {"objectType": "AzureWorkloadBackupRequest", "backupType": "Full"}});

    settings(&sim, json!({"faults": {"error500Rate": 1.0, "onlyOperations": ["Backups_Trigger"]}})).await;
    let e = c.send(ArmRequest::post(&url, Some(body.clone())).not_retriable()).await.unwrap_err();
    assert!(matches!(e, ArmError::Http { status: 500, .. }), "{e:?}");
    assert_eq!(count(&requests(&sim).await, "Backups_Trigger", None), 1, "sent more than once");

    settings(&sim, json!({"faults": {"error500Rate": 0.0, "dropConnectionRate": 1.0}})).await;
    let e = c.send(ArmRequest::post(&url, Some(body.clone())).not_retriable()).await.unwrap_err();
    assert!(matches!(e, ArmError::Transport { sent: true, .. }), "{e:?}");
    assert_eq!(count(&requests(&sim).await, "Backups_Trigger", None), 2);

    // The same POST marked retriable is retried (1 + 3 attempts).
    settings(&sim, json!({"faults": {"dropConnectionRate": 0.0, "error500Rate": 1.0}})).await;
    c.send(ArmRequest::post(&url, Some(body))).await.unwrap_err();
    assert_eq!(count(&requests(&sim).await, "Backups_Trigger", None), 6);
    sim.shutdown().await;
}

/// Nothing listening: a connection error, never sent, retried, then reported.
#[tokio::test]
async fn connection_refused_is_transport_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cred = TestCredential::new(&["t"]);
    let c = ArmClient::new(&format!("http://127.0.0.1:{port}"), cred, Some(fast())).unwrap();
    let e = c.send(ArmRequest::post(format!("{VAULT}/x/backup"), None).not_retriable()).await.unwrap_err();
    assert!(matches!(e, ArmError::Transport { sent: false, .. }), "{e:?}");
    assert!(e.is_retryable());
}

// ----- paging and models -------------------------------------------------------------------------

/// With 2 items per page, `list_all` follows nextLink verbatim until null and returns every item.
#[tokio::test]
async fn list_all_follows_next_link() {
    let sim = start(scenario()).await;
    settings(&sim, json!({"pageSize": 2})).await;
    let (c, _) = client(&sim, fast());
    let vms =
        c.list_all(&format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01")).await.unwrap();
    let vms: Vec<models::VirtualMachine> = models::parse_all(&vms).unwrap();
    let mut names: Vec<_> = vms.iter().filter_map(|v| v.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["ad-primary-dc", "ad-secondry-dc", "sqlserver-0"]);
    assert!(vms.iter().all(|v| v.location.as_deref() == Some("westcentralus")));
    assert!(vms.iter().all(|v| v.properties.provisioning_state.as_deref() == Some("Succeeded")));
    let log = requests(&sim).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1]["url"].as_str().unwrap().to_ascii_lowercase().contains("skiptoken"), "{log:?}");
    sim.shutdown().await;
}

/// The typed views read real simulator bodies along the whole workflow: refresh, protectable
/// containers, register (operation status), container, protectable items (3 pages), protect,
/// backup (operation status with job id), job, protected items.
#[tokio::test]
async fn models_read_simulator_bodies() {
    let sim = start(scenario()).await;
    settings(&sim, json!({"pageSize": 2})).await;
    let (c, _) = client(&sim, fast());
    let v = |rest: &str| format!("{VAULT}{rest}");

    let r = c
        .send(ArmRequest::post(v("/backupFabrics/Azure/refreshContainers?$filter=backupManagementType eq 'AzureWorkload'"), None))
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    assert!(r.azure_async_operation.is_none());
    assert_eq!(r.tracking_url(), r.location.as_deref());
    assert_eq!(follow_location(&c, &r).await.status, 204);

    let pcs: Vec<models::ProtectableContainer> = models::parse_all(&c.list_all(&v(CONTAINERS)).await.unwrap()).unwrap();
    let pc = pcs.iter().find(|p| p.properties.friendly_name.as_deref() == Some("sqlserver-0")).expect("sqlserver-0 discovered");
    let name = pc.name.clone().unwrap();
    assert!(name.eq_ignore_ascii_case(CONTAINER), "{name}");
    assert!(pc.properties.container_id.as_deref().unwrap().to_ascii_lowercase().ends_with("/virtualmachines/sqlserver-0"));
    assert_eq!(pc.properties.backup_management_type.as_deref(), Some("AzureWorkload"));

    let body = json!({"properties": {"containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase",
        "friendlyName": "sqlserver-0", "sourceResourceId": pc.properties.container_id}});
    let r = c.send(ArmRequest::put(v(&format!("/backupFabrics/Azure/protectionContainers/{name}")), body)).await.unwrap();
    assert_eq!(r.status, 202);
    let st = follow_status(&c, &r).await;
    assert_eq!(st.state(), OpState::Succeeded, "{st:?}");
    let container: models::ProtectionContainer =
        c.send(ArmRequest::get(v(&format!("/backupFabrics/Azure/protectionContainers/{name}")))).await.unwrap().json().unwrap();
    assert!(container.is_registered(), "{container:?}");
    assert_eq!(container.properties.container_type.as_deref(), Some("VMAppContainer"));
    let inquiry = container.inquiry().expect("inquiryInfo");
    assert_eq!(inquiry.error_detail.as_ref().and_then(|e| e.code.as_deref()), Some("Success"), "{inquiry:?}");

    let items: Vec<models::ProtectableItem> =
        models::parse_all(&c.list_all(&v("/backupProtectableItems?$filter=backupManagementType eq 'AzureWorkload'")).await.unwrap())
            .unwrap();
    assert_eq!(items.len(), 6, "instance + 5 databases: {items:?}");
    let sales = items.iter().find(|i| i.properties.friendly_name.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("SalesDB"))).unwrap();
    assert!(sales.container_name().unwrap().eq_ignore_ascii_case(CONTAINER), "{sales:?}");
    assert_eq!(sales.properties.protectable_item_type.as_deref(), Some("SQLDataBase"));
    assert_eq!(sales.properties.protection_state.as_deref(), Some("NotProtected"));
    assert!(count(&requests(&sim).await, "BackupProtectableItems_List", None) >= 3);

    let policies: Vec<models::Policy> = models::parse_all(&c.list_all(&v("/backupPolicies")).await.unwrap()).unwrap();
    let item_path = v(&format!("/backupFabrics/Azure/protectionContainers/{name}/protectedItems/{}", sales.name.clone().unwrap()));
    let body = json!({"properties": {"protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": policies[0].id}});
    let r = c.send(ArmRequest::put(&item_path, body)).await.unwrap();
    assert_eq!(r.status, 202);
    let done = follow_location(&c, &r).await;
    assert_eq!(done.status, 200);
    let pi: models::ProtectedItem = done.json().unwrap();
    assert!(pi.container_name().unwrap().eq_ignore_ascii_case(CONTAINER), "{pi:?}");
    assert!(pi.properties.policy_id.as_deref().unwrap().eq_ignore_ascii_case(policies[0].id.as_deref().unwrap()));
    assert_eq!(pi.properties.protected_item_type.as_deref(), Some("AzureVmWorkloadSQLDatabase"));

    let body = json!({"properties": {"objectType": "AzureWorkloadBackupRequest", "backupType": "CopyOnlyFull"}});
    let r = c.send(ArmRequest::post(format!("{item_path}/backup"), Some(body)).not_retriable()).await.unwrap();
    assert_eq!(r.status, 202);
    let st = follow_status(&c, &r).await;
    assert_eq!(st.state(), OpState::Succeeded);
    assert!(st.ended_at().is_some());
    let job_id = st.job_id().expect("jobId").to_string();
    let mut job = models::Job::default();
    for _ in 0..50 {
        job = c.send(ArmRequest::get(v(&format!("/backupJobs/{job_id}")))).await.unwrap().json().unwrap();
        if job.terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(job.terminal(), "{job:?}");
    assert_eq!(job.job_id(), Some(job_id.as_str()));
    assert!(job.properties.operation.as_deref().unwrap().starts_with("Backup"), "{job:?}");
    assert!(job.properties.duration().is_some(), "{job:?}");
    assert_eq!(job.properties.job_type.as_deref(), Some("AzureWorkloadJob"));

    let protected: Vec<models::ProtectedItem> =
        models::parse_all(&c.list_all(&v("/backupProtectedItems?$filter=backupManagementType eq 'AzureWorkload'")).await.unwrap()).unwrap();
    assert_eq!(protected.len(), 1);
    let jobs: Vec<models::Job> = models::parse_all(&c.list_all(&v("/backupJobs")).await.unwrap()).unwrap();
    assert!(jobs.iter().any(|j| j.job_id() == Some(job_id.as_str())));
    sim.shutdown().await;
}

/// The odd shapes of §13.1 point 7: numeric actionsInfo, TimeSpan duration, the .NET minimum
/// endTime, missing or null properties, unknown statuses.
#[test]
fn models_accept_odd_shapes() {
    let job: models::Job = models::parse(&json!({
        "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.RecoveryServices/vaults/v/backupJobs/j1",
        "properties": {
            "jobType": "AzureWorkloadJob", "status": "completedwithwarnings", "operation": "Backup (Log)",
            "duration": "00:03:13.6439467", "actionsInfo": [1], "endTime": "0001-01-01T00:00:00Z",
            "errorDetails": [{"errorCode": "510008", "errorString": "s", "recommendations": ["Please try again after sometime."]}],
            "isUserTriggered": true, "futureField": {"x": 1}
        }
    }))
    .unwrap();
    assert!(job.terminal());
    assert_eq!(job.job_id(), Some("j1"));
    assert_eq!(job.properties.duration(), Some(Duration::from_secs_f64(193.6439467)));
    assert!(job.properties.is_cancellable());
    assert_eq!(job.properties.ended_at(), None);
    assert_eq!(job.properties.error_details[0].error_code, 510008);

    let job: models::Job =
        models::parse(&json!({"properties": {"status": "Cancelling", "actionsInfo": ["Cancellable"], "duration": "PT9.8782791S"}}))
            .unwrap();
    assert!(!job.terminal());
    assert!(job.properties.is_cancellable());
    assert_eq!(job.properties.duration(), Some(Duration::from_secs_f64(9.8782791)));
    for status in ["Completed", "FAILED", "Cancelled"] {
        let j: models::Job = models::parse(&json!({"properties": {"status": status}})).unwrap();
        assert!(j.terminal(), "{status}");
    }

    let missing: models::Job = models::parse(&json!({"id": "x"})).unwrap();
    assert!(!missing.terminal());
    let null: models::ProtectedItem = models::parse(&json!({"id": null, "properties": null})).unwrap();
    assert_eq!(null.container_name(), None);
    let vm: models::VirtualMachine = models::parse(&json!({"name": "vm", "tags": {"Backup-Policy": "Daily", "n": 1, "z": null}})).unwrap();
    assert_eq!(vm.tag("backup-policy"), Some("Daily"));
    assert_eq!(vm.tags.get("n").map(String::as_str), Some("1"));
    let pc: models::ProtectionContainer = models::parse(&json!({"properties": {"extendedInfo": null}})).unwrap();
    assert!(pc.inquiry().is_none() && !pc.is_registered());

    let st: models::OperationStatus = models::parse(
        &json!({"id": "op", "status": "Invalid", "endTime": "0001-01-01T00:00:00.00000Z", "properties": {"objectType": "X"}}),
    )
    .unwrap();
    assert_eq!(st.state(), OpState::Unknown("Invalid".into()));
    assert_eq!(st.ended_at(), None);
    let st: models::OperationStatus = models::parse(&json!({"status": "Canceled"})).unwrap();
    assert_eq!(st.state(), OpState::Canceled);

    let answer = ArmAnswer { location: Some("L".into()), azure_async_operation: Some("A".into()), ..Default::default() };
    assert_eq!(answer.tracking_url(), Some("A"));
    let answer = ArmAnswer { location: Some("L".into()), ..Default::default() };
    assert_eq!(answer.tracking_url(), Some("L"));
}

//! The simulator's service rules, one test each, over real HTTP with small timings and the
//! swagger validating every answer (azure-backup-api.md §3–§7, §12, §13.2).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqlvm_backup_emulator::scenario::{FailureSpec, PolicySpec};

fn failure(code: &str, error_code: i64) -> FailureSpec {
    FailureSpec { code: code.into(), message: Some(format!("{code} (scripted)")), error_code: Some(error_code) }
}

/// What the test's Event Grid receiver saw: the `aeg-event-type` header and the JSON body.
type Received = (Option<String>, Value);

/// `errorDetails[0].errorTitle` of a job body.
fn job_error_title(job: &Value) -> &str {
    job["properties"]["errorDetails"][0]["errorTitle"].as_str().unwrap_or_default()
}

/// A VM with `discoverableAfterRefreshes: 3` is listed only after the third completed refresh.
#[tokio::test]
async fn vm_is_discoverable_only_after_the_nth_refresh() {
    let mut sc = fast_seed();
    vm_mut(&mut sc, "sqlserver-0").conditions.discoverable_after_refreshes = Some(3);
    let s = start(sc).await;
    assert!(s.protectable_container_names().await.is_empty(), "nothing is discovered before a refresh");
    for round in 1..=3 {
        s.refresh().await;
        let names = s.protectable_container_names().await;
        assert_eq!(names.contains(&CONTAINER.to_string()), round == 3, "after refresh {round}: {names:?}");
        assert_eq!(names.len(), if round == 3 { 3 } else { 2 });
    }
    s.assert_no_violations().await;
}

/// Registering a container the vault never discovered is refused with 400.
#[tokio::test]
async fn registering_an_undiscovered_vm_fails() {
    let s = start(fast_seed()).await;
    let r = s.start_register("sqlserver-0").await;
    r.assert_error(400, "BMSUserErrorContainerNotDiscovered");
    s.assert_no_violations().await;
}

/// A scripted registration failure: the operation status says Failed with the scenario's code,
/// the Location URL answers the same error, and the container is not left behind.
#[tokio::test]
async fn registration_failure_is_reported_by_the_operation() {
    let mut sc = fast_seed();
    vm_mut(&mut sc, "sqlserver-0").conditions.registration_fails = Some(failure("UserErrorVmNotReachable", 400_001));
    let s = start(sc).await;
    s.refresh().await;
    let r = s.start_register("sqlserver-0").await;
    assert_eq!(r.status, 202, "{}", r.text);
    let st = s.follow_status(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(st["status"], "Failed");
    assert_eq!(st["error"]["code"], "UserErrorVmNotReachable");
    let loc = s.follow_location(r.header("location").unwrap()).await;
    assert!(loc.status >= 400, "{}", loc.text);
    assert_eq!(loc.body["error"]["code"], "UserErrorVmNotReachable");
    let c = s.get(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}"))).await;
    c.assert_error(404, "BMSUserErrorContainerNotFound");
    s.assert_no_violations().await;
}

/// Without sysadmin for the backup service the inquiry fails with
/// `UserErrorSQLNoSysadminMembership`, the container's inquiryInfo says so, no DB is protectable.
#[tokio::test]
async fn inquiry_without_sysadmin_fails() {
    let mut sc = fast_seed();
    vm_mut(&mut sc, "sqlserver-0").conditions.backup_service_lacks_sysadmin = true;
    let s = start(sc).await;
    s.register("sqlserver-0").await;
    let st = s.inquire(CONTAINER).await;
    assert_eq!(st["status"], "Failed", "{st}");
    assert_eq!(st["error"]["code"], "UserErrorSQLNoSysadminMembership");
    let c = s.get(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}"))).await;
    let info = &c.body["properties"]["extendedInfo"]["inquiryInfo"];
    assert_eq!(info["status"], "Failed");
    assert_eq!(info["errorDetail"]["code"], "UserErrorSQLNoSysadminMembership");
    let items = s.protectable_items().await;
    assert!(!items.iter().any(|i| i["properties"]["protectableItemType"] == "SQLDataBase"), "{items:?}");
    s.assert_no_violations().await;
}

/// A Differential before any Full fails the job with `UserErrorParentFullBackupMissing`.
#[tokio::test]
async fn differential_before_full_fails_the_job() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let job = s.wait_job(&s.backup_job("SalesDB", "Differential").await).await;
    assert_eq!(job["properties"]["status"], "Failed");
    assert_eq!(job_error_title(&job), "UserErrorParentFullBackupMissing");
    s.assert_no_violations().await;
}

/// A Log backup of a SIMPLE-recovery database (msdb) fails even after a Full.
#[tokio::test]
async fn log_backup_of_simple_database_fails() {
    let s = start(fast_seed()).await;
    s.register_and_protect("msdb").await;
    let full = s.wait_job(&s.backup_job("msdb", "Full").await).await;
    assert_eq!(full["properties"]["status"], "Completed");
    let log = s.wait_job(&s.backup_job("msdb", "Log").await).await;
    assert_eq!(log["properties"]["status"], "Failed");
    assert!(log["properties"]["errorDetails"][0]["errorCode"].is_i64());
    s.assert_no_violations().await;
}

/// Two backups in a row on one database: the second job fails with 510008 (conflicting
/// operation), the first completes.
#[tokio::test]
async fn second_concurrent_backup_conflicts() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    s.settings(json!({ "timings": { "fullBackupJobMs": 2000 } })).await;
    let first = s.backup_job("SalesDB", "Full").await;
    let second = s.backup_job("SalesDB", "Full").await;
    let second = s.wait_job(&second).await;
    assert_eq!(second["properties"]["status"], "Failed");
    assert_eq!(second["properties"]["errorDetails"][0]["errorCode"], 510008);
    assert_eq!(job_error_title(&second), "OperationCancelledBecauseConflictingOperationRunningUserError");
    assert_eq!(s.wait_job(&first).await["properties"]["status"], "Completed");
    s.assert_no_violations().await;
}

/// `backupFails` on a database fails every backup job with that code.
#[tokio::test]
async fn scripted_backup_failure() {
    let mut sc = fast_seed();
    let vm = vm_mut(&mut sc, "sqlserver-0");
    vm.sql_instances[0].databases.iter_mut().find(|d| d.name == "HRDB").unwrap().backup_fails =
        Some(failure("UserErrorBackupFailedDiskFull", 590_099));
    let s = start(sc).await;
    s.register_and_protect("HRDB").await;
    let job = s.wait_job(&s.backup_job("HRDB", "Full").await).await;
    assert_eq!(job["properties"]["status"], "Failed");
    assert_eq!(job["properties"]["errorDetails"][0]["errorCode"], 590_099);
    let item = s.get(&s.vault_url(&Sim::item_path("HRDB"))).await;
    assert_eq!(item.body["properties"]["lastBackupStatus"], "Unhealthy");
    s.assert_no_violations().await;
}

/// A completed Full creates a recovery point, listed and readable by its name.
#[tokio::test]
async fn full_backup_creates_a_recovery_point() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let rps_url = s.vault_url(&format!("{}/recoveryPoints", Sim::item_path("SalesDB")));
    assert!(s.list_all(&rps_url).await.is_empty());
    assert_eq!(s.wait_job(&s.backup_job("SalesDB", "Full").await).await["properties"]["status"], "Completed");
    let rps = s.list_all(&rps_url).await;
    assert_eq!(rps.len(), 1, "{rps:?}");
    assert_eq!(rps[0]["properties"]["objectType"], "AzureWorkloadSQLRecoveryPoint");
    assert_eq!(rps[0]["properties"]["type"], "Full");
    let name = rps[0]["name"].as_str().unwrap();
    let one = s.get(&s.vault_url(&format!("{}/recoveryPoints/{name}", Sim::item_path("SalesDB")))).await;
    assert_eq!(one.status, 200);
    for k in ["id", "name", "type"] {
        assert_eq!(one.body[k], rps[0][k]);
    }
    for k in ["objectType", "recoveryPointTimeInUTC", "type"] {
        assert_eq!(one.body["properties"][k], rps[0]["properties"][k]);
    }
    let item = s.get(&s.vault_url(&Sim::item_path("SalesDB"))).await;
    assert_eq!(item.body["properties"]["extendedInfo"]["recoveryPointCount"], 1);
    s.assert_no_violations().await;
}

/// policyId of an unknown policy is 404; of a policy that is not AzureWorkload, 400.
#[tokio::test]
async fn policy_must_exist_and_be_a_workload_policy() {
    let mut sc = fast_seed();
    let vm_policy: PolicySpec = serde_json::from_value(json!({ "name": "DailyVM", "kind": "AzureIaasVM" })).unwrap();
    sc.vaults[0].policies.push(vm_policy);
    let s = start(sc).await;
    s.register("sqlserver-0").await;
    let put = |policy: &str| json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": format!("{VAULT}/backupPolicies/{policy}") } });
    let r = s.put(&s.vault_url(&Sim::item_path("SalesDB")), put("NoSuchPolicy")).await;
    r.assert_error(404, "BMSUserErrorPolicyNotFound");
    let r = s.put(&s.vault_url(&Sim::item_path("SalesDB")), put("DailyVM")).await;
    r.assert_error(400, "BMSUserErrorInvalidPolicyType");
    s.assert_no_violations().await;
}

/// An on-demand Full kept 10 days is refused (45 days minimum); a CopyOnlyFull kept 1 day is fine.
#[tokio::test]
async fn on_demand_retention_rules() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let in_days = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = s.start_backup("SalesDB", "Full", Some(&in_days(10))).await;
    r.assert_error(400, "BMSUserErrorInvalidRetention");
    let r = s.start_backup("SalesDB", "CopyOnlyFull", Some(&in_days(1))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    s.assert_no_violations().await;
}

/// Every operation id (refresh, register, inquire, configure, backup) also resolves at vault
/// level under `backupOperations/{id}`, as the Azure CLI polls it.
#[tokio::test]
async fn operations_resolve_at_vault_level() {
    let s = start(fast_seed()).await;
    let mut ids = Vec::new();
    let op = |u: &str| u.split('?').next().unwrap().rsplit('/').next().unwrap().to_string();
    let r = s.post(&s.vault_url("/backupFabrics/Azure/refreshContainers"), None).await;
    ids.push(op(r.header("location").unwrap()));
    s.follow_location(r.header("location").unwrap()).await;
    let r = s.start_register("sqlserver-0").await;
    ids.push(op(r.header("location").unwrap()));
    s.follow_location(r.header("location").unwrap()).await;
    let r = s.post(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/inquire")), None).await;
    ids.push(op(r.header("location").unwrap()));
    s.follow_location(r.header("location").unwrap()).await;
    let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": POLICY_ID } });
    let r = s.put(&s.vault_url(&Sim::item_path("SalesDB")), body).await;
    ids.push(op(r.header("location").unwrap()));
    s.follow_location(r.header("location").unwrap()).await;
    let r = s.start_backup("SalesDB", "Full", None).await;
    ids.push(op(r.header("location").unwrap()));
    for id in ids {
        let st = s.follow_status(&s.vault_url(&format!("/backupOperations/{id}"))).await;
        assert_eq!(st["id"], id.as_str(), "the vault-level status has the bare GUID as id");
        assert_eq!(st["name"], id.as_str());
        assert_eq!(st["status"], "Succeeded", "{st}");
    }
    s.get(&s.vault_url("/backupOperations/00000000-1111-2222-3333-444444444444")).await.assert_error(404, "BMSUserErrorOperationNotFound");
    s.assert_no_violations().await;
}

/// Job `$filter`: `operation eq 'Backup'` matches by prefix, `status eq 'Completed'` by value;
/// junk syntax and unknown keys are 400.
#[tokio::test]
async fn job_filters() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    s.wait_job(&s.backup_job("SalesDB", "Full").await).await;
    let jobs = async |f: &str| s.list_all(&s.vault_url(&format!("/backupJobs?$filter={f}"))).await;
    let backups = jobs("operation eq 'Backup'").await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0]["properties"]["operation"].as_str().unwrap().starts_with("Backup"));
    let all = s.list_all(&s.vault_url("/backupJobs")).await;
    assert!(all.len() > 1, "register and configure jobs exist too");
    let completed = jobs("status eq 'Completed' and backupManagementType eq 'AzureWorkload'").await;
    assert!(!completed.is_empty() && completed.iter().all(|j| j["properties"]["status"] == "Completed"));
    let configure = jobs("operation eq 'ConfigureBackup'").await;
    assert_eq!(configure.len(), 1);
    s.get(&s.vault_url("/backupJobs?$filter=status = Completed")).await.assert_error(400, "BMSUserErrorInvalidFilter");
    s.get(&s.vault_url("/backupJobs?$filter=colour eq 'blue'")).await.assert_error(400, "BMSUserErrorInvalidFilter");
    s.assert_no_violations().await;
}

/// With page size 2, following nextLink verbatim visits every item once; nextLink carries a
/// `$skipToken` and is null on the last page.
#[tokio::test]
async fn paging_follows_next_link() {
    let s = start(fast_seed()).await;
    s.register("sqlserver-0").await;
    s.settings(json!({ "pageSize": 2 })).await;
    let first = s.get(&s.vault_url("/backupProtectableItems?$filter=backupManagementType eq 'AzureWorkload'")).await;
    assert_eq!(first.body["value"].as_array().unwrap().len(), 2);
    let next = first.body["nextLink"].as_str().expect("nextLink on a full page");
    // The service percent-encodes the `$` (`%24skiptoken=` in the spec's examples).
    let query: Vec<(String, String)> = url::Url::parse(next).unwrap().query_pairs().into_owned().collect();
    assert!(query.iter().any(|(k, v)| k.eq_ignore_ascii_case("$skipToken") && !v.is_empty()), "{next}");
    assert!(query.contains(&("api-version".into(), "2016-12-01".into())), "{next}");
    assert!(query.contains(&("$filter".into(), "backupManagementType eq 'AzureWorkload'".into())), "{next}");
    let mut pages = 0;
    let mut names = Vec::new();
    let mut url = Some(s.vault_url("/backupProtectableItems?$filter=backupManagementType eq 'AzureWorkload'"));
    while let Some(u) = url {
        let r = s.get(&u).await;
        assert_eq!(r.status, 200, "{}", r.text);
        pages += 1;
        names.extend(r.body["value"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()));
        url = r.body["nextLink"].as_str().map(str::to_string);
    }
    // 1 instance + 5 databases in pages of 2.
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(pages, 3);
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 6);
    s.assert_no_violations().await;
}

/// Names are case-insensitive and `%3B`-encoded segments route the same; bodies come back in
/// the service's canonical casing.
#[tokio::test]
async fn names_are_case_insensitive_and_encoded_segments_route() {
    let s = start(fast_seed()).await;
    s.register_and_protect("msdb").await;
    let canonical = s.get(&s.vault_url(&Sim::item_path("msdb"))).await;
    assert_eq!(canonical.status, 200);
    let variants = [
        "/SUBSCRIPTIONS/00000000-0000-0000-0000-0000000000/resourcegroups/sqlserverselfhost/providers/Microsoft.RecoveryServices/vaults/sqlserver2012/backupfabrics/azure/protectioncontainers/vmappcontainer;compute;sqlserverpmdemo;SQLSERVER-0/protecteditems/sqldatabase;MSSQLSERVER;MSDB?api-version=2016-12-01",
        "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer%3BCompute%3BSQLServerPMDemo%3Bsqlserver-0/protectedItems/SQLDataBase%3bmssqlserver%3bmsdb?api-version=2016-12-01",
    ];
    for v in variants {
        let r = s.get(v).await;
        assert_eq!(r.status, 200, "{v}: {}", r.text);
        assert_eq!(r.body, canonical.body, "{v}");
    }
    assert_eq!(canonical.body["name"], "SQLDataBase;mssqlserver;msdb");
    assert_eq!(canonical.body["properties"]["containerName"], CONTAINER);
    let c = s.get(&s.vault_url("/backupFabrics/Azure/protectionContainers/vmappcontainer%3Bcompute%3Bsqlserverpmdemo%3Bsqlserver-0")).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body["name"], CONTAINER);
    s.assert_no_violations().await;
}

/// api-version missing is 400 `MissingApiVersionParameter`, unknown is 400
/// `InvalidApiVersionParameter`.
#[tokio::test]
async fn api_version_is_required_and_checked() {
    let s = start(fast_seed()).await;
    s.get(&s.url(&format!("{VAULT}/backupPolicies"))).await.assert_error(400, "MissingApiVersionParameter");
    s.get(&s.url(&format!("{VAULT}/backupPolicies?api-version=2099-01-01"))).await.assert_error(400, "InvalidApiVersionParameter");
    assert_eq!(s.get(&s.vault_url("/backupPolicies")).await.status, 200);
    s.assert_no_violations().await;
}

/// No token is 401; a token for another audience (storage) is 401 too.
#[tokio::test]
async fn tokens_are_checked() {
    let s = start(fast_seed()).await;
    let url = s.vault_url("/backupPolicies");
    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["code"].is_string());
    let t = s.control(Method::POST, "/tokens", Some(json!({ "audience": "https://storage.azure.com" }))).await;
    let storage = t.body["access_token"].as_str().unwrap();
    let r = s.client.get(&url).bearer_auth(storage).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(s.get(&url).await.status, 200);
    s.assert_no_violations().await;
}

/// A tiny token bucket (3 reads, 0.5/s) answers 429 with `Retry-After` and the remaining-reads
/// header, and lets requests through again after the advertised wait.
#[tokio::test]
async fn throttling_answers_429_and_recovers() {
    let s = start(fast_seed()).await;
    s.settings(json!({ "throttling": { "enabled": true, "readsCapacity": 3.0, "readsPerSecond": 0.5 } })).await;
    let url = s.vault_url("/backupPolicies");
    let mut throttled = None;
    for _ in 0..6 {
        let r = s.get(&url).await;
        assert!(r.header("x-ms-ratelimit-remaining-subscription-reads").is_some(), "{:?}", r.headers);
        if r.status == 429 {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = throttled.expect("throttled within 6 reads");
    r.assert_error(429, "SubscriptionRequestsThrottled");
    let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(s.get(&url).await.status, 200);
    s.assert_no_violations().await;
}

/// Injected 500 and 503 (rate 1.0) hit only the operations named in `onlyOperations`.
#[tokio::test]
async fn injected_server_errors_are_scoped() {
    let s = start(fast_seed()).await;
    s.settings(json!({ "faults": { "error500Rate": 1.0, "onlyOperations": ["BackupPolicies_List"] } })).await;
    s.get(&s.vault_url("/backupPolicies")).await.assert_error(500, "InternalServerError");
    assert_eq!(s.get(&s.vault_url("/backupJobs")).await.status, 200, "other operations are untouched");
    s.settings(json!({ "faults": { "error500Rate": 0.0, "error503Rate": 1.0, "onlyOperations": ["BackupJobs_List"] } })).await;
    let r = s.get(&s.vault_url("/backupJobs")).await;
    r.assert_error(503, "ServiceUnavailable");
    assert!(r.header("retry-after").is_some());
    assert_eq!(s.get(&s.vault_url("/backupPolicies")).await.status, 200);
    s.assert_no_violations().await;
}

/// `dropConnectionRate: 1.0` closes the connection without an answer: the client sees an error,
/// and the simulator keeps serving.
#[tokio::test]
async fn dropped_connections_error_without_killing_the_server() {
    let s = start(fast_seed()).await;
    s.settings(json!({ "faults": { "dropConnectionRate": 1.0, "onlyOperations": ["BackupPolicies_List"] } })).await;
    for _ in 0..3 {
        let r = s.client.get(s.vault_url("/backupPolicies")).bearer_auth(&s.token).send().await;
        assert!(r.is_err(), "the connection is closed without an answer: {:?}", r.map(|r| r.status()));
    }
    assert_eq!(s.get(&s.vault_url("/backupJobs")).await.status, 200);
    s.settings(json!({ "faults": { "dropConnectionRate": 0.0 } })).await;
    assert_eq!(s.get(&s.vault_url("/backupPolicies")).await.status, 200);
    s.assert_no_violations().await;
}

/// `latencyMs` delays every ARM answer by at least that much.
#[tokio::test]
async fn latency_is_added() {
    let s = start(fast_seed()).await;
    s.settings(json!({ "faults": { "latencyMs": 300 } })).await;
    let t = Instant::now();
    assert_eq!(s.get(&s.vault_url("/backupPolicies")).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    s.assert_no_violations().await;
}

/// A VM deployed through the control API with `?notify=true` is announced to the Event Grid
/// target: one `Microsoft.Resources.ResourceWriteSuccess` event for the VM id, header
/// `aeg-event-type: Notification`; after a refresh the VM is protectable.
#[tokio::test]
async fn vm_deployment_raises_event_grid_event() {
    let s = start(fast_seed()).await;
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let kind = headers.get("aeg-event-type").and_then(|v| v.to_str().ok()).map(str::to_string);
                sink.lock().unwrap().push((kind, serde_json::from_str(&body).unwrap_or(Value::Null)));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = s.control(Method::PUT, "/event-grid", Some(json!({ "url": format!("http://{addr}/events") }))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let vm = json!({ "subscriptionId": SUB, "resourceGroup": "SQLServerPMDemo", "name": "sqlserver-1", "location": "westcentralus",
        "sqlInstances": [{ "name": "MSSQLSERVER", "databases": [{ "name": "OrdersDB" }] }] });
    let r = s.control(Method::POST, "/vms?notify=true", Some(vm)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(id, format!("/subscriptions/{SUB}/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-1"));
    let events = got.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let (kind, body) = &events[0];
    assert_eq!(kind.as_deref(), Some("Notification"));
    let arr = body.as_array().expect("an array of events");
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["eventType"], "Microsoft.Resources.ResourceWriteSuccess");
    assert_eq!(arr[0]["subject"], id.as_str());
    s.refresh().await;
    assert!(s.protectable_container_names().await.contains(&"VMAppContainer;Compute;SQLServerPMDemo;sqlserver-1".to_string()));
    s.assert_no_violations().await;
}

/// A database added at run time shows up in protectable items only after a new inquiry.
#[tokio::test]
async fn new_database_needs_a_new_inquiry() {
    let s = start(fast_seed()).await;
    s.register("sqlserver-0").await;
    let has_new = |items: &[Value]| items.iter().any(|i| i["name"] == "sqldatabase;mssqlserver;newdb");
    assert!(!has_new(&s.protectable_items().await));
    let r = s
        .control(
            Method::POST,
            &format!("/vms/{SUB}/SQLServerPMDemo/sqlserver-0/databases"),
            Some(json!({ "instance": "MSSQLSERVER", "database": { "name": "NewDB" } })),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(!has_new(&s.protectable_items().await), "not before an inquiry");
    assert_eq!(s.inquire(CONTAINER).await["status"], "Succeeded");
    assert!(has_new(&s.protectable_items().await));
    s.assert_no_violations().await;
}

/// `/_sim/counters` counts per operation and status; `/_sim/requests` is the ordered log.
#[tokio::test]
async fn counters_and_request_log() {
    let s = start(fast_seed()).await;
    s.get(&s.vault_url("/backupPolicies")).await;
    s.get(&s.vault_url("/backupPolicies")).await;
    s.get(&s.vault_url("/backupPolicies/NoSuch")).await;
    s.get(&s.vault_url("/backupJobs")).await;
    let c = s.control(Method::GET, "/counters", None).await.body;
    assert_eq!(c["BackupPolicies_List"]["200"], 2);
    assert_eq!(c["ProtectionPolicies_Get"]["404"], 1);
    assert_eq!(c["BackupJobs_List"]["200"], 1);
    let log = s.control(Method::GET, "/requests", None).await.body;
    let ops: Vec<&str> = log["requests"].as_array().unwrap().iter().map(|r| r["operationId"].as_str().unwrap()).collect();
    assert_eq!(ops, ["BackupPolicies_List", "BackupPolicies_List", "ProtectionPolicies_Get", "BackupJobs_List"]);
    let seqs: Vec<u64> = log["requests"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let since = s.control(Method::GET, &format!("/requests?since={}", seqs[2]), None).await.body;
    assert_eq!(since["requests"].as_array().unwrap().len(), 1);
    s.assert_no_violations().await;
}

/// `/_sim/reset` restores the scenario: registrations, items and counters are gone.
#[tokio::test]
async fn reset_restores_the_scenario() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let r = s.control(Method::POST, "/reset", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.control(Method::GET, "/counters", None).await.body, json!({}));
    s.get(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}")))
        .await
        .assert_error(404, "BMSUserErrorContainerNotFound");
    assert!(s.protectable_container_names().await.is_empty(), "discovery is forgotten too");
    assert!(s.list_all(&s.vault_url("/backupJobs")).await.is_empty());
    s.assert_no_violations().await;
}

/// Stop protection (PUT with `protectionState: ProtectionStopped`, `policyId: ""`) leaves the
/// item ProtectionStopped; DELETE answers 202 with vault-level `backupOperations` tracking and
/// ends 204, after which the item is gone.
#[tokio::test]
async fn stop_protection_then_delete() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let url = s.vault_url(&Sim::item_path("SalesDB"));
    let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "protectionState": "ProtectionStopped", "policyId": "" } });
    let r = s.put(&url, body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let done = s.follow_location(r.header("location").unwrap()).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["properties"]["protectionState"], "ProtectionStopped");
    assert_eq!(s.get(&url).await.body["properties"]["protectionState"], "ProtectionStopped");
    let r = s.delete(&url).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let async_op = r.header("azure-asyncoperation").unwrap();
    assert!(async_op.contains("/backupOperations/"), "{async_op}");
    assert!(r.header("location").unwrap().contains("/backupOperationResults/"));
    assert_eq!(s.follow_status(async_op).await["status"], "Succeeded");
    assert_eq!(s.follow_location(r.header("location").unwrap()).await.status, 204);
    s.get(&url).await.assert_error(404, "BMSUserErrorProtectedItemNotFound");
    s.assert_no_violations().await;
}

/// Unregistering a container with protected items is refused
/// (`BMSUserErrorContainerHasDatasources`); a container without items unregisters.
#[tokio::test]
async fn unregister_needs_an_empty_container() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let r = s.delete(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}"))).await;
    r.assert_error(400, "BMSUserErrorContainerHasDatasources");
    let r = s.start_register("ad-primary-dc").await;
    assert_eq!(s.follow_location(r.header("location").unwrap()).await.status, 200);
    let dc = s.vault_url("/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;ad-primary-dc");
    let r = s.delete(&dc).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let done = s.follow_location(r.header("location").unwrap()).await;
    assert!(done.status == 204 || done.status == 200, "{}", done.text);
    s.get(&dc).await.assert_error(404, "BMSUserErrorContainerNotFound");
    assert!(s.protectable_container_names().await.contains(&"VMAppContainer;Compute;SQLServerPMDemo;ad-primary-dc".to_string()));
    s.assert_no_violations().await;
}

/// A SQL auto-protection intent on the instance protects every inquired database at once;
/// GET, list and DELETE (204) work.
#[tokio::test]
async fn protection_intent_auto_protects_instance() {
    let s = start(fast_seed()).await;
    s.register("sqlserver-0").await;
    let inst = s.protectable_items().await.into_iter().find(|i| i["properties"]["protectableItemType"] == "SQLInstance").expect("instance");
    let url = s.vault_url("/backupFabrics/Azure/backupProtectionIntent/auto-mssqlserver");
    let body = json!({ "properties": { "protectionIntentItemType": "AzureWorkloadSQLAutoProtectionIntent", "backupManagementType": "AzureWorkload",
        "itemId": inst["id"], "policyId": POLICY_ID } });
    let r = s.put(&url, body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["properties"]["protectionIntentItemType"], "AzureWorkloadSQLAutoProtectionIntent");
    let items = s.list_all(&s.vault_url("/backupProtectedItems?$filter=backupManagementType eq 'AzureWorkload'")).await;
    assert_eq!(items.len(), 5, "{items:?}");
    assert_eq!(s.get(&url).await.body, r.body);
    let list = s.list_all(&s.vault_url("/backupProtectionIntents")).await;
    assert_eq!(list.len(), 1);
    assert_eq!(s.delete(&url).await.status, 204);
    s.get(&url).await.assert_error(404, "BMSUserErrorProtectionIntentNotFound");
    s.assert_no_violations().await;
}

/// Cancelling a running backup job ends it Cancelled.
#[tokio::test]
async fn cancel_running_backup() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    s.settings(json!({ "timings": { "fullBackupJobMs": 5000 } })).await;
    let job = s.backup_job("SalesDB", "Full").await;
    let running = s.get(&s.vault_url(&format!("/backupJobs/{job}"))).await;
    assert_eq!(running.body["properties"]["status"], "InProgress");
    assert_eq!(running.body["properties"]["actionsInfo"], json!(["Cancellable"]));
    let r = s.post(&s.vault_url(&format!("/backupJobs/{job}/cancel")), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let done = s.wait_job(&job).await;
    assert_eq!(done["properties"]["status"], "Cancelled");
    assert_eq!(s.follow_location(r.header("location").unwrap()).await.status, 204);
    s.assert_no_violations().await;
}

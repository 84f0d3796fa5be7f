//! The seed document (`backup-sql-server-in-azure-vm-rest-api.md`) replayed literally against the
//! simulator: its URLs (host replaced), bodies and api-version 2016-12-01, asserting what its
//! sample answers show. The only departures are the seed's typos listed in azure-backup-api.md §8
//! (#7, #9, #12), each marked where it applies.

mod common;
use common::seed_bodies::SEED_PROTECTED_ITEM;

use common::*;
use serde_json::{Value, json};

const MS: &str = "https://management.azure.com";

/// The operation GUID at the end of a tracking URL (before the query).
fn op_id_of(url: &str) -> String {
    url.split('?').next().unwrap().rsplit('/').next().unwrap().to_string()
}

/// Assert that every property the seed shows is present with the same value.
fn assert_shown(actual: &Value, shown: &Value, at: &str) {
    match shown {
        Value::Object(m) => {
            for (k, v) in m {
                assert_shown(&actual[k], v, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(actual, shown, "at {at}"),
    }
}

/// The whole seed walkthrough with the scenario's own settings except shorter timings: refresh,
/// protectable containers (exactly the seed's three VMs), register (202 + Location +
/// `Retry-After: 60`, then the seed's completed container), inquire (seed URL minus its typos),
/// protectable items (msdb with the seed's VM-independent values), enable protection with the
/// seed's exact body (headers and completed item as in the seed), backup with the seed's body
/// (operation status with `OperationStatusJobExtendedInfo`), job to Completed, IRPending ->
/// Protected.
#[tokio::test]
async fn seed_document_walkthrough() {
    let mut scenario = seed_scenario();
    // Keep the scenario's Retry-After (60, as the service says) but not its minutes-long waits.
    assert_eq!(scenario.settings.retry_after_seconds, 60);
    scenario.settings.timings = small_timings();
    scenario.settings.timings.refresh_ms = 300;
    let s = start(scenario).await;

    // ----- Refresh: 202 + Location + Retry-After: 60, then 202* and 204 --------------------
    let r = s
        .post(
            &seed_url(&s, &format!("{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/refreshContainers?api-version=2016-12-01&$filter=backupManagementType eq 'AzureWorkload'")),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    assert!(r.header("azure-asyncoperation").is_none(), "refresh answers with Location only");
    let location = r.header("location").unwrap().to_string();
    let refresh_op = op_id_of(&location);
    assert_eq!(
        location,
        seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/operationResults/{refresh_op}?api-version=2016-12-01"
            )
        )
    );
    let first = s.get(&location).await;
    assert_eq!(first.status, 202, "a refresh takes a while; the first poll sees it running");
    assert_eq!(first.header("retry-after"), Some("60"));
    let done = s.follow_location(&location).await;
    assert_eq!(done.status, 204);
    assert!(done.text.is_empty());

    // ----- Protectable containers: exactly the seed's list ----------------------------------
    let r = s
        .get(&seed_url(&s, &format!("{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectableContainers?api-version=2016-12-01&$filter=backupManagementType eq 'AzureWorkload'")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seed_list: Value = serde_json::from_str(SEED_PROTECTABLE_CONTAINERS).unwrap();
    assert_eq!(r.body["value"], seed_list["value"]);

    // ----- Register with the seed's body -----------------------------------------------------
    let container_url = seed_url(
        &s,
        &format!(
            "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0?api-version=2016-12-01"
        ),
    );
    let r = s
        .put(
            &container_url,
            json!({
              "properties": {
                "backupManagementType": "AzureWorkload",
                "friendlyName": "sqlserver-0",
                "containerType": "VMAppContainer",
                "sourceResourceId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectableContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
                "workloadType": "SQLDataBase"
              }
            }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    let location = r.header("location").expect("Location").to_string();
    let register_op = op_id_of(&location);
    // The seed's GET of the Location URL, with this run's operation id.
    assert_eq!(
        location,
        seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/operationResults/{register_op}?api-version=2016-12-01"
            )
        )
    );
    let done = s.follow_location(&location).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let seed_container = json!({
      "id": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
      "name": "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
      "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers",
      "properties": {
        "sourceResourceId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0",
        "extendedInfo": {
          "hostServerName": "sqlserver-0.shopkart.com",
          "inquiryInfo": {
            "status": "Success",
            "errorDetail": { "code": "Success", "message": "", "recommendations": [""] },
            "inquiryDetails": [{
                "type": "SQL",
                "itemCount": 5,
                "inquiryValidation": { "status": "Success", "errorDetail": { "code": "Success", "message": "", "recommendations": [""] } }
            }]
          }
        },
        "friendlyName": "sqlserver-0",
        "backupManagementType": "AzureWorkload",
        "registrationStatus": "Registered",
        "healthStatus": "Healthy",
        "containerType": "VMAppContainer",
        "protectableObjectType": "VMAppContainer"
      }
    });
    assert_shown(&done.body, &seed_container, "container");
    let updated = done.body["properties"]["lastUpdatedTime"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(updated).is_ok(), "{updated}");

    // ----- Inquire ---------------------------------------------------------------------------
    // The seed's URL with its typos fixed: subscription e3d2d341-… is the main one here (§8 #9),
    // and `&` is added before `$filter` (§8 #7). `EQ` and `SQLDatabase` are kept as written.
    let r = s
        .post(
            &seed_url(&s, &format!("{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/inquire?api-version=2016-12-01&$filter=workloadType EQ 'SQLDatabase'")),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    let location = r.header("location").expect("Location").to_string();
    let inquire_op = op_id_of(&location);
    assert_eq!(
        location,
        seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/operationResults/{inquire_op}?api-version=2016-12-01"
            )
        )
    );
    let done = s.follow_location(&location).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.body["properties"]["extendedInfo"]["inquiryInfo"]["status"], "Success");

    // ----- Protectable items -----------------------------------------------------------------
    let r = s
        .get(&seed_url(&s, &format!("{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupProtectableItems?api-version=2016-12-01&$filter=backupManagementType eq 'AzureWorkload'")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.body["value"].as_array().unwrap();
    let msdb = items.iter().find(|i| i["name"] == "sqldatabase;mssqlserver;msdb").expect("msdb is protectable");
    // The seed's sample item is from another VM (§8 #11): compare the VM-independent fields.
    assert_shown(
        msdb,
        &json!({
          "name": "sqldatabase;mssqlserver;msdb",
          "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectableItems",
          "properties": {
            "parentName": "MSSQLSERVER",
            "isAutoProtectable": false,
            "subinquireditemcount": 0,
            "subprotectableitemcount": 0,
            "backupManagementType": "AzureWorkload",
            "workloadType": "SQL",
            "protectableItemType": "SQLDataBase",
            "friendlyName": "msdb",
            "protectionState": "NotProtected"
          }
        }),
        "protectable item",
    );
    assert_eq!(msdb["properties"]["serverName"], "sqlserver-0.shopkart.com");
    let id = msdb["id"].as_str().unwrap();
    assert!(
        id.to_ascii_lowercase().ends_with(
            "/protectioncontainers/vmappcontainer;compute;sqlserverpmdemo;sqlserver-0/protectableitems/sqldatabase;mssqlserver;msdb"
        ),
        "{id}"
    );
    let dbs = items.iter().filter(|i| i["properties"]["protectableItemType"] == "SQLDataBase").count();
    assert_eq!(dbs, 5, "the five databases of sqlserver-0");

    // ----- Enable protection with the seed's exact body --------------------------------------
    // The seed's URL has `{containerName};sqlserver-0` (§8 #12); the container name is used once.
    let item_url = seed_url(
        &s,
        &format!(
            "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/protectedItems/sqldatabase;mssqlserver;msdb?api-version=2016-12-01"
        ),
    );
    let r = s
        .put(
            &item_url,
            json!({
              "properties": {
                "backupManagementType": "AzureWorkload",
                "workloadType": "SQLDataBase",
                "policyId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupPolicies/HourlyLogBackup"
              },
              "location": "westcentralus"
            }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    let location = r.header("location").expect("Location").to_string();
    let configure_op = op_id_of(&location);
    assert_eq!(
        location,
        seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/protectedItems/sqldatabase;mssqlserver;msdb/operationResults/{configure_op}?api-version=2016-12-01"
            )
        )
    );
    assert_eq!(
        r.header("azure-asyncoperation").map(str::to_string),
        Some(seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/protectedItems/sqldatabase;mssqlserver;msdb/operationsStatus/{configure_op}?api-version=2016-12-01"
            )
        ))
    );
    let done = s.follow_location(&location).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let seed_item: Value = serde_json::from_str(SEED_PROTECTED_ITEM).unwrap();
    let mut shown = seed_item.clone();
    // The data source id is the service's own number: any non-empty numeric string.
    shown["properties"].as_object_mut().unwrap().remove("protectedItemDataSourceId");
    assert_shown(&done.body, &shown, "protected item");
    let ds = done.body["properties"]["protectedItemDataSourceId"].as_str().unwrap();
    assert!(!ds.is_empty() && ds.bytes().all(|b| b.is_ascii_digit()), "{ds}");
    let st = s.follow_status(r.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(st["status"], "Succeeded");
    assert_eq!(st["properties"]["objectType"], "OperationStatusJobExtendedInfo");

    // ----- On-demand backup with the seed's body ---------------------------------------------
    let r = s
        .post(
            &seed_url(&s, &format!("{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/protectedItems/sqldatabase;mssqlserver;msdb/backup?api-version=2016-12-01")),
            Some(json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Full" } })),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.header("retry-after"), Some("60"));
    let async_op = r.header("azure-asyncoperation").expect("Azure-AsyncOperation").to_string();
    let backup_op = op_id_of(&async_op);
    assert_eq!(
        async_op,
        seed_url(
            &s,
            &format!(
                "{MS}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0/protectedItems/sqldatabase;mssqlserver;msdb/operationsStatus/{backup_op}?api-version=2016-12-01"
            )
        )
    );
    assert_eq!(r.header("location").map(str::to_string), Some(async_op.replace("/operationsStatus/", "/operationResults/")));
    let running = s.get(&async_op).await;
    assert_eq!(running.status, 200, "the status URL answers 200 in every state");
    let st = s.follow_status(&async_op).await;
    assert_eq!(st["id"], backup_op.as_str());
    assert_eq!(st["name"], backup_op.as_str());
    assert_eq!(st["status"], "Succeeded");
    assert!(st["startTime"].is_string() && st["endTime"].is_string());
    assert_eq!(st["properties"]["objectType"], "OperationStatusJobExtendedInfo");
    let job_id = st["properties"]["jobId"].as_str().expect("jobId").to_string();

    // While the job runs the item is still IRPending; once the Full completes it is Protected.
    let item = s.get(&item_url).await;
    assert_eq!(item.body["properties"]["protectionState"], "IRPending");
    let job = s.wait_job(&job_id).await;
    assert_eq!(job["properties"]["status"], "Completed", "{job}");
    assert_eq!(job["properties"]["jobType"], "AzureWorkloadJob");
    assert!(job["properties"]["operation"].as_str().unwrap().starts_with("Backup"));
    let item = s.get(&item_url).await;
    assert_eq!(item.status, 200);
    assert_eq!(item.body["properties"]["protectionState"], "Protected");
    assert_eq!(item.body["name"], "SQLDataBase;mssqlserver;msdb");

    s.assert_no_violations().await;
}

/// `Retry-After` follows the settings: a scenario at test speed says 0, and PATCHing
/// `retryAfterSeconds` back to 60 makes every 202 say 60 again, as the service does.
#[tokio::test]
async fn retry_after_follows_settings() {
    let s = start(fast_seed()).await;
    let refresh = s.vault_url("/backupFabrics/Azure/refreshContainers");
    let r = s.post(&refresh, None).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("retry-after"), Some("0"));
    s.settings(json!({ "retryAfterSeconds": 60 })).await;
    let r = s.post(&refresh, None).await;
    assert_eq!(r.header("retry-after"), Some("60"));
    let r = s.get(r.header("location").unwrap()).await;
    if r.status == 202 {
        assert_eq!(r.header("retry-after"), Some("60"));
    }
    s.assert_no_violations().await;
}

const SEED_PROTECTABLE_CONTAINERS: &str = r#"{
  "value": [
    {
      "id": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectableContainers/VMAppContainer;Compute;SQLServerPMDemo;ad-primary-dc",
      "name": "VMAppContainer;Compute;SQLServerPMDemo;ad-primary-dc",
      "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectableContainers",
      "properties": {
        "friendlyName": "ad-primary-dc",
        "backupManagementType": "AzureWorkload",
        "protectableContainerType": "VMAppContainer",
        "healthStatus": "Healthy",
        "containerId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/ad-primary-dc"
      }
    },
    {
      "id": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectableContainers/VMAppContainer;Compute;SQLServerPMDemo;ad-secondry-dc",
      "name": "VMAppContainer;Compute;SQLServerPMDemo;ad-secondry-dc",
      "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectableContainers",
      "properties": {
        "friendlyName": "ad-secondry-dc",
        "backupManagementType": "AzureWorkload",
        "protectableContainerType": "VMAppContainer",
        "healthStatus": "Healthy",
        "containerId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/ad-secondry-dc"
      }
    },
    {
      "id": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/microsoft.recoveryservices/vaults/SQLServer2012/backupFabrics/Azure/protectableContainers/VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
      "name": "VMAppContainer;Compute;SQLServerPMDemo;sqlserver-0",
      "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectableContainers",
      "properties": {
        "friendlyName": "sqlserver-0",
        "backupManagementType": "AzureWorkload",
        "protectableContainerType": "VMAppContainer",
        "healthStatus": "Healthy",
        "containerId": "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0"
      }
    }
  ]
}"#;

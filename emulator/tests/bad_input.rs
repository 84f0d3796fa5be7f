//! Bad input gets the right status and an ARM error body `{"error":{"code","message"}}`:
//! never a 500, never a hang (every request has a timeout, see `common::REQUEST_TIMEOUT`).

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;

fn container_url(s: &Sim) -> String {
    s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}"))
}

/// Malformed JSON, an empty body, a JSON body of the wrong shape: 400 with an ARM error.
#[tokio::test]
async fn malformed_and_empty_bodies() {
    let s = start(fast_seed()).await;
    s.register("sqlserver-0").await;
    let item = s.vault_url(&Sim::item_path("SalesDB"));
    let backup = s.vault_url(&format!("{}/backup", Sim::item_path("SalesDB")));
    for (method, url) in [(Method::PUT, container_url(&s)), (Method::PUT, item.clone()), (Method::POST, backup.clone())] {
        let r = s.send_raw(method.clone(), &url, "{\"properties\": {").await;
        r.assert_error(400, "InvalidRequestContent");
        let r = s.send_raw(method.clone(), &url, "").await;
        r.assert_error(400, "InvalidRequestContent");
        let r = s.send_raw(method.clone(), &url, "   \n").await;
        r.assert_error(400, "InvalidRequestContent");
        let r = s.send_raw(method.clone(), &url, vec![0xff, 0xfe, 0x00, 0x7b]).await;
        r.assert_error(400, "InvalidRequestContent");
        for shape in ["[]", "42", "null", "{\"properties\": []}", "{}"] {
            let r = s.send_raw(method.clone(), &url, shape).await;
            assert_eq!(r.status, 400, "{method} {shape}: {}", r.text);
            assert_arm_error(&r);
        }
    }
    s.assert_no_violations().await;
}

/// Wrong discriminators (`containerType`, `protectedItemType`, `objectType`,
/// `protectionIntentItemType`) and wrong value types are 400 `BMSUserErrorInvalidInput`.
#[tokio::test]
async fn wrong_discriminators() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let r = s.put(&container_url(&s), json!({ "properties": { "containerType": "AzureSqlContainer" } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.put(&container_url(&s), json!({ "properties": { "backupManagementType": "AzureWorkload" } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let item = s.vault_url(&Sim::item_path("SalesDB"));
    let r =
        s.put(&item, json!({ "properties": { "protectedItemType": "Microsoft.Compute/virtualMachines", "policyId": POLICY_ID } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.put(&item, json!({ "properties": { "policyId": POLICY_ID } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.put(&item, json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": 7 } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.put(&item, json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": POLICY_ID, "protectionState": "Banana" } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let backup = s.vault_url(&format!("{}/backup", Sim::item_path("SalesDB")));
    let r = s.post(&backup, Some(json!({ "properties": { "objectType": "IaasVMBackupRequest" } }))).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.post(&backup, Some(json!({ "properties": { "backupType": "Full" } }))).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s.post(&backup, Some(json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Snapshot" } }))).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s
        .post(&backup, Some(json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Full", "recoveryPointExpiryTimeInUTC": "next week" } })))
        .await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let intent = s.vault_url("/backupFabrics/Azure/backupProtectionIntent/x");
    let r = s.put(&intent, json!({ "properties": { "protectionIntentItemType": "Bogus", "itemId": "x", "policyId": POLICY_ID } })).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    let r = s
        .put(&intent, json!({ "properties": { "protectionIntentItemType": "AzureWorkloadSQLAutoProtectionIntent", "itemId": "/nope", "policyId": POLICY_ID } }))
        .await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    s.assert_no_violations().await;
}

/// Unknown subscription, resource group, vault, fabric, container, item, job, operation,
/// policy and recovery point: 4xx with the ARM error body.
#[tokio::test]
async fn unknown_names() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let cases = [
        (
            "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012/backupPolicies?api-version=2016-12-01".to_string(),
            404,
            "SubscriptionNotFound",
        ),
        (
            "/subscriptions/not-a-guid/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012/backupPolicies?api-version=2016-12-01".to_string(),
            400,
            "InvalidSubscriptionId",
        ),
        (
            format!("/subscriptions/{SUB}/resourceGroups/NoSuchRg/providers/Microsoft.RecoveryServices/vaults/SQLServer2012/backupPolicies?api-version=2016-12-01"),
            404,
            "ResourceGroupNotFound",
        ),
        (
            format!("/subscriptions/{SUB}/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/NoSuchVault/backupPolicies?api-version=2016-12-01"),
            404,
            "ResourceNotFound",
        ),
        (s.vault_url("/backupFabrics/NotAzure/protectableContainers?$filter=backupManagementType eq 'AzureWorkload'"), 404, "BMSUserErrorInvalidFabricName"),
        (s.vault_url("/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;rg;nope"), 404, "BMSUserErrorContainerNotFound"),
        (s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/protectedItems/SQLDataBase;mssqlserver;nope")), 404, "BMSUserErrorProtectedItemNotFound"),
        (s.vault_url("/backupJobs/00000000-0000-0000-0000-000000000001"), 404, "BMSUserErrorJobNotFound"),
        (s.vault_url("/backupOperations/00000000-0000-0000-0000-000000000001"), 404, "BMSUserErrorOperationNotFound"),
        (s.vault_url("/backupPolicies/NoSuchPolicy"), 404, "BMSUserErrorPolicyNotFound"),
        (s.vault_url(&format!("{}/recoveryPoints/123", Sim::item_path("SalesDB"))), 404, "BMSUserErrorRecoveryPointNotFound"),
        (s.vault_url("/backupFabrics/Azure/backupProtectionIntent/nope"), 404, "BMSUserErrorProtectionIntentNotFound"),
    ];
    for (url, status, code) in cases {
        let r = s.get(&url).await;
        assert_eq!(r.status, status, "{url}: {}", r.text);
        r.assert_error(status, code);
    }
    // Protecting a database the inquiry never found, or a name that is no SQL item name.
    let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": POLICY_ID } });
    let r = s
        .put(
            &s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/protectedItems/SQLDataBase;mssqlserver;ghost")),
            body.clone(),
        )
        .await;
    r.assert_error(404, "BMSUserErrorProtectableItemNotFound");
    let r = s.put(&s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/protectedItems/VM;whatever")), body).await;
    r.assert_error(400, "BMSUserErrorInvalidInput");
    s.assert_no_violations().await;
}

/// A body over `maxBodyBytes` is 413 with an ARM error body.
#[tokio::test]
async fn oversized_body_is_413() {
    let s = start(fast_seed()).await;
    s.settings(json!({ "maxBodyBytes": 256 })).await;
    let big = json!({ "properties": { "containerType": "VMAppContainer", "friendlyName": "x".repeat(1000) } });
    let r = s.put(&container_url(&s), big).await;
    r.assert_error(413, "RequestEntityTooLarge");
    s.assert_no_violations().await;
}

/// Bad `$filter` syntax or keys and bad `$skipToken` values are 400.
#[tokio::test]
async fn bad_query_parameters() {
    let s = start(fast_seed()).await;
    for q in [
        "/backupProtectableItems?$filter=backupManagementType eq AzureWorkload",
        "/backupProtectableItems?$filter=backupManagementType eq 'AzureWorkload' or x eq 'y'",
        "/backupProtectedItems?$filter=nonsense",
        "/backupJobs?$filter=startTime eq 'yesterday'",
        "/backupFabrics/Azure/protectableContainers?$filter=workloadType eq 'SQLDataBase'",
        "/backupFabrics/Azure/protectableContainers?$filter=backupManagementType eq 'AzureWorkload' and size eq '3'",
    ] {
        let r = s.get(&s.vault_url(q)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_arm_error(&r);
    }
    for t in ["abc", "-1", "99999999999999999999999"] {
        let r = s.get(&s.vault_url(&format!("/backupJobs?$skipToken={t}"))).await;
        r.assert_error(400, "BMSUserErrorInvalidSkipToken");
    }
    let r = s.get(&s.url(&format!("{VAULT}/backupJobs?api-version=2016-12-01&%FF=1"))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_arm_error(&r);
    s.assert_no_violations().await;
}

/// Invalid percent-encoding in the path, unknown resource types, unknown providers and wrong
/// methods get 400 / 404 / 405 with an ARM error body.
#[tokio::test]
async fn bad_paths_and_methods() {
    let s = start(fast_seed()).await;
    s.register("sqlserver-0").await;
    let r = s.get(&s.url(&format!("{VAULT}/backupFabrics/Azure/protectionContainers/VMAppContainer%FF%FE?api-version=2016-12-01"))).await;
    r.assert_error(400, "InvalidRequestUri");
    let r = s.get(&s.vault_url("/backupWidgets")).await;
    r.assert_error(404, "InvalidResourceType");
    let r = s
        .get(&s.url(&format!(
            "/subscriptions/{SUB}/resourceGroups/SQLServerSelfHost/providers/Microsoft.Compute/disks?api-version=2024-03-01"
        )))
        .await;
    r.assert_error(404, "InvalidResourceType");
    let r = s.get(&s.url("/nothing/here")).await;
    assert_eq!(r.status, 404);
    assert_arm_error(&r);
    let r = s.send(Method::PATCH, &container_url(&s), Some(json!({}))).await;
    r.assert_error(405, "MethodNotAllowed");
    let r = s.send(Method::DELETE, &s.vault_url("/backupJobs"), None).await;
    r.assert_error(405, "MethodNotAllowed");
    let r = s.send(Method::PUT, &s.vault_url("/backupPolicies/HourlyLogBackup"), Some(json!({}))).await;
    assert!(r.status == 405 || r.status == 400, "{}", r.text);
    assert_arm_error(&r);
    s.assert_no_violations().await;
}

/// Missing, malformed and foreign tokens are 401 with an ARM error body, before anything else
/// is looked at.
#[tokio::test]
async fn missing_or_bad_token() {
    let s = start(fast_seed()).await;
    let url = s.vault_url("/backupPolicies");
    let no = s.client.get(&url).send().await.unwrap();
    assert_eq!(no.status(), 401);
    let body: serde_json::Value = no.json().await.unwrap();
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    for auth in ["Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "bearer x.y.z"] {
        let r = s.client.get(&url).header("authorization", auth).send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{auth}");
    }
    // Even a junk body on a write is answered 401 first.
    let r = s.client.put(container_url(&s)).body("{{{").send().await.unwrap();
    assert_eq!(r.status(), 401);
    s.assert_no_violations().await;
}

/// Junk sent to every write endpoint never produces a 5xx and the simulator keeps answering.
#[tokio::test]
async fn junk_never_causes_server_errors() {
    let s = start(fast_seed()).await;
    s.register_and_protect("SalesDB").await;
    let writes = [
        (Method::POST, s.vault_url("/backupFabrics/Azure/refreshContainers")),
        (Method::PUT, container_url(&s)),
        (Method::DELETE, s.vault_url("/backupFabrics/Azure/protectionContainers/VMAppContainer;Compute;SQLServerPMDemo;ad-primary-dc")),
        (
            Method::POST,
            s.vault_url(&format!("/backupFabrics/Azure/protectionContainers/{CONTAINER}/inquire?$filter=workloadType eq 'Exchange'")),
        ),
        (Method::PUT, s.vault_url(&Sim::item_path("msdb"))),
        (Method::POST, s.vault_url(&format!("{}/backup", Sim::item_path("SalesDB")))),
        (Method::POST, s.vault_url("/backupJobs/not-a-job/cancel")),
        (Method::PUT, s.vault_url("/backupFabrics/Azure/backupProtectionIntent/i")),
        (Method::DELETE, s.vault_url("/backupFabrics/Azure/backupProtectionIntent/i")),
    ];
    let junk: [&[u8]; 6] = [b"", b"{", b"{\"properties\":null}", b"{\"properties\":{\"a\":{\"b\":[1,2,{}]}}}", b"\"str\"", &[0u8; 64]];
    for (m, url) in &writes {
        for body in junk {
            let r = s.send_raw(m.clone(), url, body.to_vec()).await;
            assert!(r.status < 500, "{m} {url} {body:?}: {} {}", r.status, r.text);
            if r.status >= 400 {
                assert_arm_error(&r);
            }
        }
    }
    assert_eq!(s.get(&s.vault_url("/backupPolicies")).await.status, 200);
    s.assert_no_violations().await;
}

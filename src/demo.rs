//! `sqlvm-backup demo`: the seed document's workflow, end to end, against the embedded
//! simulator. It starts the simulator on the seed scenario, takes a managed-identity token from
//! the simulator's identity endpoint, then discovers, registers, inquires, protects every
//! database of sqlserver-0 with HourlyLogBackup and takes an on-demand Full backup of each,
//! following every long-running operation by its returned URL and `Retry-After`.
//!
//! This is a scripted walkthrough in one process; the durable step engine that will run the same
//! workflow one queued step at a time is issue 3.

use anyhow::{Context, bail};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::Duration;

use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, SimulatorOptions};

const API: &str = "2026-10-01";

struct Arm {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Arm {
    async fn send(&self, method: reqwest::Method, url: &str, body: Option<Value>) -> anyhow::Result<(u16, HeaderMap, Value)> {
        // Never send the token anywhere but the endpoint we were configured with.
        if !url.starts_with(&self.base) {
            bail!("refusing to follow {url}: not on {}", self.base);
        }
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("calling {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status >= 400 {
            bail!("{url} answered {status}: {body}");
        }
        Ok((status, headers, body))
    }

    /// Follow an accepted operation to its end: prefer Azure-AsyncOperation, else Location.
    async fn track(&self, headers: &HeaderMap, what: &str) -> anyhow::Result<Value> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let wait = |h: &HeaderMap| {
            Duration::from_secs(h.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(5).clamp(1, 60))
        };
        let mut delay = wait(headers);
        if let Some(url) = h("azure-asyncoperation") {
            loop {
                tokio::time::sleep(delay).await;
                let (_, hh, body) = self.send(reqwest::Method::GET, &url, None).await?;
                let status = body["status"].as_str().unwrap_or("").to_string();
                println!("    {what}: operation {status}");
                match status.as_str() {
                    "Succeeded" => return Ok(body),
                    "Failed" | "Canceled" => bail!("{what} failed: {}", body["error"]),
                    _ => delay = wait(&hh),
                }
            }
        }
        let url = h("location").context("202 without a tracking URL")?;
        loop {
            tokio::time::sleep(delay).await;
            let (status, hh, body) = self.send(reqwest::Method::GET, &url, None).await?;
            println!("    {what}: {status}");
            if status != 202 {
                return Ok(body);
            }
            delay = wait(&hh);
        }
    }

    async fn list(&self, url: &str) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut next = Some(url.to_string());
        while let Some(u) = next {
            let (_, _, body) = self.send(reqwest::Method::GET, &u, None).await?;
            out.extend(body["value"].as_array().cloned().unwrap_or_default());
            next = body["nextLink"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        }
        Ok(out)
    }
}

pub async fn run(seed: &str, retry_after: u64) -> anyhow::Result<()> {
    let mut scenario: Scenario = serde_json::from_str(seed)?;
    scenario.settings.retry_after_seconds = retry_after;
    let t = &mut scenario.settings.timings;
    (t.refresh_ms, t.register_ms, t.inquire_ms, t.configure_ms, t.backup_operation_ms, t.full_backup_job_ms) =
        (1500, 2500, 1500, 1500, 500, 4000);
    let sim = server::start(scenario, SimulatorOptions::default()).await?;
    println!("simulator (seed scenario) on {}", sim.base_url);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let tok: Value = http
        .get(format!("{}?api-version=2019-08-01&resource=https://management.azure.com", sim.identity_endpoint()))
        .header("X-IDENTITY-HEADER", sim.identity_header())
        .send()
        .await?
        .json()
        .await?;
    let token = tok["access_token"].as_str().context("no token")?.to_string();
    println!("token from the managed-identity endpoint (expires_on {})", tok["expires_on"]);
    let arm = Arm { http, base: sim.base_url.clone(), token };
    let vault = format!(
        "{}/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012",
        sim.base_url
    );
    let vm_id = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";
    let workload = "$filter=backupManagementType%20eq%20'AzureWorkload'";

    println!("1. refresh containers");
    let (_, h, _) = arm
        .send(reqwest::Method::POST, &format!("{vault}/backupFabrics/Azure/refreshContainers?api-version={API}&{workload}"), None)
        .await?;
    arm.track(&h, "refresh").await?;

    println!("2. find sqlserver-0 among protectable containers");
    let containers = arm.list(&format!("{vault}/backupFabrics/Azure/protectableContainers?api-version={API}&{workload}")).await?;
    let container = containers
        .iter()
        .find(|c| c["properties"]["containerId"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(vm_id)))
        .and_then(|c| c["name"].as_str())
        .context("sqlserver-0 was not discovered")?
        .to_string();
    println!("    container {container}");

    println!("3. register the VM with the vault");
    let body = json!({ "properties": { "containerType": "VMAppContainer", "backupManagementType": "AzureWorkload", "workloadType": "SQLDataBase", "sourceResourceId": vm_id, "friendlyName": "sqlserver-0" } });
    let c_url = format!("{vault}/backupFabrics/Azure/protectionContainers/{container}");
    let (_, h, _) = arm.send(reqwest::Method::PUT, &format!("{c_url}?api-version={API}"), Some(body)).await?;
    arm.track(&h, "register").await?;

    println!("4. inquire (discover the databases)");
    let (_, h, _) = arm
        .send(reqwest::Method::POST, &format!("{c_url}/inquire?api-version={API}&$filter=workloadType%20eq%20'SQLDataBase'"), None)
        .await?;
    arm.track(&h, "inquire").await?;

    println!("5. pick the policy and the databases");
    let policy = arm.send(reqwest::Method::GET, &format!("{vault}/backupPolicies/HourlyLogBackup?api-version={API}"), None).await?.2;
    let policy_id = policy["id"].as_str().context("policy id")?.to_string();
    let items = arm.list(&format!("{vault}/backupProtectableItems?api-version={API}&{workload}")).await?;
    let dbs: Vec<(String, String)> = items
        .iter()
        .filter(|i| i["properties"]["protectableItemType"] == "SQLDataBase")
        .filter(|i| {
            i["id"]
                .as_str()
                .is_some_and(|id| id.to_ascii_lowercase().contains(&format!("/protectioncontainers/{}/", container.to_ascii_lowercase())))
        })
        .filter_map(|i| Some((i["name"].as_str()?.to_string(), i["properties"]["friendlyName"].as_str()?.to_string())))
        .collect();
    println!("    {} databases; policy {policy_id}", dbs.len());

    println!("6. enable protection");
    for (name, friendly) in &dbs {
        let body = json!({ "properties": { "protectedItemType": "AzureVmWorkloadSQLDatabase", "policyId": policy_id } });
        let (_, h, _) = arm.send(reqwest::Method::PUT, &format!("{c_url}/protectedItems/{name}?api-version={API}"), Some(body)).await?;
        arm.track(&h, &format!("protect {friendly}")).await?;
    }

    println!("7. on-demand Full backup (retained 45 days)");
    let expiry = (chrono::Utc::now() + chrono::Duration::days(46)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut jobs = Vec::new();
    for (name, friendly) in &dbs {
        let body = json!({ "properties": { "objectType": "AzureWorkloadBackupRequest", "backupType": "Full", "recoveryPointExpiryTimeInUTC": expiry } });
        let (_, h, _) =
            arm.send(reqwest::Method::POST, &format!("{c_url}/protectedItems/{name}/backup?api-version={API}"), Some(body)).await?;
        let op = arm.track(&h, &format!("backup {friendly}")).await?;
        jobs.push((friendly.clone(), op["properties"]["jobId"].as_str().context("no job id")?.to_string()));
    }

    println!("8. follow the backup jobs");
    let mut failed = 0;
    for (friendly, job) in &jobs {
        loop {
            let (_, _, j) = arm.send(reqwest::Method::GET, &format!("{vault}/backupJobs/{job}?api-version={API}"), None).await?;
            let status = j["properties"]["status"].as_str().unwrap_or("").to_string();
            if matches!(status.as_str(), "Completed" | "CompletedWithWarnings" | "Failed" | "Cancelled") {
                println!("    {friendly:<12} job {job} {status} in {}", j["properties"]["duration"].as_str().unwrap_or("?"));
                failed += usize::from(status != "Completed");
                break;
            }
            tokio::time::sleep(Duration::from_secs(retry_after.max(1))).await;
        }
    }
    sim.shutdown().await;
    if failed > 0 {
        bail!("{failed} backup job(s) did not complete");
    }
    println!("done: {} databases protected and backed up", jobs.len());
    Ok(())
}

//! `sqlvm-backup demo`: the main job on the embedded default, with no Azure. It starts the
//! simulator on the seed scenario (HTTPS, with its Entra token endpoint), builds the real
//! engine on a SQLite file with a client-secret credential from azure_identity, protects every
//! database of sqlserver-0 with HourlyLogBackup, takes an on-demand Full backup of each, shows
//! each step as it happens and each job's final status, and exits 0 when all of it succeeded.

use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::Duration;

use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_emulator::identity::ClientRegistration;
use sqlvm_backup_emulator::scenario::Scenario;
use sqlvm_backup_emulator::server::{self, SimulatorOptions, TlsOptions};
use sqlvm_backup_shared::arm::ArmClient;
use sqlvm_backup_shared::credentials::{CredentialConfig, build_credential};
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::Backend;
use sqlvm_backup_shared::secret::Secret;
use sqlvm_backup_shared::workflow::state::*;
use sqlvm_backup_shared::workflow::steps::StepOptions;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "5d9c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerSelfHost/providers/Microsoft.RecoveryServices/vaults/SQLServer2012";
const VM: &str = "/subscriptions/00000000-0000-0000-0000-0000000000/resourceGroups/SQLServerPMDemo/providers/Microsoft.Compute/virtualMachines/sqlserver-0";

pub async fn run(seed: &str, retry_after: u64) -> anyhow::Result<()> {
    let mut scenario: Scenario = serde_json::from_str(seed)?;
    scenario.settings.retry_after_seconds = retry_after;
    let t = &mut scenario.settings.timings;
    (t.refresh_ms, t.register_ms, t.inquire_ms, t.configure_ms, t.backup_operation_ms, t.full_backup_job_ms) =
        (1500, 2500, 1500, 1500, 500, 4000);
    let secret = uuid_like();
    scenario.clients.push(ClientRegistration { tenant_id: TENANT.into(), client_id: CLIENT.into(), client_secret: secret.clone() });
    let sim = server::start(scenario, SimulatorOptions { tls: Some(TlsOptions::default()), ..Default::default() }).await?;
    println!("simulator (seed scenario) on {}", sim.base_url);

    // The real credential and client code, trusting the simulator's self-signed certificate.
    let pem = sim.cert_pem.clone().context("no certificate")?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes())?])
        .timeout(Duration::from_secs(30))
        .build()?;
    let cred = build_credential(
        &CredentialConfig::ClientSecret {
            tenant_id: TENANT.into(),
            client_id: CLIENT.into(),
            client_secret: Secret::new(secret),
            authority_host: Some(sim.base_url.clone()),
        },
        Some(http.clone()),
    )?;
    let arm = ArmClient::new(&sim.base_url, cred, None)?.with_http_client(http);
    let db = std::env::temp_dir().join(format!("sqlvm-backup-demo-{}.db", std::process::id()));
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::open(&db)?);
    let opts = EngineOptions {
        steps: StepOptions {
            delay_floor: Duration::from_millis(200),
            delay_ceiling: Duration::from_secs(60),
            job_poll_interval: Duration::from_secs(1),
            ..StepOptions::default()
        },
        ..EngineOptions::default()
    };
    let engine = Arc::new(Engine::new(backend, arm, opts));
    println!("engine on {} (embedded SQLite queue and state)", db.display());
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let w = tokio::spawn(worker::run(engine.clone(), WorkerOptions::default(), async move {
        let _ = stopped.changed().await;
    }));

    println!("\nprotect {VM}\n  with HourlyLogBackup in vault SQLServer2012");
    let protect = ProtectInput {
        vm_id: VM.into(),
        vault_id: Some(VAULT.into()),
        policy: Some("HourlyLogBackup".into()),
        databases: DatabaseFilter { include_system: true, ..Default::default() },
        auto_protect: false,
        initial_full_backup: false,
    };
    let id = engine.submit(WorkflowInput::Protect(protect), "demo", None).await?.id;
    let p = follow(&engine, &id).await?;

    println!("\non-demand Full backup of every protected database (kept 45 days)");
    let backup = BackupInput {
        vault_id: VAULT.into(),
        items: vec![],
        databases: DatabaseFilter { include_system: true, ..Default::default() },
        vms: vec![],
        backup_type: BackupType::Full,
        retention_days: Some(45),
    };
    let id = engine.submit(WorkflowInput::Backup(backup), "demo", None).await?.id;
    let b = follow(&engine, &id).await?;
    println!("\njobs:");
    for c in &b.children {
        println!("  {:<12} job {} {}", c.friendly_name, c.job_id.as_deref().unwrap_or("-"), c.job_status.as_deref().unwrap_or("-"));
    }
    let _ = stop.send(true);
    let _ = w.await;
    sim.shutdown().await;
    let _ = std::fs::remove_file(&db);
    if p.status != WorkflowStatus::Succeeded || b.status != WorkflowStatus::Succeeded {
        bail!("protect ended {}, backup ended {}", p.status.as_str(), b.status.as_str());
    }
    println!("\ndone: {} databases protected and backed up", b.children.len());
    Ok(())
}

/// Print each step as the workflow records it, until it ends.
async fn follow(engine: &Engine, id: &str) -> anyhow::Result<WorkflowState> {
    let mut shown = 0;
    loop {
        let st = engine.backend().load(id).await?.context("workflow vanished")?.value;
        for r in &st.steps[shown..] {
            let who = r.child.and_then(|c| st.children.get(c)).map(|c| c.friendly_name.as_str()).unwrap_or("");
            let mut line = format!("  {:<19} {:<12}", r.step, who);
            if let Some(s) = r.http_status {
                line.push_str(&format!(" {s}"));
            }
            if let Some(o) = &r.operation_id {
                line.push_str(&format!(" op {o}"));
            }
            if let Some(j) = &r.job_id {
                line.push_str(&format!(" job {j}"));
            }
            if let Some(n) = &r.note {
                line.push_str(&format!(" ({n})"));
            }
            println!("{line}");
        }
        shown = st.steps.len();
        if st.status.is_terminal() {
            println!(
                "  => {}{}",
                st.status.as_str(),
                st.failure.as_ref().map(|f| format!(": {} {}", f.code, f.message)).unwrap_or_default()
            );
            return Ok(st);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uuid_like() -> String {
    format!("{:032x}", fastrand::u128(..))
}

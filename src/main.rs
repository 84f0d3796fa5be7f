//! `sqlvm-backup`: the command-line edge. Parses arguments, sets up logging, and hands off to
//! the libraries; `anyhow` lives only here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

mod demo;

/// JSON-heavy request handling allocates a lot; mimalloc makes the simulator markedly faster
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sqlvm-backup", version, about = "Automates Azure Backup for SQL Server databases in Azure VMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local Azure Backup API simulator on a scenario.
    ///
    /// Serves the ARM Backup and Compute paths the workflows use, the managed-identity endpoint
    /// (GET /msi/token, header X-IDENTITY-HEADER) and the Entra client-credentials endpoint
    /// (POST /{tenant}/oauth2/v2.0/token), and a control API under /_sim (see docs/simulator.md).
    /// ARM requests need `Authorization: Bearer <token from one of those endpoints>`.
    Simulator {
        /// Scenario file (JSON, or TOML by extension). Default: the seed document's world.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Generate a fleet instead: VMS x DBS, e.g. `1000x10` (across 2 subscriptions x 2 vaults).
        #[arg(long, conflicts_with = "scenario")]
        fleet: Option<String>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Serve HTTPS with a self-signed certificate written to this PEM file.
        #[arg(long)]
        tls_cert_out: Option<PathBuf>,
        /// The IDENTITY_HEADER secret clients must send to /msi/token (random by default).
        #[arg(long, env = "SIM_IDENTITY_HEADER")]
        identity_header: Option<String>,
        /// Announce VMs created through the control API to this Event Grid webhook URL.
        #[arg(long)]
        event_grid_url: Option<String>,
        /// Retry-After (seconds) sent with every 202, overriding the scenario.
        #[arg(long)]
        retry_after: Option<u64>,
        /// Items per list page, overriding the scenario.
        #[arg(long)]
        page_size: Option<usize>,
        /// Turn ARM throttling off.
        #[arg(long)]
        no_throttling: bool,
    },
    /// Start the simulator on the seed scenario and walk through the seed document's workflow
    /// (discover, register, inquire, protect with HourlyLogBackup, on-demand Full backup),
    /// printing each step and each job's final status. Needs no Azure.
    Demo {
        /// Retry-After the simulator sends, in seconds (the real service says 60).
        #[arg(long, default_value_t = 1)]
        retry_after: u64,
    },
    /// Run the worker on the embedded default: HTTP API, Event Grid endpoint, scheduler and
    /// worker pool over one SQLite file (docs/configuration.md).
    Serve {
        /// Configuration file (JSON, or TOML by extension).
        #[arg(long)]
        config: PathBuf,
    },
    /// Run as the Azure Functions custom handler (started by the Functions host, as host.json
    /// says). Listens on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT; the configuration comes from
    /// the SQLVM_BACKUP_CONFIG app setting (inline JSON or a path) and the StepQueue__* settings
    /// (docs/deploy.md).
    Functions,
    /// Move poisoned step messages back to the queue once their cause is fixed (the SQLite
    /// store, or the `<queue>-poison` queue with `azureStorage`).
    RequeuePoison {
        #[arg(long)]
        config: PathBuf,
    },
}

const SEED: &str = include_str!("../emulator/scenarios/seed.json");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo prints its own progress; logs would only interleave with it.
    let default_level = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    if matches!(cli.command, Command::Functions) {
        // The Functions host records every stderr line as an error: warnings and errors go
        // there, the rest to stdout, without colour codes (the log stream is not a terminal).
        use tracing_subscriber::fmt::writer::MakeWriterExt;
        let writer = std::io::stderr.with_max_level(tracing::Level::WARN).or_else(std::io::stdout);
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(writer).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    match cli.command {
        Command::Simulator {
            scenario,
            fleet,
            listen,
            tls_cert_out,
            identity_header,
            event_grid_url,
            retry_after,
            page_size,
            no_throttling,
        } => {
            use sqlvm_backup_emulator::{fleet as fl, scenario::Scenario, server};
            let mut sc = match (scenario, fleet) {
                (Some(p), _) => Scenario::load(&p).with_context(|| format!("loading {}", p.display()))?,
                (None, Some(f)) => {
                    let (v, d) = f.split_once('x').context("--fleet takes VMSxDBS, e.g. 1000x10")?;
                    fl::generate(&fl::FleetSpec {
                        vms: v.parse().context("VMS")?,
                        databases_per_vm: d.parse().context("DBS")?,
                        ..Default::default()
                    })
                }
                (None, None) => serde_json::from_str(SEED).context("embedded seed scenario")?,
            };
            if let Some(r) = retry_after {
                sc.settings.retry_after_seconds = r;
            }
            if let Some(p) = page_size {
                sc.settings.page_size = p;
            }
            if no_throttling {
                sc.settings.throttling.enabled = false;
            }
            let mut opts = server::SimulatorOptions { listen, ..Default::default() };
            if let Some(h) = identity_header {
                opts.identity.identity_header = h;
            }
            if let Some(path) = tls_cert_out {
                opts.tls = Some(server::TlsOptions { cert_out: Some(path), sans: vec![] });
            }
            if let Some(url) = event_grid_url {
                opts.event_grid = Some(sqlvm_backup_emulator::control::EventGridTarget { url, headers: Default::default() });
            }
            let sim = server::start(sc, opts).await?;
            println!("simulator listening on {}", sim.base_url);
            println!("IDENTITY_ENDPOINT={}", sim.identity_endpoint());
            println!("IDENTITY_HEADER={}", sim.identity_header());
            tokio::signal::ctrl_c().await?;
            sim.shutdown().await;
            Ok(())
        }
        Command::Demo { retry_after } => demo::run(SEED, retry_after).await,
        Command::Serve { config } => {
            let cfg = sqlvm_backup::config::Config::load(&config)?;
            sqlvm_backup::serve::run(cfg, |addr| println!("ready on http://{addr}"), shutdown_signal()).await?;
            Ok(())
        }
        Command::Functions => {
            let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
            let settings = sqlvm_backup::custom_handler::HostSettings::from_env(&env)?;
            sqlvm_backup::custom_handler::run(settings, |addr| tracing::info!(%addr, "custom handler ready"), shutdown_signal()).await?;
            Ok(())
        }
        Command::RequeuePoison { config } => {
            let cfg = sqlvm_backup::config::Config::load(&config)?;
            let n = match &cfg.azure_storage {
                Some(storage) => storage.backend()?.requeue_poison().await?,
                None => sqlvm_backup::embedded::sqlite::SqliteBackend::open(&cfg.database)?.requeue_poison().await?,
            };
            println!("{n} message(s) moved back to the queue");
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM (what the Functions host and container runtimes send).
async fn shutdown_signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! `sqlvm-backup serve`: the embedded runtime. One process runs the HTTP API (webhooks and
//! status), the Event Grid endpoint, the backup-plan scheduler and the worker pool, over one
//! SQLite file. Any of them can stop at any instant (SIGKILL included) and the next start
//! carries on from the file.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::embedded::sqlite::SqliteBackend;
use crate::worker::{self, WorkerOptions};
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions};
use sqlvm_backup_shared::credentials::build_credential;
use sqlvm_backup_shared::engine::Engine;
use sqlvm_backup_shared::ports::Backend;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
}

/// The store a configuration names. Standalone, nothing else creates the Azure Storage queues
/// and container, so they are created here if missing (in Azure the infrastructure does).
async fn store(cfg: &Config) -> Result<Arc<dyn Backend>, ServeError> {
    let bad = |e: &dyn std::fmt::Display| ServeError::Config(format!("azureStorage: {e}"));
    match &cfg.azure_storage {
        Some(storage) => {
            let backend = storage.backend().map_err(|e| bad(&e))?;
            backend.create_resources().await.map_err(|e| bad(&e))?;
            Ok(backend)
        }
        None => Ok(Arc::new(
            SqliteBackend::open(&cfg.database).map_err(|e| ServeError::Config(format!("database {}: {e}", cfg.database.display())))?,
        )),
    }
}

/// Build the engine a configuration describes, on the given store.
pub fn engine(cfg: &Config, backend: Arc<dyn Backend>) -> Result<Arc<Engine>, ServeError> {
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60));
    if let Some(pem_path) = &cfg.arm.trust_cert {
        let pem = std::fs::read(pem_path).map_err(|e| ServeError::Config(format!("trustCert {}: {e}", pem_path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ServeError::Config(format!("trustCert: {e}")))?;
        http = http.tls_certs_merge([cert]);
    }
    let http = http.build().map_err(|e| ServeError::Config(format!("HTTP client: {e}")))?;
    let credential =
        build_credential(&cfg.arm.credential, Some(http.clone())).map_err(|e| ServeError::Config(format!("credential: {e}")))?;
    let mut opts = ArmClientOptions::default();
    if let Some(v) = &cfg.arm.api_version {
        opts.api_version = v.clone();
    }
    let arm = ArmClient::new(&cfg.arm.endpoint, credential, Some(opts))
        .map_err(|e| ServeError::Config(format!("arm endpoint: {e}")))?
        .with_http_client(http);
    Ok(Arc::new(Engine::new(backend, arm, cfg.engine.engine_options(&cfg.rules))))
}

/// Wait between polls of an empty queue: a local SQLite query is nearly free, while every
/// Azure Storage poll is a billed transaction (the Functions host backs off to 2 s as well).
fn idle_poll_ceiling(cfg: &Config) -> std::time::Duration {
    match cfg.azure_storage {
        Some(_) => std::time::Duration::from_secs(2),
        None => WorkerOptions::default().max_idle_poll,
    }
}

/// Run until `shutdown` resolves; `ready` is called with the bound address once listening.
pub async fn run(
    cfg: Config,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.api.validate().map_err(|e| ServeError::Config(e.to_string()))?;
    let engine = engine(&cfg, store(&cfg).await?)?;
    let mut app = crate::api::router(engine.clone(), Arc::new(cfg.api.clone()));
    if let Some(rules) = &cfg.events {
        rules.validate().map_err(|e| ServeError::Config(e.to_string()))?;
        app = app.merge(crate::events::router(engine.clone(), Arc::new(rules.clone())));
    }
    let scheduler = match &cfg.scheduler {
        Some(s) => {
            Some(Arc::new(crate::scheduler::Scheduler::new(engine.clone(), s.clone()).map_err(|e| ServeError::Config(e.to_string()))?))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.map_err(|e| ServeError::Listen(cfg.listen.clone(), e))?;
    let addr = listener.local_addr().map_err(|e| ServeError::Listen(cfg.listen.clone(), e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let worker = tokio::spawn(worker::run(
        engine.clone(),
        WorkerOptions { concurrency: cfg.engine.concurrency.max(1), max_idle_poll: idle_poll_ceiling(&cfg), ..Default::default() },
        wait(stop_rx.clone()),
    ));
    let sched = scheduler.map(|s| tokio::spawn(s.run(wait(stop_rx.clone()))));
    let server = axum::serve(listener, app).with_graceful_shutdown(wait(stop_rx.clone()));
    ready(addr);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let _ = server.await;
    let _ = worker.await;
    if let Some(s) = sched {
        let _ = s.await;
    }
    Ok(())
}

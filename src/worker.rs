//! The worker pool of the embedded runtime: receives due step messages from the backend and runs
//! them concurrently through the engine, up to a limit, until shutdown.
//!
//! Shutdown is an argument (as in mini-redis' `server::run`): when it resolves, no new message
//! is taken and the steps under way finish; a message left unacknowledged simply comes back
//! after its lease, which every step tolerates.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlvm_backup_shared::engine::Engine;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Steps running at once (default 64; steps of one workflow wait for each other, so this is
    /// set well above the core count).
    pub concurrency: usize,
    /// Wait between polls of an empty queue (default 25 ms): the latency added to every delay.
    pub idle_poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { concurrency: 64, idle_poll: Duration::from_millis(25) }
    }
}

/// Run until `shutdown` resolves.
pub async fn run(engine: Arc<Engine>, opts: WorkerOptions, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    // A finished step has usually just sent its next message, often due at once: it wakes the
    // loop instead of leaving that message to the next idle poll.
    let finished = Arc::new(tokio::sync::Notify::new());
    tokio::pin!(shutdown);
    loop {
        let free = permits.available_permits();
        let batch = if free == 0 {
            Vec::new()
        } else {
            match engine.backend().receive(free, engine.options().lease).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "receiving step messages failed");
                    Vec::new()
                }
            }
        };
        let idle = batch.is_empty();
        for d in batch {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let engine = engine.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                let wf = d.message.workflow_id.clone();
                let step = d.message.step.name();
                match engine.run_or_give_back(d).await {
                    Ok(outcome) => tracing::debug!(workflow_id = %wf, step, ?outcome, "step done"),
                    Err(e) => tracing::warn!(workflow_id = %wf, step, error = %e, "step failed"),
                }
                drop(permit);
                finished.notify_one();
            });
        }
        if idle {
            // Sleep until the next message is due (a Retry-After is honoured to the millisecond),
            // but no longer than `idle_poll`, so new work from the API is seen quickly.
            let next = engine.backend().next_visible_in().await.ok().flatten();
            let wait = next.map_or(opts.idle_poll, |d| d.min(opts.idle_poll));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
                _ = finished.notified() => {}
            }
        } else if futures_now(&mut shutdown).await {
            break;
        }
    }
    // Let the steps under way finish.
    let _ = permits.acquire_many(opts.concurrency.max(1) as u32).await;
}

/// Poll the shutdown future once without waiting.
async fn futures_now<F: Future<Output = ()> + Unpin>(f: &mut F) -> bool {
    tokio::select! {
        biased;
        _ = f => true,
        _ = std::future::ready(()) => false,
    }
}

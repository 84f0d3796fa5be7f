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
use sqlvm_backup_shared::workflow::failure::{Failure, FailureClass};
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Steps running at once (default 64; steps of one workflow wait for each other, so this is
    /// set well above the core count).
    pub concurrency: usize,
    /// Wait between polls of an empty queue (default 25 ms): the latency added to every delay.
    pub idle_poll: Duration,
    /// While the queue stays empty and the backend cannot say when the next message is due, the
    /// wait doubles from `idle_poll` up to this (default zero: no back-off).
    pub max_idle_poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions { concurrency: 64, idle_poll: Duration::from_millis(25), max_idle_poll: Duration::ZERO }
    }
}

/// Run until `shutdown` resolves.
pub async fn run(engine: Arc<Engine>, opts: WorkerOptions, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    // A finished step has usually just sent its next message, often due at once: it wakes the
    // loop instead of leaving that message to the next idle poll.
    let finished = Arc::new(tokio::sync::Notify::new());
    tokio::pin!(shutdown);
    let mut empty_polls = 0u32;
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
        empty_polls = if idle { empty_polls.saturating_add(1) } else { 0 };
        for d in batch {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let engine = engine.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                let (wf, step, receipt, count) = (d.message.workflow_id.clone(), d.message.step.name(), d.receipt.clone(), d.dequeue_count);
                // The step runs in a task of its own so that a panic is seen here, not lost.
                let runner = engine.clone();
                match tokio::spawn(async move { runner.run_or_give_back(d).await }).await {
                    Ok(Ok(outcome)) => tracing::debug!(workflow_id = %wf, step, ?outcome, "step done"),
                    Ok(Err(e)) => tracing::warn!(workflow_id = %wf, step, error = %e, "step failed"),
                    Err(panic) => after_panic(&engine, &wf, step, &receipt, count, &panic.to_string()).await,
                }
                drop(permit);
                finished.notify_one();
            });
        }
        if idle {
            // Sleep until the next message is due (a Retry-After is honoured to the millisecond),
            // but no longer than `idle_poll`, so new work from the API is seen quickly.
            let next = engine.backend().next_visible_in().await.ok().flatten();
            let backed_off = opts.idle_poll.saturating_mul(1 << empty_polls.min(10)).min(opts.max_idle_poll.max(opts.idle_poll));
            let wait = next.map_or(backed_off, |d| d.min(opts.idle_poll));
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

/// A step panicked: give its message back with a back-off, or, on the last delivery the engine
/// allows, record the workflow as failed and poison the message, as for any other failure.
async fn after_panic(engine: &Engine, workflow_id: &str, step: &str, receipt: &str, count: u32, panic: &str) {
    tracing::error!(workflow_id, step, panic, "step panicked");
    let backend = engine.backend();
    if count >= engine.options().max_deliveries {
        let reason = format!("step {step} panicked on each of {count} deliveries: {panic}");
        let failure = Failure::local("StepPanicked", reason.clone(), FailureClass::Permanent);
        engine.fail_workflow(workflow_id, failure).await;
        let _ = backend.poison(receipt, &reason).await;
    } else {
        let _ = backend.release(receipt, Duration::from_secs(2u64.saturating_pow(count.min(8)))).await;
    }
}

//! The engine on a backend whose commit is not atomic (as on Azure Storage), hit by the cut
//! that is hardest to see: the state write lands but its answer is lost, so the retried
//! conditional write reports a conflict. The engine must find its own step applied and still
//! send what the step sent (from the outbox), or the workflow would stop there.

mod common;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_emulator::server::{self, SimulatorOptions};
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions};
use sqlvm_backup_shared::engine::Engine;
use sqlvm_backup_shared::ports::*;
use sqlvm_backup_shared::workflow::state::*;

/// SQLite underneath, but it says its commits are not atomic, and the first `lose` commits that
/// send something are stored and then answered with `Conflict`.
struct LostAnswers {
    inner: SqliteBackend,
    lose: AtomicUsize,
    lost: AtomicUsize,
}

#[async_trait]
impl Backend for LostAnswers {
    async fn start(&self, state: &WorkflowState, first: Vec<Scheduled>) -> Result<bool, BackendError> {
        self.inner.start(state, first).await
    }
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, BackendError> {
        self.inner.receive(max, lease).await
    }
    async fn load(&self, id: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError> {
        self.inner.load(id).await
    }
    async fn commit(&self, c: Commit) -> Result<String, BackendError> {
        let lose = !c.next.is_empty() && self.lose.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if lose {
            // What reaches storage is the state alone: the sends and the delete come after the
            // write whose answer was lost.
            let state_only = Commit { next: vec![], ack: None, ..c };
            self.inner.commit(state_only).await?;
            self.lost.fetch_add(1, Ordering::SeqCst);
            return Err(BackendError::Conflict);
        }
        self.inner.commit(c).await
    }
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), BackendError> {
        self.inner.release(receipt, delay).await
    }
    async fn poison(&self, receipt: &str, reason: &str) -> Result<(), BackendError> {
        self.inner.poison(receipt, reason).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<WorkflowState>, BackendError> {
        self.inner.list(filter).await
    }
    async fn claim(&self, key: &str, ttl: Duration, now: DateTime<Utc>) -> Result<bool, BackendError> {
        self.inner.claim(key, ttl, now).await
    }
    fn atomic_commit(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_still_sends_what_the_step_sent() {
    let sim = server::start(seed(), SimulatorOptions::default()).await.unwrap();
    let arm = ArmClient::new(&sim.base_url, Arc::new(StaticToken(sim.arm_token())), Some(ArmClientOptions::default())).unwrap();
    let backend =
        Arc::new(LostAnswers { inner: SqliteBackend::in_memory().unwrap(), lose: AtomicUsize::new(6), lost: AtomicUsize::new(0) });
    let engine = Arc::new(Engine::new(backend.clone(), arm, fast_options()));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let w = tokio::spawn(worker::run(engine.clone(), WorkerOptions { concurrency: 8, ..Default::default() }, async move {
        let _ = stopped.changed().await;
    }));

    let id = engine.submit(WorkflowInput::Protect(seed_protect_input()), "test", None).await.unwrap().id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = engine.backend().load(&id).await.unwrap().unwrap().value;
        if st.status.is_terminal() {
            break st;
        }
        assert!(tokio::time::Instant::now() < deadline, "the workflow stopped after a lost answer: {st:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(backend.lost.load(Ordering::SeqCst), 6, "six answers were lost");
    assert_eq!(st.status, WorkflowStatus::Succeeded, "{st:#?}");
    assert!(st.outbox.is_empty(), "nothing is left in the outbox of an ended workflow");
    let _ = stop.send(true);
    let _ = w.await;
    sim.shutdown().await;
}

//! A step that panics is neither lost nor retried forever: its message comes back with a
//! back-off, and on the last delivery the engine allows, the workflow is recorded as failed
//! (with the reason) and the message is poisoned.

mod common;
use common::StaticToken;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::worker::{self, WorkerOptions};
use sqlvm_backup_shared::arm::{ArmClient, ArmClientOptions, RetryOptions};
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::*;
use sqlvm_backup_shared::workflow::state::*;

/// The SQLite backend, except that committing a step (a commit that acknowledges a message)
/// panics, as a bug in a step would.
struct PanicOnStepCommit(SqliteBackend);

#[async_trait]
impl Backend for PanicOnStepCommit {
    async fn start(&self, s: &WorkflowState, first: Vec<Scheduled>) -> Result<bool, BackendError> {
        self.0.start(s, first).await
    }
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, BackendError> {
        self.0.receive(max, lease).await
    }
    async fn load(&self, id: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError> {
        self.0.load(id).await
    }
    async fn commit(&self, c: Commit) -> Result<String, BackendError> {
        assert!(c.ack.is_none(), "a bug in a step");
        self.0.commit(c).await
    }
    async fn release(&self, r: &str, d: Duration) -> Result<(), BackendError> {
        self.0.release(r, d).await
    }
    async fn poison(&self, r: &str, why: &str) -> Result<(), BackendError> {
        self.0.poison(r, why).await
    }
    async fn list(&self, f: &ListFilter) -> Result<Vec<WorkflowState>, BackendError> {
        self.0.list(f).await
    }
    async fn claim(&self, k: &str, ttl: Duration, now: DateTime<Utc>) -> Result<bool, BackendError> {
        self.0.claim(k, ttl, now).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_is_retried_then_poisoned_with_the_workflow_failed() {
    let sqlite = SqliteBackend::in_memory().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(PanicOnStepCommit(sqlite.clone()));
    // Nothing listens on port 9: every ARM call fails at once, without retries.
    let arm_opts = ArmClientOptions { retry: RetryOptions { max_retries: 0, ..Default::default() }, ..Default::default() };
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("t".into())), Some(arm_opts)).unwrap();
    let engine = Arc::new(Engine::new(
        backend,
        arm,
        EngineOptions { max_deliveries: 2, lease: Duration::from_secs(30), ..EngineOptions::default() },
    ));
    let input = WorkflowInput::Protect(ProtectInput {
        vm_id: common::VM.into(),
        vault_id: Some(common::VAULT.into()),
        policy: Some("P".into()),
        databases: DatabaseFilter::default(),
        auto_protect: false,
        initial_full_backup: false,
    });
    let id = engine.submit(input, "test", None).await.unwrap().id;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let e = engine.clone();
    let w = tokio::spawn(worker::run(
        e,
        WorkerOptions { concurrency: 2, idle_poll: Duration::from_millis(20), ..Default::default() },
        async move {
            let _ = stopped.changed().await;
        },
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = sqlite.load(&id).await.unwrap().unwrap().value;
        if st.status.is_terminal() {
            break st;
        }
        assert!(tokio::time::Instant::now() < deadline, "the workflow never ended: {st:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop.send(true);
    let _ = w.await;
    assert_eq!(st.status, WorkflowStatus::Failed);
    let f = st.failure.unwrap();
    assert_eq!(f.code, "StepPanicked");
    assert!(f.message.contains("2 deliveries"), "{}", f.message);
    let poisoned = sqlite.poisoned().await.unwrap();
    assert_eq!(poisoned.len(), 1, "{poisoned:?}");
    assert_eq!(poisoned[0].0, id);
    assert_eq!(sqlite.pending_messages().await.unwrap(), 0);
}

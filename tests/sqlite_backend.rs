//! The embedded SQLite backend against the `Backend` contract: idempotent starts, delayed
//! visibility, leases, atomic commits, poison, list filters, claims, and a SIGKILL crash test.

use chrono::{Duration as ChronoDuration, Utc};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup_shared::ports::{Backend, BackendError, Commit, ListFilter, Scheduled};
use sqlvm_backup_shared::workflow::message::{MESSAGE_VERSION, Step, StepMessage};
use sqlvm_backup_shared::workflow::state::{
    BackupInput, BackupType, DatabaseFilter, ProtectInput, WorkflowInput, WorkflowKind, WorkflowState, WorkflowStatus,
};

const VAULT: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v";

/// A fresh running workflow. Built from JSON with only the required fields, so that fields the
/// state gains later (with serde defaults) do not break these tests.
fn state(id: &str, kind: WorkflowKind) -> WorkflowState {
    let now = Utc::now();
    let input = match kind {
        WorkflowKind::Backup => WorkflowInput::Backup(BackupInput {
            vault_id: VAULT.into(),
            items: vec![],
            databases: DatabaseFilter::default(),
            vms: vec![],
            backup_type: BackupType::Full,
            retention_days: Some(45),
        }),
        WorkflowKind::Protect => WorkflowInput::Protect(ProtectInput {
            vm_id: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
                .into(),
            vault_id: None,
            policy: None,
            databases: DatabaseFilter::default(),
            auto_protect: false,
            initial_full_backup: false,
        }),
    };
    serde_json::from_value(serde_json::json!({
        "id": id,
        "kind": kind,
        "input": input,
        "status": WorkflowStatus::Running,
        "createdAt": now,
        "updatedAt": now,
        "deadline": now + ChronoDuration::hours(1),
        "polls": 0,
        "pollBudget": 100,
        "origin": "test",
    }))
    .unwrap()
}

/// Step `n` of a workflow (JSON with the required fields only, like [`state`]).
fn msg(workflow_id: &str, n: u32) -> StepMessage {
    serde_json::from_value(serde_json::json!({
        "v": MESSAGE_VERSION,
        "workflowId": workflow_id,
        "stepId": format!("{workflow_id}/{n}"),
        "step": Step::SelectItems,
        "attempt": n,
    }))
    .unwrap()
}

fn now(message: StepMessage) -> Scheduled {
    Scheduled { message, delay: Duration::ZERO }
}

/// A fresh database file path (no tempfile crate: pid + counter + time).
fn temp_db(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sqlvm-backup-test-{}-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("backend.db")
}

fn raw(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

#[tokio::test]
async fn start_is_idempotent() {
    let b = SqliteBackend::in_memory().unwrap();
    let s = state("wf-1", WorkflowKind::Backup);
    assert!(b.start(&s, vec![now(msg("wf-1", 0))]).await.unwrap());
    let mut other = s.clone();
    other.origin = "second".into();
    assert!(!b.start(&other, vec![now(msg("wf-1", 0)), now(msg("wf-1", 1))]).await.unwrap());
    assert_eq!(b.pending_messages().await.unwrap(), 1, "the second start sends nothing");
    let loaded = b.load("wf-1").await.unwrap().unwrap();
    assert_eq!(loaded.version, "1");
    assert_eq!(loaded.value, s);
    assert!(b.load("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn delayed_messages_become_visible_after_their_delay() {
    let b = SqliteBackend::in_memory().unwrap();
    let delayed = Scheduled { message: msg("wf-d", 0), delay: Duration::from_millis(300) };
    assert!(b.start(&state("wf-d", WorkflowKind::Backup), vec![delayed]).await.unwrap());
    assert!(b.receive(10, Duration::from_secs(30)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let got = b.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, msg("wf-d", 0));
    assert_eq!(got[0].dequeue_count, 1);
}

#[tokio::test]
async fn a_leased_message_comes_back_after_its_lease_and_the_old_receipt_is_lost() {
    let b = SqliteBackend::in_memory().unwrap();
    let s = state("wf-l", WorkflowKind::Backup);
    b.start(&s, vec![now(msg("wf-l", 0))]).await.unwrap();
    let first = b.receive(10, Duration::from_millis(200)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(b.receive(10, Duration::from_millis(200)).await.unwrap().is_empty(), "leased");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = b.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].dequeue_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);

    // The first holder lost the lease: its commit, release and poison change nothing.
    let mut next = s.clone();
    next.polls = 1;
    let stale = Commit {
        state: next.clone(),
        expected_version: "1".into(),
        next: vec![now(msg("wf-l", 1))],
        ack: Some(first[0].receipt.clone()),
        durable: false,
    };
    assert!(matches!(b.commit(stale).await, Err(BackendError::LeaseLost)));
    assert!(matches!(b.release(&first[0].receipt, Duration::ZERO).await, Err(BackendError::LeaseLost)));
    assert!(matches!(b.poison(&first[0].receipt, "x").await, Err(BackendError::LeaseLost)));
    assert_eq!(b.load("wf-l").await.unwrap().unwrap().version, "1", "rolled back");
    assert_eq!(b.pending_messages().await.unwrap(), 1);

    // The current holder commits.
    let good = Commit {
        state: next,
        expected_version: "1".into(),
        next: vec![now(msg("wf-l", 1))],
        ack: Some(second[0].receipt.clone()),
        durable: false,
    };
    b.commit(good).await.unwrap();
    let after = b.load("wf-l").await.unwrap().unwrap();
    assert_eq!((after.version.as_str(), after.value.polls), ("2", 1));
    let got = b.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.iter().map(|d| d.message.step_id.clone()).collect::<Vec<_>>(), vec!["wf-l/1"]);
}

#[tokio::test]
async fn release_makes_the_message_visible_again_after_the_delay() {
    let b = SqliteBackend::in_memory().unwrap();
    b.start(&state("wf-r", WorkflowKind::Backup), vec![now(msg("wf-r", 0))]).await.unwrap();
    let d = b.receive(1, Duration::from_secs(30)).await.unwrap().remove(0);
    b.release(&d.receipt, Duration::from_millis(100)).await.unwrap();
    assert!(b.receive(1, Duration::from_secs(30)).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = b.receive(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again[0].dequeue_count, 2);
    assert!(matches!(b.release(&d.receipt, Duration::ZERO).await, Err(BackendError::LeaseLost)));
}

#[tokio::test]
async fn a_conflicting_commit_sends_nothing_and_acks_nothing() {
    let b = SqliteBackend::in_memory().unwrap();
    let s = state("wf-c", WorkflowKind::Backup);
    b.start(&s, vec![now(msg("wf-c", 0))]).await.unwrap();
    let d = b.receive(1, Duration::from_secs(30)).await.unwrap().remove(0);
    let mut next = s.clone();
    next.polls = 1;
    let stale = Commit {
        state: next.clone(),
        expected_version: "7".into(),
        next: vec![now(msg("wf-c", 1)), now(msg("wf-c", 2))],
        ack: Some(d.receipt.clone()),
        durable: false,
    };
    assert!(matches!(b.commit(stale).await, Err(BackendError::Conflict)));
    assert_eq!(b.pending_messages().await.unwrap(), 1, "no message sent, the consumed one not acked");
    assert_eq!(b.load("wf-c").await.unwrap().unwrap().value.polls, 0);

    // Too large: nothing applied either.
    let mut big = msg("wf-c", 1);
    big.tracking_url = Some("x".repeat(70 * 1024));
    let too_large =
        Commit { state: next.clone(), expected_version: "1".into(), next: vec![now(big)], ack: Some(d.receipt.clone()), durable: false };
    assert!(matches!(b.commit(too_large).await, Err(BackendError::TooLarge(n)) if n > 64 * 1024));
    assert_eq!(b.load("wf-c").await.unwrap().unwrap().version, "1");

    // The same step with the right version goes through, then the old version conflicts.
    let ok = Commit {
        state: next.clone(),
        expected_version: "1".into(),
        next: vec![now(msg("wf-c", 1))],
        ack: Some(d.receipt.clone()),
        durable: false,
    };
    b.commit(ok).await.unwrap();
    assert_eq!(b.pending_messages().await.unwrap(), 1);
    let again = Commit { state: next, expected_version: "1".into(), next: vec![], ack: None, durable: false };
    assert!(matches!(b.commit(again).await, Err(BackendError::Conflict)));
    // Unknown workflow: conflict too.
    let ghost =
        Commit { state: state("ghost", WorkflowKind::Backup), expected_version: "1".into(), next: vec![], ack: None, durable: false };
    assert!(matches!(b.commit(ghost).await, Err(BackendError::Conflict)));
}

#[tokio::test]
async fn undecodable_bodies_are_poisoned_and_can_be_requeued() {
    let path = temp_db("poison");
    let b = SqliteBackend::open(&path).unwrap();
    b.start(&state("wf-p", WorkflowKind::Backup), vec![now(msg("wf-p", 0))]).await.unwrap();
    let future = msg("wf-p", 9).encode().replace("\"v\":1", "\"v\":2");
    {
        let c = raw(&path);
        for body in ["not json", future.as_str()] {
            c.execute("INSERT INTO messages (workflow_id, body, visible_at, dequeue_count) VALUES ('wf-p', ?1, 0, 0)", [body]).unwrap();
        }
    }
    let got = b.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 1, "only the good message is returned");
    assert_eq!(got[0].message.step_id, "wf-p/0");
    let poisoned = b.poisoned().await.unwrap();
    assert_eq!(poisoned.len(), 2);
    assert_eq!(poisoned[0].0, "wf-p");
    assert!(poisoned[0].1.contains("undecodable"), "{}", poisoned[0].1);
    assert_eq!(poisoned[0].2, "not json");
    assert!(poisoned[1].1.contains("version 2"), "{}", poisoned[1].1);

    // A decodable message poisoned by the engine (attempts exhausted), with its reason.
    b.poison(&got[0].receipt, "attempts exhausted").await.unwrap();
    assert_eq!(b.pending_messages().await.unwrap(), 0);
    assert_eq!(b.poisoned().await.unwrap()[2].1, "attempts exhausted");

    assert_eq!(b.requeue_poison().await.unwrap(), 3);
    assert!(b.poisoned().await.unwrap().is_empty());
    assert_eq!(b.pending_messages().await.unwrap(), 3);
    let again = b.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.len(), 1, "the cause of the two bad ones is not fixed: back to poison");
    assert_eq!(again[0].dequeue_count, 1, "requeued with a fresh count");
    assert_eq!(b.poisoned().await.unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test]
async fn list_filters_by_status_and_kind_newest_first() {
    let b = SqliteBackend::in_memory().unwrap();
    let base = Utc::now();
    for (i, kind) in [WorkflowKind::Backup, WorkflowKind::Protect, WorkflowKind::Backup, WorkflowKind::Backup].into_iter().enumerate() {
        let mut s = state(&format!("wf-{i}"), kind);
        s.created_at = base + ChronoDuration::seconds(i as i64);
        b.start(&s, vec![]).await.unwrap();
    }
    let mut done = b.load("wf-2").await.unwrap().unwrap().value;
    done.status = WorkflowStatus::Succeeded;
    b.commit(Commit { state: done, expected_version: "1".into(), next: vec![], ack: None, durable: false }).await.unwrap();

    let ids = |v: Vec<WorkflowState>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(b.list(&ListFilter::default()).await.unwrap()), ["wf-3", "wf-2", "wf-1", "wf-0"]);
    let backups = ListFilter { kind: Some(WorkflowKind::Backup), ..Default::default() };
    assert_eq!(ids(b.list(&backups).await.unwrap()), ["wf-3", "wf-2", "wf-0"]);
    let running_backups = ListFilter { status: Some(WorkflowStatus::Running), kind: Some(WorkflowKind::Backup), limit: 0 };
    assert_eq!(ids(b.list(&running_backups).await.unwrap()), ["wf-3", "wf-0"]);
    let succeeded = ListFilter { status: Some(WorkflowStatus::Succeeded), ..Default::default() };
    assert_eq!(ids(b.list(&succeeded).await.unwrap()), ["wf-2"]);
    assert_eq!(ids(b.list(&ListFilter { limit: 2, ..Default::default() }).await.unwrap()), ["wf-3", "wf-2"]);
}

#[tokio::test]
async fn a_key_is_claimed_once_until_its_ttl() {
    let b = SqliteBackend::in_memory().unwrap();
    let t0 = Utc::now();
    let ttl = Duration::from_secs(3600);
    assert!(b.claim("schedule/nightly/2025-01-01T02:00Z", ttl, t0).await.unwrap());
    assert!(!b.claim("schedule/nightly/2025-01-01T02:00Z", ttl, t0 + ChronoDuration::seconds(5)).await.unwrap());
    assert!(b.claim("event/abc", ttl, t0).await.unwrap());
    // Long after the ttl the old claim is forgotten.
    assert!(b.claim("schedule/nightly/2025-01-01T02:00Z", ttl, t0 + ChronoDuration::hours(2)).await.unwrap());
}

/// Steps per workflow in the crash test: a workflow's version is `polls + 1`.
const CRASH_STEPS: u32 = 5;

/// The child of [`a_sigkill_at_any_instant_loses_and_duplicates_nothing`]: runs workflows on
/// the file named by `CRASH_DB` until it is killed. Does nothing in a normal test run.
#[tokio::test]
async fn crash_writer() {
    let Ok(path) = std::env::var("CRASH_DB") else { return };
    let b = SqliteBackend::open(Path::new(&path)).unwrap();
    for i in 0u64.. {
        let id = format!("wf-{i}");
        b.start(&state(&id, WorkflowKind::Backup), vec![now(msg(&id, 0))]).await.unwrap();
        step_all(&b, Duration::from_millis(300)).await;
    }
}

/// Receive a batch and apply each message as one step: `polls += 1`, next message unless done.
/// Returns how many messages were applied.
async fn step_all(b: &SqliteBackend, lease: Duration) -> usize {
    let batch = b.receive(8, lease).await.unwrap();
    let n = batch.len();
    for d in batch {
        let current = b.load(&d.message.workflow_id).await.unwrap().unwrap();
        let mut s = current.value;
        assert_eq!(d.message.step_id, format!("{}/{}", s.id, s.polls), "a stale or duplicated message was delivered");
        s.polls += 1;
        let next = if s.polls < CRASH_STEPS {
            vec![now(msg(&s.id, s.polls))]
        } else {
            s.status = WorkflowStatus::Succeeded;
            vec![]
        };
        b.commit(Commit { state: s, expected_version: current.version, next, ack: Some(d.receipt), durable: false }).await.unwrap();
    }
    n
}

#[tokio::test]
async fn a_sigkill_at_any_instant_loses_and_duplicates_nothing() {
    let path = temp_db("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_writer", "--nocapture", "--test-threads=1"])
        .env("CRASH_DB", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Let the writer get well under way, then kill it wherever it is.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done = path
            .exists()
            .then(|| raw(&path).query_row("SELECT COUNT(*) FROM workflows WHERE status = 'succeeded'", [], |r| r.get::<_, i64>(0)).ok())
            .flatten()
            .unwrap_or(0);
        if done >= 10 || Instant::now() > deadline {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(fastrand_ms()));
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");

    let b = SqliteBackend::open(&path).unwrap();
    let c = raw(&path);
    let integrity: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");

    let rows: Vec<(String, i64, String)> = {
        let mut stmt = c.prepare("SELECT id, version, state FROM workflows").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert!(rows.len() >= 10, "the writer got under way ({} workflows)", rows.len());
    let queued: Vec<String> = {
        let mut stmt = c.prepare("SELECT body FROM messages").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let mut running = 0;
    for (id, version, text) in &rows {
        let s: WorkflowState = serde_json::from_str(text).unwrap();
        assert_eq!(*version, i64::from(s.polls) + 1, "{id}: one version per committed step");
        let mine: Vec<StepMessage> =
            queued.iter().map(|q| StepMessage::decode(q).unwrap()).filter(|m| &m.workflow_id == id).collect::<Vec<_>>();
        if s.polls < CRASH_STEPS {
            running += 1;
            assert_eq!(s.status, WorkflowStatus::Running);
            assert_eq!(mine.len(), 1, "{id}: exactly its next message is queued (none lost, none duplicated)");
            assert_eq!(mine[0].step_id, format!("{id}/{}", s.polls));
        } else {
            assert_eq!(s.status, WorkflowStatus::Succeeded);
            assert!(mine.is_empty(), "{id}: finished, nothing queued");
        }
    }
    assert_eq!(queued.len(), running, "no message without a workflow");
    eprintln!("crash test: killed after {} workflows, {running} in flight", rows.len());
    assert!(b.poisoned().await.unwrap().is_empty());

    // Recovery: the dead writer's leases run out and every workflow finishes exactly once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.pending_messages().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "recovery did not finish");
        if step_all(&b, Duration::from_secs(30)).await == 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    for (id, _, _) in &rows {
        let v = b.load(id).await.unwrap().unwrap();
        assert_eq!((v.version, v.value.polls, v.value.status), ((CRASH_STEPS + 1).to_string(), CRASH_STEPS, WorkflowStatus::Succeeded));
    }
    drop((b, c));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// 0–40 ms more, so the kill lands at a different point of a transaction from run to run.
fn fastrand_ms() -> u64 {
    u64::from(Utc::now().timestamp_subsec_nanos() % 41)
}

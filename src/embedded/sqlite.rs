//! [`SqliteBackend`]: the engine's queue, workflow store and claims in one SQLite file.
//!
//! # Guarantees
//!
//! | Property | This adapter |
//! |---|---|
//! | Longest delay | Unbounded (a message's visibility time is an `INTEGER` of milliseconds; huge delays saturate). |
//! | Delivery | At least once. A received message is leased; it comes back (with `dequeue_count + 1`) when the lease runs out before it is committed, released or poisoned. |
//! | Ordering | Best effort: visible messages are handed out by visibility time, then by insertion order. |
//! | Commit | Atomic: the state update (checked against the expected version), the next messages and the acknowledgement are one SQLite transaction; on any error nothing of it is applied. |
//! | Lost lease | A commit, release or poison whose lease token no longer matches fails with [`BackendError::LeaseLost`] and changes nothing, so the process now holding the message wins. |
//! | Crash | WAL with `synchronous=NORMAL`: every call that returned `Ok` survives a process crash (SIGKILL); a transaction cut short leaves no trace. After an OS crash or power loss the last ordinary commits may be lost (their steps run again: they are idempotent), but `start`, `claim` and commits marked `durable` (before a backup POST) are forced to disk first (`synchronous=FULL`). Leases held by a dead process simply run out. |
//! | Message size | 64 KiB of JSON at most ([`BackendError::TooLarge`]), like an Azure Storage queue message, so both backends accept the same messages. |
//! | Concurrency | One connection behind a mutex (one writer); blocking SQLite calls run on Tokio's blocking pool, never on the async workers. Meant for one process per file. |
//!
//! Undecodable message bodies (unknown format version, unknown step) are moved to the `poison`
//! table by [`receive`](Backend::receive) with the reason and are never returned; once the cause is
//! fixed (for instance a newer build), [`SqliteBackend::requeue_poison`] sends them back.
//!
//! # Tables
//!
//! - `workflows(id PRIMARY KEY, kind, status, version, state, created_at, updated_at)`: `state` is the
//!   [`WorkflowState`] as JSON, `version` starts at 1 and grows by one per commit.
//! - `messages(id, workflow_id, body, visible_at, dequeue_count, lease_token)`: `visible_at` in Unix
//!   milliseconds; a receipt is `"{id}:{lease_token}"`.
//! - `poison(id, workflow_id, body, reason, at)` and `claims(key PRIMARY KEY, at)`.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlvm_backup_shared::ports::{Backend, BackendError, Commit, Delivery, ListFilter, Scheduled, Versioned};
use sqlvm_backup_shared::workflow::message::StepMessage;
use sqlvm_backup_shared::workflow::state::{WorkflowKind, WorkflowState};

/// Largest message body accepted, in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How long a call waits for a lock held by another connection (another process on the same file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Default and largest page of [`Backend::list`].
const DEFAULT_LIST_LIMIT: usize = 100;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workflows (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_created ON workflows (created_at);
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id   TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    lease_token   TEXT NULL
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_at, id);
CREATE TABLE IF NOT EXISTS poison (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    body        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    at  INTEGER NOT NULL
);
PRAGMA user_version = 1;
";

/// The embedded backend: see the [module documentation](self) for what it guarantees.
#[derive(Clone)]
pub struct SqliteBackend {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Open (or create) the database file, in WAL mode (see the crash row of the table above).
    pub fn open(path: &Path) -> Result<SqliteBackend, BackendError> {
        let conn = Connection::open(path).map_err(storage)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(storage)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(BackendError::Storage(format!("could not switch {} to WAL (journal mode is {mode})", path.display())));
        }
        SqliteBackend::init(conn)
    }

    /// A private in-memory database (tests, demos): nothing survives the process.
    pub fn in_memory() -> Result<SqliteBackend, BackendError> {
        SqliteBackend::init(Connection::open_in_memory().map_err(storage)?)
    }

    fn init(conn: Connection) -> Result<SqliteBackend, BackendError> {
        // NORMAL in WAL mode: a commit survives any process crash (SIGKILL included); only an
        // OS crash or power loss can drop the last commits, which at-least-once delivery and
        // idempotent steps absorb. What must never be lost is forced to disk (`durable`).
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
        Ok(SqliteBackend { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Run `f` on the connection on Tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let call = move || {
            // A panic inside a call drops its transaction, which rolls back: the connection is
            // still consistent, so a poisoned mutex is recovered rather than propagated.
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        };
        tokio::task::spawn_blocking(call).await.map_err(|e| BackendError::Storage(format!("blocking task failed: {e}")))?
    }

    /// [`Self::run`] with `synchronous=FULL` around the call when `full`: the commit is on
    /// stable storage when it returns (the connection's default is NORMAL).
    async fn run_synced<T, F>(&self, full: bool, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        self.run(move |conn| {
            if !full {
                return f(conn);
            }
            conn.pragma_update(None, "synchronous", "FULL").map_err(storage)?;
            let result = f(conn);
            let restored = conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage);
            result.and_then(|r| restored.map(|()| r))
        })
        .await
    }

    /// The poisoned messages, oldest first: `(workflow_id, reason, body)`.
    pub async fn poisoned(&self) -> Result<Vec<(String, String, String)>, BackendError> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT workflow_id, reason, body FROM poison ORDER BY id").map_err(storage)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(storage)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(storage)
        })
        .await
    }

    /// How many messages are queued, visible or not (leased ones included).
    pub async fn pending_messages(&self) -> Result<usize, BackendError> {
        self.run(|conn| {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).map_err(storage)?;
            Ok(n as usize)
        })
        .await
    }

    /// Send every poisoned message back to the queue, visible now with a fresh dequeue count
    /// (the "re-enqueue once the cause is fixed" command). Returns how many were moved.
    pub async fn requeue_poison(&self) -> Result<usize, BackendError> {
        self.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let moved = tx
                .exec(
                    "INSERT INTO messages (workflow_id, body, visible_at, dequeue_count, lease_token)
                     SELECT workflow_id, body, ?1, 0, NULL FROM poison ORDER BY id",
                    params![now_ms()],
                )
                .map_err(storage)?;
            tx.exec("DELETE FROM poison", []).map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(moved)
        })
        .await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn start(&self, state: &WorkflowState, first: Vec<Scheduled>) -> Result<bool, BackendError> {
        let row = WorkflowRow::new(state)?;
        let first = encode_all(&first)?;
        // An accepted request must survive a power loss: the caller was told 202.
        self.run_synced(true, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let inserted = tx
                .exec(
                    "INSERT OR IGNORE INTO workflows (id, kind, status, version, state, created_at, updated_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)",
                    params![row.id, row.kind, row.status, row.state, row.created_at, row.updated_at],
                )
                .map_err(storage)?;
            if inserted == 0 {
                return Ok(false); // the transaction rolls back on drop; nothing was written anyway
            }
            insert_messages(&tx, &first)?;
            tx.commit().map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn next_visible_in(&self) -> Result<Option<Duration>, BackendError> {
        self.run(move |conn| {
            let next: Option<i64> = conn.query_row("SELECT MIN(visible_at) FROM messages", [], |r| r.get(0)).map_err(storage)?;
            Ok(next.map(|at| Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))))
        })
        .await
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, BackendError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.run(move |conn| {
            let now = now_ms();
            let until = after_ms(now, lease);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let due: Vec<(i64, String, String, u32)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id, workflow_id, body, dequeue_count FROM messages
                         WHERE visible_at <= ?1 ORDER BY visible_at, id LIMIT ?2",
                    )
                    .map_err(storage)?;
                let rows = stmt
                    .query_map(params![now, i64::try_from(max).unwrap_or(i64::MAX)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .map_err(storage)?;
                rows.collect::<Result<_, _>>().map_err(storage)?
            };
            let mut out = Vec::with_capacity(due.len());
            for (id, workflow_id, body, count) in due {
                match StepMessage::decode(&body) {
                    Ok(message) => {
                        let token = lease_token();
                        tx.exec(
                            "UPDATE messages SET visible_at = ?2, dequeue_count = dequeue_count + 1, lease_token = ?3 WHERE id = ?1",
                            params![id, until, token],
                        )
                        .map_err(storage)?;
                        out.push(Delivery { message, receipt: format!("{id}:{token}"), dequeue_count: count.saturating_add(1) });
                    }
                    Err(reason) => {
                        tx.exec(
                            "INSERT INTO poison (workflow_id, body, reason, at) VALUES (?1, ?2, ?3, ?4)",
                            params![workflow_id, body, reason, now],
                        )
                        .map_err(storage)?;
                        tx.exec("DELETE FROM messages WHERE id = ?1", params![id]).map_err(storage)?;
                    }
                }
            }
            tx.commit().map_err(storage)?;
            Ok(out)
        })
        .await
    }

    async fn load(&self, workflow_id: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError> {
        let id = workflow_id.to_string();
        self.run(move |conn| {
            let row: Option<(String, i64)> = conn
                .query_row("SELECT state, version FROM workflows WHERE id = ?1", params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(storage)?;
            row.map(|(state, version)| Ok(Versioned { value: decode_state(&id, &state)?, version: version.to_string() })).transpose()
        })
        .await
    }

    /// One transaction: the versioned state update, the next messages and the acknowledgement.
    ///
    /// Checked in this order, each failure rolling everything back: message size
    /// ([`BackendError::TooLarge`]), the stored version ([`BackendError::Conflict`], also when the
    /// workflow does not exist), then the lease of the acknowledged message
    /// ([`BackendError::LeaseLost`]: the message was received again by someone else, who now owns
    /// the step; this commit is dropped so that the step is applied once).
    async fn commit(&self, commit: Commit) -> Result<String, BackendError> {
        let row = WorkflowRow::new(&commit.state)?;
        let next = encode_all(&commit.next)?;
        let ack = commit.ack.as_deref().map(parse_receipt).transpose()?;
        let Ok(expected) = commit.expected_version.parse::<i64>() else {
            return Err(BackendError::Conflict);
        };
        self.run_synced(commit.durable, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let updated = tx
                .exec(
                    "UPDATE workflows SET state = ?2, status = ?3, updated_at = ?4, version = version + 1
                     WHERE id = ?1 AND version = ?5",
                    params![row.id, row.state, row.status, row.updated_at, expected],
                )
                .map_err(storage)?;
            if updated == 0 {
                return Err(BackendError::Conflict);
            }
            if let Some((id, token)) = &ack {
                let deleted = tx.exec("DELETE FROM messages WHERE id = ?1 AND lease_token = ?2", params![id, token]).map_err(storage)?;
                if deleted == 0 {
                    return Err(BackendError::LeaseLost);
                }
            }
            insert_messages(&tx, &next)?;
            tx.commit().map_err(storage)?;
            Ok((expected + 1).to_string())
        })
        .await
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), BackendError> {
        let (id, token) = parse_receipt(receipt)?;
        self.run(move |conn| {
            let changed = conn
                .exec(
                    "UPDATE messages SET visible_at = ?3, lease_token = NULL WHERE id = ?1 AND lease_token = ?2",
                    params![id, token, after_ms(now_ms(), delay)],
                )
                .map_err(storage)?;
            if changed == 0 { Err(BackendError::LeaseLost) } else { Ok(()) }
        })
        .await
    }

    async fn poison(&self, receipt: &str, reason: &str) -> Result<(), BackendError> {
        let (id, token) = parse_receipt(receipt)?;
        let reason = reason.to_string();
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            let moved = tx
                .exec(
                    "INSERT INTO poison (workflow_id, body, reason, at)
                     SELECT workflow_id, body, ?3, ?4 FROM messages WHERE id = ?1 AND lease_token = ?2",
                    params![id, token, reason, now_ms()],
                )
                .map_err(storage)?;
            if moved == 0 {
                return Err(BackendError::LeaseLost);
            }
            tx.exec("DELETE FROM messages WHERE id = ?1", params![id]).map_err(storage)?;
            tx.commit().map_err(storage)
        })
        .await
    }

    /// Newest first (by `created_at`); `limit` 0 means 100.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<WorkflowState>, BackendError> {
        let status = filter.status.map(|s| s.as_str().to_string());
        let kind = filter.kind.map(WorkflowKind::as_str);
        let limit = if filter.limit == 0 { DEFAULT_LIST_LIMIT } else { filter.limit };
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, state FROM workflows
                     WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2)
                     ORDER BY created_at DESC, rowid DESC LIMIT ?3",
                )
                .map_err(storage)?;
            let rows = stmt
                .query_map(params![status, kind, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(storage)?;
            rows.map(|row| {
                let (id, state) = row.map_err(storage)?;
                decode_state(&id, &state)
            })
            .collect()
        })
        .await
    }

    /// `INSERT OR IGNORE` of the key at `now`; claims older than `ttl` (relative to `now`) are
    /// deleted first, so an expired key can be claimed again.
    async fn claim(&self, key: &str, ttl: Duration, now: DateTime<Utc>) -> Result<bool, BackendError> {
        let key = key.to_string();
        let at = now.timestamp_millis();
        let horizon = at.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.run_synced(true, move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(storage)?;
            tx.exec("DELETE FROM claims WHERE at < ?1", params![horizon]).map_err(storage)?;
            let inserted = tx.exec("INSERT OR IGNORE INTO claims (key, at) VALUES (?1, ?2)", params![key, at]).map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(inserted == 1)
        })
        .await
    }
}

/// The columns of a workflow row, prepared outside the blocking task.
struct WorkflowRow {
    id: String,
    kind: String,
    status: &'static str,
    state: String,
    created_at: String,
    updated_at: String,
}

impl WorkflowRow {
    fn new(state: &WorkflowState) -> Result<WorkflowRow, BackendError> {
        Ok(WorkflowRow {
            id: state.id.clone(),
            kind: state.kind.as_str().to_string(),
            status: state.status.as_str(),
            state: serde_json::to_string(state).map_err(|e| BackendError::Storage(format!("cannot encode workflow {}: {e}", state.id)))?,
            created_at: timestamp(state.created_at),
            updated_at: timestamp(state.updated_at),
        })
    }
}

/// An encoded message ready to insert: `(workflow_id, body, delay)`.
type Encoded = (String, String, Duration);

fn encode_all(messages: &[Scheduled]) -> Result<Vec<Encoded>, BackendError> {
    messages
        .iter()
        .map(|s| {
            let body = s.message.encode();
            if body.len() > MAX_MESSAGE_BYTES {
                return Err(BackendError::TooLarge(body.len()));
            }
            Ok((s.message.workflow_id.clone(), body, s.delay))
        })
        .collect()
}

fn insert_messages(tx: &rusqlite::Transaction<'_>, messages: &[Encoded]) -> Result<(), BackendError> {
    let now = now_ms();
    let mut stmt =
        tx.prepare_cached("INSERT INTO messages (workflow_id, body, visible_at, dequeue_count) VALUES (?1, ?2, ?3, 0)").map_err(storage)?;
    for (workflow_id, body, delay) in messages {
        stmt.execute(params![workflow_id, body, after_ms(now, *delay)]).map_err(storage)?;
    }
    Ok(())
}

fn decode_state(id: &str, text: &str) -> Result<WorkflowState, BackendError> {
    serde_json::from_str(text).map_err(|e| BackendError::Storage(format!("stored state of workflow {id} is unreadable: {e}")))
}

/// `"{id}:{lease_token}"` → its parts. A malformed receipt cannot hold a lease.
fn parse_receipt(receipt: &str) -> Result<(i64, String), BackendError> {
    let (id, token) = receipt.split_once(':').ok_or(BackendError::LeaseLost)?;
    let id = id.parse::<i64>().map_err(|_| BackendError::LeaseLost)?;
    Ok((id, token.to_string()))
}

/// Fixed-width UTC timestamps, so that text order is time order.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `now + delay` in milliseconds, saturating: any delay is accepted.
fn after_ms(now: i64, delay: Duration) -> i64 {
    now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// 128 random bits in hex: a new one per delivery, so an older receipt stops matching.
fn lease_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn storage(e: rusqlite::Error) -> BackendError {
    BackendError::Storage(e.to_string())
}

/// `execute` through the connection's prepared-statement cache: the same few statements run
/// for every step, and parsing their SQL each time was a visible share of a step's cost.
trait CachedExec {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl CachedExec for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

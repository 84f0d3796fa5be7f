//! The ports the engine needs from its runtime: a step queue with delayed visibility and a
//! workflow store with versioned writes, plus claims for at-most-once triggers (schedules,
//! events). The embedded SQLite backend implements all of them in one file with atomic commits;
//! the Azure Storage backend (issue 4) implements the same trait with queue + blob calls.
//!
//! Delivery is at least once: a message may come back after a crash at any point, which the
//! engine handles through idempotent steps and the `done_steps` record in the state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

use crate::workflow::message::StepMessage;
use crate::workflow::state::{WorkflowKind, WorkflowState, WorkflowStatus};

/// A message to send, visible after `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub message: StepMessage,
    pub delay: Duration,
}

/// A received message, leased until it is committed, released or its lease runs out.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: StepMessage,
    /// Opaque handle for `commit` / `release` / `poison`.
    pub receipt: String,
    /// How many times this message was received, this time included.
    pub dequeue_count: u32,
}

/// A stored state and the version it was read at (a row version or an ETag).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub version: String,
}

/// The outcome of one step, written as one unit where the backend can.
#[derive(Debug, Clone)]
pub struct Commit {
    pub state: WorkflowState,
    /// The version the state was read at; a different stored version is a [`BackendError::Conflict`].
    pub expected_version: String,
    pub next: Vec<Scheduled>,
    /// The message this step consumed (acknowledged with the commit).
    pub ack: Option<String>,
    /// Must be on stable storage before the call returns, even where the backend normally
    /// trades the last moments before a power loss for speed: set when a next step does
    /// something that must not happen twice (a backup POST after its write-ahead marker).
    pub durable: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<WorkflowStatus>,
    pub kind: Option<WorkflowKind>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Someone else changed the state first; reload and run the step again.
    #[error("the workflow changed concurrently")]
    Conflict,
    /// The receipt no longer holds (lease lost): the message will come back.
    #[error("the message lease was lost")]
    LeaseLost,
    #[error("message too large: {0} bytes")]
    TooLarge(usize),
    #[error("storage error: {0}")]
    Storage(String),
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Store a new workflow and its first messages. Returns `false` (and changes nothing) if a
    /// workflow with this id exists already: ids derived from a request key make starts idempotent.
    async fn start(&self, state: &WorkflowState, first: Vec<Scheduled>) -> Result<bool, BackendError>;
    /// Up to `max` messages whose delay has passed, leased for `lease`.
    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, BackendError>;
    async fn load(&self, workflow_id: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError>;
    /// Save the state, send the next messages and acknowledge the consumed one. Returns the
    /// state's new version, so the caller can keep it without reading it back.
    async fn commit(&self, commit: Commit) -> Result<String, BackendError>;
    /// Give a message back, visible again after `delay` (the step failed transiently).
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), BackendError>;
    /// Move a message aside with the reason (undecodable, or attempts exhausted).
    async fn poison(&self, receipt: &str, reason: &str) -> Result<(), BackendError>;
    async fn list(&self, filter: &ListFilter) -> Result<Vec<WorkflowState>, BackendError>;
    /// Claim a key once (schedule occurrences, event de-duplication). `true` when this call
    /// claimed it; claims older than `ttl` may be forgotten.
    async fn claim(&self, key: &str, ttl: Duration, now: DateTime<Utc>) -> Result<bool, BackendError>;
    /// How long until the next message becomes visible, when the backend can tell cheaply: lets
    /// a worker sleep exactly until then instead of polling (a `Retry-After` is then honoured to
    /// the millisecond). `None`: unknown or no message.
    async fn next_visible_in(&self) -> Result<Option<Duration>, BackendError> {
        Ok(None)
    }
    /// Whether `commit` and `start` store the state, send the messages and acknowledge as one
    /// unit. When they don't (a queue plus a blob store), the engine keeps the messages a step
    /// sent in the state's outbox until they are applied, and sends them again when the step
    /// is redelivered after a partial commit.
    fn atomic_commit(&self) -> bool {
        true
    }
}

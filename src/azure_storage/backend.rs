//! The engine's [`Backend`] on Azure Storage: step messages on a queue, workflow state in
//! blobs written with ETag conditions, claims as create-if-absent blobs.
//!
//! Nothing here is atomic across calls, so a commit is ordered to be safe at every cut: the
//! state is written first (If-Match: a lost race is a `Conflict` and nothing was sent), then the
//! next messages are sent, then the consumed message is deleted. A crash after the write
//! redelivers the message; the engine finds its step applied and sends again what the step
//! sent, from the outbox kept in the state ([`Backend::atomic_commit`] is `false`).
//!
//! Messages reach the engine two ways. Standalone (`serve`), this backend receives them itself
//! and owns their lease. Under Azure Functions the host receives them and deletes each after
//! the handler answers 2xx: those deliveries carry a receipt without a pop receipt, and
//! acknowledging one is a no-op, giving it back sends a copy with the delay.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use sqlvm_backup_shared::ports::{Backend, BackendError, Commit, Delivery, ListFilter, Scheduled, Versioned};
use sqlvm_backup_shared::workflow::message::StepMessage;
use sqlvm_backup_shared::workflow::state::{WorkflowKind, WorkflowState, WorkflowStatus};

use super::blob::BlobStore;
use super::error::StorageError;
use super::queue::{MAX_VISIBILITY, ReceivedStep, StepQueue};
use super::wire::{self, Wire};

const WORKFLOWS: &str = "workflows/";
const CLAIMS: &str = "claims/";
const DEFAULT_LIST_LIMIT: usize = 100;

/// The opaque receipt the engine hands back: enough to delete, hide or copy the message.
#[derive(Serialize, Deserialize)]
struct Receipt {
    /// Message id and pop receipt when this process holds the lease; `None` when the Functions
    /// host does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<(String, String)>,
    /// The message text as received, for a copy (release, poison).
    text: String,
}

impl Receipt {
    fn encode(&self) -> String {
        serde_json::to_string(self).expect("a receipt always serialises")
    }
    fn decode(s: &str) -> Result<Receipt, BackendError> {
        serde_json::from_str(s).map_err(|_| BackendError::Storage("not a receipt of the Azure Storage backend".into()))
    }
}

/// What a message handed over by the Functions host turned out to be.
#[derive(Debug)]
pub enum HostMessage {
    /// Run it with `Engine::run_delivery`.
    Step(Delivery),
    /// Its wait is not over; it was sent on and this copy can go.
    Held,
    /// Not a step message: moved to the poison queue with the reason.
    Poisoned(String),
}

pub struct AzureStorageBackend {
    queue: StepQueue,
    poison: StepQueue,
    blobs: BlobStore,
}

fn storage(e: StorageError) -> BackendError {
    match e {
        StorageError::Conflict => BackendError::Conflict,
        StorageError::TooLarge(n) => BackendError::TooLarge(n),
        other => BackendError::Storage(other.to_string()),
    }
}

/// Workflow ids come from our own submit (`protect-…`, `backup-…`) but also from URLs: only
/// those characters may become a blob name, so an id can never reach another blob.
fn workflow_blob(id: &str) -> Option<String> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| format!("{WORKFLOWS}{id}.json"))
}

/// What is written for a workflow: its blob name, its JSON, and the metadata `list` filters on
/// without downloading it (status, kind, creation time for newest-first order).
struct StateBlob {
    name: String,
    body: Vec<u8>,
    metadata: [(&'static str, String); 3],
}

impl StateBlob {
    fn of(state: &WorkflowState) -> Result<StateBlob, BackendError> {
        let name = workflow_blob(&state.id).ok_or_else(|| BackendError::Storage(format!("invalid workflow id {}", state.id)))?;
        Ok(StateBlob {
            name,
            body: serde_json::to_vec(state).expect("a workflow state always serialises"),
            metadata: [
                ("status", state.status.as_str().to_string()),
                ("kind", state.kind.as_str().to_string()),
                ("created", state.created_at.timestamp_millis().to_string()),
            ],
        })
    }

    fn metadata(&self) -> [(&str, &str); 3] {
        self.metadata.each_ref().map(|(k, v)| (*k, v.as_str()))
    }
}

impl AzureStorageBackend {
    /// `poison` is the queue the Functions host uses for the step queue: `<queue>-poison`.
    pub fn new(queue: StepQueue, poison: StepQueue, blobs: BlobStore) -> AzureStorageBackend {
        AzureStorageBackend { queue, poison, blobs }
    }

    /// Create the queues and the container if they are missing (standalone and tests; in Azure
    /// the infrastructure creates them).
    pub async fn create_resources(&self) -> Result<(), StorageError> {
        self.queue.create_if_missing().await?;
        self.poison.create_if_missing().await?;
        self.blobs.create_if_missing().await
    }

    pub fn queue(&self) -> &StepQueue {
        &self.queue
    }

    pub fn poison_queue(&self) -> &StepQueue {
        &self.poison
    }

    async fn send(&self, message: &StepMessage, delay: Duration) -> Result<(), BackendError> {
        let (text, hide) = wire::encode(message, delay, Utc::now());
        self.queue.send(&text, hide).await.map_err(storage)
    }

    /// A message the Functions host delivered (its text already decoded from the trigger).
    pub async fn host_message(&self, text: &str, dequeue_count: u32) -> Result<HostMessage, BackendError> {
        let receipt = Receipt { lease: None, text: text.to_string() }.encode();
        self.classify(text, receipt, dequeue_count).await
    }

    async fn classify(&self, text: &str, receipt: String, dequeue_count: u32) -> Result<HostMessage, BackendError> {
        match wire::decode(text, Utc::now()) {
            Ok(Wire::Step(message)) => Ok(HostMessage::Step(Delivery { message, receipt, dequeue_count })),
            Ok(Wire::Held { text, remaining }) => {
                self.queue.send(&text, remaining).await.map_err(storage)?;
                self.acknowledge(&receipt).await?;
                Ok(HostMessage::Held)
            }
            Err(e) => {
                let reason = e.to_string();
                self.poison(&receipt, &reason).await?;
                Ok(HostMessage::Poisoned(reason))
            }
        }
    }

    async fn acknowledge(&self, receipt: &str) -> Result<(), BackendError> {
        let Receipt { lease, .. } = Receipt::decode(receipt)?;
        if let Some((id, pop)) = lease {
            match self.queue.delete(&id, &pop).await {
                // Gone already: its lease ran out and someone else took it; that copy will be
                // recognised as a duplicate.
                Ok(()) | Err(StorageError::NotFound) => {}
                Err(e) => return Err(storage(e)),
            }
        }
        Ok(())
    }

    /// Move every poisoned message back to the step queue (once their cause is fixed).
    /// Returns how many were moved.
    pub async fn requeue_poison(&self) -> Result<usize, StorageError> {
        let mut moved = 0;
        loop {
            let batch = self.poison.receive(32, Duration::from_secs(60)).await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for m in batch {
                self.queue.send(&m.text, Duration::ZERO).await?;
                match self.poison.delete(&m.message_id, &m.pop_receipt).await {
                    Ok(()) | Err(StorageError::NotFound) => moved += 1,
                    Err(e) => return Err(e),
                }
            }
        }
    }

    async fn read(&self, name: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError> {
        let Some((body, etag)) = self.blobs.get(name).await.map_err(storage)? else { return Ok(None) };
        let value = serde_json::from_slice(&body).map_err(|e| BackendError::Storage(format!("{name} is not a workflow state: {e}")))?;
        Ok(Some(Versioned { value, version: etag }))
    }
}

#[async_trait]
impl Backend for AzureStorageBackend {
    async fn start(&self, state: &WorkflowState, first: Vec<Scheduled>) -> Result<bool, BackendError> {
        let blob = StateBlob::of(state)?;
        let name = &blob.name;
        if self.blobs.create(name, &blob.body, &blob.metadata()).await.map_err(storage)?.is_none() {
            return Ok(false);
        }
        for s in &first {
            if let Err(e) = self.send(&s.message, s.delay).await {
                // The caller gets an error and may submit again: leave nothing behind that no
                // message would ever move (a start repeated with the same key finds the
                // workflow and sends its first message from the outbox instead).
                if let Err(cleanup) = self.blobs.delete(name).await {
                    tracing::warn!(workflow_id = %state.id, error = %cleanup, "a workflow whose first message could not be sent was not removed");
                }
                return Err(e);
            }
        }
        Ok(true)
    }

    async fn receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, BackendError> {
        let got = self.queue.receive(max.clamp(1, 32) as u32, lease).await.map_err(storage)?;
        let mut out = Vec::with_capacity(got.len());
        for ReceivedStep { message_id, pop_receipt, text, dequeue_count, undecodable } in got {
            let receipt = Receipt { lease: Some((message_id, pop_receipt)), text: text.clone() }.encode();
            if undecodable {
                self.poison(&receipt, "the message is not base64-encoded UTF-8").await?;
                continue;
            }
            if let HostMessage::Step(d) = self.classify(&text, receipt, dequeue_count).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn load(&self, workflow_id: &str) -> Result<Option<Versioned<WorkflowState>>, BackendError> {
        match workflow_blob(workflow_id) {
            Some(name) => self.read(&name).await,
            None => Ok(None),
        }
    }

    async fn commit(&self, c: Commit) -> Result<String, BackendError> {
        let blob = StateBlob::of(&c.state)?;
        // Blob writes are durable when acknowledged, so `c.durable` needs nothing more here.
        let version = self.blobs.replace(&blob.name, &blob.body, &c.expected_version, &blob.metadata()).await.map_err(storage)?;
        for s in &c.next {
            self.send(&s.message, s.delay).await?;
        }
        if let Some(r) = &c.ack {
            self.acknowledge(r).await?;
        }
        Ok(version)
    }

    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), BackendError> {
        let r = Receipt::decode(receipt)?;
        match r.lease {
            Some((id, pop)) => match self.queue.set_visibility(&id, &pop, delay.min(MAX_VISIBILITY)).await {
                Ok(_) => Ok(()),
                Err(StorageError::NotFound) => Err(BackendError::LeaseLost),
                Err(e) => Err(storage(e)),
            },
            // The host deletes its copy once the handler answers 2xx: this copy carries the delay.
            None => self.queue.send(&r.text, delay.min(MAX_VISIBILITY)).await.map_err(storage),
        }
    }

    async fn poison(&self, receipt: &str, reason: &str) -> Result<(), BackendError> {
        let r = Receipt::decode(receipt)?;
        tracing::warn!(queue = self.poison.name(), reason, "step message moved to the poison queue");
        // The original text, so `requeue-poison` can put it back as it was.
        self.poison.send(&r.text, Duration::ZERO).await.map_err(storage)?;
        self.acknowledge(receipt).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<WorkflowState>, BackendError> {
        let limit = if filter.limit == 0 { DEFAULT_LIST_LIMIT } else { filter.limit };
        let status = filter.status.map(WorkflowStatus::as_str);
        let kind = filter.kind.map(WorkflowKind::as_str);
        let mut found: Vec<(i64, String)> = self
            .blobs
            .list(WORKFLOWS)
            .await
            .map_err(storage)?
            .into_iter()
            .filter(|(_, md)| status.is_none_or(|s| md.get("status").is_some_and(|v| v == s)))
            .filter(|(_, md)| kind.is_none_or(|k| md.get("kind").is_some_and(|v| v == k)))
            .map(|(name, md)| (md.get("created").and_then(|c| c.parse().ok()).unwrap_or(0), name))
            .collect();
        // Newest first, like the embedded store.
        found.sort_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        for (_, name) in found.into_iter().take(limit) {
            if let Some(v) = self.read(&name).await? {
                out.push(v.value);
            }
        }
        Ok(out)
    }

    /// A create-if-absent blob per key (named by its SHA-256: keys hold resource ids). Claims
    /// are not expired here: the storage account's lifecycle rule on `claims/` deletes old ones
    /// (`infra/main.bicep`, `claimRetentionDays`).
    async fn claim(&self, key: &str, _ttl: Duration, now: DateTime<Utc>) -> Result<bool, BackendError> {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({ "key": key, "claimedAt": now }).to_string();
        let created = self.blobs.create(&format!("{CLAIMS}{hex}"), body.as_bytes(), &[]).await.map_err(storage)?;
        Ok(created.is_some())
    }

    fn atomic_commit(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_become_blob_names() {
        assert_eq!(workflow_blob("protect-k0123abcd").as_deref(), Some("workflows/protect-k0123abcd.json"));
        for bad in ["", "../x", "a/b", "a?b", "a%2Fb", &"x".repeat(129)] {
            assert_eq!(workflow_blob(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_receipt_round_trips_and_a_foreign_one_is_refused() {
        let r = Receipt { lease: Some(("id".into(), "pop".into())), text: "{}".into() }.encode();
        assert_eq!(Receipt::decode(&r).unwrap().lease, Some(("id".into(), "pop".into())));
        assert!(Receipt::decode("42").is_err());
    }
}

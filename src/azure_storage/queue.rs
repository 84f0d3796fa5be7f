//! The step queue: one Azure Storage queue carrying the workflow's step messages.
//!
//! A thin layer over `azure_storage_queue::QueueClient` that fixes the choices every caller must
//! make the same way:
//!
//! - **Base64 text.** The Azure Functions queue trigger decodes message text as base64 by default
//!   (`extensions.queues.messageEncoding`), and moves a message that does not decode straight to
//!   the poison queue without running the function. The SDK sends text verbatim, so we encode.
//! - **No expiry** (`messagettl=-1`). A workflow can wait days between steps (backup jobs, long
//!   `Retry-After`s); the default 7-day TTL would silently drop a message that is merely waiting.
//! - **Delays of at most 7 days.** Put Message and Update Message accept a visibility timeout of
//!   0 to 604 800 seconds; the caller splits longer waits into several hops.
//! - **Size checked before sending.** A message may be 64 KiB as sent (after base64); sending a
//!   larger one would fail on every retry, so it is refused up front with `TooLarge`.

use std::sync::Arc;
use std::time::Duration;

use azure_core::http::headers::HeaderName;
use azure_storage_queue::QueueClient;
use azure_storage_queue::QueueClientOptions;
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders, QueueClientPeekMessagesOptions, QueueClientReceiveMessagesOptions,
    QueueClientSendMessageOptions, QueueMessage,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::auth::{StorageAuth, parse_resource_url};
use super::error::{StorageError, http_failure, request_error};
use super::sas::STORAGE_API_VERSION;

/// The largest message text the service accepts, in bytes as sent (after base64).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The longest visibility timeout Put, Get and Update Message accept: 7 days.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Get Messages and Peek Messages return at most this many messages per call.
pub const MAX_BATCH: u32 = 32;

const POP_RECEIPT: HeaderName = HeaderName::from_static("x-ms-popreceipt");

/// A client for one queue. Cheap to clone: clones share the HTTP pipeline.
#[derive(Clone)]
pub struct StepQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: QueueClient,
    name: String,
}

impl std::fmt::Debug for StepQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepQueue").field("url", &self.inner.client.url().as_str()).finish()
    }
}

/// One received message: what the handler needs to run the step and then delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedStep {
    pub message_id: String,
    /// Proof of this delivery; needed to delete or update the message. Any later receive or
    /// update of the message invalidates it.
    pub pop_receipt: String,
    /// The decoded text, or the raw text when `undecodable`.
    pub text: String,
    /// How many times the message has been received, this time included.
    pub dequeue_count: u32,
    /// The stored text was not base64 of UTF-8 (written by something else). It is handed over
    /// as is, never dropped, so the caller can poison it and a human can see it.
    pub undecodable: bool,
}

impl StepQueue {
    /// A client for the queue at `queue_url`, for example
    /// `https://acct.queue.core.windows.net/sqlvm-steps` or, on Azurite,
    /// `http://127.0.0.1:10001/devstoreaccount1/sqlvm-steps`. Makes no request.
    pub fn new(queue_url: &str, auth: &StorageAuth) -> Result<Self, StorageError> {
        let parsed = parse_resource_url(queue_url, "queue")?;
        let (credential, client_options) = auth.client_setup(&parsed.url, "queue")?;
        let options = QueueClientOptions { client_options, version: STORAGE_API_VERSION.to_string() };
        let client = QueueClient::new(parsed.url, credential, Some(options)).map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(StepQueue { inner: Arc::new(Inner { client, name: parsed.name }) })
    }

    /// The queue's name (the last segment of its URL).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Creates the queue if it does not exist (idempotent).
    pub async fn create_if_missing(&self) -> Result<(), StorageError> {
        match self.inner.client.create(None).await {
            Ok(_) => Ok(()),
            // 409 QueueAlreadyExists: it exists with other metadata; for us that is "exists".
            Err(e) if matches!(http_failure(&e), Some((409, _))) => Ok(()),
            Err(e) => Err(request_error("create queue", &e)),
        }
    }

    /// Enqueues `text`, base64-encoded, invisible for `visible_after` (rounded up to whole
    /// seconds), never expiring.
    ///
    /// Errors `TooLarge` when the encoded text exceeds 64 KiB and `Config` when `visible_after`
    /// exceeds 7 days, both before anything is sent.
    pub async fn send(&self, text: &str, visible_after: Duration) -> Result<(), StorageError> {
        let visibility = visibility_seconds(visible_after, "the message delay")?;
        let encoded = BASE64.encode(text.as_bytes());
        if encoded.len() > MAX_MESSAGE_BYTES {
            return Err(StorageError::TooLarge(encoded.len()));
        }
        let body = QueueMessage { message_text: Some(encoded) }.try_into().map_err(|e| request_error("encode message", &e))?;
        let options =
            QueueClientSendMessageOptions { visibility_timeout: Some(visibility), message_time_to_live: Some(-1), ..Default::default() };
        self.inner.client.send_message(body, Some(options)).await.map_err(|e| request_error("send message", &e))?;
        Ok(())
    }

    /// Receives up to `max` messages (clamped to 1..=32), hiding them for `visibility` (rounded
    /// up, at least 1 s, at most 7 days). Each receive increments the dequeue count and issues a
    /// new pop receipt.
    pub async fn receive(&self, max: u32, visibility: Duration) -> Result<Vec<ReceivedStep>, StorageError> {
        let visibility = visibility_seconds(visibility, "the receive visibility")?.max(1);
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(max.clamp(1, MAX_BATCH) as i32),
            visibility_timeout: Some(visibility),
            ..Default::default()
        };
        let rsp = self.inner.client.receive_messages(Some(options)).await.map_err(|e| request_error("receive messages", &e))?;
        let messages = rsp.into_model().map_err(|e| request_error("read received messages", &e))?;
        let mut out = Vec::new();
        for m in messages.items.unwrap_or_default() {
            let (Some(message_id), Some(pop_receipt)) = (m.message_id, m.pop_receipt) else {
                return Err(StorageError::Request("receive messages: a message without id or pop receipt in the answer".into()));
            };
            let (text, undecodable) = decode(m.message_text.as_deref().unwrap_or(""));
            let dequeue_count = m.dequeue_count.map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
            out.push(ReceivedStep { message_id, pop_receipt, text, dequeue_count, undecodable });
        }
        Ok(out)
    }

    /// Deletes a received message. `NotFound` when it is gone or the pop receipt is stale (the
    /// message was received or updated again since): this delivery no longer owns it.
    pub async fn delete(&self, message_id: &str, pop_receipt: &str) -> Result<(), StorageError> {
        check_message_id(message_id)?;
        match self.inner.client.delete_message(message_id, pop_receipt, None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(message_error("delete message", &e)),
        }
    }

    /// Makes a received message visible again after `visible_after` (rounded up; 0 = at once, at
    /// most 7 days), keeping its text. Returns the new pop receipt, which replaces the old one.
    /// `NotFound` as for [`delete`](Self::delete).
    pub async fn set_visibility(&self, message_id: &str, pop_receipt: &str, visible_after: Duration) -> Result<String, StorageError> {
        check_message_id(message_id)?;
        let visibility = visibility_seconds(visible_after, "the visibility")?;
        let rsp = self
            .inner
            .client
            .update_message(message_id, pop_receipt, visibility, None)
            .await
            .map_err(|e| message_error("update message", &e))?;
        // Update Message answers 204 with the new receipt only in this header; the SDK has no
        // typed accessor for it.
        match rsp.headers().get_optional_string(&POP_RECEIPT) {
            Some(r) if !r.is_empty() => Ok(r),
            _ => Err(StorageError::Request("update message: the answer has no x-ms-popreceipt header".into())),
        }
    }

    /// The approximate number of messages, visible or not (the service may overcount).
    pub async fn approximate_count(&self) -> Result<u64, StorageError> {
        let rsp = self.inner.client.get_properties(None).await.map_err(|e| request_error("get queue properties", &e))?;
        let count = rsp.approximate_messages_count().map_err(|e| request_error("read x-ms-approximate-messages-count", &e))?;
        Ok(count.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// Up to `max` (clamped to 1..=32) visible messages' decoded texts, without changing their
    /// visibility or dequeue count. Undecodable texts are returned raw.
    pub async fn peek(&self, max: u32) -> Result<Vec<String>, StorageError> {
        let options = QueueClientPeekMessagesOptions { number_of_messages: Some(max.clamp(1, MAX_BATCH) as i32), ..Default::default() };
        let rsp = self.inner.client.peek_messages(Some(options)).await.map_err(|e| request_error("peek messages", &e))?;
        let messages = rsp.into_model().map_err(|e| request_error("read peeked messages", &e))?;
        Ok(messages.items.unwrap_or_default().into_iter().map(|m| decode(m.message_text.as_deref().unwrap_or("")).0).collect())
    }
}

/// `d` in whole seconds, rounded up, for a visibility timeout; `Config` beyond 7 days.
fn visibility_seconds(d: Duration, what: &str) -> Result<i32, StorageError> {
    if d > MAX_VISIBILITY {
        return Err(StorageError::Config(format!(
            "{what} of {} s exceeds the queue's 7-day maximum (604800 s); split the wait",
            d.as_secs_f64()
        )));
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    // At most 604 800 here, so it fits.
    Ok(secs as i32)
}

/// Message ids go into the URL path unescaped by the SDK; the service's are GUIDs. Anything
/// else cannot name a message, so it is `NotFound` rather than a malformed request.
fn check_message_id(id: &str) -> Result<(), StorageError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(StorageError::NotFound);
    }
    Ok(())
}

/// Delete and Update Message: 404 `MessageNotFound` (gone) and 400 `PopReceiptMismatch` (stale
/// receipt) both mean the caller no longer owns the message.
fn message_error(operation: &str, e: &azure_core::Error) -> StorageError {
    match http_failure(e) {
        Some((404, _)) | Some((400, Some("PopReceiptMismatch"))) => StorageError::NotFound,
        _ => request_error(operation, e),
    }
}

/// Base64 → UTF-8, or the raw text flagged as undecodable.
fn decode(raw: &str) -> (String, bool) {
    match BASE64.decode(raw.trim()).ok().and_then(|b| String::from_utf8(b).ok()) {
        Some(text) => (text, false),
        None => (raw.to_string(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_and_stops_at_seven_days() {
        assert_eq!(visibility_seconds(Duration::ZERO, "d").expect("ok"), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(1), "d").expect("ok"), 1);
        assert_eq!(visibility_seconds(Duration::from_millis(2000), "d").expect("ok"), 2);
        assert_eq!(visibility_seconds(Duration::from_millis(2001), "d").expect("ok"), 3);
        assert_eq!(visibility_seconds(MAX_VISIBILITY, "d").expect("ok"), 604_800);
        assert!(matches!(visibility_seconds(MAX_VISIBILITY + Duration::from_nanos(1), "d"), Err(StorageError::Config(_))));
    }

    #[test]
    fn decoding_keeps_undecodable_text() {
        assert_eq!(decode("aGVsbG8="), ("hello".to_string(), false));
        assert_eq!(decode("not base64!"), ("not base64!".to_string(), true));
        // Valid base64 of bytes that are not UTF-8.
        assert_eq!(decode("//79"), ("//79".to_string(), true));
    }

    #[test]
    fn message_ids_that_cannot_exist_are_not_found() {
        assert!(check_message_id("0d1c4f6e-5f6a-4c53-9f0e-3b1d2c4e5f60").is_ok());
        for bad in ["", "a/b", "x?y", "id with space"] {
            assert!(matches!(check_message_id(bad), Err(StorageError::NotFound)), "{bad}");
        }
    }
}

//! Queue trigger: one step message per invocation.
//!
//! Wire shapes (azure-functions.md §1.5 "Queue trigger", §2.2, §9 items 1–2):
//! - default: `Data.<binding>` is the message text JSON-encoded once more by the host (a JSON string holding a
//!   JSON string); the docs show it encoded once — both decode here;
//! - `"dataType": "binary"`: one base64 string of the message bytes;
//! - an object or array: already decoded (kept as its JSON text).
//!
//! `Metadata` carries `DequeueCount` (often `"1"`), `Id` and `PopReceipt` (often with embedded quotes),
//! `InsertionTime`, `ExpirationTime`, `NextVisibleTime`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::envelope::{EnvelopeError, InvocationRequest, json_type, metadata_str, metadata_u32};

/// Largest message Azure Storage accepts, measured **after** base64 (§2.6, §9 item 11): 64 KiB.
pub const QUEUE_MESSAGE_LIMIT: usize = 64 * 1024;

/// One queue-triggered invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInvocation {
    /// The raw message as it was enqueued: for us, the step message JSON.
    pub message_text: String,
    /// Delivery attempt, starting at 1 (`DequeueCount`; 1 when the host omits it). The host moves the message
    /// to `<queue>-poison` once a failed attempt reaches `maxDequeueCount`.
    pub dequeue_count: u32,
    pub id: Option<String>,
    pub pop_receipt: Option<String>,
    pub insertion_time: Option<String>,
}

impl QueueInvocation {
    /// Decodes the trigger value named `binding` (e.g. `"step"`) and the queue metadata.
    ///
    /// A string value loses the host's encoding layers (at most two); if what remains is JSON it is the message,
    /// otherwise it is read as base64 (the `dataType: binary` form) when it decodes to UTF-8, and kept as plain
    /// text if not. Step messages are JSON objects, so plain text that happens to be valid base64 is not a
    /// concern for this project.
    pub fn from_request(request: &InvocationRequest, binding: &str) -> Result<Self, EnvelopeError> {
        let message_text = match request.binding(binding)? {
            Value::String(text) => message_from_string(text),
            value @ (Value::Object(_) | Value::Array(_)) => value.to_string(),
            other => {
                return Err(EnvelopeError::UnexpectedShape {
                    binding: binding.to_owned(),
                    expected: "a string, an object or an array",
                    found: json_type(other),
                });
            }
        };
        let md = &request.metadata;
        Ok(Self {
            message_text,
            dequeue_count: metadata_u32(md, "DequeueCount")?.unwrap_or(1),
            id: metadata_str(md, "Id"),
            pop_receipt: metadata_str(md, "PopReceipt"),
            insertion_time: metadata_str(md, "InsertionTime"),
        })
    }
}

fn message_from_string(text: &str) -> String {
    // Peel the layers the host adds to a string value, keeping the innermost text verbatim.
    let mut current = text.to_owned();
    for _ in 0..2 {
        match serde_json::from_str::<Value>(&current) {
            Ok(Value::String(inner)) => current = inner,
            Ok(_) => return current,
            Err(_) => break,
        }
    }
    if serde_json::from_str::<Value>(&current).is_ok() {
        return current;
    }
    match STANDARD.decode(current.trim()).ok().and_then(|bytes| String::from_utf8(bytes).ok()) {
        Some(decoded) => decoded,
        None => current,
    }
}

/// The `MessageText` to put on the queue for a message: base64 of its UTF-8 bytes, which is what the trigger
/// expects with the default `messageEncoding: base64`. A message that is not valid base64 goes straight to
/// poison without running the function (§2.6, §9 item 2); the Rust SDK does not encode for you.
pub fn encode_for_queue(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

/// Whether an encoded message fits the 64 KiB limit of Azure Storage queues (about 48 KiB of raw JSON).
pub fn fits_queue_limit(encoded: &str) -> bool {
    encoded.len() <= QUEUE_MESSAGE_LIMIT
}

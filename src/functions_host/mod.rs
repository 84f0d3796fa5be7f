//! Payload types of the Azure Functions custom-handler protocol, and their decoding.
//!
//! The Functions host turns every trigger firing into `POST http://127.0.0.1:{port}/{FunctionName}` with a
//! JSON envelope `{"Data": {...}, "Metadata": {...}}` and expects `{"Outputs", "Logs", "ReturnValue"}` back
//! (`../shared/docs/azure-functions.md` §1.4–1.6). This module only knows those shapes: it turns an envelope
//! into a typed invocation per trigger kind and builds the response envelope. It does no I/O and knows
//! nothing of the engine, so it can become its own crate (as `aws_lambda_events` did for Lambda).
//!
//! The shapes differ from the documentation in ways the decoders absorb (§1.9, §9): a queue message arrives
//! as a JSON string holding a JSON string, `DequeueCount` as `"1"`, `Id`/`PopReceipt` with embedded quotes,
//! `ScheduleStatus` may be `null`, an Event Grid event may be an object or an encoded string, request
//! headers in `Data.req` are arrays.

pub mod envelope;
pub mod event_grid;
pub mod http;
pub mod queue;
pub mod response;
pub mod timer;

pub use envelope::{EnvelopeError, InvocationRequest, decode_trigger_value, metadata_str, metadata_u32};
pub use event_grid::EventGridInvocation;
pub use http::HttpInvocation;
pub use queue::{QUEUE_MESSAGE_LIMIT, QueueInvocation, encode_for_queue, fits_queue_limit};
pub use response::{InvocationResponse, http_response};
pub use timer::TimerInvocation;

//! ARM client (issue 3 §1): one call at a time, done right, for the workflows that drive the
//! Backup API (`../shared/docs/azure-backup-api.md` §1, §4, §6, §11–§13.1).
//!
//! - [`client`]: [`ArmClient`] — endpoint check, cached bearer token, request ids, retries with
//!   `Retry-After`, pacing on ARM's remaining-quota headers, `nextLink` paging, and the rule that
//!   tokens only go to the configured endpoint.
//! - [`error`]: [`ArmError`], coarse kinds each saying whether a retry can help.
//! - [`models`]: lenient typed views of the bodies the workflows read.
//!
//! What this module does not do: wait for long-running operations (callers poll the tracking URL
//! from a queued message) or build Backup request bodies (the workflow steps do).

pub mod client;
pub mod error;
pub mod models;

pub use client::{ARM_SCOPE, ArmAnswer, ArmClient, ArmClientOptions, ArmRequest, DEFAULT_API_VERSION, PacingOptions, RetryOptions};
pub use error::ArmError;

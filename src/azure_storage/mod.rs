//! Azure Storage clients for the function-app deployment: the step queue and the blob container
//! that holds workflow state.
//!
//! These are thin, typed layers over the Azure SDK for Rust (`azure_storage_queue`,
//! `azure_storage_blob` 1.x) that settle, once, the details every caller would otherwise get
//! wrong: message text is base64 (what the Functions queue trigger expects), messages never
//! expire, delays are whole seconds up to 7 days, writes to blobs are conditional on ETags, and
//! failures come back as one [`StorageError`] whose variants are the outcomes a caller acts on.
//!
//! Authentication ([`StorageAuth`]) is an Entra ID token in production or, for Azurite and
//! key-only accounts, the account key, from which every request gets an account SAS signed in
//! process ([`sas`]); the SDK itself has no shared-key support.
//!
//! Nothing here knows workflows: the `Backend` built on top maps steps and state onto these
//! clients.

pub mod auth;
pub mod backend;
pub mod blob;
pub mod config;
pub mod error;
pub mod queue;
pub mod sas;
pub mod wire;

pub use auth::StorageAuth;
pub use blob::BlobStore;
pub use error::StorageError;
pub use queue::{ReceivedStep, StepQueue};
pub use sas::{STORAGE_API_VERSION, account_sas};

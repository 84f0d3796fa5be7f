//! The worker's logic, free of any runtime: the ARM client, credentials, the workflow steps and
//! the ports its runtimes implement.
//!
//! # Layout
//! - [`arm`]: a typed client for the Backup API operations the workflows use (issue 3 §1).
//! - [`credentials`]: token credentials through azure_identity, selected by configuration.
//! - [`workflow`]: step messages, workflow state, failures, and the steps themselves (pure
//!   functions from message + state + ARM answer to a transition).
//! - [`engine`]: runs one delivered message through its step against a [`ports::Backend`].
//! - [`ports`]: what a runtime must provide (queue with delays, versioned store, claims).
//! - [`resource_id`], [`secret`]: validated ARM ids and unprintable secrets.
//!
//! **Invariant:** nothing here knows Azure Functions, SQLite or Azure Storage.

pub mod arm;
pub mod credentials;
pub mod engine;
pub mod ports;
pub mod resource_id;
pub mod secret;
pub mod workflow;

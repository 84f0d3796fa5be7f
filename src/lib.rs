//! Library part of `sqlvm-backup`: the runtime adapters the binary wires together.

pub mod api;
pub mod azure_storage;
pub mod config;
pub mod custom_handler;
pub mod embedded;
pub mod events;
pub mod functions_host;
pub mod scheduler;
pub mod serve;
pub mod worker;

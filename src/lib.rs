//! Library part of `sqlvm-backup`: the runtime adapters the binary wires together.

pub mod api;
pub mod embedded;
pub mod scheduler;
pub mod events;
pub mod config;
pub mod worker;
pub mod serve;

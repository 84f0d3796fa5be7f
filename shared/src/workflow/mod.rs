//! Workflows as data and pure steps (see `docs/ARCHITECTURE.md`, "the flow of one step").

pub mod failure;
pub mod message;
pub mod select;
pub mod state;
pub mod steps;

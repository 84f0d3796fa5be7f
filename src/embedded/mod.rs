//! Embedded runtime adapters: everything needed to run the workflow engine on one machine
//! without Azure Storage.

pub mod sqlite;

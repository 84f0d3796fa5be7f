//! A local simulator of the Azure Backup (Recovery Services) REST API for SQL Server in Azure
//! VMs, faithful enough that sqlvm-backup's tests, demos and benchmarks run against it instead
//! of Azure, and that users can try their own automation offline.
//!
//! # Layout
//! - [`scenario`]: the world a user describes (JSON or TOML); [`fleet`] generates large ones.
//! - [`settings`]: timings, paging, throttling and fault knobs.
//! - [`world`]: the service's state and rules (operations, jobs, discovery), clock-driven and
//!   synchronous; knows nothing of HTTP.
//! - [`arm`]: ARM routing, query parsing (`api-version`, `$filter`, paging) and the handlers that
//!   turn a request into an answer over the world.
//! - [`identity`]: the managed-identity and Entra token endpoints, and bearer checks.
//! - [`throttle`], [`faults`]: ARM's per-subscription token bucket and injected failures.
//! - [`recorder`]: counters and the ordered request log the control API exposes.
//! - [`control`]: the `/_sim` control API for tests and demos.
//! - [`server`]: the HTTP(S) listener tying it together; [`tls`] makes its certificate.
//! - [`schema`]: validates bodies against the official swagger (used by tests).
//!
//! The simulator depends on nothing in `sqlvm-backup-shared`, so it cannot inherit the client's
//! mistakes: both are written from the swagger and the research notes independently.

pub mod arm;
pub mod clock;
pub mod control;
pub mod error;
pub mod faults;
pub mod fleet;
pub mod identity;
pub mod names;
pub mod recorder;
pub mod scenario;
pub mod schema;
pub mod server;
pub mod settings;
pub mod throttle;
pub mod tls;
pub mod world;

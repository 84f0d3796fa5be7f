//! Knobs that shape how the simulated service behaves in time and under stress.
//!
//! They come from the scenario's `settings` object and can be changed at run time through the
//! control API (`PATCH /_sim/settings`), so a demo can run at service speed while a test runs at
//! full speed. Every default is written beside its field.

use serde::{Deserialize, Serialize};

/// All behaviour settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// `Retry-After` sent with every 202 (seconds). The real service says 60.
    pub retry_after_seconds: u64,
    /// How long each kind of work takes.
    pub timings: Timings,
    /// Items per page of every list (the service documents up to 200).
    pub page_size: usize,
    /// ARM's per-subscription request budget.
    pub throttling: Throttling,
    /// Injected faults.
    pub faults: Faults,
    /// Requests whose body is larger than this get 413 (bytes).
    pub max_body_bytes: usize,
    /// How many requests the ordered request log keeps (oldest dropped first).
    pub request_log_capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            retry_after_seconds: 60,
            timings: Timings::default(),
            page_size: 200,
            throttling: Throttling::default(),
            faults: Faults::default(),
            max_body_bytes: 4 * 1024 * 1024,
            request_log_capacity: 100_000,
        }
    }
}

/// Durations in milliseconds. Operations answer "in progress" until their time has passed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Timings {
    /// refreshContainers (default 2000).
    pub refresh_ms: u64,
    /// Register / re-register a container (default 3000).
    pub register_ms: u64,
    /// Unregister a container (default 2000).
    pub unregister_ms: u64,
    /// Inquire (default 2000).
    pub inquire_ms: u64,
    /// Enable protection, change policy, stop protection (default 2000).
    pub configure_ms: u64,
    /// Delete a protected item with its data (default 2000).
    pub delete_ms: u64,
    /// From backup trigger to the operation reporting its job id (default 1000).
    pub backup_operation_ms: u64,
    /// Full and CopyOnlyFull backup jobs (default 5000).
    pub full_backup_job_ms: u64,
    /// Differential backup jobs (default 3000).
    pub differential_backup_job_ms: u64,
    /// Log backup jobs (default 2000).
    pub log_backup_job_ms: u64,
    /// Job cancellation (default 1000).
    pub cancel_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            refresh_ms: 2000,
            register_ms: 3000,
            unregister_ms: 2000,
            inquire_ms: 2000,
            configure_ms: 2000,
            delete_ms: 2000,
            backup_operation_ms: 1000,
            full_backup_job_ms: 5000,
            differential_backup_job_ms: 3000,
            log_backup_job_ms: 2000,
            cancel_ms: 1000,
        }
    }
}

impl Timings {
    /// Every duration zero: operations finish as soon as they are polled once.
    pub fn instant() -> Self {
        Timings {
            refresh_ms: 0,
            register_ms: 0,
            unregister_ms: 0,
            inquire_ms: 0,
            configure_ms: 0,
            delete_ms: 0,
            backup_operation_ms: 0,
            full_backup_job_ms: 0,
            differential_backup_job_ms: 0,
            log_backup_job_ms: 0,
            cancel_ms: 0,
        }
    }
}

/// ARM's regional token bucket, per subscription (azure-backup-api.md §12).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Throttling {
    pub enabled: bool,
    /// Bucket size and refill per second for GETs (250, 25).
    pub reads_capacity: f64,
    pub reads_per_second: f64,
    /// PUT / POST / PATCH (200, 10).
    pub writes_capacity: f64,
    pub writes_per_second: f64,
    /// DELETE (200, 10).
    pub deletes_capacity: f64,
    pub deletes_per_second: f64,
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling {
            enabled: true,
            reads_capacity: 250.0,
            reads_per_second: 25.0,
            writes_capacity: 200.0,
            writes_per_second: 10.0,
            deletes_capacity: 200.0,
            deletes_per_second: 10.0,
        }
    }
}

/// Faults injected on ARM requests (never on the identity or control endpoints).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Faults {
    /// Probability (0..1) that a request is answered 500 `InternalServerError` instead.
    pub error_500_rate: f64,
    /// Probability (0..1) of 503 `ServiceUnavailable` with a `Retry-After`.
    pub error_503_rate: f64,
    /// Probability (0..1) that the connection is closed without an answer.
    pub drop_connection_rate: f64,
    /// Added to every ARM answer (milliseconds).
    pub latency_ms: u64,
    /// Faults apply only to requests whose operation id is in this list (all when empty),
    /// e.g. `["Backups_Trigger"]`.
    pub only_operations: Vec<String>,
    /// Seed for the fault dice, so a failing test can be replayed.
    pub seed: Option<u64>,
}

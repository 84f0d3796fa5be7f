//! The configuration file of `sqlvm-backup serve` (JSON or TOML by extension), documented field
//! by field in docs/configuration.md. Secrets are `Secret`s and never printed.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlvm_backup_shared::credentials::CredentialConfig;
use sqlvm_backup_shared::engine::EngineOptions;
use sqlvm_backup_shared::workflow::steps::{Rules, StepOptions};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API, webhook and Event Grid endpoint listen (default 127.0.0.1:7071).
    #[serde(default = "default_listen")]
    pub listen: String,
    pub arm: ArmConfig,
    /// The embedded store (one SQLite file), used unless `azureStorage` is set.
    #[serde(default = "default_db")]
    pub database: PathBuf,
    /// Keep steps on an Azure Storage queue and workflow state in blobs instead of SQLite: the
    /// same deployment then runs as a container beside the Function App, or against Azurite.
    #[serde(default)]
    pub azure_storage: Option<crate::azure_storage::config::AzureStorageConfig>,
    pub api: crate::api::ApiConfig,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub scheduler: Option<crate::scheduler::SchedulerConfig>,
    #[serde(default)]
    pub events: Option<crate::events::EventRules>,
}

fn default_listen() -> String {
    "127.0.0.1:7071".into()
}

fn default_db() -> PathBuf {
    PathBuf::from("sqlvm-backup.db")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmConfig {
    /// ARM endpoint (default `https://management.azure.com`). Tracking URLs are followed only on
    /// this scheme, host and port.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Backup api-version (default 2026-10-01).
    #[serde(default)]
    pub api_version: Option<String>,
    pub credential: CredentialConfig,
    /// PEM file of an extra CA to trust (the simulator's self-signed certificate).
    #[serde(default)]
    pub trust_cert: Option<PathBuf>,
}

fn default_endpoint() -> String {
    "https://management.azure.com".into()
}

/// Engine tunables in seconds, as an operator writes them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EngineConfig {
    pub delay_floor_seconds: f64,
    pub delay_ceiling_seconds: f64,
    pub job_poll_seconds: f64,
    pub discovery_rounds: u32,
    pub deadline_hours: f64,
    pub poll_budget: u32,
    pub max_deliveries: u32,
    pub concurrency: usize,
    /// How long a received message stays invisible to others while its step runs; after a crash
    /// the message comes back this long after it was taken.
    pub lease_seconds: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            delay_floor_seconds: 2.0,
            delay_ceiling_seconds: 300.0,
            job_poll_seconds: 30.0,
            discovery_rounds: 4,
            deadline_hours: 24.0,
            poll_budget: 5000,
            max_deliveries: 8,
            concurrency: 64,
            lease_seconds: 300.0,
        }
    }
}

impl EngineConfig {
    pub fn engine_options(&self, rules: &Rules) -> EngineOptions {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 7.0 * 86400.0));
        EngineOptions {
            steps: StepOptions {
                delay_floor: secs(self.delay_floor_seconds),
                delay_ceiling: secs(self.delay_ceiling_seconds.max(self.delay_floor_seconds)),
                job_poll_interval: secs(self.job_poll_seconds),
                discovery_rounds: self.discovery_rounds.max(1),
                rules: rules.clone(),
                ..StepOptions::default()
            },
            deadline: secs(self.deadline_hours * 3600.0),
            poll_budget: self.poll_budget,
            max_deliveries: self.max_deliveries.max(1),
            lease: secs(self.lease_seconds.max(1.0)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not valid: {1}")]
    Parse(String, String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(shown.clone(), e))?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
            toml::from_str(&text).map_err(|e| ConfigError::Parse(shown, e.to_string()))
        } else {
            serde_json::from_str(&text).map_err(|e| ConfigError::Parse(shown, e.to_string()))
        }
    }

    /// The configuration an app setting holds: inline JSON (it starts with `{`), or the path of
    /// a file (relative to the working directory, which the Functions host sets to the app root).
    pub fn from_setting(value: &str) -> Result<Config, ConfigError> {
        let trimmed = value.trim();
        if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(|e| ConfigError::Parse("the inline configuration".into(), e.to_string()))
        } else {
            Config::load(Path::new(trimmed))
        }
    }
}

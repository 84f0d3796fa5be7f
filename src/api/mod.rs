//! The worker's HTTP API: submit protect and backup workflows, read their status, list them.
//! The contract is `docs/openapi.json`; `tests/api.rs` checks every answer against it.
//!
//! # Layout
//! - [`auth`]: the middleware every `/api` route passes through: reads the body (capped at
//!   [`ApiConfig::max_body_bytes`]), authenticates the caller by API key or HMAC signature, and
//!   hands the handlers a [`Caller`] with the vaults it may act on.
//! - `routes`: the handlers; typed input in, typed response out. They know nothing of how the
//!   caller was authenticated, nor of the Functions envelope.
//! - `model`: the response bodies, built from `WorkflowState` at this edge (the stored state is
//!   not serialised as it is: `doneSteps`, poll counters and the like stay internal).
//! - `error`: [`ApiError`], the one place a failure becomes an HTTP status and
//!   `{"error":{"code","message"}}`.
//!
//! # Authorization
//! Each credential lists the vaults (ARM ids, compared case-insensitively) its holder may act on;
//! `"*"` allows every vault. A submission naming a vault outside the list is refused with 403
//! `VaultNotAllowed`. A protect request without `vaultId` is resolved later from the rules, so
//! nobody knows yet which vault it touches: only a caller allowed `"*"` may submit one. Reads
//! follow the same rule: a workflow whose vault the caller may not act on answers 404, as if it
//! did not exist, and the list leaves it out (so a restricted caller may get fewer than `limit`).
//!
//! **Invariant:** there is no unauthenticated mode; [`AuthConfig`] has no "none" variant.

pub mod auth;
mod error;
mod model;
mod routes;

use std::sync::Arc;

use axum::Router;
use serde::Deserialize;
use sqlvm_backup_shared::engine::Engine;
use sqlvm_backup_shared::secret::Secret;

pub use auth::Caller;
pub use error::ApiError;

/// Default cap on a request body: a protect or backup request is a few hundred bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default tolerance between the caller's `x-sqlvm-date` and our clock.
pub const DEFAULT_MAX_SKEW_SECONDS: u64 = 300;

/// The API's configuration, as the config file carries it (camelCase).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiConfig {
    pub auth: AuthConfig,
    /// Largest accepted request body; larger ones get 413. Default 64 KiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

fn default_max_skew_seconds() -> u64 {
    DEFAULT_MAX_SKEW_SECONDS
}

/// How callers prove who they are. `Debug` never shows a key or secret (they are [`Secret`]s).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "mode", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum AuthConfig {
    /// A shared key in the `x-api-key` header.
    ApiKey { keys: Vec<ApiKeyEntry> },
    /// An HMAC-SHA256 signature over method, path and query, date and body (see [`auth`]).
    Hmac {
        clients: Vec<HmacClient>,
        /// Largest accepted difference between `x-sqlvm-date` and now. Default 300 s.
        #[serde(default = "default_max_skew_seconds")]
        max_skew_seconds: u64,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Who holds the key: recorded as the workflow's origin (`api:{name}`).
    pub name: String,
    pub key: Secret,
    /// Vault ids this key may act on; `["*"]` for all.
    pub vaults: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HmacClient {
    /// The name the caller puts before the `:` in `x-sqlvm-signature`.
    pub name: String,
    pub secret: Secret,
    /// Vault ids this client may act on; `["*"]` for all.
    pub vaults: Vec<String>,
}

/// A configuration that cannot work as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("api auth: no keys or clients configured")]
    NoCredentials,
    #[error("api auth: '{0}' has an empty key or secret")]
    EmptySecret(String),
    #[error("api auth: the name '{0}' is empty, repeated, or contains ':' or control characters")]
    BadName(String),
    #[error("api auth: '{0}' has no vaults (use [\"*\"] for all)")]
    NoVaults(String),
    #[error("api: maxBodyBytes must be at least 1024")]
    BodyLimitTooSmall,
}

impl ApiConfig {
    /// Checks what serde cannot: at least one credential, no empty secret, unique names. The
    /// binary calls this at start-up; the router itself never lets an empty secret match.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::BodyLimitTooSmall);
        }
        let entries: Vec<(&str, &Secret, &[String])> = match &self.auth {
            AuthConfig::ApiKey { keys } => keys.iter().map(|k| (k.name.as_str(), &k.key, k.vaults.as_slice())).collect(),
            AuthConfig::Hmac { clients, .. } => clients.iter().map(|c| (c.name.as_str(), &c.secret, c.vaults.as_slice())).collect(),
        };
        if entries.is_empty() {
            return Err(ConfigError::NoCredentials);
        }
        let mut seen = std::collections::HashSet::new();
        for (name, secret, vaults) in entries {
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) || !seen.insert(name) {
                return Err(ConfigError::BadName(name.to_string()));
            }
            if secret.is_empty() {
                return Err(ConfigError::EmptySecret(name.to_string()));
            }
            if vaults.is_empty() {
                return Err(ConfigError::NoVaults(name.to_string()));
            }
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub cfg: Arc<ApiConfig>,
}

/// The `/api` routes, with authentication, body cap and JSON errors for unknown routes and methods.
pub fn router(engine: Arc<Engine>, cfg: Arc<ApiConfig>) -> Router {
    let state = AppState { engine, cfg };
    routes::routes()
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_camel_case_and_debug_hides_secrets() {
        let cfg: ApiConfig = serde_json::from_str(
            r#"{"auth":{"mode":"hmac","clients":[{"name":"ops","secret":"s3cr3t-value","vaults":["*"]}],"maxSkewSeconds":60}}"#,
        )
        .unwrap();
        assert_eq!(cfg.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(matches!(cfg.auth, AuthConfig::Hmac { max_skew_seconds: 60, .. }));
        assert!(!format!("{cfg:?}").contains("s3cr3t-value"));
        cfg.validate().unwrap();

        let cfg: ApiConfig = serde_json::from_str(
            r#"{"auth":{"mode":"apiKey","keys":[{"name":"a","key":"k3y-value","vaults":["/x"]}]},"maxBodyBytes":2048}"#,
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("k3y-value"));
        assert_eq!(cfg.max_body_bytes, 2048);
    }

    #[test]
    fn config_refuses_no_auth_and_bad_entries() {
        assert!(serde_json::from_str::<ApiConfig>(r#"{"auth":{"mode":"none"}}"#).is_err());
        assert!(serde_json::from_str::<ApiConfig>(r#"{}"#).is_err());
        let bad = |json: &str| serde_json::from_str::<ApiConfig>(json).unwrap().validate().unwrap_err();
        assert_eq!(bad(r#"{"auth":{"mode":"apiKey","keys":[]}}"#), ConfigError::NoCredentials);
        assert_eq!(
            bad(r#"{"auth":{"mode":"apiKey","keys":[{"name":"a","key":"","vaults":["*"]}]}}"#),
            ConfigError::EmptySecret("a".into())
        );
        assert_eq!(
            bad(r#"{"auth":{"mode":"hmac","clients":[{"name":"a:b","secret":"x","vaults":["*"]}]}}"#),
            ConfigError::BadName("a:b".into())
        );
        assert_eq!(bad(r#"{"auth":{"mode":"apiKey","keys":[{"name":"a","key":"x","vaults":[]}]}}"#), ConfigError::NoVaults("a".into()));
    }
}

//! Token credentials through azure_identity 1.0, selected by configuration
//! (`../shared/docs/rust-deps.md` §4a). azure_identity has no `DefaultAzureCredential`, so
//! [`CredentialConfig::Auto`] is our own short, documented chain.
//!
//! Secrets live in [`crate::secret::Secret`] and never show in `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::secret::Secret;

/// Which identity the worker uses to call ARM.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CredentialConfig {
    /// The App Service / Functions identity endpoint when `IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER` are set, else IMDS (azure_identity decides). `client_id` selects a
    /// user-assigned identity.
    #[serde(rename_all = "camelCase")]
    ManagedIdentity {
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Federated token file (AKS workload identity); missing fields come from `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    #[serde(rename_all = "camelCase")]
    WorkloadIdentity {
        #[serde(default)]
        client_id: Option<String>,
        #[serde(default)]
        tenant_id: Option<String>,
        #[serde(default)]
        token_file: Option<String>,
    },
    /// A service principal with a secret. `authority_host` defaults to `AZURE_AUTHORITY_HOST`,
    /// then `https://login.microsoftonline.com`; it must be https.
    #[serde(rename_all = "camelCase")]
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default)]
        authority_host: Option<String>,
    },
    /// `az account get-access-token` (development).
    AzureCli,
    /// Chosen from the environment when built, in this order:
    /// 1. workload identity, if `AZURE_FEDERATED_TOKEN_FILE` is set;
    /// 2. client secret, if `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_ID` and `AZURE_TENANT_ID` are set
    ///    (`AZURE_AUTHORITY_HOST` honoured);
    /// 3. managed identity through the App Service / Functions endpoint, if `IDENTITY_ENDPOINT` is
    ///    set (user-assigned when `AZURE_CLIENT_ID` is set);
    /// 4. otherwise a chain tried at the first token request: Azure CLI, then managed identity
    ///    through IMDS (user-assigned when `AZURE_CLIENT_ID` is set). The CLI fails fast when it is
    ///    missing or logged out, so IMDS — whose retries take about 70 s to give up off Azure — is
    ///    only reached when nothing else applies. The first source that works is kept.
    Auto,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot build the {kind} credential: {message}")]
    Build { kind: &'static str, message: String },
    #[error("invalid credential configuration: {0}")]
    Invalid(String),
}

/// Build the credential. `http`, when given, is the transport of the credential's own token
/// requests (tests pass a client that trusts the simulator's certificate).
pub fn build_credential(cfg: &CredentialConfig, http: Option<reqwest::Client>) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    build_with_env(cfg, http, &|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// What [`CredentialConfig::Auto`] resolves to with the given environment (`lookup` returns a
/// variable's non-empty value). `None` means the Azure CLI → IMDS chain (step 4).
pub fn resolve_auto(lookup: &dyn Fn(&str) -> Option<String>) -> Option<CredentialConfig> {
    if lookup("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        return Some(CredentialConfig::WorkloadIdentity { client_id: None, tenant_id: None, token_file: None });
    }
    if let (Some(secret), Some(client_id), Some(tenant_id)) =
        (lookup("AZURE_CLIENT_SECRET"), lookup("AZURE_CLIENT_ID"), lookup("AZURE_TENANT_ID"))
    {
        return Some(CredentialConfig::ClientSecret {
            tenant_id,
            client_id,
            client_secret: Secret::new(secret),
            authority_host: lookup("AZURE_AUTHORITY_HOST"),
        });
    }
    if lookup("IDENTITY_ENDPOINT").is_some() {
        return Some(CredentialConfig::ManagedIdentity { client_id: lookup("AZURE_CLIENT_ID") });
    }
    None
}

fn build_with_env(
    cfg: &CredentialConfig,
    http: Option<reqwest::Client>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn TokenCredential>, CredentialError> {
    let client_options = |authority_host: Option<&str>| -> Result<ClientOptions, CredentialError> {
        let mut o = ClientOptions::default();
        if let Some(h) = &http {
            o.transport = Some(Transport::new(Arc::new(h.clone())));
        }
        if let Some(host) = authority_host {
            if !host.trim().to_ascii_lowercase().starts_with("https://") {
                return Err(CredentialError::Invalid(format!("authority host '{host}' must use https")));
            }
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.trim().to_string();
            o.cloud = Some(Arc::new(CloudConfiguration::Custom(custom)));
        }
        Ok(o)
    };
    let fail = |kind: &'static str| move |e: azure_core::Error| CredentialError::Build { kind, message: e.to_string() };
    let managed = |client_id: &Option<String>| -> Result<Arc<dyn TokenCredential>, CredentialError> {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.clone().filter(|c| !c.is_empty()).map(UserAssignedId::ClientId),
            client_options: client_options(None)?,
        };
        Ok(ManagedIdentityCredential::new(Some(options)).map_err(fail("managed identity"))?)
    };
    match cfg {
        CredentialConfig::ManagedIdentity { client_id } => managed(client_id),
        CredentialConfig::WorkloadIdentity { client_id, tenant_id, token_file } => {
            let options = WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options: client_options(None)? },
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone().map(Into::into),
            };
            Ok(WorkloadIdentityCredential::new(Some(options)).map_err(fail("workload identity"))?)
        }
        CredentialConfig::ClientSecret { tenant_id, client_id, client_secret, authority_host } => {
            if client_secret.is_empty() {
                return Err(CredentialError::Invalid("client secret is empty".into()));
            }
            let options = ClientSecretCredentialOptions { client_options: client_options(authority_host.as_deref())? };
            let secret = azure_core::credentials::Secret::new(client_secret.expose().to_string());
            Ok(ClientSecretCredential::new(tenant_id, client_id.clone(), secret, Some(options)).map_err(fail("client secret"))?)
        }
        CredentialConfig::AzureCli => Ok(AzureCliCredential::new(None).map_err(fail("Azure CLI"))?),
        CredentialConfig::Auto => match resolve_auto(lookup) {
            Some(concrete) => {
                tracing::info!(credential = concrete.kind_name(), "automatic credential selection");
                build_with_env(&concrete, http, lookup)
            }
            None => {
                tracing::info!(credential = "azureCli, then managedIdentity (IMDS)", "automatic credential selection");
                let cli: Arc<dyn TokenCredential> = AzureCliCredential::new(None).map_err(fail("Azure CLI"))?;
                let imds = managed(&lookup("AZURE_CLIENT_ID"))?;
                Ok(Arc::new(ChainCredential {
                    sources: vec![("azureCli", cli), ("managedIdentity", imds)],
                    chosen: AtomicUsize::new(usize::MAX),
                }))
            }
        },
    }
}

impl CredentialConfig {
    /// The `kind` tag, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            CredentialConfig::ManagedIdentity { .. } => "managedIdentity",
            CredentialConfig::WorkloadIdentity { .. } => "workloadIdentity",
            CredentialConfig::ClientSecret { .. } => "clientSecret",
            CredentialConfig::AzureCli => "azureCli",
            CredentialConfig::Auto => "auto",
        }
    }
}

/// Tries its sources in order until one gives a token, then sticks to that one.
struct ChainCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: AtomicUsize,
}

impl fmt::Debug for ChainCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainCredential").field("sources", &self.sources.iter().map(|(n, _)| *n).collect::<Vec<_>>()).finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(&self, scopes: &[&str], options: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.load(Ordering::Relaxed);
        if let Some((_, c)) = self.sources.get(chosen) {
            return c.get_token(scopes, options).await;
        }
        let mut errors = Vec::new();
        for (i, (name, c)) in self.sources.iter().enumerate() {
            match c.get_token(scopes, options.clone()).await {
                Ok(t) => {
                    tracing::info!(credential = name, "credential chain: using this source");
                    self.chosen.store(i, Ordering::Relaxed);
                    return Ok(t);
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("no credential source worked ({})", errors.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn auto_order() {
        let all = env(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("IDENTITY_ENDPOINT", "http://x"),
        ]);
        assert_eq!(resolve_auto(&all).map(|c| c.kind_name()), Some("workloadIdentity"));
        let secret = env(&[("AZURE_CLIENT_SECRET", "s"), ("AZURE_CLIENT_ID", "c"), ("AZURE_TENANT_ID", "t"), ("IDENTITY_ENDPOINT", "x")]);
        assert_eq!(resolve_auto(&secret).map(|c| c.kind_name()), Some("clientSecret"));
        let mi = env(&[("AZURE_CLIENT_SECRET", "s"), ("IDENTITY_ENDPOINT", "x"), ("AZURE_CLIENT_ID", "u")]);
        assert_eq!(resolve_auto(&mi), Some(CredentialConfig::ManagedIdentity { client_id: Some("u".into()) }));
        assert_eq!(resolve_auto(&env(&[])), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let c = CredentialConfig::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("hunter2-very-secret"),
            authority_host: None,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let json = r#"{"kind":"clientSecret","tenantId":"t","clientId":"c","clientSecret":"hunter2"}"#;
        let parsed: CredentialConfig = serde_json::from_str(json).unwrap();
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let env_secret = resolve_auto(&env(&[("AZURE_CLIENT_SECRET", "hunter2"), ("AZURE_CLIENT_ID", "c"), ("AZURE_TENANT_ID", "t")]));
        assert!(!format!("{env_secret:?}").contains("hunter2"));
    }

    #[test]
    fn config_shapes() {
        let c: CredentialConfig = serde_json::from_str(r#"{"kind":"managedIdentity"}"#).unwrap();
        assert_eq!(c, CredentialConfig::ManagedIdentity { client_id: None });
        let c: CredentialConfig = serde_json::from_str(r#"{"kind":"workloadIdentity","tokenFile":"/f"}"#).unwrap();
        assert_eq!(c, CredentialConfig::WorkloadIdentity { client_id: None, tenant_id: None, token_file: Some("/f".into()) });
        let c: CredentialConfig = serde_json::from_str(r#"{"kind":"auto"}"#).unwrap();
        assert_eq!(c, CredentialConfig::Auto);
        let c: CredentialConfig = serde_json::from_str(r#"{"kind":"azureCli"}"#).unwrap();
        assert_eq!(c, CredentialConfig::AzureCli);
    }

    #[test]
    fn http_authority_is_refused() {
        let c = CredentialConfig::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            authority_host: Some("http://127.0.0.1:1".into()),
        };
        assert!(matches!(build_credential(&c, None), Err(CredentialError::Invalid(_))));
    }
}

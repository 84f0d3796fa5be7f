//! How the storage clients authenticate, and the checks on the URLs they are given.
//!
//! Production uses an Entra ID token (the function app's managed identity): no key to rotate or
//! leak, and RBAC roles scoped to one queue or container. The SDK then insists on https, and so do
//! we, with a clearer error. The account-key mode exists for Azurite (and for accounts where a key
//! is all an operator has): the SDK has no shared-key support, so every request gets a fresh
//! account SAS signed in process ([`super::sas`]) and no credential, which also makes plain http
//! work against the emulator.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{ClientOptions, Context, ExponentialRetryOptions, Request, RetryOptions, Url};
use sqlvm_backup_shared::secret::Secret;

use super::error::StorageError;
use super::sas;

/// Credentials for the queue and blob clients.
#[derive(Clone)]
pub enum StorageAuth {
    /// An Entra ID credential (managed identity in Azure). Endpoints must be https.
    Token(Arc<dyn TokenCredential>),
    /// The storage account name and its base64 key; requests carry an account SAS signed in
    /// process. The only mode that accepts http endpoints (Azurite).
    AccountKey { account: String, key: Secret },
}

impl std::fmt::Debug for StorageAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageAuth::Token(_) => f.write_str("Token(<credential>)"),
            StorageAuth::AccountKey { account, key } => f.debug_struct("AccountKey").field("account", account).field("key", key).finish(),
        }
    }
}

/// How long each signature is valid. Every request is signed when it is sent, so this only has to
/// outlive one call with its retries; an hour also absorbs a local clock running behind.
const SAS_VALIDITY: chrono::Duration = chrono::Duration::hours(1);

/// The SDK retries transport errors, 408, 429 and 5xx (honouring `Retry-After`) with exponential
/// back-off. Its default budget is 8 retries within a minute; ours is shorter because every caller
/// has its own retry one level up (a step message that fails comes back after its lease, a
/// Functions invocation is retried by the host), and a handler stuck for a minute on an
/// unreachable account holds its message lease and a worker slot for nothing. Five retries
/// (about 6 s of back-off) still ride out a throttling burst or a dropped connection.
fn retry_options() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(200),
        max_retries: 5,
        max_total_elapsed: azure_core::time::Duration::seconds(15),
        max_delay: azure_core::time::Duration::seconds(5),
    })
}

/// A parsed queue or container URL.
pub(crate) struct ResourceUrl {
    /// The URL without a trailing slash, query or fragment.
    pub url: Url,
    /// The last path segment: the queue or container name.
    pub name: String,
}

impl StorageAuth {
    /// Checks `url` against this authentication mode and returns the credential and client options
    /// for an SDK client. `kind` ("queue" or "container") only words the errors.
    pub(crate) fn client_setup(&self, url: &Url, kind: &str) -> Result<(Option<Arc<dyn TokenCredential>>, ClientOptions), StorageError> {
        let mut options = ClientOptions { retry: retry_options(), ..Default::default() };
        match self {
            StorageAuth::Token(cred) => {
                if url.scheme() != "https" {
                    return Err(StorageError::Config(format!(
                        "the {kind} URL {url} must use https with a token credential (http is only for the account-key mode, e.g. Azurite)"
                    )));
                }
                Ok((Some(cred.clone()), options))
            }
            StorageAuth::AccountKey { account, key } => {
                if !names_account(url, account) {
                    return Err(StorageError::Config(format!(
                        "the {kind} URL {url} is not in storage account {account} (neither its host nor its first path segment)"
                    )));
                }
                // Fail now on a malformed key rather than at the first request.
                sas::account_sas(account, key.expose(), chrono::Utc::now())?;
                options.per_call_policies.push(Arc::new(SasPolicy { account: account.clone(), key: key.clone() }));
                Ok((None, options))
            }
        }
    }
}

/// Whether the URL belongs to `account`: production style (`https://{account}.queue.core...`) or
/// path style as Azurite and emulators use it (`http://127.0.0.1:10001/{account}/...`).
fn names_account(url: &Url, account: &str) -> bool {
    let host_label = url.host_str().and_then(|h| h.split('.').next()).unwrap_or("");
    let first_segment = url.path_segments().and_then(|mut s| s.next()).unwrap_or("");
    host_label.eq_ignore_ascii_case(account) || first_segment == account
}

/// Parses and checks a queue or container URL: http(s), no query (credentials come from
/// [`StorageAuth`], never from the URL), and a last path segment that is a valid name.
///
/// Queue and container names share the rules: 3 to 63 characters, lowercase letters, digits and
/// single hyphens, starting and ending with a letter or digit.
pub(crate) fn parse_resource_url(raw: &str, kind: &str) -> Result<ResourceUrl, StorageError> {
    let mut url = Url::parse(raw.trim()).map_err(|e| StorageError::Config(format!("the {kind} URL {raw:?} does not parse: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(StorageError::Config(format!("the {kind} URL {raw:?} must be an http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(StorageError::Config(format!(
            "the {kind} URL must not carry a query or fragment (a SAS in the URL is not supported; configure the account key or a credential)"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(StorageError::Config(format!("the {kind} URL must not carry user information")));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    let name = url.path_segments().and_then(|mut s| s.next_back()).unwrap_or("").to_string();
    if !valid_name(&name) {
        return Err(StorageError::Config(format!(
            "the {kind} name {name:?} in {url} is invalid: 3 to 63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
        )));
    }
    Ok(ResourceUrl { url, name })
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !name.contains("--")
}

/// Appends a freshly signed account SAS to each request's query. A per-call policy runs once per
/// operation (before the retry policy), so retries reuse the same signature and the query is
/// never doubled; each call signs anew, so a client that lives for months never holds an expired
/// signature.
struct SasPolicy {
    account: String,
    key: Secret,
}

impl std::fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasPolicy").field("account", &self.account).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Policy for SasPolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let sas = sas::account_sas(&self.account, self.key.expose(), chrono::Utc::now() + SAS_VALIDITY)
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string()))?;
        let url = request.url_mut();
        let query = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{sas}"),
            _ => sas,
        };
        url.set_query(Some(&query));
        match next.split_first() {
            Some((first, rest)) => first.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Other, "the SAS policy must not be the last policy")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["abc", "sqlvm-steps", "a1-b2", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["ab", "Abc", "a--b", "-abc", "abc-", "a_b", &"a".repeat(64), ""] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn urls_are_normalised_and_checked() {
        let r = parse_resource_url("http://127.0.0.1:10001/devstoreaccount1/sqlvm-steps/", "queue").expect("ok");
        assert_eq!(r.name, "sqlvm-steps");
        assert_eq!(r.url.as_str(), "http://127.0.0.1:10001/devstoreaccount1/sqlvm-steps");
        let r = parse_resource_url("https://acct.queue.core.windows.net/sqlvm-steps", "queue").expect("ok");
        assert_eq!(r.name, "sqlvm-steps");
        for bad in ["ftp://h/q", "not a url", "https://acct.queue.core.windows.net/", "https://a.b/q?sig=x", "https://a.b/Q_Q"] {
            assert!(matches!(parse_resource_url(bad, "queue"), Err(StorageError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn account_must_match_the_url() {
        let auth = StorageAuth::AccountKey { account: "acct".into(), key: Secret::new("a2V5") };
        let ok = ["https://acct.queue.core.windows.net/q1", "http://127.0.0.1:10001/acct/q1", "http://azurite:10001/acct/q1"];
        for u in ok {
            assert!(auth.client_setup(&Url::parse(u).expect("url"), "queue").is_ok(), "{u}");
        }
        let other = Url::parse("https://other.queue.core.windows.net/q1").expect("url");
        assert!(matches!(auth.client_setup(&other, "queue"), Err(StorageError::Config(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let auth = StorageAuth::AccountKey { account: "acct".into(), key: Secret::new("c2VjcmV0LWtleQ==") };
        let d = format!("{auth:?}");
        assert!(d.contains("acct") && !d.contains("c2VjcmV0LWtleQ=="), "{d}");
    }
}

//! One ARM call, done right: bearer token from a cached credential, `x-ms-client-request-id`,
//! JSON in and out, retries of 408/429/5xx and connection errors honouring `Retry-After`, and
//! pacing on the `x-ms-ratelimit-remaining-*` headers so a fleet run seldom meets a 429
//! (azure-backup-api.md §11, §12, §13.1).
//!
//! Two rules protect the token and the service:
//! - Absolute URLs (tracking URLs, `nextLink`) are followed verbatim, but only when they have the
//!   configured endpoint's scheme, host and port; anything else is [`ArmError::UntrustedUrl`] and
//!   nothing is sent. Redirects are never followed.
//! - A request marked [`ArmRequest::not_retriable`] (the backup trigger POST) is retried only when
//!   it certainly did not reach the service (connection refused, 429, a 401 that needs a fresh
//!   token); a 5xx, time-out or dropped connection after sending is returned, classified, because a
//!   blind retry could start a second backup job (§13.1 point 8).
//!
//! Waiting for an operation is not a retry and does not happen here: callers get the 202 and its
//! tracking URL back and schedule the next poll themselves.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use azure_core::credentials::{Secret, TokenCredential};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, USER_AGENT};
use serde_json::Value;
use url::Url;

use super::error::{ArmError, is_retryable_status};

/// The api-version sent when a path has none.
pub const DEFAULT_API_VERSION: &str = "2026-10-01";
/// The token scope for Azure Resource Manager (also used for the simulator, which accepts the
/// public-cloud audience).
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// Tokens are renewed this long before they expire.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// `list_all` gives up after this many pages (a service that loops would otherwise never end).
const MAX_PAGES: usize = 10_000;

/// In-call retries of transient failures.
#[derive(Clone, Debug)]
pub struct RetryOptions {
    /// Retries after the first attempt (default 6).
    pub max_retries: u32,
    /// First back-off when the service gives no `Retry-After` (default 1 s); doubles per retry.
    pub initial_delay: Duration,
    /// Longest back-off (default 60 s). A `Retry-After` longer than this is not waited for in
    /// process: the error is returned with its `retry_after` so the caller reschedules.
    pub max_delay: Duration,
    /// Randomise back-offs (equal jitter) so that many workers do not retry in lockstep
    /// (default true).
    pub jitter: bool,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions { max_retries: 6, initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(60), jitter: true }
    }
}

/// Client-side pacing per subscription and request kind (reads / writes / deletes).
///
/// ARM reports what is left of its token bucket in `x-ms-ratelimit-remaining-*`. While that is at
/// or above `low_watermark` requests go out at once; below it, requests of the same subscription
/// and kind are spaced `(low_watermark - remaining) / low_watermark * max_pause` apart, so the
/// send rate drops as the bucket empties and recovers as it refills. After a 429 every request of
/// that subscription and kind waits out the `Retry-After` instead of hitting the wall again.
#[derive(Clone, Debug)]
pub struct PacingOptions {
    /// Default true.
    pub enabled: bool,
    /// Remaining requests below which pacing starts (default 20).
    pub low_watermark: u32,
    /// Spacing when nothing is left (default 2 s).
    pub max_pause: Duration,
}

impl Default for PacingOptions {
    fn default() -> Self {
        PacingOptions { enabled: true, low_watermark: 20, max_pause: Duration::from_secs(2) }
    }
}

/// Options of [`ArmClient`]; every field has a documented default.
#[derive(Clone, Debug)]
pub struct ArmClientOptions {
    /// Added to paths whose query has no `api-version` (default [`DEFAULT_API_VERSION`]).
    pub api_version: String,
    pub retry: RetryOptions,
    pub pacing: PacingOptions,
    /// Per attempt, connection to last body byte (default 60 s).
    pub timeout: Duration,
    /// Default `sqlvm-backup/<version>`.
    pub user_agent: String,
    /// Token scope (default [`ARM_SCOPE`]).
    pub token_scope: String,
}

impl Default for ArmClientOptions {
    fn default() -> Self {
        ArmClientOptions {
            api_version: DEFAULT_API_VERSION.to_string(),
            retry: RetryOptions::default(),
            pacing: PacingOptions::default(),
            timeout: Duration::from_secs(60),
            user_agent: concat!("sqlvm-backup/", env!("CARGO_PKG_VERSION")).to_string(),
            token_scope: ARM_SCOPE.to_string(),
        }
    }
}

/// One ARM request.
#[derive(Clone, Debug)]
pub struct ArmRequest {
    pub method: Method,
    /// A path starting with `/` (the endpoint and, when missing, `api-version` are added) or an
    /// absolute URL on the endpoint (followed verbatim).
    pub url: String,
    pub body: Option<Value>,
    /// False for requests that must not be repeated blindly (the backup trigger POST).
    pub retriable: bool,
    /// Pacing key; derived from the `/subscriptions/{id}` segment of the URL when `None`.
    pub subscription: Option<String>,
}

impl ArmRequest {
    fn new(method: Method, url: impl Into<String>, body: Option<Value>) -> Self {
        ArmRequest { method, url: url.into(), body, retriable: true, subscription: None }
    }
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url, None)
    }
    pub fn put(url: impl Into<String>, body: Value) -> Self {
        Self::new(Method::PUT, url, Some(body))
    }
    pub fn post(url: impl Into<String>, body: Option<Value>) -> Self {
        Self::new(Method::POST, url, body)
    }
    pub fn delete(url: impl Into<String>) -> Self {
        Self::new(Method::DELETE, url, None)
    }
    /// Never retried once it may have reached the service.
    pub fn not_retriable(mut self) -> Self {
        self.retriable = false;
        self
    }
    /// Pace this request under another subscription than the one in its URL.
    pub fn with_subscription(mut self, subscription: impl Into<String>) -> Self {
        self.subscription = Some(subscription.into());
        self
    }
}

/// A successful (2xx) answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArmAnswer {
    pub status: u16,
    /// The JSON body; `Null` when empty.
    pub body: Value,
    pub location: Option<String>,
    pub azure_async_operation: Option<String>,
    pub retry_after: Option<Duration>,
    /// `x-ms-request-id`.
    pub request_id: Option<String>,
    /// `x-ms-correlation-request-id`.
    pub correlation_id: Option<String>,
    /// `x-ms-client-request-id` as echoed by the service (the id this client sent).
    pub client_request_id: Option<String>,
}

impl ArmAnswer {
    /// The URL to poll: `Azure-AsyncOperation` when present, else `Location` (§11).
    pub fn tracking_url(&self) -> Option<&str> {
        self.azure_async_operation.as_deref().or(self.location.as_deref()).filter(|u| !u.trim().is_empty())
    }

    /// The body as a typed view (see [`super::models`]).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ArmError> {
        T::deserialize(&self.body).map_err(|e| ArmError::Decode(e.to_string()))
    }
}

/// Client of Azure Resource Manager (or the simulator). Cheap to clone.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
    http: reqwest::Client,
}

struct Inner {
    endpoint: Url,
    /// Scheme, host and port, without a trailing slash.
    endpoint_str: String,
    credential: Arc<dyn TokenCredential>,
    options: ArmClientOptions,
    /// Fast path: read without awaiting the credential.
    token: RwLock<Option<CachedToken>>,
    /// One refresh at a time; others wait and then read the cache.
    refresh: tokio::sync::Mutex<()>,
    pacer: Pacer,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    refresh_at: SystemTime,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint_str)
            .field("api_version", &self.inner.options.api_version)
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    /// `endpoint`: `https://management.azure.com`, or the simulator's `http(s)://127.0.0.1:PORT`.
    /// Plain http is accepted only because the endpoint itself is configured so (the token is
    /// then sent in clear: use it for a local simulator only).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>, options: Option<ArmClientOptions>) -> Result<ArmClient, ArmError> {
        let options = options.unwrap_or_default();
        let bad = |why: &str| ArmError::InvalidEndpoint(format!("'{endpoint}': {why}"));
        let url = Url::parse(endpoint.trim()).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                if !loopback {
                    tracing::warn!(endpoint = %url, "ARM endpoint uses plain http on a non-loopback host: tokens travel unencrypted");
                }
            }
            _ => return Err(bad("the scheme must be https (or http for a local simulator)")),
        }
        if url.cannot_be_a_base() || url.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("credentials in the URL are not allowed"));
        }
        if url.query().is_some() || url.fragment().is_some() || !(url.path().is_empty() || url.path() == "/") {
            return Err(bad("the endpoint must be scheme://host[:port] without path or query"));
        }
        if options.api_version.trim().is_empty() {
            return Err(ArmError::InvalidEndpoint("api_version is empty".into()));
        }
        let endpoint_str = url.as_str().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ArmError::InvalidEndpoint(format!("cannot build the HTTP client: {e}")))?;
        Ok(ArmClient {
            inner: Arc::new(Inner {
                endpoint: url,
                endpoint_str,
                credential,
                options,
                token: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                pacer: Pacer::default(),
            }),
            http,
        })
    }

    /// Use this HTTP client (e.g. one trusting the simulator's self-signed certificate). It
    /// should not follow redirects (the default client follows none). The options' user agent,
    /// timeout and headers still apply to every request.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// `scheme://host[:port]`.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint_str
    }

    pub fn api_version(&self) -> &str {
        &self.inner.options.api_version
    }

    pub fn options(&self) -> &ArmClientOptions {
        &self.inner.options
    }

    /// Where a request would go, or why it may not: exposed so callers can check a tracking URL
    /// before storing it.
    pub fn resolve(&self, url: &str) -> Result<Url, ArmError> {
        let url = url.trim();
        if url.starts_with('/') && !url.starts_with("//") {
            let mut full = format!("{}{}", self.inner.endpoint_str, url);
            if !has_api_version(url) {
                full.push(if url.contains('?') { '&' } else { '?' });
                full.push_str("api-version=");
                full.push_str(&self.inner.options.api_version);
            }
            return Url::parse(&full).map_err(|e| ArmError::UntrustedUrl(format!("cannot parse '{}': {e}", shorten(url))));
        }
        let parsed = Url::parse(url).map_err(|e| ArmError::UntrustedUrl(format!("'{}' is neither a path nor a URL: {e}", shorten(url))))?;
        let ep = &self.inner.endpoint;
        let same = parsed.scheme() == ep.scheme()
            && parsed.host_str().zip(ep.host_str()).is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            && parsed.port_or_known_default() == ep.port_or_known_default()
            && parsed.username().is_empty()
            && parsed.password().is_none();
        if same {
            Ok(parsed)
        } else {
            Err(ArmError::UntrustedUrl(format!(
                "{}://{}{} is not on {}",
                parsed.scheme(),
                parsed.host_str().unwrap_or(""),
                parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
                self.inner.endpoint_str
            )))
        }
    }

    /// One ARM call with retries (see the module documentation). A 2xx is an [`ArmAnswer`]; any
    /// other status is [`ArmError::Http`] (or [`ArmError::Throttled`] for a persistent 429).
    pub async fn send(&self, req: ArmRequest) -> Result<ArmAnswer, ArmError> {
        let url = self.resolve(&req.url)?;
        let opts = &self.inner.options;
        let subscription =
            req.subscription.clone().or_else(|| subscription_of(url.path())).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        let kind = Kind::of(&req.method);
        let pace_key = (subscription, kind);
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let path = url.path().to_string();
        let api_version = url.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case("api-version")).map(|(_, v)| v.into_owned());
        let body = match &req.body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ArmError::Decode(format!("cannot serialise the request body: {e}")))?),
            None => None,
        };
        let mut attempts: u32 = 0;
        let mut retries_left = opts.retry.max_retries;
        let mut token_renewed = false;
        loop {
            if opts.pacing.enabled {
                let wait = self.inner.pacer.before_send(&opts.pacing, &pace_key);
                if !wait.is_zero() {
                    tracing::debug!(method = %req.method, path = %path, wait_ms = wait.as_millis() as u64, "pacing ARM request");
                    tokio::time::sleep(wait).await;
                }
            }
            let token = self.token().await?;
            attempts += 1;
            let mut rb = self
                .http
                .request(req.method.clone(), url.clone())
                .bearer_auth(token.secret())
                .header("x-ms-client-request-id", &client_request_id)
                .header(ACCEPT, "application/json")
                .header(USER_AGENT, &opts.user_agent)
                .timeout(opts.timeout);
            if let Some(b) = &body {
                rb = rb.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let started = Instant::now();
            let result = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(bytes) => Ok((status, headers, bytes)),
                        Err(e) => Err(ArmError::Transport { message: format!("reading the answer: {}", describe(e)), sent: true }),
                    }
                }
                Err(e) => {
                    let sent = !e.is_connect();
                    Err(ArmError::Transport { message: describe(e), sent })
                }
            };
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let (status, headers, bytes) = match result {
                Ok(r) => r,
                Err(err) => {
                    let sent = matches!(err, ArmError::Transport { sent: true, .. });
                    tracing::warn!(method = %req.method, path = %path, api_version = api_version.as_deref(), client_request_id = %client_request_id,
                        attempt = attempts, elapsed_ms, error = %err, "ARM request failed");
                    if retries_left > 0 && (req.retriable || !sent) {
                        retries_left -= 1;
                        tokio::time::sleep(self.backoff(attempts)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let request_id = header("x-ms-request-id");
            let correlation_id = header("x-ms-correlation-request-id");
            let retry_after = retry_after_of(&headers);
            if opts.pacing.enabled {
                self.inner.pacer.observe(&pace_key, remaining_of(&headers, kind));
            }
            tracing::debug!(method = %req.method, path = %path, api_version = api_version.as_deref(), status,
                request_id = request_id.as_deref(), correlation_id = correlation_id.as_deref(), client_request_id = %client_request_id,
                attempt = attempts, elapsed_ms, "ARM answer");
            if (200..300).contains(&status) {
                let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| {
                        ArmError::Decode(format!("{} {path} answered {status} with a body that is not JSON: {e}", req.method))
                    })?
                };
                return Ok(ArmAnswer {
                    status,
                    body,
                    location: header("location"),
                    azure_async_operation: header("azure-asyncoperation"),
                    retry_after,
                    request_id,
                    correlation_id,
                    client_request_id: header("x-ms-client-request-id"),
                });
            }
            let (code, message) = parse_error_body(&bytes, status);
            tracing::info!(method = %req.method, path = %path, status, code = %code, request_id = request_id.as_deref(),
                correlation_id = correlation_id.as_deref(), client_request_id = %client_request_id, attempt = attempts, "ARM error answer");
            if status == 401 && !token_renewed {
                // An expired or revoked token: the request was refused before any processing.
                token_renewed = true;
                self.forget_token();
                continue;
            }
            if is_retryable_status(status) && (req.retriable || status == 429) && retries_left > 0 {
                // A wait longer than `max_delay` is the caller's to schedule, not ours to sleep.
                let too_long = retry_after.is_some_and(|ra| ra > opts.retry.max_delay);
                if !too_long {
                    let wait = match retry_after {
                        Some(ra) if status == 429 => ra + self.small_jitter(ra),
                        Some(ra) => ra.max(self.backoff(attempts)),
                        None => self.backoff(attempts),
                    };
                    retries_left -= 1;
                    if status == 429 && opts.pacing.enabled {
                        // Every request of this subscription and kind waits, not only this one.
                        self.inner.pacer.block(&pace_key, wait);
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                    continue;
                }
            }
            if status == 429 {
                return Err(ArmError::Throttled { retry_after: retry_after.unwrap_or(opts.retry.initial_delay), attempts });
            }
            return Err(ArmError::Http { status, code, message, retry_after, request_id });
        }
    }

    /// GET a list and follow `nextLink` verbatim until it is null, absent or empty; all `value`
    /// items in order.
    pub async fn list_all(&self, path_or_url: &str) -> Result<Vec<Value>, ArmError> {
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut next = Some(path_or_url.to_string());
        while let Some(url) = next.take() {
            if !seen.insert(url.clone()) || seen.len() > MAX_PAGES {
                return Err(ArmError::Decode(format!("paging does not end: nextLink '{}' repeats or too many pages", shorten(&url))));
            }
            let mut answer = self.send(ArmRequest::get(url)).await?;
            match answer.body.get_mut("value").map(Value::take) {
                Some(Value::Array(page)) => items.extend(page),
                None | Some(Value::Null) => {}
                Some(other) => return Err(ArmError::Decode(format!("list 'value' is not an array: {}", shorten(&other.to_string())))),
            }
            next = answer.body.get("nextLink").and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        }
        Ok(items)
    }

    async fn token(&self) -> Result<Secret, ArmError> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let _single_flight = self.inner.refresh.lock().await;
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        let scope = self.inner.options.token_scope.as_str();
        let at = self.inner.credential.get_token(&[scope], None).await.map_err(|e| ArmError::Credential(e.to_string()))?;
        let expires = UNIX_EPOCH + Duration::from_secs(at.expires_on.unix_timestamp().max(0) as u64);
        let refresh_at = expires.checked_sub(TOKEN_REFRESH_MARGIN).unwrap_or(UNIX_EPOCH);
        tracing::debug!(
            scope,
            expires_in_s = expires.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
            "ARM token acquired"
        );
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = Some(CachedToken { token: at.token.clone(), refresh_at });
        Ok(at.token)
    }

    fn cached_token(&self) -> Option<Secret> {
        let guard = self.inner.token.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|t| SystemTime::now() < t.refresh_at).map(|t| t.token.clone())
    }

    fn forget_token(&self) {
        *self.inner.token.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Capped exponential back-off for the `attempt`-th failure, with equal jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let r = &self.inner.options.retry;
        let exp = r.initial_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(r.max_delay);
        if r.jitter && !capped.is_zero() {
            let half = capped / 2;
            half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos().min(u64::MAX as u128) as u64))
        } else {
            capped
        }
    }

    /// Up to 10 % on top of a server-given wait, so throttled workers do not return together.
    fn small_jitter(&self, d: Duration) -> Duration {
        if self.inner.options.retry.jitter { Duration::from_nanos(fastrand::u64(0..=(d.as_nanos() / 10) as u64)) } else { Duration::ZERO }
    }
}

// ---------------------------------------------------------------------------------------------
// Pacing

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Reads,
    Writes,
    Deletes,
}

impl Kind {
    fn of(m: &Method) -> Kind {
        match *m {
            Method::GET | Method::HEAD => Kind::Reads,
            Method::DELETE => Kind::Deletes,
            _ => Kind::Writes,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Kind::Reads => "reads",
            Kind::Writes => "writes",
            Kind::Deletes => "deletes",
        }
    }
}

type PaceKey = (String, Kind);

#[derive(Default)]
struct Pacer {
    state: Mutex<HashMap<PaceKey, PaceState>>,
}

#[derive(Default)]
struct PaceState {
    /// Estimated requests left: the last header, minus requests sent since.
    remaining: Option<f64>,
    /// The earliest time the next request may go.
    next_slot: Option<Instant>,
}

impl Pacer {
    /// Reserve a send slot; returns how long to wait for it.
    fn before_send(&self, opts: &PacingOptions, key: &PaceKey) -> Duration {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry(key.clone()).or_default();
        let watermark = f64::from(opts.low_watermark.max(1));
        let interval = match s.remaining {
            Some(rem) if rem < watermark => opts.max_pause.mul_f64(((watermark - rem.max(0.0)) / watermark).min(1.0)),
            _ => Duration::ZERO,
        };
        if let Some(rem) = s.remaining.as_mut() {
            *rem -= 1.0;
        }
        let start = s.next_slot.filter(|t| *t > now).unwrap_or(now);
        s.next_slot = Some(start + interval);
        start - now
    }

    fn observe(&self, key: &PaceKey, remaining: Option<u64>) {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry(key.clone()).or_default();
        s.remaining = remaining.map(|r| r as f64);
    }

    /// After a 429: nobody of this key goes before `wait` has passed.
    fn block(&self, key: &PaceKey, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.entry(key.clone()).or_default();
        s.next_slot = Some(s.next_slot.map_or(until, |t| t.max(until)));
        s.remaining = Some(0.0);
    }
}

/// The smallest `x-ms-ratelimit-remaining-*` figure that applies to this kind of request
/// (subscription, tenant, global and the RP's own `resource-requests` counters).
fn remaining_of(headers: &HeaderMap, kind: Kind) -> Option<u64> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let n = name.as_str().strip_prefix("x-ms-ratelimit-remaining-")?;
            let applies = n.ends_with(kind.word()) || n.contains("resource-");
            if !applies {
                return None;
            }
            value.to_str().ok()?.trim().parse::<u64>().ok()
        })
        .min()
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `retry-after-ms` / `x-ms-retry-after-ms`, then `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        let ms = headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(ms) = ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    parse_retry_after(headers.get("retry-after")?.to_str().ok()?, SystemTime::now())
}

/// `Retry-After` value: delay-seconds (integer or decimal) or an HTTP date relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = UNIX_EPOCH + Duration::from_secs(date.timestamp().max(0) as u64);
    Some(at.duration_since(now).unwrap_or_default())
}

/// `code` and `message` of an ARM error body (`{"error":{…}}`, or the fields at top level);
/// `"Unknown"` and the body text (or the status reason) otherwise.
pub(crate) fn parse_error_body(bytes: &[u8], status: u16) -> (String, String) {
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").to_string();
    let text = String::from_utf8_lossy(bytes);
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        let t = text.trim();
        return ("Unknown".into(), if t.is_empty() { reason } else { shorten(t) });
    };
    let err = match v.get("error") {
        Some(e @ Value::Object(_)) => e,
        _ => &v,
    };
    let field = |k: &str| err.get(k).and_then(|x| if let Value::String(s) = x { Some(s.clone()) } else { None }).filter(|s| !s.is_empty());
    let code = field("code").or_else(|| field("Code")).unwrap_or_else(|| "Unknown".into());
    let message = field("message").or_else(|| field("Message")).unwrap_or(reason);
    (code, message)
}

fn has_api_version(path_and_query: &str) -> bool {
    path_and_query
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.split('=').next().is_some_and(|k| k.eq_ignore_ascii_case("api-version"))))
}

/// The `{id}` of `/subscriptions/{id}/…`.
pub(crate) fn subscription_of(path: &str) -> Option<String> {
    let mut it = path.split('/');
    while let Some(seg) = it.next() {
        if seg.eq_ignore_ascii_case("subscriptions") {
            return it.next().filter(|s| !s.is_empty()).map(str::to_string);
        }
    }
    None
}

/// Error text of reqwest without the URL's query.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 1.5 ", now), Some(Duration::from_millis(1500)));
        let date = chrono::DateTime::from_timestamp(1_700_000_030, 0).unwrap().to_rfc2822();
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(parse_error_body(br#"{"error":{"code":"X","message":"m"}}"#, 400), ("X".into(), "m".into()));
        assert_eq!(parse_error_body(br#"{"code":"Y","message":"n"}"#, 400), ("Y".into(), "n".into()));
        assert_eq!(parse_error_body(b"", 503), ("Unknown".into(), "Service Unavailable".into()));
        assert_eq!(parse_error_body(b"<html>oops</html>", 502), ("Unknown".into(), "<html>oops</html>".into()));
    }

    #[test]
    fn api_version_and_subscription() {
        assert!(has_api_version("/a?x=1&API-Version=2"));
        assert!(!has_api_version("/a?x-api-version=2"));
        assert!(!has_api_version("/a"));
        assert_eq!(subscription_of("/Subscriptions/ABC/resourceGroups/x").as_deref(), Some("ABC"));
        assert_eq!(subscription_of("/providers/x"), None);
    }

    #[test]
    fn pacing_spaces_requests_below_the_watermark() {
        let p = Pacer::default();
        let o = PacingOptions { enabled: true, low_watermark: 10, max_pause: Duration::from_secs(1) };
        let k = ("s".to_string(), Kind::Reads);
        assert_eq!(p.before_send(&o, &k), Duration::ZERO);
        p.observe(&k, Some(100));
        assert_eq!(p.before_send(&o, &k), Duration::ZERO);
        p.observe(&k, Some(5));
        // First goes now, the next waits half of max_pause (5 of 10 left), the next a bit more.
        assert_eq!(p.before_send(&o, &k), Duration::ZERO);
        let w = p.before_send(&o, &k);
        assert!(w > Duration::from_millis(450) && w <= Duration::from_millis(500), "{w:?}");
        let w2 = p.before_send(&o, &k);
        assert!(w2 > w + Duration::from_millis(500), "{w2:?}");
        p.block(&k, Duration::from_secs(3));
        assert!(p.before_send(&o, &k) > Duration::from_millis(2900));
    }
}

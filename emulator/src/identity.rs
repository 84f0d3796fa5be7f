//! A token service that behaves like the two Azure identity endpoints the worker uses,
//! plus the bearer-token check ARM performs on every request.
//!
//! Why this exists: the worker authenticates with the real `azure_identity` 1.x crate. For the
//! simulator to exercise that code unchanged, it has to answer the exact requests
//! `azure_identity` sends and reject tokens the way ARM does, so the worker's error handling
//! sees realistic failures (missing header, expired token, wrong audience, ...).
//!
//! Two issuers are served by [`Identity::router`]:
//!
//! * `GET /msi/token`: the App Service / Functions managed-identity endpoint (api-version
//!   `2019-08-01`), used by `ManagedIdentityCredential` when `IDENTITY_ENDPOINT` and
//!   `IDENTITY_HEADER` are set.
//! * `POST /{tenant}/oauth2/v2.0/token`: the Entra ID client-credentials endpoint, used by
//!   `ClientSecretCredential` and `WorkloadIdentityCredential` / `ClientAssertionCredential`
//!   with `AZURE_AUTHORITY_HOST` pointing at the simulator (which must then be served over
//!   HTTPS: `azure_identity` refuses plain-HTTP authority hosts; see [`crate::tls`]).
//!
//! Tokens are HS256 JWTs signed with a key that only lives in this process, so a token is
//! only valid for the simulator instance that issued it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Tenant reported for the managed identity. `IdentityOptions` has no tenant of its own for
/// the managed identity because App Service does not let the caller choose one either.
pub const MANAGED_IDENTITY_TENANT_ID: &str = "8c6f4a1e-3b52-4d7e-9f10-5a2b7c9d0e11";

/// Default client id of the managed identity: fixed so logs and test expectations are stable.
pub const DEFAULT_MANAGED_IDENTITY_CLIENT_ID: &str = "2f1c9e47-6b0d-4a83-b5e2-7d4c1a9f3e60";

/// The only api-version the App Service managed-identity source of `azure_identity` sends.
const MSI_API_VERSION: &str = "2019-08-01";

/// Audiences ARM accepts, in the order ARM lists them in its error message.
const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// Clock skew tolerated on `nbf`, as Entra-protected services do.
const NBF_SKEW_SECS: i64 = 300;

/// Token requests are tiny; anything larger is hostile or broken.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Real Entra tokens are a few KiB; refusing huge values bounds the work spent on garbage.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client registered for the client-credentials flow.
///
/// `Debug` is hand-written so the secret never ends up in logs.
#[derive(Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRegistration {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Configuration of the simulated identity platform.
///
/// `Debug` is hand-written so neither the identity header nor client secrets are printed.
#[derive(Clone)]
pub struct IdentityOptions {
    /// The `IDENTITY_HEADER` value the MSI endpoint requires in `X-IDENTITY-HEADER`.
    pub identity_header: String,
    /// The client id reported for (and accepted as `client_id` of) the managed identity.
    pub managed_identity_client_id: String,
    /// Applications that may use the client-credentials flow.
    pub clients: Vec<ClientRegistration>,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
}

impl Default for IdentityOptions {
    /// A random identity header (so two simulator runs never share a secret), the fixed
    /// [`DEFAULT_MANAGED_IDENTITY_CLIENT_ID`], no registered clients and a one-hour lifetime
    /// (the Azure default).
    fn default() -> Self {
        Self {
            identity_header: uuid::Uuid::new_v4().to_string(),
            managed_identity_client_id: DEFAULT_MANAGED_IDENTITY_CLIENT_ID.to_owned(),
            clients: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for IdentityOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityOptions")
            .field("identity_header", &"<redacted>")
            .field("managed_identity_client_id", &self.managed_identity_client_id)
            .field("clients", &self.clients)
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

/// Who an accepted ARM token was issued to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub object_id: String,
    pub client_id: String,
    pub tenant_id: String,
    pub audience: String,
}

/// Why ARM rejected a request: an HTTP status plus ARM's error code and message.
///
/// Converting it into a response yields ARM's `{"error":{"code","message"}}` body and the
/// `WWW-Authenticate` challenge ARM sends with 401s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl AuthFailure {
    fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self { status: 401, code, message: message.into() }
    }

    fn invalid_token() -> Self {
        Self::unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for AuthFailure {}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let challenge = HeaderValue::from_static(
            "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", \
             error_description=\"The access token is missing or invalid.\"",
        );
        (status, [(header::WWW_AUTHENTICATE, challenge)], Json(body)).into_response()
    }
}

/// The claims carried by issued tokens: the subset of an Entra access token ARM looks at.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Claims {
    aud: String,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    oid: String,
    appid: String,
    tid: String,
    idtyp: String,
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
}

/// The simulated identity platform: token endpoints plus ARM-side token validation.
pub struct Identity {
    opts: IdentityOptions,
    /// Per-process signing key; never leaves this struct.
    key: hmac::digest::Key<HmacSha256>,
    /// Tokens already verified, with their claims: a client sends the same token thousands of
    /// times, and re-verifying it is the largest cost of a simple ARM GET. Lifetime and
    /// audience are still checked on every use.
    verified: std::sync::Mutex<std::collections::HashMap<String, Arc<Claims>>>,
}

/// How many verified tokens are remembered before the cache is emptied.
const VERIFIED_CACHE_LIMIT: usize = 10_000;

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("opts", &self.opts).finish_non_exhaustive()
    }
}

impl Identity {
    /// Creates the identity platform with a fresh random signing key.
    pub fn new(opts: IdentityOptions) -> Arc<Self> {
        Arc::new(Self { opts, key: random_key(), verified: Default::default() })
    }

    /// The secret the MSI endpoint expects in `X-IDENTITY-HEADER` (export it as
    /// `IDENTITY_HEADER` for the worker).
    pub fn identity_header(&self) -> &str {
        &self.opts.identity_header
    }

    /// The object (principal) id of the managed identity, accepted as `object_id` /
    /// `principal_id` by the MSI endpoint and reported as `oid` in its tokens.
    pub fn managed_identity_object_id(&self) -> String {
        self.object_id_for(MANAGED_IDENTITY_TENANT_ID, &self.opts.managed_identity_client_id)
    }

    /// The identity routes: `GET /msi/token` and `POST /{tenant}/oauth2/v2.0/token`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/msi/token", get(msi_token))
            .route("/{tenant}/oauth2/v2.0/token", post(entra_token).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)))
            .with_state(Arc::clone(self))
    }

    /// Mints a token for `audience` (a resource, i.e. a scope without `/.default`).
    ///
    /// Returns the token and its expiry (`now` + the configured lifetime).
    pub fn issue(&self, audience: &str, client_id: &str, tenant_id: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let lifetime = chrono::Duration::from_std(self.opts.token_lifetime).unwrap_or_else(|_| chrono::Duration::hours(1));
        let expires = now + lifetime;
        let claims = Claims {
            aud: audience.to_owned(),
            iss: format!("https://sts.windows.net/{tenant_id}/"),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires.timestamp(),
            oid: self.object_id_for(tenant_id, client_id),
            appid: client_id.to_owned(),
            tid: tenant_id.to_owned(),
            idtyp: "app".to_owned(),
        };
        (self.sign(&claims), expires)
    }

    /// Validates an `Authorization` header value the way ARM does, returning the caller.
    pub fn check_arm_bearer(&self, authorization: Option<&str>, now: DateTime<Utc>) -> Result<Principal, AuthFailure> {
        let token = bearer_token(authorization)?;
        let cached = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = Arc::new(self.verify(token)?);
                let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= VERIFIED_CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(token.to_string(), c.clone());
                c
            }
        };
        check_lifetime(&claims, now)?;
        check_arm_audience(&claims.aud)?;
        Ok(Principal {
            object_id: claims.oid.clone(),
            client_id: claims.appid.clone(),
            tenant_id: claims.tid.clone(),
            audience: claims.aud.clone(),
        })
    }

    /// Like [`Identity::check_arm_bearer`], reading the header from a request's headers.
    /// A header that is not valid ASCII counts as badly formatted, as it would for ARM.
    pub fn check_arm_headers(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Principal, AuthFailure> {
        match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            None => self.check_arm_bearer(None, now),
            Some(Ok(value)) => self.check_arm_bearer(Some(value), now),
            Some(Err(_)) => Err(bad_format()),
        }
    }

    /// A stable, per-process object id for an application in a tenant, so the same caller
    /// always appears as the same principal (like a real service principal would).
    fn object_id_for(&self, tenant_id: &str, client_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"oid\0");
        mac.update(tenant_id.to_ascii_lowercase().as_bytes());
        mac.update(b"\0");
        mac.update(client_id.to_ascii_lowercase().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.iter_mut().zip(digest.iter()).for_each(|(d, s)| *d = *s);
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as hmac::digest::KeyInit>::new(&self.key)
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Serializing a struct of strings and integers cannot fail; an empty payload would
        // simply never validate.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks structure and signature; any defect is `InvalidAuthenticationToken`.
    fn verify(&self, token: &str) -> Result<Claims, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::invalid_token());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthFailure::invalid_token());
        };
        let signature = decode_part(signature)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature).map_err(|_| AuthFailure::invalid_token())?;
        let header: JwtHeader = serde_json::from_slice(&decode_part(header)?).map_err(|_| AuthFailure::invalid_token())?;
        if header.alg != "HS256" {
            return Err(AuthFailure::invalid_token());
        }
        serde_json::from_slice(&decode_part(payload)?).map_err(|_| AuthFailure::invalid_token())
    }

    fn lifetime_secs(&self) -> u64 {
        self.opts.token_lifetime.as_secs()
    }

    fn find_client(&self, tenant_id: &str, client_id: &str) -> Option<&ClientRegistration> {
        self.opts.clients.iter().find(|c| c.tenant_id.eq_ignore_ascii_case(tenant_id) && c.client_id.eq_ignore_ascii_case(client_id))
    }
}

/// 64 bytes (one SHA-256 block, the natural HMAC key size) from four v4 UUIDs, which are
/// drawn from the OS CSPRNG: plenty of entropy without adding a `rand` dependency.
fn random_key() -> hmac::digest::Key<HmacSha256> {
    let mut key = hmac::digest::Key::<HmacSha256>::default();
    let random = (0..4).flat_map(|_| uuid::Uuid::new_v4().into_bytes());
    key.iter_mut().zip(random).for_each(|(d, s)| *d = s);
    key
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthFailure> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthFailure::invalid_token())
}

fn bad_format() -> AuthFailure {
    AuthFailure::unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive, as in RFC 6750).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthFailure> {
    let Some(value) = authorization else {
        return Err(AuthFailure::unauthorized("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."));
    };
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(bad_format)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(bad_format());
    }
    Ok(token)
}

/// `exp` is strict (ARM does not forgive expired tokens); `nbf` tolerates clock skew.
fn check_lifetime(claims: &Claims, now: DateTime<Utc>) -> Result<(), AuthFailure> {
    let now_secs = now.timestamp();
    if now_secs >= claims.exp {
        return Err(AuthFailure::unauthorized(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                arm_time(DateTime::from_timestamp(claims.exp, 0).unwrap_or_default()),
                arm_time(now),
            ),
        ));
    }
    if claims.nbf > now_secs.saturating_add(NBF_SKEW_SECS) {
        return Err(AuthFailure::invalid_token());
    }
    Ok(())
}

/// ARM formats times in its messages the .NET way, e.g. `3/24/2021 11:27:49 AM`.
fn arm_time(t: DateTime<Utc>) -> String {
    t.format("%-m/%-d/%Y %-I:%M:%S %p").to_string()
}

fn check_arm_audience(audience: &str) -> Result<(), AuthFailure> {
    if ARM_AUDIENCES.contains(&audience) {
        return Ok(());
    }
    let allowed = ARM_AUDIENCES.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(",");
    Err(AuthFailure::unauthorized(
        "InvalidAuthenticationTokenAudience",
        format!(
            "The access token has been obtained for wrong audience or resource '{audience}'. \
             It should exactly match with one of the allowed audiences {allowed}."
        ),
    ))
}

/// Constant-time string comparison for shared secrets (length is not hidden, which is fine:
/// the secrets are random UUIDs or operator-chosen, not guessable by length).
fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `a=b&c=d` (query string or form body) without panicking on any input.
/// Returns `Err(name)` for a repeated parameter: Entra and App Service reject those, and
/// silently picking one would hide client bugs.
fn parse_params(input: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(input) {
        if params.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(k.into_owned());
        }
    }
    Ok(params)
}

// ---------------------------------------------------------------------------------------
// Managed identity (App Service 2019-08-01)
// ---------------------------------------------------------------------------------------

/// App Service answers errors with `{"statusCode":..,"message":..}`. `azure_identity` maps
/// 400 to "the requested identity has not been assigned to this resource" and shows the
/// body for other statuses.
fn msi_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({ "statusCode": status.as_u16(), "message": message.into() });
    (status, Json(body)).into_response()
}

async fn msi_token(State(identity): State<Arc<Identity>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let supplied = headers.get("x-identity-header").and_then(|v| v.to_str().ok());
    if !supplied.is_some_and(|s| secret_eq(s, identity.identity_header())) {
        return msi_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: the X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.",
        );
    }
    let params = match parse_params(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(name) => {
            return msi_error(StatusCode::BAD_REQUEST, format!("Query parameter '{name}' is repeated."));
        }
    };
    match identity.msi_grant(&params, Utc::now()) {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(message) => msi_error(StatusCode::BAD_REQUEST, message),
    }
}

impl Identity {
    /// Validates the MSI query and issues the token; `Err` carries a 400 message.
    fn msi_grant(&self, params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<serde_json::Value, String> {
        match params.get("api-version").map(String::as_str) {
            Some(MSI_API_VERSION) => {}
            Some(other) => return Err(format!("Unsupported api-version '{other}'.")),
            None => return Err("The api-version query parameter is required.".to_owned()),
        }
        let resource = params.get("resource").filter(|r| !r.trim().is_empty()).ok_or("The resource query parameter is required.")?;
        self.check_requested_identity(params)?;
        let client_id = &self.opts.managed_identity_client_id;
        let audience = resource.strip_suffix("/.default").unwrap_or(resource);
        let (token, expires) = self.issue(audience, client_id, MANAGED_IDENTITY_TENANT_ID, now);
        Ok(json!({
            "access_token": token,
            // A string, not a number: azure_identity deserializes it as String then parses.
            "expires_on": expires.timestamp().to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }))
    }

    /// A user-assigned identity selector must name *this* identity; App Service answers 400
    /// for identities not assigned to the app. Resource-id selectors (`mi_res_id`, or
    /// `msi_res_id` as azure_identity spells it) cannot be checked here and are accepted.
    fn check_requested_identity(&self, params: &HashMap<String, String>) -> Result<(), String> {
        if let Some(client_id) = params.get("client_id")
            && !client_id.eq_ignore_ascii_case(&self.opts.managed_identity_client_id)
        {
            return Err(format!("No managed identity with client_id '{client_id}' is assigned to this resource."));
        }
        let object_id = params.get("object_id").or_else(|| params.get("principal_id"));
        if let Some(object_id) = object_id
            && !object_id.eq_ignore_ascii_case(&self.managed_identity_object_id())
        {
            return Err(format!("No managed identity with object_id '{object_id}' is assigned to this resource."));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Entra ID client credentials (v2.0)
// ---------------------------------------------------------------------------------------

/// An Entra (AADSTS) error. Descriptions deliberately contain no characters JSON must
/// escape: some azure_identity versions deserialize `error_description` as a borrowed
/// `&str`, which fails on escaped strings and would hide the real error.
struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, text: impl fmt::Display) -> Self {
        Self { status, error, code, description: format!("AADSTS{code}: {text}") }
    }

    fn missing(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }

    fn malformed(text: impl fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", 9002313, text)
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
            "error_codes": [self.code],
            "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (self.status, Json(body)).into_response()
    }
}

async fn entra_token(State(identity): State<Arc<Identity>>, Path(tenant): Path<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let mut err = EntraError::malformed("Invalid request. Request is malformed or invalid.");
            err.status = rejection.status();
            return err.into_response();
        }
    };
    let result = parse_params(&body)
        .map_err(|name| EntraError::malformed(format!("The request body contains a duplicated parameter '{name}'.")))
        .and_then(|params| identity.client_credentials(&tenant, &params, Utc::now()));
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(err) => err.into_response(),
    }
}

impl Identity {
    /// The client-credentials grant: validate the request, authenticate the client, issue.
    fn client_credentials(
        &self,
        tenant: &str,
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, EntraError> {
        let param = |name: &str| params.get(name).filter(|v| !v.is_empty());
        let grant_type = param("grant_type").ok_or_else(|| EntraError::missing("grant_type"))?;
        if grant_type != "client_credentials" {
            return Err(EntraError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{grant_type}'."),
            ));
        }
        let client_id = param("client_id").ok_or_else(|| EntraError::missing("client_id"))?;
        let scope = param("scope").ok_or_else(|| EntraError::missing("scope"))?;
        let audience = audience_from_scope(scope)?;
        let client = self.find_client(tenant, client_id).ok_or_else(|| {
            EntraError::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant}'. This can happen if the application has not been installed by \
                     the administrator of the tenant or consented to by any user in the tenant."
                ),
            )
        })?;
        authenticate_client(client, params)?;
        let (token, _) = self.issue(audience, &client.client_id, &client.tenant_id, now);
        let expires_in = self.lifetime_secs().saturating_sub(1);
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }))
    }
}

/// Client-credential scopes are `<resource>/.default`; the token audience is the resource.
/// OIDC scopes (`openid`, `profile`, `offline_access`) may accompany it and are ignored.
fn audience_from_scope(scope: &str) -> Result<&str, EntraError> {
    let mut resources = scope.split_whitespace().filter(|s| !matches!(*s, "openid" | "profile" | "offline_access"));
    match (resources.next(), resources.next()) {
        (Some(single), None) => single.strip_suffix("/.default").ok_or_else(|| {
            EntraError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {single} is not valid. Client credential flows \
                     must have a scope value with /.default suffixed to the resource identifier \
                     (application ID URI)."
                ),
            )
        }),
        _ => Err(EntraError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter naming exactly one \
                 resource. The provided value for the input parameter 'scope' is not valid: {scope}"
            ),
        )),
    }
}

/// Accepts either the registered secret, or (workload identity) any non-empty JWT-bearer
/// client assertion: the simulator has no federated issuer to validate it against.
fn authenticate_client(client: &ClientRegistration, params: &HashMap<String, String>) -> Result<(), EntraError> {
    let param = |name: &str| params.get(name).filter(|v| !v.is_empty());
    if let Some(secret) = param("client_secret") {
        if secret_eq(secret, &client.client_secret) {
            return Ok(());
        }
        return Err(EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is \
                 the client secret value, not the client secret ID, for a secret added to app \
                 '{}'.",
                client.client_id
            ),
        ));
    }
    let assertion_type = param("client_assertion_type").map(String::as_str);
    if assertion_type == Some(JWT_BEARER_ASSERTION) && param("client_assertion").is_some() {
        return Ok(());
    }
    Err(EntraError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7000216,
        "'client_assertion', 'client_secret' or 'request' is required for the \
         'client_credentials' grant type.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Arc<Identity> {
        Identity::new(IdentityOptions::default())
    }

    #[test]
    fn issued_arm_token_validates() {
        let id = identity();
        let now = Utc::now();
        let (token, exp) = id.issue("https://management.azure.com/", "app", "tenant", now);
        assert!(exp > now);
        let p = id.check_arm_bearer(Some(&format!("Bearer {token}")), now).unwrap();
        assert_eq!(p.client_id, "app");
        assert_eq!(p.tenant_id, "tenant");
        assert_eq!(p.object_id, id.object_id_for("tenant", "app"));
    }

    #[test]
    fn header_format_errors() {
        let id = identity();
        let now = Utc::now();
        let missing = id.check_arm_bearer(None, now).unwrap_err();
        assert_eq!((missing.status, missing.code), (401, "AuthenticationFailed"));
        assert!(missing.message.contains("missing"));
        for bad in ["Basic abc", "Bearer", "Bearer ", "token", "Bearer a b"] {
            let err = id.check_arm_bearer(Some(bad), now).unwrap_err();
            assert!(err.message.contains("invalid format"), "{bad}: {err}");
        }
        for garbage in ["Bearer a.b.c", "Bearer ....", "Bearer é", "Bearer a.b.c.d"] {
            let err = id.check_arm_bearer(Some(garbage), now).unwrap_err();
            assert_eq!(err.code, "InvalidAuthenticationToken", "{garbage}");
        }
    }

    #[test]
    fn token_from_another_process_is_rejected() {
        let now = Utc::now();
        let (token, _) = identity().issue("https://management.azure.com", "a", "t", now);
        let err = identity().check_arm_bearer(Some(&format!("Bearer {token}")), now).unwrap_err();
        assert_eq!(err.code, "InvalidAuthenticationToken");
    }

    #[test]
    fn not_yet_valid_token_respects_skew() {
        let id = identity();
        let now = Utc::now();
        let (soon, _) = id.issue("https://management.azure.com", "a", "t", now + chrono::Duration::minutes(4));
        assert!(id.check_arm_bearer(Some(&format!("Bearer {soon}")), now).is_ok());
        let (later, _) = id.issue("https://management.azure.com", "a", "t", now + chrono::Duration::minutes(6));
        let err = id.check_arm_bearer(Some(&format!("Bearer {later}")), now).unwrap_err();
        assert_eq!(err.code, "InvalidAuthenticationToken");
    }

    #[test]
    fn scope_parsing() {
        assert_eq!(audience_from_scope("https://management.azure.com/.default").ok(), Some("https://management.azure.com"));
        assert_eq!(audience_from_scope("openid https://x/.default offline_access").ok(), Some("https://x"));
        assert_eq!(audience_from_scope("https://x").err().map(|e| e.code), Some(1002012));
        assert_eq!(audience_from_scope("a/.default b/.default").err().map(|e| e.code), Some(70011));
    }

    #[test]
    fn params_reject_duplicates_and_survive_garbage() {
        assert_eq!(parse_params(b"a=1&a=2"), Err("a".to_owned()));
        let parsed = parse_params(b"%zz=%ff&=&&x").unwrap();
        assert!(parsed.contains_key("x"));
    }

    #[test]
    fn arm_time_format() {
        let t = DateTime::from_timestamp(1_616_585_269, 0).unwrap();
        assert_eq!(arm_time(t), "3/24/2021 11:27:49 AM");
    }
}

//! Authentication of every `/api` request, and the body cap.
//!
//! Two modes, chosen by [`AuthConfig`](super::AuthConfig):
//!
//! - **API key**: the `x-api-key` header must equal one of the configured keys. Keys are
//!   compared through their SHA-256 digests in constant time, and every key is compared, so
//!   neither the length nor the position of a match shows in the timing.
//! - **HMAC**: the caller signs each request with its secret:
//!
//!   ```text
//!   x-sqlvm-date: 2026-11-27T10:00:00Z            (RFC 3339, or unix seconds)
//!   x-sqlvm-signature: {client-name}:{base64(HMAC-SHA256(secret, METHOD "\n" PATH_AND_QUERY "\n" DATE "\n" BODY))}
//!   ```
//!
//!   `METHOD` is upper case, `PATH_AND_QUERY` is the request target exactly as sent (for
//!   example `/api/workflows?status=failed`), `DATE` the header's value as sent, `BODY` the raw
//!   bytes (empty for a GET). A date further than `maxSkewSeconds` from our clock is refused, which
//!   bounds how long a captured request can be replayed; submissions should also carry an
//!   `Idempotency-Key`, so a replay inside the window starts nothing new. The signature is checked
//!   with `Mac::verify_slice` (constant time).
//!
//! The body is read here (HMAC needs it), capped at `maxBodyBytes` (413 beyond), and handed on as
//! bytes. Missing or wrong credentials get 401 with a `WWW-Authenticate` challenge and a message
//! that says what was wrong without echoing any secret.

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState, AuthConfig};
use sqlvm_backup_shared::resource_id::ResourceId;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const DATE_HEADER: &str = "x-sqlvm-date";
pub const SIGNATURE_HEADER: &str = "x-sqlvm-signature";

const API_KEY_CHALLENGE: &str = "ApiKey header=\"x-api-key\"";
const HMAC_CHALLENGE: &str = "HMAC-SHA256 headers=\"x-sqlvm-date x-sqlvm-signature\"";

/// Who is calling, once authenticated, and which vaults it may act on.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    vaults: Vec<String>,
}

impl Caller {
    pub fn new(name: impl Into<String>, vaults: Vec<String>) -> Self {
        Caller { name: name.into(), vaults }
    }

    /// Whether the caller may act on this vault. `None` (a vault not known yet) is allowed only to
    /// callers allowed every vault (`"*"`).
    pub fn may_act_on(&self, vault_id: Option<&str>) -> bool {
        if self.vaults.iter().any(|v| v == "*") {
            return true;
        }
        match vault_id {
            Some(id) => self.vaults.iter().any(|v| ResourceId::same(v, id)),
            None => false,
        }
    }
}

/// The middleware: authenticate, read the body with its cap, pass the [`Caller`] on.
pub(crate) async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let max = state.cfg.max_body_bytes;
    let (mut parts, body) = req.into_parts();
    let (caller, body) = match &state.cfg.auth {
        AuthConfig::ApiKey { keys } => {
            let presented = header_str(&parts.headers, API_KEY_HEADER, API_KEY_CHALLENGE)?;
            let digest = Sha256::digest(presented.as_bytes());
            let mut found: Option<usize> = None;
            for (i, k) in keys.iter().enumerate() {
                let same = ct_eq(&digest, &Sha256::digest(k.key.expose().as_bytes()));
                if same && !k.key.is_empty() && found.is_none() {
                    found = Some(i);
                }
            }
            let k = found.map(|i| &keys[i]).ok_or_else(|| ApiError::unauthorized(API_KEY_CHALLENGE, "the API key is not valid"))?;
            let body = read_body(&parts.headers, body, max).await?;
            (Caller::new(k.name.clone(), k.vaults.clone()), body)
        }
        AuthConfig::Hmac { clients, max_skew_seconds } => {
            let date = header_str(&parts.headers, DATE_HEADER, HMAC_CHALLENGE)?.to_string();
            let signature = header_str(&parts.headers, SIGNATURE_HEADER, HMAC_CHALLENGE)?;
            let (name, sig_b64) = signature
                .split_once(':')
                .ok_or_else(|| ApiError::unauthorized(HMAC_CHALLENGE, "x-sqlvm-signature must be {client-name}:{base64 signature}"))?;
            let sig = base64::engine::general_purpose::STANDARD
                .decode(sig_b64.trim())
                .map_err(|_| ApiError::unauthorized(HMAC_CHALLENGE, "the signature is not valid base64"))?;
            let client = clients
                .iter()
                .find(|c| c.name == name && !c.secret.is_empty())
                .ok_or_else(|| ApiError::unauthorized(HMAC_CHALLENGE, "the signature is not valid"))?;
            let at = parse_date(&date)
                .ok_or_else(|| ApiError::unauthorized(HMAC_CHALLENGE, "x-sqlvm-date must be an RFC 3339 date or unix seconds"))?;
            let skew = (Utc::now() - at).num_seconds().unsigned_abs();
            if skew > *max_skew_seconds {
                return Err(ApiError::unauthorized(
                    HMAC_CHALLENGE,
                    format!("x-sqlvm-date is {skew} s away from the server's clock (at most {max_skew_seconds} s allowed)"),
                ));
            }
            let body = read_body(&parts.headers, body, max).await?;
            let target = parts.extensions.get::<OriginalUri>().map(|u| u.0.clone()).unwrap_or_else(|| parts.uri.clone());
            let path_and_query = target.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let mut mac = Hmac::<Sha256>::new_from_slice(client.secret.expose().as_bytes())
                .map_err(|_| ApiError::unauthorized(HMAC_CHALLENGE, "the signature is not valid"))?;
            mac.update(&signing_prefix(parts.method.as_str(), path_and_query, &date));
            mac.update(&body);
            mac.verify_slice(&sig).map_err(|_| ApiError::unauthorized(HMAC_CHALLENGE, "the signature is not valid"))?;
            (Caller::new(client.name.clone(), client.vaults.clone()), body)
        }
    };
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// `METHOD "\n" PATH_AND_QUERY "\n" DATE "\n"`: what is signed before the body.
pub fn signing_prefix(method: &str, path_and_query: &str, date: &str) -> Vec<u8> {
    format!("{}\n{}\n{}\n", method.to_ascii_uppercase(), path_and_query, date).into_bytes()
}

/// The signature header value a client sends (used by the tests and by client tooling).
pub fn sign(client: &str, secret: &str, method: &str, path_and_query: &str, date: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(&signing_prefix(method, path_and_query, date));
    mac.update(body);
    format!("{client}:{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str, challenge: &'static str) -> Result<&'a str, ApiError> {
    match headers.get(name) {
        None => Err(ApiError::unauthorized(challenge, format!("the {name} header is missing"))),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::unauthorized(challenge, format!("the {name} header is empty or not ASCII"))),
    }
}

fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().and_then(|secs| DateTime::from_timestamp(secs, 0));
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", format!("the request body is larger than {max} bytes"))
}

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // `to_bytes` reports the cap through http-body-util's `LengthLimitError`, whose text is
        // the only part of it reachable without depending on that crate.
        if e.to_string().contains("length limit exceeded") {
            too_large(max)
        } else {
            ApiError::bad_request("InvalidBody", "the request body could not be read")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_vaults() {
        assert_eq!(parse_date("0"), DateTime::from_timestamp(0, 0));
        assert!(parse_date("2026-11-27T10:00:00Z").is_some());
        assert!(parse_date("2026-11-27T10:00:00+02:00").is_some());
        assert!(parse_date("yesterday").is_none());
        assert!(parse_date("").is_none());
        let v = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v1";
        let c = Caller::new("a", vec![v.to_string()]);
        assert!(c.may_act_on(Some(&v.to_uppercase())));
        assert!(!c.may_act_on(Some(&v.replace("v1", "v2"))));
        assert!(!c.may_act_on(None));
        assert!(Caller::new("b", vec!["*".into()]).may_act_on(None));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}

//! The ARM client's error: coarse kinds a caller branches on, each saying whether trying again
//! later can help (`is_retryable`). Whether a retry is *safe* for a non-idempotent request (the
//! backup trigger) is a separate question: see [`ArmError::Transport::sent`].

use std::time::Duration;

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum ArmError {
    /// ARM answered with a non-success status. `code`/`message` come from the ARM error body
    /// (`{"error":{"code","message"}}`, read leniently); `code` is `"Unknown"` without a body.
    /// Retryable for 408, 429 and 5xx.
    #[error("ARM answered {status} {code}: {message}")]
    Http { status: u16, code: String, message: String, retry_after: Option<Duration>, request_id: Option<String> },
    /// Still 429 after the client's retries (or the service asked for a wait longer than the
    /// client waits in-process). Retryable after `retry_after`.
    #[error("throttled by ARM (429) after {attempts} attempt(s); retry after {retry_after:?}")]
    Throttled { retry_after: Duration, attempts: u32 },
    /// No answer: connection refused, reset, timed out. `sent == false` means the request never
    /// reached the server (any request may be retried); `sent == true` means it may have been
    /// processed (do not blindly repeat a non-idempotent POST). Retryable.
    #[error("transport error (request {}): {message}", if *.sent { "may have reached the server" } else { "not sent" })]
    Transport { message: String, sent: bool },
    /// A success answer whose body is not the JSON expected. Not retryable.
    #[error("cannot decode ARM answer: {0}")]
    Decode(String),
    /// A tracking / nextLink URL that is not on the configured endpoint: nothing was sent and no
    /// token left the process. Not retryable.
    #[error("refusing to follow a URL outside the ARM endpoint: {0}")]
    UntrustedUrl(String),
    /// The credential could not produce a token. Retryable (token endpoints have outages), but
    /// usually a configuration problem.
    #[error("cannot get an ARM token: {0}")]
    Credential(String),
    /// The configured endpoint is not a usable base URL. Not retryable.
    #[error("invalid ARM endpoint: {0}")]
    InvalidEndpoint(String),
}

impl ArmError {
    /// The HTTP status, when ARM answered (429 for [`ArmError::Throttled`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Http { status, .. } => Some(*status),
            ArmError::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// The ARM error code, or a fixed name for errors without one.
    pub fn code(&self) -> &str {
        match self {
            ArmError::Http { code, .. } => code,
            ArmError::Throttled { .. } => "TooManyRequests",
            ArmError::Transport { .. } => "TransportError",
            ArmError::Decode(_) => "DecodeError",
            ArmError::UntrustedUrl(_) => "UntrustedUrl",
            ArmError::Credential(_) => "CredentialError",
            ArmError::InvalidEndpoint(_) => "InvalidEndpoint",
        }
    }

    /// Transient: trying again later may succeed (408, 429, 5xx, transport, credential).
    pub fn is_retryable(&self) -> bool {
        match self {
            ArmError::Http { status, .. } => is_retryable_status(*status),
            ArmError::Throttled { .. } | ArmError::Transport { .. } | ArmError::Credential(_) => true,
            ArmError::Decode(_) | ArmError::UntrustedUrl(_) | ArmError::InvalidEndpoint(_) => false,
        }
    }

    /// How long the service asked to wait, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Http { retry_after, .. } => *retry_after,
            ArmError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Statuses the client retries (and callers may retry later): 408, 429, 500, 502, 503, 504.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let e = ArmError::Http { status: 503, code: "ServiceUnavailable".into(), message: "x".into(), retry_after: None, request_id: None };
        assert!(e.is_retryable());
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.code(), "ServiceUnavailable");
        let e = ArmError::Http { status: 400, code: "BadRequest".into(), message: "x".into(), retry_after: None, request_id: None };
        assert!(!e.is_retryable());
        let t = ArmError::Throttled { retry_after: Duration::from_secs(3), attempts: 7 };
        assert_eq!((t.status(), t.retry_after(), t.is_retryable()), (Some(429), Some(Duration::from_secs(3)), true));
        assert!(!ArmError::UntrustedUrl("u".into()).is_retryable());
        assert!(ArmError::Transport { message: "m".into(), sent: true }.to_string().contains("may have reached"));
    }
}

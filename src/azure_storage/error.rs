//! The one error type of the storage clients.
//!
//! The SDK reports every failure as an `azure_core::Error`; callers of this module only need to
//! tell apart the outcomes they act on (a lost optimistic-concurrency race, a message or blob that
//! is gone, a message that can never be sent, a bad setting) from "the request failed", which they
//! retry or surface. Everything else is folded into [`StorageError::Request`] with the HTTP status
//! and the service's error code when known, so a log line still says what happened.

use azure_core::error::ErrorKind;

/// What went wrong talking to Azure Storage (or Azurite).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An optimistic-concurrency write lost: `If-Match` answered 412 (or the blob is gone).
    #[error("the blob changed concurrently (ETag mismatch)")]
    Conflict,
    /// The message or blob does not exist any more. For queue messages this also covers a stale
    /// pop receipt: Azure and Azurite answer 404 `MessageNotFound` when the message is gone and
    /// 400 `PopReceiptMismatch` when someone received or updated it since; both mean "this
    /// delivery no longer owns the message".
    #[error("not found")]
    NotFound,
    /// The message text is larger than a queue message may be, checked before sending.
    #[error("message too large: {0} bytes after base64 (limit 65536)")]
    TooLarge(usize),
    /// A URL, name, key or duration that can never work; retrying does not help.
    #[error("invalid storage setting: {0}")]
    Config(String),
    /// Any other failure: transport errors, throttling, 5xx, unexpected answers. The text holds
    /// the HTTP status and error code when known; SAS signatures are redacted from it.
    #[error("storage request failed: {0}")]
    Request(String),
}

/// The HTTP status and the service's error code (`x-ms-error-code`) of an SDK error, when it is
/// an HTTP answer.
pub(crate) fn http_failure(e: &azure_core::Error) -> Option<(u16, Option<&str>)> {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => Some((u16::from(*status), error_code.as_deref())),
        _ => None,
    }
}

/// Folds an SDK error into [`StorageError::Request`], describing it as `operation`.
pub(crate) fn request_error(operation: &str, e: &azure_core::Error) -> StorageError {
    let mut text = match http_failure(e) {
        Some((status, code)) => format!("{operation}: HTTP {status} {}: {}", code.unwrap_or("(no error code)"), summary(&e.to_string())),
        None => format!("{operation}: {}", e),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    // Transport errors name the request URL, and with an account key that URL carries the SAS.
    StorageError::Request(truncate(&redact_sas(&text), 1000))
}

/// The SDK's message for an HTTP failure is the status followed by the raw XML error body; the
/// body's `<Message>` (its first line: the rest is request id and time) is what a reader needs.
fn summary(s: &str) -> &str {
    if let Some(start) = s.find("<Message>") {
        let rest = &s[start + "<Message>".len()..];
        let end = rest.find("</Message>").unwrap_or(rest.len());
        return rest[..end].lines().next().unwrap_or("").trim();
    }
    s.lines().next().unwrap_or("").trim()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Replaces the value of every `sig=` query parameter: a SAS signature is a bearer secret and
/// must not reach a log line through an error message.
pub(crate) fn redact_sas(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = find_ascii_case_insensitive(rest, "sig=") {
        // Only a query parameter: at the start or after '?' or '&'.
        let boundary = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&');
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        if boundary {
            let end =
                rest.find(|c: char| c == '&' || c == '"' || c == '\'' || c == ')' || c == '>' || c.is_whitespace()).unwrap_or(rest.len());
            out.push_str("REDACTED");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_signatures_are_redacted() {
        let s = "error sending request for url (http://127.0.0.1:1/acct/q/messages?se=x&sig=ab%2Bcd%3D&sp=r): refused";
        let r = redact_sas(s);
        assert!(!r.contains("ab%2Bcd"), "{r}");
        assert!(r.contains("sig=REDACTED&sp=r"), "{r}");
        assert_eq!(redact_sas("?SIG=abc"), "?SIG=REDACTED");
        assert_eq!(redact_sas("no signature, just design=1"), "no signature, just design=1");
    }

    #[test]
    fn error_bodies_are_summarised_by_their_message() {
        let body = "403: <?xml version=\"1.0\"?>\n<Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:1\nTime:2</Message></Error>";
        assert_eq!(summary(body), "Server failed to authenticate the request.");
        assert_eq!(summary("404 Not Found\nmore"), "404 Not Found");
    }

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1001);
        assert!(t.ends_with('…'));
        assert!(t.len() <= 1001 + '…'.len_utf8());
    }
}

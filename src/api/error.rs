//! The API's errors: each is an HTTP status and a stable code, rendered as
//! `{"error":{"code","message"}}`. Conversions from the engine's errors live here and nowhere else.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlvm_backup_shared::engine::SubmitError;
use sqlvm_backup_shared::ports::BackendError;

/// An answer other than success. `www_authenticate` is set on 401s.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub(crate) www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code: Cow::Borrowed(code), message: message.into(), www_authenticate: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(challenge: &'static str, message: impl Into<String>) -> Self {
        ApiError { www_authenticate: Some(challenge), ..Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", message) }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    pub fn backend(e: &BackendError) -> Self {
        tracing::warn!(error = %e, "backend error in the api");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "BackendUnavailable", format!("the workflow store is unavailable: {e}"))
    }
}

/// Invalid input is the caller's to fix (400, with the engine's code); a backend failure is ours (503).
impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(f) => ApiError { code: Cow::Owned(f.code), ..Self::bad_request("InvalidRequest", f.message) },
            SubmitError::Backend(b) => Self::backend(&b),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: &self.code, message: &self.message } };
        let mut rsp = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.www_authenticate {
            rsp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        rsp
    }
}

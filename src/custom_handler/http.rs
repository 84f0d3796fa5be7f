//! `Protect`, `Backups`, `Workflow`: HTTP triggers answered by the very `/api` router `serve`
//! uses, so routes, validation and caller authentication (API keys or HMAC, per-caller vaults)
//! are one piece of code whichever way the worker runs. The function key the host checks
//! (`authLevel: function`) comes on top of that, not instead of it.
//!
//! The caller's status goes in `Outputs.res`; the host itself always gets 200, or it would turn
//! the answer into a bare 500.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request};
use axum::response::Response;
use tower::ServiceExt;

use super::{Handler, envelope, failed};
use crate::functions_host::{HttpInvocation, InvocationRequest, InvocationResponse};

/// Largest answer the API gives (a workflow list): far above any real one, and a bound all the same.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

pub(super) async fn forward(h: &Handler, request: &InvocationRequest, binding: &str) -> Response {
    let req = match HttpInvocation::from_request(request, binding) {
        Ok(r) => r,
        Err(e) => return envelope(InvocationResponse::http(400, &[], &error_body("InvalidRequest", &e.to_string()))),
    };
    let built = match to_request(&req) {
        Ok(r) => r,
        Err(why) => return envelope(InvocationResponse::http(400, &[], &error_body("InvalidRequest", &why))),
    };
    let answer = match h.api.clone().oneshot(built).await {
        Ok(a) => a,
        Err(never) => match never {},
    };
    let status = answer.status().as_u16();
    let headers: Vec<(String, String)> =
        answer.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string()))).collect();
    let body = match axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES).await {
        Ok(b) => b,
        Err(e) => return failed("http", &format!("reading the API's answer: {e}")),
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    envelope(InvocationResponse::http(status, &headers, &String::from_utf8_lossy(&body)))
}

fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

/// The request as the API router expects it: the path and query of the URL the caller used.
fn to_request(req: &HttpInvocation) -> Result<Request<Body>, String> {
    let url = url::Url::parse(&req.url).map_err(|e| format!("the request URL {:?} cannot be read: {e}", req.url))?;
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let method = Method::from_bytes(req.method.as_bytes()).map_err(|_| format!("{:?} is not an HTTP method", req.method))?;
    let mut builder = Request::builder().method(method).uri(target);
    for (name, value) in &req.headers {
        // Hop-by-hop and length headers describe the host's connection, not this request.
        if matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection" | "host") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            builder = builder.header(n, v);
        }
    }
    builder.body(Body::from(req.body.clone().unwrap_or_default())).map_err(|e| e.to_string())
}

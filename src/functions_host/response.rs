//! The response envelope the handler returns to the host (azure-functions.md §1.6).
//!
//! Always answer the host with HTTP 200, `Content-Type: application/json` and this envelope — never an empty
//! body (the host would wait until `functionTimeout`). How failure is signalled:
//! - **HTTP functions** answer 200 to the host even when the caller gets a 4xx/5xx: the caller's status goes in
//!   `Outputs.res.statusCode` ([`http_response`]). A non-2xx to the host becomes a bare 500 for the caller.
//! - **Queue functions** answer non-2xx to the host **only** to make it retry the message (it becomes visible
//!   again after `visibilityTimeout` and goes to `<queue>-poison` at `maxDequeueCount`); the host discards
//!   the body of a failed call, so write the reason to stderr.
//! - Event Grid: a non-2xx makes the extension answer 500, and Event Grid redelivers the whole batch.
//!
//! Output strings that are valid base64 are decoded to bytes by the host (§1.9): send JSON text through
//! output bindings, never pre-encoded base64.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

/// Name of the `http` output binding in our `function.json` files.
pub const HTTP_OUTPUT_BINDING: &str = "res";

/// `{"Outputs": {<output binding>: <value>}, "Logs": [...], "ReturnValue": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// One value per output binding name of `function.json`.
    #[serde(rename = "Outputs", default, deserialize_with = "null_default")]
    pub outputs: Map<String, Value>,
    /// Lines the host logs as information for this invocation.
    #[serde(rename = "Logs", default, deserialize_with = "null_default")]
    pub logs: Vec<String>,
    /// Used only by a `$return` output binding; `null` otherwise.
    #[serde(rename = "ReturnValue", default)]
    pub return_value: Value,
}

fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl InvocationResponse {
    /// A response whose `Outputs.res` is the given HTTP answer (see [`http_response`]).
    pub fn http(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Self::default().with_output(HTTP_OUTPUT_BINDING, http_response(status, headers, body))
    }

    /// Sets the value of an output binding.
    pub fn with_output(mut self, binding: &str, value: Value) -> Self {
        self.outputs.insert(binding.to_owned(), value);
        self
    }

    /// Adds an information log line.
    pub fn with_log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    /// The JSON body to send to the host.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a map of JSON values always serialises")
    }
}

/// The value of an `http` output binding: `{"statusCode": <number>, "headers": {<string>: <string>}, "body": <string>}`.
///
/// Header values are strings (the host calls `ToString()` on each); a `Content-Type` is always present
/// (`application/json` unless one is given), since a string body without one goes out as `text/plain`.
/// Remember that the host itself must get 200 even when `status` is a 4xx (module docs).
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &str) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        map.insert((*name).to_owned(), Value::String((*value).to_owned()));
    }
    if !map.keys().any(|name| name.eq_ignore_ascii_case("content-type")) {
        map.insert("Content-Type".to_owned(), Value::String("application/json".to_owned()));
    }
    json!({ "statusCode": status, "headers": map, "body": body })
}

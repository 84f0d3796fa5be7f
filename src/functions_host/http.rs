//! HTTP trigger in envelope mode: `Data.req` (azure-functions.md §1.5 "HTTP trigger", §2.1).
//!
//! `Data.req` = `{Url, Method, Query, Headers, Params, Identities, Body}`. Header values are **arrays** there
//! (they are plain strings in `Metadata.Headers`, which we do not read); `Query` is an object in the host
//! source but a string `"{}"` in the article; `Body` is the raw body as a string and is absent unless the
//! caller sent a positive `Content-Length`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::envelope::{EnvelopeError, InvocationRequest, decode_trigger_value, json_type};

/// One HTTP-triggered invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpInvocation {
    pub url: String,
    /// Upper case, as the host sends it.
    pub method: String,
    pub query: BTreeMap<String, String>,
    /// Lower-case names; several values of one header are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// Route parameters (`{id}` in `function.json`'s `route`).
    pub params: BTreeMap<String, String>,
    /// The raw body; `None` when the host sent none.
    pub body: Option<String>,
}

impl HttpInvocation {
    /// Decodes the request bound as `binding` (`"req"` in our `function.json` files).
    pub fn from_request(request: &InvocationRequest, binding: &str) -> Result<Self, EnvelopeError> {
        let value = decode_trigger_value(request.binding(binding)?)?;
        let Value::Object(req) = value else {
            return Err(EnvelopeError::UnexpectedShape { binding: binding.to_owned(), expected: "an object", found: json_type(&value) });
        };
        let text = |key: &str| req.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let headers =
            string_map(req.get("Headers"))?.into_iter().map(|(name, value)| (name.to_ascii_lowercase(), value)).collect::<BTreeMap<_, _>>();
        Ok(Self {
            url: text("Url"),
            method: text("Method").to_ascii_uppercase(),
            query: string_map(req.get("Query"))?,
            headers,
            params: string_map(req.get("Params"))?,
            body: match req.get("Body") {
                None | Some(Value::Null) => None,
                Some(Value::String(body)) => Some(body.clone()),
                // Not seen from the host, but an object body would be the parsed JSON: keep its text.
                Some(other) => Some(other.to_string()),
            },
        })
    }

    /// A header by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// A map of strings from an object (or an encoded object, or `"{}"`); arrays are joined, scalars stringified.
fn string_map(value: Option<&Value>) -> Result<BTreeMap<String, String>, EnvelopeError> {
    let Some(value) = value else { return Ok(BTreeMap::new()) };
    let map = match decode_trigger_value(value)? {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        Value::String(text) if text.trim().is_empty() => Map::new(),
        other => return Err(EnvelopeError::UnexpectedShape { binding: "req".to_owned(), expected: "an object", found: json_type(&other) }),
    };
    Ok(map.into_iter().map(|(key, value)| (key, flatten(&value))).collect())
}

fn flatten(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(flatten).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

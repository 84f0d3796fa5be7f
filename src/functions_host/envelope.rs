//! The request envelope the host POSTs to the handler, and the tolerant helpers every trigger shares.
//!
//! Shape: `{"Data": {<binding name>: <value>}, "Metadata": {<trigger binding data>, "sys": {...}}}`, PascalCase
//! (Newtonsoft naming of the host's `HttpScriptInvocationContext`; azure-functions.md §1.5). Decoding rules
//! follow §1.9: missing maps are empty, unknown keys are ignored, string values may carry one extra layer of
//! JSON encoding, numbers may arrive as strings.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Why an envelope or one of its values could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The request body is not a JSON envelope.
    #[error("invocation envelope is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    /// `Data` has no value under the binding name of `function.json`.
    #[error("binding `{0}` is missing from Data")]
    MissingBinding(String),
    /// A value has a JSON type the trigger never produces.
    #[error("binding `{binding}`: expected {expected}, found {found}")]
    UnexpectedShape { binding: String, expected: &'static str, found: &'static str },
    /// A string is still JSON-encoded after the two rounds of decoding the host can add.
    #[error("value is JSON-encoded more than twice")]
    TooDeeplyEncoded,
    /// A metadata value should be a number (or a numeric string) and is not.
    #[error("metadata `{key}` is not a non-negative integer: {value}")]
    NotANumber { key: String, value: String },
    /// A timestamp is not ISO 8601.
    #[error("`{field}` is not an ISO 8601 timestamp: {value}")]
    InvalidTimestamp { field: &'static str, value: String },
}

/// The envelope of one invocation. `Data` holds one value per input binding (the trigger included), named as
/// in `function.json`; `Metadata` holds the trigger's binding data plus `sys` (`MethodName`, `UtcNow`, `RandGuid`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default, deserialize_with = "map_or_null")]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default, deserialize_with = "map_or_null")]
    pub metadata: Map<String, Value>,
}

impl InvocationRequest {
    /// Parses a request body as sent by the host.
    pub fn from_slice(body: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// The value of an input binding, or [`EnvelopeError::MissingBinding`].
    pub fn binding(&self, name: &str) -> Result<&Value, EnvelopeError> {
        match self.data.get(name) {
            None | Some(Value::Null) => Err(EnvelopeError::MissingBinding(name.to_owned())),
            Some(value) => Ok(value),
        }
    }

    /// `Metadata.sys.MethodName`: the function name, when the host sent it.
    pub fn method_name(&self) -> Option<String> {
        self.metadata.get("sys").and_then(Value::as_object).and_then(|sys| metadata_str(sys, "MethodName"))
    }
}

/// `null` or a missing key gives an empty map; any other non-object is an error.
fn map_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Undoes the host's string encoding of a trigger value (§1.5, §1.9).
///
/// A JSON string is decoded as JSON; if the result is still a string it is decoded once more. Decoding stops
/// at an object or array (or any non-string). A string that is not JSON stays a string (e.g. the base64 of
/// a `dataType: binary` queue trigger). A string that still holds JSON text (a string, object or array) after
/// two rounds is [`EnvelopeError::TooDeeplyEncoded`].
pub fn decode_trigger_value(value: &Value) -> Result<Value, EnvelopeError> {
    let mut current = value.clone();
    for _ in 0..2 {
        let Value::String(text) = &current else { return Ok(current) };
        match serde_json::from_str::<Value>(text) {
            Ok(decoded) => current = decoded,
            Err(_) => return Ok(current),
        }
    }
    if let Value::String(text) = &current
        && matches!(serde_json::from_str::<Value>(text), Ok(Value::String(_) | Value::Object(_) | Value::Array(_)))
    {
        return Err(EnvelopeError::TooDeeplyEncoded);
    }
    Ok(current)
}

/// A metadata value as a `u32`: a JSON number, or a numeric string (the host sends `"DequeueCount": "1"`,
/// the docs show `1`; §1.5 queue trigger). `Ok(None)` when the key is missing or null.
pub fn metadata_u32(metadata: &Map<String, Value>, key: &str) -> Result<Option<u32>, EnvelopeError> {
    let not_a_number = |value: &Value| EnvelopeError::NotANumber { key: key.to_owned(), value: value.to_string() };
    match metadata.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| not_a_number(value)),
        Some(value @ Value::String(_)) => {
            let text = metadata_str(metadata, key).unwrap_or_default();
            text.trim().parse::<u32>().map(Some).map_err(|_| not_a_number(value))
        }
        Some(value) => Err(not_a_number(value)),
    }
}

/// A metadata value as a string, without the extra quotes the host leaves in `Id` and `PopReceipt`
/// (`"Id": "\"5b0e…\""`; §1.5 queue trigger). A quoted string is JSON-decoded (or, failing that, loses one
/// layer of quotes); a number becomes its decimal text; missing, null, objects and arrays give `None`.
pub fn metadata_str(metadata: &Map<String, Value>, key: &str) -> Option<String> {
    match metadata.get(key)? {
        Value::String(text) => Some(unquote(text)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn unquote(text: &str) -> String {
    if let Ok(Value::String(inner)) = serde_json::from_str::<Value>(text) {
        return inner;
    }
    match text.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => text.to_owned(),
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_up_to_two_layers() {
        let twice = Value::String(serde_json::to_string(&serde_json::to_string(&json!({"a": 1})).unwrap()).unwrap());
        assert_eq!(decode_trigger_value(&twice).unwrap(), json!({"a": 1}));
        assert_eq!(decode_trigger_value(&json!("{\"a\":1}")).unwrap(), json!({"a": 1}));
        assert_eq!(decode_trigger_value(&json!({"a": 1})).unwrap(), json!({"a": 1}));
        assert_eq!(decode_trigger_value(&json!("eyJhIjoxfQ==")).unwrap(), json!("eyJhIjoxfQ=="));
        let thrice = Value::String(serde_json::to_string(&twice).unwrap());
        assert!(matches!(decode_trigger_value(&thrice), Err(EnvelopeError::TooDeeplyEncoded)));
    }

    #[test]
    fn metadata_numbers_and_quoted_strings() {
        let md = json!({"a": "1", "b": 2, "c": "x", "d": "\"q\"", "e": "\"7\"", "f": -1}).as_object().unwrap().clone();
        assert_eq!(metadata_u32(&md, "a").unwrap(), Some(1));
        assert_eq!(metadata_u32(&md, "b").unwrap(), Some(2));
        assert_eq!(metadata_u32(&md, "e").unwrap(), Some(7));
        assert_eq!(metadata_u32(&md, "z").unwrap(), None);
        assert!(metadata_u32(&md, "c").is_err());
        assert!(metadata_u32(&md, "f").is_err());
        assert_eq!(metadata_str(&md, "d").as_deref(), Some("q"));
        assert_eq!(metadata_str(&md, "c").as_deref(), Some("x"));
        assert_eq!(metadata_str(&md, "b").as_deref(), Some("2"));
    }

    #[test]
    fn missing_or_null_maps_are_empty() {
        let req: InvocationRequest = serde_json::from_str(r#"{"Data": null, "Extra": 1}"#).unwrap();
        assert!(req.data.is_empty() && req.metadata.is_empty());
    }
}

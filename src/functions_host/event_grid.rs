//! Event Grid events, as the Event Grid trigger delivers them or as a plain webhook body.
//!
//! Trigger (azure-functions.md §1.5 "Event Grid trigger", §2.4, §5.4): `Data.<binding>` is one event, as an
//! object — or, by the host's default-type logic, possibly a (double-)encoded JSON string; an array is
//! accepted too. The trigger answers the subscription-validation handshake itself.
//!
//! Webhook (§5.2): an HTTP-triggered function receives the Event Grid body (an array, Event Grid schema) in
//! `Data.req.Body` and must answer `SubscriptionValidation` with `{"validationResponse": <code>}` and status 200.

use serde_json::Value;

use super::envelope::{EnvelopeError, InvocationRequest, decode_trigger_value, json_type};
use super::http::HttpInvocation;

/// `eventType` of the subscription-validation event (§5.2).
pub const SUBSCRIPTION_VALIDATION_EVENT: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";

/// The events of one invocation, each a JSON object in Event Grid schema (camelCase keys).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventGridInvocation {
    pub events: Vec<Value>,
}

impl EventGridInvocation {
    /// Decodes the Event Grid trigger value named `binding` (`"event"` in `OnVmWrite/function.json`).
    pub fn from_request(request: &InvocationRequest, binding: &str) -> Result<Self, EnvelopeError> {
        Self::from_value(request.binding(binding)?, binding)
    }

    /// Decodes a webhook body received through an HTTP trigger (§5.2). A request without a body has no events.
    pub fn from_http(http: &HttpInvocation) -> Result<Self, EnvelopeError> {
        match &http.body {
            None => Ok(Self::default()),
            Some(body) => Self::from_value(&Value::String(body.clone()), "req.Body"),
        }
    }

    fn from_value(value: &Value, binding: &str) -> Result<Self, EnvelopeError> {
        let shape_error = |found: &Value| EnvelopeError::UnexpectedShape {
            binding: binding.to_owned(),
            expected: "an event object or an array of them",
            found: json_type(found),
        };
        let events = match decode_trigger_value(value)? {
            event @ Value::Object(_) => vec![event],
            Value::Array(items) => items,
            other => return Err(shape_error(&other)),
        };
        if let Some(bad) = events.iter().find(|event| !event.is_object()) {
            return Err(shape_error(bad));
        }
        Ok(Self { events })
    }

    /// The `validationCode` of a subscription-validation event, if this invocation carries one (§5.2).
    pub fn validation_code(&self) -> Option<&str> {
        self.events
            .iter()
            .find(|event| event_type(event) == Some(SUBSCRIPTION_VALIDATION_EVENT))
            .and_then(|event| event.pointer("/data/validationCode"))
            .and_then(Value::as_str)
    }
}

/// `eventType` (Event Grid schema) or `type` (CloudEvents, §5.3) of an event.
pub fn event_type(event: &Value) -> Option<&str> {
    event.get("eventType").or_else(|| event.get("type")).and_then(Value::as_str)
}

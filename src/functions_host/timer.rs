//! Timer trigger (azure-functions.md §1.5 "Timer trigger", §2.3).
//!
//! `Data.<binding>` = `{"Schedule": {"AdjustForDST": true}, "ScheduleStatus": {"Last", "Next", "LastUpdated"} | null,
//! "IsPastDue": bool}` — an object (a .NET POCO), though a string-encoded one is accepted too. `ScheduleStatus`
//! is `null` when the monitor has no record yet (seen in a payload captured from a real host).

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde_json::Value;

use super::envelope::{EnvelopeError, InvocationRequest, decode_trigger_value, json_type};

/// One timer-triggered invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerInvocation {
    /// The run is later than scheduled (e.g. after a restart).
    pub is_past_due: bool,
    /// Previous scheduled occurrence, when the host knows it.
    pub last: Option<DateTime<Utc>>,
    /// Next scheduled occurrence, when the host knows it.
    pub next: Option<DateTime<Utc>>,
}

impl TimerInvocation {
    pub fn from_request(request: &InvocationRequest, binding: &str) -> Result<Self, EnvelopeError> {
        let value = decode_trigger_value(request.binding(binding)?)?;
        let Value::Object(timer) = value else {
            return Err(EnvelopeError::UnexpectedShape { binding: binding.to_owned(), expected: "an object", found: json_type(&value) });
        };
        let status = timer.get("ScheduleStatus").and_then(Value::as_object);
        let time = |field: &'static str| -> Result<Option<DateTime<Utc>>, EnvelopeError> {
            match status.and_then(|s| s.get(field)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => parse_time(field, text),
                Some(other) => Err(EnvelopeError::InvalidTimestamp { field, value: other.to_string() }),
            }
        };
        Ok(Self {
            is_past_due: match timer.get("IsPastDue") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            },
            last: time("Last")?,
            next: time("Next")?,
        })
    }
}

/// ISO 8601 with an offset; without one (.NET `DateTimeKind.Unspecified`) it is read as UTC. `0001-01-01…`
/// (.NET `DateTime.MinValue`, "never") is `None`.
fn parse_time(field: &'static str, text: &str) -> Result<Option<DateTime<Utc>>, EnvelopeError> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc()))
        .map_err(|_| EnvelopeError::InvalidTimestamp { field, value: text.to_owned() })?;
    Ok((parsed.year() > 1).then_some(parsed))
}

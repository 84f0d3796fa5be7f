//! What a step message looks like on an Azure Storage queue, and how a wait longer than the
//! queue allows is carried.
//!
//! A message can be hidden for at most 7 days (`visibilitytimeout` ≤ 604800 s). A longer wait is
//! sent as a *hold*: `{"hold": {"until": <RFC 3339>, "message": <step message>}}`, hidden for 7
//! days; whoever receives it before `until` sends it on again for what is left and drops this
//! copy, and once `until` has passed it is the step message. Everything else on the queue is
//! the step message JSON itself, so messages stay readable in Storage Explorer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::queue::MAX_VISIBILITY;
use sqlvm_backup_shared::workflow::message::StepMessage;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldEnvelope {
    hold: Hold,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hold {
    until: DateTime<Utc>,
    message: StepMessage,
}

/// A queue message read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// A step to run now.
    Step(StepMessage),
    /// A step whose wait is not over: send `text` again, hidden for `remaining`.
    Held { text: String, remaining: Duration },
}

#[derive(Debug, thiserror::Error)]
#[error("not a step message: {0}")]
pub struct WireError(pub String);

/// The text to send for `message` after `delay`, and how long to hide it.
pub fn encode(message: &StepMessage, delay: Duration, now: DateTime<Utc>) -> (String, Duration) {
    if delay <= MAX_VISIBILITY {
        return (serde_json::to_string(message).expect("a step message always serialises"), delay);
    }
    let until = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    hold_text(message, until)
}

fn hold_text(message: &StepMessage, until: DateTime<Utc>) -> (String, Duration) {
    let text = serde_json::to_string(&HoldEnvelope { hold: Hold { until, message: message.clone() } }).expect("a hold always serialises");
    (text, MAX_VISIBILITY)
}

/// Read a queue message's text.
pub fn decode(text: &str, now: DateTime<Utc>) -> Result<Wire, WireError> {
    if let Ok(step) = serde_json::from_str::<StepMessage>(text) {
        return Ok(Wire::Step(step));
    }
    match serde_json::from_str::<HoldEnvelope>(text) {
        Ok(HoldEnvelope { hold }) if hold.until <= now => Ok(Wire::Step(hold.message)),
        Ok(HoldEnvelope { hold }) => {
            let remaining = (hold.until - now).to_std().unwrap_or(Duration::ZERO);
            if remaining <= MAX_VISIBILITY {
                Ok(Wire::Held { text: serde_json::to_string(&hold.message).expect("serialises"), remaining })
            } else {
                let (text, hide) = hold_text(&hold.message, hold.until);
                Ok(Wire::Held { text, remaining: hide })
            }
        }
        Err(_) => {
            // Report why the step message itself did not parse: that is the useful error.
            let why = serde_json::from_str::<StepMessage>(text).err().map(|e| e.to_string()).unwrap_or_default();
            Err(WireError(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlvm_backup_shared::workflow::message::{MESSAGE_VERSION, Step};

    fn msg() -> StepMessage {
        StepMessage {
            v: MESSAGE_VERSION,
            workflow_id: "backup-1".into(),
            step_id: "backup-1/-/selectItems/start".into(),
            step: Step::SelectItems,
            child: None,
            tracking_url: None,
            attempt: 0,
            wait_ms: None,
        }
    }

    #[test]
    fn a_short_wait_is_the_message_itself() {
        let now = Utc::now();
        let (text, hide) = encode(&msg(), Duration::from_secs(30), now);
        assert_eq!(hide, Duration::from_secs(30));
        assert_eq!(decode(&text, now).unwrap(), Wire::Step(msg()));
    }

    #[test]
    fn a_wait_over_seven_days_is_held_and_sent_on_until_it_is_over() {
        let now = Utc::now();
        let (text, hide) = encode(&msg(), Duration::from_secs(10 * 86400), now);
        assert_eq!(hide, MAX_VISIBILITY);
        // Received after 7 days: 3 days are left, sent on as the plain message.
        let later = now + chrono::Duration::days(7);
        match decode(&text, later).unwrap() {
            Wire::Held { text, remaining } => {
                assert_eq!(remaining, Duration::from_secs(3 * 86400));
                assert_eq!(decode(&text, later).unwrap(), Wire::Step(msg()));
            }
            other => panic!("expected a hold, got {other:?}"),
        }
        // Received when the wait is over: the step runs.
        assert_eq!(decode(&text, now + chrono::Duration::days(10)).unwrap(), Wire::Step(msg()));
        // A 20-day wait received after 7 days is held again for another 7.
        let (text, _) = encode(&msg(), Duration::from_secs(20 * 86400), now);
        match decode(&text, later).unwrap() {
            Wire::Held { text: again, remaining } => {
                assert_eq!(remaining, MAX_VISIBILITY);
                assert!(again.contains("\"hold\""));
            }
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        let err = decode(r#"{"v":1,"workflowId":"x"}"#, Utc::now()).unwrap_err();
        assert!(err.0.contains("missing field"), "{err}");
        assert!(decode("not json", Utc::now()).is_err());
    }
}

//! `RunStep`: one step message, delivered by the host's queue trigger.
//!
//! The host deletes the message when the handler answers 2xx and makes it visible again after
//! `visibilityTimeout` otherwise, moving it to `<queue>-poison` once `DequeueCount` reaches
//! `maxDequeueCount`. So: a step that ran (or was a duplicate, or was moved aside by us) answers
//! 200; a step that failed answers 500 to be retried; and on the last attempt the workflow is
//! first recorded as failed with the reason, so a message the host then poisons never leaves a
//! workflow silently running. `requeue-poison` puts poisoned messages back once fixed.

use axum::response::Response;

use super::{Handler, envelope, failed};
use crate::azure_storage::backend::HostMessage;
use crate::functions_host::{InvocationRequest, InvocationResponse, QueueInvocation};
use sqlvm_backup_shared::workflow::failure::{Failure, FailureClass};

pub(super) async fn run(h: &Handler, request: &InvocationRequest, binding: &str) -> Response {
    let q = match QueueInvocation::from_request(request, binding) {
        Ok(q) => q,
        Err(e) => return failed("RunStep", &format!("the queue message could not be read: {e}")),
    };
    let delivery = match h.storage.host_message(&q.message_text, q.dequeue_count).await {
        Ok(HostMessage::Step(d)) => d,
        Ok(HostMessage::Held) => return envelope(InvocationResponse::default().with_log("waiting: sent on for the rest of its delay")),
        Ok(HostMessage::Poisoned(why)) => {
            return envelope(InvocationResponse::default().with_log(format!("moved to the poison queue: {why}")));
        }
        Err(e) => return failed("RunStep", &format!("storage: {e}")),
    };
    let last = q.dequeue_count >= h.max_dequeue_count;
    let workflow = delivery.message.workflow_id.clone();
    let step = delivery.message.step.name();
    // In a task of its own so that a panicking step is an answer to the host, not a dropped
    // connection.
    let engine = h.engine.clone();
    let attempt = format!("attempt {} of {}", q.dequeue_count, h.max_dequeue_count);
    let (why, code) = match tokio::spawn(async move { engine.run_delivery(delivery).await }).await {
        Ok(Ok(outcome)) => return envelope(InvocationResponse::default().with_log(format!("{workflow} {step}: {outcome:?}"))),
        Ok(Err(e)) => (format!("step {step} failed on {attempt}: {e}"), "StepFailedRepeatedly"),
        Err(panic) => (format!("step {step} panicked on {attempt}: {panic}"), "StepPanicked"),
    };
    if last {
        let f = Failure::local(code, format!("{why}; the message goes to the poison queue"), FailureClass::Retryable);
        h.engine.fail_workflow(&workflow, f).await;
    }
    failed("RunStep", &why)
}

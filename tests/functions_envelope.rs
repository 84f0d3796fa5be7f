//! Decoding of the Azure Functions custom-handler payloads (`src/functions_host/`) against fixtures.
//!
//! Every fixture in `tests/fixtures/functions/` reproduces a shape of `../shared/docs/azure-functions.md`
//! (its `_source` key names the section; the decoder ignores it), including the traps of §1.9/§9: the queue
//! message encoded twice, quoted `Id`/`PopReceipt`, `DequeueCount` as a string, headers as arrays, a missing
//! body, a null `ScheduleStatus`, an Event Grid event as an encoded string, the validation handshake.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use sqlvm_backup::functions_host::envelope::EnvelopeError;
use sqlvm_backup::functions_host::{
    EventGridInvocation, HttpInvocation, InvocationRequest, InvocationResponse, QUEUE_MESSAGE_LIMIT, QueueInvocation, TimerInvocation,
    encode_for_queue, fits_queue_limit, http_response,
};

const STEP_MESSAGE: &str = r#"{"workflowId":"wf-7f3c","step":"PollRegistration","attempt":3}"#;
const VM_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-sql-prod/providers/Microsoft.Compute/virtualMachines/sqlvm01";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads a fixture and checks the envelope round trip: parse → serialise → parse gives the same request.
fn fixture(name: &str) -> InvocationRequest {
    let path = root().join("tests/fixtures/functions").join(name);
    let raw = std::fs::read(&path).unwrap();
    let source = read_json(&path);
    assert!(source["_source"].as_str().is_some_and(|s| s.contains("azure-functions.md §")), "{name}: _source names the doc section");
    let request = InvocationRequest::from_slice(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = InvocationRequest::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
    assert_eq!(again, request, "{name}: envelope round trip");
    assert_eq!(Value::Object(request.data.clone()), source["Data"], "{name}: Data kept verbatim");
    request
}

// --- queue trigger ---------------------------------------------------------------------------------------

fn assert_step_message(invocation: &QueueInvocation) {
    let message: Value = serde_json::from_str(&invocation.message_text).unwrap();
    assert_eq!(message, serde_json::from_str::<Value>(STEP_MESSAGE).unwrap());
}

#[test]
fn queue_message_encoded_twice_with_quoted_metadata() {
    // §1.5 queue trigger: string value JSON-encoded once more, "DequeueCount": "1", quoted Id/PopReceipt.
    let request = fixture("queue_double_encoded.json");
    let queue = QueueInvocation::from_request(&request, "step").unwrap();
    assert_eq!(
        queue,
        QueueInvocation {
            message_text: STEP_MESSAGE.to_owned(),
            dequeue_count: 1,
            id: Some("5b0e6d0c-3f3e-4b8e-9a57-6f1d2c4e8a90".to_owned()),
            pop_receipt: Some("AgAAAAMAAAAAAAAAmZ0o8c1h3QE=".to_owned()),
            insertion_time: Some("2026-11-27T10:15:00+00:00".to_owned()),
        }
    );
    assert_eq!(request.method_name().as_deref(), Some("RunStep"));
    // Round trip: the message re-encoded the way the host does decodes to the same invocation.
    let mut reencoded = request.clone();
    reencoded.data.insert("step".into(), Value::String(serde_json::to_string(&queue.message_text).unwrap()));
    assert_eq!(QueueInvocation::from_request(&reencoded, "step").unwrap(), queue);
}

#[test]
fn queue_message_as_binary_base64() {
    // §2.2 "dataType": "binary": one base64 string; metadata as the docs show it (number, no quotes).
    let request = fixture("queue_binary.json");
    let queue = QueueInvocation::from_request(&request, "step").unwrap();
    assert_eq!(queue.message_text, STEP_MESSAGE);
    assert_eq!(queue.dequeue_count, 3);
    assert_eq!(queue.id.as_deref(), Some("5b0e6d0c-3f3e-4b8e-9a57-6f1d2c4e8a90"));
    assert_eq!(queue.pop_receipt.as_deref(), Some("AgAAAAMAAAAAAAAAmZ0o8c1h3QE="));
    assert_eq!(request.data["step"], Value::String(encode_for_queue(STEP_MESSAGE)), "fixture is encode_for_queue's output");
}

#[test]
fn queue_message_already_an_object() {
    // §1.9: decoding stops at an object.
    let request = fixture("queue_object.json");
    let queue = QueueInvocation::from_request(&request, "step").unwrap();
    assert_step_message(&queue);
    assert_eq!(queue.dequeue_count, 1);
}

#[test]
fn queue_errors_name_the_binding() {
    let request = fixture("queue_double_encoded.json");
    assert!(matches!(QueueInvocation::from_request(&request, "nextStep"), Err(EnvelopeError::MissingBinding(b)) if b == "nextStep"));
    let mut bad = request.clone();
    bad.data.insert("step".into(), json!(42));
    assert!(matches!(QueueInvocation::from_request(&bad, "step"), Err(EnvelopeError::UnexpectedShape { .. })));
    bad.data.insert("step".into(), json!(STEP_MESSAGE));
    bad.metadata.insert("DequeueCount".into(), json!("often"));
    assert!(matches!(QueueInvocation::from_request(&bad, "step"), Err(EnvelopeError::NotANumber { .. })));
    bad.metadata.remove("DequeueCount");
    assert_eq!(QueueInvocation::from_request(&bad, "step").unwrap().dequeue_count, 1, "single-encoded (docs) form, count defaults to 1");
}

#[test]
fn queue_encoding_round_trip_and_size_limit() {
    let encoded = encode_for_queue(STEP_MESSAGE);
    assert_eq!(String::from_utf8(STANDARD.decode(&encoded).unwrap()).unwrap(), STEP_MESSAGE);
    assert!(fits_queue_limit(&encoded));
    // 48 KiB of raw JSON is exactly 64 KiB of base64; one more byte is over.
    let at_limit = "x".repeat(48 * 1024);
    assert_eq!(encode_for_queue(&at_limit).len(), QUEUE_MESSAGE_LIMIT);
    assert!(fits_queue_limit(&encode_for_queue(&at_limit)));
    assert!(!fits_queue_limit(&encode_for_queue(&format!("{at_limit}x"))));
}

// --- HTTP trigger ----------------------------------------------------------------------------------------

#[test]
fn http_post_with_array_headers_and_body() {
    let request = fixture("http_post.json");
    let http = HttpInvocation::from_request(&request, "req").unwrap();
    assert_eq!(http.url, "https://fn-sqlbackup.azurewebsites.net/api/protect?dryRun=true");
    assert_eq!(http.method, "POST");
    assert_eq!(http.query.get("dryRun").map(String::as_str), Some("true"));
    assert_eq!(http.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(http.header("Host"), Some("fn-sqlbackup.azurewebsites.net"));
    assert_eq!(http.header("accept"), Some("application/json, text/plain"), "several values are joined");
    assert!(http.params.is_empty());
    let body: Value = serde_json::from_str(http.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"policyName": "SqlHourlyLog", "vaultName": "rsv-prod"}));
}

#[test]
fn http_get_without_body_and_query_as_string() {
    let request = fixture("http_no_body.json");
    let http = HttpInvocation::from_request(&request, "req").unwrap();
    assert_eq!(http.method, "GET");
    assert_eq!(http.body, None);
    assert!(http.query.is_empty(), "\"Query\": \"{{}}\" is an empty map");
    assert_eq!(http.params.get("id").map(String::as_str), Some("wf-7f3c"));
}

// --- timer trigger ---------------------------------------------------------------------------------------

#[test]
fn timer_with_schedule_status() {
    let timer = TimerInvocation::from_request(&fixture("timer.json"), "timer").unwrap();
    assert_eq!(
        timer,
        TimerInvocation {
            is_past_due: false,
            last: Some(Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()),
            next: Some(Utc.with_ymd_and_hms(2026, 11, 27, 10, 5, 0).unwrap()),
        }
    );
}

#[test]
fn timer_with_null_schedule_status() {
    let timer = TimerInvocation::from_request(&fixture("timer_null_status.json"), "timer").unwrap();
    assert_eq!(timer, TimerInvocation { is_past_due: true, last: None, next: None });
}

#[test]
fn timer_rejects_a_bad_timestamp() {
    let mut request = fixture("timer.json");
    request.data.insert("timer".into(), json!({"ScheduleStatus": {"Last": "yesterday"}, "IsPastDue": false}));
    assert!(matches!(TimerInvocation::from_request(&request, "timer"), Err(EnvelopeError::InvalidTimestamp { field: "Last", .. })));
}

// --- Event Grid ------------------------------------------------------------------------------------------

#[test]
fn event_grid_event_as_object() {
    let events = EventGridInvocation::from_request(&fixture("event_grid_object.json"), "event").unwrap();
    assert_eq!(events.events.len(), 1);
    let event = &events.events[0];
    assert_eq!(event["eventType"], "Microsoft.Resources.ResourceWriteSuccess");
    assert_eq!(event["data"]["resourceUri"], VM_ID);
    assert_eq!(event["data"]["operationName"], "Microsoft.Compute/virtualMachines/write");
    assert_eq!(events.validation_code(), None);
}

#[test]
fn event_grid_event_as_double_encoded_string() {
    let from_string = EventGridInvocation::from_request(&fixture("event_grid_string.json"), "event").unwrap();
    let from_object = EventGridInvocation::from_request(&fixture("event_grid_object.json"), "event").unwrap();
    assert_eq!(from_string, from_object);
}

#[test]
fn event_grid_validation_handshake_through_http() {
    // §5.2: plain webhook through an HTTP trigger; answer 200 with {"validationResponse": code}.
    let http = HttpInvocation::from_request(&fixture("event_grid_validation.json"), "req").unwrap();
    assert_eq!(http.header("aeg-event-type"), Some("SubscriptionValidation"));
    let events = EventGridInvocation::from_http(&http).unwrap();
    let code = events.validation_code().unwrap();
    assert_eq!(code, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
    let reply = InvocationResponse::http(200, &[], &json!({ "validationResponse": code }).to_string());
    assert_eq!(
        serde_json::to_value(&reply).unwrap()["Outputs"]["res"],
        json!({"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{\"validationResponse\":\"0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\"}"})
    );
    // The same event as an Event Grid trigger value (the extension normally answers it itself).
    let mut request = fixture("event_grid_object.json");
    request.data.insert("event".into(), events.events[0].clone());
    assert_eq!(EventGridInvocation::from_request(&request, "event").unwrap().validation_code(), Some(code));
}

#[test]
fn event_grid_rejects_non_events() {
    let mut request = fixture("event_grid_object.json");
    request.data.insert("event".into(), json!("[1, 2]"));
    assert!(matches!(EventGridInvocation::from_request(&request, "event"), Err(EnvelopeError::UnexpectedShape { .. })));
}

// --- response --------------------------------------------------------------------------------------------

#[test]
fn response_round_trip_and_key_names() {
    // §1.6 worked examples.
    let response = InvocationResponse::http(202, &[("Location", "/api/workflows/wf-7f3c")], r#"{"workflowId":"wf-7f3c","state":"Queued"}"#)
        .with_output("nextStep", json!(STEP_MESSAGE))
        .with_log("queued wf-7f3c for sqlvm01");
    let body: Value = serde_json::from_slice(&response.to_body()).unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["Logs", "Outputs", "ReturnValue"]);
    assert_eq!(body["ReturnValue"], Value::Null);
    assert_eq!(body["Logs"], json!(["queued wf-7f3c for sqlvm01"]));
    let parsed: InvocationResponse = serde_json::from_value(body).unwrap();
    assert_eq!(parsed, response);
    // Tolerant on the way in: missing or null parts are empty.
    let empty: InvocationResponse = serde_json::from_str(r#"{"Outputs": null}"#).unwrap();
    assert_eq!(empty, InvocationResponse::default());
}

#[test]
fn http_response_shape() {
    let res = http_response(404, &[("Cache-Control", "no-store")], r#"{"error":"not found"}"#);
    assert_eq!(res["statusCode"], json!(404), "a number, not a string");
    assert!(res["statusCode"].is_u64());
    assert_eq!(res["body"], json!(r#"{"error":"not found"}"#));
    let headers = res["headers"].as_object().unwrap();
    assert!(headers.values().all(Value::is_string), "header values are strings");
    assert_eq!(headers["Content-Type"], "application/json", "a Content-Type is always set");
    assert_eq!(headers["Cache-Control"], "no-store");
    let text = http_response(200, &[("content-type", "text/plain")], "ok");
    assert_eq!(text["headers"], json!({"content-type": "text/plain"}), "a given Content-Type is kept, not doubled");
}

// --- host.json and function.json -------------------------------------------------------------------------

#[test]
fn host_json_configures_the_custom_handler_and_queues() {
    let host = read_json(&root().join("host.json"));
    assert_eq!(host["version"], "2.0");
    assert_eq!(host["extensionBundle"]["id"], "Microsoft.Azure.Functions.ExtensionBundle");
    assert_eq!(host["extensionBundle"]["version"], "[4.*, 5.0.0)");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "sqlvm-backup");
    assert_eq!(host["customHandler"]["description"]["arguments"], json!(["functions"]));
    let queues = &host["extensions"]["queues"];
    assert_eq!(queues["messageEncoding"], "base64", "stated explicitly: producers must base64 (encode_for_queue)");
    assert_eq!(queues["maxDequeueCount"], 5);
    assert_eq!(queues["visibilityTimeout"], "00:00:30");
    assert_eq!(queues["batchSize"], 16);
    assert_eq!(queues["newBatchThreshold"], 8);
    assert_eq!(queues["maxPollingInterval"], "00:00:02");
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    assert_eq!(host["functionTimeout"], "00:10:00");
}

#[test]
fn function_json_files_have_one_trigger_and_http_outputs() {
    let expected = [
        ("Backups", "httpTrigger"),
        ("OnVmWrite", "eventGridTrigger"),
        ("Protect", "httpTrigger"),
        ("RunSchedule", "timerTrigger"),
        ("RunStep", "queueTrigger"),
        ("Workflow", "httpTrigger"),
    ];
    let mut found: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("function.json").is_file())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, expected.iter().map(|(name, _)| name.to_string()).collect::<Vec<_>>(), "folder name = function name");
    for (name, trigger) in expected {
        let function = read_json(&root().join("functions").join(name).join("function.json"));
        let bindings = function["bindings"].as_array().unwrap_or_else(|| panic!("{name}: bindings"));
        let triggers: Vec<&Value> = bindings.iter().filter(|b| b["type"].as_str().is_some_and(|t| t.ends_with("Trigger"))).collect();
        assert_eq!(triggers.len(), 1, "{name}: exactly one trigger");
        assert_eq!(triggers[0]["type"], trigger, "{name}");
        assert_eq!(triggers[0]["direction"], "in", "{name}");
        if trigger == "httpTrigger" {
            assert!(
                bindings.iter().any(|b| b["type"] == "http" && b["direction"] == "out" && b["name"] == "res"),
                "{name}: http out binding named res"
            );
            assert_eq!(triggers[0]["name"], "req", "{name}: HttpInvocation reads Data.req");
        }
    }
    let run_step = read_json(&root().join("functions/RunStep/function.json"));
    assert_eq!(run_step["bindings"][0]["name"], "step");
    assert_eq!(run_step["bindings"][0]["queueName"], "%STEP_QUEUE%");
    assert_eq!(run_step["bindings"][0]["connection"], "StepQueue");
    let schedule = read_json(&root().join("functions/RunSchedule/function.json"));
    assert_eq!(schedule["bindings"][0]["schedule"], "%BACKUP_SCHEDULE%");
    assert_eq!(schedule["bindings"][0]["runOnStartup"], false);
    assert_eq!(read_json(&root().join("functions/OnVmWrite/function.json"))["bindings"][0]["name"], "event");
    let workflow = read_json(&root().join("functions/Workflow/function.json"));
    assert_eq!(workflow["bindings"][0]["route"], "workflows/{id?}");
    assert_eq!(workflow["bindings"][0]["methods"], json!(["get"]));
}

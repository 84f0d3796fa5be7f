//! Contract tests of the custom handler: the real binary, started as the Functions host starts
//! it, called with host-shaped payloads for every trigger (tests/fixtures/functions, written
//! from azure-functions.md, double encoding included), checking the exact reply shape.

mod common;

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::azurite::{Azurite, DEV_ACCOUNT, DEV_KEY};
use common::host::{FakeHost, HandlerProcess, QueueSettings, http_envelope, queue_envelope};
use common::{VAULT, VM};
use sqlvm_backup::azure_storage::config::AzureStorageConfig;
use sqlvm_backup::azure_storage::{ReceivedStep, StepQueue};
use sqlvm_backup_emulator::server::{self, RunningSimulator, SimulatorOptions};

const KEY: &str = "test-key-0123456789";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/functions/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

struct Setup {
    _azurite: Azurite,
    sim: RunningSimulator,
    dir: std::path::PathBuf,
    storage: Value,
    handler: HandlerProcess,
    host: Arc<FakeHost>,
    queue: StepQueue,
    poison: StepQueue,
}

fn config(sim: &RunningSimulator, storage: &Value) -> Value {
    json!({
        "arm": { "endpoint": sim.base_url, "credential": { "kind": "managedIdentity" } },
        "api": { "auth": { "mode": "apiKey", "keys": [{ "name": "test", "key": KEY, "vaults": ["*"] }] } },
        "engine": { "delayFloorSeconds": 0.0, "delayCeilingSeconds": 1.0, "jobPollSeconds": 0.2 },
        "azureStorage": storage,
        "scheduler": { "tickSeconds": 30, "plans": [
            { "name": "every-second", "schedule": "* * * * * *", "vaultId": VAULT, "backupType": "Full", "retentionDays": 45 }
        ] },
        "events": {
            "subscriptions": ["11111111-2222-3333-4444-555555555555"],
            "resourceGroups": ["rg-sql-*"],
            "protect": { "vaultId": VAULT, "policy": "HourlyLogBackup" }
        }
    })
}

async fn setup(name: &str) -> Setup {
    let azurite = Azurite::start();
    let sim = server::start(common::seed(), SimulatorOptions::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("sqlvm-fnc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/host.json"), dir.join("host.json")).unwrap();
    let storage = json!({
        "queueEndpoint": azurite.queue_endpoint, "blobEndpoint": azurite.blob_endpoint,
        "accountName": DEV_ACCOUNT, "accountKey": DEV_KEY, "queue": "sqlvm-steps", "container": "sqlvm-state"
    });
    let parsed: AzureStorageConfig = serde_json::from_value(storage.clone()).unwrap();
    let backend = parsed.backend().unwrap();
    backend.create_resources().await.unwrap();
    let handler = start(&sim, &dir, &config(&sim, &storage)).await;
    let (queue, poison) = (backend.queue().clone(), backend.poison_queue().clone());
    let host = FakeHost::new(&handler.base, queue.clone(), poison.clone(), QueueSettings::default());
    Setup { _azurite: azurite, sim, dir, storage, handler, host, queue, poison }
}

async fn start(sim: &RunningSimulator, dir: &std::path::Path, config: &Value) -> HandlerProcess {
    let (ep, hdr) = (sim.identity_endpoint(), sim.identity_header());
    HandlerProcess::start(dir, config, &[("IDENTITY_ENDPOINT", &ep), ("IDENTITY_HEADER", &hdr)]).await
}

impl Setup {
    async fn calls(&self) -> Vec<String> {
        let log: Value = reqwest::get(format!("{}/_sim/requests", self.sim.base_url)).await.unwrap().json().await.unwrap();
        log["requests"].as_array().unwrap().iter().map(|r| r["operationId"].as_str().unwrap_or("").to_string()).collect()
    }

    async fn workflow(&self, id: &str) -> (u16, Value) {
        let env = http_envelope("Workflow", "GET", &format!("/api/workflows/{id}"), &[("x-api-key", KEY)], None, json!({ "id": id }));
        let (status, reply) = self.host.invoke("Workflow", &env).await;
        assert_eq!(status, 200, "{reply:#}");
        let res = &reply["Outputs"]["res"];
        (res["statusCode"].as_u64().unwrap() as u16, serde_json::from_str(res["body"].as_str().unwrap()).unwrap())
    }

    /// Start a protect workflow through the `Protect` function; its id.
    async fn protect(&self, body: Value) -> String {
        let headers = [("Content-Type", "application/json"), ("x-api-key", KEY)];
        let env = http_envelope("Protect", "POST", "/api/protect", &headers, Some(&body.to_string()), json!({}));
        let (_, reply) = self.host.invoke("Protect", &env).await;
        res_of(&reply).1["id"].as_str().expect("a workflow id").to_string()
    }

    /// A second handler on the same state container whose queue endpoint refuses every request
    /// (a server that is not a queue service): its steps run and store their state, and then
    /// fail to send what comes next.
    async fn handler_that_cannot_send(&self, settings: QueueSettings) -> (HandlerProcess, Arc<FakeHost>) {
        let mut broken = self.storage.clone();
        broken["queueEndpoint"] = json!(format!("{}/devstoreaccount1", self.sim.base_url));
        let bad = start(&self.sim, &self.dir, &config(&self.sim, &broken)).await;
        let host = FakeHost::new(&bad.base, self.queue.clone(), self.poison.clone(), settings);
        (bad, host)
    }

    /// Read the workflow through the `Workflow` function until it ends (60 s at most).
    async fn ended(&self, id: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let (_, st) = self.workflow(id).await;
            if st["status"] != "running" {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "still running: {st:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn take(&self) -> ReceivedStep {
        for _ in 0..100 {
            if let Some(m) = self.queue.receive(1, Duration::from_secs(30)).await.unwrap().pop() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no step message arrived");
    }

    async fn finish(self) {
        drop(self.handler);
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `Outputs.res` of an HTTP answer: status, string header values, a content type, a string body.
fn res_of(reply: &Value) -> (u64, Value) {
    let res = &reply["Outputs"]["res"];
    let headers = res["headers"].as_object().expect("headers object");
    assert!(headers.values().all(Value::is_string), "header values must be strings: {res:#}");
    assert!(headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")), "a content type: {res:#}");
    let body = res["body"].as_str().expect("the body is a string");
    assert!(reply["Logs"].is_array(), "{reply:#}");
    assert!(reply.get("ReturnValue").is_some(), "{reply:#}");
    (res["statusCode"].as_u64().expect("numeric statusCode"), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_unknown_functions_and_unreadable_envelopes() {
    let s = setup("basics").await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(&s.handler.base).send().await.unwrap().status(), 200);
    let r = http.post(format!("{}/NoSuchFunction", s.handler.base)).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // An envelope that is not JSON: the invocation fails (the host retries or poisons).
    let r = http.post(format!("{}/RunStep", s.handler.base)).body("not json").send().await.unwrap();
    assert_eq!(r.status(), 500);
    // Function names are matched as the host sends them, in any case.
    let (status, _) = s.host.invoke("runschedule", &fixture("timer.json")).await;
    assert_eq!(status, 200);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_functions_answer_the_host_200_and_the_caller_through_outputs_res() {
    let s = setup("http").await;
    // No API key: the caller gets 401, the host 200.
    let (status, reply) = s.host.invoke("Protect", &fixture("http_post.json")).await;
    assert_eq!(status, 200);
    let (code, body) = res_of(&reply);
    assert_eq!(code, 401, "{body:#}");
    assert!(body["error"]["code"].is_string());

    let input = json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup" }).to_string();
    let headers = [("Content-Type", "application/json"), ("x-api-key", KEY), ("Idempotency-Key", "contract-1")];
    let env = http_envelope("Protect", "POST", "/api/protect", &headers, Some(&input), json!({}));
    let (status, reply) = s.host.invoke("Protect", &env).await;
    assert_eq!(status, 200);
    let (code, body) = res_of(&reply);
    assert_eq!(code, 202, "{body:#}");
    let id = body["id"].as_str().unwrap().to_string();
    // The same key again: the same workflow, 200.
    let (_, reply) = s.host.invoke("Protect", &env).await;
    let (code, again) = res_of(&reply);
    assert_eq!((code, again["id"].as_str()), (200, Some(id.as_str())), "{again:#}");

    // A bad request body is the caller's 400.
    let env = http_envelope("Backups", "POST", "/api/backups", &headers, Some(r#"{"vaultId":"not-an-id","backupType":"Full"}"#), json!({}));
    let (status, reply) = s.host.invoke("Backups", &env).await;
    assert_eq!(status, 200);
    assert_eq!(res_of(&reply).0, 400);

    let (code, st) = s.workflow(&id).await;
    assert_eq!((code, st["status"].as_str()), (200, Some("running")), "{st:#}");
    // Unknown and malformed ids are 404s, never another blob.
    assert_eq!(s.workflow("protect-nope").await.0, 404);
    assert_eq!(s.workflow("..%2F..%2Fclaims").await.0, 404);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_trigger_runs_a_step_once_and_poisons_what_is_not_a_step() {
    let s = setup("queue").await;
    // Not step messages (double-encoded, binary, object forms): moved to the poison queue, 200.
    for f in ["queue_double_encoded.json", "queue_binary.json", "queue_object.json"] {
        let (status, reply) = s.host.invoke("RunStep", &fixture(f)).await;
        assert_eq!(status, 200, "{f}: {reply:#}");
        assert!(reply["Logs"][0].as_str().unwrap().contains("poison"), "{reply:#}");
    }
    let poisoned = s.poison.peek(32).await.unwrap();
    assert_eq!(poisoned.len(), 3, "{poisoned:?}");
    assert!(poisoned.iter().all(|t| t.contains("wf-7f3c")), "the original text is kept: {poisoned:?}");

    // A real step: submitted, then delivered twice (the host may deliver again).
    let id = s.protect(json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup" })).await;
    let first = s.take().await;
    for attempt in 1..=2 {
        let (status, reply) = s.host.invoke("RunStep", &queue_envelope(&first.text, attempt, &first.message_id, &first.pop_receipt)).await;
        assert_eq!(status, 200, "{reply:#}");
    }
    let calls = s.calls().await;
    assert_eq!(calls.iter().filter(|c| *c == "ProtectionContainers_Refresh").count(), 1, "the step ran once: {calls:?}");
    let (_, st) = s.workflow(&id).await;
    assert_eq!(st["steps"][0]["step"], "refresh", "{st:#}");
    // Its next step is on the queue, base64-encoded as the trigger expects.
    let next = s.take().await;
    assert!(next.text.contains("pollRefresh"), "{}", next.text);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_failing_on_the_last_attempt_fails_its_workflow_before_the_host_poisons_it() {
    let s = setup("last").await;
    // Every attempt runs, stores its state and fails to send the next step. The stand-in host
    // delivers from the real queue, retries after visibilityTimeout and poisons at
    // maxDequeueCount, as the Functions host does.
    let max = sqlvm_backup::custom_handler::max_dequeue_count(Some(include_str!("../host.json")));
    let settings = QueueSettings { max_dequeue_count: max, visibility_timeout: Duration::from_millis(200), ..Default::default() };
    let (bad, bad_host) = s.handler_that_cannot_send(settings).await;

    let id = s.protect(json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup" })).await;

    let start_wait = std::time::Instant::now();
    while bad_host.poisoned.load(Ordering::Relaxed) == 0 {
        bad_host.pump_once().await.unwrap();
        if bad_host.failed.load(Ordering::Relaxed) < max as usize - 1 {
            assert_eq!(s.workflow(&id).await.1["status"], "running", "not failed before the last attempt");
        }
        assert!(start_wait.elapsed() < Duration::from_secs(30), "never poisoned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bad_host.failed.load(Ordering::Relaxed), max as usize - 1, "retried until maxDequeueCount");
    assert_eq!(bad_host.ok.load(Ordering::Relaxed), 0);
    let (_, st) = s.workflow(&id).await;
    assert_eq!(st["status"], "failed", "{st:#}");
    assert_eq!(st["failure"]["code"], "StepFailedRepeatedly", "{st:#}");
    assert!(st["failure"]["message"].as_str().unwrap().contains("poison"), "{st:#}");
    let poisoned = s.poison.peek(32).await.unwrap();
    assert_eq!(poisoned.len(), 1, "the host moved the message aside: {poisoned:?}");
    assert!(poisoned[0].contains(&id));
    // The step ran once against the service for all those attempts.
    let calls = s.calls().await;
    assert_eq!(calls.iter().filter(|c| *c == "ProtectionContainers_Refresh").count(), 1, "{calls:?}");
    drop(bad);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cut_off_after_its_state_was_written_sends_its_next_step_when_delivered_again() {
    let s = setup("cut").await;
    let id = s.protect(json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } })).await;
    let msg = s.take().await;

    // The step runs and its state is written, but its next message never leaves (as if the
    // process died between the two calls).
    let (bad, bad_host) = s.handler_that_cannot_send(QueueSettings::default()).await;
    let (status, _) = bad_host.invoke("RunStep", &queue_envelope(&msg.text, 1, &msg.message_id, &msg.pop_receipt)).await;
    assert_eq!(status, 500);
    drop(bad);
    assert!(has_step(&s.workflow(&id).await.1, "refresh"), "the state was written");
    assert!(s.queue.peek(32).await.unwrap().is_empty(), "and nothing was sent");

    // Delivered again: recognised as applied, not run again, and what it sent goes out now;
    // the workflow then completes.
    let (status, reply) = s.host.invoke("RunStep", &queue_envelope(&msg.text, 2, &msg.message_id, &msg.pop_receipt)).await;
    assert_eq!(status, 200, "{reply:#}");
    assert!(reply["Logs"][0].as_str().unwrap().contains("Duplicate"), "{reply:#}");
    s.queue.delete(&msg.message_id, &msg.pop_receipt).await.unwrap();
    let pump = s.host.spawn();
    let st = s.ended(&id).await;
    pump.abort();
    assert_eq!(st["status"], "succeeded", "{st:#}");
    let calls = s.calls().await;
    assert_eq!(calls.iter().filter(|c| *c == "ProtectionContainers_Refresh").count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| *c == "ProtectionContainers_Register").count(), 1, "{calls:?}");
    s.finish().await;
}

/// Two copies of one backup trigger in flight at once in two instances (a step's outbox sent
/// again after a crash while the original was still queued): the service gets one POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_a_backup_trigger_in_two_instances_post_once() {
    let s = setup("once").await;
    let pump = s.host.spawn();
    let id = s.protect(json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup", "databases": { "includeSystem": true } })).await;
    s.ended(&id).await;
    pump.abort();

    let body =
        json!({ "vaultId": VAULT, "backupType": "Full", "retentionDays": 45, "databases": { "include": ["msdb"], "includeSystem": true } })
            .to_string();
    let env = http_envelope(
        "Backups",
        "POST",
        "/api/backups",
        &[("Content-Type", "application/json"), ("x-api-key", KEY)],
        Some(&body),
        json!({}),
    );
    let (_, reply) = s.host.invoke("Backups", &env).await;
    let backup = res_of(&reply).1["id"].as_str().unwrap().to_string();
    // Run the workflow by hand up to its trigger.
    let trigger = loop {
        let m = s.take().await;
        if m.text.contains(r#""kind":"trigger""#) {
            break m;
        }
        let (status, reply) = s.host.invoke("RunStep", &queue_envelope(&m.text, 1, &m.message_id, &m.pop_receipt)).await;
        assert_eq!(status, 200, "{reply:#}");
        s.queue.delete(&m.message_id, &m.pop_receipt).await.unwrap();
    };
    let other = start(&s.sim, &s.dir, &config(&s.sim, &s.storage)).await;
    let other_host = FakeHost::new(&other.base, s.queue.clone(), s.poison.clone(), QueueSettings::default());
    let env = queue_envelope(&trigger.text, 1, &trigger.message_id, &trigger.pop_receipt);
    let (a, b) = tokio::join!(s.host.invoke("RunStep", &env), other_host.invoke("RunStep", &env));
    assert_eq!((a.0, b.0), (200, 200), "{a:#?} {b:#?}");
    s.queue.delete(&trigger.message_id, &trigger.pop_receipt).await.unwrap();
    let logs = format!("{} {}", a.1["Logs"], b.1["Logs"]);
    assert!(logs.contains("Deferred") || logs.contains("Duplicate"), "one copy stood back: {logs}");
    let posts = s.calls().await.iter().filter(|c| *c == "Backups_Trigger").count();
    assert_eq!(posts, 1, "one POST for two copies");

    // The rest runs to the end without another POST (the deferred copy comes back as a duplicate).
    let pump = s.host.spawn();
    let st = s.ended(&backup).await;
    pump.abort();
    assert_eq!(st["status"], "succeeded", "{st:#}");
    assert_eq!(s.calls().await.iter().filter(|c| *c == "Backups_Trigger").count(), 1);
    drop(other);
    s.finish().await;
}

/// A wait longer than a queue message can hide (7 days) travels as a hold: delivered early, it
/// is sent on for what is left and the step does not run; delivered after its time, it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_seven_days_is_sent_on_until_it_is_over() {
    let s = setup("hold").await;
    s.protect(json!({ "vmId": VM, "vaultId": VAULT, "policy": "HourlyLogBackup" })).await;
    let m = s.take().await;
    s.queue.delete(&m.message_id, &m.pop_receipt).await.unwrap();
    let step: Value = serde_json::from_str(&m.text).unwrap();
    let hold = |until: chrono::DateTime<chrono::Utc>| json!({ "hold": { "until": until, "message": step } }).to_string();

    let early = hold(chrono::Utc::now() + chrono::Duration::days(8));
    let (status, reply) = s.host.invoke("RunStep", &queue_envelope(&early, 1, "id-1", "pop-1")).await;
    assert_eq!(status, 200, "{reply:#}");
    assert!(reply["Logs"][0].as_str().unwrap().contains("waiting"), "{reply:#}");
    assert_eq!(s.queue.approximate_count().await.unwrap(), 1, "sent on, hidden for the rest");
    assert!(s.queue.peek(32).await.unwrap().is_empty(), "and not visible yet");
    assert_eq!(s.calls().await.iter().filter(|c| *c == "ProtectionContainers_Refresh").count(), 0, "the step did not run");

    let due = hold(chrono::Utc::now() - chrono::Duration::seconds(1));
    let (status, reply) = s.host.invoke("RunStep", &queue_envelope(&due, 2, "id-2", "pop-2")).await;
    assert_eq!(status, 200, "{reply:#}");
    assert_eq!(s.calls().await.iter().filter(|c| *c == "ProtectionContainers_Refresh").count(), 1, "its time came: it ran");
    s.finish().await;
}

fn has_step(st: &Value, name: &str) -> bool {
    st["steps"].as_array().is_some_and(|a| a.iter().any(|r| r["step"] == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_fires_due_plans_once_and_event_grid_only_enqueues() {
    let s = setup("timer-events").await;
    for f in ["timer.json", "timer_null_status.json"] {
        let (status, reply) = s.host.invoke("RunSchedule", &fixture(f)).await;
        assert_eq!(status, 200, "{reply:#}");
        assert!(reply["Logs"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("plan(s) fired")), "{reply:#}");
    }

    let before = s.calls().await.len();
    let (status, reply) = s.host.invoke("OnVmWrite", &fixture("event_grid_object.json")).await;
    assert_eq!(status, 200, "{reply:#}");
    let logs = reply["Logs"].to_string();
    let id = logs.split("workflows: ").nth(1).and_then(|t| t.split(['"', ',']).next()).unwrap().trim().to_string();
    assert!(id.starts_with("protect-"), "{logs}");
    // The same event as an encoded string: the same workflow (de-duplicated).
    let (status, reply) = s.host.invoke("OnVmWrite", &fixture("event_grid_string.json")).await;
    assert_eq!(status, 200);
    assert!(reply["Logs"].to_string().contains(&id), "{reply:#}");
    // The validation event is answered by the trigger itself; here it is ignored, not an error.
    let (status, _) = s.host.invoke("OnVmWrite", &fixture("event_grid_validation.json")).await;
    assert_eq!(status, 200);
    assert_eq!(s.calls().await.len(), before, "an Event Grid invocation never calls ARM");
    let (code, st) = s.workflow(&id).await;
    assert_eq!((code, st["origin"].as_str()), (200, Some("event-grid")), "{st:#}");
    s.finish().await;
}

#[test]
fn every_function_folder_has_a_handler_with_its_binding_name() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/functions");
    let mut seen = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let fj: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("function.json")).unwrap()).unwrap();
        let trigger = fj["bindings"].as_array().unwrap().iter().find(|b| b["direction"] == "in").unwrap();
        let known = sqlvm_backup::custom_handler::FUNCTIONS.iter().find(|(n, _)| *n == name);
        assert_eq!(known.map(|(_, b)| *b), trigger["name"].as_str(), "{name}");
        seen += 1;
    }
    assert_eq!(seen, sqlvm_backup::custom_handler::FUNCTIONS.len());
}

//! A stand-in for the Azure Functions host, for tests: it builds the envelopes the host POSTs to
//! a custom handler (shapes from azure-functions.md §1.5, double encoding of queue messages
//! included) and plays the queue trigger's loop over a real (Azurite) queue: receive, invoke
//! `RunStep`, delete on 2xx, make the message visible again after `visibilityTimeout` on
//! failure, and move it to `<queue>-poison` once a failed attempt reaches `maxDequeueCount`.

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlvm_backup::azure_storage::{StepQueue, StorageError};

/// The envelope of a queue-triggered invocation, as the host sends it: the message text
/// JSON-encoded once more, `DequeueCount` as a string, `Id`/`PopReceipt` with quotes.
pub fn queue_envelope(text: &str, dequeue_count: u32, id: &str, pop: &str) -> Value {
    json!({
        "Data": { "step": serde_json::to_string(text).unwrap() },
        "Metadata": {
            "DequeueCount": dequeue_count.to_string(),
            "Id": format!("\"{id}\""),
            "PopReceipt": format!("\"{pop}\""),
            "InsertionTime": "2026-11-27T10:15:00+00:00",
            "sys": { "MethodName": "RunStep", "UtcNow": "2026-11-27T10:15:03.0311102Z", "RandGuid": "8a3d2e8f-0b7c-4a59-9d2e-51c6f0a7b3e4" }
        }
    })
}

/// The envelope of an HTTP-triggered invocation: header values as arrays, the raw body as a
/// string (absent when empty), route parameters in `Params`.
pub fn http_envelope(function: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>, params: Value) -> Value {
    let hs: serde_json::Map<String, Value> = headers.iter().map(|(k, v)| (k.to_string(), json!([v]))).collect();
    let mut req = json!({
        "Url": format!("https://fn-sqlbackup.azurewebsites.net{path}"),
        "Method": method,
        "Query": {},
        "Headers": hs,
        "Params": params,
        "Identities": [],
    });
    if let Some(b) = body {
        req["Body"] = json!(b);
    }
    json!({ "Data": { "req": req }, "Metadata": { "Params": params, "sys": { "MethodName": function } } })
}

/// Settings of the host's queue extension that matter here (host.json).
#[derive(Clone)]
pub struct QueueSettings {
    pub max_dequeue_count: u32,
    /// How long a failed message stays invisible before its next attempt.
    pub visibility_timeout: Duration,
    /// The lease while the handler runs (the host renews its own; a test keeps it short so a
    /// killed host's messages come back soon).
    pub lease: Duration,
    pub batch_size: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_dequeue_count: 5,
            visibility_timeout: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            batch_size: 16,
        }
    }
}

/// The host's queue-trigger loop for `RunStep`.
pub struct FakeHost {
    pub handler: String,
    pub queue: StepQueue,
    pub poison: StepQueue,
    pub settings: QueueSettings,
    pub http: reqwest::Client,
    /// Invocations answered 2xx / non-2xx, and messages moved to poison.
    pub ok: AtomicUsize,
    pub failed: AtomicUsize,
    pub poisoned: AtomicUsize,
}

impl FakeHost {
    pub fn new(handler: &str, queue: StepQueue, poison: StepQueue, settings: QueueSettings) -> Arc<FakeHost> {
        Arc::new(FakeHost {
            handler: handler.to_string(),
            queue,
            poison,
            settings,
            http: reqwest::Client::new(),
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            poisoned: AtomicUsize::new(0),
        })
    }

    /// POST an envelope to a function; the host's status and the response envelope.
    pub async fn invoke(&self, function: &str, envelope: &Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}/{function}", self.handler)).json(envelope).send().await.expect("handler reachable");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// One poll of the queue; returns how many messages were handled.
    pub async fn pump_once(&self) -> Result<usize, StorageError> {
        let batch = self.queue.receive(self.settings.batch_size, self.settings.lease).await?;
        let n = batch.len();
        let runs = batch.into_iter().map(|m| async move {
            let env = queue_envelope(&m.text, m.dequeue_count, &m.message_id, &m.pop_receipt);
            let status = match self.http.post(format!("{}/RunStep", self.handler)).json(&env).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 599,
            };
            if (200..300).contains(&status) {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let _ = self.queue.delete(&m.message_id, &m.pop_receipt).await;
            } else if m.dequeue_count >= self.settings.max_dequeue_count {
                self.poisoned.fetch_add(1, Ordering::Relaxed);
                self.poison.send(&m.text, Duration::ZERO).await.expect("poison send");
                let _ = self.queue.delete(&m.message_id, &m.pop_receipt).await;
            } else {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.queue.set_visibility(&m.message_id, &m.pop_receipt, self.settings.visibility_timeout).await;
            }
        });
        futures::future::join_all(runs).await;
        Ok(n)
    }

    /// Poll until the task is aborted (the host "killed").
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let host = self.clone();
        tokio::spawn(async move {
            loop {
                match host.pump_once().await {
                    Ok(0) | Err(_) => tokio::time::sleep(Duration::from_millis(40)).await,
                    Ok(_) => {}
                }
            }
        })
    }
}

/// The handler binary started as the host starts it: in `dir` (holding host.json), with
/// `FUNCTIONS_CUSTOMHANDLER_PORT` and the configuration app setting.
pub struct HandlerProcess {
    pub child: Child,
    pub base: String,
}

impl HandlerProcess {
    pub async fn start(dir: &std::path::Path, config: &Value, env: &[(&str, &str)]) -> HandlerProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlvm-backup"));
        cmd.arg("functions")
            .current_dir(dir)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("SQLVM_BACKUP_CONFIG", config.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the handler");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the handler exited at start-up: {status}");
            }
            if http.get(&base).send().await.is_ok_and(|r| r.status().is_success()) {
                return HandlerProcess { child, base };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        panic!("the handler did not answer its readiness probe in 10 s");
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HandlerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The storage clients against a real Azurite: base64 text, delays, never-expiring messages,
//! pop receipts, size and delay limits, conditional blob writes and listings, and the
//! authentication rules. Each test starts its own Azurite (see `common::azurite`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::StaticToken;
use common::azurite::{Azurite, DEV_ACCOUNT, DEV_KEY};
use sqlvm_backup::azure_storage::queue::{MAX_MESSAGE_BYTES, MAX_VISIBILITY};
use sqlvm_backup::azure_storage::{BlobStore, STORAGE_API_VERSION, StepQueue, StorageAuth, StorageError, account_sas};
use sqlvm_backup_shared::secret::Secret;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn sas() -> String {
    account_sas(DEV_ACCOUNT, DEV_KEY, chrono::Utc::now() + chrono::Duration::hours(1)).expect("sas")
}

/// A raw REST call with an account SAS, to look at what the clients stored.
async fn raw(method: reqwest::Method, url: &str, query: &str, body: Option<String>) -> (u16, String, String) {
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut req =
        reqwest::Client::new().request(method, format!("{url}{sep}{query}&{}", sas())).header("x-ms-version", STORAGE_API_VERSION);
    if let Some(b) = body {
        req = req.header("content-type", "application/xml").body(b);
    }
    let rsp = req.send().await.expect("raw request");
    let status = rsp.status().as_u16();
    let code = rsp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, code, rsp.text().await.expect("raw body"))
}

fn xml_values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str()).skip(1).filter_map(|s| s.split(close.as_str()).next()).collect()
}

async fn new_queue(az: &Azurite, name: &str) -> StepQueue {
    let q = StepQueue::new(&az.queue_url(name), &az.auth()).expect("queue client");
    q.create_if_missing().await.expect("create queue");
    // Idempotent.
    q.create_if_missing().await.expect("create queue again");
    q
}

#[tokio::test]
async fn send_delays_encodes_base64_and_never_expires() {
    let az = Azurite::start();
    let q = new_queue(&az, "sqlvm-steps").await;
    assert_eq!(q.name(), "sqlvm-steps");
    let text = r#"{"workflowId":"wf-1","step":"refresh","note":"ünïcödé ✓ <&>"}"#;

    let sent = Instant::now();
    q.send(text, Duration::from_millis(1500)).await.expect("send"); // rounded up to 2 s
    assert!(q.receive(32, Duration::from_secs(30)).await.expect("receive").is_empty(), "visible before its delay");
    assert_eq!(q.approximate_count().await.expect("count"), 1);

    // Poll until it shows up; it must not before 2 s.
    let got = loop {
        let got = q.receive(32, Duration::from_secs(30)).await.expect("receive");
        if !got.is_empty() {
            break got;
        }
        assert!(sent.elapsed() < Duration::from_secs(8), "the delayed message never became visible");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sent.elapsed() >= Duration::from_millis(1900), "visible after {:?}, before the rounded-up 2 s", sent.elapsed());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, text);
    assert_eq!(got[0].dequeue_count, 1);
    assert!(!got[0].undecodable);

    // What is stored: base64 of the UTF-8 text, expiring never (Azurite shows 9999-12-31).
    q.send(text, Duration::ZERO).await.expect("send");
    let (status, _, xml) = raw(reqwest::Method::GET, &format!("{}/messages", az.queue_url("sqlvm-steps")), "peekonly=true", None).await;
    assert_eq!(status, 200, "{xml}");
    let stored = xml_values(&xml, "MessageText");
    assert_eq!(stored, vec![B64.encode(text)], "{xml}");
    let expiry = xml_values(&xml, "ExpirationTime");
    assert!(expiry.len() == 1 && expiry[0].contains("9999"), "message TTL is not -1: {xml}");
    assert_eq!(q.peek(32).await.expect("peek"), vec![text.to_string()]);
}

#[tokio::test]
async fn oversized_messages_and_long_delays_are_refused_before_sending() {
    let az = Azurite::start();
    let q = new_queue(&az, "limits").await;

    // 49 152 bytes encode to exactly 65 536: the largest message that fits.
    let fits = "a".repeat(MAX_MESSAGE_BYTES / 4 * 3);
    q.send(&fits, Duration::ZERO).await.expect("a 64 KiB message is accepted");
    match q.send(&format!("{fits}a"), Duration::ZERO).await {
        Err(StorageError::TooLarge(n)) => assert_eq!(n, 65_540),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    match q.send("x", MAX_VISIBILITY + Duration::from_millis(1)).await {
        Err(StorageError::Config(msg)) => assert!(msg.contains("7-day"), "{msg}"),
        other => panic!("expected Config, got {other:?}"),
    }
    // Exactly 7 days is allowed (and possible only because the message never expires).
    q.send("later", MAX_VISIBILITY).await.expect("a 7-day delay is accepted");

    assert_eq!(q.approximate_count().await.expect("count"), 2, "a refused message was enqueued");
    assert_eq!(q.peek(32).await.expect("peek"), vec![fits], "only the 64 KiB message is visible");
}

#[tokio::test]
async fn set_visibility_issues_a_new_receipt_and_stale_receipts_are_not_found() {
    let az = Azurite::start();
    let q = new_queue(&az, "receipts").await;
    q.send("step", Duration::ZERO).await.expect("send");

    let first = q.receive(1, Duration::from_secs(30)).await.expect("receive").pop().expect("one message");
    let renewed = q.set_visibility(&first.message_id, &first.pop_receipt, Duration::from_millis(500)).await.expect("update");
    assert_ne!(renewed, first.pop_receipt);
    assert!(matches!(q.delete(&first.message_id, &first.pop_receipt).await, Err(StorageError::NotFound)), "the old receipt still works");
    assert!(matches!(q.set_visibility(&first.message_id, &first.pop_receipt, Duration::ZERO).await, Err(StorageError::NotFound)));

    // Visible again after the 1 s it was set to: received a second time.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = q.receive(1, Duration::from_secs(30)).await.expect("receive").pop().expect("the message again");
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.dequeue_count, 2);
    assert!(matches!(q.delete(&second.message_id, &renewed).await, Err(StorageError::NotFound)), "receipt from before the receive");

    // What Azurite answers underneath: 400 PopReceiptMismatch for a stale receipt...
    let url = format!("{}/messages/{}", az.queue_url("receipts"), second.message_id);
    let stale = format!("popreceipt={}", percent_encoding::utf8_percent_encode(&renewed, percent_encoding::NON_ALPHANUMERIC));
    let (status, code, _) = raw(reqwest::Method::DELETE, &url, &stale, None).await;
    assert_eq!((status, code.as_str()), (400, "PopReceiptMismatch"));

    q.delete(&second.message_id, &second.pop_receipt).await.expect("delete with the current receipt");
    // ... and 404 MessageNotFound once the message is gone.
    let (status, code, _) = raw(reqwest::Method::DELETE, &url, &stale, None).await;
    assert_eq!((status, code.as_str()), (404, "MessageNotFound"));
    assert!(matches!(q.delete(&second.message_id, &second.pop_receipt).await, Err(StorageError::NotFound)));
    assert!(matches!(q.delete("not a message id", "x").await, Err(StorageError::NotFound)));
    assert_eq!(q.approximate_count().await.expect("count"), 0);
}

#[tokio::test]
async fn receive_clamps_the_batch_and_returns_undecodable_text_raw() {
    let az = Azurite::start();
    let q = new_queue(&az, "batches").await;
    for i in 0..3 {
        q.send(&format!("m{i}"), Duration::ZERO).await.expect("send");
    }
    // A message someone else wrote without base64.
    let xml = "<QueueMessage><MessageText>not base64 {}</MessageText></QueueMessage>".to_string();
    let (status, _, body) = raw(reqwest::Method::POST, &format!("{}/messages", az.queue_url("batches")), "messagettl=-1", Some(xml)).await;
    assert_eq!(status, 201, "{body}");

    assert_eq!(q.peek(0).await.expect("peek").len(), 1, "peek(0) is clamped to 1");
    assert!(q.peek(32).await.expect("peek").contains(&"not base64 {}".to_string()));

    let one = q.receive(0, Duration::ZERO).await.expect("receive");
    assert_eq!(one.len(), 1, "receive(0) is clamped to 1 (and a zero visibility to 1 s)");
    let rest = q.receive(100, Duration::from_secs(30)).await.expect("receive");
    assert_eq!(rest.len(), 3);
    let mut all: Vec<_> = one.into_iter().chain(rest).collect();
    all.sort_by(|a, b| a.text.cmp(&b.text));
    let texts: Vec<(&str, bool)> = all.iter().map(|m| (m.text.as_str(), m.undecodable)).collect();
    assert_eq!(texts, vec![("m0", false), ("m1", false), ("m2", false), ("not base64 {}", true)]);
}

#[tokio::test]
async fn blob_writes_are_conditional_on_etags() {
    let az = Azurite::start();
    let store = BlobStore::new(&az.container_url("sqlvm-state"), &az.auth()).expect("blob client");
    store.create_if_missing().await.expect("create container");
    store.create_if_missing().await.expect("create container again");
    let name = "workflows/wf-1.json";

    assert_eq!(store.get(name).await.expect("get"), None);
    let etag1 = store.create(name, b"v1", &[("status", "running")]).await.expect("create").expect("created");
    assert_eq!(store.create(name, b"other", &[]).await.expect("create again"), None, "a second create must not overwrite");
    assert_eq!(store.get(name).await.expect("get"), Some((b"v1".to_vec(), etag1.clone())));

    let etag2 = store.replace(name, b"v2", &etag1, &[("status", "done")]).await.expect("replace with the current etag");
    assert_ne!(etag2, etag1);
    assert!(matches!(store.replace(name, b"lost", &etag1, &[]).await, Err(StorageError::Conflict)), "stale etag");
    assert_eq!(store.get(name).await.expect("get"), Some((b"v2".to_vec(), etag2.clone())));
    assert!(matches!(store.replace(name, b"x", "*", &[]).await, Err(StorageError::Config(_))));

    // Empty blobs round-trip too.
    let empty = store.create("empty", b"", &[]).await.expect("create").expect("created");
    assert_eq!(store.get("empty").await.expect("get"), Some((Vec::new(), empty)));

    store.delete(name).await.expect("delete");
    store.delete(name).await.expect("delete is idempotent");
    assert_eq!(store.get(name).await.expect("get"), None);
    assert!(matches!(store.replace(name, b"v3", &etag2, &[]).await, Err(StorageError::Conflict)), "the blob is gone");
    assert!(store.create(name, b"again", &[]).await.expect("create").is_some(), "a deleted blob can be created again");
}

#[tokio::test]
async fn list_returns_names_and_metadata_under_a_prefix() {
    let az = Azurite::start();
    let store = BlobStore::new(&az.container_url("listing"), &az.auth()).expect("blob client");
    store.create_if_missing().await.expect("create container");
    for i in 0..3 {
        let status = if i == 1 { "done" } else { "running" };
        store.create(&format!("workflows/wf-{i}"), b"{}", &[("status", status), ("vault", "v1")]).await.expect("create");
    }
    store.create("claims/abc", b"", &[]).await.expect("create");
    store.create("workflowsx", b"", &[]).await.expect("create");

    let listed = store.list("workflows/").await.expect("list");
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["workflows/wf-0", "workflows/wf-1", "workflows/wf-2"]);
    let expected: HashMap<String, String> = [("status".to_string(), "done".to_string()), ("vault".to_string(), "v1".to_string())].into();
    assert_eq!(listed[1].1, expected);

    let claims = store.list("claims/").await.expect("list");
    assert_eq!(claims, vec![("claims/abc".to_string(), HashMap::new())]);
    assert_eq!(store.list("").await.expect("list all").len(), 5);
    assert!(store.list("nothing/").await.expect("list").is_empty());
}

#[tokio::test]
async fn a_wrong_key_fails_with_the_status_and_no_signature_in_the_error() {
    let az = Azurite::start();
    let wrong = StorageAuth::AccountKey { account: DEV_ACCOUNT.into(), key: Secret::new(B64.encode([7u8; 64])) };
    let q = StepQueue::new(&az.queue_url("denied"), &wrong).expect("client");
    match q.create_if_missing().await {
        Err(StorageError::Request(msg)) => {
            assert!(msg.contains("403"), "{msg}");
            assert!(!msg.contains("sig=") || msg.contains("sig=REDACTED"), "{msg}");
        }
        other => panic!("expected a 403 request error, got {other:?}"),
    }
    let store = BlobStore::new(&az.container_url("denied"), &wrong).expect("client");
    assert!(matches!(store.get("x").await, Err(StorageError::Request(m)) if m.contains("403")));
}

#[tokio::test]
async fn transport_errors_do_not_leak_the_signature() {
    // Nothing listens on this port (bound and released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let auth = StorageAuth::AccountKey { account: DEV_ACCOUNT.into(), key: Secret::new(DEV_KEY) };
    let q = StepQueue::new(&format!("http://127.0.0.1:{port}/{DEV_ACCOUNT}/nowhere"), &auth).expect("client");
    let err = tokio::time::timeout(Duration::from_secs(30), q.approximate_count()).await.expect("gives up in time").expect_err("no server");
    let msg = err.to_string();
    assert!(matches!(err, StorageError::Request(_)), "{msg}");
    let sig = url::form_urlencoded::parse(sas().as_bytes()).find(|(k, _)| k == "sig").map(|(_, v)| v.into_owned()).expect("sig");
    assert!(!msg.contains(&sig) && !msg.contains("sig=%"), "{msg}");
}

#[test]
fn token_auth_needs_https_and_debug_hides_the_key() {
    let token = StorageAuth::Token(Arc::new(StaticToken("t".into())));
    for url in ["http://127.0.0.1:10001/devstoreaccount1/q1", "http://acct.queue.core.windows.net/q1"] {
        assert!(matches!(StepQueue::new(url, &token), Err(StorageError::Config(_))), "{url}");
        assert!(matches!(BlobStore::new(url, &token), Err(StorageError::Config(_))), "{url}");
    }
    StepQueue::new("https://acct.queue.core.windows.net/sqlvm-steps", &token).expect("https with a token");
    BlobStore::new("https://acct.blob.core.windows.net/sqlvm-state", &token).expect("https with a token");

    let key = StorageAuth::AccountKey { account: DEV_ACCOUNT.into(), key: Secret::new(DEV_KEY) };
    let shown = format!("{key:?} {token:?}");
    assert!(!shown.contains(DEV_KEY) && !shown.contains("Eby8"), "{shown}");
    assert!(shown.contains(DEV_ACCOUNT), "{shown}");
    // A key that is not base64 is a configuration error at construction, not at the first call.
    let bad = StorageAuth::AccountKey { account: DEV_ACCOUNT.into(), key: Secret::new("not base64!") };
    assert!(matches!(StepQueue::new("http://127.0.0.1:1/devstoreaccount1/q1", &bad), Err(StorageError::Config(_))));
}

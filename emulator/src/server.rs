//! The simulator's HTTP(S) server: ARM requests pass authentication, throttling and faults,
//! then [`crate::arm::handle`] answers them over the locked world; identity and control routes
//! sit beside them.
//!
//! The accept loop is our own (hyper-util) rather than `axum::serve` for two reasons: TLS on the
//! same loop, and "dropped connection" faults, which need the connection closed without any
//! answer (a service error makes hyper do exactly that).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::arm::{self, ArmRequest, Method};
use crate::clock::Clock;
use crate::control;
use crate::error::ArmError;
use crate::faults::{Dice, Fault};
use crate::identity::{Identity, IdentityOptions};
use crate::recorder::Recorder;
use crate::scenario::Scenario;
use crate::schema::Spec;
use crate::throttle::{Decision, Kind, Throttle};
use crate::world::World;

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate, written to this path when given.
    pub tls: Option<TlsOptions>,
    /// Base URL written into tracking URLs (`Location`, `nextLink`); by default the scheme and
    /// `Host` the client used.
    pub public_base_url: Option<String>,
    pub identity: IdentityOptions,
    /// Where VM deployments made through the control API POST their Event Grid event.
    pub event_grid: Option<control::EventGridTarget>,
    /// Validate every ARM answer against the swagger and record violations (tests).
    pub schema: Option<Arc<Spec>>,
}

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub cert_out: Option<PathBuf>,
    pub sans: Vec<String>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            public_base_url: None,
            identity: IdentityOptions::default(),
            event_grid: None,
            schema: None,
        }
    }
}

/// State shared by every request. Locks are std mutexes, never held across an `.await`.
pub struct Shared {
    pub world: Mutex<World>,
    /// The scenario as loaded, for `reset`.
    pub scenario: Mutex<Scenario>,
    pub clock: Clock,
    pub identity: Arc<Identity>,
    pub throttle: Mutex<Throttle>,
    pub dice: Mutex<Dice>,
    pub recorder: Mutex<Recorder>,
    pub schema: Option<Arc<Spec>>,
    pub violations: Mutex<Vec<String>>,
    pub event_grid: Mutex<Option<control::EventGridTarget>>,
    pub public_base_url: Option<String>,
    pub scheme: &'static str,
    pub http: reqwest::Client,
}

/// Lock a mutex even if a previous holder panicked: the simulator keeps serving.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running simulator; dropping it does not stop it, call [`RunningSimulator::shutdown`].
pub struct RunningSimulator {
    pub addr: SocketAddr,
    /// `http(s)://127.0.0.1:PORT`.
    pub base_url: String,
    /// PEM of the self-signed certificate when serving HTTPS.
    pub cert_pem: Option<String>,
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSimulator {
    /// The `IDENTITY_ENDPOINT` a managed-identity client should use.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url)
    }
    pub fn identity_header(&self) -> String {
        self.shared.identity.identity_header().to_string()
    }
    /// Mint an ARM token directly (tests, demos).
    pub fn arm_token(&self) -> String {
        self.shared
            .identity
            .issue(
                "https://management.azure.com",
                crate::identity::DEFAULT_MANAGED_IDENTITY_CLIENT_ID,
                crate::identity::MANAGED_IDENTITY_TENANT_ID,
                self.shared.clock.now(),
            )
            .0
    }
    /// Stop accepting connections and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Start the simulator on a scenario.
pub async fn start(scenario: Scenario, opts: SimulatorOptions) -> Result<RunningSimulator, ServerError> {
    let mut identity_opts = opts.identity.clone();
    identity_opts.clients.extend(scenario.clients.iter().cloned());
    let identity = Identity::new(identity_opts);
    let listener = TcpListener::bind(opts.listen).await.map_err(|source| ServerError::Bind { addr: opts.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: opts.listen, source })?;
    let (tls, cert_pem) = match &opts.tls {
        Some(t) => {
            let sans = if t.sans.is_empty() { vec!["localhost".to_string(), "127.0.0.1".to_string()] } else { t.sans.clone() };
            let (cfg, pem) = crate::tls::self_signed_server_config(&sans, t.cert_out.as_deref())?;
            (Some(tokio_rustls::TlsAcceptor::from(cfg)), Some(pem))
        }
        None => (None, None),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let seed = scenario.settings.faults.seed;
    let shared = Arc::new(Shared {
        world: Mutex::new(World::from_scenario(&scenario)),
        scenario: Mutex::new(scenario),
        clock: Clock::default(),
        identity: identity.clone(),
        throttle: Mutex::new(Throttle::default()),
        dice: Mutex::new(Dice::new(seed)),
        recorder: Mutex::new(Recorder::default()),
        schema: opts.schema.clone(),
        violations: Mutex::new(Vec::new()),
        event_grid: Mutex::new(opts.event_grid.clone()),
        public_base_url: opts.public_base_url.clone(),
        scheme,
        http: reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap_or_default(),
    });
    let router: Router =
        Router::new().nest("/_sim", control::router()).fallback(arm_entry).with_state(shared.clone()).merge(identity.router());
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(acceptor) => {
                                if let Ok(s) = acceptor.accept(stream).await {
                                    serve_connection(TokioIo::new(s), router).await;
                                }
                            }
                            None => serve_connection(TokioIo::new(stream), router).await,
                        }
                    });
                }
            }
        }
    });
    let base_url = format!("{scheme}://127.0.0.1:{}", addr.port());
    Ok(RunningSimulator { addr, base_url, cert_pem, shared, stop, task })
}

/// Marker placed on a response to make the connection close without answering.
#[derive(Clone, Copy)]
struct DropConnection;

#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

async fn serve_connection<I>(io: I, router: Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let resp = match router.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(e) => match e {},
            };
            if resp.extensions().get::<DropConnection>().is_some() { Err(Dropped) } else { Ok(resp) }
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(io, service).await;
}

fn base_url(shared: &Shared, uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    if let Some(b) = &shared.public_base_url {
        return b.trim_end_matches('/').to_string();
    }
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in `Host`.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get("host").and_then(|h| h.to_str().ok()))
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("127.0.0.1");
    format!("{}://{host}", shared.scheme)
}

fn subscription_of(path: &str) -> Option<String> {
    let mut it = path.split('/').filter(|s| !s.is_empty());
    while let Some(seg) = it.next() {
        if seg.eq_ignore_ascii_case("subscriptions") {
            return it.next().map(str::to_ascii_lowercase);
        }
    }
    None
}

/// An ARM error answer decided before the world is consulted, with its extra headers.
type Refusal = (ArmError, Vec<(&'static str, String)>);

/// Every request that is neither identity nor control is an ARM request.
async fn arm_entry(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let now = shared.clock.now();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let url = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let parsed = arm::route::parse(&path);
    let op_id = parsed.as_ref().map(|r| arm::operation_id(r, Method::parse(&method))).unwrap_or("Unknown");
    let (settings_max_body, latency, log_cap, throttling, faults) = {
        let w = lock(&shared.world);
        (
            w.settings.max_body_bytes,
            w.settings.faults.latency_ms,
            w.settings.request_log_capacity,
            w.settings.throttling.clone(),
            w.settings.faults.clone(),
        )
    };
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let answer: Result<arm::ArmResponse, Refusal> = 'answer: {
        if let Err(f) = shared.identity.check_arm_headers(&parts.headers, now) {
            break 'answer Err((
                ArmError::new(f.status, f.code, f.message),
                vec![(
                    "WWW-Authenticate",
                    "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\"".into(),
                )],
            ));
        }
        if let Some(sub) = subscription_of(&path) {
            let kind = Kind::from_method(&method);
            match lock(&shared.throttle).take(&throttling, &sub, kind, now) {
                Decision::Allowed { remaining } => extra.push((kind.header(), remaining.to_string())),
                Decision::Throttled { retry_after_secs } => {
                    let verb = match kind {
                        Kind::Reads => "read",
                        Kind::Writes => "write",
                        Kind::Deletes => "delete",
                    };
                    let e = ArmError::new(
                        429,
                        "SubscriptionRequestsThrottled",
                        format!(
                            "Number of {verb} requests for subscription '{sub}' exceeded the limit. Please try again after '{retry_after_secs}' seconds."
                        ),
                    );
                    break 'answer Err((e, vec![("Retry-After", retry_after_secs.to_string()), (kind.header(), "0".into())]));
                }
            }
        }
        let fault = lock(&shared.dice).roll(&faults, op_id);
        match fault {
            Fault::Drop => {
                lock(&shared.recorder).record(log_cap, &method, &url, op_id, 0, now);
                let mut r = Response::new(Body::empty());
                r.extensions_mut().insert(DropConnection);
                return r;
            }
            Fault::Error500 => {
                break 'answer Err((
                    ArmError::new(
                        500,
                        "InternalServerError",
                        "Encountered internal server error. Please try again after some time. (injected)",
                    ),
                    vec![],
                ));
            }
            Fault::Error503 => {
                break 'answer Err((
                    ArmError::new(503, "ServiceUnavailable", "The service is temporarily unavailable. Please try again later. (injected)"),
                    vec![("Retry-After", "1".into())],
                ));
            }
            Fault::None => {}
        }
        let bytes: Bytes = match axum::body::to_bytes(body, settings_max_body).await {
            Ok(b) => b,
            Err(_) => {
                break 'answer Err((
                    ArmError::new(
                        413,
                        "RequestEntityTooLarge",
                        format!("The request content exceeds the maximum of {settings_max_body} bytes."),
                    ),
                    vec![],
                ));
            }
        };
        let base = base_url(&shared, &parts.uri, &parts.headers);
        let areq = ArmRequest { method: Method::parse(&method), path: &path, query: &raw_query, body: &bytes, base_url: &base, now };
        let r = arm::handle_parsed(&mut lock(&shared.world), &areq, parsed);
        Ok(r)
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let (status, mut headers, body) = match answer {
        Ok(r) => (r.status, r.headers, r.body),
        Err((e, h)) => (e.status, h, Some(e.body())),
    };
    headers.extend(extra);
    if let Some(spec) = &shared.schema {
        check_schema(&shared, spec, op_id, status, body.as_ref(), &url);
    }
    lock(&shared.recorder).record(log_cap, &method, &url, op_id, status, now);
    // A fast RNG: a syscall per request id would cost more than answering a simple GET.
    let request_id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid().to_string();
    let correlation = parts
        .headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let mut resp = match &body {
        Some(b) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json; charset=utf-8")],
            b.to_string(),
        )
            .into_response(),
        None => StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    };
    let h = resp.headers_mut();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    for (k, v) in [("x-ms-request-id", request_id), ("x-ms-correlation-request-id", correlation)] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Some(c) = parts.headers.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", c.clone());
    }
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

/// Record a violation when an answer does not match the swagger.
fn check_schema(shared: &Shared, spec: &Spec, op_id: &str, status: u16, body: Option<&serde_json::Value>, url: &str) {
    let result = match (op_id, body) {
        // Not in the swagger: its answers are checked against the shapes it shares with the
        // item-level operationsStatus.
        ("ProtectionContainerOperationStatuses_Get", Some(b)) if status == 200 => spec.validate_definition("OperationStatus", b),
        ("ProtectionContainerOperationStatuses_Get", Some(b)) => spec.validate_definition("ErrorResponse", b),
        (op, _) if op.starts_with("VirtualMachines_") || op == "Unknown" || op == "MethodNotAllowed" => Ok(()),
        (op, Some(b)) => spec.validate_response(op, status, b),
        (op, None) => match spec.response_schema(op, status) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(vec![]),
            Err(e) => Err(vec![crate::schema::Violation { path: String::new(), message: e.to_string() }]),
        },
    };
    if let Err(v) = result {
        let detail: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        lock(&shared.violations)
            .push(format!("{op_id} {status} {url}: {}", if detail.is_empty() { "body missing".to_string() } else { detail.join("; ") }));
    }
}

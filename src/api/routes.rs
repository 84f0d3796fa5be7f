//! The handlers. Each takes the authenticated [`Caller`], typed input, and answers with a typed
//! body or an [`ApiError`]; the engine validates the input itself (`SubmitError::Invalid`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use sha2::{Digest, Sha256};
use sqlvm_backup_shared::ports::ListFilter;
use sqlvm_backup_shared::workflow::state::{BackupInput, ProtectInput, WorkflowInput, WorkflowKind, WorkflowStatus};

use super::model::{SubmitResponse, WorkflowBody, WorkflowList, WorkflowSummary, status_str, vault_of};
use super::{ApiError, AppState, Caller};

/// Default and largest page of `GET /api/workflows`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/protect", post(protect))
        .route("/api/backups", post(backup))
        .route("/api/workflows", get(list))
        .route("/api/workflows/{id}", get(status))
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such route: {}", uri.path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "this method is not allowed on this route")
}

async fn protect(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: ProtectInput = parse_json(&headers, &body)?;
    if !caller.may_act_on(input.vault_id.as_deref()) {
        return Err(vault_not_allowed(input.vault_id.as_deref()));
    }
    submit(&st, &caller, &headers, WorkflowInput::Protect(input)).await
}

async fn backup(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: BackupInput = parse_json(&headers, &body)?;
    if !caller.may_act_on(Some(&input.vault_id)) {
        return Err(vault_not_allowed(Some(&input.vault_id)));
    }
    submit(&st, &caller, &headers, WorkflowInput::Backup(input)).await
}

fn vault_not_allowed(vault: Option<&str>) -> ApiError {
    let message = match vault {
        Some(v) => format!("this caller may not act on the vault '{}'", v.chars().take(300).collect::<String>()),
        None => "the request names no vaultId (it would be resolved from the rules); only a caller allowed every vault may submit it"
            .to_string(),
    };
    ApiError::new(StatusCode::FORBIDDEN, "VaultNotAllowed", message)
}

async fn submit(st: &AppState, caller: &Caller, headers: &HeaderMap, input: WorkflowInput) -> Result<Response, ApiError> {
    let key = idempotency_key(headers)?.map(|k| scoped_key(&caller.name, k));
    let origin = format!("api:{}", caller.name);
    let submitted = st.engine.submit(input, &origin, key.as_deref()).await?;
    let (code, status) = if submitted.created {
        (StatusCode::ACCEPTED, WorkflowStatus::Running)
    } else {
        // An earlier submission with the same key: report where that workflow stands now.
        let existing = st.engine.backend().load(&submitted.id).await.map_err(|e| ApiError::backend(&e))?;
        (StatusCode::OK, existing.map(|v| v.value.status).unwrap_or(WorkflowStatus::Running))
    };
    let location = format!("/api/workflows/{}", submitted.id);
    let body = SubmitResponse { id: submitted.id, status: status_str(status), created: submitted.created };
    Ok((code, [(header::LOCATION, location)], axum::Json(body)).into_response())
}

/// The key handed to the engine: a SHA-256 of the caller's name and its key. Scoping by caller
/// means two callers who happen to pick the same key never get each other's workflow (nor learn
/// that it exists); hashing means the engine's id derivation only ever sees uniformly distributed
/// input, so nobody can craft a key that lands on someone else's workflow id.
fn scoped_key(caller: &str, key: &str) -> String {
    let digest = Sha256::new().chain_update(caller.as_bytes()).chain_update([0u8]).chain_update(key.as_bytes()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || {
        ApiError::bad_request(
            "InvalidIdempotencyKey",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s))
}

/// The body as `T`: 415 unless the content type is JSON, 400 `InvalidJson` for malformed JSON,
/// 400 `UnknownField` / `InvalidRequest` for JSON of the wrong shape.
fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || essence.split_once('/').is_some_and(|(t, s)| t.eq_ignore_ascii_case("application") && s.to_ascii_lowercase().ends_with("+json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request("InvalidJson", format!("the body is not valid JSON: {e}")),
        Category::Data if e.to_string().starts_with("unknown field") => ApiError::bad_request("UnknownField", e.to_string()),
        Category::Data => ApiError::bad_request("InvalidRequest", e.to_string()),
    })
}

async fn status(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<WorkflowBody>, ApiError> {
    let unknown = || ApiError::not_found(format!("no workflow '{}'", id.chars().take(200).collect::<String>()));
    let found = st.engine.backend().load(&id).await.map_err(|e| ApiError::backend(&e))?;
    match found {
        Some(v) if caller.may_act_on(vault_of(&v.value)) => Ok(axum::Json(WorkflowBody::from(&v.value))),
        _ => Err(unknown()),
    }
}

async fn list(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<WorkflowList>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::bad_request("InvalidQuery", e.body_text()))?;
    let filter = list_filter(&pairs)?;
    let states = st.engine.backend().list(&filter).await.map_err(|e| ApiError::backend(&e))?;
    let value = states.iter().filter(|s| caller.may_act_on(vault_of(s))).take(filter.limit).map(WorkflowSummary::from).collect();
    Ok(axum::Json(WorkflowList { value }))
}

fn list_filter(pairs: &[(String, String)]) -> Result<ListFilter, ApiError> {
    let bad = |m: String| ApiError::bad_request("InvalidQuery", m);
    let mut filter = ListFilter { status: None, kind: None, limit: DEFAULT_LIST_LIMIT };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in pairs {
        if !seen.insert(name.as_str()) {
            return Err(bad(format!("the query parameter '{name}' is repeated")));
        }
        match name.as_str() {
            "status" => {
                filter.status = Some(match value.as_str() {
                    "running" => WorkflowStatus::Running,
                    "succeeded" => WorkflowStatus::Succeeded,
                    "partiallySucceeded" => WorkflowStatus::PartiallySucceeded,
                    "failed" => WorkflowStatus::Failed,
                    _ => return Err(bad("status must be running, succeeded, partiallySucceeded or failed".into())),
                })
            }
            "kind" => {
                filter.kind = Some(match value.as_str() {
                    "protect" => WorkflowKind::Protect,
                    "backup" => WorkflowKind::Backup,
                    _ => return Err(bad("kind must be protect or backup".into())),
                })
            }
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| bad(format!("limit must be an integer from 1 to {MAX_LIST_LIMIT}")))?
            }
            other => return Err(bad(format!("unknown query parameter '{}'", other.chars().take(100).collect::<String>()))),
        }
    }
    Ok(filter)
}

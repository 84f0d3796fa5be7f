//! A blob container used as a small document store with optimistic concurrency.
//!
//! Workflow state lives in blobs; two deliveries may race to update the same one. Every write is
//! conditional on the ETag: creation uses `If-None-Match: *` (only if absent) and replacement
//! `If-Match: <etag>` (only if unchanged since it was read). The loser gets `None` or
//! [`StorageError::Conflict`], reloads and decides again; no lease is ever held, so a crashed
//! process never blocks the next one.

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::Bytes;
use azure_core::http::{Etag, RequestContent};
use azure_storage_blob::models::{BlobContainerClientListBlobsOptions, BlockBlobClientUploadOptions, ListBlobsIncludeItem};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use futures::TryStreamExt as _;

use super::auth::{StorageAuth, parse_resource_url};
use super::error::{StorageError, http_failure, request_error};
use super::sas::STORAGE_API_VERSION;

/// A client for one container. Cheap to clone: clones share the HTTP pipeline.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    container: BlobContainerClient,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("url", &self.inner.container.url().as_str()).finish()
    }
}

/// The longest blob name the service accepts.
const MAX_NAME_LEN: usize = 1024;

impl BlobStore {
    /// A client for the container at `container_url`, for example
    /// `https://acct.blob.core.windows.net/sqlvm-state` or, on Azurite,
    /// `http://127.0.0.1:10000/devstoreaccount1/sqlvm-state`. Makes no request.
    pub fn new(container_url: &str, auth: &StorageAuth) -> Result<Self, StorageError> {
        let parsed = parse_resource_url(container_url, "container")?;
        let (credential, client_options) = auth.client_setup(&parsed.url, "container")?;
        let options = BlobContainerClientOptions { client_options, version: STORAGE_API_VERSION.to_string() };
        let container = BlobContainerClient::new(parsed.url, credential, Some(options)).map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(BlobStore { inner: Arc::new(Inner { container }) })
    }

    /// Creates the container if it does not exist (idempotent).
    pub async fn create_if_missing(&self) -> Result<(), StorageError> {
        match self.inner.container.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(http_failure(&e), Some((409, _))) => Ok(()),
            Err(e) => Err(request_error("create container", &e)),
        }
    }

    /// The blob's content and ETag, or `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, String)>, StorageError> {
        check_name(name)?;
        let rsp = match self.inner.container.blob_client(name).download(None).await {
            Ok(rsp) => rsp,
            Err(e) if matches!(http_failure(&e), Some((404, _))) => return Ok(None),
            Err(e) => return Err(request_error("download blob", &e)),
        };
        let etag =
            rsp.properties.etag.map(String::from).ok_or_else(|| StorageError::Request("download blob: no ETag in the answer".into()))?;
        let body = rsp.body.collect().await.map_err(|e| request_error("read blob body", &e))?;
        Ok(Some((body.to_vec(), etag)))
    }

    /// Creates the blob only if it does not exist (`If-None-Match: *`). `Some(etag)` when this
    /// call created it, `None` when it existed already (Azure answers 409 `BlobAlreadyExists`).
    pub async fn create(&self, name: &str, body: &[u8], metadata: &[(&str, &str)]) -> Result<Option<String>, StorageError> {
        check_name(name)?;
        let options = BlockBlobClientUploadOptions { if_none_match: Some(Etag::from("*")), metadata: meta(metadata), ..Default::default() };
        match self.upload(name, body, options).await {
            Ok(etag) => Ok(Some(etag)),
            Err(e) if matches!(http_failure(&e), Some((409 | 412, _))) => Ok(None),
            Err(e) => Err(request_error("create blob", &e)),
        }
    }

    /// Replaces the blob only if its ETag is still `etag` (`If-Match`); returns the new ETag.
    /// `Conflict` when it changed since it was read or was deleted (412, or 404 when the service
    /// reports the missing blob first).
    pub async fn replace(&self, name: &str, body: &[u8], etag: &str, metadata: &[(&str, &str)]) -> Result<String, StorageError> {
        check_name(name)?;
        if etag.is_empty() || etag == "*" {
            // `If-Match: *` would overwrite whatever is there: not an optimistic write.
            return Err(StorageError::Config(format!("replace needs the ETag read with the blob, not {etag:?}")));
        }
        let options = BlockBlobClientUploadOptions { if_match: Some(Etag::from(etag)), metadata: meta(metadata), ..Default::default() };
        match self.upload(name, body, options).await {
            Ok(etag) => Ok(etag),
            Err(e) if matches!(http_failure(&e), Some((412 | 404, _))) => Err(StorageError::Conflict),
            Err(e) => Err(request_error("replace blob", &e)),
        }
    }

    /// Every blob whose name starts with `prefix`, with its metadata, in name order; follows the
    /// continuation markers, so this reads the whole listing.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, HashMap<String, String>)>, StorageError> {
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            include: Some(vec![ListBlobsIncludeItem::Metadata]),
            ..Default::default()
        };
        let mut pager = self.inner.container.list_blobs(Some(options)).map_err(|e| request_error("list blobs", &e))?;
        let mut out = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(|e| request_error("list blobs", &e))? {
            let Some(name) = item.name else {
                return Err(StorageError::Request("list blobs: an item without a name in the answer".into()));
            };
            let metadata = item.metadata.and_then(|m| m.values).unwrap_or_default();
            out.push((name, metadata));
        }
        Ok(out)
    }

    /// Deletes the blob. Idempotent: a blob that is already gone is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        match self.inner.container.blob_client(name).delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(http_failure(&e), Some((404, _))) => Ok(()),
            Err(e) => Err(request_error("delete blob", &e)),
        }
    }

    async fn upload(&self, name: &str, body: &[u8], options: BlockBlobClientUploadOptions<'_>) -> azure_core::Result<String> {
        let content: RequestContent<Bytes, _> = Bytes::copy_from_slice(body).into();
        let result = self.inner.container.blob_client(name).upload(content, Some(options)).await?;
        result.etag.map(String::from).ok_or_else(|| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::DataConversion, "upload blob: no ETag in the answer")
        })
    }
}

fn meta(metadata: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn check_name(name: &str) -> Result<(), StorageError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.ends_with('/') || name.contains("//") {
        return Err(StorageError::Config(format!("invalid blob name {name:?}")));
    }
    Ok(())
}

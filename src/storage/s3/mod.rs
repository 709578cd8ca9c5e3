//! The registry's storage on S3 and S3-compatible object stores (MinIO,
//! Ceph RGW, …), as distribution's `s3` driver writes it: the same layout
//! as on a filesystem, under `<rootdirectory>/docker/registry/v2/` in a
//! bucket.
//!
//! A key names what it is (see [`keys`]), so a listing is the index: one LIST
//! page returns 1,000 keys, and only manifests, and links whose ETag does not
//! show the content their path (or their tag's history) implies, need a GET.
//! Deletions go 1,000 keys per DeleteObjects request.
//!
//! Requests run on a tokio runtime owned by [`S3Storage`], nowhere else:
//! the rest of regsweep stays synchronous. A request that fails after the
//! client's retries (throttling and 5xx are retried with backoff) is an
//! error: an index missing a page deletes nothing.

pub mod config;
pub mod index;
pub mod keys;
pub mod lock;
pub mod manifests;
pub mod multipart;
pub mod recheck;
pub mod sweep;
pub mod trash;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::HttpConnector;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::error::{Error, Result};
use crate::storage::layout::Layout;

/// Requests a run sent to object storage: what it cost at the provider.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct S3Requests {
    /// LIST pages (ListObjectsV2, ListMultipartUploads).
    pub list: u64,
    /// GETs of objects.
    pub get: u64,
    /// HEADs.
    pub head: u64,
    /// PUTs (the lock object).
    pub put: u64,
    /// DeleteObjects requests (up to 1,000 keys each), single DELETEs and
    /// aborted multipart uploads.
    pub delete: u64,
}

pub use config::S3Target;

/// Requests in flight at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Requests sent, by kind: what a run cost at the provider.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// LIST pages (ListObjectsV2).
    pub list: AtomicU64,
    /// GETs of objects.
    pub get: AtomicU64,
    /// HEADs (the lock's time).
    pub head: AtomicU64,
    /// PUTs and CopyObjects (the lock, the trash).
    pub put: AtomicU64,
    /// DeleteObjects requests (up to 1,000 keys each) and single DELETEs.
    pub delete: AtomicU64,
}

/// A bucket holding a registry's storage, with the runtime its requests
/// run on.
pub struct S3Storage {
    target: S3Target,
    /// For the one request the store's client does not make
    /// (ListMultipartUploads): the bucket's address, region and a client.
    base_url: String,
    region: String,
    http: object_store::client::HttpClient,
    store: Arc<AmazonS3>,
    runtime: tokio::runtime::Runtime,
    layout: Layout,
    concurrency: usize,
    /// Requests sent so far.
    pub requests: RequestCounts,
}

impl fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Storage")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl S3Storage {
    /// Connects to `target` (nothing is sent yet). `concurrency` bounds the
    /// requests in flight.
    pub fn open(target: S3Target, concurrency: usize) -> Result<S3Storage> {
        // reqwest's TLS needs a process-wide crypto provider; another one
        // installed first is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new().with_bucket_name(&target.bucket);
        // Credentials, region and the rest from the AWS environment, as
        // AmazonS3Builder::from_env reads it; not the endpoint for a bucket
        // named by the registry's config.yml.
        let vars = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        for (name, value) in vars {
            let endpoint = name.starts_with("AWS_ENDPOINT");
            if !name.starts_with("AWS_") || endpoint && target.from_registry_config {
                continue;
            }
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        // One region for the store and for the request signed here: the
        // target's, else the environment's, else AWS's default.
        let region = target
            .region
            .clone()
            .or_else(|| {
                ["AWS_REGION", "AWS_DEFAULT_REGION"]
                    .into_iter()
                    .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            })
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(&region);
        if let Some(endpoint) = &target.endpoint {
            // A custom endpoint (MinIO, Ceph, a proxy) is addressed with the
            // bucket in the path, as distribution's driver does.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        } else if !target.bucket.contains('.') {
            // AWS itself: the bucket in the host name, as its SDKs address
            // it (a name with dots would not match the certificate).
            builder = builder.with_virtual_hosted_style_request(true);
        }
        if let Some(key) = &target.access_key {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &target.secret_key {
            builder = builder.with_secret_access_key(secret.reveal());
        }
        if let Some(token) = &target.session_token {
            builder = builder.with_token(token.reveal());
        }
        let mut options = ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_pool_max_idle_per_host(concurrency.max(1));
        if target.allow_http {
            options = options.with_allow_http(true);
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
                "true",
            );
        }
        if target.skip_verify {
            options = options.with_allow_invalid_certificates(true);
        }
        let retry = RetryConfig {
            max_retries: 8,
            retry_timeout: Duration::from_secs(300),
            ..RetryConfig::default()
        };
        let http = object_store::client::ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| target.error(&target.to_string(), e))?;
        let base_url = match &target.endpoint {
            Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), target.bucket),
            None if !target.bucket.contains('.') => {
                format!("https://{}.s3.{region}.amazonaws.com", target.bucket)
            }
            None => format!("https://s3.{region}.amazonaws.com/{}", target.bucket),
        };
        let store = builder
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| target.error(&target.to_string(), e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("regsweep-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(PathBuf::from(target.to_string()), e))?;
        let layout = Layout::new(target.root_path());
        Ok(S3Storage {
            region,
            base_url,
            http,
            target,
            store: Arc::new(store),
            runtime,
            layout,
            concurrency: concurrency.max(1),
            requests: RequestCounts::default(),
        })
    }

    /// The bucket and root, as `s3://bucket/root`.
    pub fn target(&self) -> &S3Target {
        &self.target
    }

    /// The storage paths, as keys: `layout.v2()` is the
    /// `<rootdirectory>/docker/registry/v2` prefix.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The requests sent so far, for the report.
    pub fn request_report(&self) -> S3Requests {
        let read = |count: &AtomicU64| count.load(Ordering::Relaxed);
        let r = &self.requests;
        S3Requests {
            list: read(&r.list),
            get: read(&r.get),
            head: read(&r.head),
            put: read(&r.put),
            delete: read(&r.delete),
        }
    }

    /// Requests in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Runs `future` in the background on the storage's runtime.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// Runs `future` on the storage's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The store, for requests run on [`S3Storage::block_on`].
    pub(crate) fn store(&self) -> &Arc<AmazonS3> {
        &self.store
    }

    /// An error naming `key` (a layout path) in the bucket.
    pub(crate) fn error(&self, key: &Path, source: object_store::Error) -> Error {
        self.target.error(&self.url(key), source)
    }

    /// `s3://bucket/<key>`, for messages.
    pub fn url(&self, key: &Path) -> String {
        format!("s3://{}/{}", self.target.bucket, key.display())
    }

    /// Every object under `prefix` (a layout path), page by page.
    pub(crate) fn list(
        &self,
        prefix: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = key(prefix);
        let store = Arc::clone(&self.store);
        store.list(Some(&key)).boxed()
    }

    /// The "directories" right below `prefix` (a layout path), and the
    /// objects there.
    pub(crate) async fn list_dirs(&self, prefix: &Path) -> Result<(Vec<String>, Vec<ObjectMeta>)> {
        let listed = self
            .store
            .list_with_delimiter(Some(&key(prefix)))
            .await
            .map_err(|e| self.error(prefix, e))?;
        self.requests.list.fetch_add(1, Ordering::Relaxed);
        let dirs = listed
            .common_prefixes
            .into_iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        Ok((dirs, listed.objects))
    }

    /// The content of `path`, read only when it is at most `limit` bytes.
    /// An error is a request that failed (after the client's retries): the
    /// caller cannot know what the object holds.
    pub(crate) async fn get(&self, path: &Path, limit: u64) -> object_store::Result<Fetched> {
        self.requests.get.fetch_add(1, Ordering::Relaxed);
        match self.store.get(&key(path)).await {
            Ok(result) if result.meta.size > limit => Ok(Fetched::TooLarge(result.meta.size)),
            Ok(result) => Ok(Fetched::Bytes(result.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(e) => Err(e),
        }
    }
}

/// Keys per DeleteObjects request (the API's limit).
pub(crate) const DELETE_BATCH: usize = 1000;

impl S3Storage {
    /// Deletes `keys` (at most [`DELETE_BATCH`]) with one DeleteObjects
    /// request. Per key, in order, why it was not deleted; `None` when it
    /// was, or was already gone. A request that failed as a whole fails
    /// every key: nothing of it is known gone.
    pub(crate) async fn delete_keys(&self, keys: &[&str]) -> Vec<Option<String>> {
        self.requests.delete.fetch_add(1, Ordering::Relaxed);
        let paths: Vec<object_store::Result<Key>> =
            keys.iter().map(|k| Ok(Key::from(*k))).collect();
        let answers: Vec<object_store::Result<Key>> = self
            .store
            .delete_stream(futures_util::stream::iter(paths).boxed())
            .collect()
            .await;
        if answers.len() != keys.len() {
            let why = answers
                .into_iter()
                .find_map(Result::err)
                .map(|e| config::describe_error(&e))
                .unwrap_or_else(|| "the DeleteObjects request failed".into());
            return vec![Some(why); keys.len()];
        }
        answers
            .into_iter()
            .map(|answer| match answer {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => Some(config::describe_error(&e)),
            })
            .collect()
    }
}

/// What a bounded GET found.
pub(crate) enum Fetched {
    /// The object's bytes.
    Bytes(Vec<u8>),
    /// No such object.
    Missing,
    /// Larger than asked for (its size): not read.
    TooLarge(u64),
}

/// The object key of a layout path (always `/`-separated, no leading `/`).
pub(crate) fn key(path: &Path) -> Key {
    Key::from(path_str(path))
}

/// A layout path as the key string.
pub(crate) fn path_str(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.trim_start_matches('/').to_owned()
}

/// The md5 of a link's expected content, as an S3 ETag shows it for an
/// object written in one PUT: when it matches, the content is known
/// without reading it.
pub(crate) fn link_etag(content: &str) -> String {
    use md5::Digest as _;
    crate::digest::lower_hex(&md5::Md5::digest(content.as_bytes()))
}

/// The ETag without its quotes.
pub(crate) fn bare_etag(meta: &ObjectMeta) -> Option<&str> {
    meta.e_tag.as_deref().map(|e| e.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_etag_is_the_md5_of_the_content() {
        assert_eq!(link_etag(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(link_etag("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn keys_have_no_leading_slash() {
        assert_eq!(path_str(Path::new("/root/docker")), "root/docker");
        assert_eq!(
            path_str(Path::new("docker/registry/v2")),
            "docker/registry/v2"
        );
    }
}

//! S3-compatible object storage: the [`ObjectStorage`] of an `s3://BUCKET/PREFIX`
//! repository (AWS S3, Garage, MinIO, Ceph RGW…).
//!
//! Built on `object_store` (the Apache Arrow project's client, used by
//! DataFusion, delta-rs and others) rather than `aws-sdk-s3`: one small API
//! for exactly what this trait needs (put, ranged get, list by prefix,
//! delete), path-style addressing and plain-HTTP endpoints for on-premises
//! stores, retries with exponential backoff built in, and a fraction of the
//! SDK's build time and dependencies. It is asynchronous; this module runs it
//! on a private tokio runtime of its own, so the rest of the replicator stays
//! synchronous and can call it from any thread (a tokio worker included).
//!
//! Every HTTP request goes through a counting layer ([`S3Stats`]): requests per
//! method, and the attempts that failed with throttling, a 5xx or a transport
//! error (which the client retries with backoff, up to [`MAX_RETRIES`] times).
//!
//! Durability: S3 acknowledges a PUT once the object is durable (Garage: once
//! written on a quorum of nodes), so every put here is durable on return.
//! Put-if-absent is enforced by this repository's single owner (the lease in
//! `meta/owner`, see `Repository`), and sent as `If-None-Match: *` to stores
//! that honour it; Garage 2.5 ignores that header, so the owner's check is
//! what holds there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService};
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use super::object_storage::{ObjectStorage, check_key};
use crate::error::{Error, Result};

/// Attempts of one request after the first (with exponential backoff).
pub const MAX_RETRIES: usize = 6;
/// Requests in flight at once for one batch of uploads or reads.
pub const PARALLEL_REQUESTS: usize = 8;

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// `Some` when `repo` is an `s3://` URL (and then whether it is a valid one).
    pub fn parse(repo: &str) -> Option<Result<S3Location>> {
        let rest = repo.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Some(Err(Error::Invalid {
                what: "S3 repository",
                value: repo.into(),
                reason: "write s3://BUCKET/PREFIX, with a bucket name of 3-63 lowercase letters, digits, `-` or `.`"
                    .into(),
            }));
        }
        if !prefix.is_empty()
            && let Err(e) = check_key(&prefix)
        {
            return Some(Err(Error::Invalid {
                what: "S3 repository prefix",
                value: repo.into(),
                reason: e.to_string(),
            }));
        }
        Some(Ok(S3Location {
            bucket: bucket.into(),
            prefix,
        }))
    }

    /// The URL again (`s3://bucket/prefix`).
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Where the S3 endpoint is and how to sign for it: the `[s3]` table of
/// lifeline.toml, with what it leaves out taken from the standard variables
/// `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// `https://s3.example.net` or `http://127.0.0.1:3900`; none: AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`); the default with an
    /// endpoint (what non-AWS stores want), virtual-hosted style without.
    pub path_style: Option<bool>,
}

impl S3Settings {
    /// These settings, with what they leave out taken from the environment.
    pub fn with_env(&self) -> S3Settings {
        let env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        S3Settings {
            endpoint: self
                .endpoint
                .clone()
                .or_else(|| env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])),
            region: self
                .region
                .clone()
                .or_else(|| env(&["AWS_REGION", "AWS_DEFAULT_REGION"])),
            access_key_id: self.access_key_id.clone().or_else(|| env(&["AWS_ACCESS_KEY_ID"])),
            secret_access_key: self
                .secret_access_key
                .clone()
                .or_else(|| env(&["AWS_SECRET_ACCESS_KEY"])),
            path_style: self.path_style,
        }
    }
}

/// Requests made by one [`S3Storage`], by kind; `failed` counts attempts that
/// met throttling (429/503), another 5xx or a transport error (each retried
/// with backoff until [`MAX_RETRIES`]).
#[derive(Debug, Default)]
pub struct S3Stats {
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub list: AtomicU64,
    pub head: AtomicU64,
    pub delete: AtomicU64,
    pub other: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// A copy of [`S3Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct S3Counts {
    pub get: u64,
    pub put: u64,
    pub list: u64,
    pub head: u64,
    pub delete: u64,
    pub other: u64,
    pub failed: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl S3Counts {
    /// Every request.
    pub fn requests(&self) -> u64 {
        self.get + self.put + self.list + self.head + self.delete + self.other
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &S3Counts) -> S3Counts {
        S3Counts {
            get: self.get - earlier.get,
            put: self.put - earlier.put,
            list: self.list - earlier.list,
            head: self.head - earlier.head,
            delete: self.delete - earlier.delete,
            other: self.other - earlier.other,
            failed: self.failed - earlier.failed,
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
        }
    }
}

impl S3Stats {
    pub fn counts(&self) -> S3Counts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        S3Counts {
            get: l(&self.get),
            put: l(&self.put),
            list: l(&self.list),
            head: l(&self.head),
            delete: l(&self.delete),
            other: l(&self.other),
            failed: l(&self.failed),
            bytes_up: l(&self.bytes_up),
            bytes_down: l(&self.bytes_down),
        }
    }
}

/// Every process's requests to S3, for `lifeline bench` and the figures.
pub fn process_stats() -> &'static Arc<S3Stats> {
    static STATS: std::sync::OnceLock<Arc<S3Stats>> = std::sync::OnceLock::new();
    STATS.get_or_init(Default::default)
}

/// The HTTP layer under object_store: counts each request and failure.
#[derive(Debug)]
struct Counting {
    inner: HttpClient,
    stats: Arc<S3Stats>,
}

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let counter = match *req.method() {
            http::Method::GET if req.uri().query().is_some_and(|q| q.contains("list-type")) => &self.stats.list,
            http::Method::GET => &self.stats.get,
            http::Method::PUT => &self.stats.put,
            http::Method::HEAD => &self.stats.head,
            http::Method::DELETE => &self.stats.delete,
            _ => &self.stats.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let up = req.body().content_length() as u64;
        self.stats.bytes_up.fetch_add(up, Ordering::Relaxed);
        let r = self.inner.execute(req).await;
        match &r {
            Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(resp) => {
                if let Some(n) = resp
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    self.stats.bytes_down.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

#[derive(Debug)]
struct CountingConnector(Arc<S3Stats>);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counting {
            inner,
            stats: self.0.clone(),
        }))
    }
}

/// An `s3://BUCKET/PREFIX` repository's objects (see the module docs).
pub struct S3Storage {
    runtime: Option<tokio::runtime::Runtime>,
    store: Arc<AmazonS3>,
    location: S3Location,
    endpoint: String,
    stats: Arc<S3Stats>,
}

impl S3Storage {
    /// Connects (lazily: nothing is sent before the first call).
    pub fn new(location: &S3Location, settings: &S3Settings) -> Result<S3Storage> {
        let s = settings.with_env();
        let invalid = |reason: String| Error::Invalid {
            what: "S3 settings",
            value: location.url(),
            reason,
        };
        let (Some(key), Some(secret)) = (&s.access_key_id, &s.secret_access_key) else {
            return Err(invalid(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id and \
                 secret_access_key in the [s3] table of lifeline.toml"
                    .into(),
            ));
        };
        let region = s.region.clone().unwrap_or_else(|| "us-east-1".into());
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(8),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: Duration::from_secs(120),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_allow_http(true)
                    .with_pool_max_idle_per_host(PARALLEL_REQUESTS * 2),
            )
            .with_http_connector(CountingConnector(process_stats().clone()));
        let endpoint = match &s.endpoint {
            Some(e) => {
                b = b
                    .with_endpoint(e)
                    .with_virtual_hosted_style_request(!s.path_style.unwrap_or(true));
                e.clone()
            }
            None => {
                b = b.with_virtual_hosted_style_request(!s.path_style.unwrap_or(false));
                format!("https://s3.{region}.amazonaws.com")
            }
        };
        let store = b.build().map_err(|e| invalid(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the S3 client's runtime", e))?;
        Ok(S3Storage {
            runtime: Some(runtime),
            store: Arc::new(store),
            location: location.clone(),
            endpoint,
            stats: process_stats().clone(),
        })
    }

    /// The requests made so far (by every S3 storage of this process).
    pub fn stats(&self) -> &Arc<S3Stats> {
        &self.stats
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn path(&self, key: &str) -> Result<ObjPath> {
        check_key(key)?;
        Ok(if self.location.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.location.prefix))
        })
    }

    /// Runs `f` on the private runtime and waits for it, from any thread.
    fn block<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.as_ref().expect("runtime").spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the S3 runtime stopped")
    }

    /// Our error for an object_store error on `key`, with the fix.
    fn error(&self, op: &str, key: &str, e: object_store::Error) -> Error {
        let text = e.to_string();
        let location = self.locate(key);
        let fix = if text.contains("NoSuchBucket") {
            format!(
                "the bucket `{}` does not exist at {}: create it (for Garage: `garage bucket create {}` and \
                 `garage bucket allow --read --write --owner {} --key KEY`), or fix the repository URL",
                self.location.bucket, self.endpoint, self.location.bucket, self.location.bucket
            )
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
        ) || text.contains("AccessDenied")
            || text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("403 Forbidden")
        {
            format!(
                "the store at {} refused the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the \
                 [s3] table) and that the key may read and write bucket `{}`",
                self.endpoint, self.location.bucket
            )
        } else {
            format!(
                "the store at {} did not answer correctly after {MAX_RETRIES} retries: check that it is up and \
                 reachable, then run the command again (nothing was committed that is not durable)",
                self.endpoint
            )
        };
        Error::Storage {
            op: op.into(),
            location,
            reason: first_line(&text),
            fix,
        }
    }

    /// Puts several objects (each created only if absent), at most
    /// [`PARALLEL_REQUESTS`] at a time; durable when it returns `Ok`.
    fn put_batch(&self, items: Vec<(String, Bytes)>) -> Result<()> {
        let mut jobs = Vec::with_capacity(items.len());
        for (key, bytes) in items {
            jobs.push((key.clone(), self.path(&key)?, bytes));
        }
        let store = self.store.clone();
        let results = self.block(async move {
            futures_util::stream::iter(jobs.into_iter().map(|(key, path, bytes)| {
                let store = store.clone();
                async move {
                    let r = retrying(|| {
                        store.put_opts(
                            &path,
                            PutPayload::from_bytes(bytes.clone()),
                            PutOptions {
                                mode: PutMode::Create,
                                ..Default::default()
                            },
                        )
                    })
                    .await;
                    (key, r)
                }
            }))
            .buffer_unordered(PARALLEL_REQUESTS)
            .collect::<Vec<_>>()
            .await
        });
        for (key, r) in results {
            match r {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(self.error("store", &key, e)),
            }
        }
        Ok(())
    }
}

/// Whether a failed request may succeed when made again: a transport error,
/// throttling or a 5xx, not a refusal (credentials, a missing bucket).
fn retryable(e: &object_store::Error) -> bool {
    let object_store::Error::Generic { .. } = e else {
        return false;
    };
    let t = e.to_string();
    ![
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "400 Bad",
        "403 Forbidden",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// Runs a put again on a retryable failure, with exponential backoff.
/// object_store retries only idempotent requests on transport errors, and a
/// create-if-absent is not one to it; to us it is (a retry that finds the
/// object there means the lost answer was a success).
async fn retrying<T, F, Fut>(mut attempt: F) -> object_store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if n < MAX_RETRIES && retryable(&e) => {
                tracing::debug!(error = %e, retry = n + 1, "S3 request failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
                n += 1;
            }
            r => return r,
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s);
    if line.len() > 400 {
        format!("{}…", &line[..line.floor_char_boundary(400)])
    } else {
        line.to_string()
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        // Never block (this may run on another runtime's worker).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl ObjectStorage for S3Storage {
    fn describe(&self) -> String {
        self.location.url()
    }

    fn locate(&self, key: &str) -> String {
        format!("{}/{key}", self.location.url())
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        // The single owner knows what it wrote; a store that honours
        // If-None-Match refuses an overwrite too.
        let path = self.path(key)?;
        let store = self.store.clone();
        let payload = Bytes::copy_from_slice(bytes);
        let r = self.block(async move {
            retrying(|| {
                store.put_opts(
                    &path,
                    PutPayload::from_bytes(payload.clone()),
                    PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    },
                )
            })
            .await
        });
        match r {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.error("store", key, e)),
        }
    }

    fn put_many_if_absent(&self, items: &[(&str, &[u8])]) -> Result<()> {
        self.put_batch(
            items
                .iter()
                .map(|(k, b)| (k.to_string(), Bytes::copy_from_slice(b)))
                .collect(),
        )
    }

    fn replace(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let payload = Bytes::copy_from_slice(bytes);
        self.block(async move { retrying(|| store.put(&path, PutPayload::from_bytes(payload.clone()))).await })
            .map(|_| ())
            .map_err(|e| self.error("store", key, e))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let r = self.block(async move {
            match store.get(&path).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map(|b| b.map(Vec::from)).map_err(|e| self.error("read", key, e))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
        if len == 0 {
            return Ok(self.stat(key)?.map(|_| Vec::new()));
        }
        let path = self.path(key)?;
        let store = self.store.clone();
        let r = self.block(async move {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(offset..offset + len)),
                ..Default::default()
            };
            match store.get_opts(&path, opts).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                // A range starting at or past the end: nothing there.
                Err(e) if e.to_string().contains("416") || e.to_string().contains("InvalidRange") => {
                    Ok(Some(Bytes::new()))
                }
                Err(e) => Err(e),
            }
        });
        r.map(|b| b.map(Vec::from)).map_err(|e| self.error("read", key, e))
    }

    fn get_tail(&self, key: &str, len: u64) -> Result<Option<(Vec<u8>, u64)>> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let r = self.block(async move {
            let opts = GetOptions {
                range: Some(GetRange::Suffix(len)),
                ..Default::default()
            };
            match store.get_opts(&path, opts).await {
                Ok(g) => {
                    let size = g.meta.size;
                    g.bytes().await.map(|b| Some((Vec::from(b), size)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.error("read", key, e))
    }

    fn stat(&self, key: &str) -> Result<Option<(u64, SystemTime)>> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let r = self.block(async move {
            match store.head(&path).await {
                Ok(m) => Ok(Some((m.size, SystemTime::from(m.last_modified)))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.error("look up", key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        // object_store lists whole path segments: list the directory part and
        // filter by the rest.
        let (dir, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let full_dir = match (self.location.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (true, false) => Some(ObjPath::from(dir)),
            (false, true) => Some(ObjPath::from(self.location.prefix.as_str())),
            (false, false) => Some(ObjPath::from(format!("{}/{dir}", self.location.prefix))),
        };
        let store = self.store.clone();
        let r = self.block(async move {
            let mut s = store.list(full_dir.as_ref());
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                let m = m?;
                out.push((m.location.to_string(), m.size));
            }
            Ok::<_, object_store::Error>(out)
        });
        let skip = if self.location.prefix.is_empty() {
            0
        } else {
            self.location.prefix.len() + 1
        };
        let mut out: Vec<(String, u64)> = r
            .map_err(|e| self.error("list", prefix, e))?
            .into_iter()
            .filter_map(|(k, n)| {
                let k = k.get(skip..)?.to_string();
                (k.starts_with(prefix) && check_key(&k).is_ok()).then_some((k, n))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        let store = self.store.clone();
        let r = self.block(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| self.error("delete", key, e))
    }

    fn parallel_reads(&self) -> usize {
        PARALLEL_REQUESTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_how_to_write_them() {
        assert!(S3Location::parse("/srv/repo").is_none());
        let l = S3Location::parse("s3://dr-site/lifeline/prod/").unwrap().unwrap();
        assert_eq!(l.bucket, "dr-site");
        assert_eq!(l.prefix, "lifeline/prod");
        assert_eq!(l.url(), "s3://dr-site/lifeline/prod");
        let l = S3Location::parse("s3://dr-site").unwrap().unwrap();
        assert_eq!(l.prefix, "");
        let e = S3Location::parse("s3://Bad_Bucket/x").unwrap().unwrap_err().to_string();
        assert!(e.contains("s3://BUCKET/PREFIX"), "{e}");
        assert!(S3Location::parse("s3://ok-bucket/a/../b").unwrap().is_err());
    }

    #[test]
    fn settings_take_what_they_leave_out_from_the_environment() {
        let s = S3Settings {
            endpoint: Some("http://127.0.0.1:3900".into()),
            region: Some("garage".into()),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some("s".into()),
            path_style: None,
        };
        assert_eq!(s.with_env(), s);
        let e = S3Storage::new(
            &S3Location::parse("s3://b-1/p").unwrap().unwrap(),
            &S3Settings {
                access_key_id: Some("only-the-key".into()),
                ..s
            }
            .with_env(),
        );
        // A secret from the environment or the explicit one: either way it builds.
        assert!(e.is_ok());
    }
}

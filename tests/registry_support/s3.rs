//! A local S3 endpoint for the registry's `s3` storage driver: moto's server
//! mode (`moto_server`) on 127.0.0.1, one per test, with a bucket, a record
//! of every request it answered (with headers: a copy is told from a put),
//! and plain object access (a signature moto does not check) for the tests'
//! own look at the bucket. moto accepts any credentials and keeps everything
//! in memory: killing it loses the bucket.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use ureq::Agent;

use super::{is_executable, on_path, random_hex, require_tools};

/// Names the `moto_server` to run, before PATH and [`MOTO_DEFAULT`].
pub const MOTO_ENV: &str = "REGSWEEP_MOTO_SERVER";
/// Where `.ci/run` installs moto (a venv).
pub const MOTO_DEFAULT: &str = "/opt/regsweep-moto/bin/moto_server";
const MOTO_BIN: &str = "moto_server";
/// How to get moto, for the message of a required but missing one.
pub const MOTO_INSTALL: &str = "python3 -m venv /opt/regsweep-moto && \
     /opt/regsweep-moto/bin/pip install 'moto[s3]' flask flask-cors";

/// The region every client here names (moto serves them all).
pub const REGION: &str = "us-east-1";
/// The access key id every client here uses; moto checks none.
pub const ACCESS_KEY: &str = "regsweep-test-access-key";

/// How long moto may take to answer its first request (it imports a lot).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `moto_server` to run: `$REGSWEEP_MOTO_SERVER`, else the one on PATH,
/// else [`MOTO_DEFAULT`]; or why there is none.
pub fn moto_bin() -> Result<PathBuf, String> {
    if let Some(bin) = env::var_os(MOTO_ENV).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable(&bin) {
            Ok(bin)
        } else {
            Err(format!(
                "${MOTO_ENV}={} is not an executable file",
                bin.display()
            ))
        };
    }
    if on_path(MOTO_BIN) {
        return Ok(PathBuf::from(MOTO_BIN));
    }
    if is_executable(Path::new(MOTO_DEFAULT)) {
        return Ok(PathBuf::from(MOTO_DEFAULT));
    }
    Err(format!(
        "{MOTO_BIN} not found (neither ${MOTO_ENV}, PATH nor {MOTO_DEFAULT})"
    ))
}

/// [`require_tools`], and moto too: true when the registry, skopeo and
/// `moto_server` are all there. Otherwise prints `skipping: <reason>` and
/// returns false, or panics when `REGSWEEP_REQUIRE_REGISTRY=1`.
#[must_use]
pub fn require_s3() -> bool {
    if !require_tools() {
        return false;
    }
    let reason = match moto_bin() {
        Ok(_) => return true,
        Err(reason) => reason,
    };
    if env::var("REGSWEEP_REQUIRE_REGISTRY").as_deref() == Ok("1") {
        panic!("REGSWEEP_REQUIRE_REGISTRY=1 but {reason}; install it with: {MOTO_INSTALL}");
    }
    eprintln!("skipping: {reason}");
    false
}

/// Where in a bucket a registry keeps its storage, and how to reach it:
/// what the registry's `storage.s3` section says.
#[derive(Debug, Clone)]
pub struct S3Storage {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub bucket: String,
    /// Without slashes at either end; empty for the bucket's top.
    pub rootdirectory: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Storage {
    /// `s3://<bucket>[/<rootdirectory>]`, regsweep's URL TARGET.
    pub fn url(&self) -> String {
        if self.rootdirectory.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.rootdirectory)
        }
    }

    /// The key prefix of the storage tree: `<rootdirectory>/docker/registry/v2/`.
    pub fn v2_prefix(&self) -> String {
        if self.rootdirectory.is_empty() {
            "docker/registry/v2/".to_string()
        } else {
            format!("{}/docker/registry/v2/", self.rootdirectory)
        }
    }

    /// The environment regsweep reads for an `s3://` TARGET (path-style
    /// requests to `AWS_ENDPOINT_URL`).
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }

    /// The `storage:` lines of a registry config.yml (indented two spaces
    /// under `storage:`) for this storage.
    pub fn config_lines(&self) -> String {
        format!(
            "  s3:\n    accesskey: {access}\n    secretkey: {secret}\n    region: {REGION}\n    \
             regionendpoint: {endpoint}\n    bucket: {bucket}\n    rootdirectory: /{root}\n    \
             secure: false\n    v4auth: true\n  redirect:\n    disable: true\n",
            access = self.access_key,
            secret = self.secret_key,
            endpoint = self.endpoint,
            bucket = self.bucket,
            root = self.rootdirectory,
        )
    }
}

/// A running `moto_server` with one bucket. Dropping it kills and reaps the
/// process.
pub struct S3Server {
    /// Holds `moto.log` (its access log and errors) and `requests.jsonl`
    /// (moto's own record of every request, with headers).
    dir: TempDir,
    port: u16,
    bucket: String,
    /// Random per server, so that finding it in an output means a leak.
    secret_key: String,
    child: Option<Child>,
}

impl S3Server {
    /// moto on a free port of 127.0.0.1, answering, with an empty bucket
    /// `regsweep-test`.
    pub fn start() -> S3Server {
        let bin = moto_bin().unwrap_or_else(|e| panic!("{e} (call require_s3() first)"));
        let dir = tempfile::tempdir().expect("moto tempdir");
        let mut server = S3Server {
            dir,
            port: 0,
            bucket: "regsweep-test".to_string(),
            secret_key: format!("secret-{}", random_hex(16)),
            child: None,
        };
        // A port found free can be taken before moto binds it: retry.
        for _attempt in 0..5 {
            server.port = free_port();
            let log = fs::File::create(server.access_log()).unwrap();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &server.port.to_string()])
                .env("MOTO_ENABLE_RECORDING", "True")
                .env("MOTO_RECORDER_FILEPATH", server.recording())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            server.child = Some(child);
            match server.wait_ready() {
                Ok(()) => {
                    let status = server.raw("PUT", &format!("/{}", server.bucket), &[], b"");
                    assert_eq!(status.0, 200, "create bucket: {}", status.1);
                    return server;
                }
                Err(log) if log.contains("already in use") => server.stop(),
                Err(log) => {
                    server.stop();
                    panic!(
                        "moto_server on port {} did not come up:\n{log}",
                        server.port
                    );
                }
            }
        }
        panic!("moto_server: no free port after 5 attempts");
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The secret access key every client of this server is given.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// A registry storage under `rootdirectory` of the bucket.
    pub fn storage(&self, rootdirectory: &str) -> S3Storage {
        S3Storage {
            endpoint: self.endpoint(),
            bucket: self.bucket.clone(),
            rootdirectory: rootdirectory.trim_matches('/').to_string(),
            access_key: ACCESS_KEY.to_string(),
            secret_key: self.secret_key.clone(),
        }
    }

    /// moto's stdout and stderr: its access log and its errors.
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("moto.log")
    }

    /// moto's record of the requests it answered, one JSON object a line.
    pub fn recording(&self) -> PathBuf {
        self.dir.path().join("requests.jsonl")
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills moto (its bucket is gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("{}/moto-api/", self.endpoint());
        let child = self.child.as_mut().expect("started");
        super::http::wait_until_up(child, &url, true, STARTUP_TIMEOUT)
            .map_err(|why| format!("moto_server: {why}:\n{}", self.log()))
    }

    /// moto's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.access_log()).unwrap_or_default()
    }

    /// A request to `path` (`/bucket/key?query`): status and body as text.
    fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let reply = self.request(method, path, headers, body);
        (reply.status, reply.text())
    }

    fn raw_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let reply = self.request(method, path, headers, body);
        (reply.status, reply.body)
    }

    /// A request to `path` (`/bucket/key?query`), with an `Authorization`
    /// header whose signature moto does not check.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> S3Reply {
        let uri = format!("{}{path}", self.endpoint());
        // moto answers an anonymous request by the object's ACL, which the
        // registry's writes make private.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20240101/{REGION}/s3/aws4_request, \
             SignedHeaders=host, Signature={}",
            "0".repeat(64)
        );
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("Authorization", authorization);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body.to_vec()).expect("S3 request");
        let mut resp = agent(Duration::from_secs(60))
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
        let headers = resp
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .unwrap_or_default();
        S3Reply {
            status,
            headers,
            body,
        }
    }

    /// Every key under `prefix` with its size (ListObjectsV2, page by page).
    pub fn objects(&self, prefix: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/{}?list-type=2&prefix={}",
                self.bucket,
                query_escape(prefix)
            );
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", query_escape(t)));
            }
            let (status, body) = self.raw("GET", &path, &[], b"");
            assert_eq!(status, 200, "list {prefix}: {body}");
            for contents in elements(&body, "Contents") {
                let key = xml_unescape(element(contents, "Key").expect("Key in Contents"));
                let size = element(contents, "Size")
                    .and_then(|s| s.parse().ok())
                    .expect("Size in Contents");
                out.insert(key, size);
            }
            token = element(&body, "NextContinuationToken").map(xml_unescape);
            if element(&body, "IsTruncated") != Some("true") || token.is_none() {
                return out;
            }
        }
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> BTreeSet<String> {
        self.objects(prefix).into_keys().collect()
    }

    /// The object `key`, or `None` on 404.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.raw_bytes("GET", &self.object_path(key), &[], b"");
        match status {
            200 => Some(body),
            404 => None,
            other => panic!("GET {key}: status {other}"),
        }
    }

    /// Writes the object `key`.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let (status, body) = self.raw("PUT", &self.object_path(key), &[], bytes);
        assert_eq!(status, 200, "PUT {key}: {body}");
    }

    /// Deletes the object `key`.
    pub fn delete(&self, key: &str) {
        let (status, body) = self.raw("DELETE", &self.object_path(key), &[], b"");
        assert!(
            status == 204 || status == 200,
            "DELETE {key}: status {status}: {body}"
        );
    }

    /// Copies every object under `from` to the same key under `to`
    /// (server-side, CopyObject).
    pub fn copy_prefix(&self, from: &str, to: &str) {
        for key in self.keys(from) {
            let dest = format!("{to}{}", &key[from.len()..]);
            let source = format!("/{}/{}", self.bucket, path_escape(&key));
            let (status, body) = self.raw(
                "PUT",
                &self.object_path(&dest),
                &[("x-amz-copy-source", &source)],
                b"",
            );
            assert_eq!(status, 200, "copy {key} to {dest}: {body}");
        }
    }

    /// The multipart uploads in progress under `prefix` (key, upload id).
    pub fn multipart_uploads(&self, prefix: &str) -> BTreeSet<(String, String)> {
        let path = format!("/{}?uploads&prefix={}", self.bucket, query_escape(prefix));
        let (status, body) = self.raw("GET", &path, &[], b"");
        assert_eq!(status, 200, "list multipart uploads: {body}");
        elements(&body, "Upload")
            .map(|u| {
                (
                    xml_unescape(element(u, "Key").expect("Key in Upload")),
                    xml_unescape(element(u, "UploadId").expect("UploadId in Upload")),
                )
            })
            .collect()
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, path_escape(key))
    }

    /// A position in the request record: [`S3Server::requests_since`] counts
    /// what came after it.
    pub fn mark(&self) -> usize {
        self.recorded().len()
    }

    /// The requests answered since `mark`, by kind.
    pub fn requests_since(&self, mark: usize) -> RequestCounts {
        let mut counts = RequestCounts::default();
        for request in self.recorded().into_iter().skip(mark) {
            counts.add(request.kind(&self.bucket));
        }
        counts
    }

    /// The requests answered since `mark`, as `METHOD URL` lines (for
    /// failure messages).
    pub fn request_lines_since(&self, mark: usize) -> Vec<String> {
        self.recorded()
            .into_iter()
            .skip(mark)
            .map(|r| format!("{} {}", r.method, r.url))
            .collect()
    }

    /// The requests since `mark` that change objects under `prefix`
    /// (every DeleteObjects counts: its keys are in its body), as `METHOD
    /// URL` lines. Writes elsewhere in the bucket (a lock object beside the
    /// storage tree, say) are not counted.
    pub fn writes_under_since(&self, mark: usize, prefix: &str) -> Vec<String> {
        let under = format!("/{}/{}", self.bucket, path_escape(prefix));
        self.recorded()
            .into_iter()
            .skip(mark)
            .filter(|r| {
                let kind = r.kind(&self.bucket);
                let writes = match kind {
                    RequestKind::DeleteObjects => true,
                    RequestKind::Multipart => r.method != "GET",
                    RequestKind::Put | RequestKind::Copy | RequestKind::Delete => true,
                    _ => false,
                };
                writes && (kind == RequestKind::DeleteObjects || r.url.contains(&under))
            })
            .map(|r| format!("{} {}", r.method, r.url))
            .collect()
    }

    fn recorded(&self) -> Vec<Recorded> {
        let text = fs::read_to_string(self.recording()).unwrap_or_default();
        // The last line can be half written while moto works.
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|v| Recorded::from(&v))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An S3 response: status, headers (lower-case names), body.
#[derive(Debug)]
pub struct S3Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl S3Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// One request of moto's record.
struct Recorded {
    method: String,
    url: String,
    copy_source: bool,
}

impl Recorded {
    fn from(v: &Value) -> Recorded {
        let copy_source = v["headers"].as_object().is_some_and(|h| {
            h.keys()
                .any(|k| k.eq_ignore_ascii_case("x-amz-copy-source"))
        });
        Recorded {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            url: v["url"].as_str().unwrap_or_default().to_string(),
            copy_source,
        }
    }

    fn kind(&self, bucket: &str) -> RequestKind {
        classify(&self.method, &self.url, self.copy_source, bucket)
    }
}

/// What an S3 request does, told from its method, path and query (and, for
/// a copy, its `x-amz-copy-source` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RequestKind {
    /// ListObjects(V2): GET on the bucket.
    List,
    Get,
    Head,
    Put,
    /// CopyObject (or UploadPartCopy): a PUT with `x-amz-copy-source`.
    Copy,
    /// DeleteObject.
    Delete,
    /// DeleteObjects: POST `?delete` on the bucket.
    DeleteObjects,
    /// Create/UploadPart/Complete/Abort multipart, ListParts,
    /// ListMultipartUploads.
    Multipart,
    /// Anything else (bucket creation, moto's own API).
    Other,
}

impl RequestKind {
    pub const ALL: [RequestKind; 9] = [
        RequestKind::List,
        RequestKind::Get,
        RequestKind::Head,
        RequestKind::Put,
        RequestKind::Copy,
        RequestKind::Delete,
        RequestKind::DeleteObjects,
        RequestKind::Multipart,
        RequestKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::List => "LIST",
            RequestKind::Get => "GET",
            RequestKind::Head => "HEAD",
            RequestKind::Put => "PUT",
            RequestKind::Copy => "COPY",
            RequestKind::Delete => "DELETE",
            RequestKind::DeleteObjects => "DeleteObjects",
            RequestKind::Multipart => "multipart",
            RequestKind::Other => "other",
        }
    }
}

/// Classifies one request to `bucket` (path-style URLs).
pub fn classify(method: &str, url: &str, copy_source: bool, bucket: &str) -> RequestKind {
    let path_and_query = url
        .find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url);
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let params: BTreeSet<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .collect();
    let rest = path.trim_start_matches('/');
    let (first, key) = rest.split_once('/').unwrap_or((rest, ""));
    if first != bucket {
        return RequestKind::Other;
    }
    let multipart = params.contains("uploads") || params.contains("uploadId");
    match (method, key.is_empty()) {
        (_, _) if multipart => RequestKind::Multipart,
        ("GET", true) if params.is_empty() => RequestKind::Other,
        ("GET", true)
            if params
                .iter()
                .any(|p| ["list-type", "prefix", "delimiter", "marker"].contains(p)) =>
        {
            RequestKind::List
        }
        ("GET", false) => RequestKind::Get,
        ("HEAD", false) => RequestKind::Head,
        ("PUT", false) if copy_source => RequestKind::Copy,
        ("PUT", false) => RequestKind::Put,
        ("DELETE", false) => RequestKind::Delete,
        ("POST", true) if params.contains("delete") => RequestKind::DeleteObjects,
        _ => RequestKind::Other,
    }
}

/// Requests by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<RequestKind, u64>);

impl RequestCounts {
    fn add(&mut self, kind: RequestKind) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub fn get(&self, kind: RequestKind) -> u64 {
        self.0.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = RequestKind::ALL
            .into_iter()
            .filter(|k| self.get(*k) > 0)
            .map(|k| format!("{} {}", k.name(), self.get(k)))
            .collect();
        write!(f, "{} requests ({})", self.total(), parts.join(", "))
    }
}

fn agent(timeout: Duration) -> Agent {
    super::http::agent(timeout)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    free_port()
}

/// The text of every `<name>...</name>` in `xml`.
fn elements<'a>(xml: &'a str, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let inner = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(inner)
    })
}

fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).next()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Percent-encodes everything but unreserved characters and `/`.
fn path_escape(s: &str) -> String {
    escape(s, true)
}

fn query_escape(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

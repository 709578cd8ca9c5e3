//! Plain-HTTP calls to the registry API on 127.0.0.1 (no auth, no TLS).

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;

use super::registry::Registry;
use super::{sha256_digest, sha512_digest};

/// Every manifest media type, for `Accept`.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.v1+prettyjws, \
     application/vnd.docker.distribution.manifest.v1+json";

/// An agent that reports 4xx/5xx as statuses, not errors, and never uses a
/// proxy.
pub fn agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A `GET` or `HEAD` of the manifest at `url` as a client pulling it makes
/// it (every manifest type accepted, `user_agent`); it must answer 200.
/// Returns the digest served (`Docker-Content-Digest`), when given.
pub fn pull_manifest(url: &str, method: &str, user_agent: &str) -> Option<String> {
    let request = match method {
        "HEAD" => agent(Duration::from_secs(30)).head(url),
        _ => agent(Duration::from_secs(30)).get(url),
    };
    let reply = request
        .header("Accept", ACCEPT_MANIFESTS)
        .header("User-Agent", user_agent)
        .call()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert_eq!(reply.status(), 200, "{method} {url}");
    reply
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Polls `url` while `child` runs until it answers 200 (or, with
/// `any_answer`, anything at all), for at most `timeout`; otherwise why not.
pub fn wait_until_up(
    child: &mut std::process::Child,
    url: &str,
    any_answer: bool,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    let agent = agent(Duration::from_secs(2));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited with {status}"));
        }
        if let Ok(reply) = agent.get(url).call() {
            if any_answer || reply.status() == 200 {
                return Ok(());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no answer from {url} within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn api() -> Agent {
    agent(Duration::from_secs(30))
}

/// A response reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub digest: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    fn from(mut resp: ureq::http::Response<ureq::Body>) -> Reply {
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let digest = header("Docker-Content-Digest");
        let content_type = header("Content-Type");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap_or_default();
        Reply {
            status,
            digest,
            content_type,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Registry {
    /// `POST /v2/<repo>/blobs/uploads/`: starts an upload, returns its
    /// absolute location.
    fn begin_upload(&self, repo: &str) -> String {
        let resp = api()
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send_empty()
            .expect("POST blob upload");
        assert_eq!(resp.status(), 202, "POST /v2/{repo}/blobs/uploads/");
        let location = resp
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location header")
            .to_string();
        let location = if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        };
        assert!(
            location.starts_with("http://127.0.0.1:"),
            "unexpected upload location {location}"
        );
        location
    }

    /// Starts an upload to `repo` and sends `bytes` as its first chunk
    /// (`PATCH`), leaving it unfinished under `_uploads/`.
    pub fn start_upload(&self, repo: &str, bytes: &[u8]) {
        let location = self.begin_upload(repo);
        let reply = Reply::from(
            api()
                .patch(&location)
                .header("Content-Type", "application/octet-stream")
                .send(bytes)
                .expect("PATCH upload"),
        );
        assert_eq!(reply.status, 202, "PATCH upload chunk: {}", reply.text());
    }

    /// Uploads `bytes` as a blob of `repo` (monolithic: `POST` then `PUT
    /// <location>&digest=`). Returns its digest.
    pub fn upload_blob(&self, repo: &str, bytes: &[u8]) -> String {
        self.upload_blob_as(repo, bytes, &sha256_digest(bytes));
        sha256_digest(bytes)
    }

    /// Uploads `bytes` to `repo` naming it by its sha512 digest: the registry
    /// stores the data under its sha256 and links it into `repo` under both
    /// (`_layers/sha512/<hex>/link` holds the sha256 digest). Returns the
    /// sha512 digest.
    pub fn upload_blob_sha512(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha512_digest(bytes);
        self.upload_blob_as(repo, bytes, &digest);
        digest
    }

    fn upload_blob_as(&self, repo: &str, bytes: &[u8], digest: &str) {
        let location = self.begin_upload(repo);
        let sep = if location.contains('?') { '&' } else { '?' };
        let reply = Reply::from(
            api()
                .put(format!("{location}{sep}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .send(bytes)
                .expect("PUT blob"),
        );
        assert_eq!(reply.status, 201, "PUT blob {digest}: {}", reply.text());
    }

    /// `PUT /v2/<repo>/manifests/<reference>` (a tag or a digest) with
    /// `Content-Type: media_type`. Returns the digest the registry assigned.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let reply = Reply::from(
            api()
                .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
                .header("Content-Type", media_type)
                .send(bytes)
                .expect("PUT manifest"),
        );
        assert_eq!(
            reply.status,
            201,
            "PUT /v2/{repo}/manifests/{reference}: {}",
            reply.text()
        );
        let digest = reply.digest.expect("Docker-Content-Digest on manifest PUT");
        assert_eq!(
            digest,
            sha256_digest(bytes),
            "registry digest of PUT manifest"
        );
        digest
    }

    /// `GET /v2/<repo>/manifests/<reference>`, accepting every manifest type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Reply {
        Reply::from(
            api()
                .get(self.url(&format!("/v2/{repo}/manifests/{reference}")))
                .header("Accept", ACCEPT_MANIFESTS)
                .call()
                .expect("GET manifest"),
        )
    }

    /// The status of `GET /v2/<repo>/manifests/<reference>`.
    pub fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        self.get_manifest(repo, reference).status
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: status and
    /// `Docker-Content-Digest`.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> (u16, Option<String>) {
        let reply = Reply::from(
            api()
                .head(self.url(&format!("/v2/{repo}/manifests/{reference}")))
                .header("Accept", ACCEPT_MANIFESTS)
                .call()
                .expect("HEAD manifest"),
        );
        (reply.status, reply.digest)
    }

    /// The digest `repo:tag` points at, per the registry.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> String {
        match self.head_manifest(repo, tag) {
            (200, Some(digest)) => digest,
            other => panic!("HEAD {repo}:{tag}: {other:?}"),
        }
    }

    /// The child manifest digests of the index / manifest list `digest`.
    pub fn index_children(&self, repo: &str, digest: &str) -> Vec<String> {
        let reply = self.get_manifest(repo, digest);
        assert_eq!(reply.status, 200, "GET {repo}@{digest}");
        let index: Value = serde_json::from_slice(&reply.body).expect("index JSON");
        index["manifests"]
            .as_array()
            .expect("manifests[]")
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect()
    }

    /// `GET /v2/<repo>/blobs/<digest>`.
    pub fn get_blob(&self, repo: &str, digest: &str) -> Reply {
        Reply::from(
            api()
                .get(self.url(&format!("/v2/{repo}/blobs/{digest}")))
                .call()
                .expect("GET blob"),
        )
    }

    /// `DELETE /v2/<repo>/manifests/<digest>`; returns the status.
    pub fn delete_manifest(&self, repo: &str, digest: &str) -> u16 {
        api()
            .delete(self.url(&format!("/v2/{repo}/manifests/{digest}")))
            .call()
            .expect("DELETE manifest")
            .status()
            .as_u16()
    }

    /// `DELETE /v2/<repo>/blobs/<digest>` (unlinks the blob from `repo`;
    /// the data stays); returns the status.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> u16 {
        api()
            .delete(self.url(&format!("/v2/{repo}/blobs/{digest}")))
            .call()
            .expect("DELETE blob")
            .status()
            .as_u16()
    }
}

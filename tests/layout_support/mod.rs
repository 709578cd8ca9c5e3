//! Test environment for `regsweep gc`: a [`LayoutBuilder`] that writes a
//! registry storage root into a tempdir exactly as docker-registry 2.8 does
//! (see `storage-layout.md`), manifest builders for every kind, helpers to
//! damage the tree, to run the real binary, and to snapshot trees.
//!
//! Link files hold `sha256:<hex>` with no trailing newline. A manifest is a
//! blob whose digest is the sha256 of its bytes.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use walkdir::WalkDir;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Environment variables that would change what the binary does.
const SCRUBBED_ENV: [&str; 3] = [
    "REGISTRY_STORAGE",
    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
    "REGSWEEP_FAULT_STOP_AFTER",
];

// ---------------------------------------------------------------------------
// Digests and paths
// ---------------------------------------------------------------------------

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of `sha256:<hex>`.
pub fn hex_of(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// `<root>/docker/registry/v2`.
pub fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

pub fn repo_dir(root: &Path, repo: &str) -> PathBuf {
    v2(root).join("repositories").join(repo)
}

pub fn blob_dir(root: &Path, digest: &str) -> PathBuf {
    let hex = hex_of(digest);
    v2(root).join("blobs/sha256").join(&hex[..2]).join(hex)
}

pub fn blob_data(root: &Path, digest: &str) -> PathBuf {
    blob_dir(root, digest).join("data")
}

pub fn revision_dir(root: &Path, repo: &str, digest: &str) -> PathBuf {
    repo_dir(root, repo)
        .join("_manifests/revisions/sha256")
        .join(hex_of(digest))
}

pub fn revision_link(root: &Path, repo: &str, digest: &str) -> PathBuf {
    revision_dir(root, repo, digest).join("link")
}

pub fn layer_link_dir(root: &Path, repo: &str, digest: &str) -> PathBuf {
    repo_dir(root, repo)
        .join("_layers/sha256")
        .join(hex_of(digest))
}

pub fn layer_link(root: &Path, repo: &str, digest: &str) -> PathBuf {
    layer_link_dir(root, repo, digest).join("link")
}

pub fn tag_dir(root: &Path, repo: &str, tag: &str) -> PathBuf {
    repo_dir(root, repo).join("_manifests/tags").join(tag)
}

pub fn tag_current_link(root: &Path, repo: &str, tag: &str) -> PathBuf {
    tag_dir(root, repo, tag).join("current/link")
}

pub fn tag_index_dir(root: &Path, repo: &str, tag: &str, digest: &str) -> PathBuf {
    tag_dir(root, repo, tag)
        .join("index/sha256")
        .join(hex_of(digest))
}

pub fn tag_index_link(root: &Path, repo: &str, tag: &str, digest: &str) -> PathBuf {
    tag_index_dir(root, repo, tag, digest).join("link")
}

/// `revisions/sha256/<m>/signatures/sha256/<s>/link` (schema1, registries <= 2.4).
pub fn signature_link(root: &Path, repo: &str, manifest: &str, signature: &str) -> PathBuf {
    revision_dir(root, repo, manifest)
        .join("signatures/sha256")
        .join(hex_of(signature))
        .join("link")
}

fn write_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("path has a parent")).expect("create parent dirs");
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn write_link(path: &Path, digest: &str) {
    write_file(path, digest.as_bytes());
}

// ---------------------------------------------------------------------------
// Descriptors and manifests
// ---------------------------------------------------------------------------

/// A content descriptor: a blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// Foreign layer URLs; a foreign layer is not in storage.
    pub urls: Vec<String>,
}

impl Desc {
    /// The JSON descriptor, as it appears in a manifest.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "mediaType": self.media_type,
            "size": self.size,
            "digest": self.digest,
        });
        if !self.urls.is_empty() {
            v["urls"] = json!(self.urls);
        }
        v
    }

    pub fn hex(&self) -> &str {
        hex_of(&self.digest)
    }

    /// Whether the registry would have it in storage (foreign layers are not).
    pub fn in_storage(&self) -> bool {
        self.urls.is_empty()
    }
}

/// A manifest: its exact bytes, their digest, and what it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
    /// Config and layers (or schema1 fsLayers): what a push links in `_layers`.
    pub blobs: Vec<Desc>,
    /// Child manifest digests (index / manifest list).
    pub children: Vec<String>,
    /// The `subject` digest, if any.
    pub subject: Option<String>,
}

impl Manifest {
    /// A manifest from its JSON; `blobs`, `children`, `subject` as given.
    pub fn from_json(
        media_type: &str,
        value: &Value,
        blobs: Vec<Desc>,
        children: Vec<String>,
        subject: Option<String>,
    ) -> Manifest {
        let bytes = serde_json::to_vec_pretty(value).expect("serialize manifest");
        Manifest::from_bytes(media_type, bytes, blobs, children, subject)
    }

    /// A manifest from raw bytes (for damaged or odd manifests).
    pub fn from_bytes(
        media_type: &str,
        bytes: Vec<u8>,
        blobs: Vec<Desc>,
        children: Vec<String>,
        subject: Option<String>,
    ) -> Manifest {
        Manifest {
            media_type: media_type.to_owned(),
            digest: sha256(&bytes),
            bytes,
            blobs,
            children,
            subject,
        }
    }

    /// The descriptor an index or a `subject` uses for this manifest.
    pub fn desc(&self) -> Desc {
        Desc {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            urls: Vec::new(),
        }
    }

    pub fn hex(&self) -> &str {
        hex_of(&self.digest)
    }

    /// Blobs of this manifest that are in storage.
    pub fn stored_blobs(&self) -> impl Iterator<Item = &Desc> {
        self.blobs.iter().filter(|d| d.in_storage())
    }
}

fn image(
    media_type: &str,
    config: &Desc,
    layers: &[&Desc],
    subject: Option<&Manifest>,
) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.json(),
        "layers": layers.iter().map(|l| l.json()).collect::<Vec<_>>(),
    });
    if let Some(subject) = subject {
        value["subject"] = subject.desc().json();
    }
    let mut blobs = vec![config.clone()];
    blobs.extend(layers.iter().map(|l| (*l).clone()));
    Manifest::from_json(
        media_type,
        &value,
        blobs,
        Vec::new(),
        subject.map(|s| s.digest.clone()),
    )
}

/// Docker schema2 image manifest.
pub fn docker_image(config: &Desc, layers: &[&Desc]) -> Manifest {
    image(DOCKER_MANIFEST, config, layers, None)
}

/// OCI image manifest.
pub fn oci_image(config: &Desc, layers: &[&Desc]) -> Manifest {
    image(OCI_MANIFEST, config, layers, None)
}

/// OCI artifact (image manifest with `artifactType`, layers of any media
/// type, optional `subject`), as cosign, notation, oras and helm push them.
pub fn oci_artifact(
    artifact_type: &str,
    config: &Desc,
    layers: &[&Desc],
    subject: Option<&Manifest>,
) -> Manifest {
    let mut m = image(OCI_MANIFEST, config, layers, subject);
    let mut value: Value = serde_json::from_slice(&m.bytes).unwrap();
    value["artifactType"] = json!(artifact_type);
    value["annotations"] = json!({"org.opencontainers.image.created": "2024-01-01T00:00:00Z"});
    m = Manifest::from_json(
        OCI_MANIFEST,
        &value,
        m.blobs,
        Vec::new(),
        subject.map(|s| s.digest.clone()),
    );
    m
}

fn index(media_type: &str, children: &[&Manifest], subject: Option<&Manifest>) -> Manifest {
    let arches = ["amd64", "arm64", "ppc64le", "s390x", "386", "riscv64"];
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut d = c.desc().json();
            d["platform"] = json!({"architecture": arches[i % arches.len()], "os": "linux"});
            d
        })
        .collect();
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    if let Some(subject) = subject {
        value["subject"] = subject.desc().json();
    }
    Manifest::from_json(
        media_type,
        &value,
        Vec::new(),
        children.iter().map(|c| c.digest.clone()).collect(),
        subject.map(|s| s.digest.clone()),
    )
}

/// Docker manifest list (multi-arch).
pub fn docker_list(children: &[&Manifest]) -> Manifest {
    index(DOCKER_LIST, children, None)
}

/// OCI image index, optionally with a `subject`.
pub fn oci_index(children: &[&Manifest], subject: Option<&Manifest>) -> Manifest {
    index(OCI_INDEX, children, subject)
}

/// Docker schema1 manifest with `fsLayers` (repeated blobSums allowed, as
/// schema1 has one entry per history step); `signed` adds the JWS
/// `signatures` (prettyjws).
pub fn schema1(name: &str, tag: &str, fs_layers: &[&Desc], signed: bool) -> Manifest {
    let mut value = json!({
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": fs_layers.iter().map(|l| json!({"blobSum": l.digest})).collect::<Vec<_>>(),
        "history": fs_layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"v1Compatibility": format!("{{\"id\":\"{i:064x}\"}}")}))
            .collect::<Vec<_>>(),
    });
    if signed {
        value["signatures"] = json!([{
            "header": {
                "jwk": {"crv": "P-256", "kid": "ABCD:EFGH", "kty": "EC", "x": "xx", "y": "yy"},
                "alg": "ES256"
            },
            "signature": "c2lnbmF0dXJl",
            "protected": "eyJmb3JtYXRMZW5ndGgiOjEyMywiZm9ybWF0VGFpbCI6ImZRIn0"
        }]);
    }
    let mut blobs: Vec<Desc> = Vec::new();
    for layer in fs_layers {
        if !blobs.iter().any(|b| b.digest == layer.digest) {
            blobs.push((*layer).clone());
        }
    }
    Manifest::from_json(
        if signed { SCHEMA1_SIGNED } else { SCHEMA1 },
        &value,
        blobs,
        Vec::new(),
        None,
    )
}

// ---------------------------------------------------------------------------
// The builder
// ---------------------------------------------------------------------------

/// Writes a storage root (the directory holding `docker/registry/v2`) in a
/// tempdir, the way docker-registry 2.8 lays it out.
pub struct LayoutBuilder {
    dir: tempfile::TempDir,
    root: PathBuf,
    counter: u64,
}

impl Default for LayoutBuilder {
    fn default() -> Self {
        LayoutBuilder::new()
    }
}

impl LayoutBuilder {
    /// An empty registry: `docker/registry/v2` and nothing else.
    pub fn new() -> LayoutBuilder {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("storage");
        fs::create_dir_all(v2(&root)).expect("create docker/registry/v2");
        LayoutBuilder {
            dir,
            root,
            counter: 0,
        }
    }

    /// The storage root (holds `docker/registry/v2`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tempdir holding the root: a place for things outside the storage.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    pub fn v2(&self) -> PathBuf {
        v2(&self.root)
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Writes blob data under its sha256; returns its descriptor.
    pub fn blob_with(&mut self, media_type: &str, content: &[u8]) -> Desc {
        let digest = sha256(content);
        write_file(&blob_data(&self.root, &digest), content);
        Desc {
            media_type: media_type.to_owned(),
            digest,
            size: content.len() as u64,
            urls: Vec::new(),
        }
    }

    /// A unique layer blob; sizes vary so byte totals are meaningful.
    pub fn layer(&mut self, label: &str) -> Desc {
        let n = self.next();
        let content = format!("layer {label} #{n} {}", "x".repeat((n as usize * 37) % 500));
        self.blob_with(DOCKER_LAYER, content.as_bytes())
    }

    /// A unique OCI layer blob.
    pub fn oci_layer(&mut self, label: &str) -> Desc {
        let mut d = self.layer(label);
        d.media_type = OCI_LAYER.to_owned();
        d
    }

    /// A unique image config blob.
    pub fn config(&mut self, label: &str) -> Desc {
        let n = self.next();
        let content = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"l":"{label}","n":"{n}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        self.blob_with(DOCKER_CONFIG, content.as_bytes())
    }

    /// The OCI empty descriptor blob `{}` (shared by every artifact).
    pub fn empty_config(&mut self) -> Desc {
        self.blob_with(OCI_EMPTY, b"{}")
    }

    /// A foreign layer: a descriptor with `urls`, not written to storage.
    pub fn foreign_layer(&mut self, label: &str) -> Desc {
        let n = self.next();
        let content = format!("foreign {label} #{n}");
        Desc {
            media_type: DOCKER_FOREIGN_LAYER.to_owned(),
            digest: sha256(content.as_bytes()),
            size: content.len() as u64,
            urls: vec![format!(
                "https://mcr.microsoft.example/v2/windows/blobs/{}",
                sha256(content.as_bytes())
            )],
        }
    }

    /// A Docker schema2 image with a fresh config, one fresh layer and `shared` layers.
    pub fn simple_image(&mut self, label: &str, shared: &[&Desc]) -> Manifest {
        let config = self.config(label);
        let own = self.layer(label);
        let mut layers: Vec<&Desc> = shared.to_vec();
        layers.push(&own);
        docker_image(&config, &layers)
    }

    /// An OCI image with a fresh config and one fresh layer.
    pub fn simple_oci_image(&mut self, label: &str) -> Manifest {
        let mut config = self.config(label);
        config.media_type = OCI_CONFIG.to_owned();
        let own = self.oci_layer(label);
        oci_image(&config, &[&own])
    }

    /// A signature artifact (cosign-like) about `subject`, with the empty
    /// config and one payload layer of an arbitrary media type.
    pub fn signature_for(&mut self, subject: &Manifest, label: &str) -> Manifest {
        let config = self.empty_config();
        let n = self.next();
        let payload = self.blob_with(
            "application/vnd.dev.cosign.simplesigning.v1+json",
            format!(
                r#"{{"critical":{{"image":{{"docker-manifest-digest":"{}"}}}},"n":"{label}{n}"}}"#,
                subject.digest
            )
            .as_bytes(),
        );
        oci_artifact(
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            &config,
            &[&payload],
            Some(subject),
        )
    }

    /// Writes the manifest blob only (no links).
    pub fn write_manifest_blob(&mut self, manifest: &Manifest) {
        write_file(&blob_data(&self.root, &manifest.digest), &manifest.bytes);
    }

    /// Links a blob into `repo` (`_layers/sha256/<hex>/link`).
    pub fn link_layer(&mut self, repo: &str, digest: &str) {
        write_link(&layer_link(&self.root, repo, digest), digest);
    }

    /// Pushes `manifest` by digest: manifest blob, revision link, and the
    /// `_layers` links of its stored config and layers (children of an index
    /// are pushed separately, as clients do).
    pub fn push_untagged(&mut self, repo: &str, manifest: &Manifest) {
        for blob in manifest.stored_blobs() {
            assert!(
                blob_data(&self.root, &blob.digest).is_file(),
                "blob {} of manifest {} is not in storage",
                blob.digest,
                manifest.digest
            );
            self.link_layer(repo, &blob.digest);
        }
        self.write_manifest_blob(manifest);
        write_link(
            &revision_link(&self.root, repo, &manifest.digest),
            &manifest.digest,
        );
    }

    /// Pushes `manifest` and points `tag` at it.
    pub fn push(&mut self, repo: &str, tag: &str, manifest: &Manifest) {
        self.push_untagged(repo, manifest);
        self.tag(repo, tag, &manifest.digest);
    }

    /// Points `tag` at `digest`: current link and history index entry.
    pub fn tag(&mut self, repo: &str, tag: &str, digest: &str) {
        write_link(&tag_current_link(&self.root, repo, tag), digest);
        write_link(&tag_index_link(&self.root, repo, tag, digest), digest);
    }

    /// Untags: removes the whole `tags/<tag>/` directory, as the registry does.
    pub fn untag(&mut self, repo: &str, tag: &str) {
        fs::remove_dir_all(tag_dir(&self.root, repo, tag)).expect("untag");
    }

    /// Deletes a manifest the way `DELETE /v2/<repo>/manifests/<digest>`
    /// does: removes the revision link (leaving the empty revision
    /// directory) and every tag whose current link points at it.
    pub fn api_delete(&mut self, repo: &str, digest: &str) {
        fs::remove_file(revision_link(&self.root, repo, digest)).expect("remove revision link");
        let tags = repo_dir(&self.root, repo).join("_manifests/tags");
        if let Ok(entries) = fs::read_dir(&tags) {
            for entry in entries {
                let entry = entry.unwrap();
                let current = entry.path().join("current/link");
                if fs::read(&current).ok().as_deref() == Some(digest.as_bytes()) {
                    fs::remove_dir_all(entry.path()).unwrap();
                }
            }
        }
    }

    /// A blob nothing references and no repository links.
    pub fn orphan_blob(&mut self, label: &str) -> Desc {
        self.layer(&format!("orphan {label}"))
    }

    /// A blob linked into `repo` that no manifest references (an upload
    /// whose manifest was never pushed).
    pub fn orphan_linked_blob(&mut self, repo: &str, label: &str) -> Desc {
        let d = self.orphan_blob(label);
        self.link_layer(repo, &d.digest);
        d
    }

    /// Links a schema1 signature blob under a revision (registries <= 2.4).
    pub fn link_signature(&mut self, repo: &str, manifest: &str, signature: &str) {
        write_link(
            &signature_link(&self.root, repo, manifest, signature),
            signature,
        );
    }

    /// An upload in progress in `repo`.
    pub fn upload(&mut self, repo: &str) -> PathBuf {
        let n = self.next();
        let dir = repo_dir(&self.root, repo)
            .join("_uploads")
            .join(format!("0b3c5e2a-1d4f-4c6b-9e7a-{n:012}"));
        write_file(&dir.join("data"), b"partial upload");
        write_file(&dir.join("startedat"), b"2024-01-01T00:00:00Z");
        write_file(&dir.join("hashstates/sha256/0"), b"state");
        dir
    }

    /// Writes raw bytes at `rel` (relative to `docker/registry/v2`), for damage.
    pub fn write_raw(&mut self, rel: impl AsRef<Path>, bytes: &[u8]) -> PathBuf {
        let path = self.v2().join(rel);
        write_file(&path, bytes);
        path
    }

    /// Overwrites the file at an absolute path, for damage.
    pub fn overwrite(&mut self, path: &Path, bytes: &[u8]) {
        write_file(path, bytes);
    }

    // Inspection -----------------------------------------------------------

    pub fn has_blob(&self, digest: &str) -> bool {
        blob_data(&self.root, digest).is_file()
    }

    pub fn has_revision_link(&self, repo: &str, digest: &str) -> bool {
        revision_link(&self.root, repo, digest).is_file()
    }

    pub fn has_revision_dir(&self, repo: &str, digest: &str) -> bool {
        revision_dir(&self.root, repo, digest).exists()
    }

    pub fn has_layer_link(&self, repo: &str, digest: &str) -> bool {
        layer_link(&self.root, repo, digest).is_file()
    }

    pub fn has_tag_index(&self, repo: &str, tag: &str, digest: &str) -> bool {
        tag_index_link(&self.root, repo, tag, digest).is_file()
    }

    pub fn tag_current(&self, repo: &str, tag: &str) -> Option<String> {
        fs::read_to_string(tag_current_link(&self.root, repo, tag)).ok()
    }
}

// ---------------------------------------------------------------------------
// Assertions on a tree
// ---------------------------------------------------------------------------

/// `manifest` is pullable from `repo` under `root`: manifest blob, revision
/// link (with the right content), `_layers` links and data of its blobs.
pub fn assert_manifest_intact(root: &Path, repo: &str, manifest: &Manifest) {
    let data = blob_data(root, &manifest.digest);
    assert_eq!(
        fs::read(&data).ok().as_deref(),
        Some(manifest.bytes.as_slice()),
        "manifest blob {} of {repo} missing or changed",
        manifest.digest
    );
    let link = revision_link(root, repo, &manifest.digest);
    assert_eq!(
        fs::read_to_string(&link).ok().as_deref(),
        Some(manifest.digest.as_str()),
        "revision link of {} in {repo} missing or changed",
        manifest.digest
    );
    for blob in manifest.stored_blobs() {
        assert!(
            blob_data(root, &blob.digest).is_file(),
            "blob {} of manifest {} in {repo} was deleted",
            blob.digest,
            manifest.digest
        );
        assert!(
            layer_link(root, repo, &blob.digest).is_file(),
            "_layers link of {} (manifest {}) in {repo} was deleted",
            blob.digest,
            manifest.digest
        );
    }
}

/// `manifest`'s revision is gone from `repo` (directory and all).
pub fn assert_revision_gone(root: &Path, repo: &str, digest: &str) {
    let dir = revision_dir(root, repo, digest);
    assert!(
        !dir.exists(),
        "revision {digest} of {repo} should have been deleted: {} exists",
        dir.display()
    );
}

pub fn assert_blob_gone(root: &Path, digest: &str) {
    assert!(
        !blob_data(root, digest).exists(),
        "blob {digest} should have been deleted"
    );
    assert!(
        !blob_dir(root, digest).exists(),
        "blob directory of {digest} should have been removed"
    );
}

pub fn assert_blob_kept(root: &Path, digest: &str) {
    assert!(
        blob_data(root, digest).is_file(),
        "blob {digest} should have been kept"
    );
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// Every file and directory under `root` (relative paths, `root` itself
/// excluded), symlinks not followed.
pub fn snapshot(root: &Path) -> BTreeSet<PathBuf> {
    WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .follow_root_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk tree");
            e.path().strip_prefix(root).unwrap().to_path_buf()
        })
        .collect()
}

/// What an entry of a tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
}

/// Every entry under `root` with its content (relative paths).
pub fn snapshot_contents(root: &Path) -> BTreeMap<PathBuf, Node> {
    WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .follow_root_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk tree");
            let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
            let ft = e.file_type();
            let node = if ft.is_symlink() {
                Node::Symlink(fs::read_link(e.path()).unwrap())
            } else if ft.is_dir() {
                Node::Dir
            } else {
                Node::File(fs::read(e.path()).unwrap())
            };
            (rel, node)
        })
        .collect()
}

/// Copies a tree (symlinks copied as symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    for e in WalkDir::new(from).follow_links(false) {
        let e = e.expect("walk tree");
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        let ft = e.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else if ft.is_dir() {
            fs::create_dir_all(&dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every `link` file under `repositories/` with its content.
pub fn link_files(root: &Path) -> BTreeMap<PathBuf, String> {
    let repos = v2(root).join("repositories");
    if !repos.exists() {
        return BTreeMap::new();
    }
    WalkDir::new(&repos)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| {
            let e = e.expect("walk repositories");
            (e.file_type().is_file() && e.file_name() == "link").then(|| {
                let content = fs::read_to_string(e.path()).unwrap_or_default();
                (e.path().to_path_buf(), content)
            })
        })
        .collect()
}

/// Every blob with a data file: digest → size.
pub fn blob_sizes(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(shards) = fs::read_dir(v2(root).join("blobs/sha256")) else {
        return out;
    };
    for shard in shards {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for blob in fs::read_dir(&shard).unwrap() {
            let blob = blob.unwrap().path();
            if let Ok(meta) = fs::symlink_metadata(blob.join("data")) {
                if meta.is_file() {
                    let hex = blob.file_name().unwrap().to_str().unwrap().to_owned();
                    out.insert(format!("sha256:{hex}"), meta.len());
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// Runs `regsweep` with `args`, stdin null, a scrubbed environment.
pub fn regsweep<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    regsweep_env(args, &[])
}

/// Runs `regsweep` with `args` and extra environment variables.
pub fn regsweep_env<I, S>(args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_regsweep"));
    // The trees here are written moments before the run: `--min-age 0`
    // unless the test sets its own, or the default age guard would keep all
    // of them.
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let sets_min_age = args.iter().any(|a| a == "--min-age");
    match args.split_first() {
        Some((first, rest)) if first == "gc" && !sets_min_age => {
            cmd.arg(first).args(["--min-age", "0"]).args(rest)
        }
        _ => cmd.args(&args),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run regsweep")
}

/// Exit code of a run (panics if killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("regsweep killed by a signal: {}", describe(out)))
}

/// Stdout and stderr of a run, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `regsweep gc --json <extra_args> <root>`: the parsed report. Checks that
/// stdout is exactly one JSON object and that its `exit_code` is the
/// process's.
pub fn gc_json(root: &Path, extra_args: &[&str]) -> Value {
    gc_json_env(root, extra_args, &[]).0
}

/// [`gc_json`] with extra environment variables; also returns the output.
pub fn gc_json_env(root: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> (Value, Output) {
    // `-v`: the report lists its candidates, which tests read.
    let mut args: Vec<&OsStr> = vec![OsStr::new("gc"), OsStr::new("--json"), OsStr::new("-v")];
    args.extend(extra_args.iter().map(OsStr::new));
    args.push(root.as_os_str());
    let out = regsweep_env(&args, env);
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    let report: Value = serde_json::from_str(stdout.trim_end())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", describe(&out)));
    assert!(report.is_object(), "report is not an object: {report}");
    assert_eq!(
        report["exit_code"].as_i64(),
        Some(i64::from(code(&out))),
        "JSON exit_code differs from the process exit code: {}",
        describe(&out)
    );
    (report, out)
}

/// `report[section][key]` as a number.
pub fn num(report: &Value, section: &str, key: &str) -> u64 {
    report[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("{section}.{key} is not a number in {report}"))
}

/// Candidates of `kind` as `(repository or "", digest)`.
pub fn candidates(report: &Value, kind: &str) -> BTreeSet<(String, String)> {
    report["candidates"]
        .as_array()
        .expect("candidates array")
        .iter()
        .filter(|c| c["kind"] == kind)
        .map(|c| {
            (
                c["repository"].as_str().unwrap_or("").to_owned(),
                c["digest"].as_str().expect("candidate digest").to_owned(),
            )
        })
        .collect()
}

/// Digests of the blob candidates.
pub fn blob_candidates(report: &Value) -> BTreeSet<String> {
    candidates(report, "blob")
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

/// Warnings as `(kind, path)`.
pub fn warnings(report: &Value) -> Vec<(String, String)> {
    report["warnings"]
        .as_array()
        .expect("warnings array")
        .iter()
        .map(|w| {
            (
                w["kind"].as_str().expect("warning kind").to_owned(),
                w["path"].as_str().expect("warning path").to_owned(),
            )
        })
        .collect()
}

/// Sum of the reclaimable (or deleted) counts of `section`.
pub fn total(report: &Value, section: &str) -> u64 {
    ["tag_index_entries", "manifests", "layer_links", "blobs"]
        .iter()
        .map(|k| num(report, section, k))
        .sum()
}

/// Asserts a report has nothing reclaimable.
pub fn assert_nothing_reclaimable(report: &Value) {
    for key in [
        "tag_index_entries",
        "manifests",
        "layer_links",
        "blobs",
        "bytes",
    ] {
        assert_eq!(
            num(report, "reclaimable", key),
            0,
            "reclaimable.{key} should be 0: {report:#}"
        );
    }
    assert_eq!(
        report["candidates"].as_array().map(Vec::len),
        Some(0),
        "no candidates expected: {report:#}"
    );
}

/// What differs between two snapshots: removed, added and changed paths.
pub fn tree_diff(before: &BTreeMap<PathBuf, Node>, after: &BTreeMap<PathBuf, Node>) -> String {
    let mut out = String::new();
    for (path, node) in before {
        match after.get(path) {
            None => out.push_str(&format!("  removed: {}\n", path.display())),
            Some(now) if now != node => out.push_str(&format!("  changed: {}\n", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push_str(&format!("  added:   {}\n", path.display()));
    }
    out
}

/// Asserts the tree under `dir` is still `before`, listing what differs.
pub fn assert_unchanged(
    dir: &Path,
    before: &BTreeMap<PathBuf, Node>,
    context: impl std::fmt::Display,
) {
    let after = snapshot_contents(dir);
    if &after != before {
        panic!(
            "{context}: the tree under {} changed:\n{}",
            dir.display(),
            tree_diff(before, &after)
        );
    }
}

// ---------------------------------------------------------------------------
// A registry with a bit of everything
// ---------------------------------------------------------------------------

/// What [`push_mixed`] wrote, by what a sweep must make of it.
pub struct MixedPushes {
    /// Live whatever the mode.
    pub always_live: Vec<(&'static str, Manifest)>,
    /// Untagged: live without -m, garbage with -m.
    pub untagged: Vec<(&'static str, Manifest)>,
    /// API-deleted (revision link gone): garbage in both modes.
    pub deleted: Vec<(&'static str, Manifest)>,
    pub base: Desc,
    pub orphan_linked: Desc,
    pub orphan: Desc,
}

/// Whether [`push_mixed`] deletes one of its manifests through the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiDeleted {
    Yes,
    No,
}

/// Three repositories with tags moved over time, untagged pushes, a
/// multi-arch index, a signature referrer, an API-deleted manifest (unless
/// `api_deleted` says otherwise), orphan blobs (linked and not), schema1
/// manifests in a nested repository and an upload in progress.
pub fn push_mixed(b: &mut LayoutBuilder, api_deleted: ApiDeleted) -> MixedPushes {
    let base = b.layer("base");
    let m1 = b.simple_image("app-1", &[&base]);
    b.push("app", "latest", &m1);
    let m2 = b.simple_image("app-2", &[&base]);
    b.push("app", "latest", &m2);
    let m3 = b.simple_image("app-3", &[&base]);
    b.push_untagged("app", &m3);
    let c1 = b.simple_oci_image("c1");
    let c2 = b.simple_oci_image("c2");
    b.push_untagged("app", &c1);
    b.push_untagged("app", &c2);
    let idx = oci_index(&[&c1, &c2], None);
    b.push("app", "multi", &idx);
    let sig = b.signature_for(&m2, "s");
    b.push_untagged("app", &sig);
    let mut always_live = vec![
        ("app", m2),
        ("app", c1),
        ("app", c2),
        ("app", idx),
        ("app", sig),
    ];
    let mut deleted = Vec::new();
    if api_deleted == ApiDeleted::Yes {
        let d = b.simple_image("app-d", &[]);
        b.push("app", "beta", &d);
        let b2 = b.simple_image("app-b2", &[]);
        b.push("app", "beta", &b2);
        b.api_delete("app", &d.digest);
        always_live.push(("app", b2));
        deleted.push(("app", d));
    }
    let orphan_linked = b.orphan_linked_blob("app", "ol");
    b.upload("app");

    let l1 = b.simple_image("lib", &[&base]);
    b.push("lib", "1.0", &l1);
    let orphan = b.orphan_blob("o");

    let s1 = b.layer("s1");
    let s1_shared = b.layer("s1-shared");
    let signed = schema1("team/x/y", "signed", &[&s1, &s1_shared, &s1], true);
    b.push("team/x/y", "signed", &signed);
    let u1 = b.layer("u1");
    let unsigned = schema1("team/x/y", "old", &[&u1, &s1_shared], false);
    b.push_untagged("team/x/y", &unsigned);
    always_live.extend([("lib", l1), ("team/x/y", signed)]);

    MixedPushes {
        always_live,
        untagged: vec![("app", m1), ("app", m3), ("team/x/y", unsigned)],
        deleted,
        base,
        orphan_linked,
        orphan,
    }
}

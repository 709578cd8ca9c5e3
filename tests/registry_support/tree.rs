//! Reading a storage tree directly: which blobs exist, which links point
//! where, copies and snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

/// `<root>/docker/registry/v2`.
pub fn v2(root: &Path) -> PathBuf {
    root.join("docker/registry/v2")
}

/// Path of the data file of blob `digest`.
pub fn blob_data(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    v2(root)
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Every blob with a `data` file: digest → size.
pub fn blobs(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(prefixes) = fs::read_dir(v2(root).join("blobs/sha256")) else {
        return out;
    };
    for prefix in prefixes {
        for blob in fs::read_dir(prefix.unwrap().path()).unwrap() {
            let blob = blob.unwrap().path();
            if let Ok(meta) = fs::metadata(blob.join("data")) {
                let hex = blob.file_name().unwrap().to_str().unwrap();
                out.insert(format!("sha256:{hex}"), meta.len());
            }
        }
    }
    out
}

/// Digests of every blob with a `data` file.
pub fn blob_set(root: &Path) -> BTreeSet<String> {
    blobs(root).into_keys().collect()
}

/// Every file (with its content) and directory under `root`, by relative
/// path: two equal snapshots mean nothing was touched (mtimes aside).
pub fn snapshot(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    WalkDir::new(root)
        .into_iter()
        .map(|e| {
            let e = e.expect("walk storage");
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let content = e.file_type().is_file().then(|| fs::read(e.path()).unwrap());
            (rel, content)
        })
        .collect()
}

/// Copies the tree `src` to `dst` (created), regular files and directories.
pub fn copy_tree(src: &Path, dst: &Path) {
    for e in WalkDir::new(src) {
        let e = e.expect("walk source tree");
        let to = dst.join(e.path().strip_prefix(src).unwrap());
        if e.file_type().is_dir() {
            fs::create_dir_all(&to).unwrap();
        } else if e.file_type().is_file() {
            fs::copy(e.path(), &to).unwrap();
        } else {
            panic!("unexpected non-regular file {}", e.path().display());
        }
    }
}

/// A `link` file under `repositories/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    /// Path relative to `repositories/`.
    pub path: String,
    /// Its content (a digest).
    pub target: String,
}

/// Every `link` file under `repositories/`.
pub fn links(root: &Path) -> Vec<Link> {
    let repos = v2(root).join("repositories");
    if !repos.exists() {
        return Vec::new();
    }
    WalkDir::new(&repos)
        .into_iter()
        .map(|e| e.expect("walk repositories"))
        .filter(|e| e.file_type().is_file() && e.file_name() == "link")
        .map(|e| Link {
            path: e.path().strip_prefix(&repos).unwrap().display().to_string(),
            target: fs::read_to_string(e.path()).unwrap(),
        })
        .collect()
}

/// Links (revisions, tags, tag index entries, `_layers`) whose blob has no
/// data: each would make the registry claim something it cannot serve.
pub fn dangling_links(root: &Path) -> Vec<Link> {
    let present = blob_set(root);
    links(root)
        .into_iter()
        .filter(|l| !present.contains(&l.target))
        .collect()
}

/// Entries of `repositories/<repo>/_manifests/tags/<tag>/index/sha256/`.
pub fn tag_index(root: &Path, repo: &str, tag: &str) -> BTreeSet<String> {
    let dir = v2(root)
        .join("repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag)
        .join("index/sha256");
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| format!("sha256:{}", e.unwrap().file_name().to_str().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// `repositories/<repo>/_manifests/revisions/sha256/<hex>`.
pub fn revision_dir(root: &Path, repo: &str, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    v2(root)
        .join("repositories")
        .join(repo)
        .join("_manifests/revisions/sha256")
        .join(hex)
}

/// Uploads in progress: `repositories/<repo>/_uploads/<uuid>` directories,
/// relative to `repositories/`.
pub fn uploads(root: &Path) -> BTreeSet<String> {
    let repos = v2(root).join("repositories");
    WalkDir::new(&repos)
        .min_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_dir()
                && e.path().parent().and_then(Path::file_name) == Some("_uploads".as_ref())
        })
        .map(|e| e.path().strip_prefix(&repos).unwrap().display().to_string())
        .collect()
}

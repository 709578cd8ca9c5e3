//! Storage hygiene around the garbage proper: uploads in progress and stale
//! ones, stray temporary files, and the empty directories a sweep (or an
//! earlier, interrupted one) leaves.
//!
//! Only directories that are cheap to read are read here: `_uploads/` of the
//! repositories the index found uploads in, the blob shard directory
//! listing, and the metadata directories of repositories, tags and shards
//! that the index found empty of links. Nothing here follows a symbolic
//! link: directory entries are typed without following, metadata is `lstat`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rayon::prelude::*;
use walkdir::WalkDir;

use crate::clock;
use crate::index::Index;
use crate::storage::layout::{Layout, names};
use crate::warning::{Warning, WarningKind};

/// The file an upload records its start time in.
const STARTED_AT: &str = "startedat";
/// Data of an upload.
const UPLOAD_DATA: &str = "data";
/// Hash states of an upload.
const HASHSTATES: &str = "hashstates";

/// An upload under `repositories/<name>/_uploads/<uuid>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Index into [`Index::repositories`].
    pub repository: u32,
    /// The upload directory, relative to the storage root.
    pub path: PathBuf,
    /// What `startedat` says, when it can be read.
    pub started: Option<SystemTime>,
    /// The latest of `startedat`, the directory's and the data's mtimes: a
    /// long upload still sending chunks is active although it started long ago.
    pub last_activity: SystemTime,
    /// Bytes of `data` received so far.
    pub bytes: u64,
    /// Stray `*.tmp` files in it (relative to the storage root), with mtimes.
    pub temporary_files: Vec<(PathBuf, SystemTime)>,
}

/// Whether `name` is a temporary file of an interrupted write: registry
/// v3.1 writes `<path>.<uuid>.tmp`, then renames it to `<path>`.
pub fn is_temporary_name(name: &str) -> bool {
    name.strip_suffix(".tmp")
        .is_some_and(|stem| !stem.is_empty() && stem.contains('.'))
}

fn mtime(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Reads the uploads of every repository the index found some in.
pub fn scan_uploads(layout: &Layout, index: &Index) -> (Vec<Upload>, Vec<Warning>) {
    let per_repo: Vec<(Vec<Upload>, Vec<Warning>)> = index
        .repositories
        .par_iter()
        .enumerate()
        .filter(|(_, repo)| repo.uploads > 0)
        .map(|(ri, repo)| {
            let dir = layout.uploads_dir(&repo.name);
            let mut uploads = Vec::new();
            let mut warnings = Vec::new();
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    warnings.push(Warning::new(
                        WarningKind::UnexpectedEntry,
                        &dir,
                        Some(&repo.name),
                        format!("cannot list uploads ({e}); kept"),
                    ));
                    return (uploads, warnings);
                }
            };
            for entry in entries.flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir {
                    continue;
                }
                match upload(layout, ri as u32, &entry.path()) {
                    Ok(upload) => uploads.push(upload),
                    Err(e) => warnings.push(Warning::new(
                        WarningKind::UnexpectedEntry,
                        entry.path(),
                        Some(&repo.name),
                        format!("cannot read upload ({e}); kept"),
                    )),
                }
            }
            (uploads, warnings)
        })
        .collect();
    let mut uploads = Vec::new();
    let mut warnings = Vec::new();
    for (u, w) in per_repo {
        uploads.extend(u);
        warnings.extend(w);
    }
    uploads.sort_by(|a, b| a.path.cmp(&b.path));
    (uploads, warnings)
}

fn upload(layout: &Layout, repository: u32, dir: &Path) -> io::Result<Upload> {
    let relative = |p: &Path| p.strip_prefix(layout.root()).unwrap_or(p).to_path_buf();
    let meta = fs::symlink_metadata(dir)?;
    let mut last_activity = mtime(&meta);
    let mut started = None;
    let mut bytes = 0;
    let mut temporary_files = Vec::new();
    let mut look = |path: &Path, name: &str, meta: &fs::Metadata| {
        if meta.is_file() && is_temporary_name(name) {
            temporary_files.push((relative(path), mtime(meta)));
        }
    };
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        match name.as_ref() {
            STARTED_AT if meta.is_file() => {
                started = fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| clock::parse_rfc3339(&t));
            }
            UPLOAD_DATA if meta.is_file() => {
                bytes = meta.len();
                last_activity = last_activity.max(mtime(&meta));
            }
            HASHSTATES if meta.is_dir() => {
                // hashstates/<alg>/<offset>: temporary files of their writes.
                for alg in fs::read_dir(&path)?.flatten() {
                    if !alg.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    for state in fs::read_dir(alg.path())?.flatten() {
                        if let Ok(meta) = fs::symlink_metadata(state.path()) {
                            look(&state.path(), &state.file_name().to_string_lossy(), &meta);
                        }
                    }
                }
            }
            _ => look(&path, &name, &meta),
        }
    }
    if let Some(started) = started {
        last_activity = last_activity.max(started);
    }
    Ok(Upload {
        repository,
        path: relative(dir),
        started,
        last_activity,
        bytes,
        temporary_files,
    })
}

/// A stray temporary file found by [`scan_temporary_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryFile {
    /// Relative to the storage root.
    pub path: PathBuf,
    /// Its mtime.
    pub modified: SystemTime,
    /// The repository it is in, if any.
    pub repository: Option<u32>,
}

/// Lists every directory below the repositories' `_layers` and `_manifests`
/// and every blob directory, for stray `*.tmp` files (`--scan-temporary-files`):
/// one more directory read per file of the tree, so only on request. Never
/// follows a symbolic link.
pub fn scan_temporary_files(layout: &Layout, index: &Index) -> Vec<TemporaryFile> {
    let relative = |p: &Path| p.strip_prefix(layout.root()).unwrap_or(p).to_path_buf();
    let found = |root: PathBuf, max_depth: usize, repository: Option<u32>| {
        WalkDir::new(root)
            .follow_links(false)
            .max_depth(max_depth)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type().is_file() && e.file_name().to_str().is_some_and(is_temporary_name)
            })
            .filter_map(|e| {
                Some(TemporaryFile {
                    path: relative(e.path()),
                    modified: mtime(&e.metadata().ok()?),
                    repository,
                })
            })
            .collect::<Vec<_>>()
    };
    let mut files: Vec<TemporaryFile> = index
        .repositories
        .par_iter()
        .enumerate()
        .flat_map_iter(|(ri, repo)| {
            let dir = layout.repository_dir(&repo.name);
            [names::LAYERS, names::MANIFESTS]
                .into_iter()
                .flat_map(move |sub| found(dir.join(sub), usize::MAX, Some(ri as u32)))
                .collect::<Vec<_>>()
        })
        .collect();
    let shards: Vec<PathBuf> = fs::read_dir(layout.blob_shards_dir())
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.extend(
        shards
            .par_iter()
            .flat_map_iter(|shard| found(shard.clone(), 2, None))
            .collect::<Vec<_>>(),
    );
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Directories that may be empty already, left by an earlier sweep that
/// was interrupted, by upstream's garbage collector, or by API deletes: blob
/// shard directories with no blob, and the `<alg>/` directories of `_layers`,
/// `_manifests/revisions` and tag `index/` where the index found no entry.
/// A sweep tries `remove_dir` on each: one that is not empty stays.
///
/// None of them decides whether a repository exists (`_layers`,
/// `_manifests` and the repository directory itself are never listed).
pub fn possibly_empty_dirs(layout: &Layout, index: &Index) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let shards = layout.blob_shards_dir();
    if let Ok(entries) = fs::read_dir(&shards) {
        // Blobs are sorted: one shard name per run of equal prefixes.
        let mut present = std::collections::HashSet::new();
        let mut last: Option<String> = None;
        for blob in &index.blobs {
            let shard = blob.digest.shard();
            if last.as_ref() != Some(&shard) {
                present.insert(shard.clone());
                last = Some(shard);
            }
        }
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let shard_name = name.len() == 2
                && name
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if shard_name && !present.contains(name) && entry.file_type().is_ok_and(|t| t.is_dir())
            {
                dirs.push(entry.path());
            }
        }
    }
    for repo in &index.repositories {
        let repo_dir = layout.repository_dir(&repo.name);
        let mut algorithm_dirs = |dir: PathBuf| {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        dirs.push(entry.path());
                    }
                }
            }
        };
        if repo.layer_links.is_empty() && repo.foreign_links.is_empty() {
            algorithm_dirs(repo_dir.join(names::LAYERS));
        }
        if repo.revisions.is_empty() {
            algorithm_dirs(repo_dir.join(names::MANIFESTS).join(names::REVISIONS));
        }
        for tag in repo.tags.iter().filter(|t| t.history.is_empty()) {
            dirs.push(layout.tag_index_dir(&repo.name, &tag.name));
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_path_dot_uuid_dot_tmp() {
        assert!(is_temporary_name(
            "link.3f9c2b1e-8d4a-4e7b-9c1d-2a5b6c7d8e9f.tmp"
        ));
        assert!(is_temporary_name("startedat.x.tmp"));
        assert!(!is_temporary_name("link"));
        assert!(!is_temporary_name(".tmp"));
        assert!(!is_temporary_name("plain.tmp"));
        assert!(!is_temporary_name("link.tmp.bak"));
    }
}

//! Where the registry's data lives, and the seam between the pipeline and
//! a storage backend. A backend does three things: it produces the
//! [`crate::index::Index`] of the whole storage, reads a manifest's bytes
//! for marking, and deletes what the plan lists in its sweep order
//! ([`crate::gc::plan::CandidateKind`]), so that a sweep stopped anywhere
//! leaves a registry that serves every live image, then says what it did
//! ([`SweepOutcome`]). Deciding (marking, planning, retention, `--min-age`,
//! the report) is the same for every backend.
//!
//! - [`fs`]: the `filesystem` driver's tree, walked in parallel through
//!   directory handles, swept by `unlink`/`rmdir` or moved into a trash;
//! - [`s3`]: the `s3` driver's bucket, indexed from listings, swept in
//!   DeleteObjects batches.
//!
//! [`layout`] knows the paths (on a bucket, the keys); [`target`] finds the
//! storage from the command line's TARGET or the registry's `config.yml`.

pub mod fs;
pub mod layout;
pub mod s3;
pub mod target;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::digest::{Digest, DigestMap};
use crate::gc::plan::{Candidate, CandidateKind, Plan, Reclaim};
use crate::index::Index;
use crate::interrupt::Interrupt;
use layout::Layout;

/// The storage a run works on.
#[derive(Debug, Clone)]
pub enum Storage {
    /// The `filesystem` driver's tree.
    Filesystem(Layout),
    /// A bucket of the `s3` driver.
    S3(Arc<s3::S3Storage>),
}

impl Storage {
    /// Its paths: on a bucket, the keys (a layout rooted at the
    /// `rootdirectory` prefix).
    pub fn layout(&self) -> &Layout {
        match self {
            Storage::Filesystem(layout) => layout,
            Storage::S3(bucket) => bucket.layout(),
        }
    }

    /// What reports call it: the storage root, or `s3://bucket/root`.
    pub fn name(&self) -> PathBuf {
        match self {
            Storage::Filesystem(layout) => layout.root().to_path_buf(),
            Storage::S3(bucket) => PathBuf::from(bucket.target().to_string()),
        }
    }

    /// Every manifest the repositories of `index` hold or reach, read from
    /// this storage; `interrupt` ends it with [`crate::Error::Interrupted`],
    /// and on a bucket a request that fails after its retries is an error.
    pub fn load_manifests(
        &self,
        index: &Index,
        progress: &crate::progress::Task,
        interrupt: &Interrupt,
    ) -> crate::Result<DigestMap<crate::gc::mark::Loaded>> {
        match self {
            Storage::Filesystem(layout) => {
                crate::gc::mark::load_all_until(layout, index, progress, interrupt)
            }
            Storage::S3(bucket) => s3::manifests::load_all(bucket, index, progress, interrupt),
        }
    }

    /// The bucket, for a bucket.
    pub fn bucket(&self) -> Option<&s3::S3Storage> {
        match self {
            Storage::S3(bucket) => Some(bucket),
            Storage::Filesystem(_) => None,
        }
    }
}

impl From<Layout> for Storage {
    fn from(layout: Layout) -> Storage {
        Storage::Filesystem(layout)
    }
}

/// Something the sweep could not delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The path that could not be removed.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Totals of what was deleted.
    pub deleted: Reclaim,
    /// Per candidate of the plan: whether it is gone.
    pub gone: Vec<bool>,
    /// What could not be deleted.
    pub failures: Vec<Failure>,
    /// The sweep stopped before the end of the plan.
    pub interrupted: bool,
    /// Empty directories removed.
    pub empty_directories: u64,
    /// Stray temporary files found in, and removed with, deleted directories.
    pub temporary_files: u64,
    /// The sweep stopped because the tree changed since the index began.
    pub changed: Option<Change>,
}

/// How to sweep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOptions {
    /// Stop after this many deletions, as a crash would (for testing that
    /// an interrupted sweep leaves a consistent registry): no directory
    /// clean-up and no end of journal follow.
    pub stop_after: Option<u64>,
    /// Checked before each deletion, to stop cleanly between two (a
    /// [`crate::gc::Collector`] sweeps with [`crate::gc::GcConfig::interrupt`]).
    pub interrupt: Interrupt,
    /// Stray temporary files modified after this stay.
    pub cutoff: Option<SystemTime>,
}

/// Something changed in the tree since the index began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed.
    pub path: PathBuf,
    /// How: modified after the index began, or could not be checked.
    pub what: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.display(), self.what)
    }
}

/// The directory (or file) a candidate is.
pub fn candidate_dir(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    candidate: &Candidate,
) -> PathBuf {
    let repo = candidate
        .repository()
        .map(|r| index.repositories[r as usize].name.as_str())
        .unwrap_or_default();
    let tag = || {
        candidate
            .repository()
            .zip(candidate.tag())
            .map(|(r, t)| {
                index.repositories[r as usize].tags[t as usize]
                    .name
                    .as_str()
            })
            .unwrap_or_default()
    };
    match candidate.kind {
        CandidateKind::TagIndexEntry => layout.tag_index_entry_dir(repo, tag(), &candidate.digest),
        CandidateKind::Manifest => layout.revision_dir(repo, &candidate.digest),
        CandidateKind::Tag => {
            let tag = tag();
            if tag.is_empty() {
                return PathBuf::new();
            }
            layout.tag_dir(repo, tag)
        }
        CandidateKind::LayerLink => match candidate.foreign_link() {
            Some(i) => {
                let link = &index.repositories[candidate.repository().unwrap_or_default() as usize]
                    .foreign_links[i as usize];
                layout.layer_link_dir_for(repo, &link.algorithm, &link.hex)
            }
            None => layout.layer_link_dir(repo, &candidate.digest),
        },
        CandidateKind::Blob => layout.blob_dir(&candidate.digest),
        CandidateKind::TemporaryFile | CandidateKind::Upload => candidate
            .path()
            .and_then(|i| plan.paths.get(i as usize))
            .map(|p| layout.root().join(p))
            .unwrap_or_default(),
        CandidateKind::Repository => layout.repository_dir(repo),
    }
}

/// What the failures of a sweep so far keep for the rest of it.
#[derive(Default)]
pub struct Held {
    /// Layer links (repository, digest), with the path that keeps them.
    links: std::collections::HashMap<(u32, Digest), PathBuf>,
    /// Repositories all of whose links stay.
    repositories: std::collections::HashMap<u32, PathBuf>,
    /// Blobs that stay.
    blobs: DigestMap<PathBuf>,
    /// Every blob stays: a manifest that stays could not be read.
    all_blobs: Option<PathBuf>,
}

impl Held {
    /// What the candidates at positions `failed` keep: a revision or a tag
    /// that stays keeps the blobs and links of every manifest it reaches (and
    /// its schema1 signatures); a layer link that stays keeps its blob.
    pub(crate) fn after_failures(
        layout: &Layout,
        index: &Index,
        plan: &Plan,
        failed: &[usize],
    ) -> Held {
        if failed.is_empty() {
            return Held::default();
        }
        let blob_shards = layout.open_blob_shards();
        Held::after_failures_with(layout, index, plan, failed, |manifest| {
            crate::gc::mark::load(blob_shards.as_ref(), index, manifest)
        })
    }

    /// [`Held::after_failures`], reading manifests with `load`.
    pub(crate) fn after_failures_with(
        layout: &Layout,
        index: &Index,
        plan: &Plan,
        failed: &[usize],
        mut load: impl FnMut(&Digest) -> crate::gc::mark::Loaded,
    ) -> Held {
        let mut held = Held::default();
        for &i in failed {
            let candidate = &plan.candidates[i];
            let path = candidate_dir(layout, index, plan, candidate);
            let Some(r) = candidate.repository() else {
                continue;
            };
            let repo = &index.repositories[r as usize];
            let roots: Vec<Digest> = match candidate.kind {
                CandidateKind::Manifest => vec![candidate.digest],
                CandidateKind::Tag => {
                    let tag = candidate.tag().and_then(|t| repo.tags.get(t as usize));
                    match tag {
                        Some(tag) if tag.current.is_some() => tag.current.into_iter().collect(),
                        Some(tag) => tag.history.clone(),
                        None => Vec::new(),
                    }
                }
                CandidateKind::LayerLink => {
                    held.blobs.entry(candidate.digest).or_insert(path);
                    continue;
                }
                _ => continue,
            };
            let mut seen = crate::digest::DigestSet::default();
            let mut stack = roots;
            while let Some(manifest) = stack.pop() {
                if !seen.insert(manifest) {
                    continue;
                }
                let mut keep = vec![manifest];
                match load(&manifest) {
                    Ok(refs) => {
                        keep.extend(
                            refs.stored
                                .iter()
                                .map(|id| index.blobs[*id as usize].digest),
                        );
                        keep.extend(refs.absent.iter().map(|(d, _)| *d));
                        stack.extend(refs.children.iter().copied());
                    }
                    Err(_) => {
                        held.repositories.entry(r).or_insert_with(|| path.clone());
                        held.all_blobs.get_or_insert_with(|| path.clone());
                    }
                }
                if let Ok(at) = repo.revisions.binary_search_by_key(&manifest, |v| v.digest) {
                    keep.extend(repo.revisions[at].signatures.iter().copied());
                }
                // The registry serves what a revision link names, as marking
                // follows it.
                stack.extend(crate::gc::mark::link_targets(repo, &manifest));
                for digest in keep {
                    held.links
                        .entry((r, digest))
                        .or_insert_with(|| path.clone());
                    held.blobs.entry(digest).or_insert_with(|| path.clone());
                }
            }
        }
        held
    }

    /// Why `candidate` stays, when a failure keeps it.
    pub(crate) fn keeps(&self, candidate: &Candidate) -> Option<String> {
        let by = match candidate.kind {
            CandidateKind::LayerLink => candidate.repository().and_then(|r| {
                self.repositories
                    .get(&r)
                    .or_else(|| self.links.get(&(r, candidate.digest)))
            }),
            CandidateKind::Blob => self
                .all_blobs
                .as_ref()
                .or_else(|| self.blobs.get(&candidate.digest)),
            _ => None,
        }?;
        Some(format!(
            "kept: {} could not be removed and still references it",
            by.display()
        ))
    }
}

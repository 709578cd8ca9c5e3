//! `--min-age`: what was modified too recently to delete.
//!
//! A push that raced the switch to read-only mode writes blobs, then links,
//! then the manifest revision, then the tag. Anything modified within the
//! window is kept: a blob or a link stays where it is, a blob that a recent
//! `_layers` link points at stays, and a recent manifest revision becomes a
//! root, so that everything it references stays too.
//!
//! Cost: only candidates are looked at, one `lstat` each (a blob's
//! directory, a link's `link` file), relative to their parent directory held
//! open; live things are never stat'ed, since nothing live is deleted anyway.
//! Blobs of a shard whose own mtime (read by the index) is older than the
//! cutoff need no stat at all: blob directories are written once.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::digest::{Digest, SHA256};
use crate::gc::plan::{Candidate, CandidateKind, Hold, Plan, Reason};
use crate::index::Index;
use crate::interrupt::{Interrupt, Phase};
use crate::storage::candidate_dir;
use crate::storage::fs::dir::Dir;
use crate::storage::layout::{Layout, link_file, names};

/// What the ages of a plan's candidates decide.
#[derive(Debug, Default)]
pub struct Recent {
    /// Candidates to hold back, and blobs recent links point at.
    pub hold: Hold,
    /// Linked manifest revisions too recent to delete: roots, per
    /// repository index.
    pub roots: Vec<(u32, Digest)>,
    /// How many paths were stat'ed.
    pub stats: u64,
}

impl Recent {
    /// Whether nothing is too recent.
    pub fn is_empty(&self) -> bool {
        self.hold.items.is_empty() && self.hold.blobs.is_empty()
    }

    /// Adds what `other` found.
    pub fn merge(&mut self, other: Recent) {
        self.hold.items.extend(other.hold.items);
        self.hold.blobs.extend(other.hold.blobs);
        self.roots.extend(other.roots);
        self.stats += other.stats;
    }
}

/// mtime of `name` below the open directory `dir`, never following a
/// symbolic link; `None` when it does not exist.
fn mtime_at(dir: &Dir, name: &str) -> Option<SystemTime> {
    dir.modified(name).ok().flatten()
}

/// The latest mtime among `paths` that exist, never following a symbolic link.
fn latest(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok()?.modified().ok())
        .max()
}

/// When a candidate was last modified:
/// - a blob: its directory, which changes when `data` arrives (a blob's
///   data is never rewritten in place);
/// - a link or a revision: its `link` file (the registry rewrites it in
///   place when a push links the same thing again), or the directory when
///   there is no link file;
/// - a tag: its `current/link` (rewritten on every push of the tag);
/// - a repository: the latest of its metadata directories.
fn modified(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    candidate: &Candidate,
    parent: Option<&Dir>,
) -> Option<SystemTime> {
    if let Some(parent) = parent {
        // Grouped by `parent_groups`: named by their digest in the open parent.
        let mut name = candidate.digest.hex();
        if candidate.kind == CandidateKind::Blob {
            return mtime_at(parent, &name);
        }
        let hex_len = name.len();
        name.push('/');
        name.push_str(names::LINK);
        return mtime_at(parent, &name).or_else(|| mtime_at(parent, &name[..hex_len]));
    }
    let dir = candidate_dir(layout, index, plan, candidate);
    match candidate.kind {
        CandidateKind::Blob => latest(&[dir]),
        CandidateKind::Repository => {
            let manifests = dir.join(names::MANIFESTS);
            latest(&[
                dir.join(names::LAYERS).join(SHA256),
                dir.join(names::LAYERS),
                manifests.join(names::REVISIONS).join(SHA256),
                manifests.join(names::TAGS),
                manifests.clone(),
                dir.join(names::UPLOADS),
                dir,
            ])
        }
        CandidateKind::Tag => {
            latest(&[dir.join(crate::storage::layout::relative::tag_current_link())])
                .or_else(|| latest(&[dir]))
        }
        _ => latest(&[link_file(&dir)]).or_else(|| latest(&[dir])),
    }
}

/// Where the modification times of candidates come from.
#[derive(Debug, Clone, Copy)]
pub enum Times<'a> {
    /// Asked of the filesystem under the layout's root: one `lstat` per
    /// candidate.
    Filesystem(&'a Layout),
    /// Known from a listing of object storage: the candidate directories
    /// (layout paths) holding something modified after the cutoff, with
    /// the time; every other candidate is older.
    Listed(&'a Layout, &'a HashMap<PathBuf, SystemTime>),
}

impl<'a> Times<'a> {
    fn layout(&self) -> &'a Layout {
        match self {
            Times::Filesystem(layout) | Times::Listed(layout, _) => layout,
        }
    }
}

/// Looks at the mtimes of `plan`'s candidates: those modified after `cutoff`
/// are held back.
///
/// `revisions` selects the candidates looked at: manifest revisions and
/// the tags a policy deletes (whose recent ones become roots, after which
/// marking runs again and fewer blobs and links are candidates), or
/// everything else.
pub fn find(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    now: SystemTime,
    cutoff: SystemTime,
    revisions: bool,
) -> Recent {
    match find_until(
        Times::Filesystem(layout),
        index,
        plan,
        (now, cutoff),
        revisions,
        &Interrupt::default(),
    ) {
        Ok(recent) => recent,
        Err(_) => unreachable!("nothing interrupts a default Interrupt"),
    }
}

/// [`find`], checking `interrupt` before each candidate's directory: a
/// stop request ends it with [`crate::Error::Interrupted`].
pub fn find_until(
    times: Times,
    index: &Index,
    plan: &Plan,
    (now, cutoff): (SystemTime, SystemTime),
    revisions: bool,
    interrupt: &Interrupt,
) -> crate::Result<Recent> {
    // Tags a policy deletes go with the revisions (they sort right after
    // them): a tag pushed again within the window is a root too.
    let wanted =
        |c: &Candidate| matches!(c.kind, CandidateKind::Manifest | CandidateKind::Tag) == revisions;
    let candidates: &[Candidate] = {
        // Candidates are sorted by kind: the wanted ones are one run.
        let start = plan
            .candidates
            .iter()
            .position(wanted)
            .unwrap_or(plan.candidates.len());
        let len = plan.candidates[start..]
            .iter()
            .take_while(|c| wanted(c))
            .count();
        if revisions {
            &plan.candidates[start..start + len]
        } else {
            &plan.candidates[..]
        }
    };
    let layout = times.layout();
    let listed = match times {
        Times::Listed(_, recent) => Some(recent),
        Times::Filesystem(_) => None,
    };
    let groups = crate::gc::plan::parent_groups(candidates);
    let unstatted = AtomicU64::new(0);
    let ages: Vec<Option<Duration>> = groups
        .par_iter()
        .flat_map_iter(|range| {
            let group = &candidates[range.clone()];
            let first = &group[0];
            // Blobs of a shard not modified since the cutoff: none of them
            // was (see `Index::shard_unchanged_since`), no stat needed.
            let old_shard = listed.is_none()
                && first.kind == CandidateKind::Blob
                && wanted(first)
                && index.shard_unchanged_since(first.digest.shard_byte(), cutoff);
            if old_shard {
                unstatted.fetch_add(group.len() as u64, Ordering::Relaxed);
            }
            let parent = match first.kind {
                _ if listed.is_some() || old_shard || interrupt.requested() => None,
                _ if !wanted(first) => None,
                // Decided from their own times when the plan is built.
                CandidateKind::TemporaryFile | CandidateKind::Upload => None,
                // Named by the tag, not a digest: looked up by path.
                CandidateKind::Tag => None,
                _ if group.len() == 1 && first.kind == CandidateKind::Repository => None,
                _ => candidate_dir(layout, index, plan, first)
                    .parent()
                    .and_then(|p| Dir::open(p).ok()),
            };
            group.iter().map(move |candidate| {
                if interrupt.requested()
                    || old_shard
                    || !wanted(candidate)
                    || matches!(
                        candidate.kind,
                        CandidateKind::TemporaryFile | CandidateKind::Upload
                    )
                {
                    return None;
                }
                let modified = match listed {
                    Some(recent) => *recent.get(&candidate_dir(layout, index, plan, candidate))?,
                    None => modified(layout, index, plan, candidate, parent.as_ref())?,
                };
                (modified > cutoff).then(|| crate::clock::age(now, modified))
            })
        })
        .collect();
    // Candidates left unlooked-at: the result is not to be used.
    interrupt.check(Phase::Plan)?;
    let stats = match listed {
        Some(_) => 0,
        None => candidates
            .iter()
            .filter(|c| wanted(c))
            .map(|c| match c.kind {
                CandidateKind::Repository => 7,
                CandidateKind::TemporaryFile | CandidateKind::Upload => 0,
                _ => 1,
            })
            .sum::<u64>()
            .saturating_sub(unstatted.into_inner()),
    };
    let mut recent = Recent {
        stats,
        ..Recent::default()
    };
    for (candidate, age) in candidates.iter().zip(ages) {
        let Some(age) = age else { continue };
        recent.hold.items.insert(candidate.key(), age);
        match candidate.kind {
            CandidateKind::LayerLink => {
                recent.hold.blobs.insert(candidate.digest);
            }
            CandidateKind::Manifest
                if matches!(
                    candidate.reason,
                    Reason::UntaggedManifest | Reason::PolicyManifest | Reason::ReleasedManifest
                ) =>
            {
                if let Some(r) = candidate.repository() {
                    recent.roots.push((r, candidate.digest));
                }
            }
            // A tag pushed again within the window keeps what it points at.
            CandidateKind::Tag => {
                if let Some(r) = candidate.repository() {
                    recent.roots.push((r, candidate.digest));
                }
            }
            _ => {}
        }
    }
    Ok(recent)
}

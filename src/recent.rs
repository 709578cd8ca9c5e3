//! `--min-age`: what was modified too recently to delete.
//!
//! A push that raced the switch to read-only mode writes blobs, then links,
//! then the manifest revision, then the tag. Anything modified within the
//! window is kept: a blob or a link stays where it is, a blob that a recent
//! `_layers` link points at stays, and a recent manifest revision becomes a
//! root, so that everything it references stays too.
//!
//! Cost: only candidates are looked at, two `lstat`s each (the directory,
//! whose mtime changes when an entry arrives, and the file in it). Live
//! things are never stat'ed: nothing live is deleted anyway.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;

use crate::digest::Digest;
use crate::index::Index;
use crate::layout::{Layout, link_file, names};
use crate::plan::{CandidateKind, Hold, Plan, Reason};
use crate::sweep::candidate_dir;

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
}

/// The latest mtime among `paths` that exist, never following a symbolic link.
fn latest(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| fs::symlink_metadata(p).ok()?.modified().ok())
        .max()
}

/// Looks at the mtimes of `plan`'s candidates: those modified after `cutoff`
/// are held back.
pub fn find(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    now: SystemTime,
    cutoff: SystemTime,
) -> Recent {
    let ages: Vec<Option<Duration>> = plan
        .candidates
        .par_iter()
        .map(|candidate| {
            let paths = match candidate.kind {
                CandidateKind::TagIndexEntry
                | CandidateKind::Manifest
                | CandidateKind::LayerLink => {
                    let dir = candidate_dir(layout, index, plan, candidate);
                    vec![link_file(&dir), dir]
                }
                CandidateKind::Blob => {
                    let dir = candidate_dir(layout, index, plan, candidate);
                    vec![crate::layout::data_file(&dir), dir]
                }
                CandidateKind::Repository => {
                    let repo = &index.repositories[candidate.repository.unwrap_or(0) as usize];
                    let dir = layout.repository_dir(&repo.name);
                    let manifests = dir.join(names::MANIFESTS);
                    vec![
                        dir.join(names::LAYERS).join(crate::digest::SHA256),
                        dir.join(names::LAYERS),
                        manifests.join(names::REVISIONS).join(crate::digest::SHA256),
                        manifests.join(names::TAGS),
                        manifests.clone(),
                        dir.join(names::UPLOADS),
                        dir,
                    ]
                }
                // Decided from their own times when the plan is built.
                CandidateKind::TemporaryFile | CandidateKind::Upload => return None,
            };
            let modified = latest(&paths)?;
            (modified > cutoff).then(|| crate::clock::age(now, modified))
        })
        .collect();
    let mut recent = Recent {
        stats: plan
            .candidates
            .iter()
            .map(|c| match c.kind {
                CandidateKind::Repository => 7,
                CandidateKind::TemporaryFile | CandidateKind::Upload => 0,
                _ => 2,
            })
            .sum(),
        ..Recent::default()
    };
    for (candidate, age) in plan.candidates.iter().zip(ages) {
        let Some(age) = age else { continue };
        recent.hold.items.insert(candidate.key(), age);
        match candidate.kind {
            CandidateKind::LayerLink => {
                recent.hold.blobs.insert(candidate.digest);
            }
            CandidateKind::Manifest if candidate.reason == Reason::UntaggedManifest => {
                if let Some(r) = candidate.repository {
                    recent.roots.push((r, candidate.digest));
                }
            }
            _ => {}
        }
    }
    recent
}

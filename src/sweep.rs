//! Sweep: deletes a plan's candidates, kind by kind in plan order.
//!
//! Every deletion removes the known files of one directory, then the
//! directory itself with `remove_dir`, which fails on anything unexpected left
//! inside instead of deleting it. Symbolic links are never followed (a
//! symlink is removed as the file it is, never its target). Something already
//! gone counts as deleted, so a re-run after an interruption just finishes.
//! A failure is recorded and the sweep goes on with the next candidate.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;
use walkdir::WalkDir;

use crate::index::Index;
use crate::layout::{self, Layout};
use crate::plan::{Candidate, CandidateKind, Plan, Reclaim};
use crate::progress::Progress;

/// Something the sweep could not delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The path that could not be removed.
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
}

/// How to sweep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOptions {
    /// Stop after this many deletions, as a crash would (for testing that
    /// an interrupted sweep leaves a consistent registry).
    pub stop_after: Option<u64>,
}

/// Deletes the plan's candidates. Runs on the current rayon pool.
pub fn sweep(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    options: SweepOptions,
    progress: Progress,
) -> SweepOutcome {
    let task = progress.bar(plan.candidates.len() as u64, "deleting");
    let stop = AtomicBool::new(false);
    let started = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let mut gone = vec![false; plan.candidates.len()];
    let mut offset = 0;
    for kind in CandidateKind::ALL {
        // Kinds run one after the other: the order is what keeps an
        // interrupted sweep consistent.
        let count = plan.candidates[offset..]
            .iter()
            .take_while(|c| c.kind == kind)
            .count();
        let range = offset..offset + count;
        offset += count;
        plan.candidates[range.clone()]
            .par_iter()
            .zip(gone[range].par_iter_mut())
            .for_each(|(candidate, gone)| {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(limit) = options.stop_after {
                    if started.fetch_add(1, Ordering::SeqCst) >= limit {
                        stop.store(true, Ordering::SeqCst);
                        return;
                    }
                }
                match delete(layout, index, candidate) {
                    Ok(()) => *gone = true,
                    Err(failure) => failures
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(failure),
                }
                task.inc(1);
            });
    }
    task.finish();
    let mut deleted = Reclaim::default();
    for (candidate, _) in plan.candidates.iter().zip(&gone).filter(|(_, g)| **g) {
        deleted.add(candidate);
    }
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    SweepOutcome {
        deleted,
        gone,
        failures,
        interrupted: stop.into_inner(),
    }
}

/// The directory a candidate lives in.
pub fn candidate_dir(layout: &Layout, index: &Index, candidate: &Candidate) -> PathBuf {
    let repo = candidate
        .repository
        .map(|r| index.repositories[r as usize].name.as_str())
        .unwrap_or_default();
    match candidate.kind {
        CandidateKind::TagIndexEntry => {
            let tag = candidate
                .repository
                .zip(candidate.tag)
                .map(|(r, t)| {
                    index.repositories[r as usize].tags[t as usize]
                        .name
                        .as_str()
                })
                .unwrap_or_default();
            layout.tag_index_entry_dir(repo, tag, &candidate.digest)
        }
        CandidateKind::Manifest => layout.revision_dir(repo, &candidate.digest),
        CandidateKind::LayerLink => match candidate.foreign_link {
            Some(i) => {
                let link = &index.repositories[candidate.repository.unwrap_or_default() as usize]
                    .foreign_links[i as usize];
                layout.layer_link_dir_for(repo, &link.algorithm, &link.hex)
            }
            None => layout.layer_link_dir(repo, &candidate.digest),
        },
        CandidateKind::Blob => layout.blob_dir(&candidate.digest),
    }
}

fn delete(layout: &Layout, index: &Index, candidate: &Candidate) -> Result<(), Failure> {
    let dir = candidate_dir(layout, index, candidate);
    match candidate.kind {
        CandidateKind::Blob => remove_file(&layout::data_file(&dir))?,
        CandidateKind::Manifest => {
            remove_file(&layout::link_file(&dir))?;
            remove_tree(&layout::signatures_dir(&dir))?;
        }
        CandidateKind::TagIndexEntry | CandidateKind::LayerLink => {
            remove_file(&layout::link_file(&dir))?
        }
    }
    remove_dir(&dir)
}

fn failure(path: &Path, error: &io::Error) -> Failure {
    Failure {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Removes a file (or a symbolic link itself); already gone is success.
fn remove_file(path: &Path) -> Result<(), Failure> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(failure(path, &e)),
        _ => Ok(()),
    }
}

/// Removes an empty directory; already gone is success. A directory that
/// still holds something is left alone and reported.
fn remove_dir(path: &Path) -> Result<(), Failure> {
    match fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Err(Failure {
            path: path.to_path_buf(),
            message: "directory holds entries the registry does not write there; kept".into(),
        }),
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(failure(path, &e)),
        _ => Ok(()),
    }
}

/// Removes a directory tree deepest first, never following symbolic links.
fn remove_tree(root: &Path) -> Result<(), Failure> {
    for entry in WalkDir::new(root).contents_first(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e)
                if e.io_error()
                    .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
            {
                continue;
            }
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                let message = e.to_string();
                return Err(Failure { path, message });
            }
        };
        if entry.file_type().is_dir() {
            remove_dir(entry.path())?;
        } else {
            remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_file_treats_already_gone_as_success() {
        let dir = tempfile::tempdir().unwrap();
        assert!(remove_file(&dir.path().join("absent")).is_ok());
        assert!(remove_dir(&dir.path().join("absent")).is_ok());
    }

    #[test]
    fn remove_dir_keeps_a_directory_with_unexpected_content() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("precious"), b"x").unwrap();
        let failure = remove_dir(&sub).unwrap_err();
        assert_eq!(failure.path, sub);
        assert!(sub.join("precious").exists());
    }

    #[test]
    fn remove_tree_removes_symlinks_not_their_targets() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("signatures");
        fs::create_dir_all(tree.join("sha256")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("sha256").join("escape")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
    }
}

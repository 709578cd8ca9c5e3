//! Sweep: deletes a plan's candidates, kind by kind in plan order, or moves
//! them into a trash batch.
//!
//! Every deletion removes the known files of one directory, then the
//! directory itself with `remove_dir`, which fails on anything unexpected left
//! inside instead of deleting it (stray `*.tmp` files of interrupted registry
//! writes excepted: they go when older than `--min-age`). Symbolic links are
//! never followed (a symlink is removed as the file it is, never its target).
//! Something already gone counts as deleted, so a re-run after an
//! interruption just finishes. A failure is recorded and the sweep goes on
//! with the next candidate.
//!
//! With a trash batch, a candidate's directory moves as a whole, with one
//! `rename(2)`, journaled first (see [`crate::storage::fs::trash`]).
//!
//! What could not be removed stays a root for the rest of the run: a
//! revision (or a tag) that stays keeps the blobs and layer links its
//! manifest reaches, a layer link that stays keeps its blob, and a manifest
//! that cannot be read then keeps every blob and the repository's links.
//!
//! With a [`Recheck`], everything the plan depends on is checked for changes
//! since the index began before the first deletion and again before each
//! kind; a change stops the sweep there (the registry is taking writes).
//!
//! A stop request (the first SIGINT, SIGTERM or SIGHUP) is checked before each candidate: the
//! sweep stops between two deletions and reports what it did. At the end,
//! the directories the sweep emptied (blob shards, `<alg>/` directories of
//! `_layers`, `revisions` and tag `index`) are removed, and so are those the
//! plan found possibly empty; never `_layers`, `_manifests` or a repository
//! directory, which decide what repositories exist (only
//! `--remove-empty-repos` removes those).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use rayon::prelude::*;

use crate::gc::plan::{self, Candidate, CandidateKind, Plan, Reclaim};
use crate::index::Index;
use crate::interrupt::Phase;
use crate::progress::Progress;
use crate::storage::fs::dir::Dir;
use crate::storage::fs::hygiene::is_temporary_name;
use crate::storage::fs::recheck::Recheck;
use crate::storage::fs::trash::{self, Batch};
use crate::storage::layout::{self, Layout, names};
use crate::storage::{Failure, Held, SweepOptions, SweepOutcome, candidate_dir};

/// Where swept things go.
#[derive(Debug, Clone, Copy)]
pub enum Disposal<'a> {
    /// Deleted for good.
    Delete,
    /// Moved into a trash batch.
    Trash(&'a Batch),
}

/// What a sweep looks at besides its plan.
#[derive(Clone, Copy, Default)]
pub struct Surroundings<'a> {
    /// Directories earlier runs may have left empty: removed at the end
    /// when they are.
    pub possibly_empty: &'a [PathBuf],
    /// Looks again, before each kind, at what the plan depends on.
    pub recheck: Option<&'a Recheck<'a>>,
}

/// Deletes (or moves to the trash) the plan's candidates. Runs on the
/// current rayon pool.
pub fn sweep(
    layout: &Layout,
    index: &Index,
    plan: &Plan,
    options: SweepOptions,
    disposal: Disposal,
    around: Surroundings,
    progress: Progress,
) -> SweepOutcome {
    let Surroundings {
        possibly_empty,
        recheck,
    } = around;
    let doing = match disposal {
        Disposal::Delete => "deleting",
        Disposal::Trash(_) => "moving to the trash",
    };
    let task = progress.bar(plan.candidates.len() as u64, doing, "paths");
    let crashed = AtomicBool::new(false);
    let quit = || options.interrupt.stops(Phase::Sweep);
    let started = AtomicU64::new(0);
    let temporary = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    // Candidates (by plan position) that could not be removed.
    let failed = Mutex::new(Vec::new());
    let mut held = Held::default();
    let mut changed = None;
    let mut gone = vec![false; plan.candidates.len()];
    let ctx = Ctx {
        layout,
        index,
        plan,
        disposal,
        cutoff: options.cutoff,
        temporary: &temporary,
        partial_bytes: AtomicU64::new(0),
        possibly_empty,
        listed_temporary: plan
            .candidates
            .iter()
            .filter(|c| c.kind == CandidateKind::TemporaryFile)
            .map(|c| candidate_dir(layout, index, plan, c))
            .collect(),
    };
    // Kinds run one after the other: the order is what keeps an
    // interrupted sweep consistent.
    for (kind, range) in plan.kind_ranges() {
        if let Some(recheck) = recheck.filter(|_| kind.rechecked()) {
            if crashed.load(Ordering::Relaxed) || quit() {
                break;
            }
            if let Some(change) = recheck.check_all() {
                changed = Some(change);
                break;
            }
        }
        if matches!(kind, CandidateKind::LayerLink | CandidateKind::Blob) {
            let failed = failed.lock().unwrap_or_else(|p| p.into_inner());
            held = Held::after_failures(layout, index, plan, &failed);
        }
        // A repository goes only if everything else of it went.
        let unfinished =
            plan.unfinished_repositories(kind, range.start, &gone, index.repositories.len());
        let one = |i: usize, candidate: &Candidate, parent: Option<&Dir>, gone: &mut bool| {
            if crashed.load(Ordering::Relaxed) || quit() {
                return;
            }
            if let Some(limit) = options.stop_after {
                if started.fetch_add(1, Ordering::SeqCst) >= limit {
                    crashed.store(true, Ordering::SeqCst);
                    return;
                }
            }
            if unfinished.hold(candidate) {
                task.inc(1);
                return;
            }
            // A repository and an upload are removed whole: each is looked
            // at again right before.
            let changed = recheck.and_then(|recheck| match kind {
                CandidateKind::Repository => candidate
                    .repository()
                    .and_then(|r| recheck.check_repository(r))
                    .map(|change| format!("kept: {change} (the registry is taking writes)")),
                CandidateKind::Upload => recheck
                    .check_tree(&candidate_dir(layout, index, plan, candidate))
                    .map(|change| format!("kept: {change} (the upload is active again)")),
                _ => None,
            });
            let result = match held.keeps(candidate).or(changed) {
                Some(message) => Err(Failure {
                    path: candidate_dir(layout, index, plan, candidate),
                    message,
                }),
                None => ctx.dispose(candidate, parent),
            };
            match result {
                Ok(()) => *gone = true,
                Err(failure) => {
                    failed.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                    failures
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push(failure)
                }
            }
            task.inc(1);
        };
        let start = range.start;
        let candidates = &plan.candidates[range.clone()];
        if kind == CandidateKind::Repository {
            // Nested repositories before their parents: one at a time.
            for (i, (c, g)) in candidates.iter().zip(gone[range].iter_mut()).enumerate() {
                one(start + i, c, None, g);
                if let (Some(recheck), true, Some(r)) = (recheck, *g, c.repository()) {
                    recheck.removed_by_sweep(r);
                }
            }
        } else {
            // Entries of one directory go through one descriptor of it.
            let mut work = Vec::new();
            let mut rest = &mut gone[range];
            for group in plan::parent_groups(candidates) {
                let (head, tail) = rest.split_at_mut(group.len());
                work.push((start + group.start, &candidates[group], head));
                rest = tail;
            }
            work.into_par_iter().for_each(|(first, group, gone)| {
                let parent = ctx.open_parent(group);
                for (i, (c, g)) in group.iter().zip(gone).enumerate() {
                    one(first + i, c, parent.as_ref(), g);
                }
                // The directory changed under the recheck's eyes: by this sweep itself.
                if let (Some(recheck), Some(c)) = (recheck, group.first()) {
                    if let Some(parent) = candidate_dir(layout, index, plan, c).parent() {
                        recheck.modified_by_sweep(parent);
                    }
                }
            });
        }
    }
    task.finish();
    let crashed = crashed.into_inner();
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    // After a change, the registry is taking writes: its directories are
    // left as they are.
    let empty_directories = if crashed || changed.is_some() {
        0
    } else {
        ctx.remove_empty_dirs(&gone, &mut failures)
    };
    let mut deleted = Reclaim::default();
    for (candidate, _) in plan.candidates.iter().zip(&gone).filter(|(_, g)| **g) {
        deleted.add(candidate);
    }
    // Blobs whose data went but whose directory stayed freed their bytes.
    deleted.bytes += ctx.partial_bytes.load(Ordering::Relaxed);
    let interrupted = crashed || changed.is_some() || quit() && gone.iter().any(|g| !g);
    if let Disposal::Trash(batch) = disposal {
        if !crashed {
            let moved = gone.iter().filter(|g| **g).count() as u64;
            if let Err(e) = batch.finish(moved, interrupted) {
                failures.push(failure(&batch.journal_path(), &e));
            }
        }
    }
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    SweepOutcome {
        deleted,
        gone,
        failures,
        interrupted,
        empty_directories,
        temporary_files: temporary.into_inner(),
        changed,
    }
}

struct Ctx<'a> {
    layout: &'a Layout,
    index: &'a Index,
    plan: &'a Plan,
    disposal: Disposal<'a>,
    cutoff: Option<SystemTime>,
    temporary: &'a AtomicU64,
    /// Bytes of blobs whose data went but whose directory stayed.
    partial_bytes: AtomicU64,
    possibly_empty: &'a [PathBuf],
    /// Temporary files that are candidates of their own: not counted again
    /// when they go with their directory.
    listed_temporary: std::collections::HashSet<PathBuf>,
}

impl Ctx<'_> {
    /// The directory a run of candidates sharing it lives in, opened for
    /// deleting its `<hex>` entries by name; `None` for a lone candidate
    /// (opening would cost more than it saves, and only `<hex>` entries ever
    /// form longer runs, see [`Candidate::shares_parent_with`]), in trash
    /// mode, or when it cannot be opened (each candidate then goes by its
    /// path, and reports its own failure).
    fn open_parent(&self, group: &[Candidate]) -> Option<Dir> {
        let first = group.first()?;
        if group.len() < 2 || !matches!(self.disposal, Disposal::Delete) {
            return None;
        }
        let dir = candidate_dir(self.layout, self.index, self.plan, first);
        Dir::open(dir.parent()?).ok()
    }

    /// Deletes `<hex>/link` (or `data`) and `<hex>` below `parent`; whether
    /// both are gone. Anything else (a schema1 `signatures` directory, a
    /// stray temporary file, an error) is left to the path-based deletion,
    /// which handles and reports it.
    fn delete_by_name(parent: &Dir, candidate: &Candidate) -> bool {
        let hex = candidate.digest.hex_buf();
        let hex = hex.as_str();
        let file = match candidate.kind {
            CandidateKind::Blob => layout::relative::data(hex),
            _ => layout::relative::link(hex),
        };
        let gone = |result: io::Result<()>| match result {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        };
        gone(parent.remove_file(file)) && gone(parent.remove_dir(hex))
    }

    fn dispose(&self, candidate: &Candidate, parent: Option<&Dir>) -> Result<(), Failure> {
        if let Some(parent) = parent {
            if Ctx::delete_by_name(parent, candidate) {
                return Ok(());
            }
        }
        let dir = candidate_dir(self.layout, self.index, self.plan, candidate);
        if dir.as_os_str().is_empty() {
            return Err(Failure {
                path: dir,
                message: "no path for this candidate".into(),
            });
        }
        if candidate.kind == CandidateKind::Repository {
            return self.remove_repository(&dir);
        }
        match self.disposal {
            Disposal::Trash(batch) => batch
                .move_in(candidate.kind.as_str(), &dir)
                .map(|_| ())
                .map_err(|e| failure(&dir, &e)),
            Disposal::Delete => self.delete(candidate, &dir),
        }
    }

    fn delete(&self, candidate: &Candidate, dir: &Path) -> Result<(), Failure> {
        match candidate.kind {
            CandidateKind::Blob => {
                remove_file(&layout::data_file(dir))?;
                let result = self.remove_link_dir(dir);
                if result.is_err() {
                    self.partial_bytes
                        .fetch_add(candidate.bytes().unwrap_or(0), Ordering::Relaxed);
                }
                return result;
            }
            CandidateKind::Manifest => {
                remove_file(&layout::link_file(dir))?;
                // Schema1 signatures are rare: looked for only when the
                // directory does not go without them.
                if remove_dir(dir).is_ok() {
                    return Ok(());
                }
                remove_tree(&layout::signatures_dir(dir))?;
            }
            CandidateKind::TagIndexEntry | CandidateKind::LayerLink => {
                remove_file(&layout::link_file(dir))?
            }
            CandidateKind::TemporaryFile => return remove_file(dir),
            // The whole tag directory, as the registry's API untags.
            CandidateKind::Tag => return remove_tree(dir),
            CandidateKind::Upload => return remove_tree(dir),
            CandidateKind::Repository => unreachable!("handled by remove_repository"),
        }
        self.remove_link_dir(dir)
    }

    /// Removes a `<hex>` directory emptied of its file, and its stray
    /// temporary files old enough to go.
    fn remove_link_dir(&self, dir: &Path) -> Result<(), Failure> {
        match remove_dir(dir) {
            Err(failure) if self.clear_temporary_files(dir) => remove_dir(dir).map_err(|_| failure),
            other => other,
        }
    }

    /// Removes the stray temporary files in `dir` old enough to go; whether
    /// any went.
    fn clear_temporary_files(&self, dir: &Path) -> bool {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        let mut removed = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let old = self
                .cutoff
                .is_none_or(|c| meta.modified().is_ok_and(|m| m <= c));
            if meta.is_file()
                && is_temporary_name(&name.to_string_lossy())
                && old
                && fs::remove_file(entry.path()).is_ok()
            {
                if !self.listed_temporary.contains(&entry.path()) {
                    self.temporary.fetch_add(1, Ordering::Relaxed);
                }
                removed = true;
            }
        }
        removed
    }

    /// `--remove-empty-repos`: the repository's `_manifests`, `_uploads` and
    /// `_layers`, then its directory and the name components above it that
    /// are left empty. A directory holding a nested repository (or anything
    /// else) stays.
    fn remove_repository(&self, dir: &Path) -> Result<(), Failure> {
        for name in [names::MANIFESTS, names::UPLOADS, names::LAYERS] {
            let sub = dir.join(name);
            match fs::symlink_metadata(&sub) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failure(&sub, &e)),
                Ok(meta) if !meta.is_dir() => {
                    return Err(Failure {
                        path: sub,
                        message: "not a directory; repository kept".into(),
                    });
                }
                Ok(_) => {}
            }
            match self.disposal {
                Disposal::Trash(batch) => {
                    batch
                        .merge_in(CandidateKind::Repository.as_str(), &sub)
                        .map_err(|e| failure(&sub, &e))?;
                }
                Disposal::Delete => remove_tree(&sub)?,
            }
        }
        let top = self.layout.repositories_dir();
        let mut current = dir.to_path_buf();
        while current != top && current.starts_with(&top) {
            if fs::remove_dir(&current).is_err() {
                break;
            }
            if let Disposal::Trash(batch) = self.disposal {
                batch
                    .removed_dir(&current)
                    .map_err(|e| failure(&current, &e))?;
            }
            if !current.pop() {
                break;
            }
        }
        Ok(())
    }

    /// Removes the directories the sweep emptied, and those the plan found
    /// possibly empty. Returns how many went.
    fn remove_empty_dirs(&self, gone: &[bool], failures: &mut Vec<Failure>) -> u64 {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut previous: Option<&Candidate> = None;
        for (c, _) in self.plan.candidates.iter().zip(gone).filter(|(c, g)| {
            **g && matches!(
                c.kind,
                CandidateKind::TagIndexEntry
                    | CandidateKind::Manifest
                    | CandidateKind::LayerLink
                    | CandidateKind::Blob
            )
        }) {
            // One path per run of entries of the same directory.
            if previous.is_some_and(|p| p.shares_parent_with(c)) {
                continue;
            }
            previous = Some(c);
            if let Some(parent) = candidate_dir(self.layout, self.index, self.plan, c).parent() {
                dirs.push(parent.to_path_buf());
            }
        }
        dirs.extend(self.possibly_empty.iter().cloned());
        dirs.sort_unstable();
        dirs.dedup();
        let mut removed = 0;
        for dir in dirs {
            if fs::remove_dir(&dir).is_err() {
                continue;
            }
            removed += 1;
            if let Disposal::Trash(batch) = self.disposal {
                if let Err(e) = batch.removed_dir(&dir) {
                    failures.push(failure(&dir, &e));
                }
            }
        }
        removed
    }
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
    trash::remove_tree(root)
        .map(|_| ())
        .map_err(|e| failure(root, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::gc::plan::Reason;
    use crate::index::{Blob, Repository, Revision};

    /// A failed revision keeps what its manifest references, and what the
    /// manifest its revision link names references (the registry serves that
    /// one in its place).
    #[test]
    fn a_failed_revision_keeps_what_it_and_its_link_target_reference() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let image = |layer: &Digest| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"digest":"{layer}"}},"layers":[]}}"#
            )
        };
        let (own_layer, target_layer) = (Digest::from_bytes([1; 32]), Digest::from_bytes([2; 32]));
        let a = image(&own_layer);
        let b = image(&target_layer);
        let (a_digest, b_digest) = (
            Digest::of_bytes(a.as_bytes()),
            Digest::of_bytes(b.as_bytes()),
        );
        let mut blobs = Vec::new();
        for (digest, bytes) in [
            (a_digest, a.as_bytes()),
            (b_digest, b.as_bytes()),
            (own_layer, b"x".as_slice()),
            (target_layer, b"y".as_slice()),
        ] {
            let path = layout.blob_data(&digest);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            blobs.push(Blob::new(digest, Some(bytes.len() as u64)));
        }
        blobs.sort_unstable_by_key(|b| b.digest);
        let index = Index {
            blobs,
            repositories: vec![Repository {
                name: "r".into(),
                revisions: vec![Revision {
                    digest: a_digest,
                    linked: true,
                    signatures: Vec::new(),
                }],
                revision_link_targets: vec![(a_digest, b_digest)],
                ..Repository::default()
            }],
            ..Index::default()
        };
        let plan = Plan {
            candidates: vec![
                Candidate::blob(a_digest, None)
                    .of_kind(CandidateKind::Manifest)
                    .in_repository(Some(0))
                    .because(Reason::UntaggedManifest),
            ],
            ..Plan::default()
        };
        let held = Held::after_failures(&layout, &index, &plan, &[0]);
        for digest in [a_digest, b_digest, own_layer, target_layer] {
            let blob = Candidate::blob(digest, None);
            assert!(held.keeps(&blob).is_some(), "blob {digest} stays");
            let link = blob
                .of_kind(CandidateKind::LayerLink)
                .in_repository(Some(0));
            assert!(held.keeps(&link).is_some(), "link to {digest} stays");
        }
        assert!(
            held.keeps(&Candidate::blob(Digest::from_bytes([3; 32]), None))
                .is_none()
        );
    }

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

//! Quarantine: `gc --trash DIR` moves what it would delete into DIR, and
//! `restore` moves it back.
//!
//! ```text
//! DIR/regsweep.lock                       while a run writes, restores or empties
//! DIR/<UTC time>-<pid>/journal.jsonl      one batch per run: header, then one line per move
//! DIR/<UTC time>-<pid>/docker/registry/v2/...   what moved, at its path below the storage root
//! ```
//!
//! A move is one `rename(2)` of the candidate's directory (or file), so DIR
//! must be on the storage's filesystem; it is checked before anything moves.
//! The journal line of a move is written *before* the rename: a run killed
//! between the two leaves a line whose source is still in the registry, and
//! restore skips it. The journal is flushed line by line (a killed process
//! loses nothing) and fsync'ed after its header and at the end.
//!
//! Restore replays the journals backwards, newest batch first: blobs come
//! back before the layer links, revisions and tag history entries that point
//! at them, which is the reverse of the sweep order and keeps the registry
//! consistent at every step. It recreates the directories the sweep removed
//! and refuses to overwrite anything: if a path exists again in the registry
//! it stops before moving anything; each rename is `RENAME_NOREPLACE`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

use crate::clock;
use crate::duration::Age;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::lock::{self, Lock};

/// The journal of a batch.
pub const JOURNAL: &str = "journal.jsonl";
/// Version of the journal's shape.
pub const JOURNAL_VERSION: u32 = 1;

/// The first line of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`JOURNAL_VERSION`].
    pub regsweep_trash: u32,
    /// The batch's directory name.
    pub batch: String,
    /// The storage root the paths are relative to.
    pub storage_root: PathBuf,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// Process id of the run.
    pub pid: u32,
    /// Host of the run.
    pub host: String,
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    /// `path` (relative to the storage root) is about to move to the batch.
    Move {
        /// Candidate kind, as in the report.
        kind: String,
        /// Relative to the storage root.
        path: PathBuf,
    },
    /// The empty directory `path` was removed.
    Rmdir {
        /// Relative to the storage root.
        path: PathBuf,
    },
    /// The run ended.
    End {
        /// Moves done.
        moved: u64,
        /// The sweep stopped early.
        interrupted: bool,
    },
}

/// `rename(2)` that never replaces an existing target (`RENAME_NOREPLACE`;
/// on a filesystem without it, a check then a rename).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// A trash directory checked for use with a storage root.
#[derive(Debug)]
pub struct Trash {
    dir: PathBuf,
}

impl Trash {
    /// Creates `dir` if needed and checks that it can receive what the sweep
    /// of `layout` moves: outside `docker/registry/v2`, on the same
    /// filesystem as the storage (as every directory a move starts from).
    pub fn prepare(dir: &Path, layout: &Layout) -> Result<Trash> {
        let refuse = |reason: String| Error::Trash {
            path: dir.to_path_buf(),
            reason,
        };
        // Checked on DIR, or on the directory it would be created in:
        // nothing is created inside the registry or on another filesystem.
        let (existing, missing) = match fs::canonicalize(dir) {
            Ok(canonical) => (canonical, None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = dir
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let name = dir
                    .file_name()
                    .ok_or_else(|| refuse("not a directory name".into()))?;
                let parent = fs::canonicalize(parent).map_err(|e| Error::io(parent, e))?;
                (parent, Some(name.to_owned()))
            }
            Err(e) => return Err(Error::io(dir, e)),
        };
        let canonical = match &missing {
            Some(name) => existing.join(name),
            None => existing.clone(),
        };
        let meta = fs::metadata(&existing).map_err(|e| Error::io(&existing, e))?;
        if !meta.is_dir() {
            return Err(refuse("not a directory".into()));
        }
        let v2 = fs::canonicalize(layout.v2()).map_err(|e| Error::io(layout.v2(), e))?;
        if canonical.starts_with(&v2) {
            return Err(refuse(format!(
                "the trash must not be inside the registry's tree {}",
                v2.display()
            )));
        }
        for source in [
            layout.root().to_path_buf(),
            layout.v2().to_path_buf(),
            layout.blobs_dir(),
            layout.repositories_dir(),
        ] {
            let Ok(source_meta) = fs::metadata(&source) else {
                continue;
            };
            if source_meta.dev() != meta.dev() {
                return Err(refuse(format!(
                    "not on the same filesystem as {} (device {:#x} vs {:#x}): moving there would copy, not rename; choose a directory on the storage's filesystem",
                    source.display(),
                    meta.dev(),
                    source_meta.dev()
                )));
            }
        }
        if missing.is_some() {
            fs::create_dir(&canonical).map_err(|e| Error::io(&canonical, e))?;
        }
        Ok(Trash { dir: canonical })
    }

    /// The trash directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a new batch for the storage `root`.
    pub fn begin(&self, root: &Path) -> Result<Batch> {
        let now = SystemTime::now();
        let pid = std::process::id();
        let name = format!("{}-{pid}", clock::compact(now));
        let dir = self.dir.join(&name);
        fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let header = Header {
            regsweep_trash: JOURNAL_VERSION,
            batch: name.clone(),
            storage_root: root.to_path_buf(),
            started: clock::rfc3339(now),
            pid,
            host: lock::host_name(),
        };
        let path = dir.join(JOURNAL);
        let mut journal = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let mut line = serde_json::to_vec(&header).unwrap_or_default();
        line.push(b'\n');
        journal
            .write_all(&line)
            .and_then(|()| journal.sync_all())
            .and_then(|()| File::open(&dir)?.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        Ok(Batch {
            root: root.to_path_buf(),
            dir,
            name,
            journal: Mutex::new(journal),
            made: Mutex::new(HashSet::new()),
        })
    }
}

/// The batch a sweep moves into.
#[derive(Debug)]
pub struct Batch {
    root: PathBuf,
    dir: PathBuf,
    name: String,
    journal: Mutex<File>,
    made: Mutex<HashSet<PathBuf>>,
}

impl Batch {
    /// The batch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The batch's name (`<UTC time>-<pid>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The journal file.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    fn write(&self, entry: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.write_all(&line)
    }

    fn relative<'p>(&self, path: &'p Path) -> io::Result<&'p Path> {
        path.strip_prefix(&self.root)
            .map_err(|_| io::Error::other("outside the storage root"))
    }

    /// Moves `path` (below the storage root) into the batch, journaled
    /// first. `Ok(false)` when it is already gone.
    pub fn move_in(&self, kind: &str, path: &Path) -> io::Result<bool> {
        let rel = self.relative(path)?;
        if kind == "temporary_file" && fs::symlink_metadata(path).is_err() {
            // Already gone with the directory it was in: not journaled, so
            // that restore does not recreate that directory before it.
            return Ok(false);
        }
        self.write(&Entry::Move {
            kind: kind.to_owned(),
            path: rel.to_path_buf(),
        })?;
        let target = self.dir.join(rel);
        if let Some(parent) = target.parent() {
            let known = self
                .made
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(parent);
            if !known {
                fs::create_dir_all(parent)?;
                self.made
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(parent.to_path_buf());
            }
        }
        match rename_noreplace(path, &target) {
            Ok(()) => Ok(true),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_err() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the directory `path` into the batch where part of its tree
    /// already is (a repository's `_manifests` after some of its revisions
    /// moved): what is not in the batch yet moves, entry by entry, each
    /// journaled; then the emptied directory goes (journaled as removed, so
    /// that restore recreates it before moving its entries back).
    pub fn merge_in(&self, kind: &str, path: &Path) -> io::Result<()> {
        let target = self.dir.join(self.relative(path)?);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(io::ErrorKind::AlreadyExists.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.move_in(kind, path).map(|_| ());
            }
            Err(e) => return Err(e),
        }
        let meta = fs::symlink_metadata(path)?;
        if !meta.is_dir() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        for entry in fs::read_dir(path)? {
            self.merge_in(kind, &entry?.path())?;
        }
        fs::remove_dir(path)?;
        self.removed_dir(path)
    }

    /// Records that the empty directory `path` was removed.
    pub fn removed_dir(&self, path: &Path) -> io::Result<()> {
        let rel = self.relative(path)?;
        self.write(&Entry::Rmdir {
            path: rel.to_path_buf(),
        })
    }

    /// Ends the journal and makes it durable.
    pub fn finish(&self, moved: u64, interrupted: bool) -> io::Result<()> {
        self.write(&Entry::End { moved, interrupted })?;
        let journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

/// A batch found in a trash directory.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    /// Its directory.
    pub dir: PathBuf,
    /// Its header.
    pub header: Header,
    /// Its entries, in journal order (a torn last line is dropped).
    pub entries: Vec<Entry>,
}

impl BatchInfo {
    /// When the batch was started.
    pub fn started(&self) -> Option<SystemTime> {
        clock::parse_rfc3339(&self.header.started)
    }

    /// Moves journaled.
    pub fn moves(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Move { .. }))
            .count()
    }
}

/// Reads a batch directory; `None` if it is not one (no journal, or a
/// journal without a header).
pub fn read_batch(dir: &Path) -> Result<Option<BatchInfo>> {
    let path = dir.join(JOURNAL);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut lines = BufReader::new(file).lines();
    let header: Header = match lines.next() {
        Some(Ok(line)) => match serde_json::from_str(&line) {
            Ok(header) => header,
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    let mut entries = Vec::new();
    let mut torn = None;
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| Error::io(&path, e))?;
        if let Some(bad) = torn.take() {
            // Only the last line may be torn (a crash mid-write).
            return Err(Error::Trash {
                path: path.clone(),
                reason: format!("journal line {} is not valid: {bad}", i + 1),
            });
        }
        match serde_json::from_str::<Entry>(&line) {
            Ok(entry) => entries.push(entry),
            Err(e) => torn = Some(e.to_string()),
        }
    }
    Ok(Some(BatchInfo {
        dir: dir.to_path_buf(),
        header,
        entries,
    }))
}

/// Every batch in `trash`, newest first.
pub fn batches(trash: &Path) -> Result<Vec<BatchInfo>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(trash).map_err(|e| Error::io(trash, e))? {
        let entry = entry.map_err(|e| Error::io(trash, e))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Some(batch) = read_batch(&entry.path())? {
            found.push(batch);
        }
    }
    found.sort_by(|a, b| {
        (b.header.started.as_str(), b.header.batch.as_str())
            .cmp(&(a.header.started.as_str(), a.header.batch.as_str()))
    });
    Ok(found)
}

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub struct RestoreOutcome {
    /// Batches restored completely (and removed from the trash).
    pub batches: Vec<String>,
    /// Paths moved back.
    pub restored: u64,
    /// Directories recreated.
    pub directories: u64,
    /// Journaled moves whose source was not in the batch (never moved by
    /// an interrupted run, or already restored).
    pub skipped: u64,
    /// What could not be moved back: path and reason.
    pub failures: Vec<(PathBuf, String)>,
    /// Stopped by Ctrl-C between two moves: run `restore` again to finish.
    pub interrupted: bool,
}

/// Moves everything of the batches of `trash` (or of the batch `only`) back
/// into the storage they came from, newest batch first, each in the reverse
/// of its journal. Refuses, moving nothing, if anything to restore exists
/// again in the registry.
pub fn restore(
    trash: &Path,
    only: Option<&str>,
    quit: Option<&AtomicBool>,
) -> Result<RestoreOutcome> {
    let trash = fs::canonicalize(trash).map_err(|e| Error::io(trash, e))?;
    let _trash_lock = Lock::acquire(&trash, "restore")?;
    let mut selected = batches(&trash)?;
    if let Some(name) = only {
        selected.retain(|b| b.header.batch == name);
        if selected.is_empty() {
            return Err(Error::Trash {
                path: trash.join(name),
                reason: "no such batch in the trash (see `regsweep trash list`)".into(),
            });
        }
    }
    let mut roots: Vec<PathBuf> = selected
        .iter()
        .map(|b| b.header.storage_root.clone())
        .collect();
    roots.sort();
    roots.dedup();
    let mut locks = Vec::new();
    for root in &roots {
        if !root.is_dir() {
            return Err(Error::Restore {
                path: root.clone(),
                reason: "the storage root the batch came from does not exist".into(),
            });
        }
        if *root != trash {
            locks.push(Lock::acquire(root, "restore")?);
        }
    }

    // Check everything before moving anything.
    let mut targets = HashSet::new();
    let mut in_the_way = Vec::new();
    for batch in &selected {
        for entry in batch.entries.iter().rev() {
            let Entry::Move { path, .. } = entry else {
                continue;
            };
            if fs::symlink_metadata(batch.dir.join(path)).is_err() {
                continue;
            }
            let target = batch.header.storage_root.join(path);
            if fs::symlink_metadata(&target).is_ok() || !targets.insert(target.clone()) {
                in_the_way.push(target);
            }
        }
    }
    if let Some(first) = in_the_way.first() {
        return Err(Error::Restore {
            path: first.clone(),
            reason: format!(
                "exists again in the registry{}; nothing was restored (move it away, or restore a single older batch with --batch)",
                if in_the_way.len() > 1 {
                    format!(" (and {} more paths)", in_the_way.len() - 1)
                } else {
                    String::new()
                }
            ),
        });
    }

    let mut outcome = RestoreOutcome::default();
    for batch in &selected {
        let failures_before = outcome.failures.len();
        let root = &batch.header.storage_root;
        for entry in batch.entries.iter().rev() {
            if quit.is_some_and(|q| q.load(Ordering::Relaxed)) {
                outcome.interrupted = true;
                return Ok(outcome);
            }
            match entry {
                Entry::Move { path, .. } => {
                    let source = batch.dir.join(path);
                    if fs::symlink_metadata(&source).is_err() {
                        outcome.skipped += 1;
                        continue;
                    }
                    let target = root.join(path);
                    let moved = target
                        .parent()
                        .map_or(Ok(()), fs::create_dir_all)
                        .and_then(|()| rename_noreplace(&source, &target));
                    match moved {
                        Ok(()) => outcome.restored += 1,
                        Err(e) => outcome.failures.push((target, e.to_string())),
                    }
                }
                Entry::Rmdir { path } => {
                    let target = root.join(path);
                    match fs::create_dir_all(&target) {
                        Ok(()) => outcome.directories += 1,
                        Err(e) => outcome.failures.push((target, e.to_string())),
                    }
                }
                Entry::End { .. } => {}
            }
        }
        if outcome.failures.len() == failures_before {
            let _ = fs::remove_file(batch.dir.join(JOURNAL));
            remove_empty_tree(&batch.dir);
            outcome.batches.push(batch.header.batch.clone());
        }
    }
    drop(locks);
    Ok(outcome)
}

/// Removes the empty directories of a tree, deepest first; anything else stays.
fn remove_empty_tree(root: &Path) {
    for entry in WalkDir::new(root)
        .follow_links(false)
        .contents_first(true)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// Removes a tree for good, deepest first, never following a symbolic link
/// (a link is removed as the file it is). Returns files and bytes removed.
pub fn remove_tree(root: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in WalkDir::new(root).follow_links(false).contents_first(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e)
                if e.io_error()
                    .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
            {
                continue;
            }
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        if entry.file_type().is_dir() {
            match fs::remove_dir(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => files += 1,
            }
        }
    }
    Ok((files, bytes))
}

/// What emptying the trash did.
#[derive(Debug, Default, Serialize)]
pub struct EmptyOutcome {
    /// Batches deleted.
    pub deleted: Vec<String>,
    /// Batches kept (younger than `--older-than`).
    pub kept: Vec<String>,
    /// Files deleted.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Deletes the batches of `trash` started more than `older_than` ago.
pub fn empty(trash: &Path, older_than: Age) -> Result<EmptyOutcome> {
    let trash = fs::canonicalize(trash).map_err(|e| Error::io(trash, e))?;
    let _lock = Lock::acquire(&trash, "trash empty")?;
    let now = SystemTime::now();
    let mut outcome = EmptyOutcome::default();
    for batch in batches(&trash)? {
        let old_enough = older_than.is_zero()
            || batch
                .started()
                .is_some_and(|t| clock::age(now, t) > older_than.duration());
        if !old_enough {
            outcome.kept.push(batch.header.batch);
            continue;
        }
        let (files, bytes) = remove_tree(&batch.dir).map_err(|e| Error::io(&batch.dir, e))?;
        outcome.files += files;
        outcome.bytes += bytes;
        outcome.deleted.push(batch.header.batch);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_noreplace_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::create_dir(&b).unwrap();
        assert!(
            rename_noreplace(&a, &b).is_err(),
            "an empty directory is in the way"
        );
        fs::remove_dir(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"a");
    }

    #[test]
    fn a_torn_last_journal_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let header = Header {
            regsweep_trash: 1,
            batch: "b".into(),
            storage_root: "/s".into(),
            started: "2024-05-01T12:00:00Z".into(),
            pid: 1,
            host: "h".into(),
        };
        let moved = Entry::Move {
            kind: "blob".into(),
            path: "docker/registry/v2/blobs/sha256/ab/ab".into(),
        };
        let text = format!(
            "{}\n{}\n{{\"op\":\"mo",
            serde_json::to_string(&header).unwrap(),
            serde_json::to_string(&moved).unwrap()
        );
        fs::write(dir.path().join(JOURNAL), text).unwrap();
        let batch = read_batch(dir.path()).unwrap().unwrap();
        assert_eq!(batch.header, header);
        assert_eq!(batch.entries, vec![moved]);
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("d")).unwrap();
        fs::write(tree.join("d/f"), b"12345").unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("d/escape")).unwrap();
        let (files, _) = remove_tree(&tree).unwrap();
        assert_eq!(files, 2);
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
    }
}

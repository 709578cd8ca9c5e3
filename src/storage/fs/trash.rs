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
//!
//! Restore trusts no journal to stay inside the storage: a batch goes back
//! only into the storage root its header names when that is a storage root
//! now, at the same canonical path, on the batch's filesystem; every path
//! must be a plain relative path below that root's `docker/registry/v2`;
//! both trees are walked one directory at a time without following a link.
//! What would come back under a tag or a repository deleted since the sweep
//! stays in the batch. Each of these, and each bad journal line, is reported
//! on its own: the other entries and batches are restored.

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
use crate::storage::fs::dir::{self, Dir};
use crate::storage::fs::lock::{self, Lock};
use crate::storage::layout::{Layout, V2_SUFFIX, names};
use crate::storage::target;
use crate::text::{count, counted, human_bytes};

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

/// A journal line longer than this is none regsweep wrote (an entry holds
/// one path below the storage root, JSON-escaped): it is reported, never
/// read into memory.
pub const MAX_JOURNAL_LINE: usize = 64 * 1024;

/// An entry of a journal and its line number (the header is line 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    /// Its line number.
    pub line: usize,
    /// What it says.
    pub entry: Entry,
}

/// A journal line that is not a whole entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// Its line number.
    pub line: usize,
    /// What is wrong, and what it means for the restore.
    pub message: String,
}

/// A batch found in a trash directory.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    /// Its directory.
    pub dir: PathBuf,
    /// Its header.
    pub header: Header,
    /// Its whole entries, in journal order (a torn last line is dropped).
    pub entries: Vec<JournalLine>,
    /// Lines in the middle that are not whole entries.
    pub problems: Vec<LineProblem>,
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
            .filter(|e| matches!(e.entry, Entry::Move { .. }))
            .count()
    }

    /// The journal file.
    pub fn journal(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Each bad line as the journal's path and `line N: ...`.
    pub fn problem_reports(&self) -> Vec<(PathBuf, String)> {
        self.problems
            .iter()
            .map(|p| (self.journal(), format!("line {}: {}", p.line, p.message)))
            .collect()
    }
}

/// A line as [`next_line`] read it.
enum RawLine {
    /// In the buffer; whether a newline ended it.
    Text { terminated: bool },
    /// Longer than [`MAX_JOURNAL_LINE`]: skipped, `len` bytes.
    TooLong { len: u64 },
}

/// Reads the next line into `buf`, without its newline and never more than
/// [`MAX_JOURNAL_LINE`] bytes of it. `None` at the end of the file.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<RawLine>> {
    buf.clear();
    let mut len = 0u64;
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let end = available.iter().position(|&b| b == b'\n');
        if available.is_empty() && len == 0 {
            return Ok(None);
        }
        let chunk = &available[..end.unwrap_or(available.len())];
        let at_end = available.is_empty();
        len += chunk.len() as u64;
        if !too_long && buf.len() + chunk.len() <= MAX_JOURNAL_LINE {
            buf.extend_from_slice(chunk);
        } else {
            too_long = true;
            buf.clear();
        }
        let consumed = chunk.len() + usize::from(end.is_some());
        reader.consume(consumed);
        if end.is_some() || at_end {
            return Ok(Some(if too_long {
                RawLine::TooLong { len }
            } else {
                RawLine::Text {
                    terminated: end.is_some(),
                }
            }));
        }
    }
}

/// The whole entry at the end of a line that begins with a torn one: a
/// write cut short (a full disk) leaves part of a line without its newline,
/// and the next write, once there is space again, appends a whole line to it.
fn whole_entry_after_torn_one(line: &[u8]) -> Option<Entry> {
    const START: &[u8] = b"{\"op\":";
    (1..line.len())
        .filter(|&i| line[i..].starts_with(START))
        .find_map(|i| serde_json::from_slice(&line[i..]).ok())
}

/// Reads a batch directory; `None` if it is not one (no journal, or a
/// journal whose header was never written whole: that run moved nothing).
/// A journal that is not a regular file, or whose first line is not a
/// header, is an error; a bad line further on is one of the batch's
/// [`BatchInfo::problems`], and the lines after it are read on.
pub fn read_batch(dir: &Path) -> Result<Option<BatchInfo>> {
    let path = dir.join(JOURNAL);
    let unreadable = |reason: String| Error::Trash {
        path: path.clone(),
        reason: format!("{reason}; nothing of this batch is restored, listed or deleted"),
    };
    let file = match dir::open_regular(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(format!("cannot read the journal: {e}"))),
    };
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    let mut read_line = |buf: &mut Vec<u8>| {
        next_line(&mut reader, buf).map_err(|e| unreadable(format!("cannot read the journal: {e}")))
    };
    let header: Header = match read_line(&mut buf)? {
        None => return Ok(None),
        Some(RawLine::Text { terminated }) => match serde_json::from_slice(&buf) {
            Ok(header) => header,
            Err(_) if !terminated => return Ok(None),
            Err(e) => {
                return Err(unreadable(format!(
                    "line 1 is not a journal header ({e}); look at what {} holds before deleting it by hand",
                    dir.display()
                )));
            }
        },
        Some(RawLine::TooLong { len }) => {
            return Err(unreadable(format!(
                "line 1 is {len} bytes long, not a journal header; look at what {} holds before deleting it by hand",
                dir.display()
            )));
        }
    };
    let kept = format!(
        "anything it recorded stays in {}, which is kept in the trash",
        dir.display()
    );
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut line = 1;
    while let Some(raw) = read_line(&mut buf)? {
        line += 1;
        let message = match raw {
            RawLine::TooLong { len } => format!(
                "{len} bytes long, longer than any entry ({MAX_JOURNAL_LINE} bytes at most): not read; {kept}"
            ),
            RawLine::Text { terminated } => match serde_json::from_slice::<Entry>(&buf) {
                Ok(entry) => {
                    entries.push(JournalLine { line, entry });
                    continue;
                }
                // A run killed mid-line: a move is journaled before it is
                // made, so that one never happened.
                Err(_) if !terminated => continue,
                Err(e) => match whole_entry_after_torn_one(&buf) {
                    Some(entry) => {
                        entries.push(JournalLine { line, entry });
                        "begins with an entry cut short (a write that failed, e.g. on a full disk), then goes on with a whole one, which is restored; the cut entry was a move not yet made (moves are journaled first, so nothing of it is in the batch) or an emptied directory, which is not recreated".to_owned()
                    }
                    None => format!("not a journal entry ({e}); {kept}"),
                },
            },
        };
        problems.push(LineProblem { line, message });
    }
    Ok(Some(BatchInfo {
        dir: dir.to_path_buf(),
        header,
        entries,
        problems,
    }))
}

/// The batches of a trash directory, and those that cannot be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every batch that can be read, newest first.
    pub batches: Vec<BatchInfo>,
    /// Journals that cannot be read: the path and why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Every batch in `trash`, newest first; a journal that cannot be read is
/// reported in [`Scan::unreadable`] and the other batches are read on.
pub fn scan(trash: &Path) -> Result<Scan> {
    let mut scan = Scan::default();
    for entry in fs::read_dir(trash).map_err(|e| Error::io(trash, e))? {
        let entry = entry.map_err(|e| Error::io(trash, e))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match read_batch(&entry.path()) {
            Ok(Some(batch)) => scan.batches.push(batch),
            Ok(None) => {}
            Err(Error::Trash { path, reason }) => scan.unreadable.push((path, reason)),
            Err(e) => scan.unreadable.push((entry.path(), e.to_string())),
        }
    }
    scan.batches.sort_by(|a, b| {
        (b.header.started.as_str(), b.header.batch.as_str())
            .cmp(&(a.header.started.as_str(), a.header.batch.as_str()))
    });
    scan.unreadable.sort();
    Ok(scan)
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
    /// What was not moved back: path and reason. A batch with any stays in
    /// the trash.
    pub failures: Vec<(PathBuf, String)>,
    /// Stopped by Ctrl-C between two moves: run `restore` again to finish.
    pub interrupted: bool,
}

impl RestoreOutcome {
    /// Writes what came back, from which batches, and what to do next.
    pub fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let from = if self.batches.is_empty() {
            String::new()
        } else {
            format!(
                " from {} ({})",
                counted(self.batches.len() as u64, "batch", "batches"),
                self.batches.join(", ")
            )
        };
        writeln!(
            out,
            "Restored {} and {}{from}.",
            counted(self.restored, "path", "paths"),
            counted(self.directories, "directory", "directories")
        )?;
        if self.restored > 0 {
            writeln!(
                out,
                "Restart the registry so that it serves what came back."
            )?;
        }
        if self.skipped > 0 {
            writeln!(
                out,
                "{} had nothing to restore (an interrupted run had not moved {}).",
                counted(self.skipped, "journaled move", "journaled moves"),
                if self.skipped == 1 { "it" } else { "them" }
            )?;
        }
        Ok(())
    }
}

/// The components below `docker/registry/v2` of a journaled path, if it is
/// a plain relative path below `blobs/` or `repositories/` there, the only
/// places a sweep moves anything from; otherwise what is wrong with it.
fn journal_path(path: &Path) -> Result<Vec<String>, String> {
    let text = path.to_str().ok_or("is not UTF-8")?;
    if text.starts_with('/') {
        return Err("is an absolute path".into());
    }
    let parts: Vec<&str> = text.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err("has an empty component".into()),
            "." => return Err("has a `.` component".into()),
            ".." => return Err("has a `..` component".into()),
            p if p.contains('\0') => return Err("has a NUL byte".into()),
            _ => {}
        }
    }
    let below = parts
        .strip_prefix(V2_SUFFIX.as_slice())
        .filter(|below| below.len() >= 2 && [names::BLOBS, names::REPOSITORIES].contains(&below[0]))
        .ok_or_else(|| {
            format!(
                "is not below `{0}/{1}` or `{0}/{2}`",
                V2_SUFFIX.join("/"),
                names::BLOBS,
                names::REPOSITORIES
            )
        })?;
    Ok(below.iter().map(|s| (*s).to_owned()).collect())
}

/// What must exist in the storage for a restored path to mean anything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Needs {
    /// Nothing: a blob, a directory above a repository's metadata, or a
    /// repository's metadata directory itself (the repository comes back
    /// with it, as a whole).
    Nothing,
    /// The repository (its `_manifests` or `_layers`: registry 2.8 lists a
    /// repository by its `_layers`, later ones by `_manifests`).
    Repository(Vec<String>),
    /// The tag's `current/link`: a tag directory without one lists in the
    /// tag list and does not pull.
    Tag(Vec<String>, String),
}

/// What the path `below` (components below `docker/registry/v2`) needs;
/// `is_move` for a move (a whole tag directory needs its repository only),
/// else a recreated directory.
fn needs_of(below: &[String], is_move: bool) -> Result<Needs, String> {
    if below[0] == names::BLOBS {
        return Ok(Needs::Nothing);
    }
    let rest = &below[1..];
    let Some(meta) = rest
        .iter()
        .position(|c| c.starts_with(names::METADATA_PREFIX))
    else {
        return Ok(Needs::Nothing);
    };
    if meta == 0 {
        return Err(format!("names no repository before `{}`", rest[0]));
    }
    let repository = rest[..meta].to_vec();
    let after = &rest[meta + 1..];
    if after.is_empty() {
        return Ok(Needs::Nothing);
    }
    // Below a tag's directory, or that directory recreated empty.
    let in_tag = rest[meta] == names::MANIFESTS && after[0] == names::TAGS && after.len() >= 2;
    if in_tag && (after.len() > 2 || !is_move) {
        return Ok(Needs::Tag(repository, after[1].clone()));
    }
    Ok(Needs::Repository(repository))
}

/// Opens the directory `components` below `base`, one at a time, never
/// through a symbolic link. `Ok(None)` when one does not exist.
fn open_below(base: &Dir, components: &[String]) -> io::Result<Option<Dir>> {
    let mut dir: Option<Dir> = None;
    for (i, name) in components.iter().enumerate() {
        let parent = dir.as_ref().unwrap_or(base);
        match parent.open_dir(name) {
            Ok(Some(next)) => dir = Some(next),
            Ok(None) => return Ok(None),
            Err(e) if dir::is_symlink_error(&e) => {
                return Err(not_a_directory(&components[..=i]));
            }
            Err(e) => return Err(e),
        }
    }
    match dir {
        Some(dir) => Ok(Some(dir)),
        None => base.open_dir("."),
    }
}

/// Opens the directory `components` below `base`, creating what is missing,
/// never through a symbolic link.
fn make_below(base: &Dir, components: &[String]) -> io::Result<Dir> {
    let mut dir: Option<Dir> = None;
    for (i, name) in components.iter().enumerate() {
        let parent = dir.as_ref().unwrap_or(base);
        let opened = match parent.open_dir(name) {
            Ok(None) => match parent.create_dir(name) {
                Ok(()) => parent.open_dir(name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => parent.open_dir(name),
                Err(e) => Err(e),
            },
            other => other,
        };
        match opened {
            Ok(Some(next)) => dir = Some(next),
            Ok(None) => return Err(io::ErrorKind::NotFound.into()),
            Err(e) if dir::is_symlink_error(&e) => {
                return Err(not_a_directory(&components[..=i]));
            }
            Err(e) => return Err(e),
        }
    }
    match dir {
        Some(dir) => Ok(dir),
        None => base
            .open_dir(".")?
            .ok_or_else(|| io::ErrorKind::NotFound.into()),
    }
}

fn not_a_directory(components: &[String]) -> io::Error {
    io::Error::other(format!(
        "`{}` is a symbolic link or not a directory: not followed",
        components.join("/")
    ))
}

/// `docker/registry/v2` below the directory `root`, opened without
/// following a link; `None` when it does not exist.
fn open_v2(root: &Path) -> io::Result<Option<Dir>> {
    let suffix: Vec<String> = V2_SUFFIX.iter().map(|s| (*s).to_owned()).collect();
    open_below(&Dir::open(root)?, &suffix)
}

/// Whether what `needs` names exists now, below the storage's `v2`; if not,
/// why the path is not brought back.
fn check_needs(v2: &Dir, needs: &Needs) -> Result<(), String> {
    let repository_dir = |name: &[String]| {
        let mut path = vec![names::REPOSITORIES.to_owned()];
        path.extend(name.iter().cloned());
        path
    };
    let is = |dir: &Dir, name: &str, kind: dir::Kind| {
        dir.stat(name)
            .ok()
            .flatten()
            .is_some_and(|(k, _)| k == kind)
    };
    match needs {
        Needs::Nothing => Ok(()),
        Needs::Repository(name) => {
            let exists = open_below(v2, &repository_dir(name))
                .ok()
                .flatten()
                .is_some_and(|repo| {
                    is(&repo, names::MANIFESTS, dir::Kind::Dir)
                        || is(&repo, names::LAYERS, dir::Kind::Dir)
                });
            exists.then_some(()).ok_or_else(|| {
                format!(
                    "repository `{}` no longer exists (no `_manifests` or `_layers`: deleted since the sweep?): not brought back, which would recreate part of it; it stays in the batch",
                    name.join("/")
                )
            })
        }
        Needs::Tag(name, tag) => {
            let mut current = repository_dir(name);
            current.extend([names::MANIFESTS, names::TAGS, tag, names::CURRENT].map(str::to_owned));
            let exists = open_below(v2, &current)
                .ok()
                .flatten()
                .is_some_and(|dir| is(&dir, names::LINK, dir::Kind::File));
            exists.then_some(()).ok_or_else(|| {
                format!(
                    "tag `{tag}` of `{}` no longer exists (no `current/link`: deleted since the sweep?): its history is not brought back, which would make a tag that lists and does not pull; it stays in the batch",
                    name.join("/")
                )
            })
        }
    }
}

/// The storage a batch goes back into: the one its header names, if that is
/// a storage root now (a real `docker/registry/v2`, no link on the way to
/// it), the same path it was at the sweep (a sweep records its canonical
/// root: a path that resolves elsewhere now leads to other data), not inside
/// the trash, and on the batch's filesystem (a batch is made by renames, so
/// it can only have come from there). A journal naming any other directory
/// would move the batch's files into it.
fn batch_storage(batch: &BatchInfo, trash: &Path) -> Result<Layout, String> {
    let recorded = &batch.header.storage_root;
    let refused = |why: String| format!("{why}; nothing of this batch was restored");
    if !recorded.is_absolute() {
        return Err(refused(format!(
            "the journal's storage_root `{}` is not an absolute path",
            recorded.display()
        )));
    }
    let layout = target::storage_root(recorded).map_err(|e| {
        refused(format!(
            "the storage the journal names cannot take the batch back ({e})"
        ))
    })?;
    if layout.root() != recorded {
        return Err(refused(format!(
            "the journal's storage_root {} resolves to {} now (a symbolic link on the way?); a batch goes back only into the storage it came from",
            recorded.display(),
            layout.root().display()
        )));
    }
    if layout.root().starts_with(trash) && layout.root() != trash {
        return Err(refused(format!(
            "the journal's storage_root {} is inside the trash directory",
            recorded.display()
        )));
    }
    let device = |path: &Path| fs::symlink_metadata(path).map(|m| m.dev());
    match (device(&batch.dir), device(layout.v2())) {
        (Ok(batch_dev), Ok(storage_dev)) if batch_dev == storage_dev => Ok(layout),
        (Ok(_), Ok(_)) => Err(refused(format!(
            "the batch is not on the filesystem of {}, so it cannot have come from there",
            layout.v2().display()
        ))),
        (Err(e), _) | (_, Err(e)) => Err(refused(e.to_string())),
    }
}

/// One step of a restore, in restore order.
struct Step {
    /// Its journal line.
    line: usize,
    /// Below `docker/registry/v2`.
    below: Vec<String>,
    /// A move back (else a directory to recreate).
    is_move: bool,
    needs: Needs,
}

/// A batch checked for restoring.
struct BatchPlan<'a> {
    batch: &'a BatchInfo,
    layout: Layout,
    /// The storage's `docker/registry/v2`.
    v2: Dir,
    /// The batch's `docker/registry/v2`, if anything was moved into it.
    source: Option<Dir>,
    steps: Vec<Step>,
    /// Bad lines and refused entries.
    reported: Vec<(PathBuf, String)>,
}

impl BatchPlan<'_> {
    fn target(&self, below: &[String]) -> PathBuf {
        below
            .iter()
            .fold(self.layout.v2().to_path_buf(), |p, c| p.join(c))
    }

    /// The open parent (in the batch) of a move's source, if the source is
    /// there.
    fn source_of(&self, below: &[String]) -> Option<Dir> {
        let (name, parent) = below.split_last()?;
        let dir = open_below(self.source.as_ref()?, parent).ok().flatten()?;
        dir.stat(name).ok().flatten().map(|_| dir)
    }
}

/// Checks `batch` for restoring into its storage: every path, what each
/// needs. `Err` when the batch cannot go back at all.
fn plan_batch<'a>(batch: &'a BatchInfo, trash: &Path) -> Result<BatchPlan<'a>, String> {
    let layout = batch_storage(batch, trash)?;
    let v2 = open_v2(layout.root())
        .and_then(|v2| v2.ok_or_else(|| io::ErrorKind::NotFound.into()))
        .map_err(|e| {
            format!(
                "{}: {e}; nothing of this batch was restored",
                layout.v2().display()
            )
        })?;
    let source = open_v2(&batch.dir).map_err(|e| {
        format!(
            "{}: {e}; nothing of this batch was restored",
            batch.dir.display()
        )
    })?;
    let mut reported = batch.problem_reports();
    let mut steps = Vec::new();
    for JournalLine { line, entry } in batch.entries.iter().rev() {
        let (path, is_move) = match entry {
            Entry::Move { path, .. } => (path, true),
            Entry::Rmdir { path } => (path, false),
            Entry::End { .. } => continue,
        };
        match journal_path(path).and_then(|below| Ok((needs_of(&below, is_move)?, below))) {
            Ok((needs, below)) => steps.push(Step {
                line: *line,
                below,
                is_move,
                needs,
            }),
            Err(why) => reported.push((
                batch.journal(),
                format!(
                    "line {line}: the path `{}` {why}: refused, nothing moved (regsweep restores only below the storage root's `{}`)",
                    path.display(),
                    V2_SUFFIX.join("/")
                ),
            )),
        }
    }
    Ok(BatchPlan {
        batch,
        layout,
        v2,
        source,
        steps,
        reported,
    })
}

/// Moves everything of the batches of `trash` (or of the batch `only`) back
/// into the storage they came from, newest batch first, each in the reverse
/// of its journal. Refuses, moving nothing, if anything to restore exists
/// again in the registry. A batch that cannot go back (its journal, its
/// storage), an entry whose path is not a plain path below the storage's
/// `docker/registry/v2`, and what would come back under a tag or a
/// repository deleted since the sweep are reported in
/// [`RestoreOutcome::failures`] and left in the trash; the rest is restored.
pub fn restore(
    trash: &Path,
    only: Option<&str>,
    quit: Option<&AtomicBool>,
) -> Result<RestoreOutcome> {
    let given = trash;
    let trash = fs::canonicalize(trash).map_err(|e| Error::io(trash, e))?;
    let _trash_lock = Lock::acquire(&trash, "restore")?;
    let Scan {
        batches: mut selected,
        mut unreadable,
    } = scan(&trash)?;
    if let Some(name) = only {
        selected.retain(|b| b.header.batch == name);
        unreadable.retain(|(path, _)| path.starts_with(trash.join(name)));
        if selected.is_empty() && unreadable.is_empty() {
            return Err(Error::Trash {
                path: trash.join(name),
                reason: "no such batch in the trash (see `regsweep trash list`)".into(),
            });
        }
    } else if selected.is_empty() && unreadable.is_empty() {
        // Restoring nothing is no success: the wrong directory was given,
        // or its batches were emptied or restored already.
        return Err(Error::Trash {
            path: given.to_path_buf(),
            reason: "no batches to restore here (a trash directory holds one `<UTC time>-<pid>` directory with a journal.jsonl per `gc --trash` run; see `regsweep trash list`)".into(),
        });
    }
    let mut outcome = RestoreOutcome {
        failures: unreadable,
        ..RestoreOutcome::default()
    };
    let mut plans = Vec::new();
    let mut locks = Vec::new();
    let mut locked = HashSet::new();
    for batch in &selected {
        match plan_batch(batch, &trash) {
            Ok(plan) => {
                let root = plan.layout.root().to_path_buf();
                if root != trash && locked.insert(root.clone()) {
                    locks.push(Lock::acquire(&root, "restore")?);
                }
                plans.push(plan);
            }
            Err(reason) => outcome.failures.push((batch.journal(), reason)),
        }
    }

    // Check everything before moving anything.
    let mut targets = HashSet::new();
    let mut in_the_way = Vec::new();
    for plan in &plans {
        for step in plan.steps.iter().filter(|s| s.is_move) {
            if plan.source_of(&step.below).is_none() {
                continue;
            }
            let target = plan.target(&step.below);
            let (name, parent) = step.below.split_last().unwrap_or((&step.below[0], &[]));
            let exists = open_below(&plan.v2, parent)
                .ok()
                .flatten()
                .is_some_and(|dir| dir.stat(name).ok().flatten().is_some());
            if exists || !targets.insert(target.clone()) {
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

    for plan in &plans {
        let failures_before = outcome.failures.len();
        outcome.failures.extend(plan.reported.iter().cloned());
        for step in &plan.steps {
            if quit.is_some_and(|q| q.load(Ordering::Relaxed)) {
                outcome.interrupted = true;
                return Ok(outcome);
            }
            let target = plan.target(&step.below);
            if step.is_move {
                let Some(source) = plan.source_of(&step.below) else {
                    outcome.skipped += 1;
                    continue;
                };
                if let Err(why) = check_needs(&plan.v2, &step.needs) {
                    outcome
                        .failures
                        .push((target, format!("journal line {}: {why}", step.line)));
                    continue;
                }
                let (name, parent) = step.below.split_last().unwrap_or((&step.below[0], &[]));
                let moved = make_below(&plan.v2, parent)
                    .and_then(|dest| source.rename_noreplace(name, &dest, name));
                match moved {
                    Ok(()) => outcome.restored += 1,
                    Err(e) => outcome.failures.push((target, e.to_string())),
                }
            } else {
                // An empty directory under a tag or repository that is gone
                // would bring back a name without content: left out.
                if check_needs(&plan.v2, &step.needs).is_err() {
                    continue;
                }
                match make_below(&plan.v2, &step.below) {
                    Ok(_) => outcome.directories += 1,
                    Err(e) => outcome.failures.push((target, e.to_string())),
                }
            }
        }
        if outcome.failures.len() == failures_before {
            let _ = fs::remove_file(plan.batch.journal());
            remove_empty_tree(&plan.batch.dir);
            outcome.batches.push(plan.batch.header.batch.clone());
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
        let Some(entry) = present(entry)? else {
            continue;
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

/// A walked entry; `None` for one that went away while walking (already
/// gone is as good as removed).
fn present(entry: walkdir::Result<walkdir::DirEntry>) -> io::Result<Option<walkdir::DirEntry>> {
    match entry {
        Ok(entry) => Ok(Some(entry)),
        Err(e)
            if e.io_error()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) =>
        {
            Ok(None)
        }
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Files and bytes below `root`, counted as [`remove_tree`] counts what it
/// removes (a symbolic link is a file of its own length, never followed).
pub fn tree_size(root: &Path) -> io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in WalkDir::new(root).follow_links(false) {
        let Some(entry) = present(entry)? else {
            continue;
        };
        if !entry.file_type().is_dir() {
            files += 1;
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok((files, bytes))
}

/// A batch as `trash list` and `trash empty` show it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchListing {
    /// The batch's name (`regsweep restore DIR --batch NAME`).
    pub batch: String,
    /// When its run started (RFC 3339, UTC).
    pub started: String,
    /// The storage root it came from.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub storage_root: PathBuf,
    /// Moves its journal records.
    pub moves: u64,
    /// Files in the batch directory (what emptying it deletes), journal
    /// included; `None` if it could not be measured.
    pub files: Option<u64>,
    /// Bytes of those files.
    pub bytes: Option<u64>,
    /// The batch directory.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub path: PathBuf,
}

impl BatchListing {
    /// `batch`, not measured yet.
    fn of(batch: &BatchInfo) -> BatchListing {
        BatchListing {
            batch: batch.header.batch.clone(),
            started: batch.header.started.clone(),
            storage_root: batch.header.storage_root.clone(),
            moves: batch.moves() as u64,
            files: None,
            bytes: None,
            path: batch.dir.clone(),
        }
    }

    /// Counts its files and bytes; a batch that cannot be measured stays
    /// without a size and is reported in `problems`.
    fn measure(&mut self, problems: &mut Vec<(PathBuf, String)>) {
        match tree_size(&self.path) {
            Ok((files, bytes)) => (self.files, self.bytes) = (Some(files), Some(bytes)),
            Err(e) => problems.push((self.path.clone(), format!("cannot measure the batch: {e}"))),
        }
    }

    fn size(&self) -> String {
        self.bytes.map_or_else(|| "?".to_owned(), human_bytes)
    }
}

/// What `trash list` shows: the batches, newest first, with their sizes.
#[derive(Debug, Default, Serialize)]
pub struct Listing {
    /// The trash directory.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub dir: PathBuf,
    /// Every batch that can be read, newest first.
    pub batches: Vec<BatchListing>,
    /// Bytes of all of them.
    pub bytes: u64,
    /// Journals that cannot be read, bad journal lines, batches that could
    /// not be measured: the path and what is wrong.
    pub problems: Vec<(PathBuf, String)>,
}

/// Lists the batches of `trash`, measuring each. Reads only; takes no lock.
pub fn list(trash: &Path) -> Result<Listing> {
    let scan = scan(trash)?;
    let mut problems = scan.unreadable;
    let mut batches = Vec::new();
    for batch in &scan.batches {
        problems.extend(batch.problem_reports());
        let mut listing = BatchListing::of(batch);
        listing.measure(&mut problems);
        batches.push(listing);
    }
    Ok(Listing {
        dir: trash.to_path_buf(),
        bytes: batches.iter().filter_map(|b| b.bytes).sum(),
        batches,
        problems,
    })
}

impl Listing {
    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes one row per batch under a header, then the total.
    pub fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        if self.batches.is_empty() {
            return writeln!(out, "No batches in {}.", self.dir.display());
        }
        write_batches(out, &self.batches)?;
        writeln!(
            out,
            "{}, {} in all.",
            counted(self.batches.len() as u64, "batch", "batches"),
            human_bytes(self.bytes)
        )
    }
}

/// The batch table of `trash list` and of the question `trash empty` asks.
fn write_batches(out: &mut impl Write, batches: &[BatchListing]) -> io::Result<()> {
    let rows: Vec<[String; 5]> = batches
        .iter()
        .map(|b| {
            [
                b.batch.clone(),
                b.started.clone(),
                count(b.moves),
                b.size(),
                b.storage_root.display().to_string(),
            ]
        })
        .collect();
    let header = ["batch", "started", "moves", "size", "storage root"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
            row[0], row[1], row[2], row[3], row[4]
        )?;
    }
    Ok(())
}

/// What emptying the trash did (or, for a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct EmptyOutcome {
    /// Nothing was deleted: `deleted`, `files` and `bytes` say what would be.
    pub dry_run: bool,
    /// Batches deleted.
    pub deleted: Vec<String>,
    /// Batches kept (younger than `--older-than`).
    pub kept: Vec<String>,
    /// Files deleted.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Batch directories left alone (a journal that cannot be read) or not
    /// deleted whole: the path and why.
    pub problems: Vec<(PathBuf, String)>,
}

impl EmptyOutcome {
    /// Writes one line per batch deleted, then the totals.
    pub fn write_summary(&self, out: &mut impl Write, trash: &Path) -> io::Result<()> {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for name in &self.deleted {
            writeln!(out, "{verb} {}", trash.join(name).display())?;
        }
        let kept = if self.kept.is_empty() {
            String::new()
        } else {
            format!(
                "; kept {} (not older than --older-than)",
                counted(self.kept.len() as u64, "batch", "batches")
            )
        };
        let what = format!(
            "{}: {}, {}{kept}",
            counted(self.deleted.len() as u64, "batch", "batches"),
            counted(self.files, "file", "files"),
            human_bytes(self.bytes)
        );
        if self.dry_run {
            writeln!(out, "Dry run: nothing deleted. Would delete {what}.")
        } else {
            writeln!(out, "Deleted {what}.")
        }
    }
}

/// The batches `trash empty` is about to delete, chosen and measured under
/// the trash's lock (a dry run takes none: it changes nothing).
#[derive(Debug)]
pub struct EmptyPlan {
    trash: PathBuf,
    _lock: Option<Lock>,
    /// The batches to delete, newest first.
    pub batches: Vec<BatchListing>,
    /// Batches younger than `--older-than`.
    pub kept: Vec<String>,
    /// Journals that cannot be read (their batches stay), bad lines.
    pub problems: Vec<(PathBuf, String)>,
}

/// Chooses the batches of `trash` started more than `older_than` ago (all,
/// when zero), not measured yet. A batch whose journal cannot be read is
/// kept and reported.
pub fn plan_empty(trash: &Path, older_than: Age, dry_run: bool) -> Result<EmptyPlan> {
    let trash = fs::canonicalize(trash).map_err(|e| Error::io(trash, e))?;
    let lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(&trash, "trash empty")?)
    };
    let now = SystemTime::now();
    let scan = scan(&trash)?;
    let mut plan = EmptyPlan {
        trash,
        _lock: lock,
        batches: Vec::new(),
        kept: Vec::new(),
        problems: scan.unreadable,
    };
    for batch in scan.batches {
        let old_enough = older_than.is_zero()
            || batch
                .started()
                .is_some_and(|t| clock::age(now, t) > older_than.duration());
        if old_enough {
            plan.batches.push(BatchListing::of(&batch));
        } else {
            plan.kept.push(batch.header.batch);
        }
    }
    Ok(plan)
}

impl EmptyPlan {
    /// The trash directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.trash
    }

    /// Counts the files and bytes of each batch: what the question and a
    /// dry run show (a run that deletes counts as it goes).
    pub fn measure(&mut self) {
        for batch in self.batches.iter_mut().filter(|b| b.bytes.is_none()) {
            batch.measure(&mut self.problems);
        }
    }

    /// Writes the batches about to be deleted, with their sizes (see
    /// [`EmptyPlan::measure`]).
    pub fn write_plan(&self, out: &mut impl Write) -> io::Result<()> {
        write_batches(out, &self.batches)?;
        writeln!(
            out,
            "About to delete {} for good ({}); they cannot be restored afterwards.",
            counted(self.batches.len() as u64, "batch", "batches"),
            human_bytes(self.batches.iter().filter_map(|b| b.bytes).sum())
        )
    }

    /// What deleting would do, deleting nothing.
    pub fn dry_run(mut self) -> EmptyOutcome {
        self.measure();
        EmptyOutcome {
            dry_run: true,
            files: self.batches.iter().filter_map(|b| b.files).sum(),
            bytes: self.batches.iter().filter_map(|b| b.bytes).sum(),
            deleted: self.batches.into_iter().map(|b| b.batch).collect(),
            kept: self.kept,
            problems: self.problems,
        }
    }

    /// Deletes the batches for good, never following a symbolic link.
    pub fn run(self) -> EmptyOutcome {
        let mut outcome = EmptyOutcome {
            kept: self.kept,
            problems: self.problems,
            ..EmptyOutcome::default()
        };
        for batch in self.batches {
            match remove_tree(&batch.path) {
                Ok((files, bytes)) => {
                    outcome.files += files;
                    outcome.bytes += bytes;
                    outcome.deleted.push(batch.batch);
                }
                Err(e) => outcome
                    .problems
                    .push((batch.path, format!("not deleted whole: {e}"))),
            }
        }
        outcome
    }
}

/// Deletes the batches of `trash` started more than `older_than` ago. A
/// batch whose journal cannot be read is kept and reported; the others go
/// on.
pub fn empty(trash: &Path, older_than: Age) -> Result<EmptyOutcome> {
    Ok(plan_empty(trash, older_than, false)?.run())
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
        let header = test_header();
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
        assert_eq!(
            batch.entries,
            vec![JournalLine {
                line: 2,
                entry: moved
            }]
        );
        assert!(batch.problems.is_empty(), "{:?}", batch.problems);
    }

    fn test_header() -> Header {
        Header {
            regsweep_trash: 1,
            batch: "b".into(),
            storage_root: "/s".into(),
            started: "2024-05-01T12:00:00Z".into(),
            pid: 1,
            host: "h".into(),
        }
    }

    fn header_line() -> String {
        serde_json::to_string(&test_header()).unwrap()
    }

    fn moved(hex: &str) -> Entry {
        Entry::Move {
            kind: "blob".into(),
            path: format!("docker/registry/v2/blobs/sha256/{}/{hex}", &hex[..2]).into(),
        }
    }

    #[test]
    fn a_journal_torn_in_the_middle_keeps_every_whole_entry_and_names_the_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            moved(&"aa".repeat(32)),
            moved(&"bb".repeat(32)),
            moved(&"cc".repeat(32)),
        );
        let line = |e: &Entry| serde_json::to_string(e).unwrap();
        // Line 3: a write cut short by a full disk, then the next whole line
        // appended to it; line 4: garbage; line 5: far too long.
        let text = format!(
            "{}\n{}\n{{\"op\":\"move\",\"kind\":\"bl{}\n{{not json\n{}\n{}\n",
            header_line(),
            line(&a),
            line(&b),
            "x".repeat(MAX_JOURNAL_LINE + 10),
            line(&c)
        );
        fs::write(dir.path().join(JOURNAL), text).unwrap();
        let batch = read_batch(dir.path()).unwrap().unwrap();
        let entries: Vec<(usize, Entry)> = batch
            .entries
            .iter()
            .map(|e| (e.line, e.entry.clone()))
            .collect();
        assert_eq!(entries, vec![(2, a), (3, b), (6, c)]);
        let lines: Vec<usize> = batch.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5], "{:?}", batch.problems);
        assert!(batch.problems[0].message.contains("cut short"));
        assert!(batch.problems[1].message.contains("not a journal entry"));
        assert!(batch.problems[2].message.contains("longer than any entry"));
        assert!(
            batch.problems[1]
                .message
                .contains(&dir.path().display().to_string()),
            "says where what it recorded is"
        );
    }

    #[test]
    fn a_journal_that_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, format!("{}\n", header_line())).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(JOURNAL)).unwrap();
        let err = read_batch(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file: a symbolic link"), "{err}");
        assert!(err.starts_with(&dir.path().join(JOURNAL).display().to_string()));
    }

    #[test]
    fn journal_paths_must_be_plain_and_below_blobs_or_repositories() {
        let ok = journal_path(Path::new(
            "docker/registry/v2/repositories/a/b/_layers/sha256/ab",
        ))
        .unwrap();
        assert_eq!(ok[0], "repositories");
        for (path, why) in [
            ("/docker/registry/v2/blobs/sha256/ab", "absolute"),
            ("docker/registry/v2/repositories/../../../../etc", "`..`"),
            ("docker/registry/v2/./blobs/sha256", "`.`"),
            ("docker/registry/v2//blobs/sha256", "empty"),
            ("docker/registry/v2/blobs/sha256/", "empty"),
            ("docker/registry/v2/blobs", "not below"),
            ("docker/registry/v3/blobs/sha256", "not below"),
            ("etc/passwd", "not below"),
            ("docker/registry/v2/other/x", "not below"),
        ] {
            let err = journal_path(Path::new(path)).unwrap_err();
            assert!(err.contains(why), "{path}: {err}");
        }
    }

    #[test]
    fn what_a_restored_path_needs_comes_from_the_path() {
        let below = |p: &str| -> Vec<String> { p.split('/').map(str::to_owned).collect() };
        let repo = |n: &str| Needs::Repository(below(n));
        let tag = |n: &str, t: &str| Needs::Tag(below(n), t.into());
        for (path, is_move, needs) in [
            ("blobs/sha256/ab/abcd", true, Needs::Nothing),
            ("repositories/team", false, Needs::Nothing),
            ("repositories/team/app/_manifests", true, Needs::Nothing),
            ("repositories/team/app/_layers", false, Needs::Nothing),
            (
                "repositories/team/app/_layers/sha256/ab",
                true,
                repo("team/app"),
            ),
            (
                "repositories/r/_manifests/revisions/sha256/ab",
                true,
                repo("r"),
            ),
            ("repositories/r/_uploads/u", true, repo("r")),
            ("repositories/r/_manifests/tags/v1", true, repo("r")),
            ("repositories/r/_manifests/tags/v1", false, tag("r", "v1")),
            (
                "repositories/r/_manifests/tags/v1/index/sha256/ab",
                true,
                tag("r", "v1"),
            ),
            (
                "repositories/r/_manifests/tags/v1/index/sha256",
                false,
                tag("r", "v1"),
            ),
        ] {
            assert_eq!(needs_of(&below(path), is_move), Ok(needs), "{path}");
        }
        assert!(needs_of(&below("repositories/_layers/sha256"), true).is_err());
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
        let measured = tree_size(&tree).unwrap();
        let removed = remove_tree(&tree).unwrap();
        assert_eq!(measured, removed, "a dry run counts what emptying removes");
        assert_eq!(removed.0, 2);
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
    }
}

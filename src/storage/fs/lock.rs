//! The lock that keeps two regsweep runs off the same storage (or the same
//! trash directory) at once.
//!
//! The lock is the kernel's: an exclusive `flock(2)` on `<dir>/regsweep.lock`,
//! held for the whole run through one open file. It goes with the process,
//! however that ends (SIGKILL, a crash, a lost pod), so a leftover file
//! never blocks a later run, whatever host wrote it. The file's content (one
//! JSON line: pid, host, start time, command) only says who holds it, for
//! the "held by" message; failing to write it (a full disk) leaves the lock
//! held all the same.
//!
//! At the end of the run the file is removed while still locked. Another
//! process may have opened it just before and get the lock once it is
//! released, on a file no longer in the directory: so every acquisition
//! checks, once locked, that the name still leads to the file it locked,
//! and starts again if not.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{Error, Result};
use crate::storage::fs::dir::{not_regular, not_regular_kind};
use crate::warning::{Warning, WarningKind};

/// The lock file's name, in the storage root or the trash directory.
pub const LOCK_FILE: &str = "regsweep.lock";

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name (`uname -n`).
    pub host: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// What it runs: `gc`, `restore`, `trash empty`.
    pub command: String,
}

impl Holder {
    /// This process, now.
    pub fn this_process(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            started: clock::rfc3339(SystemTime::now()),
            command: command.to_owned(),
        }
    }

    /// Who, for messages.
    pub fn describe(&self) -> String {
        format!(
            "regsweep {} pid {} on {} since {}",
            self.command, self.pid, self.host, self.started
        )
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// A lock file holds one JSON line of a few hundred bytes; reading stops
/// past this, and a longer regular file by that name is not taken for a
/// lock (it would be truncated).
const MAX_LOCK_FILE: u64 = 4096;

/// Attempts at locking a lock file that another run removes or replaces
/// each time just after it was opened.
const ATTEMPTS: usize = 16;

/// What the lock file says of its holder: the holder, or why it says
/// nothing useful (empty, torn, not JSON).
fn holder_of(file: &mut File) -> Result<Holder, String> {
    let mut text = Vec::new();
    file.rewind().map_err(|e| e.to_string())?;
    file.take(MAX_LOCK_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_LOCK_FILE {
        return Err(format!(
            "longer than {MAX_LOCK_FILE} bytes: not a regsweep lock file"
        ));
    }
    if text.trim_ascii().is_empty() {
        return Err("it has not said who it is yet".into());
    }
    serde_json::from_slice(text.trim_ascii()).map_err(|e| format!("unreadable: {e}"))
}

/// Opens the lock file at `path` without following a symbolic link or
/// waiting on a FIFO, and checks that it is a regular file of at most
/// [`MAX_LOCK_FILE`] bytes. `None` when it does not exist (and `create` is
/// not set).
fn open(path: &Path, flags: OFlags, create: bool) -> io::Result<Option<File>> {
    let mut flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if create {
        flags |= OFlags::CREATE;
    }
    let fd = match rustix::fs::open(path, flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !create => return Ok(None),
        Err(Errno::LOOP) => return Err(not_regular("a symbolic link (not followed)")),
        Err(Errno::ISDIR) => return Err(not_regular("a directory")),
        Err(e) => return Err(e.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    match not_regular_kind(stat.st_mode) {
        Some(what) => Err(not_regular(what)),
        None if stat.st_size as u64 > MAX_LOCK_FILE => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_LOCK_FILE} bytes: not a regsweep lock file"),
        )),
        None => Ok(Some(fd.into())),
    }
}

/// Whether `path` still names the file open as `file`.
fn still_named(path: &Path, file: &File) -> bool {
    match (rustix::fs::lstat(path), rustix::fs::fstat(file)) {
        (Ok(named), Ok(open)) => named.st_dev == open.st_dev && named.st_ino == open.st_ino,
        _ => false,
    }
}

/// Tries to lock `file` without waiting: whether it is now locked.
fn try_flock(file: &File, exclusive: bool) -> io::Result<bool> {
    let operation = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    loop {
        match rustix::fs::flock(file.as_fd(), operation) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A warning when another process holds the lock of `dir`: what `reading`
/// (a dry run, a check) reads may be changing under it. Creates nothing and
/// writes nothing (read-only storage): it opens an existing lock file for
/// reading and tries a shared lock, released at once. A name that is not a
/// regular file is warned of too: a real run would refuse it.
pub fn held_warning(dir: &Path, reading: &str) -> Option<Warning> {
    let path = dir.join(LOCK_FILE);
    let who = match open(&path, OFlags::RDONLY, false) {
        Ok(None) => return None,
        Ok(Some(mut file)) => match try_flock(&file, false) {
            Ok(true) => return None,
            Ok(false) => match holder_of(&mut file) {
                Ok(h) => format!(
                    "pid {} on {} since {} ({})",
                    h.pid, h.host, h.started, h.command
                ),
                Err(e) => format!("a process that does not say who it is: {e}"),
            },
            // Nothing that can be locked here: no run can hold it either.
            Err(_) => return None,
        },
        Err(e) => format!("unreadable: {e}"),
    };
    Some(Warning::new(
        WarningKind::LockHeld,
        path,
        None,
        format!(
            "another regsweep run holds the lock ({who}); the storage may be changing under this {reading}"
        ),
    ))
}

/// A held lock: released when dropped (the file is removed first).
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    file: File,
    taken: Option<SystemTime>,
    note: Option<String>,
}

impl Lock {
    /// Takes the lock of `dir` for `command` without waiting, or says who
    /// holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Lock> {
        let path = dir.join(LOCK_FILE);
        let refuse = |reason: String| Error::Lock {
            path: path.clone(),
            reason,
        };
        for _ in 0..ATTEMPTS {
            let mut file = match open(&path, OFlags::RDWR, true) {
                Ok(Some(file)) => file,
                Ok(None) => continue,
                // A leftover file of another user: lockable for reading,
                // then replaced by one of ours.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    take_over_foreign(&path, e)?;
                    continue;
                }
                Err(e) => return Err(refuse(refusal(&path, &e))),
            };
            if !try_flock(&file, true).map_err(|e| refuse(lock_failed(&e)))? {
                return Err(held(&path, &mut file));
            }
            if !still_named(&path, &file) {
                // Removed (or replaced) by the run that held it: what is
                // locked now is no longer the lock.
                continue;
            }
            return Ok(Lock::taken(path, file, command));
        }
        Err(refuse(format!(
            "the lock file was replaced {ATTEMPTS} times while being locked; try again"
        )))
    }

    /// Records who holds the lock and when it was taken, on the storage's
    /// clock. Neither is needed to hold it: a failure is only noted.
    fn taken(path: PathBuf, mut file: File, command: &str) -> Lock {
        let mut line = serde_json::to_string(&Holder::this_process(command)).unwrap_or_default();
        line.push('\n');
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(line.as_bytes()));
        let mut note = None;
        if let Err(e) = written {
            // Half a line would only say less than nothing.
            let _ = file.set_len(0);
            note = Some(format!(
                "{}: cannot record who holds the lock ({e}); it is held all the same",
                path.display()
            ));
        }
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        let taken = rustix::fs::futimens(&file, &now)
            .ok()
            .and_then(|()| file.metadata().ok())
            .and_then(|m| m.modified().ok());
        Lock {
            path,
            file,
            taken,
            note,
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the lock was taken, as the storage's clock tells it (the lock
    /// file's modification time, set then); `None` if it could not be set.
    pub fn taken_at(&self) -> Option<SystemTime> {
        self.taken
    }

    /// Something the operator should know (the holder could not be
    /// recorded), if anything.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// A lock file this user cannot open for writing: another process holds
/// it (refused), or it is a leftover, locked here for reading while it is
/// removed, so that the next attempt creates one of this user's.
fn take_over_foreign(path: &Path, denied: io::Error) -> Result<()> {
    let refuse = |reason: String| Error::Lock {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = match open(path, OFlags::RDONLY, false) {
        Ok(Some(file)) => file,
        Ok(None) => return Err(refuse(format!("cannot create the lock file: {denied}"))),
        Err(e) => return Err(refuse(refusal(path, &e))),
    };
    let cannot = |e: &dyn std::fmt::Display| {
        refuse(format!(
            "cannot open the lock file for writing ({denied}), nor take it over ({e}); if no regsweep runs on this directory, remove it: rm -- '{}'",
            path.display()
        ))
    };
    match try_flock(&file, true) {
        Ok(true) => {}
        Ok(false) => return Err(held(path, &mut file)),
        Err(e) => return Err(cannot(&e)),
    }
    if still_named(path, &file) {
        std::fs::remove_file(path).map_err(|e| cannot(&e))?;
    }
    Ok(())
}

/// Why a lock file cannot be opened.
fn refusal(path: &Path, e: &io::Error) -> String {
    let clear = format!("rm -- '{}'", path.display());
    match e.kind() {
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => format!(
            "{e}; regsweep's lock is a small regular file it creates itself: if nothing else uses this name, remove it with: {clear}"
        ),
        _ => format!("cannot create or open the lock file: {e}"),
    }
}

/// Why a lock file that opened cannot be locked.
fn lock_failed(e: &io::Error) -> String {
    format!(
        "cannot lock the lock file: {e} (on NFS, locks need the lock service: NFSv4, or lockd for NFSv3 without the `nolock` mount option)"
    )
}

/// The error for a lock another process holds.
fn held(path: &Path, file: &mut File) -> Error {
    let reason = match holder_of(file) {
        Ok(holder) => format!(
            "another run holds the lock: {}; wait for it to finish",
            holder.describe()
        ),
        Err(e) => format!(
            "another process holds the lock ({e}); wait for it to finish (`fuser -v '{}'` names it)",
            path.display()
        ),
    };
    Error::LockHeld {
        path: path.to_path_buf(),
        reason,
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, and only if the name is still this
        // file; the lock itself goes when the file is closed.
        if still_named(&self.path, &self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_second_acquire_fails_and_drop_releases_and_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Lock::acquire(dir.path(), "gc").unwrap();
        let text = fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        let holder: Holder = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "gc");
        assert!(lock.taken_at().is_some() && lock.note().is_none());
        let err = Lock::acquire(dir.path(), "gc").unwrap_err();
        assert!(matches!(err, Error::LockHeld { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("another run holds the lock"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(
            !err.contains("rm --"),
            "a held lock is never to be removed: {err}"
        );
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
        Lock::acquire(dir.path(), "gc").unwrap();
    }

    #[test]
    fn a_leftover_lock_file_that_no_process_holds_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let gone = Holder {
            pid: i32::MAX as u32,
            host: "cronjob-pod-that-is-gone".into(),
            started: "2024-05-01T12:00:00Z".into(),
            command: "gc".into(),
        };
        for content in [
            serde_json::to_string(&gone).unwrap(),
            String::new(),
            "{\"pid\":12".into(),
        ] {
            fs::write(&path, &content).unwrap();
            let lock = Lock::acquire(dir.path(), "restore").unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.contains("\"restore\""), "{content:?} -> {text}");
            assert!(held_warning(dir.path(), "dry run").is_some());
            drop(lock);
            assert!(held_warning(dir.path(), "dry run").is_none());
        }
    }

    #[test]
    fn a_lock_whose_file_was_replaced_after_opening_is_not_taken() {
        // The first holder removes the file while another process had it
        // open: locking that file must not count.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let first = Lock::acquire(dir.path(), "gc").unwrap();
        let opened_early = open(&path, OFlags::RDWR, true).unwrap().unwrap();
        drop(first);
        assert!(try_flock(&opened_early, true).unwrap());
        assert!(!still_named(&path, &opened_early));
        let second = Lock::acquire(dir.path(), "gc").unwrap();
        assert!(still_named(&path, &second.file));
    }

    #[test]
    fn held_warning_names_the_holder_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(held_warning(dir.path(), "dry run").is_none());
        assert!(!dir.path().join(LOCK_FILE).exists());
        let lock = Lock::acquire(dir.path(), "gc").unwrap();
        let warning = held_warning(dir.path(), "dry run").unwrap();
        assert_eq!(warning.kind, WarningKind::LockHeld);
        assert_eq!(warning.path, dir.path().join(LOCK_FILE));
        let pid = format!("pid {}", std::process::id());
        assert!(warning.message.contains(&pid), "{}", warning.message);
        assert!(
            warning.message.ends_with("under this dry run"),
            "{}",
            warning.message
        );
        // A holder that could not say who it is (a full disk).
        lock.file.set_len(0).unwrap();
        let warning = held_warning(dir.path(), "check").unwrap();
        assert!(
            warning.message.contains("does not say who it is"),
            "{}",
            warning.message
        );
        let err = Lock::acquire(dir.path(), "gc").unwrap_err().to_string();
        assert!(err.contains("another process holds the lock"), "{err}");
    }

    #[test]
    fn a_lock_path_that_is_not_a_regular_file_is_refused_without_reading_it() {
        // FIFOs and devices are in tests/outside_root.rs, where a regression
        // times out instead of hanging or filling memory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let elsewhere = dir.path().join("elsewhere");
        fs::write(
            &elsewhere,
            serde_json::to_string(&Holder::this_process("gc")).unwrap(),
        )
        .unwrap();
        for target in [elsewhere.as_path(), dir.path()] {
            std::os::unix::fs::symlink(target, &path).unwrap();
            let err = Lock::acquire(dir.path(), "gc").unwrap_err();
            assert!(matches!(err, Error::Lock { .. }), "{err}");
            let err = err.to_string();
            assert!(err.starts_with(&path.display().to_string()), "{err}");
            assert!(
                err.contains("not a regular file: a symbolic link") && err.contains("rm -- "),
                "{err}"
            );
            let warning = held_warning(dir.path(), "dry run").unwrap();
            assert!(
                warning.message.contains("symbolic link"),
                "{}",
                warning.message
            );
            fs::remove_file(&path).unwrap();
        }
        fs::create_dir(&path).unwrap();
        let err = Lock::acquire(dir.path(), "gc").unwrap_err().to_string();
        assert!(err.contains("not a regular file: a directory"), "{err}");
        fs::remove_dir(&path).unwrap();
        fs::write(&path, vec![b' '; 1 << 20]).unwrap();
        let err = Lock::acquire(dir.path(), "gc").unwrap_err().to_string();
        assert!(err.contains("longer than 4096 bytes"), "{err}");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            1 << 20,
            "left as it was"
        );
    }
}

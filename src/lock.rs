//! The lock file that keeps two regsweep runs off the same storage (or the
//! same trash directory) at once.
//!
//! `<dir>/regsweep.lock` is created with `O_EXCL` and holds one JSON line:
//! pid, host, start time and command. It is removed when the [`Lock`] is
//! dropped: at the end of the run, on an error, and on unwinding. A lock
//! whose process is gone (same host, no such pid) is *stale*: regsweep does
//! not take it over, it says so and prints the command that clears it, since
//! a stale lock means an earlier run was killed and the operator should know.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{Error, Result};
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

    /// Whether the holder is a process of this host that no longer exists.
    pub fn is_stale(&self) -> bool {
        self.host == host_name() && !process_exists(self.pid)
    }

    fn describe(&self) -> String {
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

/// Whether a process with `pid` exists on this host (signal 0; a process of
/// another user answers "not permitted", which means it exists).
pub fn process_exists(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// A lock file holds one JSON line of a few hundred bytes; reading stops
/// past this.
const MAX_LOCK_FILE: u64 = 4096;

/// What a lock file says, if there is one in `dir`. Only a regular file is
/// read, and only its first [`MAX_LOCK_FILE`] bytes: the name may be a FIFO
/// (which would block), or a link to `/dev/zero` (which never ends).
pub fn read(dir: &Path) -> Option<(PathBuf, Result<Holder, String>)> {
    let path = dir.join(LOCK_FILE);
    match read_bounded(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some((path, Err(e.to_string()))),
        Ok(text) => {
            let holder = serde_json::from_slice(text.trim_ascii()).map_err(|e| e.to_string());
            Some((path, holder))
        }
    }
}

/// The lock file at `path`, if it is a regular file of at most
/// [`MAX_LOCK_FILE`] bytes.
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let file = crate::fs_at::open_regular(path)?;
    let mut text = Vec::new();
    file.take(MAX_LOCK_FILE + 1).read_to_end(&mut text)?;
    if text.len() as u64 > MAX_LOCK_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {MAX_LOCK_FILE} bytes: not a regsweep lock file"),
        ));
    }
    Ok(text)
}

/// A warning when a lock file in `dir` says another run holds the storage:
/// what `reading` (a dry run, a check) reads may be changing under it.
pub fn held_warning(dir: &Path, reading: &str) -> Option<Warning> {
    let (path, holder) = read(dir)?;
    let who = match holder {
        Ok(h) => format!(
            "pid {} on {} since {} ({})",
            h.pid, h.host, h.started, h.command
        ),
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

/// A held lock; dropping it removes the file.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    holder: Holder,
}

impl Lock {
    /// Takes the lock of `dir` for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Lock> {
        let path = dir.join(LOCK_FILE);
        let holder = Holder::this_process(command);
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path);
        match created {
            Ok(mut file) => {
                let mut line = serde_json::to_string(&holder).unwrap_or_default();
                line.push('\n');
                let written = file
                    .write_all(line.as_bytes())
                    .and_then(|()| file.sync_all());
                let lock = Lock { path, holder };
                written.map_err(|e| Error::io(&lock.path, e))?;
                Ok(lock)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(held(&path)),
            Err(e) => Err(Error::Lock {
                path,
                reason: format!("cannot create the lock file: {e}"),
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The error for a lock file that already exists.
fn held(path: &Path) -> Error {
    let clear = format!("rm -- '{}'", path.display());
    let dir = path.parent().unwrap_or(path);
    let reason = match read(dir) {
        None => "the lock file vanished while being read; try again".to_owned(),
        Some((_, Err(e))) if is_not_regular(path) => format!(
            "{e}; regsweep's lock is a regular file it creates itself: if nothing else uses this name, remove it with: {clear}"
        ),
        Some((_, Err(e))) => format!(
            "the lock file cannot be read ({e}); if no regsweep runs on this directory, clear it with: {clear}"
        ),
        Some((_, Ok(holder))) if holder.is_stale() => format!(
            "stale lock: {} is no longer running (killed?); if no regsweep runs on this directory, clear it with: {clear}",
            holder.describe()
        ),
        Some((_, Ok(holder))) => format!(
            "another run holds the lock: {}; wait for it to finish (if that process is not regsweep, clear the lock with: {clear})",
            holder.describe()
        ),
    };
    Error::Lock {
        path: path.to_path_buf(),
        reason,
    }
}

/// Whether `path` exists and is something other than a regular file.
fn is_not_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| !m.is_file())
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Remove only a lock that is still ours.
        let ours = read_bounded(&self.path)
            .ok()
            .and_then(|t| serde_json::from_slice::<Holder>(t.trim_ascii()).ok())
            .is_some_and(|h| h == self.holder);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquire_fails_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let lock = Lock::acquire(dir.path(), "gc").unwrap();
        let holder = read(dir.path()).unwrap().1.unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "gc");
        let err = Lock::acquire(dir.path(), "gc").unwrap_err().to_string();
        assert!(err.contains("another run holds the lock"), "{err}");
        drop(lock);
        assert!(read(dir.path()).is_none());
        Lock::acquire(dir.path(), "gc").unwrap();
    }

    #[test]
    fn a_stale_lock_names_the_command_that_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut dead = Holder::this_process("gc");
        dead.pid = i32::MAX as u32; // above pid_max: no such process
        fs::write(
            dir.path().join(LOCK_FILE),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let err = Lock::acquire(dir.path(), "gc").unwrap_err().to_string();
        let path = dir.path().join(LOCK_FILE);
        assert!(err.contains("stale lock"), "{err}");
        assert!(
            err.contains(&format!("rm -- '{}'", path.display())),
            "{err}"
        );
        assert!(path.exists(), "a stale lock is reported, not taken over");
    }

    #[test]
    fn held_warning_names_the_lock_file_its_holder_and_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(held_warning(dir.path(), "dry run").is_none());
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
        drop(lock);
        fs::write(dir.path().join(LOCK_FILE), "not json").unwrap();
        let warning = held_warning(dir.path(), "check").unwrap();
        assert!(
            warning.message.contains("unreadable"),
            "{}",
            warning.message
        );
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
    }

    #[test]
    fn process_exists_for_this_process_only() {
        assert!(process_exists(std::process::id()));
        assert!(!process_exists(i32::MAX as u32));
        assert!(!process_exists(0));
    }
}

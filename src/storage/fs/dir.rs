//! Filesystem access relative to open directories.
//!
//! The index opens each directory once and reaches what is inside it with
//! `openat`/`statat` on short relative names: the kernel does not walk the
//! whole path from the root for each of millions of files, and every
//! component below the storage root is opened with `O_NOFOLLOW`, so no
//! symbolic link is ever followed on the way down.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// What a directory entry is, without following symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (socket, device, fifo).
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        match file_type {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// A directory entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name.
    pub name: OsString,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// The name, if it is UTF-8 (every name the registry writes is).
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

impl Dir {
    /// Opens `path`, following symbolic links: this is where the operator
    /// pointed regsweep, and the only place a link is followed.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty())?;
        Ok(Dir { fd })
    }

    /// Opens the subdirectory `name`, never through a symbolic link.
    /// `Ok(None)` when it does not exist.
    pub fn open_dir(&self, name: impl AsRef<Path>) -> io::Result<Option<Dir>> {
        match rustix::fs::openat(
            &self.fd,
            name.as_ref(),
            DIR_FLAGS | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(Dir { fd })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every entry but `.` and `..`. Reads the directory through this
    /// handle's own descriptor (no duplicate descriptor), so it is meant to
    /// be called once per handle.
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
        let mut reader = rustix::fs::RawDir::new(&self.fd, &mut buf);
        let mut entries = Vec::new();
        while let Some(entry) = reader.next() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    // Filesystems without d_type: ask, still without following.
                    let stat =
                        rustix::fs::statat(&self.fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)?;
                    Kind::of(FileType::from_raw_mode(stat.st_mode))
                }
                file_type => Kind::of(file_type),
            };
            entries.push(Entry {
                name: OsString::from_vec(name.to_vec()),
                kind,
            });
        }
        Ok(entries)
    }

    /// `lstat` of `name` (which may have several components) below this
    /// directory: kind and size. `Ok(None)` when it does not exist.
    pub fn stat(&self, name: impl AsRef<Path>) -> io::Result<Option<(Kind, u64)>> {
        match rustix::fs::statat(&self.fd, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some((
                Kind::of(FileType::from_raw_mode(stat.st_mode)),
                stat.st_size as u64,
            ))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The modification time of `name` (which may have several components)
    /// below this directory, without following a symbolic link at the last
    /// component. `Ok(None)` when it does not exist.
    pub fn modified(&self, name: impl AsRef<Path>) -> io::Result<Option<SystemTime>> {
        match rustix::fs::statat(&self.fd, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(mtime(&stat)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The mtime of this directory itself (`fstat`, no name to look up).
    pub fn modified_self(&self) -> io::Result<SystemTime> {
        let stat = rustix::fs::fstat(&self.fd)?;
        mtime(&stat).ok_or_else(|| io::Error::other("mtime out of range"))
    }

    /// Reads at most `buf.len()` bytes of the file `name` below this
    /// directory into `buf`, without following a symbolic link at the last
    /// component. Returns the byte count, `Ok(None)` when it does not exist.
    /// A read that fills `buf` means the file may be longer.
    pub fn read_small(&self, name: impl AsRef<Path>, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let fd = match self.open_read(name.as_ref()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        fill(&fd, buf).map(Some)
    }

    /// Reads the whole file `name` below this directory, up to `limit`
    /// bytes plus one (so the caller sees it was longer), never through a
    /// symbolic link at the last component. With the right `size_hint`, one
    /// `read`: a short read of a regular file is its end.
    pub fn read_to_end(
        &self,
        name: impl AsRef<Path>,
        size_hint: usize,
        limit: u64,
    ) -> io::Result<Vec<u8>> {
        let fd = self.open_read(name.as_ref())?;
        let cap = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
        let mut bytes = vec![0u8; size_hint.saturating_add(1).min(cap)];
        let mut len = fill(&fd, &mut bytes)?;
        // A full buffer means the file may be longer.
        while len == bytes.len() && len < cap {
            bytes.resize(len.saturating_mul(2).max(4096).min(cap), 0);
            len += fill(&fd, &mut bytes[len..])?;
        }
        bytes.truncate(len);
        Ok(bytes)
    }

    /// Opens the file `name` below this directory for reading, never
    /// through a symbolic link at the last component, and without waiting
    /// on a FIFO (see `open_read`). `Ok(None)` when it does not exist; the caller checks what
    /// it opened (`File::metadata`) before trusting it is a regular file.
    pub fn open_file(&self, name: impl AsRef<Path>) -> io::Result<Option<std::fs::File>> {
        match self.open_read(name.as_ref()) {
            Ok(fd) => Ok(Some(fd.into())),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `name` for reading: never through a symbolic link at the last
    /// component, and without blocking if it is a FIFO (opening one for
    /// reading would otherwise wait for a writer; reading it then finds no
    /// data). `O_NONBLOCK` changes nothing for regular files.
    fn open_read(&self, name: &Path) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
    }

    /// Removes the file (or symbolic link itself) `name`: `unlinkat(2)`,
    /// which never follows a link in its last component.
    pub fn remove_file(&self, name: impl AsRef<Path>) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name.as_ref(), AtFlags::empty()).map_err(Into::into)
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: impl AsRef<Path>) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name.as_ref(), AtFlags::REMOVEDIR).map_err(Into::into)
    }

    /// Creates the directory `name` (mode 0777 less the umask, as
    /// `mkdir(1)`).
    pub fn create_dir(&self, name: impl AsRef<Path>) -> io::Result<()> {
        rustix::fs::mkdirat(&self.fd, name.as_ref(), Mode::from_raw_mode(0o777)).map_err(Into::into)
    }

    /// Renames `name` to `to_name` in `to`, never replacing anything there
    /// (`RENAME_NOREPLACE`; on a filesystem without it, a check then a
    /// rename). Neither name is followed if it is a symbolic link.
    pub fn rename_noreplace(&self, name: &str, to: &Dir, to_name: &str) -> io::Result<()> {
        use rustix::fs::{RenameFlags, renameat, renameat_with};
        match renameat_with(&self.fd, name, &to.fd, to_name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                if to.stat(to_name)?.is_some() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                renameat(&self.fd, name, &to.fd, to_name).map_err(Into::into)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the file at `path` for reading only if it is a regular file: never
/// through a symbolic link at its last component, and without waiting on a
/// FIFO (`O_NONBLOCK`), then checked with `fstat`. A link, a FIFO or a device
/// is an `InvalidInput` error saying what it is.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(not_regular("a symbolic link (not followed)")),
        Err(e) => return Err(e.into()),
    };
    match not_regular_kind(rustix::fs::fstat(&fd)?.st_mode) {
        None => Ok(fd.into()),
        Some(what) => Err(not_regular(what)),
    }
}

/// What a file of mode `st_mode` is when it is not a regular file (`None`
/// for a regular file), in words for an error.
pub(crate) fn not_regular_kind(st_mode: rustix::fs::RawMode) -> Option<&'static str> {
    Some(match FileType::from_raw_mode(st_mode) {
        FileType::RegularFile => return None,
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        _ => "not a file",
    })
}

/// The error for a path that is not a regular file: `what` it is.
pub(crate) fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file: {what}"),
    )
}

/// Reads from `fd` into `buf` until it is full or the file ends; returns the
/// byte count. A short read of a regular file is its end: this saves the
/// zero-length read, one syscall in four per link.
fn fill(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if len < buf.len() {
                    break;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(len)
}

/// The mtime in `stat`; `None` if it does not fit a `SystemTime`.
// `st_mtime` and `st_mtime_nsec` have different types across targets.
#[allow(clippy::unnecessary_cast)]
fn mtime(stat: &rustix::fs::Stat) -> Option<SystemTime> {
    let nanos = Duration::from_nanos(stat.st_mtime_nsec as u64);
    let secs = stat.st_mtime as i64;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64) + nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(nanos))
    }
}

/// Whether an error from an `O_NOFOLLOW` open means "this is a symbolic link".
pub fn is_symlink_error(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
        || error.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn read_to_end_reads_whole_files_whatever_the_hint_and_stops_past_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let dir = Dir::open(root.path()).unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for len in [0, 1, 4095, 4096, 4097, 10_000] {
            fs::write(root.path().join("f"), &content[..len]).unwrap();
            for hint in [0, len / 2, len, len + 7, 20_000] {
                let read = dir.read_to_end("f", hint, 1 << 20).unwrap();
                assert_eq!(read, &content[..len], "len {len}, hint {hint}");
            }
            // Over the limit: limit + 1 bytes, so the caller sees it.
            if len > 100 {
                assert_eq!(dir.read_to_end("f", len, 100).unwrap().len(), 101);
                assert_eq!(dir.read_to_end("f", 0, 100).unwrap().len(), 101);
            }
        }
    }

    #[test]
    fn open_dir_refuses_symbolic_links() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("link")).unwrap();
        let dir = Dir::open(root.path()).unwrap();
        assert!(dir.open_dir("real").unwrap().is_some());
        assert!(dir.open_dir("absent").unwrap().is_none());
        let err = dir.open_dir("link").unwrap_err();
        assert!(is_symlink_error(&err), "{err}");
    }

    #[test]
    fn entries_report_kinds_without_following() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("/", root.path().join("s")).unwrap();
        let mut entries: Vec<(String, Kind)> = Dir::open(root.path())
            .unwrap()
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name_str().unwrap().to_owned(), e.kind))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            entries,
            vec![
                ("d".into(), Kind::Dir),
                ("f".into(), Kind::File),
                ("s".into(), Kind::Symlink)
            ]
        );
    }

    #[test]
    fn read_small_and_stat_work_below_the_directory_without_following() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("d")).unwrap();
        fs::write(root.path().join("d/link"), b"hello").unwrap();
        std::os::unix::fs::symlink(root.path().join("d/link"), root.path().join("d/alias"))
            .unwrap();
        let dir = Dir::open(root.path()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(dir.read_small("d/link", &mut buf).unwrap(), Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(dir.read_small("d/absent", &mut buf).unwrap(), None);
        assert!(is_symlink_error(
            &dir.read_small("d/alias", &mut buf).unwrap_err()
        ));
        assert_eq!(dir.stat("d/link").unwrap(), Some((Kind::File, 5)));
        assert_eq!(
            dir.stat("d/alias").unwrap().map(|s| s.0),
            Some(Kind::Symlink)
        );
        assert_eq!(dir.stat("d/absent").unwrap(), None);
    }
}

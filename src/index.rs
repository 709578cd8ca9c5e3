//! The index: one parallel read of the storage tree into repositories, tags,
//! manifest revisions, layer links, blobs and uploads.
//!
//! The walk trusts directory entry types (no `stat` per directory) and never
//! descends into a symbolic link. Digests come from path names, which the
//! registry treats as authoritative; link files are read only to report the
//! ones that disagree. A directory that cannot be listed stops the run
//! ([`Error::IncompleteIndex`]): a sweep based on a half-read tree could delete
//! blobs the unread part references. A bad file is a [`Warning`] instead.

use std::ffi::OsString;
use std::fs::{self, FileType};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use walkdir::WalkDir;

use crate::digest::{Digest, DigestSet, SHA256};
use crate::error::{Error, Result};
use crate::layout::{self, Layout, names};
use crate::progress::Task;
use crate::warning::{Warning, WarningKind};

/// A blob in `blobs/sha256/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    /// Its digest, from the path.
    pub digest: Digest,
    size: u64,
}

impl Blob {
    const NO_DATA: u64 = u64::MAX;

    /// A blob whose `data` file has `size` bytes, or none when `size` is `None`.
    pub fn new(digest: Digest, size: Option<u64>) -> Blob {
        Blob {
            digest,
            size: size.unwrap_or(Blob::NO_DATA),
        }
    }

    /// Size of the `data` file; `None` when the blob directory has no data
    /// (an interrupted write or delete).
    pub fn data_size(&self) -> Option<u64> {
        (self.size != Blob::NO_DATA).then_some(self.size)
    }

    /// Size in bytes, counting a blob without data as empty.
    pub fn bytes(&self) -> u64 {
        self.data_size().unwrap_or(0)
    }
}

/// A manifest revision directory of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The manifest digest, from the path.
    pub digest: Digest,
    /// Whether the revision `link` exists. Deleting a manifest through the
    /// API removes the link and can leave the empty directory behind.
    pub linked: bool,
    /// Schema1 signature blobs linked under `signatures/` (registries <= 2.4).
    pub signatures: Vec<Digest>,
}

/// A tag of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag name (a directory name).
    pub name: String,
    /// What `current/link` points at, or `None` when it is missing or invalid.
    pub current: Option<Digest>,
    /// Every digest in the tag's history index, sorted.
    pub history: Vec<Digest>,
}

/// A repository: a directory under `repositories/` with `_manifests` or `_layers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repository {
    /// The name, `/`-separated.
    pub name: String,
    /// Blobs linked into the repository (`_layers/sha256/`), sorted.
    pub layer_links: Vec<Digest>,
    /// Manifest revisions, sorted by digest.
    pub revisions: Vec<Revision>,
    /// Tags, sorted by name.
    pub tags: Vec<Tag>,
    /// Entries under `_uploads/`.
    pub uploads: usize,
    /// The repository holds something regsweep cannot follow (a manifest
    /// revision under another digest algorithm): nothing in it is deleted.
    pub opaque: bool,
}

/// The storage tree, as read.
#[derive(Debug, Default)]
pub struct Index {
    /// Blobs, sorted by digest.
    pub blobs: Vec<Blob>,
    /// Repositories, sorted by name.
    pub repositories: Vec<Repository>,
    /// Blobs that must be kept whatever marking says: odd entries, targets of
    /// links under other digest algorithms.
    pub protected: DigestSet,
    /// Damage and oddities found while reading.
    pub warnings: Vec<Warning>,
    /// Number of files looked at (link files, blob data files).
    pub files: u64,
}

/// Position of a blob in [`Index::blobs`]: four bytes instead of a 32-byte
/// digest wherever a reference to a stored blob is kept.
pub type BlobId = u32;

impl Index {
    /// The position of the blob with `digest`, if it is in storage.
    pub fn blob_id(&self, digest: &Digest) -> Option<BlobId> {
        self.blobs
            .binary_search_by(|b| b.digest.cmp(digest))
            .ok()
            .map(|i| i as BlobId)
    }

    /// The blob with `digest`, if it is in storage.
    pub fn blob(&self, digest: &Digest) -> Option<&Blob> {
        self.blob_id(digest).map(|i| &self.blobs[i as usize])
    }
}

/// Reads the whole tree under `layout`. Runs on the current rayon pool.
pub fn build(layout: &Layout, progress: &Task) -> Result<Index> {
    let files = AtomicU64::new(0);
    let ctx = Ctx {
        layout,
        files: &files,
        progress,
    };
    let (blobs, repositories) = rayon::join(|| ctx.blobs(), || ctx.repositories());
    let (blobs, mut blob_warnings, mut protected) = blobs?;
    let (repositories, repo_warnings, repo_protected) = repositories?;
    protected.extend(repo_protected);
    blob_warnings.extend(repo_warnings);
    Ok(Index {
        blobs,
        repositories,
        protected,
        warnings: blob_warnings,
        files: files.into_inner(),
    })
}

/// A directory entry: name and type, as read from the directory itself.
struct Entry {
    name: OsString,
    file_type: FileType,
}

/// Lists `dir`. A directory that does not exist is empty (it may simply not
/// have been created yet); any other failure makes the index incomplete.
fn list(dir: &Path) -> Result<Vec<Entry>> {
    let incomplete = |source| Error::IncompleteIndex {
        path: dir.to_path_buf(),
        source,
    };
    let reader = match fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(incomplete(e)),
    };
    reader
        .map(|entry| {
            let entry = entry.map_err(incomplete)?;
            let file_type = entry.file_type().map_err(incomplete)?;
            Ok(Entry {
                name: entry.file_name(),
                file_type,
            })
        })
        .collect()
}

/// What a link file holds.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkContent {
    /// A valid `sha256:<hex>` digest.
    Digest(Digest),
    /// A valid digest of another algorithm (kept verbatim).
    OtherAlgorithm(String),
    /// No link file.
    Missing,
    /// Unreadable or not a digest; the reason.
    Invalid(String),
}

/// Link files hold 71 bytes; anything much longer is not a link.
const MAX_LINK_BYTES: usize = 256;

/// Reads a link file without following a symbolic link.
pub fn read_link(path: &Path) -> LinkContent {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return LinkContent::Missing,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return LinkContent::Invalid("is a symbolic link (not followed)".into());
        }
        Err(e) => return LinkContent::Invalid(e.to_string()),
    };
    let mut buf = [0u8; MAX_LINK_BYTES + 1];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(n) => {
                len += n;
                if len > MAX_LINK_BYTES {
                    return LinkContent::Invalid(format!("longer than {MAX_LINK_BYTES} bytes"));
                }
                // A short read of a regular file is its end: saves the
                // zero-length read per link, one syscall in four.
                if n == 0 || len < buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return LinkContent::Invalid(e.to_string()),
        }
    }
    parse_link(&buf[..len])
}

/// Parses link file content as strictly as the registry does.
pub fn parse_link(bytes: &[u8]) -> LinkContent {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return LinkContent::Invalid("not UTF-8".into());
    };
    if text.is_empty() {
        return LinkContent::Invalid("empty".into());
    }
    if let Some(digest) = Digest::parse(text) {
        return LinkContent::Digest(digest);
    }
    if text.trim_end() != text {
        return LinkContent::Invalid(format!("trailing whitespace after {:?}", text.trim_end()));
    }
    match text.split_once(':') {
        Some((alg, hex))
            if alg != SHA256
                && !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            LinkContent::OtherAlgorithm(text.to_owned())
        }
        _ => LinkContent::Invalid(format!("not a digest: {:?}", truncate(text, 80))),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn name_str(name: &OsString) -> Option<&str> {
    name.to_str()
}

/// What one repository's read produced.
#[derive(Default)]
struct RepoScan {
    repositories: Vec<Repository>,
    warnings: Vec<Warning>,
    protected: DigestSet,
}

impl RepoScan {
    fn merge(mut self, other: RepoScan) -> RepoScan {
        self.repositories.extend(other.repositories);
        self.warnings.extend(other.warnings);
        self.protected.extend(other.protected);
        self
    }
}

/// What a link under another digest algorithm means for the repository.
#[derive(Clone, Copy)]
enum Foreign {
    /// A blob link: keep the sha256 blob it names.
    ProtectTarget,
    /// A manifest: its references are unknown, keep the whole repository.
    KeepRepository,
}

struct Ctx<'a> {
    layout: &'a Layout,
    files: &'a AtomicU64,
    progress: &'a Task,
}

type BlobScan = (Vec<Blob>, Vec<Warning>, DigestSet);

impl Ctx<'_> {
    fn count_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
        self.progress.inc(n);
    }

    fn blobs(&self) -> Result<BlobScan> {
        let blobs_dir = self.layout.blobs_dir();
        let mut warnings = Vec::new();
        let mut shards = Vec::new();
        for entry in list(&blobs_dir)? {
            let path = blobs_dir.join(&entry.name);
            if name_str(&entry.name) == Some(SHA256) && entry.file_type.is_dir() {
                for shard in list(&path)? {
                    let shard_path = path.join(&shard.name);
                    let valid_name = name_str(&shard.name)
                        .is_some_and(|n| n.len() == 2 && Digest::from_hex(&n.repeat(32)).is_some());
                    if shard.file_type.is_dir() && valid_name {
                        shards.push((shard_path, shard.name));
                    } else {
                        warnings.push(self.odd_entry(&shard_path, &shard.file_type, None));
                    }
                }
            } else if entry.file_type.is_dir() {
                warnings.push(Warning::new(
                    WarningKind::UnsupportedDigest,
                    path,
                    None,
                    "blob storage for a digest algorithm other than sha256; kept",
                ));
            } else {
                warnings.push(self.odd_entry(&path, &entry.file_type, None));
            }
        }
        let per_shard: Vec<BlobScan> = shards
            .par_iter()
            .map(|(dir, name)| self.shard(dir, name))
            .collect::<Result<_>>()?;
        let mut blobs = Vec::new();
        let mut protected = DigestSet::default();
        for (shard_blobs, shard_warnings, shard_protected) in per_shard {
            blobs.extend(shard_blobs);
            warnings.extend(shard_warnings);
            protected.extend(shard_protected);
        }
        blobs.sort_unstable_by_key(|b| b.digest);
        Ok((blobs, warnings, protected))
    }

    fn shard(&self, dir: &Path, shard_name: &OsString) -> Result<BlobScan> {
        let shard_name = name_str(shard_name).unwrap_or_default();
        let mut blobs = Vec::new();
        let mut warnings = Vec::new();
        let mut protected = DigestSet::default();
        for entry in list(dir)? {
            let path = dir.join(&entry.name);
            let digest = name_str(&entry.name)
                .filter(|n| n.starts_with(shard_name))
                .and_then(Digest::from_hex);
            let Some(digest) = digest.filter(|_| entry.file_type.is_dir()) else {
                warnings.push(self.odd_entry(&path, &entry.file_type, None));
                continue;
            };
            let data = path.join(names::DATA);
            match fs::symlink_metadata(&data) {
                Ok(meta) if meta.file_type().is_file() => {
                    blobs.push(Blob::new(digest, Some(meta.len())));
                }
                Ok(meta) => {
                    protected.insert(digest);
                    blobs.push(Blob::new(digest, Some(0)));
                    warnings.push(self.odd_entry(&data, &meta.file_type(), None));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    blobs.push(Blob::new(digest, None));
                }
                Err(e) => {
                    protected.insert(digest);
                    blobs.push(Blob::new(digest, Some(0)));
                    warnings.push(Warning::new(
                        WarningKind::UnexpectedEntry,
                        &data,
                        None,
                        format!("cannot stat blob data ({e}); kept"),
                    ));
                }
            }
        }
        self.count_files(blobs.len() as u64);
        Ok((blobs, warnings, protected))
    }

    /// A warning for an entry the registry would not have written.
    fn odd_entry(&self, path: &Path, file_type: &FileType, repository: Option<&str>) -> Warning {
        if file_type.is_symlink() {
            Warning::new(
                WarningKind::Symlink,
                path,
                repository,
                "symbolic link in registry storage; not followed, kept",
            )
        } else {
            Warning::new(
                WarningKind::UnexpectedEntry,
                path,
                repository,
                "not part of the registry's storage layout; kept",
            )
        }
    }

    /// Finds every repository directory, then reads them in parallel.
    fn repositories(&self) -> Result<(Vec<Repository>, Vec<Warning>, DigestSet)> {
        let root = self.layout.repositories_dir();
        let mut found = Vec::new();
        let mut warnings = Vec::new();
        if root.exists() {
            let mut walk = WalkDir::new(&root).min_depth(1).into_iter();
            while let Some(entry) = walk.next() {
                let entry = entry.map_err(|e| {
                    let path = e.path().unwrap_or(&root).to_path_buf();
                    Error::IncompleteIndex {
                        path,
                        source: e
                            .into_io_error()
                            .unwrap_or_else(|| io::Error::other("filesystem loop")),
                    }
                })?;
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_symlink() {
                    let repo = self
                        .layout
                        .repository_name(entry.path().parent().unwrap_or(&root));
                    warnings.push(self.odd_entry(
                        entry.path(),
                        &entry.file_type(),
                        repo.as_deref(),
                    ));
                    continue;
                }
                if !entry.file_type().is_dir() {
                    continue;
                }
                if name.starts_with(names::METADATA_PREFIX) {
                    // Registry metadata, never a nested repository.
                    if name == names::MANIFESTS || name == names::LAYERS {
                        if let Some(parent) = entry.path().parent() {
                            found.push(parent.to_path_buf());
                        }
                    }
                    walk.skip_current_dir();
                }
            }
        }
        found.sort();
        found.dedup();
        let scan = found
            .par_iter()
            .map(|dir| self.repository(dir))
            .try_fold(RepoScan::default, |acc, scan| Ok(acc.merge(scan?)))
            .try_reduce(RepoScan::default, |a, b| Ok(a.merge(b)))?;
        let mut repositories = scan.repositories;
        repositories.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        warnings.extend(scan.warnings);
        Ok((repositories, warnings, scan.protected))
    }

    fn repository(&self, dir: &Path) -> Result<RepoScan> {
        let mut scan = RepoScan::default();
        let Some(name) = self.layout.repository_name(dir) else {
            scan.warnings.push(Warning::new(
                WarningKind::UnexpectedEntry,
                dir,
                None,
                "repository directory name is not UTF-8; kept, and its blobs with it",
            ));
            return Ok(scan);
        };
        let mut repo = Repository {
            name,
            ..Repository::default()
        };
        for entry in list(dir)? {
            if !entry.file_type.is_dir() {
                continue;
            }
            let path = dir.join(&entry.name);
            match name_str(&entry.name) {
                Some(names::LAYERS) => self.layers(&path, &mut repo, &mut scan)?,
                Some(names::MANIFESTS) => self.manifests(&path, &mut repo, &mut scan)?,
                Some(names::UPLOADS) => repo.uploads = list(&path)?.len(),
                _ => {}
            }
        }
        repo.layer_links.sort_unstable();
        repo.revisions.sort_unstable_by_key(|r| r.digest);
        repo.tags.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        scan.repositories.push(repo);
        Ok(scan)
    }

    /// Lists `<dir>/<alg>/` children: sha256 ones are returned, others are
    /// read and what they name protected.
    fn digest_dirs(
        &self,
        dir: &Path,
        foreign: Foreign,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) -> Result<Vec<(Digest, PathBuf)>> {
        let mut out = Vec::new();
        for alg in list(dir)? {
            let alg_path = dir.join(&alg.name);
            if !alg.file_type.is_dir() {
                scan.warnings
                    .push(self.odd_entry(&alg_path, &alg.file_type, Some(&repo.name)));
                continue;
            }
            let is_sha256 = name_str(&alg.name) == Some(SHA256);
            for entry in list(&alg_path)? {
                let path = alg_path.join(&entry.name);
                if !entry.file_type.is_dir() {
                    scan.warnings
                        .push(self.odd_entry(&path, &entry.file_type, Some(&repo.name)));
                    continue;
                }
                if is_sha256 {
                    match name_str(&entry.name).and_then(Digest::from_hex) {
                        Some(digest) => out.push((digest, path)),
                        None => scan.warnings.push(self.odd_entry(
                            &path,
                            &entry.file_type,
                            Some(&repo.name),
                        )),
                    }
                } else {
                    self.other_algorithm_link(&path, foreign, repo, scan);
                }
            }
        }
        Ok(out)
    }

    /// A link under a digest algorithm other than sha256. A blob link's
    /// target (a sha256 blob, when the registry wrote it) is protected; a
    /// manifest revision's references cannot be followed, so its repository
    /// is kept whole.
    fn other_algorithm_link(
        &self,
        dir: &Path,
        foreign: Foreign,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) {
        self.count_files(1);
        let target = read_link(&layout::link_file(dir));
        if let (Foreign::ProtectTarget, LinkContent::Digest(target)) = (foreign, target) {
            scan.protected.insert(target);
        } else {
            // Nothing regsweep can follow: keep the repository whole.
            repo.opaque = true;
            scan.warnings.push(Warning::new(
                WarningKind::UnsupportedDigest,
                dir,
                Some(&repo.name),
                "link under a digest algorithm regsweep does not follow; repository kept whole",
            ));
        }
    }

    fn check_link(&self, dir: &Path, digest: &Digest, repo: &str, scan: &mut RepoScan) -> bool {
        let path = layout::link_file(dir);
        let problem = match read_link(&path) {
            LinkContent::Digest(d) if d == *digest => None,
            LinkContent::Missing => return false,
            LinkContent::Digest(d) => {
                // The registry would serve the content's blob for this link:
                // keep it too.
                scan.protected.insert(d);
                Some(format!("holds {d}, its path says {digest}; both are kept"))
            }
            LinkContent::OtherAlgorithm(text) => {
                Some(format!("holds {text}, its path says {digest}"))
            }
            LinkContent::Invalid(reason) => Some(reason),
        };
        self.count_files(1);
        if let Some(problem) = problem {
            scan.warnings.push(Warning::new(
                WarningKind::InvalidLink,
                path,
                Some(repo),
                format!("invalid link: {problem}; using the digest in the path"),
            ));
        }
        true
    }

    fn layers(&self, dir: &Path, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for (digest, path) in self.digest_dirs(dir, Foreign::ProtectTarget, repo, scan)? {
            // A link directory without a link file is a half-deleted link:
            // the registry does not serve it, but it is still swept with its blob.
            self.check_link(&path, &digest, &repo.name, scan);
            repo.layer_links.push(digest);
        }
        Ok(())
    }

    fn manifests(&self, dir: &Path, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for entry in list(dir)? {
            if !entry.file_type.is_dir() {
                continue;
            }
            let path = dir.join(&entry.name);
            match name_str(&entry.name) {
                Some(names::REVISIONS) => self.revisions(&path, repo, scan)?,
                Some(names::TAGS) => self.tags(&path, repo, scan)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn revisions(&self, dir: &Path, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for (digest, path) in self.digest_dirs(dir, Foreign::KeepRepository, repo, scan)? {
            let linked = self.check_link(&path, &digest, &repo.name, scan);
            let signatures = self.signatures(&path, repo, scan)?;
            repo.revisions.push(Revision {
                digest,
                linked,
                signatures,
            });
        }
        Ok(())
    }

    fn signatures(
        &self,
        revision_dir: &Path,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) -> Result<Vec<Digest>> {
        let dir = layout::signatures_dir(revision_dir);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                scan.warnings
                    .push(self.odd_entry(&dir, &meta.file_type(), Some(&repo.name)));
                return Ok(Vec::new());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::IncompleteIndex {
                    path: dir,
                    source: e,
                });
            }
        }
        let mut signatures: Vec<Digest> = self
            .digest_dirs(&dir, Foreign::ProtectTarget, repo, scan)?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        self.count_files(signatures.len() as u64);
        signatures.sort_unstable();
        Ok(signatures)
    }

    fn tags(&self, dir: &Path, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for entry in list(dir)? {
            let path = dir.join(&entry.name);
            let name = name_str(&entry.name).map(str::to_owned);
            let Some(name) = name.filter(|_| entry.file_type.is_dir()) else {
                scan.warnings
                    .push(self.odd_entry(&path, &entry.file_type, Some(&repo.name)));
                continue;
            };
            let current_link = self.layout.tag_current_link(&repo.name, &name);
            self.count_files(1);
            let current = match read_link(&current_link) {
                LinkContent::Digest(d) => Some(d),
                other => {
                    let why = match other {
                        LinkContent::Missing => "missing".to_owned(),
                        LinkContent::OtherAlgorithm(text) => format!("unsupported digest {text}"),
                        LinkContent::Invalid(reason) => reason,
                        LinkContent::Digest(_) => unreachable!(),
                    };
                    scan.warnings.push(Warning::new(
                        WarningKind::InvalidTagLink,
                        &current_link,
                        Some(&repo.name),
                        format!("tag `{name}` has an invalid current link ({why}); every manifest in its history is kept"),
                    ));
                    None
                }
            };
            let index_dir = self.layout.tag_index_dir(&repo.name, &name);
            let mut history = Vec::new();
            for entry in list(&index_dir)? {
                let entry_path = index_dir.join(&entry.name);
                match name_str(&entry.name).and_then(Digest::from_hex) {
                    Some(digest) if entry.file_type.is_dir() => history.push(digest),
                    _ => scan.warnings.push(self.odd_entry(
                        &entry_path,
                        &entry.file_type,
                        Some(&repo.name),
                    )),
                }
            }
            self.count_files(history.len() as u64);
            history.sort_unstable();
            repo.tags.push(Tag {
                name,
                current,
                history,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_link_is_as_strict_as_the_registry() {
        let hex = "ab".repeat(32);
        let good = format!("sha256:{hex}");
        assert_eq!(
            parse_link(good.as_bytes()),
            LinkContent::Digest(Digest::from_hex(&hex).unwrap())
        );
        assert!(matches!(parse_link(b""), LinkContent::Invalid(r) if r == "empty"));
        assert!(matches!(
            parse_link(format!("{good}\n").as_bytes()),
            LinkContent::Invalid(r) if r.starts_with("trailing whitespace")
        ));
        assert!(matches!(parse_link(b"garbage"), LinkContent::Invalid(_)));
        assert!(matches!(parse_link(&[0xff, 0xfe]), LinkContent::Invalid(_)));
        assert_eq!(
            parse_link(format!("sha512:{}", "c".repeat(128)).as_bytes()),
            LinkContent::OtherAlgorithm(format!("sha512:{}", "c".repeat(128)))
        );
    }

    #[test]
    fn blob_without_data_has_no_size() {
        let d = Digest::from_bytes([1; 32]);
        assert_eq!(Blob::new(d, None).data_size(), None);
        assert_eq!(Blob::new(d, None).bytes(), 0);
        assert_eq!(Blob::new(d, Some(7)).data_size(), Some(7));
    }

    #[test]
    fn read_link_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, format!("sha256:{}", "ab".repeat(32))).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(read_link(&link), LinkContent::Invalid(r) if r.contains("symbolic")));
        assert_eq!(read_link(&dir.path().join("absent")), LinkContent::Missing);
    }
}

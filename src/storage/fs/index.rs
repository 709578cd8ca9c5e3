//! The filesystem backend's index builder: one parallel read of the storage
//! tree into the [`crate::index`] model (repositories, tags, manifest
//! revisions, layer links, blobs and uploads).
//!
//! The walk trusts directory entry types (no `stat` per directory) and never
//! descends into a symbolic link. Digests come from path names. A manifest
//! revision link is read for its content too: the registry serves the
//! manifest the content names, so one that names another manifest keeps both
//! ([`Repository::revision_link_targets`]). Other links are read only to
//! report the ones that disagree: the registry never reads a tag history
//! link's content, and a layer link naming another blob serves bytes no
//! client accepts for the digest asked (see [`IndexOptions`]). A directory that cannot be listed stops the run
//! ([`Error::IncompleteIndex`]): a sweep based on a half-read tree could delete
//! blobs the unread part references. A bad file is a [`Warning`] instead.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rayon::prelude::*;
use walkdir::WalkDir;

use crate::digest::{Digest, DigestSet, SHA256};
use crate::error::{Error, Result};
use crate::index::{
    Blob, ForeignLink, Index, LAYER_LINK_READ, LinkContent, MAX_LINK_BYTES, Repository, Revision,
    TAG_INDEX_LINK_READ, Tag, judge_link, judge_revision_link, parse_link,
};
use crate::interrupt::{Interrupt, Phase};
use crate::progress::Task;
use crate::storage::fs::dir::{self, Dir, Entry, Kind};
use crate::storage::layout::{Layout, names, relative};
use crate::warning::{Warning, WarningKind};

/// What the index reads beyond what deciding needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexOptions {
    /// Open every `_layers` link and report those whose content is invalid
    /// or disagrees with their path. Deciding never needs it, and it is most
    /// of the files of a registry: off by default, on in `verify`. The
    /// registry serves a layer link's content: one naming blob B under
    /// digest A sends B's bytes as A, which every client rejects (the digest
    /// does not match), so no pull through it works and deleting B breaks
    /// nothing that worked.
    pub check_layer_links: bool,
    /// Leave schema1 signatures (`<revision>/signatures/`) unread: the
    /// caller reads them with [`read_signatures`] once it knows which
    /// revisions are schema1 manifests, the only kind that has them. Saves
    /// one `lstat` per revision.
    pub defer_signatures: bool,
    /// Checked before each blob shard, repository directory and entry of
    /// the repositories' tree: a stop request ends the index with
    /// [`Error::Interrupted`].
    pub interrupt: Interrupt,
}

/// Reads the whole tree under `layout`. Runs on the current rayon pool.
pub fn build(layout: &Layout, options: IndexOptions, progress: &Task) -> Result<Index> {
    build_with(layout, options, false, progress)
}

/// Reads the whole tree as [`build`] does, and also opens every link that
/// deciding does not need (`_layers` links, and tag history links
/// `tags/<tag>/index/sha256/<hex>/link`), reporting those whose content is
/// invalid or disagrees with their path: what `verify` needs.
pub fn build_checking_links(layout: &Layout, progress: &Task) -> Result<Index> {
    let options = IndexOptions {
        check_layer_links: true,
        defer_signatures: false,
        interrupt: Interrupt::default(),
    };
    build_with(layout, options, true, progress)
}

fn build_with(
    layout: &Layout,
    options: IndexOptions,
    check_tag_index_links: bool,
    progress: &Task,
) -> Result<Index> {
    let files = AtomicU64::new(0);
    let ctx = Ctx {
        layout,
        options,
        check_tag_index_links,
        files: &files,
        progress,
    };
    let v2 = At::open(layout.v2())?;
    let (blobs, repositories) = rayon::join(|| ctx.blobs(&v2), || ctx.repositories());
    let (blobs, mut warnings, mut protected, shard_times) = blobs?;
    let scan = repositories?;
    protected.extend(scan.protected);
    warnings.extend(scan.warnings);
    Ok(Index {
        blobs,
        repositories: scan.repositories,
        protected,
        warnings,
        files: files.into_inner(),
        shard_times,
    })
}

/// Reads the schema1 signatures of the revisions `needs` selects, for an
/// index built with [`IndexOptions::defer_signatures`]. A repository's
/// revisions directory that cannot be read now is an incomplete index, as
/// it would have been while building it.
pub fn read_signatures(
    layout: &Layout,
    index: &mut Index,
    needs: impl Fn(&Digest) -> bool + Sync,
) -> Result<()> {
    let files = AtomicU64::new(0);
    let progress = Task::hidden();
    let ctx = Ctx {
        layout,
        options: IndexOptions::default(),
        check_tag_index_links: false,
        files: &files,
        progress: &progress,
    };
    let scans: Vec<RepoScan> = index
        .repositories
        .par_iter_mut()
        .map(|repo| -> Result<RepoScan> {
            let mut scan = RepoScan::default();
            let wanted: Vec<usize> = (0..repo.revisions.len())
                .filter(|&i| needs(&repo.revisions[i].digest))
                .collect();
            if wanted.is_empty() {
                return Ok(scan);
            }
            let revisions = At::open(&layout.revisions_dir(&repo.name))?;
            for i in wanted {
                let digest = repo.revisions[i].digest;
                let signatures = ctx.signatures(&revisions, &digest, repo, &mut scan)?;
                repo.revisions[i].signatures = signatures;
            }
            Ok(scan)
        })
        .collect::<Result<_>>()?;
    for scan in scans {
        index.warnings.extend(scan.warnings);
        index.protected.extend(scan.protected);
    }
    index.files += files.into_inner();
    Ok(())
}

/// An open directory and its path, for messages.
struct At {
    dir: Dir,
    path: PathBuf,
}

impl At {
    /// Opens `path` (the storage root's `docker/registry/v2`).
    fn open(path: &Path) -> Result<At> {
        let dir = Dir::open(path).map_err(|e| Error::io(path, e))?;
        Ok(At {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Opens the subdirectory `name` without following a symbolic link;
    /// `None` when it does not exist.
    fn child(&self, name: impl AsRef<Path>) -> Result<Option<At>> {
        let path = self.path.join(name.as_ref());
        match self.dir.open_dir(name.as_ref()) {
            Ok(Some(dir)) => Ok(Some(At { dir, path })),
            Ok(None) => Ok(None),
            Err(source) => Err(Error::IncompleteIndex { path, source }),
        }
    }

    /// Lists the directory; failing to is an incomplete index.
    fn entries(&self) -> Result<Vec<Entry>> {
        self.dir.entries().map_err(|source| Error::IncompleteIndex {
            path: self.path.clone(),
            source,
        })
    }

    /// Reads the link file `name` (e.g. `<hex>/link`) below this directory.
    fn read_link(&self, name: impl AsRef<Path>) -> LinkContent {
        let mut buf = [0u8; MAX_LINK_BYTES + 1];
        match self.dir.read_small(name, &mut buf) {
            Ok(None) => LinkContent::Missing,
            Ok(Some(len)) if len > MAX_LINK_BYTES => {
                LinkContent::Invalid(format!("longer than {MAX_LINK_BYTES} bytes"))
            }
            Ok(Some(len)) => parse_link(&buf[..len]),
            Err(e) if dir::is_symlink_error(&e) => {
                LinkContent::Invalid("is a symbolic link (not followed)".into())
            }
            Err(e) => LinkContent::Invalid(e.to_string()),
        }
    }
}

/// What reading repositories produced.
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
    /// A blob link: a link to the sha256 blob its content names.
    BlobLink,
    /// A manifest or signature: its references are unknown, keep the whole
    /// repository.
    KeepRepository,
}

struct Ctx<'a> {
    layout: &'a Layout,
    options: IndexOptions,
    /// Read tag history links too (see [`build_checking_links`]).
    check_tag_index_links: bool,
    files: &'a AtomicU64,
    progress: &'a Task,
}

/// Blobs, warnings, protected digests, and shard mtimes.
type BlobScan = (Vec<Blob>, Vec<Warning>, DigestSet, Vec<(u8, SystemTime)>);

/// A warning for an entry the registry would not have written there; kept.
fn odd_entry(path: &Path, kind: Kind, repository: Option<&str>) -> Warning {
    if kind == Kind::Symlink {
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

/// A file (or anything but a directory) where the registry writes a
/// directory of a repository's metadata: what it should hold is unknown, so
/// nothing in the repository is deleted.
fn not_a_directory(path: &Path, repo: &mut Repository, scan: &mut RepoScan) {
    repo.opaque = true;
    scan.warnings.push(Warning::new(
        WarningKind::UnexpectedEntry,
        path,
        Some(&repo.name),
        "not a directory, where the registry writes one; the repository is kept whole",
    ));
}

/// Reads a tag's `current/link` without following a symbolic link on the
/// way. Returns the content, the path at fault when it is not a digest, and
/// whether a symbolic link is in the way (the registry would follow it).
fn tag_current(tag_dir: &At) -> (LinkContent, PathBuf, bool) {
    let current = tag_dir.path.join(names::CURRENT);
    let link = current.join(names::LINK);
    match tag_dir.dir.open_dir(names::CURRENT) {
        Ok(None) => (LinkContent::Missing, link, false),
        Ok(Some(dir)) => {
            let at = At { dir, path: current };
            match at.read_link(names::LINK) {
                LinkContent::Invalid(reason) => {
                    let symlink = matches!(at.dir.stat(names::LINK), Ok(Some((Kind::Symlink, _))));
                    (LinkContent::Invalid(reason), link, symlink)
                }
                content => (content, link, false),
            }
        }
        Err(e) if dir::is_symlink_error(&e) => match tag_dir.dir.stat(names::CURRENT) {
            Ok(Some((Kind::Symlink, _))) => (
                LinkContent::Invalid("`current` is a symbolic link, not followed".into()),
                current,
                true,
            ),
            _ => (
                LinkContent::Invalid("`current` is not a directory".into()),
                current,
                false,
            ),
        },
        Err(e) => (LinkContent::Invalid(e.to_string()), current, false),
    }
}

/// Whether a directory holding `name` is a repository. A first push into a
/// new repository creates `_uploads/<uuid>/` before anything else: that
/// repository exists, with an upload in progress.
fn is_repository_metadata(name: &str) -> bool {
    name == names::MANIFESTS || name == names::LAYERS || name == names::UPLOADS
}

/// A symbolic link where the registry writes a directory that holds
/// manifests or repositories: regsweep does not follow it, and without what
/// is behind it a sweep could delete blobs it references.
fn symlinked_dir(path: PathBuf) -> Error {
    Error::IncompleteIndex {
        path,
        source: io::Error::other(
            "symbolic link where the registry writes a directory; not followed",
        ),
    }
}

impl Ctx<'_> {
    fn count_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
        self.progress.inc(n);
    }

    /// Blobs are found from directory names and sized with one `lstat` of
    /// their `data`. A symbolic link anywhere in `blobs/` hides what is
    /// behind it, which is then never deleted.
    fn blobs(&self, v2: &At) -> Result<BlobScan> {
        let mut warnings = Vec::new();
        let blobs_path = v2.path.join(names::BLOBS);
        let blobs = match v2.child(names::BLOBS) {
            Err(Error::IncompleteIndex { source, .. }) if dir::is_symlink_error(&source) => {
                let kind = match v2.dir.stat(names::BLOBS) {
                    Ok(Some((kind, _))) => kind,
                    _ => Kind::Symlink,
                };
                warnings.push(odd_entry(&blobs_path, kind, None));
                return Ok((Vec::new(), warnings, DigestSet::default(), Vec::new()));
            }
            other => other?,
        };
        let Some(blobs) = blobs else {
            return Ok((Vec::new(), warnings, DigestSet::default(), Vec::new()));
        };
        let mut algorithms = None;
        for entry in blobs.entries()? {
            let path = blobs.path.join(&entry.name);
            match (entry.name_str(), entry.kind) {
                (Some(SHA256), Kind::Dir) => algorithms = blobs.child(SHA256)?,
                (_, Kind::Dir) => warnings.push(Warning::new(
                    WarningKind::UnsupportedDigest,
                    path,
                    None,
                    "blob storage for a digest algorithm other than sha256; kept",
                )),
                (_, kind) => warnings.push(odd_entry(&path, kind, None)),
            }
        }
        let Some(sha256) = algorithms else {
            return Ok((Vec::new(), warnings, DigestSet::default(), Vec::new()));
        };
        let mut shards = Vec::new();
        for shard in sha256.entries()? {
            let valid = shard
                .name_str()
                .is_some_and(|n| n.len() == 2 && Digest::from_hex(&n.repeat(32)).is_some());
            if shard.kind == Kind::Dir && valid {
                shards.push(shard.name);
            } else {
                warnings.push(odd_entry(&sha256.path.join(&shard.name), shard.kind, None));
            }
        }
        let per_shard: Vec<BlobScan> = shards
            .par_iter()
            .map(|name| self.shard(&sha256, name))
            .collect::<Result<_>>()?;
        let mut blobs = Vec::new();
        let mut protected = DigestSet::default();
        let mut shard_times = Vec::new();
        for (shard_blobs, shard_warnings, shard_protected, times) in per_shard {
            blobs.extend(shard_blobs);
            warnings.extend(shard_warnings);
            protected.extend(shard_protected);
            shard_times.extend(times);
        }
        blobs.sort_unstable_by_key(|b| b.digest);
        shard_times.sort_unstable_by_key(|(s, _)| *s);
        Ok((blobs, warnings, protected, shard_times))
    }

    fn shard(&self, sha256: &At, name: &OsString) -> Result<BlobScan> {
        self.options.interrupt.check(Phase::Index)?;
        let Some(shard) = sha256.child(name)? else {
            return Ok(BlobScan::default());
        };
        let prefix = name.to_str().unwrap_or_default();
        let mut blobs = Vec::new();
        let mut warnings = Vec::new();
        let mut protected = DigestSet::default();
        for entry in shard.entries()? {
            let digest = entry
                .name_str()
                .filter(|n| n.starts_with(prefix))
                .and_then(Digest::from_hex);
            let Some(digest) = digest.filter(|_| entry.kind == Kind::Dir) else {
                warnings.push(odd_entry(&shard.path.join(&entry.name), entry.kind, None));
                continue;
            };
            let data = relative::data(&entry.name);
            match shard.dir.stat(&data) {
                Ok(Some((Kind::File, size))) => blobs.push(Blob::new(digest, Some(size))),
                Ok(None) => blobs.push(Blob::new(digest, None)),
                Ok(Some((kind, _))) => {
                    protected.insert(digest);
                    blobs.push(Blob::new(digest, Some(0)));
                    warnings.push(odd_entry(&shard.path.join(&data), kind, None));
                }
                Err(e) => {
                    protected.insert(digest);
                    blobs.push(Blob::new(digest, Some(0)));
                    warnings.push(Warning::new(
                        WarningKind::UnexpectedEntry,
                        shard.path.join(&data),
                        None,
                        format!("cannot stat blob data ({e}); kept"),
                    ));
                }
            }
        }
        self.count_files(blobs.len() as u64);
        // After the listing: every blob listed was created before this.
        let time = blobs
            .first()
            .map(|b| b.digest.shard_byte())
            .zip(shard.dir.modified_self().ok());
        Ok((blobs, warnings, protected, time.into_iter().collect()))
    }

    /// Finds every repository directory, then reads them in parallel.
    fn repositories(&self) -> Result<RepoScan> {
        let root = self.layout.repositories_dir();
        let mut found = Vec::new();
        match fs::symlink_metadata(&root) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(symlinked_dir(root)),
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::IncompleteIndex {
                    path: root,
                    source: io::Error::other("not a directory"),
                });
            }
            Ok(_) => {}
            // A registry that has not stored anything yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RepoScan::default()),
            Err(source) => return Err(Error::IncompleteIndex { path: root, source }),
        }
        let mut walk = WalkDir::new(&root).min_depth(1).into_iter();
        while let Some(entry) = walk.next() {
            self.options.interrupt.check(Phase::Index)?;
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("filesystem loop"));
                Error::IncompleteIndex { path, source }
            })?;
            if entry.file_type().is_symlink() {
                return Err(symlinked_dir(entry.into_path()));
            }
            let name = entry.file_name().to_string_lossy();
            if !entry.file_type().is_dir() {
                // A file where the registry writes `_manifests` or `_layers`
                // still marks a repository: reading it reports the damage.
                if is_repository_metadata(&name) {
                    if let Some(parent) = entry.path().parent() {
                        found.push(parent.to_path_buf());
                    }
                }
                continue;
            }
            if name.starts_with(names::METADATA_PREFIX) {
                // Registry metadata, never a nested repository.
                if is_repository_metadata(&name) {
                    if let Some(parent) = entry.path().parent() {
                        found.push(parent.to_path_buf());
                    }
                }
                walk.skip_current_dir();
            }
        }
        found.sort();
        found.dedup();
        let mut scan = found
            .par_iter()
            .map(|dir| self.repository(dir))
            .try_fold(RepoScan::default, |acc, scan| Ok(acc.merge(scan?)))
            .try_reduce(RepoScan::default, |a, b| Ok(a.merge(b)))?;
        scan.repositories
            .sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(scan)
    }

    fn repository(&self, path: &Path) -> Result<RepoScan> {
        self.options.interrupt.check(Phase::Index)?;
        let mut scan = RepoScan::default();
        let Some(name) = self.layout.repository_name(path) else {
            return Err(Error::IncompleteIndex {
                path: path.to_path_buf(),
                source: io::Error::other("repository name is not UTF-8"),
            });
        };
        let parent = path.parent().unwrap_or(path);
        let dir = At::open(parent)?
            .child(path.file_name().unwrap_or_default())?
            .ok_or_else(|| Error::IncompleteIndex {
                path: path.to_path_buf(),
                source: io::ErrorKind::NotFound.into(),
            })?;
        let mut repo = Repository {
            name,
            ..Repository::default()
        };
        for entry in dir.entries()? {
            let child_path = dir.path.join(&entry.name);
            let metadata = matches!(
                entry.name_str(),
                Some(names::LAYERS | names::MANIFESTS | names::UPLOADS)
            );
            if metadata && entry.kind == Kind::Symlink {
                return Err(symlinked_dir(child_path));
            }
            if metadata && entry.kind != Kind::Dir {
                not_a_directory(&child_path, &mut repo, &mut scan);
                continue;
            }
            if entry.kind != Kind::Dir {
                continue;
            }
            match entry.name_str() {
                Some(names::LAYERS) => {
                    let layers = dir.child(names::LAYERS)?;
                    if let Some(layers) = layers {
                        self.layers(&layers, &mut repo, &mut scan)?;
                    }
                }
                Some(names::MANIFESTS) => {
                    if let Some(manifests) = dir.child(names::MANIFESTS)? {
                        self.manifests(&manifests, &mut repo, &mut scan)?;
                    }
                }
                Some(names::UPLOADS) => {
                    if let Some(uploads) = dir.child(names::UPLOADS)? {
                        repo.uploads = uploads.entries()?.len();
                    }
                }
                _ => {}
            }
        }
        repo.layer_links.sort_unstable();
        repo.revisions.sort_unstable_by_key(|r| r.digest);
        repo.tags.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        scan.repositories.push(repo);
        Ok(scan)
    }

    /// The `<alg>/<hex>/` directories below `dir`: sha256 ones are returned
    /// with the open `sha256/` directory; links under other algorithms are
    /// handled as `foreign` says.
    fn digest_dirs(
        &self,
        dir: &At,
        foreign: Foreign,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) -> Result<Option<(At, Vec<Digest>)>> {
        let mut found = None;
        for alg in dir.entries()? {
            let alg_path = dir.path.join(&alg.name);
            if alg.kind == Kind::Symlink {
                return Err(symlinked_dir(alg_path));
            }
            if alg.kind != Kind::Dir {
                scan.warnings
                    .push(odd_entry(&alg_path, alg.kind, Some(&repo.name)));
                continue;
            }
            let Some(alg_dir) = dir.child(&alg.name)? else {
                continue;
            };
            let is_sha256 = alg.name_str() == Some(SHA256);
            let mut digests = Vec::new();
            for entry in alg_dir.entries()? {
                let path = alg_dir.path.join(&entry.name);
                if entry.kind == Kind::Symlink {
                    return Err(symlinked_dir(path));
                }
                let digest = entry.name_str().and_then(Digest::from_hex);
                match (entry.kind, digest) {
                    (Kind::Dir, Some(digest)) if is_sha256 => digests.push(digest),
                    (Kind::Dir, _) if !is_sha256 => {
                        self.other_algorithm_link(&alg_dir, &entry.name, foreign, repo, scan)
                    }
                    (kind, _) => scan.warnings.push(odd_entry(&path, kind, Some(&repo.name))),
                }
            }
            if is_sha256 {
                found = Some((alg_dir, digests));
            }
        }
        Ok(found)
    }

    /// A link under a digest algorithm other than sha256. A blob link is
    /// recorded with the sha256 blob it names (and swept with it); one whose
    /// content is not a sha256 digest is reported and kept. A manifest
    /// revision or signature under another algorithm cannot be followed, so
    /// its repository is kept whole.
    fn other_algorithm_link(
        &self,
        dir: &At,
        name: &OsString,
        foreign: Foreign,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) {
        self.count_files(1);
        let path = dir.path.join(name);
        let algorithm = dir.path.file_name().and_then(|a| a.to_str());
        let hex = name.to_str();
        let target = dir.read_link(relative::link(name));
        match (foreign, target, algorithm, hex) {
            (Foreign::BlobLink, LinkContent::Digest(target), Some(algorithm), Some(hex)) => {
                repo.foreign_links.push(ForeignLink {
                    algorithm: algorithm.to_owned(),
                    hex: hex.to_owned(),
                    target,
                });
            }
            (Foreign::BlobLink, content, _, _) => {
                let why = match content {
                    LinkContent::Invalid(reason) => reason,
                    LinkContent::Missing => "no link file".into(),
                    _ => "it does not name a sha256 blob".into(),
                };
                scan.warnings.push(Warning::new(
                    WarningKind::InvalidLink,
                    path,
                    Some(&repo.name),
                    format!("invalid link under another digest algorithm ({why}); kept"),
                ));
            }
            (Foreign::KeepRepository, _, _, _) => {
                repo.opaque = true;
                scan.warnings.push(Warning::new(
                    WarningKind::UnsupportedDigest,
                    path,
                    Some(&repo.name),
                    "manifest under a digest algorithm regsweep does not follow; repository kept whole",
                ));
            }
        }
    }

    /// Reads `<hex>/link` below `dir` and reports it if it does not hold
    /// `digest`, saying what the registry does with it (`registry_reads`).
    /// Returns whether the link file exists.
    fn check_link(
        &self,
        dir: &At,
        digest: &Digest,
        repo: &str,
        registry_reads: &str,
        scan: &mut RepoScan,
    ) -> bool {
        let name = relative::link(digest.hex());
        let content = dir.read_link(&name);
        if content == LinkContent::Missing {
            return false;
        }
        self.count_files(1);
        if let Some(problem) = judge_link(digest, content, registry_reads) {
            scan.warnings.push(Warning::new(
                WarningKind::InvalidLink,
                dir.path.join(name),
                Some(repo),
                problem,
            ));
        }
        true
    }

    /// Reads the revision link `<hex>/link` below `dir`. The registry serves
    /// `repo@<digest>` (and every tag on it) from the blob its *content*
    /// names, so a link naming another manifest makes that one count too
    /// ([`Repository::revision_link_targets`]). Returns whether the link
    /// file exists.
    fn revision_link(
        &self,
        dir: &At,
        digest: &Digest,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) -> bool {
        let name = relative::link(digest.hex());
        let content = dir.read_link(&name);
        if content != LinkContent::Missing {
            self.count_files(1);
        }
        let missing = content == LinkContent::Missing;
        let followed = || matches!(dir.dir.stat(&name), Ok(Some((Kind::Symlink, _))));
        let Some(problem) = judge_revision_link(repo, digest, content, followed) else {
            return !missing;
        };
        scan.warnings.push(Warning::new(
            WarningKind::InvalidLink,
            dir.path.join(name),
            Some(&repo.name),
            problem,
        ));
        true
    }

    fn layers(&self, dir: &At, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        if let Some((sha256, digests)) = self.digest_dirs(dir, Foreign::BlobLink, repo, scan)? {
            // The directory names are the links: a link directory without a
            // link file, or with wrong content, is still swept with its blob.
            if self.options.check_layer_links {
                for digest in &digests {
                    self.check_link(&sha256, digest, &repo.name, LAYER_LINK_READ, scan);
                }
            } else {
                self.count_files(digests.len() as u64);
            }
            repo.layer_links.extend(digests);
        }
        Ok(())
    }

    fn manifests(&self, dir: &At, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for entry in dir.entries()? {
            let wanted = matches!(entry.name_str(), Some(names::REVISIONS | names::TAGS));
            if wanted && entry.kind == Kind::Symlink {
                return Err(symlinked_dir(dir.path.join(&entry.name)));
            }
            if wanted && entry.kind != Kind::Dir {
                not_a_directory(&dir.path.join(&entry.name), repo, scan);
                continue;
            }
            if !wanted {
                continue;
            }
            let Some(child) = dir.child(&entry.name)? else {
                continue;
            };
            match entry.name_str() {
                Some(names::REVISIONS) => self.revisions(&child, repo, scan)?,
                _ => self.tags(&child, repo, scan)?,
            }
        }
        Ok(())
    }

    fn revisions(&self, dir: &At, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        let Some((sha256, digests)) = self.digest_dirs(dir, Foreign::KeepRepository, repo, scan)?
        else {
            return Ok(());
        };
        for digest in digests {
            let linked = self.revision_link(&sha256, &digest, repo, scan);
            let signatures = if self.options.defer_signatures {
                Vec::new()
            } else {
                self.signatures(&sha256, &digest, repo, scan)?
            };
            repo.revisions.push(Revision {
                digest,
                linked,
                signatures,
            });
        }
        repo.revision_link_targets.sort_unstable();
        Ok(())
    }

    /// Schema1 signatures under a revision (registries up to 2.4 wrote
    /// them): one `lstat` per revision finds out whether there are any.
    fn signatures(
        &self,
        revisions: &At,
        digest: &Digest,
        repo: &mut Repository,
        scan: &mut RepoScan,
    ) -> Result<Vec<Digest>> {
        let name = relative::signatures(digest);
        let path = revisions.path.join(&name);
        match revisions.dir.stat(&name) {
            Ok(None) => return Ok(Vec::new()),
            Ok(Some((Kind::Dir, _))) => {}
            Ok(Some((Kind::Symlink, _))) => return Err(symlinked_dir(path)),
            Ok(Some((kind, _))) => {
                scan.warnings.push(odd_entry(&path, kind, Some(&repo.name)));
                return Ok(Vec::new());
            }
            Err(source) => return Err(Error::IncompleteIndex { path, source }),
        }
        let Some(dir) = revisions
            .child(digest.hex())?
            .map(|r| r.child(names::SIGNATURES))
            .transpose()?
            .flatten()
        else {
            return Ok(Vec::new());
        };
        let mut signatures = self
            .digest_dirs(&dir, Foreign::KeepRepository, repo, scan)?
            .map(|(_, digests)| digests)
            .unwrap_or_default();
        self.count_files(signatures.len() as u64);
        signatures.sort_unstable();
        Ok(signatures)
    }

    fn tags(&self, dir: &At, repo: &mut Repository, scan: &mut RepoScan) -> Result<()> {
        for entry in dir.entries()? {
            let path = dir.path.join(&entry.name);
            if entry.kind == Kind::Symlink {
                return Err(symlinked_dir(path));
            }
            if entry.kind != Kind::Dir {
                not_a_directory(&path, repo, scan);
                continue;
            }
            let Some(name) = entry.name_str().map(str::to_owned) else {
                scan.warnings
                    .push(odd_entry(&path, entry.kind, Some(&repo.name)));
                continue;
            };
            let Some(tag_dir) = dir.child(&name)? else {
                continue;
            };
            self.count_files(1);
            let (content, at_fault, symlink) = tag_current(&tag_dir);
            let current = match content {
                LinkContent::Digest(d) => Some(d),
                other => {
                    let why = match other {
                        LinkContent::Missing => "missing".to_owned(),
                        LinkContent::OtherAlgorithm(text) => format!("unsupported digest {text}"),
                        LinkContent::Invalid(reason) => reason,
                        LinkContent::Digest(_) => unreachable!(),
                    };
                    let kept = if symlink {
                        // The registry follows it to a manifest regsweep
                        // does not read: keep everything that might be it.
                        repo.opaque = true;
                        "the registry would follow it: the repository is kept whole"
                    } else {
                        "every manifest in its history is kept"
                    };
                    scan.warnings.push(Warning::new(
                        WarningKind::InvalidTagLink,
                        at_fault,
                        Some(&repo.name),
                        format!("tag `{name}` has an invalid current link ({why}); {kept}"),
                    ));
                    None
                }
            };
            // One statat relative to the open tag directory; a time that
            // cannot be read is unknown, which keeps the tag from any
            // `older_than` rule.
            let pushed = current.and_then(|_| {
                tag_dir
                    .dir
                    .modified(relative::tag_current_link())
                    .ok()
                    .flatten()
            });
            let mut history = Vec::new();
            if let Some(index) = tag_dir.child(names::INDEX)? {
                if let Some(sha256) = index.child(SHA256)? {
                    for entry in sha256.entries()? {
                        match (entry.kind, entry.name_str().and_then(Digest::from_hex)) {
                            (Kind::Dir, Some(digest)) => history.push(digest),
                            (Kind::Symlink, _) => {
                                return Err(symlinked_dir(sha256.path.join(&entry.name)));
                            }
                            (kind, _) => scan.warnings.push(odd_entry(
                                &sha256.path.join(&entry.name),
                                kind,
                                Some(&repo.name),
                            )),
                        }
                    }
                    if self.check_tag_index_links {
                        for digest in &history {
                            self.check_link(&sha256, digest, &repo.name, TAG_INDEX_LINK_READ, scan);
                        }
                    } else {
                        self.count_files(history.len() as u64);
                    }
                }
            }
            history.sort_unstable();
            repo.tags.push(Tag {
                name,
                current,
                history,
                pushed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_request_ends_the_index_with_interrupted() {
        static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/registry");
        let layout = crate::storage::target::storage_root(&fixture).unwrap();
        let options = IndexOptions {
            interrupt: Interrupt::new(&STOP),
            ..IndexOptions::default()
        };
        let err = build(&layout, options, &Task::hidden()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Interrupted {
                    phase: Phase::Index
                }
            ),
            "{err}"
        );
        assert!(build(&layout, IndexOptions::default(), &Task::hidden()).is_ok());
    }

    #[test]
    fn shard_times_bound_every_blob_listed_in_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let shards = layout.v2().join(names::BLOBS).join(SHA256);
        let old = Digest::from_bytes([0xab; 32]);
        let new = Digest::from_bytes([0xcd; 32]);
        for digest in [old, new] {
            let blob = shards.join(digest.shard()).join(digest.hex());
            fs::create_dir_all(&blob).unwrap();
            fs::write(blob.join(names::DATA), b"x").unwrap();
        }
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(86_400);
        let old_shard = shards.join(old.shard());
        fs::File::open(&old_shard)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let index = build(&layout, IndexOptions::default(), &Task::hidden()).unwrap();
        let cutoff = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(index.shard_times.len(), 2);
        assert!(index.shard_unchanged_since(0xab, cutoff));
        assert!(
            !index.shard_unchanged_since(0xcd, cutoff),
            "written just now"
        );
        assert!(!index.shard_unchanged_since(0x01, cutoff), "unknown shard");
    }

    #[test]
    fn read_link_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, format!("sha256:{}", "ab".repeat(32))).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("link")).unwrap();
        let at = At::open(dir.path()).unwrap();
        assert!(matches!(at.read_link("link"), LinkContent::Invalid(r) if r.contains("symbolic")));
        assert_eq!(at.read_link("absent"), LinkContent::Missing);
        assert!(matches!(at.read_link("target"), LinkContent::Digest(_)));
    }

    /// A repository `r` with one revision `a` whose link holds `content`.
    fn relinked(a: &Digest, content: &[u8]) -> Repository {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let revision = layout.revisions_dir("r").join(a.hex());
        fs::create_dir_all(&revision).unwrap();
        fs::write(revision.join(names::LINK), content).unwrap();
        fs::create_dir_all(layout.v2().join(names::BLOBS).join(SHA256)).unwrap();
        let mut index = build(&layout, IndexOptions::default(), &Task::hidden()).unwrap();
        assert_eq!(index.warnings.len(), 1, "{:?}", index.warnings);
        assert_eq!(index.warnings[0].kind, WarningKind::InvalidLink);
        index.repositories.pop().unwrap()
    }

    #[test]
    fn a_revision_link_naming_another_manifest_keeps_both() {
        let a = Digest::from_bytes([0xa; 32]);
        let b = Digest::from_bytes([0xb; 32]);
        let repo = relinked(&a, b.to_string().as_bytes());
        assert_eq!(repo.revision_link_targets, vec![(a, b)]);
        assert!(repo.revisions[0].linked && !repo.opaque);
    }

    #[test]
    fn a_revision_link_under_another_algorithm_keeps_the_repository_whole() {
        let a = Digest::from_bytes([0xa; 32]);
        let repo = relinked(&a, format!("sha512:{}", "c".repeat(128)).as_bytes());
        assert!(repo.opaque);
        assert!(repo.revision_link_targets.is_empty());
    }

    #[test]
    fn a_garbage_revision_link_keeps_the_manifest_its_path_names() {
        let a = Digest::from_bytes([0xa; 32]);
        let repo = relinked(&a, b"garbage");
        assert!(repo.revisions[0].linked, "kept by its path");
        assert!(!repo.opaque && repo.revision_link_targets.is_empty());
    }

    #[test]
    fn a_symlinked_revision_link_keeps_the_repository_whole() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let a = Digest::from_bytes([0xa; 32]);
        let revision = layout.revisions_dir("r").join(a.hex());
        fs::create_dir_all(&revision).unwrap();
        fs::create_dir_all(layout.v2().join(names::BLOBS).join(SHA256)).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, Digest::from_bytes([0xb; 32]).to_string()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, revision.join(names::LINK)).unwrap();
        let index = build(&layout, IndexOptions::default(), &Task::hidden()).unwrap();
        let repo = &index.repositories[0];
        assert!(repo.opaque, "the registry follows it");
        assert_eq!(index.warnings.len(), 1, "{:?}", index.warnings);
    }
}

//! The index of a bucket, from listings: the blob shards and the
//! repositories' top-level prefixes are listed in parallel, every key is
//! classified by its name ([`super::keys`]), and only what a name cannot
//! tell is read: a link whose ETag is not the md5 of a content its path or
//! its tag's history implies (S3 shows an object's md5 as the ETag of a
//! single-part PUT; with some server-side encryptions it does not), a link
//! under another digest algorithm, and an upload's `startedat`.
//!
//! The result is the same [`Index`] the filesystem walk builds, plus what
//! the listing showed that a filesystem would answer with a `stat` later:
//! the modification times of what is recent, and the keys of uploads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::{ObjectMeta, ObjectStore};

use super::keys::{self, Key};
use super::{Fetched, S3Storage, bare_etag, link_etag};
use crate::clock;
use crate::digest::{Digest, DigestSet};
use crate::error::{Error, Result};
use crate::index::{
    Blob, ForeignLink, Index, LAYER_LINK_READ, LinkContent, MAX_LINK_BYTES, Repository, Revision,
    TAG_INDEX_LINK_READ, Tag, judge_link, judge_revision_link, parse_link,
};
use crate::interrupt::{Interrupt, Phase};
use crate::progress::Task;
use crate::retention::pulls::ListedHistoryTimes;
use crate::storage::fs::hygiene::Upload;
use crate::storage::layout::names;
use crate::warning::{Warning, WarningKind};

/// `startedat` holds an RFC 3339 time.
const MAX_STARTED_AT_BYTES: u64 = 256;

/// What a listing shows beyond the index.
#[derive(Debug, Default)]
pub struct Listing {
    /// Candidate directories (layout paths: a blob's, a link's, a
    /// revision's, a tag's, a repository's) holding a key modified after
    /// the cutoff, with the latest such time. Everything else is older.
    pub recent: HashMap<PathBuf, SystemTime>,
    /// Uploads in progress or abandoned.
    pub uploads: Vec<Upload>,
    /// The keys of each upload (by [`Upload::path`]).
    pub upload_keys: HashMap<PathBuf, Vec<String>>,
    /// Keys listed.
    pub keys: u64,
    /// Candidate directories (layout paths of revisions and layer links)
    /// holding keys the registry never writes there: a sweep keeps them, as
    /// it keeps a directory with unexpected entries on disk.
    pub stray: std::collections::HashSet<PathBuf>,
    /// When each tag history entry was written (kept when asked for:
    /// attributing pulls by tag needs them).
    pub tag_history_times: ListedHistoryTimes,
}

/// What to read beyond the index.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListOptions {
    /// Keys modified after this are remembered in [`Listing::recent`].
    pub cutoff: Option<SystemTime>,
    /// Keep [`Listing::tag_history_times`].
    pub tag_history_times: bool,
    /// Check every layer link (`gc --check-links`, `verify`): those whose
    /// ETag does not show the content their path implies are read.
    pub check_layer_links: bool,
    /// Check every tag history link the same way (`verify`).
    pub check_tag_index_links: bool,
}

/// Builds the index of the bucket.
pub fn build(
    storage: &S3Storage,
    options: ListOptions,
    interrupt: &Interrupt,
    progress: &Task,
) -> Result<(Index, Listing)> {
    storage.block_on(build_async(storage, options, interrupt, progress))
}

/// One listing task's findings.
#[derive(Default)]
struct Found {
    blobs: Vec<(Digest, u64)>,
    repositories: HashMap<String, RepoFound>,
    recent: HashMap<PathBuf, SystemTime>,
    stray: std::collections::HashSet<PathBuf>,
    warnings: Vec<Warning>,
    keys: u64,
}

#[derive(Default)]
struct RepoFound {
    layer_links: Vec<Digest>,
    foreign_links: Vec<(String, String)>,
    /// What was found of each revision (several entries per digest).
    revisions: Vec<(Digest, RevisionKey)>,
    signatures: Vec<(Digest, Digest)>,
    tags: BTreeMap<String, TagFound>,
    uploads: BTreeMap<String, UploadFound>,
    opaque: bool,
    /// Links to read (`verify`): the digest their path names, their layout
    /// path, and what the registry does with their content.
    suspect_links: Vec<(Digest, PathBuf, &'static str)>,
}

#[derive(Default)]
struct TagFound {
    /// When `current/link` was written, and its ETag.
    current: Option<(SystemTime, Option<String>)>,
    /// History entries, and when each was written.
    history: Vec<(Digest, SystemTime)>,
}

impl TagFound {
    /// The digest `current/link` holds, when its ETag shows it: the md5 of
    /// one of the tag's history entries' link content (the registry writes
    /// both with the same content).
    fn current_from_etag(&self) -> Option<Digest> {
        let etag = self.current.as_ref()?.1.as_deref()?;
        self.history
            .iter()
            .map(|(d, _)| *d)
            .find(|d| link_etag(&d.to_string()) == etag)
    }
}

#[derive(Default)]
struct UploadFound {
    keys: Vec<String>,
    last_activity: Option<SystemTime>,
    bytes: u64,
    started_at: bool,
}

impl Found {
    fn merge(&mut self, other: Found) {
        self.blobs.extend(other.blobs);
        for (name, repo) in other.repositories {
            let into = self.repositories.entry(name).or_default();
            into.layer_links.extend(repo.layer_links);
            into.foreign_links.extend(repo.foreign_links);
            into.revisions.extend(repo.revisions);
            into.signatures.extend(repo.signatures);
            for (tag, found) in repo.tags {
                let t = into.tags.entry(tag).or_default();
                if t.current.is_none() {
                    t.current = found.current;
                }
                t.history.extend(found.history);
            }
            for (uuid, found) in repo.uploads {
                let u = into.uploads.entry(uuid).or_default();
                u.keys.extend(found.keys);
                u.last_activity = u.last_activity.max(found.last_activity);
                u.bytes = u.bytes.max(found.bytes);
                u.started_at |= found.started_at;
            }
            into.opaque |= repo.opaque;
            into.suspect_links.extend(repo.suspect_links);
        }
        for (path, time) in other.recent {
            let t = self.recent.entry(path).or_insert(time);
            *t = (*t).max(time);
        }
        self.stray.extend(other.stray);
        self.warnings.extend(other.warnings);
        self.keys += other.keys;
    }

    fn note_recent(&mut self, path: PathBuf, time: SystemTime) {
        let t = self.recent.entry(path).or_insert(time);
        *t = (*t).max(time);
    }
}

/// When the object was last written, on the store's clock.
pub(crate) fn modified(meta: &ObjectMeta) -> SystemTime {
    let secs = meta.last_modified.timestamp();
    let nanos = meta.last_modified.timestamp_subsec_nanos();
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
        Err(_) => UNIX_EPOCH,
    }
}

impl S3Storage {
    /// The key relative to the `v2/` prefix.
    fn relative<'a>(&self, key: &'a str, v2: &str) -> Option<&'a str> {
        key.strip_prefix(v2)?.strip_prefix('/')
    }

    /// Lists every key of `range` into `found`.
    async fn list_into(
        &self,
        range: KeyRange,
        options: ListOptions,
        interrupt: &Interrupt,
        progress: &Task,
    ) -> Result<Found> {
        let v2 = super::path_str(self.layout.v2());
        let mut found = Found::default();
        let mut listed = match &range.start {
            Some(start) => {
                let offset = object_store::path::Path::from(just_before(start));
                let prefix = super::key(&range.prefix);
                self.store().list_with_offset(Some(&prefix), &offset)
            }
            None => self.list(&range.prefix),
        };
        let mut in_page = 0;
        self.requests.list.fetch_add(1, Ordering::Relaxed);
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| Error::IncompleteIndex {
                path: PathBuf::from(self.url(&range.prefix)),
                source: std::io::Error::other(super::config::describe_error(&e)),
            })?;
            in_page += 1;
            if in_page == 1000 {
                // The store answers a thousand keys a page.
                in_page = 0;
                interrupt.check(Phase::Index)?;
                self.requests.list.fetch_add(1, Ordering::Relaxed);
                progress.inc(1000);
            }
            let key = meta.location.as_ref();
            if range.start.as_deref().is_some_and(|start| key < start) {
                continue;
            }
            if range.end.as_deref().is_some_and(|end| key >= end) {
                break;
            }
            found.keys += 1;
            let Some(relative) = self.relative(key, &v2) else {
                continue;
            };
            self.classify_into(&mut found, relative, &meta, options);
        }
        progress.inc(in_page);
        Ok(found)
    }

    fn classify_into(
        &self,
        found: &mut Found,
        relative: &str,
        meta: &ObjectMeta,
        options: ListOptions,
    ) {
        let layout = &self.layout;
        let time = modified(meta);
        let recent = options.cutoff.is_some_and(|c| time > c);
        let suspect = |digest: &Digest, check: bool| {
            check && bare_etag(meta) != Some(link_etag(&digest.to_string()).as_str())
        };
        let path = || layout.v2().join(relative);
        match keys::classify(relative) {
            Key::BlobData(digest) => {
                found.blobs.push((digest, meta.size));
                if recent {
                    found.note_recent(layout.blob_dir(&digest), time);
                }
            }
            Key::Other => found.warnings.push(Warning::new(
                WarningKind::UnexpectedEntry,
                path(),
                None,
                "not part of the registry's storage layout; kept",
            )),
            key => {
                let repository = match &key {
                    Key::LayerLink { repository, .. }
                    | Key::ForeignLayerLink { repository, .. }
                    | Key::RevisionLink { repository, .. }
                    | Key::Signature { repository, .. }
                    | Key::ForeignRevision { repository }
                    | Key::TagCurrent { repository, .. }
                    | Key::TagIndex { repository, .. }
                    | Key::Upload { repository, .. }
                    | Key::RevisionOther { repository, .. }
                    | Key::LayerLinkOther { repository, .. }
                    | Key::RepositoryOther { repository } => *repository,
                    Key::BlobData(_) | Key::Other => unreachable!("handled above"),
                };
                if recent {
                    found.note_recent(layout.repository_dir(repository), time);
                }
                let repo = found.repositories.entry(repository.to_owned()).or_default();
                let mut recent_dir = None;
                match key {
                    Key::LayerLink { digest, .. } => {
                        repo.layer_links.push(digest);
                        if suspect(&digest, options.check_layer_links) {
                            repo.suspect_links.push((digest, path(), LAYER_LINK_READ));
                        }
                        recent_dir = Some(layout.layer_link_dir(repository, &digest));
                    }
                    Key::ForeignLayerLink { algorithm, hex, .. } => {
                        repo.foreign_links
                            .push((algorithm.to_owned(), hex.to_owned()));
                        recent_dir = Some(layout.layer_link_dir_for(repository, algorithm, hex));
                    }
                    Key::RevisionLink { digest, .. } => {
                        let expected = link_etag(&digest.to_string());
                        let shows_path = bare_etag(meta) == Some(expected.as_str());
                        repo.revisions
                            .push((digest, RevisionKey::Link { shows_path }));
                        recent_dir = Some(layout.revision_dir(repository, &digest));
                    }
                    Key::Signature {
                        revision,
                        signature,
                        ..
                    } => {
                        repo.signatures.push((revision, signature));
                        repo.revisions.push((revision, RevisionKey::Other));
                    }
                    Key::RevisionOther {
                        digest,
                        link_is_dir,
                        ..
                    } => {
                        let key = match link_is_dir {
                            true => RevisionKey::LinkIsDir,
                            false => RevisionKey::Other,
                        };
                        repo.revisions.push((digest, key));
                        found.stray.insert(layout.revision_dir(repository, &digest));
                        if !link_is_dir {
                            repo.opaque = true;
                            found.warnings.push(Warning::new(
                                WarningKind::UnexpectedEntry,
                                path(),
                                Some(repository),
                                "not part of the registry's storage layout, inside a manifest revision; the repository is kept whole",
                            ));
                        }
                    }
                    Key::LayerLinkOther { digest, .. } => {
                        repo.layer_links.push(digest);
                        found
                            .stray
                            .insert(layout.layer_link_dir(repository, &digest));
                        repo.opaque = true;
                        found.warnings.push(Warning::new(
                            WarningKind::UnexpectedEntry,
                            path(),
                            Some(repository),
                            "not part of the registry's storage layout, inside a layer link; the repository is kept whole",
                        ));
                    }
                    Key::ForeignRevision { .. } => {
                        repo.opaque = true;
                        found.warnings.push(Warning::new(
                            WarningKind::UnsupportedDigest,
                            path(),
                            Some(repository),
                            "manifest under a digest algorithm regsweep does not follow; repository kept whole",
                        ));
                    }
                    Key::TagCurrent { tag, .. } => {
                        let etag = bare_etag(meta).map(str::to_owned);
                        repo.tags.entry(tag.to_owned()).or_default().current = Some((time, etag));
                        recent_dir = Some(layout.tag_dir(repository, tag));
                    }
                    Key::TagIndex { tag, digest, .. } => {
                        if suspect(&digest, options.check_tag_index_links) {
                            repo.suspect_links
                                .push((digest, path(), TAG_INDEX_LINK_READ));
                        }
                        repo.tags
                            .entry(tag.to_owned())
                            .or_default()
                            .history
                            .push((digest, time));
                        recent_dir = Some(layout.tag_index_entry_dir(repository, tag, &digest));
                    }
                    Key::Upload { uuid, rest, .. } => {
                        let upload = repo.uploads.entry(uuid.to_owned()).or_default();
                        upload.keys.push(meta.location.as_ref().to_owned());
                        upload.last_activity = upload.last_activity.max(Some(time));
                        if rest == names::DATA {
                            upload.bytes = meta.size;
                        }
                        upload.started_at |= rest == "startedat";
                    }
                    Key::RepositoryOther { .. } => {
                        repo.opaque = true;
                        found.warnings.push(Warning::new(
                            WarningKind::UnexpectedEntry,
                            path(),
                            Some(repository),
                            "not part of the registry's storage layout, inside a repository's metadata; the repository is kept whole",
                        ));
                    }
                    Key::BlobData(_) | Key::Other => {}
                }
                if let (true, Some(dir)) = (recent, recent_dir) {
                    found.note_recent(dir, time);
                }
            }
        }
    }
}

async fn build_async(
    storage: &S3Storage,
    options: ListOptions,
    interrupt: &Interrupt,
    progress: &Task,
) -> Result<(Index, Listing)> {
    let layout = storage.layout();
    let v2 = layout.v2().to_path_buf();
    let mut found = Found::default();
    // What is right below v2/blobs/ and v2/blobs/sha256/: the shards to list.
    let blobs_dir = v2.join(names::BLOBS);
    let (algorithms, odd) = storage.list_dirs(&blobs_dir).await?;
    found
        .warnings
        .extend(odd.iter().map(|m| odd_key(storage, m)));
    let mut ranges = Vec::new();
    for algorithm in algorithms {
        if algorithm != crate::digest::SHA256 {
            found.warnings.push(Warning::new(
                WarningKind::UnsupportedDigest,
                blobs_dir.join(&algorithm),
                None,
                "blob storage for a digest algorithm other than sha256; kept",
            ));
            continue;
        }
        // The shards in sixteen slices, by the first hex digit.
        let sha256 = blobs_dir.join(&algorithm);
        let under = |digit: u32| {
            char::from_digit(digit, 16).map(|d| format!("{}/{d}", super::path_str(&sha256)))
        };
        ranges.extend((0..16).map(|i| KeyRange {
            prefix: sha256.clone(),
            start: if i == 0 { None } else { under(i) },
            end: under(i + 1),
        }));
    }
    // Repositories: the top-level names in up to sixteen slices of the
    // same number of names.
    let repositories_dir = layout.repositories_dir();
    let (tops, odd) = storage.list_dirs(&repositories_dir).await?;
    found
        .warnings
        .extend(odd.iter().map(|m| odd_key(storage, m)));
    let slices = tops.len().clamp(1, REPOSITORY_SLICES);
    let boundary = |i: usize| {
        (i < slices).then(|| {
            let top = &tops[i * tops.len() / slices];
            format!("{}/{top}/", super::path_str(&repositories_dir))
        })
    };
    ranges.extend((0..slices).map(|i| KeyRange {
        prefix: repositories_dir.clone(),
        start: if i == 0 { None } else { boundary(i) },
        end: boundary(i + 1),
    }));
    interrupt.check(Phase::Index)?;
    let mut listings = stream::iter(ranges)
        .map(|range| storage.list_into(range, options, interrupt, progress))
        .buffer_unordered(storage.concurrency());
    while let Some(listed) = listings.next().await {
        found.merge(listed?);
    }
    drop(listings);
    interrupt.check(Phase::Index)?;
    assemble(storage, found, options, interrupt).await
}

/// Slices of the repositories' keys listed in parallel.
const REPOSITORY_SLICES: usize = 16;

/// The keys under `prefix` from `start` (inclusive) to `end` (exclusive):
/// one listing, page after page, of a slice of the bucket.
struct KeyRange {
    prefix: PathBuf,
    start: Option<String>,
    end: Option<String>,
}

/// A key just before `start`, for a listing to start after: `start` with
/// its last character one lower, then `~`. Keys between it and `start` are
/// listed and skipped, never missed.
fn just_before(start: &str) -> String {
    let mut chars: Vec<char> = start.chars().collect();
    if let Some(last) = chars.pop() {
        if let Some(lower) = char::from_u32(last as u32 - 1).filter(|_| last as u32 > 0) {
            chars.push(lower);
            chars.push('~');
        }
    }
    chars.into_iter().collect()
}

/// A key where the registry writes none.
fn odd_key(storage: &S3Storage, meta: &ObjectMeta) -> Warning {
    Warning::new(
        WarningKind::UnexpectedEntry,
        PathBuf::from(meta.location.as_ref()),
        None,
        format!(
            "{}: not part of the registry's storage layout; kept",
            storage.url(Path::new(meta.location.as_ref()))
        ),
    )
}

/// What a GET of a link found.
enum Read {
    Suspect(usize, PathBuf, Option<String>),
    TagCurrent(usize, String, LinkContent),
    Revision(usize, Digest, LinkContent),
    Foreign(usize, String, String, LinkContent),
    StartedAt(usize, String, Option<SystemTime>),
}

async fn read_link(storage: &S3Storage, path: &Path) -> Result<LinkContent> {
    match storage.get(path, MAX_LINK_BYTES as u64).await {
        Ok(Fetched::Bytes(bytes)) => Ok(parse_link(&bytes)),
        Ok(Fetched::Missing) => Ok(LinkContent::Missing),
        Ok(Fetched::TooLarge(size)) => Ok(LinkContent::Invalid(format!(
            "{size} bytes, longer than {MAX_LINK_BYTES}"
        ))),
        // The index would be incomplete.
        Err(e) => Err(storage.error(path, e)),
    }
}

/// Reads what names cannot tell, then builds the index.
async fn assemble(
    storage: &S3Storage,
    mut found: Found,
    options: ListOptions,
    interrupt: &Interrupt,
) -> Result<(Index, Listing)> {
    let layout = storage.layout();
    let mut names: Vec<String> = found.repositories.keys().cloned().collect();
    names.sort_unstable();
    let mut reads = Vec::new();
    // Current links the ETag shows; the others are read.
    let mut current: HashMap<(usize, String), LinkContent> = HashMap::new();
    for (r, name) in names.iter().enumerate() {
        let repo = &found.repositories[name];
        for (tag, t) in &repo.tags {
            match t.current_from_etag() {
                Some(digest) => {
                    current.insert((r, tag.clone()), LinkContent::Digest(digest));
                }
                None if t.current.is_some() => {
                    reads.push((r, ReadKind::TagCurrent(tag.clone())));
                }
                None => {}
            }
        }
        for (digest, key) in &repo.revisions {
            if *key == (RevisionKey::Link { shows_path: false }) {
                reads.push((r, ReadKind::Revision(*digest)));
            }
        }
        for (algorithm, hex) in &repo.foreign_links {
            reads.push((r, ReadKind::Foreign(algorithm.clone(), hex.clone())));
        }
        for (uuid, upload) in &repo.uploads {
            if upload.started_at {
                reads.push((r, ReadKind::StartedAt(uuid.clone())));
            }
        }
        for (digest, path, reads_as) in &repo.suspect_links {
            reads.push((r, ReadKind::Suspect(*digest, path.clone(), reads_as)));
        }
    }
    let names_ref = &names;
    let results: Vec<Read> = stream::iter(reads)
        .map(|(r, kind)| async move {
            interrupt.check(Phase::Index)?;
            let name = &names_ref[r];
            Ok::<_, Error>(match kind {
                ReadKind::Suspect(digest, path, reads_as) => {
                    let content = read_link(storage, &path).await?;
                    Read::Suspect(r, path, judge_link(&digest, content, reads_as))
                }
                ReadKind::TagCurrent(tag) => {
                    let path = layout.tag_current_link(name, &tag);
                    let content = read_link(storage, &path).await?;
                    Read::TagCurrent(r, tag, content)
                }
                ReadKind::Revision(digest) => {
                    let path =
                        crate::storage::layout::link_file(&layout.revision_dir(name, &digest));
                    Read::Revision(r, digest, read_link(storage, &path).await?)
                }
                ReadKind::Foreign(algorithm, hex) => {
                    let dir = layout.layer_link_dir_for(name, &algorithm, &hex);
                    let content =
                        read_link(storage, &crate::storage::layout::link_file(&dir)).await?;
                    Read::Foreign(r, algorithm, hex, content)
                }
                ReadKind::StartedAt(uuid) => {
                    let path = layout.uploads_dir(name).join(&uuid).join("startedat");
                    let started = match storage.get(&path, MAX_STARTED_AT_BYTES).await {
                        Ok(Fetched::Bytes(bytes)) => std::str::from_utf8(&bytes)
                            .ok()
                            .and_then(clock::parse_rfc3339),
                        Ok(Fetched::Missing | Fetched::TooLarge(_)) => None,
                        Err(e) => return Err(storage.error(&path, e)),
                    };
                    Read::StartedAt(r, uuid, started)
                }
            })
        })
        .buffer_unordered(storage.concurrency())
        .try_collect()
        .await?;
    let mut revision_content: HashMap<(usize, Digest), LinkContent> = HashMap::new();
    let mut foreign: HashMap<(usize, String, String), LinkContent> = HashMap::new();
    let mut started: HashMap<(usize, String), SystemTime> = HashMap::new();
    let mut warnings = std::mem::take(&mut found.warnings);
    for read in results {
        match read {
            Read::Suspect(r, path, Some(problem)) => warnings.push(Warning::new(
                WarningKind::InvalidLink,
                path,
                Some(&names[r]),
                problem,
            )),
            Read::Suspect(..) => {}
            Read::TagCurrent(r, tag, c) => {
                current.insert((r, tag), c);
            }
            Read::Revision(r, d, c) => {
                revision_content.insert((r, d), c);
            }
            Read::Foreign(r, a, h, c) => {
                foreign.insert((r, a, h), c);
            }
            Read::StartedAt(r, uuid, Some(t)) => {
                started.insert((r, uuid), t);
            }
            Read::StartedAt(..) => {}
        }
    }
    let mut repositories = Vec::with_capacity(names.len());
    let mut listing = Listing {
        recent: std::mem::take(&mut found.recent),
        stray: std::mem::take(&mut found.stray),
        keys: found.keys,
        ..Listing::default()
    };
    for (r, name) in names.iter().enumerate() {
        let Some(mut f) = found.repositories.remove(name) else {
            continue;
        };
        let mut repo = Repository {
            name: name.clone(),
            opaque: f.opaque,
            ..Repository::default()
        };
        f.layer_links.sort_unstable();
        f.layer_links.dedup();
        repo.layer_links = f.layer_links;
        for (algorithm, hex) in f.foreign_links {
            let dir = layout.layer_link_dir_for(name, &algorithm, &hex);
            match foreign.remove(&(r, algorithm.clone(), hex.clone())) {
                Some(LinkContent::Digest(target)) => repo.foreign_links.push(ForeignLink {
                    algorithm,
                    hex,
                    target,
                }),
                other => {
                    let why = match other {
                        Some(LinkContent::Invalid(reason)) => reason,
                        Some(LinkContent::Missing) | None => "no link file".into(),
                        _ => "it does not name a sha256 blob".into(),
                    };
                    warnings.push(Warning::new(
                        WarningKind::InvalidLink,
                        crate::storage::layout::link_file(&dir),
                        Some(name),
                        format!("invalid link under another digest algorithm ({why}); kept"),
                    ));
                }
            }
        }
        f.signatures.sort_unstable();
        // Per digest, the most telling key first: its link, then a link
        // that is a "directory", then anything else.
        f.revisions.sort_unstable();
        f.revisions.dedup_by_key(|(d, _)| *d);
        for (digest, key) in f.revisions {
            let linked = match key {
                RevisionKey::Link { shows_path: true } => true,
                RevisionKey::Link { shows_path: false } => {
                    let content = revision_content
                        .remove(&(r, digest))
                        .unwrap_or(LinkContent::Missing);
                    revision_link(layout, &mut repo, &digest, content, &mut warnings)
                }
                // The registry cannot read it, as on a filesystem where
                // `link` is a directory.
                RevisionKey::LinkIsDir => revision_link(
                    layout,
                    &mut repo,
                    &digest,
                    LinkContent::Invalid(
                        "`link` is a directory (keys below it), not a file".into(),
                    ),
                    &mut warnings,
                ),
                // A revision directory without a link: a deleted manifest.
                RevisionKey::Other => false,
            };
            let start = f.signatures.partition_point(|(rev, _)| *rev < digest);
            let signatures = f.signatures[start..]
                .iter()
                .take_while(|(rev, _)| *rev == digest)
                .map(|(_, sig)| *sig)
                .collect();
            repo.revisions.push(Revision {
                digest,
                linked,
                signatures,
            });
        }
        repo.revision_link_targets.sort_unstable();
        for (tag_name, t) in f.tags {
            let content = current.remove(&(r, tag_name.clone()));
            let current_digest = match content {
                Some(LinkContent::Digest(d)) => Some(d),
                other => {
                    let why = match other {
                        None | Some(LinkContent::Missing) => "missing".to_owned(),
                        Some(LinkContent::OtherAlgorithm(text)) => {
                            format!("unsupported digest {text}")
                        }
                        Some(LinkContent::Invalid(reason)) => reason,
                        Some(LinkContent::Digest(_)) => unreachable!("matched above"),
                    };
                    warnings.push(Warning::new(
                        WarningKind::InvalidTagLink,
                        layout.tag_current_link(name, &tag_name),
                        Some(name),
                        format!(
                            "tag `{tag_name}` has an invalid current link ({why}); every manifest in its history is kept"
                        ),
                    ));
                    None
                }
            };
            let mut entries = t.history;
            // One entry per digest, at its latest time.
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            entries.dedup_by_key(|(d, _)| *d);
            let history: Vec<Digest> = entries.iter().map(|(d, _)| *d).collect();
            if options.tag_history_times {
                let times = entries.iter().map(|(_, t)| *t).collect();
                listing
                    .tag_history_times
                    .insert((r as u32, repo.tags.len() as u32), times);
            }
            repo.tags.push(Tag {
                name: tag_name,
                pushed: current_digest.and(t.current.map(|(time, _)| time)),
                current: current_digest,
                history,
            });
        }
        repo.uploads = f.uploads.len();
        for (uuid, u) in f.uploads {
            let dir = layout.uploads_dir(name).join(&uuid);
            let path = dir
                .strip_prefix(layout.root())
                .unwrap_or(&dir)
                .to_path_buf();
            let started_at = started.remove(&(r, uuid));
            let last_activity = u.last_activity.max(started_at).unwrap_or(UNIX_EPOCH);
            listing.upload_keys.insert(path.clone(), u.keys);
            listing.uploads.push(Upload {
                repository: r as u32,
                path,
                started: started_at,
                last_activity,
                bytes: u.bytes,
                temporary_files: Vec::new(),
            });
        }
        repositories.push(repo);
    }
    let mut blobs: Vec<Blob> = found
        .blobs
        .into_iter()
        .map(|(digest, size)| Blob::new(digest, Some(size)))
        .collect();
    blobs.sort_unstable_by_key(|b| b.digest);
    blobs.dedup_by_key(|b| b.digest);
    listing.uploads.sort_by(|a, b| a.path.cmp(&b.path));
    let index = Index {
        blobs,
        repositories,
        protected: DigestSet::default(),
        warnings,
        files: listing.keys,
        shard_times: Vec::new(),
    };
    Ok((index, listing))
}

/// What a key under a revision's directory says of it, most telling first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RevisionKey {
    /// Its `link`, and whether the ETag shows the content its path implies.
    Link { shows_path: bool },
    /// Keys below `link/`.
    LinkIsDir,
    /// Anything else (signatures, stray keys).
    Other,
}

/// What to GET.
enum ReadKind {
    Suspect(Digest, PathBuf, &'static str),
    TagCurrent(String),
    Revision(Digest),
    Foreign(String, String),
    StartedAt(String),
}

/// A revision link whose content is not known from its ETag, read as the
/// registry reads it. Returns whether it exists.
fn revision_link(
    layout: &crate::storage::layout::Layout,
    repo: &mut Repository,
    digest: &Digest,
    content: LinkContent,
    warnings: &mut Vec<Warning>,
) -> bool {
    let missing = content == LinkContent::Missing;
    // No symbolic links in a bucket.
    let Some(problem) = judge_revision_link(repo, digest, content, || false) else {
        return !missing;
    };
    warnings.push(Warning::new(
        WarningKind::InvalidLink,
        crate::storage::layout::link_file(&layout.revision_dir(&repo.name, digest)),
        Some(&repo.name),
        problem,
    ));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_starts_just_before_its_slice() {
        assert_eq!(just_before("reg/blobs/sha256/1"), "reg/blobs/sha256/0~");
        assert_eq!(just_before("r/repositories/lib/"), "r/repositories/lib.~");
        // Every key of the previous slice sorts before it, every key of
        // the slice after.
        let before = just_before("r/repositories/b/");
        for key in [
            "r/repositories/a/x",
            "r/repositories/a.b/x",
            "r/repositories/a~/x",
        ] {
            assert!(key < before.as_str(), "{key}");
        }
        assert!(before.as_str() < "r/repositories/b/_layers");
    }
}

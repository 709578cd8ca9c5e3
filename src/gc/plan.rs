//! Plan: the list of what a sweep deletes, each with the reason it is
//! garbage, in the order the sweep deletes it; and the counts before and after.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::{Digest, DigestSet};
use crate::gc::mark::Marking;
use crate::index::{BlobId, Index};
use crate::storage::fs::hygiene::{TemporaryFile, Upload};

/// What a candidate is. The order is the sweep order: each step only removes
/// things nothing left behind still points at, so a sweep stopped anywhere
/// leaves a registry that serves every live image, and a re-run finishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateKind {
    /// `_manifests/tags/<tag>/index/sha256/<hex>/`: history entry of a dead manifest.
    TagIndexEntry,
    /// `_manifests/revisions/sha256/<hex>/`: a dead manifest revision.
    Manifest,
    /// `_manifests/tags/<tag>/`: a tag a retention policy deletes, whole
    /// (current link and history), as the registry's API untags. After the
    /// manifests it held: until then the tag names them, and that is what
    /// makes a re-run after an interruption release them again (without
    /// `-m`, a manifest no tag names any more would be an ordinary untagged
    /// revision, and stay).
    Tag,
    /// `_layers/sha256/<hex>/`: a link to a dead blob.
    LayerLink,
    /// `blobs/sha256/<2 hex>/<hex>/`: a dead blob.
    Blob,
    /// A stray `*.tmp` file an interrupted write of the registry left.
    TemporaryFile,
    /// `_uploads/<uuid>/`: an upload nobody touched for longer than
    /// `--purge-uploads-older-than`.
    Upload,
    /// The `_`-metadata of a repository left with no tags and no manifests
    /// (`--remove-empty-repos`), then its directory if nothing else is in it.
    Repository,
}

impl CandidateKind {
    /// Every kind, in sweep order.
    pub const ALL: [CandidateKind; 8] = [
        CandidateKind::TagIndexEntry,
        CandidateKind::Manifest,
        CandidateKind::Tag,
        CandidateKind::LayerLink,
        CandidateKind::Blob,
        CandidateKind::TemporaryFile,
        CandidateKind::Upload,
        CandidateKind::Repository,
    ];

    /// The name used in listings and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            CandidateKind::TagIndexEntry => "tag_index_entry",
            CandidateKind::Manifest => "manifest",
            CandidateKind::Tag => "tag",
            CandidateKind::LayerLink => "layer_link",
            CandidateKind::Blob => "blob",
            CandidateKind::TemporaryFile => "temporary_file",
            CandidateKind::Upload => "upload",
            CandidateKind::Repository => "repository",
        }
    }

    /// Whether a sweep looks again, before deleting candidates of this
    /// kind, at what the plan depends on (see [`crate::storage::fs::recheck`]). Stray
    /// temporary files are no content, and repositories are checked one by
    /// one, right before each goes.
    pub fn rechecked(&self) -> bool {
        !matches!(
            self,
            CandidateKind::TemporaryFile | CandidateKind::Repository
        )
    }

    /// Whether candidates of this kind are named by a digest.
    pub fn has_digest(&self) -> bool {
        !matches!(
            self,
            CandidateKind::TemporaryFile | CandidateKind::Upload | CandidateKind::Repository
        )
    }
}

/// Why a candidate is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A manifest no tag reaches (only when untagged manifests are deleted).
    UntaggedManifest,
    /// A revision directory whose link was removed (the manifest was
    /// deleted), or a history entry of such a manifest.
    DeletedManifest,
    /// No live manifest in any repository references the blob.
    UnreferencedBlob,
    /// A temporary file of a write that never finished.
    StrayTemporaryFile,
    /// An upload untouched for longer than `--purge-uploads-older-than`.
    StaleUpload,
    /// No tags and no manifests are left (`--remove-empty-repos`).
    EmptyRepository,
    /// A tag the retention policy deletes (the policy section of the
    /// report says which rule and why).
    PolicyTag,
    /// A manifest a tag the retention policy deletes points at, which no
    /// kept tag reaches.
    PolicyManifest,
    /// An untagged manifest only tags the retention policy deletes reached:
    /// their history, the children of their indexes, their referrers.
    ReleasedManifest,
}

impl Reason {
    /// The reason in words, for listings and JSON.
    pub fn describe(&self) -> &'static str {
        match self {
            Reason::UntaggedManifest => {
                "untagged manifest: no tag, index or live subject reaches it"
            }
            Reason::DeletedManifest => "manifest was deleted: its revision link is gone",
            Reason::UnreferencedBlob => "no live manifest in any repository references the blob",
            Reason::StrayTemporaryFile => {
                "temporary file of an interrupted write, older than --min-age"
            }
            Reason::StaleUpload => "upload untouched for longer than --purge-uploads-older-than",
            Reason::EmptyRepository => "repository left with no tags and no manifests",
            Reason::PolicyTag => "tag deleted by the retention policy",
            Reason::PolicyManifest => {
                "manifest of a tag the retention policy deletes; no kept tag or protected reference reaches it"
            }
            Reason::ReleasedManifest => {
                "untagged manifest that only tags the retention policy deletes reached"
            }
        }
    }
}

/// One thing to delete.
///
/// A `-m` plan holds one per file it would delete (hundreds of thousands at
/// 600k files), so the optional indices are `u32`s with a sentinel rather
/// than `Option<u32>`s, the tag, foreign link and path indices share one
/// slot (no kind has two of them), and the size is 48 bits: 48 bytes in all,
/// not 88.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The digest in its path; for a link under another algorithm, the
    /// sha256 blob it links.
    pub digest: Digest,
    /// Index into [`Index::repositories`], for everything but blobs.
    repository: Slot,
    /// By kind: the tag (tag index entries, tags), the foreign link (layer
    /// links under another algorithm), the path (uploads, temporary files).
    slot: Slot,
    /// Blob size, for blobs and layer links; data size for uploads.
    bytes_low: u32,
    bytes_high: u16,
    /// What it is.
    pub kind: CandidateKind,
    /// Why it goes.
    pub reason: Reason,
}

/// An optional index: `u32::MAX` is none (no registry has that many
/// repositories, tags or paths).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    const NONE: Slot = Slot(u32::MAX);

    fn new(index: Option<u32>) -> Slot {
        index.map_or(Slot::NONE, |i| Slot(i.min(u32::MAX - 1)))
    }

    fn get(self) -> Option<u32> {
        (self != Slot::NONE).then_some(self.0)
    }
}

/// The largest size a candidate records: 48 bits (256 TiB) less the
/// "unknown" sentinel; a larger one is counted as this.
const MAX_CANDIDATE_BYTES: u64 = (1 << 48) - 2;
const NO_BYTES: u64 = (1 << 48) - 1;

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("kind", &self.kind)
            .field("repository", &self.repository())
            .field("tag", &self.tag())
            .field("digest", &self.digest)
            .field("foreign_link", &self.foreign_link())
            .field("bytes", &self.bytes())
            .field("reason", &self.reason)
            .field("path", &self.path())
            .finish()
    }
}

/// What identifies a candidate across two plans of the same index.
pub type CandidateKey = (CandidateKind, Option<u32>, Option<u32>, Option<u32>, Digest);

impl Candidate {
    /// A dead blob, and the base of every other candidate.
    pub fn blob(digest: Digest, bytes: Option<u64>) -> Candidate {
        Candidate {
            digest,
            repository: Slot::NONE,
            slot: Slot::NONE,
            bytes_low: 0,
            bytes_high: 0,
            kind: CandidateKind::Blob,
            reason: Reason::UnreferencedBlob,
        }
        .with_bytes(bytes)
    }

    /// The same, of another kind.
    pub fn of_kind(self, kind: CandidateKind) -> Candidate {
        Candidate { kind, ..self }
    }

    /// The same, for another reason.
    pub fn because(self, reason: Reason) -> Candidate {
        Candidate { reason, ..self }
    }

    /// The same, in the repository with this index.
    pub fn in_repository(self, repository: Option<u32>) -> Candidate {
        Candidate {
            repository: Slot::new(repository),
            ..self
        }
    }

    /// The same, under the tag with this index (tag index entries, tags).
    pub fn under_tag(self, tag: u32) -> Candidate {
        Candidate {
            slot: Slot::new(Some(tag)),
            ..self
        }
    }

    /// The same, as the foreign layer link with this index.
    pub fn as_foreign_link(self, link: u32) -> Candidate {
        Candidate {
            slot: Slot::new(Some(link)),
            ..self
        }
    }

    /// The same, at the path with this index in [`Plan::paths`] (uploads,
    /// temporary files).
    pub fn at_path(self, path: u32) -> Candidate {
        Candidate {
            slot: Slot::new(Some(path)),
            ..self
        }
    }

    /// The same, with this size.
    pub fn with_bytes(self, bytes: Option<u64>) -> Candidate {
        let bytes = bytes.map_or(NO_BYTES, |b| b.min(MAX_CANDIDATE_BYTES));
        Candidate {
            bytes_low: bytes as u32,
            bytes_high: (bytes >> 32) as u16,
            ..self
        }
    }

    /// Index into [`Index::repositories`], for everything but blobs.
    pub fn repository(&self) -> Option<u32> {
        self.repository.get()
    }

    /// Index into that repository's tags, for tag index entries and tags.
    pub fn tag(&self) -> Option<u32> {
        match self.kind {
            CandidateKind::TagIndexEntry | CandidateKind::Tag => self.slot.get(),
            _ => None,
        }
    }

    /// For a layer link under another digest algorithm: index into that
    /// repository's [`crate::index::Repository::foreign_links`].
    pub fn foreign_link(&self) -> Option<u32> {
        match self.kind {
            CandidateKind::LayerLink => self.slot.get(),
            _ => None,
        }
    }

    /// For uploads and temporary files: index into [`Plan::paths`].
    pub fn path(&self) -> Option<u32> {
        match self.kind {
            CandidateKind::Upload | CandidateKind::TemporaryFile => self.slot.get(),
            _ => None,
        }
    }

    /// Blob size, for blobs and layer links; data size for uploads.
    pub fn bytes(&self) -> Option<u64> {
        let bytes = u64::from(self.bytes_low) | u64::from(self.bytes_high) << 32;
        (bytes != NO_BYTES).then_some(bytes)
    }

    /// Its identity.
    pub fn key(&self) -> CandidateKey {
        (
            self.kind,
            self.repository(),
            self.tag(),
            self.foreign_link().or(self.path()),
            self.digest,
        )
    }

    /// Whether `self` and `other` are `<hex>` entries of one directory,
    /// named by their digest: blobs of one shard, or links and revisions of
    /// one repository (and tag).
    pub fn shares_parent_with(&self, other: &Candidate) -> bool {
        self.kind == other.kind
            && match self.kind {
                CandidateKind::Blob => self.digest.shard_byte() == other.digest.shard_byte(),
                CandidateKind::TagIndexEntry
                | CandidateKind::Manifest
                | CandidateKind::LayerLink => {
                    self.repository == other.repository
                        && self.tag() == other.tag()
                        && self.foreign_link().is_none()
                        && other.foreign_link().is_none()
                }
                _ => false,
            }
    }
}

/// `candidates` cut into runs that share a parent directory (see
/// [`Candidate::shares_parent_with`]): in plan order they come grouped, so
/// each run can be handled through one open descriptor of its directory,
/// and the kernel resolves one short name per call instead of a whole path.
pub fn parent_groups(candidates: &[Candidate]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..=candidates.len() {
        if i == candidates.len() || !candidates[start].shares_parent_with(&candidates[i]) {
            groups.push(start..i);
            start = i;
        }
    }
    groups
}

/// Why something the plan would delete is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptReason {
    /// Modified this long ago, within `--min-age`.
    TooRecent(Duration),
    /// A `_layers` link modified within `--min-age` points at the blob: a
    /// push may be about to reference it.
    RecentLink,
    /// Something too recent references it or lives in it (a manifest
    /// revision kept as a root, a link, an upload).
    DependsOnRecent,
}

impl KeptReason {
    /// In words.
    pub fn describe(&self, min_age: &str) -> String {
        match self {
            KeptReason::TooRecent(age) => format!(
                "kept: too recent (modified {} ago, within --min-age {min_age})",
                crate::duration::human(*age)
            ),
            KeptReason::RecentLink => format!(
                "kept: too recent (a _layers link to it was modified within --min-age {min_age})"
            ),
            KeptReason::DependsOnRecent => format!(
                "kept: too recent (referenced by, or holding, something modified within --min-age {min_age})"
            ),
        }
    }
}

/// Something the plan keeps although nothing live reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// What would have been deleted.
    pub candidate: Candidate,
    /// Why it stays.
    pub reason: KeptReason,
}

/// What `--min-age` holds back: candidates modified too recently, with
/// their age, and blobs that recent links point at.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    /// Candidates too recent to delete.
    pub items: HashMap<CandidateKey, Duration>,
    /// Blobs a recent `_layers` link points at.
    pub blobs: DigestSet,
}

impl Hold {
    fn of(&self, candidate: &Candidate) -> Option<KeptReason> {
        if let Some(age) = self.items.get(&candidate.key()) {
            return Some(KeptReason::TooRecent(*age));
        }
        (candidate.kind == CandidateKind::Blob && self.blobs.contains(&candidate.digest))
            .then_some(KeptReason::RecentLink)
    }
}

/// What a plan is asked to include besides dead blobs and manifests.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// Candidates held back by `--min-age`.
    pub hold: Option<&'a Hold>,
    /// Uploads found under `_uploads/`.
    pub uploads: &'a [Upload],
    /// Nothing modified after this is deleted (`now - min_age`); `None` for
    /// no minimum age.
    pub cutoff: Option<SystemTime>,
    /// Uploads last touched before this are purged.
    pub purge_uploads_before: Option<SystemTime>,
    /// Remove repositories left with no tags and no manifests.
    pub remove_empty_repos: bool,
    /// Stray temporary files found by a scan of the whole tree.
    pub temporary_files: &'a [TemporaryFile],
    /// The time of the run.
    pub now: Option<SystemTime>,
    /// Per repository, the (sorted) indices of the tags a retention policy
    /// deletes; repositories beyond its end lose none.
    pub dropped_tags: &'a [Vec<u32>],
}

/// Object counts of a registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Repositories.
    pub repositories: u64,
    /// Tags.
    pub tags: u64,
    /// Manifest revision directories: with a link, or left empty by a
    /// deletion through the registry's API (a sweep removes those, so they
    /// count here as they count in what it reclaims).
    pub manifests: u64,
    /// Manifests some tag points at.
    pub tagged_manifests: u64,
    /// Manifests no tag points at (an emptied revision directory among
    /// them).
    pub untagged_manifests: u64,
    /// Blob links in `_layers`.
    pub layer_links: u64,
    /// Blobs.
    pub blobs: u64,
    /// Bytes of blob data.
    pub blob_bytes: u64,
    /// Uploads in progress.
    pub uploads: u64,
}

/// What a plan frees, or a sweep freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reclaim {
    /// Tags (deleted by a retention policy).
    pub tags: u64,
    /// Tag history entries.
    pub tag_index_entries: u64,
    /// Manifest revision directories.
    pub manifests: u64,
    /// Blob links.
    pub layer_links: u64,
    /// Blobs.
    pub blobs: u64,
    /// Bytes of blob data.
    pub bytes: u64,
    /// Stray temporary files.
    pub temporary_files: u64,
    /// Stale uploads.
    pub uploads: u64,
    /// Bytes of upload data.
    pub upload_bytes: u64,
    /// Empty repositories.
    pub repositories: u64,
}

impl Reclaim {
    /// Counts `candidate` in.
    pub fn add(&mut self, candidate: &Candidate) {
        match candidate.kind {
            CandidateKind::TagIndexEntry => self.tag_index_entries += 1,
            CandidateKind::Manifest => self.manifests += 1,
            CandidateKind::Tag => self.tags += 1,
            CandidateKind::LayerLink => self.layer_links += 1,
            CandidateKind::Blob => {
                self.blobs += 1;
                self.bytes += candidate.bytes().unwrap_or(0);
            }
            CandidateKind::TemporaryFile => self.temporary_files += 1,
            CandidateKind::Upload => {
                self.uploads += 1;
                self.upload_bytes += candidate.bytes().unwrap_or(0);
            }
            CandidateKind::Repository => self.repositories += 1,
        }
    }

    /// Whether there is nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Reclaim::default()
    }
}

/// What one repository would free.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepositoryReclaim {
    /// The repository.
    pub name: String,
    /// Its tags a retention policy deletes.
    pub tags: u64,
    /// Its dead manifest revisions.
    pub manifests: u64,
    /// Its dead tag history entries.
    pub tag_index_entries: u64,
    /// Its dead blob links.
    pub layer_links: u64,
    /// Dead blobs it links or whose manifests it held. A dead blob linked
    /// from several repositories counts in each of them.
    pub blobs: u64,
    /// Bytes of those blobs.
    pub bytes: u64,
}

/// Repositories that still hold something a sweep did not delete: see
/// [`Plan::unfinished_repositories`].
#[derive(Debug, Clone, Default)]
pub struct UnfinishedRepositories(Vec<bool>);

impl UnfinishedRepositories {
    /// Whether `candidate` belongs to such a repository and so stays.
    pub fn hold(&self, candidate: &Candidate) -> bool {
        candidate
            .repository()
            .is_some_and(|r| self.0.get(r as usize) == Some(&true))
    }
}

/// The plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Candidates, in sweep order (by kind, then repository, then digest;
    /// repositories deepest name first).
    pub candidates: Vec<Candidate>,
    /// Paths of uploads and temporary files, relative to the storage root.
    pub paths: Vec<PathBuf>,
    /// The registry as indexed.
    pub before: Counts,
    /// Totals of `candidates`.
    pub reclaimable: Reclaim,
    /// Repositories with something to reclaim, most bytes first.
    pub repositories: Vec<RepositoryReclaim>,
    /// What would be garbage but is kept by `--min-age`, in sweep order.
    pub kept: Vec<Kept>,
    /// Totals of `kept`.
    pub kept_too_recent: Reclaim,
    /// Per repository candidate: live `_layers` links that go with it.
    pub links_with_repositories: HashMap<u32, u64>,
}

impl Plan {
    /// Builds the plan from the index and its marking: dead manifests, links
    /// and blobs, nothing held back.
    pub fn new(index: &Index, marking: &Marking) -> Plan {
        Plan::build(index, marking, &PlanOptions::default())
    }

    /// Builds the plan with `options`: candidates held back by `--min-age`
    /// go to [`Plan::kept`]; stale uploads, stray temporary files and empty
    /// repositories are added as asked.
    pub fn build(index: &Index, marking: &Marking, options: &PlanOptions) -> Plan {
        let mut plan = Plan {
            before: count(index),
            ..Plan::default()
        };
        let no_hold = Hold::default();
        let hold = options.hold.unwrap_or(&no_hold);
        let mut candidates = Vec::new();
        let mut kept = Vec::new();
        let push =
            |candidate: Candidate, candidates: &mut Vec<Candidate>, kept: &mut Vec<Kept>| -> bool {
                match hold.of(&candidate) {
                    Some(reason) => {
                        kept.push(Kept { candidate, reason });
                        false
                    }
                    None => {
                        candidates.push(candidate);
                        true
                    }
                }
            };
        let blob_bytes = |d: &Digest| index.blob(d).map(|b| b.bytes());
        let dead_blob = |d: &Digest| {
            index.blob(d).is_some()
                && !marking.live_blobs.contains(index, d)
                && hold.of(&Candidate::blob(*d, None)).is_none()
        };
        // Per repository: how many of its revisions go, how many things in
        // it are held back (for --remove-empty-repos).
        let mut emptied = vec![(0usize, 0usize, 0usize, 0usize); index.repositories.len()];
        for (ri, (repo, mark)) in index
            .repositories
            .iter()
            .zip(&marking.repositories)
            .enumerate()
        {
            let r = Some(ri as u32);
            let mut reclaim = RepositoryReclaim {
                name: repo.name.clone(),
                ..RepositoryReclaim::default()
            };
            let mut dead_blobs = DigestSet::default();
            let (gone, held, links_gone, tags_gone) = &mut emptied[ri];
            let dropped = options.dropped_tags.get(ri).map_or(&[][..], Vec::as_slice);
            if !mark.kept_whole {
                let linked = |d: &Digest| {
                    repo.revisions
                        .binary_search_by(|r| r.digest.cmp(d))
                        .is_ok_and(|i| repo.revisions[i].linked)
                };
                let tagged: DigestSet = repo.tags.iter().filter_map(|t| t.current).collect();
                for (ti, tag) in repo.tags.iter().enumerate() {
                    if dropped.binary_search(&(ti as u32)).is_ok() {
                        // The whole directory goes, history and all.
                        let candidate = Candidate::blob(
                            tag.current.unwrap_or(Digest::from_bytes([0; 32])),
                            None,
                        )
                        .of_kind(CandidateKind::Tag)
                        .in_repository(r)
                        .under_tag(ti as u32)
                        .because(Reason::PolicyTag);
                        if push(candidate, &mut candidates, &mut kept) {
                            reclaim.tags += 1;
                            *tags_gone += 1;
                        } else {
                            *held += 1;
                        }
                        continue;
                    }
                    for digest in tag.history.iter().filter(|d| !mark.is_live(d)) {
                        let candidate = Candidate::blob(*digest, None)
                            .of_kind(CandidateKind::TagIndexEntry)
                            .in_repository(r)
                            .under_tag(ti as u32)
                            .because(if linked(digest) {
                                Reason::UntaggedManifest
                            } else {
                                Reason::DeletedManifest
                            });
                        if push(candidate, &mut candidates, &mut kept) {
                            reclaim.tag_index_entries += 1;
                        } else {
                            *held += 1;
                        }
                    }
                }
                for revision in repo.revisions.iter().filter(|r| !mark.is_live(&r.digest)) {
                    let candidate = Candidate::blob(revision.digest, None)
                        .of_kind(CandidateKind::Manifest)
                        .in_repository(r)
                        .because(if !revision.linked {
                            Reason::DeletedManifest
                        } else if !mark.released.contains(&revision.digest) {
                            Reason::UntaggedManifest
                        } else if tagged.contains(&revision.digest) {
                            Reason::PolicyManifest
                        } else {
                            Reason::ReleasedManifest
                        });
                    if push(candidate, &mut candidates, &mut kept) {
                        reclaim.manifests += 1;
                        *gone += 1;
                        if dead_blob(&revision.digest) {
                            dead_blobs.insert(revision.digest);
                        }
                    } else {
                        *held += 1;
                    }
                }
            }
            for digest in repo
                .layer_links
                .iter()
                .filter(|d| !marking.live_blobs.contains(index, d))
            {
                let candidate = Candidate::blob(*digest, blob_bytes(digest))
                    .of_kind(CandidateKind::LayerLink)
                    .in_repository(r);
                if push(candidate, &mut candidates, &mut kept) {
                    reclaim.layer_links += 1;
                    *links_gone += 1;
                    if dead_blob(digest) {
                        dead_blobs.insert(*digest);
                    }
                } else {
                    *held += 1;
                }
            }
            for (fi, link) in repo.foreign_links.iter().enumerate() {
                if marking.live_blobs.contains(index, &link.target) {
                    continue;
                }
                let candidate = Candidate::blob(link.target, blob_bytes(&link.target))
                    .of_kind(CandidateKind::LayerLink)
                    .in_repository(r)
                    .as_foreign_link(fi as u32);
                if push(candidate, &mut candidates, &mut kept) {
                    reclaim.layer_links += 1;
                    *links_gone += 1;
                    if dead_blob(&link.target) {
                        dead_blobs.insert(link.target);
                    }
                } else {
                    *held += 1;
                }
            }
            reclaim.blobs = dead_blobs.len() as u64;
            reclaim.bytes = dead_blobs.iter().filter_map(blob_bytes).sum();
            if reclaim.tags
                + reclaim.manifests
                + reclaim.tag_index_entries
                + reclaim.layer_links
                + reclaim.blobs
                > 0
            {
                plan.repositories.push(reclaim);
            }
        }
        for (id, blob) in index.blobs.iter().enumerate() {
            if !marking.live_blobs.contains_id(id as BlobId) {
                push(
                    Candidate::blob(blob.digest, Some(blob.bytes())),
                    &mut candidates,
                    &mut kept,
                );
            }
        }

        // Uploads: purged when stale, their stray temporary files removed
        // when old enough; both never within --min-age.
        let mut uploads_left = vec![0usize; index.repositories.len()];
        for upload in options.uploads {
            let r = upload.repository as usize;
            uploads_left[r] += 1;
            let age = |t: SystemTime| {
                options
                    .now
                    .map_or(Duration::ZERO, |now| crate::clock::age(now, t))
            };
            let too_recent = |t: SystemTime| options.cutoff.is_some_and(|c| t > c);
            let stale = options
                .purge_uploads_before
                .is_some_and(|before| upload.last_activity < before);
            if stale {
                let candidate = Candidate::blob(Digest::from_bytes([0; 32]), Some(upload.bytes))
                    .of_kind(CandidateKind::Upload)
                    .in_repository(Some(upload.repository))
                    .at_path(plan.paths.len() as u32)
                    .because(Reason::StaleUpload);
                plan.paths.push(upload.path.clone());
                if too_recent(upload.last_activity) {
                    kept.push(Kept {
                        candidate,
                        reason: KeptReason::TooRecent(age(upload.last_activity)),
                    });
                    emptied[r].1 += 1;
                } else {
                    candidates.push(candidate);
                    uploads_left[r] -= 1;
                }
                continue;
            }
            for (path, modified) in &upload.temporary_files {
                let candidate = Candidate::blob(Digest::from_bytes([0; 32]), None)
                    .of_kind(CandidateKind::TemporaryFile)
                    .in_repository(Some(upload.repository))
                    .at_path(plan.paths.len() as u32)
                    .because(Reason::StrayTemporaryFile);
                plan.paths.push(path.clone());
                if too_recent(*modified) {
                    kept.push(Kept {
                        candidate,
                        reason: KeptReason::TooRecent(age(*modified)),
                    });
                } else {
                    candidates.push(candidate);
                }
            }
        }

        for file in options.temporary_files {
            let candidate = Candidate::blob(Digest::from_bytes([0; 32]), None)
                .of_kind(CandidateKind::TemporaryFile)
                .in_repository(file.repository)
                .at_path(plan.paths.len() as u32)
                .because(Reason::StrayTemporaryFile);
            plan.paths.push(file.path.clone());
            if options.cutoff.is_some_and(|c| file.modified > c) {
                let age = options
                    .now
                    .map_or(Duration::ZERO, |now| crate::clock::age(now, file.modified));
                kept.push(Kept {
                    candidate,
                    reason: KeptReason::TooRecent(age),
                });
            } else {
                candidates.push(candidate);
            }
        }

        if options.remove_empty_repos {
            let mut empty: Vec<Candidate> = Vec::new();
            for (ri, (repo, mark)) in index
                .repositories
                .iter()
                .zip(&marking.repositories)
                .enumerate()
            {
                let (gone, held, links_gone, tags_gone) = emptied[ri];
                let empty_after = !mark.kept_whole
                    && !repo.opaque
                    && repo.tags.len() == tags_gone
                    && gone == repo.revisions.len()
                    && held == 0
                    && uploads_left[ri] == 0
                    && repo.uploads
                        == options
                            .uploads
                            .iter()
                            .filter(|u| u.repository as usize == ri)
                            .count();
                if !empty_after {
                    continue;
                }
                let candidate = Candidate::blob(Digest::from_bytes([0; 32]), None)
                    .of_kind(CandidateKind::Repository)
                    .in_repository(Some(ri as u32))
                    .because(Reason::EmptyRepository);
                if hold.of(&candidate).is_none() {
                    let links = repo.layer_links.len() + repo.foreign_links.len();
                    plan.links_with_repositories
                        .insert(ri as u32, links.saturating_sub(links_gone) as u64);
                    empty.push(candidate);
                } else {
                    push(candidate, &mut candidates, &mut kept);
                }
            }
            // Nested repositories first, so that a parent emptied too can go.
            empty.sort_by(|a, b| {
                let name =
                    |c: &Candidate| &index.repositories[c.repository().unwrap_or(0) as usize].name;
                name(b).cmp(name(a))
            });
            candidates.extend(empty);
        }

        // Stable: within a kind, repositories and digests keep index order.
        candidates.sort_by_key(|c| c.kind);
        kept.sort_by_key(|k| k.candidate.kind);
        plan.repositories
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        candidates.iter().for_each(|c| plan.reclaimable.add(c));
        kept.iter()
            .for_each(|k| plan.kept_too_recent.add(&k.candidate));
        plan.candidates = candidates;
        plan.kept = kept;
        plan
    }

    /// Adds to [`Plan::kept`] what `first` (a plan of the same index
    /// without `--min-age`) deleted and this plan neither deletes nor keeps
    /// for a reason of its own: what a manifest kept as a root references.
    pub fn keep_difference(&mut self, first: &Plan, hold: &Hold) {
        let listed: std::collections::HashSet<CandidateKey> = self
            .candidates
            .iter()
            .chain(self.kept.iter().map(|k| &k.candidate))
            .map(Candidate::key)
            .collect();
        for candidate in first
            .candidates
            .iter()
            .filter(|c| !listed.contains(&c.key()))
        {
            // A recent revision that became a root is too recent itself.
            let reason = hold.of(candidate).unwrap_or(KeptReason::DependsOnRecent);
            self.kept.push(Kept {
                candidate: *candidate,
                reason,
            });
            self.kept_too_recent.add(candidate);
        }
        self.kept.sort_by_key(|k| k.candidate.kind);
    }

    /// The candidates of each kind, in sweep order: (kind, positions),
    /// kinds without any left out.
    pub fn kind_ranges(&self) -> Vec<(CandidateKind, std::ops::Range<usize>)> {
        let mut ranges = Vec::new();
        let mut offset = 0;
        for kind in CandidateKind::ALL {
            let count = self.candidates[offset..]
                .iter()
                .take_while(|c| c.kind == kind)
                .count();
            if count > 0 {
                ranges.push((kind, offset..offset + count));
            }
            offset += count;
        }
        ranges
    }

    /// For the candidates of `kind`, which start at position `before`: the
    /// repositories (of `repositories`) with a candidate before it that is
    /// not `gone`. A repository goes only once everything else of it went,
    /// so for [`CandidateKind::Repository`] those stay; other kinds are
    /// never held back this way.
    pub fn unfinished_repositories(
        &self,
        kind: CandidateKind,
        before: usize,
        gone: &[bool],
        repositories: usize,
    ) -> UnfinishedRepositories {
        if kind != CandidateKind::Repository {
            return UnfinishedRepositories::default();
        }
        let mut unfinished = vec![false; repositories];
        for (c, g) in self.candidates[..before].iter().zip(gone) {
            if let (Some(r), false) = (c.repository(), *g) {
                unfinished[r as usize] = true;
            }
        }
        UnfinishedRepositories(unfinished)
    }

    /// The counts after the candidates for which `deleted` is true are gone.
    pub fn after(&self, deleted: impl Fn(usize) -> bool) -> Counts {
        let mut after = self.before;
        for (_, c) in self
            .candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| deleted(*i))
        {
            match c.kind {
                CandidateKind::TagIndexEntry | CandidateKind::TemporaryFile => {}
                CandidateKind::Manifest => {
                    // Tagged manifests are candidates only when the policy
                    // deletes every tag on them.
                    after.manifests = after.manifests.saturating_sub(1);
                    if c.reason == Reason::PolicyManifest {
                        after.tagged_manifests = after.tagged_manifests.saturating_sub(1);
                    } else {
                        after.untagged_manifests = after.untagged_manifests.saturating_sub(1);
                    }
                }
                CandidateKind::Tag => after.tags -= 1,
                CandidateKind::LayerLink => after.layer_links -= 1,
                CandidateKind::Blob => {
                    after.blobs -= 1;
                    after.blob_bytes -= c.bytes().unwrap_or(0);
                }
                CandidateKind::Upload => after.uploads = after.uploads.saturating_sub(1),
                CandidateKind::Repository => {
                    after.repositories -= 1;
                    let links = c
                        .repository()
                        .and_then(|r| self.links_with_repositories.get(&r));
                    after.layer_links -= links.copied().unwrap_or(0);
                }
            }
        }
        after
    }
}

/// Counts the registry as indexed.
pub fn count(index: &Index) -> Counts {
    let mut counts = Counts {
        repositories: index.repositories.len() as u64,
        blobs: index.blobs.len() as u64,
        blob_bytes: index.blobs.iter().map(|b| b.bytes()).sum(),
        ..Counts::default()
    };
    for repo in &index.repositories {
        counts.tags += repo.tags.len() as u64;
        counts.layer_links += (repo.layer_links.len() + repo.foreign_links.len()) as u64;
        counts.uploads += repo.uploads as u64;
        let tagged: DigestSet = repo.tags.iter().filter_map(|t| t.current).collect();
        for revision in &repo.revisions {
            counts.manifests += 1;
            // The registry serves no manifest through an emptied revision
            // directory, whatever tag names it.
            if revision.linked && tagged.contains(&revision.digest) {
                counts.tagged_manifests += 1;
            } else {
                counts.untagged_manifests += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestMap;
    use crate::gc::mark::{Loaded, Refs, mark_loaded};
    use crate::index::{Blob, Repository, Revision, Tag};
    use crate::storage::layout::Layout;

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    #[test]
    fn candidate_stays_48_bytes() {
        // A -m plan holds one per file it deletes: 405,717 at 600k files.
        assert_eq!(std::mem::size_of::<Candidate>(), 48);
    }

    #[test]
    fn candidate_reads_back_what_it_was_given() {
        for bytes in [
            None,
            Some(0),
            Some(1),
            Some(u64::from(u32::MAX) + 7),
            Some(MAX_CANDIDATE_BYTES),
        ] {
            assert_eq!(Candidate::blob(d(1), bytes).bytes(), bytes);
        }
        // Larger than 48 bits is counted as the largest, never as unknown.
        assert_eq!(
            Candidate::blob(d(1), Some(u64::MAX)).bytes(),
            Some(MAX_CANDIDATE_BYTES)
        );
        let entry = Candidate::blob(d(2), None)
            .of_kind(CandidateKind::TagIndexEntry)
            .in_repository(Some(7))
            .under_tag(3);
        assert_eq!(
            (
                entry.repository(),
                entry.tag(),
                entry.foreign_link(),
                entry.path()
            ),
            (Some(7), Some(3), None, None)
        );
        let link = Candidate::blob(d(2), Some(5))
            .of_kind(CandidateKind::LayerLink)
            .in_repository(Some(0))
            .as_foreign_link(4);
        assert_eq!(
            (
                link.repository(),
                link.tag(),
                link.foreign_link(),
                link.path()
            ),
            (Some(0), None, Some(4), None)
        );
        let upload = Candidate::blob(d(0), Some(9))
            .of_kind(CandidateKind::Upload)
            .in_repository(Some(u32::MAX - 1))
            .at_path(0);
        assert_eq!(
            (
                upload.repository(),
                upload.tag(),
                upload.foreign_link(),
                upload.path()
            ),
            (Some(u32::MAX - 1), None, None, Some(0))
        );
        assert_eq!(Candidate::blob(d(0), None).repository(), None);
    }

    #[test]
    fn parent_groups_split_where_the_directory_changes() {
        let blob = |first: u8, rest: u8| {
            let mut bytes = [rest; 32];
            bytes[0] = first;
            Candidate::blob(Digest::from_bytes(bytes), None)
        };
        let in_repo = |kind, repository, tag: Option<u32>, foreign_link: Option<u32>| {
            let c = Candidate::blob(d(9), None)
                .of_kind(kind)
                .in_repository(Some(repository));
            match (tag, foreign_link) {
                (Some(t), _) => c.under_tag(t),
                (_, Some(f)) => c.as_foreign_link(f),
                _ => c,
            }
        };
        let candidates = [
            in_repo(CandidateKind::TagIndexEntry, 0, Some(0), None),
            in_repo(CandidateKind::TagIndexEntry, 0, Some(0), None),
            in_repo(CandidateKind::TagIndexEntry, 0, Some(1), None),
            in_repo(CandidateKind::Manifest, 0, None, None),
            in_repo(CandidateKind::LayerLink, 0, None, None),
            in_repo(CandidateKind::LayerLink, 0, None, Some(0)),
            in_repo(CandidateKind::LayerLink, 1, None, None),
            in_repo(CandidateKind::LayerLink, 1, None, None),
            blob(0xab, 1),
            blob(0xab, 2),
            blob(0xac, 1),
        ];
        assert_eq!(
            parent_groups(&candidates),
            vec![0..2, 2..3, 3..4, 4..5, 5..6, 6..8, 8..10, 10..11]
        );
        assert!(parent_groups(&[]).is_empty());
    }

    /// Repository `r`: tag `t` pushed twice (1 then 2), each image with its own
    /// layer (11, 12) linked; an API-deleted revision 3; an orphan blob 30.
    fn fixture() -> (Index, DigestMap<Loaded>) {
        let repo = Repository {
            name: "r".into(),
            layer_links: vec![d(11), d(12)],
            revisions: vec![
                Revision {
                    digest: d(1),
                    linked: true,
                    signatures: Vec::new(),
                },
                Revision {
                    digest: d(2),
                    linked: true,
                    signatures: Vec::new(),
                },
                Revision {
                    digest: d(3),
                    linked: false,
                    signatures: Vec::new(),
                },
            ],
            tags: vec![Tag {
                name: "t".into(),
                current: Some(d(2)),
                history: vec![d(1), d(2), d(3)],
                pushed: None,
            }],
            ..Repository::default()
        };
        let index = Index {
            blobs: [1, 2, 3, 11, 12, 30]
                .iter()
                .map(|n| Blob::new(d(*n), Some(100 + u64::from(*n))))
                .collect(),
            repositories: vec![repo],
            ..Index::default()
        };
        let image = |layer: u8| -> Loaded {
            Ok(Refs {
                stored: vec![index.blob_id(&d(layer)).unwrap()].into(),
                ..Refs::default()
            })
        };
        let loaded = [(d(1), image(11)), (d(2), image(12))].into_iter().collect();
        (index, loaded)
    }

    fn plan(delete_untagged: bool) -> (Index, Plan) {
        let (index, loaded) = fixture();
        let marking = mark_loaded(&Layout::new("/s"), &index, &loaded, delete_untagged);
        let plan = Plan::new(&index, &marking);
        (index, plan)
    }

    #[test]
    fn candidates_come_in_sweep_order_with_their_reasons() {
        let (_, plan) = plan(true);
        let listed: Vec<(CandidateKind, Digest, Reason)> = plan
            .candidates
            .iter()
            .map(|c| (c.kind, c.digest, c.reason))
            .collect();
        assert_eq!(
            listed,
            vec![
                (CandidateKind::TagIndexEntry, d(1), Reason::UntaggedManifest),
                (CandidateKind::TagIndexEntry, d(3), Reason::DeletedManifest),
                (CandidateKind::Manifest, d(1), Reason::UntaggedManifest),
                (CandidateKind::Manifest, d(3), Reason::DeletedManifest),
                (CandidateKind::LayerLink, d(11), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(1), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(3), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(11), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(30), Reason::UnreferencedBlob),
            ]
        );
        assert_eq!(plan.reclaimable.bytes, 101 + 103 + 111 + 130);
    }

    #[test]
    fn a_dropped_tag_goes_whole_after_the_manifests_it_held() {
        let (index, loaded) = fixture();
        let dropped = vec![vec![0]];
        let marking = crate::gc::mark::mark_with_policy(
            &Layout::new("/s"),
            &index,
            &loaded,
            false,
            &[],
            &dropped,
        );
        let plan = Plan::build(
            &index,
            &marking,
            &PlanOptions {
                dropped_tags: &dropped,
                ..PlanOptions::default()
            },
        );
        let listed: Vec<(CandidateKind, Digest, Reason)> = plan
            .candidates
            .iter()
            .map(|c| (c.kind, c.digest, c.reason))
            .collect();
        assert_eq!(
            listed,
            vec![
                (CandidateKind::Manifest, d(1), Reason::ReleasedManifest),
                (CandidateKind::Manifest, d(2), Reason::PolicyManifest),
                (CandidateKind::Manifest, d(3), Reason::DeletedManifest),
                (CandidateKind::Tag, d(2), Reason::PolicyTag),
                (CandidateKind::LayerLink, d(11), Reason::UnreferencedBlob),
                (CandidateKind::LayerLink, d(12), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(1), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(2), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(3), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(11), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(12), Reason::UnreferencedBlob),
                (CandidateKind::Blob, d(30), Reason::UnreferencedBlob),
            ],
            "no history entries of the dropped tag: its directory goes whole"
        );
        assert_eq!(plan.reclaimable.tags, 1);
        assert_eq!(plan.repositories[0].tags, 1);
        let after = plan.after(|_| true);
        assert_eq!((after.tags, after.manifests), (0, 0));
        assert_eq!((after.tagged_manifests, after.untagged_manifests), (0, 0));
    }

    #[test]
    fn without_delete_untagged_only_deleted_manifests_and_orphans_go() {
        let (_, plan) = plan(false);
        let kinds: Vec<(CandidateKind, Digest)> =
            plan.candidates.iter().map(|c| (c.kind, c.digest)).collect();
        assert_eq!(
            kinds,
            vec![
                (CandidateKind::TagIndexEntry, d(3)),
                (CandidateKind::Manifest, d(3)),
                (CandidateKind::Blob, d(3)),
                (CandidateKind::Blob, d(30)),
            ]
        );
    }

    #[test]
    fn held_candidates_are_kept_and_a_recent_link_keeps_its_blob() {
        let (index, loaded) = fixture();
        let marking = mark_loaded(&Layout::new("/s"), &index, &loaded, true);
        let first = Plan::new(&index, &marking);
        let mut hold = Hold::default();
        let link = first
            .candidates
            .iter()
            .find(|c| c.kind == CandidateKind::LayerLink)
            .unwrap();
        hold.items.insert(link.key(), Duration::from_secs(60));
        hold.blobs.insert(link.digest);
        let options = PlanOptions {
            hold: Some(&hold),
            ..PlanOptions::default()
        };
        let mut plan = Plan::build(&index, &marking, &options);
        plan.keep_difference(&first, &hold);
        let kept: Vec<(CandidateKind, Digest, KeptReason)> = plan
            .kept
            .iter()
            .map(|k| (k.candidate.kind, k.candidate.digest, k.reason))
            .collect();
        assert_eq!(
            kept,
            vec![
                (
                    CandidateKind::LayerLink,
                    d(11),
                    KeptReason::TooRecent(Duration::from_secs(60))
                ),
                (CandidateKind::Blob, d(11), KeptReason::RecentLink),
            ]
        );
        assert_eq!(plan.candidates.len(), first.candidates.len() - 2);
        assert_eq!(plan.kept_too_recent.blobs, 1);
        assert_eq!(plan.reclaimable.bytes, first.reclaimable.bytes - 111);
        assert_eq!(
            plan.repositories[0].blobs, 2,
            "the held blob is not counted"
        );
    }

    #[test]
    fn counts_before_and_after() {
        let (_, plan) = plan(true);
        let before = plan.before;
        assert_eq!(
            (
                before.manifests,
                before.tagged_manifests,
                before.untagged_manifests
            ),
            (3, 1, 2),
            "the revision directory a deletion through the API emptied counts"
        );
        assert_eq!((before.layer_links, before.blobs, before.tags), (2, 6, 1));
        let after = plan.after(|_| true);
        assert_eq!(
            (
                after.manifests,
                after.tagged_manifests,
                after.untagged_manifests
            ),
            (1, 1, 0)
        );
        assert_eq!(
            before.manifests - after.manifests,
            plan.reclaimable.manifests,
            "the counts change by what the plan reclaims"
        );
        assert_eq!((after.layer_links, after.blobs), (1, 2));
        assert_eq!(after.blob_bytes, before.blob_bytes - plan.reclaimable.bytes);
        assert_eq!(plan.after(|_| false), before);
        assert_eq!(plan.repositories.len(), 1);
        assert_eq!(
            plan.repositories[0].blobs, 3,
            "manifest 1, deleted manifest 3, layer 11; not the orphan"
        );
    }
}

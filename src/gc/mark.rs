//! Mark: which manifests are live in each repository, and which blobs are
//! live anywhere.
//!
//! Roots, per repository: every tag's current manifest; every manifest in the
//! history of a tag whose current link is unreadable; and, unless untagged
//! manifests are being deleted, every manifest revision. From the roots,
//! liveness flows through index children, recursively. When untagged
//! manifests are deleted, a manifest whose `subject` is live in the same
//! repository is live too (signatures and SBOMs follow their image). A
//! revision link whose content names another manifest than its path makes
//! that manifest live with the one the path names: the registry serves it
//! in its place.
//!
//! A blob is live when a live manifest of any repository is it, or references
//! it (config, layers, schema1 `fsLayers`, artifact `blobs`), or is a schema1
//! signature of a live revision. A `subject` is a back-reference: it does not
//! keep its target alive.
//!
//! Extra roots can be given per repository ([`mark_with_roots`]): manifest
//! revisions too recent to delete (`--min-age`) and protected manifests
//! (`--protect`) are roots like tags, so what they reference stays with them.
//!
//! Tags a retention policy deletes ([`mark_with_policy`]) are no roots. What
//! they held — their current manifests, their history, and from there index
//! children and referrers (`subject`) — is *released*: not a root even
//! without `-m`, so it goes unless a kept tag, an extra root, or an untagged
//! revision outside the released set (without `-m`) still reaches it, or its
//! `subject` stays live.
//!
//! Damage is contained per repository: if any manifest a repository holds or
//! reaches cannot be read, nothing in that repository is deleted and every
//! blob it links stays, since the unreadable manifest might reference any of
//! them.
//!
//! Memory: a loaded manifest keeps its stored references as [`BlobId`]s, and
//! blob liveness is one bit per stored blob.

use rayon::prelude::*;

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::index::{BlobId, Index, Repository, Tag};
use crate::interrupt::{Interrupt, Phase};
use crate::manifest::{self, MAX_MANIFEST_BYTES, ManifestKind};
use crate::progress::Task;
use crate::storage::fs::dir::Dir;
use crate::storage::layout::{Layout, relative};
use crate::warning::{Warning, WarningKind};

/// The references of a loaded manifest, resolved against the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    /// Referenced blobs that are in storage.
    pub stored: Box<[BlobId]>,
    /// Referenced blobs that are not in storage, each with whether it is a
    /// foreign layer (which need not be).
    pub absent: Box<[(Digest, bool)]>,
    /// Child manifests.
    pub children: Box<[Digest]>,
    /// The manifest this one is about.
    pub subject: Option<Digest>,
    /// A Docker schema1 manifest: the only kind with `signatures/`.
    pub schema1: bool,
    /// The kind, as the registry reads it.
    pub kind: ManifestKind,
}

/// A manifest as loaded from its blob: its references, or why it could not be read.
pub type Loaded = Result<Refs, String>;

/// Which blobs are live: a bit per stored blob, and a set for referenced
/// digests that are not in storage.
#[derive(Debug, Clone, Default)]
pub struct LiveBlobs {
    bits: Vec<u64>,
    absent: DigestSet,
}

impl LiveBlobs {
    fn new(blobs: usize) -> LiveBlobs {
        LiveBlobs {
            bits: vec![0; blobs.div_ceil(64)],
            absent: DigestSet::default(),
        }
    }

    fn set(&mut self, id: BlobId) {
        self.bits[id as usize / 64] |= 1 << (id % 64);
    }

    fn insert(&mut self, index: &Index, digest: Digest) {
        match index.blob_id(&digest) {
            Some(id) => self.set(id),
            None => {
                self.absent.insert(digest);
            }
        }
    }

    fn union(mut self, other: LiveBlobs) -> LiveBlobs {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
        self.absent.extend(other.absent);
        self
    }

    /// Whether the stored blob `id` is live.
    pub fn contains_id(&self, id: BlobId) -> bool {
        self.bits[id as usize / 64] & (1 << (id % 64)) != 0
    }

    /// Whether `digest` is live, stored or not.
    pub fn contains(&self, index: &Index, digest: &Digest) -> bool {
        match index.blob_id(digest) {
            Some(id) => self.contains_id(id),
            None => self.absent.contains(digest),
        }
    }
}

/// What marking decided.
#[derive(Debug, Default)]
pub struct Marking {
    /// Per repository, in the order of [`Index::repositories`].
    pub repositories: Vec<RepositoryMark>,
    /// Blobs that stay.
    pub live_blobs: LiveBlobs,
    /// Damage found while reading manifests.
    pub warnings: Vec<Warning>,
    /// Manifests read.
    pub manifests_read: usize,
}

/// Liveness within one repository.
#[derive(Debug, Default)]
pub struct RepositoryMark {
    /// Manifests live in this repository (revisions or not).
    pub live: DigestSet,
    /// Nothing in this repository may be deleted (damage, or content
    /// regsweep cannot follow).
    pub kept_whole: bool,
    /// Manifests the tags deleted by a retention policy held (current,
    /// history, their children and referrers), live or not.
    pub released: DigestSet,
}

impl RepositoryMark {
    /// Whether `digest` is live in this repository.
    pub fn is_live(&self, digest: &Digest) -> bool {
        self.kept_whole || self.live.contains(digest)
    }
}

/// Reads the manifest stored as blob `digest` through `blob_shards`
/// (`blobs/sha256/`, held open): at most [`MAX_MANIFEST_BYTES`], never
/// through a symbolic link, and checked against its digest, so a damaged blob
/// cannot pass for a smaller manifest.
pub fn load(blob_shards: Option<&Dir>, index: &Index, digest: &Digest) -> Loaded {
    let size = readable_size(index, digest)?;
    let blob_shards = blob_shards.ok_or("blob storage cannot be opened")?;
    let bytes = blob_shards
        .read_to_end(
            relative::blob_data(digest),
            size as usize,
            MAX_MANIFEST_BYTES,
        )
        .map_err(|e| format!("cannot read manifest blob: {e}"))?;
    refs_of(index, digest, &bytes)
}

/// The size of the manifest stored as blob `digest`, as the index knows it,
/// when it can be read: a known size no larger than [`MAX_MANIFEST_BYTES`].
pub fn readable_size(index: &Index, digest: &Digest) -> Result<u64, String> {
    match index.blob(digest).map(|b| b.data_size()) {
        None => Err("manifest blob is not in storage".into()),
        Some(None) => Err("manifest blob has no data file".into()),
        Some(Some(size)) if size > MAX_MANIFEST_BYTES => Err(format!(
            "manifest blob is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )),
        Some(Some(size)) => Ok(size),
    }
}

/// What the manifest `bytes`, read as blob `digest`, references: checked
/// against its digest first, so a damaged blob cannot pass for a smaller
/// manifest.
pub fn refs_of(index: &Index, digest: &Digest, bytes: &[u8]) -> Loaded {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!(
            "manifest blob is over the {MAX_MANIFEST_BYTES}-byte limit"
        ));
    }
    if Digest::of_bytes(bytes) != *digest {
        return Err("manifest blob content does not match its digest".into());
    }
    let manifest = manifest::parse(bytes).map_err(|e| e.to_string())?;
    let mut stored = Vec::with_capacity(manifest.blobs.len());
    let mut absent = Vec::new();
    for blob in manifest.blobs {
        match index.blob_id(&blob) {
            Some(id) => stored.push(id),
            None => absent.push((blob, manifest.foreign.contains(&blob))),
        }
    }
    Ok(Refs {
        stored: stored.into(),
        absent: absent.into(),
        children: manifest.children.into(),
        subject: manifest.subject,
        schema1: manifest.schema1,
        kind: manifest.kind,
    })
}

/// Manifests a repository holds or points at, before following children:
/// linked revisions, what revision links name when that is another
/// manifest, and tag roots.
fn repository_scope(repo: &Repository) -> impl Iterator<Item = Digest> + '_ {
    let revisions = repo.revisions.iter().filter(|r| r.linked).map(|r| r.digest);
    let targets = repo.revision_link_targets.iter().map(|(_, target)| *target);
    revisions.chain(targets).chain(tag_roots(repo))
}

/// What the revision link of `digest` names when that is another manifest:
/// the registry serves it for `digest`, so it is live whenever `digest` is.
pub fn link_targets<'a>(
    repo: &'a Repository,
    digest: &Digest,
) -> impl Iterator<Item = Digest> + 'a {
    let targets = &repo.revision_link_targets;
    let start = targets.partition_point(|(path, _)| path < digest);
    let digest = *digest;
    targets[start..]
        .iter()
        .take_while(move |(path, _)| *path == digest)
        .map(|(_, target)| *target)
}

/// Tag roots: current manifests, and the whole history of a tag whose
/// current link could not be read.
fn tag_roots(repo: &Repository) -> impl Iterator<Item = Digest> + '_ {
    tag_roots_of(repo.tags.iter())
}

/// The roots of `tags`, as [`tag_roots`] takes them.
fn tag_roots_of<'a>(tags: impl Iterator<Item = &'a Tag> + 'a) -> impl Iterator<Item = Digest> + 'a {
    tags.flat_map(|tag| {
        let history: &[Digest] = match tag.current {
            Some(_) => &[],
            None => &tag.history,
        };
        tag.current.into_iter().chain(history.iter().copied())
    })
}

/// Loads every manifest any repository holds or reaches, in parallel.
pub fn load_all(layout: &Layout, index: &Index, progress: &Task) -> DigestMap<Loaded> {
    match load_all_until(layout, index, progress, &Interrupt::default()) {
        Ok(loaded) => loaded,
        Err(_) => unreachable!("nothing interrupts a default Interrupt"),
    }
}

/// [`load_all`], checking `interrupt` before each manifest: a stop request
/// ends it with [`crate::Error::Interrupted`].
pub fn load_all_until(
    layout: &Layout,
    index: &Index,
    progress: &Task,
    interrupt: &Interrupt,
) -> crate::Result<DigestMap<Loaded>> {
    let blob_shards = layout.open_blob_shards();
    load_rounds(index, |wanted| {
        wanted
            .par_iter()
            .map(|d| {
                interrupt.check(Phase::Plan)?;
                progress.inc(1);
                Ok((*d, load(blob_shards.as_ref(), index, d)))
            })
            .collect()
    })
}

/// Loads every manifest any repository holds or reaches, round by round:
/// `fetch` loads a round's manifests, whose children make the next round.
pub fn load_rounds(
    index: &Index,
    mut fetch: impl FnMut(&DigestSet) -> crate::Result<Vec<(Digest, Loaded)>>,
) -> crate::Result<DigestMap<Loaded>> {
    let mut wanted: DigestSet = index
        .repositories
        .iter()
        .flat_map(repository_scope)
        .collect();
    let mut loaded: DigestMap<Loaded> = DigestMap::default();
    while !wanted.is_empty() {
        let batch = fetch(&wanted)?;
        wanted = batch
            .iter()
            .filter_map(|(_, result)| result.as_ref().ok())
            .flat_map(|refs| refs.children.iter().copied())
            .collect();
        loaded.extend(batch);
        wanted.retain(|d| !loaded.contains_key(d));
    }
    Ok(loaded)
}

/// Marks the index. `delete_untagged` makes only tags (and what they reach) roots.
pub fn mark(layout: &Layout, index: &Index, delete_untagged: bool, progress: &Task) -> Marking {
    let loaded = load_all(layout, index, progress);
    mark_loaded(layout, index, &loaded, delete_untagged)
}

/// Marks the index given every manifest it reaches, already loaded.
pub fn mark_loaded(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    delete_untagged: bool,
) -> Marking {
    mark_with_roots(layout, index, loaded, delete_untagged, &[])
}

/// Marks the index with `extra_roots` (repository index, manifest) added to
/// the roots: manifest revisions too recent to delete, whose references
/// must stay with them.
pub fn mark_with_roots(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    delete_untagged: bool,
    extra_roots: &[(u32, Digest)],
) -> Marking {
    mark_with_policy(layout, index, loaded, delete_untagged, extra_roots, &[])
}

/// Marks the index with `extra_roots`, and without the tags a retention
/// policy deletes: `dropped[r]` lists (sorted) the indices of the tags of
/// repository `r` that go; a shorter `dropped` means no tag of the
/// repositories beyond it goes.
pub fn mark_with_policy(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    delete_untagged: bool,
    extra_roots: &[(u32, Digest)],
    dropped: &[Vec<u32>],
) -> Marking {
    let mut extra: Vec<Vec<Digest>> = vec![Vec::new(); index.repositories.len()];
    for (r, digest) in extra_roots {
        if let Some(roots) = extra.get_mut(*r as usize) {
            roots.push(*digest);
        }
    }
    let per_repo: Vec<(RepositoryMark, Vec<Warning>)> = index
        .repositories
        .par_iter()
        .zip(&extra)
        .enumerate()
        .map(|(r, (repo, extra))| {
            let dropped = dropped.get(r).map_or(&[][..], Vec::as_slice);
            mark_repository(layout, repo, loaded, delete_untagged, extra, dropped)
        })
        .collect();
    let mut warnings = Vec::new();
    let mut repositories = Vec::with_capacity(per_repo.len());
    for (mark, repo_warnings) in per_repo {
        repositories.push(mark);
        warnings.extend(repo_warnings);
    }
    let (live_blobs, missing) = live_blobs(index, &repositories, loaded);
    for (blob, manifest, repository) in missing {
        warnings.push(Warning::new(
            WarningKind::MissingBlob,
            layout.blob_dir(&blob),
            Some(&repository),
            format!("live manifest {manifest} references blob {blob}, which is not in storage: the image is already broken"),
        ));
    }
    Marking {
        repositories,
        live_blobs,
        warnings,
        manifests_read: loaded.len(),
    }
}

/// Follows children, and what revision links of `repo` name, from `start`
/// within `loaded`; `visit` sees each digest once and may name more digests
/// to follow.
fn closure(
    start: impl IntoIterator<Item = Digest>,
    repo: &Repository,
    loaded: &DigestMap<Loaded>,
    mut visit: impl FnMut(&Digest, Option<&Loaded>) -> Vec<Digest>,
) -> DigestSet {
    let mut seen = DigestSet::default();
    let mut stack: Vec<Digest> = start.into_iter().collect();
    while let Some(digest) = stack.pop() {
        if !seen.insert(digest) {
            continue;
        }
        let entry = loaded.get(&digest);
        if let Some(Ok(refs)) = entry {
            stack.extend(refs.children.iter().copied());
        }
        stack.extend(link_targets(repo, &digest));
        stack.extend(visit(&digest, entry));
    }
    seen
}

fn mark_repository(
    layout: &Layout,
    repo: &Repository,
    loaded: &DigestMap<Loaded>,
    delete_untagged: bool,
    extra_roots: &[Digest],
    dropped: &[u32],
) -> (RepositoryMark, Vec<Warning>) {
    let mut warnings = Vec::new();
    let reach = closure(repository_scope(repo), repo, loaded, |digest, entry| {
        if let Some(Err(reason)) = entry {
            warnings.push(Warning::new(
                WarningKind::UnreadableManifest,
                layout.blob_data(digest),
                Some(&repo.name),
                format!(
                    "manifest {digest} in repository `{}` cannot be read ({reason}); keeping every manifest and blob link of the repository",
                    repo.name
                ),
            ));
        }
        Vec::new()
    });
    if !warnings.is_empty() || repo.opaque {
        let mut live = reach;
        live.extend(repo.revisions.iter().map(|r| r.digest));
        return (
            RepositoryMark {
                live,
                kept_whole: true,
                released: DigestSet::default(),
            },
            warnings,
        );
    }

    let is_dropped = |ti: usize| dropped.binary_search(&(ti as u32)).is_ok();
    let kept_tags = repo
        .tags
        .iter()
        .enumerate()
        .filter(|(ti, _)| !is_dropped(*ti))
        .map(|(_, t)| t);
    let mut roots: Vec<Digest> = tag_roots_of(kept_tags)
        .chain(extra_roots.iter().copied())
        .collect();
    let subject_of = |digest: &Digest| match loaded.get(digest) {
        Some(Ok(Refs {
            subject: Some(subject),
            ..
        })) => Some(*subject),
        _ => None,
    };
    let released = if dropped.is_empty() {
        DigestSet::default()
    } else {
        let mut referrers_of: DigestMap<Vec<Digest>> = DigestMap::default();
        for revision in repo.revisions.iter().filter(|r| r.linked) {
            if let Some(subject) = subject_of(&revision.digest) {
                referrers_of
                    .entry(subject)
                    .or_default()
                    .push(revision.digest);
            }
        }
        let held = dropped.iter().flat_map(|ti| {
            let tag = &repo.tags[*ti as usize];
            tag.current.into_iter().chain(tag.history.iter().copied())
        });
        closure(held, repo, loaded, |digest, _| {
            referrers_of.get(digest).cloned().unwrap_or_default()
        })
    };
    let mut referrers: DigestMap<Vec<Digest>> = DigestMap::default();
    for revision in repo.revisions.iter().filter(|r| r.linked) {
        if !delete_untagged && !released.contains(&revision.digest) {
            roots.push(revision.digest);
        } else if let Some(subject) = subject_of(&revision.digest) {
            referrers.entry(subject).or_default().push(revision.digest);
        }
    }
    let live = closure(roots, repo, loaded, |digest, _| {
        referrers.get(digest).cloned().unwrap_or_default()
    });
    (
        RepositoryMark {
            live,
            kept_whole: false,
            released,
        },
        warnings,
    )
}

/// A reference from a live manifest to a blob that is not in storage:
/// (blob, manifest, repository).
type Missing = (Digest, Digest, String);

/// Blobs live anywhere, and the references of live manifests to blobs that
/// are not in storage.
fn live_blobs(
    index: &Index,
    marks: &[RepositoryMark],
    loaded: &DigestMap<Loaded>,
) -> (LiveBlobs, Vec<Missing>) {
    let empty = || (LiveBlobs::new(index.blobs.len()), Vec::new());
    let (mut live, mut missing) = index
        .repositories
        .par_iter()
        .zip(marks)
        .fold(empty, |(mut live, mut missing), (repo, mark)| {
            for digest in &mark.live {
                live.insert(index, *digest);
                let Some(Ok(refs)) = loaded.get(digest) else {
                    continue;
                };
                refs.stored.iter().for_each(|id| live.set(*id));
                for (blob, foreign) in refs.absent.iter() {
                    live.absent.insert(*blob);
                    if !foreign {
                        missing.push((*blob, *digest, repo.name.clone()));
                    }
                }
            }
            for revision in repo.revisions.iter().filter(|r| mark.is_live(&r.digest)) {
                for signature in &revision.signatures {
                    live.insert(index, *signature);
                }
            }
            if mark.kept_whole {
                for link in &repo.layer_links {
                    live.insert(index, *link);
                }
                for link in &repo.foreign_links {
                    live.insert(index, link.target);
                }
            }
            (live, missing)
        })
        .reduce(empty, |(a, mut a_missing), (b, mut b_missing)| {
            a_missing.append(&mut b_missing);
            (a.union(b), a_missing)
        });
    for digest in &index.protected {
        live.insert(index, *digest);
    }
    missing.sort_unstable_by_key(|m| (m.0, m.1));
    missing.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    (live, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Blob, Revision, Tag};

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    /// An index over blobs 1..=40 and the given repositories.
    fn index(repositories: Vec<Repository>) -> Index {
        Index {
            blobs: (1..=40)
                .map(|n| Blob::new(d(n), Some(u64::from(n))))
                .collect(),
            repositories,
            ..Index::default()
        }
    }

    fn repo(name: &str, revisions: &[u8], tags: &[(&str, Option<u8>, &[u8])]) -> Repository {
        Repository {
            name: name.into(),
            revisions: revisions
                .iter()
                .map(|n| Revision {
                    digest: d(*n),
                    linked: true,
                    signatures: Vec::new(),
                })
                .collect(),
            tags: tags
                .iter()
                .map(|(name, current, history)| Tag {
                    name: (*name).into(),
                    current: current.map(d),
                    history: history.iter().map(|n| d(*n)).collect(),
                    pushed: None,
                })
                .collect(),
            ..Repository::default()
        }
    }

    fn image(index: &Index, blobs: &[u8]) -> Loaded {
        Ok(Refs {
            stored: blobs
                .iter()
                .map(|n| index.blob_id(&d(*n)).unwrap())
                .collect(),
            ..Refs::default()
        })
    }

    fn with_subject(index: &Index, blobs: &[u8], subject: u8) -> Loaded {
        let mut refs = image(index, blobs)?;
        refs.subject = Some(d(subject));
        Ok(refs)
    }

    fn list(children: &[u8]) -> Loaded {
        Ok(Refs {
            children: children.iter().map(|n| d(*n)).collect(),
            ..Refs::default()
        })
    }

    fn run(index: &Index, loaded: Vec<(u8, Loaded)>, delete_untagged: bool) -> Marking {
        let loaded = loaded.into_iter().map(|(n, l)| (d(n), l)).collect();
        mark_loaded(&Layout::new("/s"), index, &loaded, delete_untagged)
    }

    fn live(marking: &Marking, index: &Index, n: u8) -> bool {
        marking.live_blobs.contains(index, &d(n))
    }

    /// `r`: tag `new` → 3; tag `old` → 1 (history 1, 2), 1 an index over
    /// 5, 6 a referrer of 1; 4 untagged. Blob 1n is the layer of n.
    fn policy_fixture() -> (Index, DigestMap<Loaded>) {
        let idx = index(vec![repo(
            "r",
            &[1, 2, 3, 4, 5, 6],
            &[("new", Some(3), &[3]), ("old", Some(1), &[1, 2])],
        )]);
        let loaded = vec![
            (1, list(&[5])),
            (2, image(&idx, &[12])),
            (3, image(&idx, &[13])),
            (4, image(&idx, &[14])),
            (5, image(&idx, &[15])),
            (6, with_subject(&idx, &[16], 1)),
        ];
        let loaded = loaded.into_iter().map(|(n, l)| (d(n), l)).collect();
        (idx, loaded)
    }

    #[test]
    fn a_dropped_tag_releases_its_image_history_children_and_referrers() {
        let (idx, loaded) = policy_fixture();
        let layout = Layout::new("/s");
        for delete_untagged in [false, true] {
            let m = mark_with_policy(&layout, &idx, &loaded, delete_untagged, &[], &[vec![1]]);
            for n in [1, 2, 5, 6, 12, 15, 16] {
                assert!(
                    !live(&m, &idx, n),
                    "{n} goes with tag old (-m {delete_untagged})"
                );
            }
            assert!(live(&m, &idx, 3) && live(&m, &idx, 13));
            assert_eq!(
                live(&m, &idx, 4),
                !delete_untagged,
                "an untagged revision outside the dropped tag's image stays without -m"
            );
            let released: DigestSet = [1, 2, 5, 6].into_iter().map(d).collect();
            assert_eq!(m.repositories[0].released, released);
        }
    }

    #[test]
    fn an_extra_root_or_a_kept_tag_keeps_what_a_dropped_tag_held() {
        let (mut idx, loaded) = policy_fixture();
        let layout = Layout::new("/s");
        let m = mark_with_policy(&layout, &idx, &loaded, false, &[(0, d(2))], &[vec![1]]);
        assert!(
            live(&m, &idx, 2) && live(&m, &idx, 12),
            "protected history entry"
        );
        assert!(!live(&m, &idx, 1));
        // A kept tag on the index keeps it, its child and its referrer.
        idx.repositories[0].tags[0].current = Some(d(1));
        let m = mark_with_policy(&layout, &idx, &loaded, true, &[], &[vec![1]]);
        for n in [1, 5, 6, 15, 16] {
            assert!(live(&m, &idx, n), "{n} is reached from the kept tag");
        }
        assert!(!live(&m, &idx, 2));
    }

    #[test]
    fn dropping_no_tag_marks_as_before() {
        let (idx, loaded) = policy_fixture();
        let layout = Layout::new("/s");
        for delete_untagged in [false, true] {
            let before = mark_loaded(&layout, &idx, &loaded, delete_untagged);
            let after = mark_with_policy(&layout, &idx, &loaded, delete_untagged, &[], &[vec![]]);
            assert_eq!(before.repositories[0].live, after.repositories[0].live);
            assert!(after.repositories[0].released.is_empty());
        }
    }

    #[test]
    fn without_delete_untagged_every_revision_is_a_root() {
        let idx = index(vec![repo("r", &[1, 2], &[("t", Some(2), &[1, 2])])]);
        let m = run(
            &idx,
            vec![(1, image(&idx, &[11])), (2, image(&idx, &[12]))],
            false,
        );
        assert!(live(&m, &idx, 1) && live(&m, &idx, 11));
        assert!(live(&m, &idx, 2) && live(&m, &idx, 12));
        assert!(!live(&m, &idx, 13), "an unreferenced blob is dead");
    }

    #[test]
    fn delete_untagged_keeps_children_of_a_tagged_index_upstream_2_8_bug() {
        let idx = index(vec![repo("r", &[1, 2, 3, 4], &[("multi", Some(1), &[1])])]);
        let loaded = vec![
            (1, list(&[2, 3])),
            (2, image(&idx, &[12])),
            (3, image(&idx, &[13])),
            (4, image(&idx, &[14])),
        ];
        let m = run(&idx, loaded, true);
        for n in [1, 2, 3, 12, 13] {
            assert!(live(&m, &idx, n), "{n} is reached from the tagged index");
        }
        assert!(
            !live(&m, &idx, 4) && !live(&m, &idx, 14),
            "the untagged image goes"
        );
        assert!(m.repositories[0].is_live(&d(2)) && !m.repositories[0].is_live(&d(4)));
    }

    #[test]
    fn delete_untagged_keeps_referrers_of_live_manifests_transitively() {
        let idx = index(vec![repo("r", &[1, 2, 3, 4, 5], &[("t", Some(1), &[1])])]);
        let loaded = vec![
            (1, image(&idx, &[11])),
            (2, with_subject(&idx, &[12], 1)),
            (3, with_subject(&idx, &[13], 2)),
            (4, image(&idx, &[14])),
            (5, with_subject(&idx, &[15], 4)),
        ];
        let m = run(&idx, loaded, true);
        assert!(live(&m, &idx, 12), "signature of the tagged image");
        assert!(live(&m, &idx, 13), "referrer of the signature");
        assert!(
            !live(&m, &idx, 14) && !live(&m, &idx, 15),
            "referrer of a dead manifest goes"
        );
    }

    #[test]
    fn a_subject_does_not_keep_its_target_alive() {
        let idx = index(vec![repo("r", &[1, 2], &[("sig", Some(2), &[2])])]);
        let loaded = vec![(1, image(&idx, &[11])), (2, with_subject(&idx, &[12], 1))];
        let m = run(&idx, loaded, true);
        assert!(live(&m, &idx, 12));
        assert!(!live(&m, &idx, 1) && !live(&m, &idx, 11));
    }

    #[test]
    fn blobs_shared_across_repositories_stay_while_one_user_is_live() {
        let idx = index(vec![
            repo("a", &[1, 2], &[("t", Some(2), &[1, 2])]),
            repo("b", &[3], &[("t", Some(3), &[3])]),
        ]);
        let loaded = vec![
            (1, image(&idx, &[20, 21])),
            (2, image(&idx, &[22])),
            (3, image(&idx, &[20])),
        ];
        let m = run(&idx, loaded, true);
        assert!(live(&m, &idx, 20), "base layer used by b");
        assert!(
            !live(&m, &idx, 21),
            "exclusive layer of a's untagged manifest"
        );
    }

    #[test]
    fn an_unreadable_manifest_keeps_its_whole_repository_and_only_it() {
        let mut damaged = repo("damaged", &[1, 2], &[("t", Some(2), &[1, 2])]);
        damaged.layer_links = vec![d(30), d(31)];
        let mut clean = repo("clean", &[3, 4], &[("t", Some(4), &[3, 4])]);
        clean.layer_links = vec![d(33)];
        let idx = index(vec![clean, damaged]);
        let loaded = vec![
            (1, Err("not JSON".into())),
            (2, image(&idx, &[12])),
            (3, image(&idx, &[13])),
            (4, image(&idx, &[14])),
        ];
        let m = run(&idx, loaded, true);
        assert!(m.repositories[1].kept_whole);
        assert!(m.repositories[1].is_live(&d(1)));
        assert!(
            live(&m, &idx, 30) && live(&m, &idx, 31),
            "everything it links stays"
        );
        assert!(!m.repositories[0].kept_whole);
        assert!(
            !live(&m, &idx, 13) && !live(&m, &idx, 33),
            "the clean repository is still collected"
        );
        assert_eq!(m.warnings.len(), 1);
        assert_eq!(m.warnings[0].kind, WarningKind::UnreadableManifest);
        assert_eq!(m.warnings[0].repository.as_deref(), Some("damaged"));
    }

    #[test]
    fn an_unreadable_child_of_an_index_keeps_the_repository() {
        let mut r = repo("r", &[1, 3], &[("t", Some(1), &[1])]);
        r.layer_links = vec![d(13)];
        let idx = index(vec![r]);
        let loaded = vec![
            (1, list(&[2])),
            (2, Err("missing".into())),
            (3, image(&idx, &[13])),
        ];
        let m = run(&idx, loaded, true);
        assert!(m.repositories[0].kept_whole);
        assert!(live(&m, &idx, 13));
    }

    #[test]
    fn an_invalid_current_link_makes_the_tag_history_roots() {
        let idx = index(vec![repo("r", &[1, 2, 3], &[("broken", None, &[1, 2])])]);
        let loaded = vec![
            (1, image(&idx, &[11])),
            (2, image(&idx, &[12])),
            (3, image(&idx, &[13])),
        ];
        let m = run(&idx, loaded, true);
        assert!(live(&m, &idx, 11) && live(&m, &idx, 12));
        assert!(!live(&m, &idx, 13), "not in the broken tag's history");
    }

    #[test]
    fn missing_blobs_are_reported_except_foreign_layers() {
        let idx = index(vec![repo("r", &[1], &[("t", Some(1), &[1])])]);
        let refs = Refs {
            absent: vec![(d(200), false), (d(201), true)].into(),
            ..Refs::default()
        };
        let m = run(&idx, vec![(1, Ok(refs))], false);
        let missing: Vec<_> = m
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::MissingBlob)
            .collect();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].message.contains(&d(200).to_string()));
        assert!(
            live(&m, &idx, 200) && live(&m, &idx, 201),
            "absent but referenced"
        );
    }

    #[test]
    fn an_extra_root_keeps_what_it_references_and_its_referrers() {
        let idx = index(vec![repo("r", &[1, 2, 3, 4], &[("t", Some(1), &[1])])]);
        let loaded = vec![
            (1, image(&idx, &[11])),
            (2, list(&[3])),
            (3, image(&idx, &[13])),
            (4, with_subject(&idx, &[14], 2)),
        ];
        let loaded: DigestMap<Loaded> = loaded.into_iter().map(|(n, l)| (d(n), l)).collect();
        let layout = Layout::new("/s");
        let without = mark_loaded(&layout, &idx, &loaded, true);
        assert!(!live(&without, &idx, 13) && !live(&without, &idx, 14));
        let with = mark_with_roots(&layout, &idx, &loaded, true, &[(0, d(2))]);
        for n in [2, 3, 13, 4, 14] {
            assert!(live(&with, &idx, n), "{n} is reached from the extra root");
        }
        assert!(with.repositories[0].is_live(&d(3)));
    }

    #[test]
    fn schema1_signatures_of_live_revisions_and_protected_blobs_stay() {
        let mut r = repo("r", &[1], &[("t", Some(1), &[1])]);
        r.revisions[0].signatures = vec![d(25)];
        let mut idx = index(vec![r]);
        idx.protected.insert(d(26));
        let m = run(&idx, vec![(1, image(&idx, &[11]))], true);
        assert!(live(&m, &idx, 25) && live(&m, &idx, 26));
    }

    #[test]
    fn a_revision_link_naming_another_manifest_makes_it_live_with_the_path() {
        // Tag t → 1, whose revision link names 2 (an index over 3); 4 is
        // linked to 5 but untagged.
        let mut r = repo("r", &[1, 4], &[("t", Some(1), &[1])]);
        r.revision_link_targets = vec![(d(1), d(2)), (d(4), d(5))];
        let idx = index(vec![r]);
        let loaded = vec![
            (1, image(&idx, &[11])),
            (2, list(&[3])),
            (3, image(&idx, &[13])),
            (4, image(&idx, &[14])),
            (5, image(&idx, &[15])),
        ];
        let m = run(&idx, loaded.clone(), true);
        for n in [1, 2, 3, 11, 13] {
            assert!(live(&m, &idx, n), "{n} is served for tag t");
        }
        for n in [4, 5, 14, 15] {
            assert!(!live(&m, &idx, n), "{n} is untagged");
        }
        let m = run(&idx, loaded, false);
        assert!(live(&m, &idx, 5) && live(&m, &idx, 15), "without -m");
        let scope: Vec<Digest> = repository_scope(&idx.repositories[0]).collect();
        assert!(scope.contains(&d(2)) && scope.contains(&d(5)), "loaded");
    }
}

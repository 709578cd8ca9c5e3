//! Plan: the list of what a sweep deletes, each with the reason it is
//! garbage, in the order the sweep deletes it; and the counts before and after.

use serde::Serialize;

use crate::digest::{Digest, DigestSet};
use crate::index::{BlobId, Index};
use crate::mark::Marking;

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
    /// `_layers/sha256/<hex>/`: a link to a dead blob.
    LayerLink,
    /// `blobs/sha256/<2 hex>/<hex>/`: a dead blob.
    Blob,
}

impl CandidateKind {
    /// Every kind, in sweep order.
    pub const ALL: [CandidateKind; 4] = [
        CandidateKind::TagIndexEntry,
        CandidateKind::Manifest,
        CandidateKind::LayerLink,
        CandidateKind::Blob,
    ];

    /// The name used in listings and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            CandidateKind::TagIndexEntry => "tag_index_entry",
            CandidateKind::Manifest => "manifest",
            CandidateKind::LayerLink => "layer_link",
            CandidateKind::Blob => "blob",
        }
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
        }
    }
}

/// One thing to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// What it is.
    pub kind: CandidateKind,
    /// Index into [`Index::repositories`], for everything but blobs.
    pub repository: Option<u32>,
    /// Index into that repository's tags, for tag index entries.
    pub tag: Option<u32>,
    /// The digest in its path; for a link under another algorithm, the
    /// sha256 blob it links.
    pub digest: Digest,
    /// For a layer link under another digest algorithm: index into that
    /// repository's [`crate::index::Repository::foreign_links`].
    pub foreign_link: Option<u32>,
    /// Blob size, for blobs and layer links.
    pub bytes: Option<u64>,
    /// Why it goes.
    pub reason: Reason,
}

/// Object counts of a registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Repositories.
    pub repositories: u64,
    /// Tags.
    pub tags: u64,
    /// Manifest revisions with a link.
    pub manifests: u64,
    /// Manifests some tag points at.
    pub tagged_manifests: u64,
    /// Manifests no tag points at.
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
}

impl Reclaim {
    /// Counts `candidate` in.
    pub fn add(&mut self, candidate: &Candidate) {
        match candidate.kind {
            CandidateKind::TagIndexEntry => self.tag_index_entries += 1,
            CandidateKind::Manifest => self.manifests += 1,
            CandidateKind::LayerLink => self.layer_links += 1,
            CandidateKind::Blob => {
                self.blobs += 1;
                self.bytes += candidate.bytes.unwrap_or(0);
            }
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

/// The plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Candidates, in sweep order (by kind, then repository, then digest).
    pub candidates: Vec<Candidate>,
    /// The registry as indexed.
    pub before: Counts,
    /// Totals of `candidates`.
    pub reclaimable: Reclaim,
    /// Repositories with something to reclaim, most bytes first.
    pub repositories: Vec<RepositoryReclaim>,
}

impl Plan {
    /// Builds the plan from the index and its marking.
    pub fn new(index: &Index, marking: &Marking) -> Plan {
        let mut candidates = Vec::new();
        let mut repositories = Vec::new();
        let blob_bytes = |d: &Digest| index.blob(d).map(|b| b.bytes());
        for (ri, (repo, mark)) in index
            .repositories
            .iter()
            .zip(&marking.repositories)
            .enumerate()
        {
            let ri = Some(ri as u32);
            let mut reclaim = RepositoryReclaim {
                name: repo.name.clone(),
                ..RepositoryReclaim::default()
            };
            let mut dead_blobs = DigestSet::default();
            if !mark.kept_whole {
                let linked = |d: &Digest| {
                    repo.revisions
                        .binary_search_by(|r| r.digest.cmp(d))
                        .is_ok_and(|i| repo.revisions[i].linked)
                };
                for (ti, tag) in repo.tags.iter().enumerate() {
                    for digest in tag.history.iter().filter(|d| !mark.is_live(d)) {
                        reclaim.tag_index_entries += 1;
                        candidates.push(Candidate {
                            kind: CandidateKind::TagIndexEntry,
                            repository: ri,
                            tag: Some(ti as u32),
                            foreign_link: None,
                            digest: *digest,
                            bytes: None,
                            reason: if linked(digest) {
                                Reason::UntaggedManifest
                            } else {
                                Reason::DeletedManifest
                            },
                        });
                    }
                }
                for revision in repo.revisions.iter().filter(|r| !mark.is_live(&r.digest)) {
                    reclaim.manifests += 1;
                    if !marking.live_blobs.contains(index, &revision.digest)
                        && index.blob(&revision.digest).is_some()
                    {
                        dead_blobs.insert(revision.digest);
                    }
                    candidates.push(Candidate {
                        kind: CandidateKind::Manifest,
                        repository: ri,
                        tag: None,
                        foreign_link: None,
                        digest: revision.digest,
                        bytes: None,
                        reason: if revision.linked {
                            Reason::UntaggedManifest
                        } else {
                            Reason::DeletedManifest
                        },
                    });
                }
            }
            for digest in repo
                .layer_links
                .iter()
                .filter(|d| !marking.live_blobs.contains(index, d))
            {
                reclaim.layer_links += 1;
                if index.blob(digest).is_some() {
                    dead_blobs.insert(*digest);
                }
                candidates.push(Candidate {
                    kind: CandidateKind::LayerLink,
                    repository: ri,
                    tag: None,
                    foreign_link: None,
                    digest: *digest,
                    bytes: blob_bytes(digest),
                    reason: Reason::UnreferencedBlob,
                });
            }
            for (fi, link) in repo.foreign_links.iter().enumerate() {
                if marking.live_blobs.contains(index, &link.target) {
                    continue;
                }
                reclaim.layer_links += 1;
                if index.blob(&link.target).is_some() {
                    dead_blobs.insert(link.target);
                }
                candidates.push(Candidate {
                    kind: CandidateKind::LayerLink,
                    repository: ri,
                    tag: None,
                    digest: link.target,
                    foreign_link: Some(fi as u32),
                    bytes: blob_bytes(&link.target),
                    reason: Reason::UnreferencedBlob,
                });
            }
            reclaim.blobs = dead_blobs.len() as u64;
            reclaim.bytes = dead_blobs.iter().filter_map(blob_bytes).sum();
            if reclaim.manifests + reclaim.tag_index_entries + reclaim.layer_links + reclaim.blobs
                > 0
            {
                repositories.push(reclaim);
            }
        }
        for (id, blob) in index.blobs.iter().enumerate() {
            if marking.live_blobs.contains_id(id as BlobId) {
                continue;
            }
            candidates.push(Candidate {
                kind: CandidateKind::Blob,
                repository: None,
                tag: None,
                foreign_link: None,
                digest: blob.digest,
                bytes: Some(blob.bytes()),
                reason: Reason::UnreferencedBlob,
            });
        }
        // Stable: within a kind, repositories and digests keep index order.
        candidates.sort_by_key(|c| c.kind);
        repositories.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        let mut reclaimable = Reclaim::default();
        candidates.iter().for_each(|c| reclaimable.add(c));
        Plan {
            before: count(index),
            candidates,
            reclaimable,
            repositories,
        }
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
                CandidateKind::TagIndexEntry => {}
                CandidateKind::Manifest => {
                    // Tagged manifests are never candidates; an unlinked
                    // revision was never counted as a manifest.
                    if c.reason == Reason::UntaggedManifest {
                        after.manifests -= 1;
                        after.untagged_manifests -= 1;
                    }
                }
                CandidateKind::LayerLink => after.layer_links -= 1,
                CandidateKind::Blob => {
                    after.blobs -= 1;
                    after.blob_bytes -= c.bytes.unwrap_or(0);
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
        for revision in repo.revisions.iter().filter(|r| r.linked) {
            counts.manifests += 1;
            if tagged.contains(&revision.digest) {
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
    use crate::index::{Blob, Repository, Revision, Tag};
    use crate::layout::Layout;
    use crate::mark::{Loaded, Refs, mark_loaded};

    fn d(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
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
    fn counts_before_and_after() {
        let (_, plan) = plan(true);
        let before = plan.before;
        assert_eq!(
            (
                before.manifests,
                before.tagged_manifests,
                before.untagged_manifests
            ),
            (2, 1, 1)
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

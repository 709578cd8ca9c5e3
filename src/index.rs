//! The index: what a storage backend reads its tree into (repositories,
//! tags, manifest revisions, layer links, blobs), and the content of a link
//! file as the registry reads it. Marking, planning, the retention policy and
//! the reports work on this model alone; the filesystem backend builds it in
//! [`crate::storage::fs::index`].

use std::time::SystemTime;

use crate::digest::{Digest, DigestSet, SHA256};
use crate::warning::Warning;

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
    /// When the tag was last pushed: the modification time of `current/link`
    /// (the registry rewrites the file on every push of the tag). `None`
    /// when the link is missing or invalid.
    pub pushed: Option<SystemTime>,
}

/// A blob link under another digest algorithm: `_layers/sha512/<hex>/link`
/// holding the sha256 digest the blob is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignLink {
    /// The algorithm directory, e.g. `sha512`.
    pub algorithm: String,
    /// The hex directory name.
    pub hex: String,
    /// The stored blob it links.
    pub target: Digest,
}

impl ForeignLink {
    /// `<algorithm>:<hex>`, the digest a client knows the blob by.
    pub fn name(&self) -> String {
        format!("{}:{}", self.algorithm, self.hex)
    }
}

/// A repository: a directory under `repositories/` with `_manifests`,
/// `_layers` or `_uploads`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repository {
    /// The name, `/`-separated.
    pub name: String,
    /// Blobs linked into the repository (`_layers/sha256/`), sorted.
    pub layer_links: Vec<Digest>,
    /// Blobs linked under other digest algorithms.
    pub foreign_links: Vec<ForeignLink>,
    /// Manifest revisions, sorted by digest.
    pub revisions: Vec<Revision>,
    /// Revision links whose content names another manifest than their path:
    /// (path digest, content digest). The registry serves the manifest the
    /// content names for the path's digest (and for tags on it), so both
    /// count. Rare: damage or hand edits; kept here rather than in every
    /// [`Revision`].
    pub revision_link_targets: Vec<(Digest, Digest)>,
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
    /// Per blob shard (`blobs/sha256/<xx>/`, by its byte), its mtime as
    /// read after listing it. Sorted; a shard missing here is unknown.
    pub shard_times: Vec<(u8, SystemTime)>,
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

    /// Whether no blob directory listed in shard `shard` can have been
    /// modified after `cutoff`. A blob directory is created with its
    /// `data` (the registry renames the upload into it) and never written
    /// again, and creating it updates the shard's mtime; the shard's mtime
    /// was read after its listing, so it is at least the creation time of
    /// every blob listed. If it is not after `cutoff`, none of them is.
    pub fn shard_unchanged_since(&self, shard: u8, cutoff: SystemTime) -> bool {
        self.shard_times
            .binary_search_by_key(&shard, |(s, _)| *s)
            .is_ok_and(|i| self.shard_times[i].1 <= cutoff)
    }
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
pub(crate) const MAX_LINK_BYTES: usize = 256;

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

/// What the registry does with a layer link whose content is not its path.
pub const LAYER_LINK_READ: &str = "the registry serves the blob the content names (if any) under the path's digest, which clients reject as a digest mismatch, so no pull through it works";

/// What the registry does with a tag history link's content.
pub const TAG_INDEX_LINK_READ: &str = "the registry never reads a tag history link's content";

/// What is wrong with a link (a layer link or a tag history entry) whose
/// path names `digest` and which holds `content`, saying what the registry
/// does with it (`registry_reads`); `None` when it holds its path's digest
/// or is missing.
pub fn judge_link(digest: &Digest, content: LinkContent, registry_reads: &str) -> Option<String> {
    let problem = match content {
        LinkContent::Digest(d) if d == *digest => return None,
        LinkContent::Missing => return None,
        LinkContent::Digest(d) => format!("holds {d}, its path says {digest}"),
        LinkContent::OtherAlgorithm(text) => format!("holds {text}, its path says {digest}"),
        LinkContent::Invalid(reason) => reason,
    };
    Some(format!(
        "invalid link: {problem}; {registry_reads}; regsweep goes by the digest in the path"
    ))
}

/// What a manifest revision link's `content` means for `repo`, as the
/// registry reads it (it serves the manifest the content names): records a
/// link naming another manifest in [`Repository::revision_link_targets`],
/// keeps the repository whole where the content cannot be followed, and
/// returns what is wrong, if anything. `followed` says whether the registry
/// would follow an unreadable link (a symbolic link on a filesystem).
pub fn judge_revision_link(
    repo: &mut Repository,
    digest: &Digest,
    content: LinkContent,
    followed: impl FnOnce() -> bool,
) -> Option<String> {
    Some(match content {
        LinkContent::Missing => return None,
        LinkContent::Digest(d) if d == *digest => return None,
        LinkContent::Digest(target) => {
            repo.revision_link_targets.push((*digest, target));
            format!(
                "revision link holds {target}, its path says {digest}: the registry serves {target} for {digest}; both are kept with what they reference"
            )
        }
        LinkContent::OtherAlgorithm(text) => {
            repo.opaque = true;
            format!(
                "revision link holds {text}, its path says {digest}: the registry serves a manifest regsweep cannot follow; the repository is kept whole"
            )
        }
        LinkContent::Invalid(reason) if followed() => {
            // The registry's storage driver follows it to a manifest
            // regsweep does not read.
            repo.opaque = true;
            format!(
                "invalid revision link: {reason}; the registry would follow it: the repository is kept whole"
            )
        }
        // The registry cannot parse it and serves nothing through it (an
        // error for the digest and its tags). Repaired, it would most
        // likely name its path: keep that manifest.
        LinkContent::Invalid(reason) => format!(
            "invalid revision link: {reason}; the registry cannot serve {digest} through it; kept by the digest in its path"
        ),
    })
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
}

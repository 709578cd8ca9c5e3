//! What a key of the bucket is, read from its name alone: a listing is the
//! index, so every key is classified without a request.
//!
//! Keys are relative to `<rootdirectory>/docker/registry/v2/`. Repository
//! names end at the first path component the registry reserves for its
//! metadata (`_manifests`, `_layers`, `_uploads`); no repository name may
//! have a component starting with `_`.

use crate::digest::{Digest, SHA256};
use crate::storage::layout::names;

/// A key of the registry's storage, by what the registry stores there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    /// `blobs/sha256/<2 hex>/<hex>/data`.
    BlobData(Digest),
    /// `repositories/<name>/_layers/sha256/<hex>/link`.
    LayerLink {
        /// The repository.
        repository: &'a str,
        /// The blob the path names.
        digest: Digest,
    },
    /// `repositories/<name>/_layers/<alg>/<hex>/link` under another digest
    /// algorithm: its content says which sha256 blob it stands for.
    ForeignLayerLink {
        /// The repository.
        repository: &'a str,
        /// The algorithm directory.
        algorithm: &'a str,
        /// The hex part of the path.
        hex: &'a str,
    },
    /// `repositories/<name>/_manifests/revisions/sha256/<hex>/link`.
    RevisionLink {
        /// The repository.
        repository: &'a str,
        /// The manifest the path names.
        digest: Digest,
    },
    /// `repositories/<name>/_manifests/revisions/sha256/<hex>/signatures/sha256/<sig>/link`:
    /// a schema1 signature.
    Signature {
        /// The repository.
        repository: &'a str,
        /// The signed manifest.
        revision: Digest,
        /// The signature blob.
        signature: Digest,
    },
    /// Something else under a manifest revision's directory
    /// (`revisions/sha256/<hex>/…`): the revision exists, as its directory
    /// would on a filesystem. `link_is_dir`: keys below `<hex>/link/`, as if
    /// `link` were a directory.
    RevisionOther {
        /// The repository.
        repository: &'a str,
        /// The manifest the path names.
        digest: Digest,
        /// The key is below `<hex>/link/`.
        link_is_dir: bool,
    },
    /// Something else under a layer link's directory
    /// (`_layers/sha256/<hex>/…`): the link directory exists.
    LayerLinkOther {
        /// The repository.
        repository: &'a str,
        /// The blob the path names.
        digest: Digest,
    },
    /// A manifest revision (or its signature) under a digest algorithm
    /// regsweep does not follow: the repository is kept whole.
    ForeignRevision {
        /// The repository.
        repository: &'a str,
    },
    /// `repositories/<name>/_manifests/tags/<tag>/current/link`.
    TagCurrent {
        /// The repository.
        repository: &'a str,
        /// The tag.
        tag: &'a str,
    },
    /// `repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link`.
    TagIndex {
        /// The repository.
        repository: &'a str,
        /// The tag.
        tag: &'a str,
        /// A manifest the tag was set to.
        digest: Digest,
    },
    /// `repositories/<name>/_uploads/<uuid>/<rest>`.
    Upload {
        /// The repository.
        repository: &'a str,
        /// The upload's id.
        uuid: &'a str,
        /// What of the upload (`startedat`, `data`, `hashstates/...`).
        rest: &'a str,
    },
    /// Under a repository's metadata, not where the registry writes: kept,
    /// and it keeps the repository whole (what it means is unknown).
    RepositoryOther {
        /// The repository.
        repository: &'a str,
    },
    /// Anything else (under `blobs/`, or outside any repository's
    /// metadata): kept, reported.
    Other,
}

/// Classifies `key`, relative to the `v2/` prefix.
pub fn classify(key: &str) -> Key<'_> {
    if let Some(rest) = key.strip_prefix("blobs/") {
        return blob(rest).map_or(Key::Other, Key::BlobData);
    }
    let Some(rest) = key.strip_prefix("repositories/") else {
        return Key::Other;
    };
    let Some((repository, metadata, rest)) = split_repository(rest) else {
        return Key::Other;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let other = Key::RepositoryOther { repository };
    match (metadata, parts.as_slice()) {
        (names::LAYERS, [SHA256, hex, names::LINK]) => match Digest::from_hex(hex) {
            Some(digest) => Key::LayerLink { repository, digest },
            None => other,
        },
        (names::LAYERS, [algorithm, hex, names::LINK]) if *algorithm != SHA256 => {
            Key::ForeignLayerLink {
                repository,
                algorithm,
                hex,
            }
        }
        (names::MANIFESTS, [names::REVISIONS, SHA256, hex, names::LINK]) => {
            match Digest::from_hex(hex) {
                Some(digest) => Key::RevisionLink { repository, digest },
                None => other,
            }
        }
        (
            names::MANIFESTS,
            [
                names::REVISIONS,
                SHA256,
                hex,
                names::SIGNATURES,
                SHA256,
                sig,
                names::LINK,
            ],
        ) => match (Digest::from_hex(hex), Digest::from_hex(sig)) {
            (Some(revision), Some(signature)) => Key::Signature {
                repository,
                revision,
                signature,
            },
            _ => other,
        },
        (names::MANIFESTS, [names::REVISIONS, algorithm, ..]) if *algorithm != SHA256 => {
            Key::ForeignRevision { repository }
        }
        (
            names::MANIFESTS,
            [
                names::REVISIONS,
                SHA256,
                _,
                names::SIGNATURES,
                algorithm,
                ..,
            ],
        ) if *algorithm != SHA256 => Key::ForeignRevision { repository },
        (names::MANIFESTS, [names::REVISIONS, SHA256, hex, rest @ ..]) => {
            match Digest::from_hex(hex) {
                Some(digest) => Key::RevisionOther {
                    repository,
                    digest,
                    link_is_dir: rest.first() == Some(&names::LINK),
                },
                None => other,
            }
        }
        (names::LAYERS, [SHA256, hex, _, ..]) => match Digest::from_hex(hex) {
            Some(digest) => Key::LayerLinkOther { repository, digest },
            None => other,
        },
        (names::MANIFESTS, [names::TAGS, tag, names::CURRENT, names::LINK]) => {
            Key::TagCurrent { repository, tag }
        }
        (names::MANIFESTS, [names::TAGS, tag, names::INDEX, SHA256, hex, names::LINK]) => {
            match Digest::from_hex(hex) {
                Some(digest) => Key::TagIndex {
                    repository,
                    tag,
                    digest,
                },
                None => other,
            }
        }
        (names::UPLOADS, [uuid, _, ..]) if !uuid.is_empty() => {
            let rest = &rest[uuid.len() + 1..];
            Key::Upload {
                repository,
                uuid,
                rest,
            }
        }
        _ => other,
    }
}

/// `sha256/<2 hex>/<hex>/data` → the blob's digest, when the shard matches.
fn blob(rest: &str) -> Option<Digest> {
    let rest = rest.strip_prefix(SHA256)?.strip_prefix('/')?;
    let (shard, rest) = rest.split_once('/')?;
    let (hex, data) = rest.split_once('/')?;
    (data == names::DATA && shard.len() == 2 && hex.starts_with(shard))
        .then(|| Digest::from_hex(hex))
        .flatten()
}

/// `<name>/<_metadata>/<rest>` → (name, metadata directory, rest): the name
/// ends before the first component starting with `_`, which must be one of
/// the registry's metadata directories.
fn split_repository(rest: &str) -> Option<(&str, &str, &str)> {
    let mut start = 0;
    for component in rest.split('/') {
        if component.starts_with(names::METADATA_PREFIX) {
            if start == 0 {
                return None;
            }
            let repository = &rest[..start - 1];
            let after = &rest[start + component.len()..];
            let after = after.strip_prefix('/')?;
            return matches!(component, names::MANIFESTS | names::LAYERS | names::UPLOADS)
                .then_some((repository, component, after));
        }
        start += component.len() + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(byte: u8) -> Digest {
        Digest::from_hex(&format!("{byte:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn blob_data_needs_its_shard() {
        let hex = d(0xab).hex();
        assert_eq!(
            classify(&format!("blobs/sha256/ab/{hex}/data")),
            Key::BlobData(d(0xab))
        );
        assert_eq!(classify(&format!("blobs/sha256/cd/{hex}/data")), Key::Other);
        assert_eq!(
            classify(&format!("blobs/sha256/ab/{hex}/other")),
            Key::Other
        );
        assert_eq!(classify(&format!("blobs/sha512/ab/{hex}/data")), Key::Other);
    }

    #[test]
    fn nested_repository_names_end_at_the_metadata_directory() {
        let hex = d(1).hex();
        assert_eq!(
            classify(&format!("repositories/a/b/c/_layers/sha256/{hex}/link")),
            Key::LayerLink {
                repository: "a/b/c",
                digest: d(1)
            }
        );
        assert_eq!(
            classify(&format!(
                "repositories/lib/app/_manifests/revisions/sha256/{hex}/link"
            )),
            Key::RevisionLink {
                repository: "lib/app",
                digest: d(1)
            }
        );
        assert_eq!(
            classify("repositories/app/_manifests/tags/v1.0/current/link"),
            Key::TagCurrent {
                repository: "app",
                tag: "v1.0"
            }
        );
        assert_eq!(
            classify(&format!(
                "repositories/app/_manifests/tags/v1/index/sha256/{hex}/link"
            )),
            Key::TagIndex {
                repository: "app",
                tag: "v1",
                digest: d(1)
            }
        );
    }

    #[test]
    fn signatures_uploads_and_foreign_algorithms() {
        let (a, b) = (d(1).hex(), d(2).hex());
        assert_eq!(
            classify(&format!(
                "repositories/app/_manifests/revisions/sha256/{a}/signatures/sha256/{b}/link"
            )),
            Key::Signature {
                repository: "app",
                revision: d(1),
                signature: d(2)
            }
        );
        assert_eq!(
            classify("repositories/app/_uploads/0f3e/hashstates/sha256/0"),
            Key::Upload {
                repository: "app",
                uuid: "0f3e",
                rest: "hashstates/sha256/0"
            }
        );
        assert_eq!(
            classify("repositories/app/_manifests/revisions/sha512/abc/link"),
            Key::ForeignRevision { repository: "app" }
        );
        assert_eq!(
            classify("repositories/app/_layers/sha512/abcd/link"),
            Key::ForeignLayerLink {
                repository: "app",
                algorithm: "sha512",
                hex: "abcd"
            }
        );
    }

    #[test]
    fn odd_keys_in_a_revision_or_link_directory_still_name_it() {
        let hex = d(1).hex();
        assert_eq!(
            classify(&format!(
                "repositories/app/_manifests/revisions/sha256/{hex}/link/inside"
            )),
            Key::RevisionOther {
                repository: "app",
                digest: d(1),
                link_is_dir: true
            }
        );
        assert_eq!(
            classify(&format!(
                "repositories/app/_manifests/revisions/sha256/{hex}/extra"
            )),
            Key::RevisionOther {
                repository: "app",
                digest: d(1),
                link_is_dir: false
            }
        );
        assert_eq!(
            classify(&format!("repositories/app/_layers/sha256/{hex}/link.tmp")),
            Key::LayerLinkOther {
                repository: "app",
                digest: d(1)
            }
        );
    }

    #[test]
    fn odd_keys_are_kept_and_keep_their_repository() {
        assert_eq!(
            classify("repositories/app/_manifests/tags/v1/current/link.1.tmp"),
            Key::RepositoryOther { repository: "app" }
        );
        assert_eq!(classify("repositories/app/_other/x"), Key::Other);
        assert_eq!(classify("repositories/_layers/x"), Key::Other);
        assert_eq!(classify("repositories/app/readme"), Key::Other);
        assert_eq!(classify("something/else"), Key::Other);
    }
}

//! The registry's storage path scheme. This is the only module that knows
//! where things live under `docker/registry/v2`; everything else asks it.
//!
//! ```text
//! blobs/sha256/<2 hex>/<hex>/data
//! repositories/<name>/_layers/sha256/<hex>/link
//! repositories/<name>/_manifests/revisions/sha256/<hex>/link
//! repositories/<name>/_manifests/revisions/sha256/<hex>/signatures/sha256/<hex>/link
//! repositories/<name>/_manifests/tags/<tag>/current/link
//! repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/link
//! repositories/<name>/_uploads/<uuid>/...
//! ```

use std::path::{Path, PathBuf};

use crate::digest::{Digest, SHA256};

/// Directory names and file names of the scheme.
pub mod names {
    /// The file holding a digest, in every link directory.
    pub const LINK: &str = "link";
    /// The file holding a blob's content.
    pub const DATA: &str = "data";
    /// Child of a repository: blobs linked into it.
    pub const LAYERS: &str = "_layers";
    /// Child of a repository: manifest revisions and tags.
    pub const MANIFESTS: &str = "_manifests";
    /// Child of a repository: uploads in progress.
    pub const UPLOADS: &str = "_uploads";
    /// Child of `_manifests`.
    pub const REVISIONS: &str = "revisions";
    /// Child of `_manifests`.
    pub const TAGS: &str = "tags";
    /// Child of a tag: what it points at now.
    pub const CURRENT: &str = "current";
    /// Child of a tag: every digest it ever pointed at.
    pub const INDEX: &str = "index";
    /// Child of a schema1 revision written by registries up to 2.4.
    pub const SIGNATURES: &str = "signatures";
    /// Child of `v2/`: blob data.
    pub const BLOBS: &str = "blobs";
    /// Child of `v2/`: repositories.
    pub const REPOSITORIES: &str = "repositories";
    /// Metadata directories start with this; repository name components never do.
    pub const METADATA_PREFIX: char = '_';
}

/// Path of the registry data below the driver's root directory.
pub const V2_SUFFIX: [&str; 3] = ["docker", "registry", "v2"];

/// Paths of one storage root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    v2: PathBuf,
}

impl Layout {
    /// The layout of the storage whose driver root directory is `root`
    /// (the directory holding `docker/registry/v2`).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        let v2 = V2_SUFFIX.iter().fold(root.clone(), |p, c| p.join(c));
        Layout { root, v2 }
    }

    /// The driver's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `docker/registry/v2` under the root.
    pub fn v2(&self) -> &Path {
        &self.v2
    }

    /// `blobs/`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.v2.join(names::BLOBS)
    }

    /// `blobs/sha256/`, holding the shard directories.
    pub fn blob_shards_dir(&self) -> PathBuf {
        self.blobs_dir().join(SHA256)
    }

    /// `blobs/sha256/`, opened without following a symbolic link below the
    /// root; `None` when any part of it cannot be opened.
    pub fn open_blob_shards(&self) -> Option<crate::storage::fs::dir::Dir> {
        crate::storage::fs::dir::Dir::open(&self.v2)
            .and_then(|v2| v2.open_dir(names::BLOBS))
            .ok()
            .flatten()
            .and_then(|blobs| blobs.open_dir(SHA256).ok().flatten())
    }

    /// `blobs/sha256/<2 hex>/<hex>/`.
    pub fn blob_dir(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blob_shards_dir().join(&hex[..2]).join(hex)
    }

    /// `blobs/sha256/<2 hex>/<hex>/data`.
    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        self.blob_dir(digest).join(names::DATA)
    }

    /// `repositories/`.
    pub fn repositories_dir(&self) -> PathBuf {
        self.v2.join(names::REPOSITORIES)
    }

    /// `repositories/<name>/` for a name with `/`-separated components.
    pub fn repository_dir(&self, name: &str) -> PathBuf {
        name.split('/')
            .fold(self.repositories_dir(), |p, c| p.join(c))
    }

    /// The repository name of a directory below `repositories/`, or `None`
    /// for `repositories/` itself or a path outside it.
    pub fn repository_name(&self, dir: &Path) -> Option<String> {
        let relative = dir.strip_prefix(self.repositories_dir()).ok()?;
        let parts: Vec<&str> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<_>>()?;
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// `repositories/<name>/_layers/sha256/`.
    pub fn layer_links_dir(&self, repository: &str) -> PathBuf {
        self.repository_dir(repository)
            .join(names::LAYERS)
            .join(SHA256)
    }

    /// `repositories/<name>/_layers/sha256/<hex>/`.
    pub fn layer_link_dir(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.layer_links_dir(repository).join(digest.hex())
    }

    /// `repositories/<name>/_layers/<algorithm>/<hex>/`: a blob linked under
    /// another digest algorithm (a client uploaded it as `sha512:<hex>`).
    pub fn layer_link_dir_for(&self, repository: &str, algorithm: &str, hex: &str) -> PathBuf {
        self.repository_dir(repository)
            .join(names::LAYERS)
            .join(algorithm)
            .join(hex)
    }

    /// `repositories/<name>/_manifests/revisions/sha256/`.
    pub fn revisions_dir(&self, repository: &str) -> PathBuf {
        self.repository_dir(repository)
            .join(names::MANIFESTS)
            .join(names::REVISIONS)
            .join(SHA256)
    }

    /// `repositories/<name>/_manifests/revisions/sha256/<hex>/`.
    pub fn revision_dir(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.revisions_dir(repository).join(digest.hex())
    }

    /// `repositories/<name>/_manifests/tags/`.
    pub fn tags_dir(&self, repository: &str) -> PathBuf {
        self.repository_dir(repository)
            .join(names::MANIFESTS)
            .join(names::TAGS)
    }

    /// `repositories/<name>/_manifests/tags/<tag>/`.
    pub fn tag_dir(&self, repository: &str, tag: &str) -> PathBuf {
        self.tags_dir(repository).join(tag)
    }

    /// `repositories/<name>/_manifests/tags/<tag>/current/link`.
    pub fn tag_current_link(&self, repository: &str, tag: &str) -> PathBuf {
        self.tag_dir(repository, tag)
            .join(names::CURRENT)
            .join(names::LINK)
    }

    /// `repositories/<name>/_manifests/tags/<tag>/index/sha256/`.
    pub fn tag_index_dir(&self, repository: &str, tag: &str) -> PathBuf {
        self.tag_dir(repository, tag)
            .join(names::INDEX)
            .join(SHA256)
    }

    /// `repositories/<name>/_manifests/tags/<tag>/index/sha256/<hex>/`.
    pub fn tag_index_entry_dir(&self, repository: &str, tag: &str, digest: &Digest) -> PathBuf {
        self.tag_index_dir(repository, tag).join(digest.hex())
    }

    /// `repositories/<name>/_uploads/`.
    pub fn uploads_dir(&self, repository: &str) -> PathBuf {
        self.repository_dir(repository).join(names::UPLOADS)
    }
}

/// Paths relative to a directory the index holds open.
pub mod relative {
    use std::path::{Path, PathBuf};

    use super::names;
    use crate::digest::Digest;

    /// `<dir>/link`, the link file of a link directory.
    pub fn link(dir: impl AsRef<Path>) -> PathBuf {
        dir.as_ref().join(names::LINK)
    }

    /// `<hex>/data` below a blob shard directory.
    pub fn data(blob_dir: impl AsRef<Path>) -> PathBuf {
        blob_dir.as_ref().join(names::DATA)
    }

    /// `<2 hex>/<hex>/data` below `blobs/sha256/`.
    pub fn blob_data(digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        Path::new(&hex[..2]).join(&hex).join(names::DATA)
    }

    /// `<hex>/signatures` below `_manifests/revisions/sha256/`.
    pub fn signatures(digest: &Digest) -> PathBuf {
        Path::new(&digest.hex()).join(names::SIGNATURES)
    }

    /// `current/link` below a tag directory.
    pub fn tag_current_link() -> PathBuf {
        Path::new(names::CURRENT).join(names::LINK)
    }
}

/// The `link` file inside a link directory.
pub fn link_file(link_dir: &Path) -> PathBuf {
    link_dir.join(names::LINK)
}

/// The `data` file inside a blob directory.
pub fn data_file(blob_dir: &Path) -> PathBuf {
    blob_dir.join(names::DATA)
}

/// The `signatures/` directory inside a revision directory.
pub fn signatures_dir(revision_dir: &Path) -> PathBuf {
    revision_dir.join(names::SIGNATURES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::from_hex(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn blob_paths_are_sharded_by_the_first_two_hex_digits() {
        let layout = Layout::new("/s");
        let hex = "ab".repeat(32);
        assert_eq!(
            layout.blob_data(&digest()),
            PathBuf::from(format!("/s/docker/registry/v2/blobs/sha256/ab/{hex}/data"))
        );
    }

    #[test]
    fn nested_repository_names_become_nested_directories() {
        let layout = Layout::new("/s");
        let dir = layout.repository_dir("team/app/web");
        assert_eq!(
            dir,
            PathBuf::from("/s/docker/registry/v2/repositories/team/app/web")
        );
        assert_eq!(
            layout.repository_name(&dir).as_deref(),
            Some("team/app/web")
        );
        assert_eq!(layout.repository_name(&layout.repositories_dir()), None);
    }

    #[test]
    fn link_paths_follow_the_registry_scheme() {
        let layout = Layout::new("/s");
        let hex = "ab".repeat(32);
        let base = "/s/docker/registry/v2/repositories/r";
        assert_eq!(
            link_file(&layout.layer_link_dir("r", &digest())),
            PathBuf::from(format!("{base}/_layers/sha256/{hex}/link"))
        );
        assert_eq!(
            link_file(&layout.revision_dir("r", &digest())),
            PathBuf::from(format!("{base}/_manifests/revisions/sha256/{hex}/link"))
        );
        assert_eq!(
            layout.tag_current_link("r", "v1"),
            PathBuf::from(format!("{base}/_manifests/tags/v1/current/link"))
        );
        assert_eq!(
            link_file(&layout.tag_index_entry_dir("r", "v1", &digest())),
            PathBuf::from(format!("{base}/_manifests/tags/v1/index/sha256/{hex}/link"))
        );
    }
}

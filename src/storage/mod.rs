//! Where the registry's data lives, and what a storage backend provides to
//! the pipeline: it produces the [`crate::index::Index`] of the whole tree,
//! reads a manifest's bytes for marking (today [`crate::gc::mark::load`],
//! through the filesystem's blob directories), and deletes what the plan
//! lists in its sweep order ([`crate::gc::plan::CandidateKind`]), so that a
//! sweep stopped anywhere leaves a registry that serves every live image.
//!
//! The filesystem driver's storage is the first backend ([`fs`]);
//! [`layout`] knows its paths and [`target`] finds it from the command
//! line's target or the registry's `config.yml`.

pub mod fs;
pub mod layout;
pub mod s3;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;

use layout::Layout;

/// The storage a run works on.
#[derive(Debug, Clone)]
pub enum Storage {
    /// The `filesystem` driver's tree.
    Filesystem(Layout),
    /// A bucket of the `s3` driver.
    S3(Arc<s3::S3Storage>),
}

impl Storage {
    /// Its paths: on a bucket, the keys (a layout rooted at the
    /// `rootdirectory` prefix).
    pub fn layout(&self) -> &Layout {
        match self {
            Storage::Filesystem(layout) => layout,
            Storage::S3(bucket) => bucket.layout(),
        }
    }

    /// What reports call it: the storage root, or `s3://bucket/root`.
    pub fn name(&self) -> PathBuf {
        match self {
            Storage::Filesystem(layout) => layout.root().to_path_buf(),
            Storage::S3(bucket) => PathBuf::from(bucket.target().to_string()),
        }
    }

    /// The bucket, for a bucket.
    pub fn bucket(&self) -> Option<&s3::S3Storage> {
        match self {
            Storage::S3(bucket) => Some(bucket),
            Storage::Filesystem(_) => None,
        }
    }
}

impl From<Layout> for Storage {
    fn from(layout: Layout) -> Storage {
        Storage::Filesystem(layout)
    }
}

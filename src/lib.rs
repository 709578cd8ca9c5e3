//! regsweep: an offline garbage collector for the storage of a CNCF
//! distribution registry (`registry:2`, v2.x and v3.x) on the filesystem
//! and s3 drivers.
//!
//! The pipeline ([`gc`]) is index → mark → plan → sweep → report:
//! - the storage backend ([`storage`]: a tree in [`storage::fs`], a bucket
//!   in [`storage::s3`]) reads the storage in parallel (a walk, or
//!   listings) into the [`index`] model: repositories, tags, revisions,
//!   layer links, blobs and uploads;
//! - [`gc::mark`] follows references from the roots (tags, and every
//!   revision unless untagged manifests are deleted) through every manifest
//!   kind;
//! - [`gc::plan`] lists what nothing live reaches, each with its reason;
//! - [`gc::recent`] holds back what was modified within `--min-age` (a recent
//!   manifest revision becomes a root, and marking runs again);
//! - [`storage::fs::sweep`] (or [`storage::s3::sweep`]) deletes it in an
//!   order that keeps the registry consistent if interrupted, or moves it
//!   into a trash batch that `restore` undoes;
//! - [`report`] renders the result for people and as JSON, and
//!   [`report::metrics`] for a metrics file.
//!
//! A retention policy ([`retention::policy`]) decides, before marking, which
//! tags go; the manifests only those tags held are then marked dead like
//! untagged ones, while [`retention::protect`]ed references are roots
//! whatever the policy says. The registry's own logs ([`retention::pulls`])
//! tell which tags were pulled lately, for the policy to keep.
//! [`du`] reads the same index and marking to show where the bytes are;
//! [`verify`] checks that the registry would serve every image whole.
//!
//! Before deleting, a [`storage::fs::recheck`] looks again at what the plan
//! depends on and stops the sweep if the registry took writes since the
//! index began.
//!
//! Around the pipeline: a [`storage::fs::lock`] (the kernel's, on a file)
//! keeps two runs apart, an [`interrupt`] request stops a run cleanly,
//! [`storage::fs::hygiene`] finds uploads in progress (a sweep refuses while
//! the registry takes pushes), stale uploads, stray temporary files and empty
//! directories. [`storage::layout`] is the one module that knows the storage
//! paths, [`storage::target`] reads the target and the registry's
//! configuration.
//!
//! The library knows nothing of the command line; [`gc::Collector`] runs the
//! pipeline on a [`gc::GcConfig`].

#![deny(missing_docs)]

pub mod clock;
pub mod digest;
pub mod du;
pub mod duration;
pub mod error;
pub mod gc;
pub mod index;
pub mod interrupt;
pub mod manifest;
pub mod progress;
pub mod report;
pub mod retention;
pub mod storage;
pub mod text;
pub mod verify;
pub mod warning;

pub use error::{Error, Result};
pub use report::{ExitStatus, Report};
pub use storage::layout::Layout;

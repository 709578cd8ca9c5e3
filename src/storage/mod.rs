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

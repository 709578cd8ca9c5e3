//! Errors that stop a run before anything is deleted.
//!
//! Damage that can be contained (one bad manifest, one bad link) is not an
//! error: it is a [`crate::report::Warning`], collected during the run, that
//! makes regsweep keep whatever the damaged file might reference.

use std::io;
use std::path::PathBuf;

/// A reason to refuse the whole run. Every variant names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// A directory inside the storage tree could not be listed, so the index
    /// would be incomplete and a sweep based on it could delete live data.
    #[error("{}: cannot list directory ({source}); refusing to sweep on an incomplete index", path.display())]
    IncompleteIndex {
        /// The directory that could not be listed.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The target is not the storage of a distribution registry.
    #[error("{}: not registry storage: {reason}", path.display())]
    NotStorage {
        /// The target as given (or as read from the config).
        path: PathBuf,
        /// What was expected and not found.
        reason: String,
    },

    /// The registry configuration file could not be understood.
    #[error("{}: invalid registry configuration: {reason}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The registry is configured with a storage driver other than `filesystem`.
    #[error("{}: storage driver `{driver}` is not supported: regsweep collects the `filesystem` driver's storage only", path.display())]
    UnsupportedDriver {
        /// The configuration file.
        path: PathBuf,
        /// The configured driver.
        driver: String,
    },

    /// The worker thread pool could not be started.
    #[error("cannot start {threads} worker threads: {reason}")]
    ThreadPool {
        /// Requested size.
        threads: usize,
        /// The pool builder's message.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

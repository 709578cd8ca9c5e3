//! Errors that stop a run before anything is deleted.
//!
//! Damage that can be contained (one bad manifest, one bad link) is not an
//! error: it is a [`crate::warning::Warning`], collected during the run, that
//! makes regsweep keep whatever the damaged file might reference.
//!
//! Nearly every module returns this error, so it depends on none of them:
//! the errors of the retention parts it carries are defined in their own
//! modules (`retention::{policy,protect,pulls}::error`), which need nothing
//! of the crate, and it names the [`Phase`] an interruption stopped.

use std::io;
use std::path::PathBuf;

use crate::interrupt::{Interrupt, Phase};

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

    /// The registry is configured with a storage driver other than
    /// `filesystem` and `s3`.
    #[error("{}: storage driver `{driver}` is not supported: regsweep collects the `filesystem` and `s3` drivers' storage", path.display())]
    UnsupportedDriver {
        /// The configuration file.
        path: PathBuf,
        /// The configured driver.
        driver: String,
    },

    /// Another process holds the lock.
    #[error("{}: {reason}", path.display())]
    LockHeld {
        /// The lock file.
        path: PathBuf,
        /// Who holds it (as its file says) and what to do.
        reason: String,
    },

    /// The lock cannot be taken: its name is not a regular file, it cannot
    /// be created or locked.
    #[error("{}: {reason}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Who holds it and what to do.
        reason: String,
    },

    /// Uploads started within the `--min-age` window: the registry is taking
    /// pushes, and a sweep could delete what a push is about to reference.
    #[error("{}: {message}", path.display())]
    RegistryActive {
        /// The newest upload directory.
        path: PathBuf,
        /// What was found and how to make the registry read-only.
        message: String,
    },

    /// The trash directory cannot be used (another filesystem, inside the
    /// registry's tree, not a directory, not a batch).
    #[error("{}: {reason}", path.display())]
    Trash {
        /// The trash directory or batch.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// A restore would overwrite something that exists again.
    #[error("{}: {reason}", path.display())]
    Restore {
        /// The first path in the way.
        path: PathBuf,
        /// What is in the way.
        reason: String,
    },

    /// The retention policy cannot be used (a bad file, bad flags).
    #[error(transparent)]
    Policy(crate::retention::policy::error::PolicyError),

    /// The list of protected references cannot be read whole.
    #[error(transparent)]
    Protect(crate::retention::protect::error::ProtectError),

    /// The registry's logs (`--pull-log`) cannot be read, or do not cover
    /// the pull window.
    #[error(transparent)]
    PullLog(crate::retention::pulls::error::PullLogError),

    /// A request to the object store failed (after its retries), or the
    /// store cannot be reached as configured.
    #[error("{}: {message}", path.display())]
    ObjectStore {
        /// The `s3://` address of the bucket or key.
        path: PathBuf,
        /// What the store or the client said (never a credential).
        message: String,
    },

    /// What was asked is not done on this kind of storage.
    #[error("{}: {what} is not supported", path.display())]
    Unsupported {
        /// The storage.
        path: PathBuf,
        /// What was asked.
        what: String,
    },

    /// A signal (SIGINT, SIGTERM, SIGHUP) asked the run to stop before the
    /// sweep began: nothing was deleted.
    #[error("interrupted while {}: nothing was deleted", phase.doing())]
    Interrupted {
        /// What the run was doing.
        phase: Phase,
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
    /// A short, stable name of the variant, for the JSON report's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::IncompleteIndex { .. } => "incomplete_index",
            Error::NotStorage { .. } => "not_storage",
            Error::Config { .. } => "config",
            Error::UnsupportedDriver { .. } => "unsupported_driver",
            Error::LockHeld { .. } => "lock_held",
            Error::Lock { .. } => "lock",
            Error::RegistryActive { .. } => "uploads_in_progress",
            Error::Trash { .. } => "trash",
            Error::Restore { .. } => "restore",
            Error::Policy(_) => "policy",
            Error::Protect(_) => "protect",
            Error::PullLog(e) => e.kind(),
            Error::ObjectStore { .. } => "object_store",
            Error::Unsupported { .. } => "unsupported",
            Error::Interrupted { .. } => "interrupted",
            Error::ThreadPool { .. } => "thread_pool",
        }
    }

    /// The path at fault, when the error names one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::IncompleteIndex { path, .. }
            | Error::NotStorage { path, .. }
            | Error::Config { path, .. }
            | Error::UnsupportedDriver { path, .. }
            | Error::Lock { path, .. }
            | Error::LockHeld { path, .. }
            | Error::RegistryActive { path, .. }
            | Error::Trash { path, .. }
            | Error::Restore { path, .. }
            | Error::ObjectStore { path, .. }
            | Error::Unsupported { path, .. } => Some(path),
            Error::PullLog(e) => e.path(),
            Error::Policy(_)
            | Error::Protect(_)
            | Error::Interrupted { .. }
            | Error::ThreadPool { .. } => None,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl Interrupt {
    /// [`Interrupt::stops`] as an error: [`Error::Interrupted`]. Defined
    /// here rather than in [`crate::interrupt`], which the error refers to
    /// for [`Phase`].
    pub fn check(&self, phase: Phase) -> Result<()> {
        if self.stops(phase) {
            Err(Error::Interrupted { phase })
        } else {
            Ok(())
        }
    }
}

/// The result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

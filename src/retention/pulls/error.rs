//! Why pull logs cannot be used: unreadable, compressed, empty, missing
//! where a rule needs them, or not covering the pull window. Holds nothing of
//! the rest of the crate, so that [`crate::error::Error`] can carry it
//! without depending on the pull logs.

use std::io;
use std::path::PathBuf;

/// Pull logs that cannot be used. Nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum PullLogError {
    /// A log cannot be opened or read to its end.
    #[error("{}: cannot read the pull log: {source}", path.display())]
    Read {
        /// The file, directory, or `-`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A log cannot be read past a line.
    #[error("{}: cannot read the pull log after line {line}: {source}", path.display())]
    ReadAt {
        /// The file, or `-`.
        path: PathBuf,
        /// The last line read.
        line: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A directory given as a pull log holds no files.
    #[error("{}: no files in this directory to read as pull logs", path.display())]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// A glob given as a pull log that cannot be used.
    #[error("{}: {reason}", pattern.display())]
    Glob {
        /// The pattern.
        pattern: PathBuf,
        /// Why: it matches nothing, or it is not a valid glob.
        reason: String,
    },
    /// A log compressed in a way not read.
    #[error("{}: {format}-compressed: decompress it first ({tool} FILE | regsweep gc --pull-log - ...)", path.display())]
    Compressed {
        /// The file.
        path: PathBuf,
        /// `zstd`, `xz`, `bzip2`.
        format: String,
        /// The tool that reads it.
        tool: String,
    },
    /// A pull rule without logs.
    #[error("{rule} needs the registry's logs: give them with --pull-log")]
    Needed {
        /// The rule (`--keep-pulled-within 30d`, `policy.json: rules[1]`).
        rule: String,
    },
    /// The logs do not cover the pull window.
    #[error("{message}")]
    Incomplete {
        /// What is covered, what is missing, and what to do.
        message: String,
    },
}

impl PullLogError {
    /// The path at fault, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            PullLogError::Read { path, .. }
            | PullLogError::ReadAt { path, .. }
            | PullLogError::Empty { path }
            | PullLogError::Glob { pattern: path, .. }
            | PullLogError::Compressed { path, .. } => Some(path),
            PullLogError::Needed { .. } | PullLogError::Incomplete { .. } => None,
        }
    }

    /// A short, stable name, for the JSON report's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            PullLogError::Incomplete { .. } => "pull_logs_incomplete",
            _ => "pull_log",
        }
    }
}

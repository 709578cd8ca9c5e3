//! Why a protection file cannot be used. Holds nothing of the rest of the
//! crate, so that [`crate::error::Error`] can carry it without depending on
//! the protection list.

use std::io;
use std::path::PathBuf;

/// A protection file that cannot be used. Nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum ProtectError {
    /// The file cannot be read.
    #[error("{}: cannot read the protected references: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A token is not an image reference.
    #[error("{}:{line}: `{text}` is not an image reference: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// The token.
        text: String,
        /// What is wrong.
        reason: String,
    },
}

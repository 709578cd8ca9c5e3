//! Why a retention policy cannot be used: a file that cannot be read or
//! parsed, flags that do not go together, a keep pattern that keeps none of
//! the tags it was meant to. Holds nothing of the rest of the crate, so that
//! [`crate::error::Error`] can carry it without depending on the policy.

use std::io;
use std::path::PathBuf;

/// A policy that cannot be used. Nothing is deleted.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be read.
    #[error("{}: cannot read the policy: {source}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy file is not a valid policy.
    #[error("{}: invalid policy: {at}: {message}", path.display())]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// Where in the document: a JSON path (`rules[2].keep_last`), or a
        /// line and column for a syntax error.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A keep pattern matches no tag whole, though it matches some as a
    /// search: it would keep none of the tags it was meant to keep.
    #[error(
        "{at}: `{pattern}` matches no tag whole (tag patterns must match the whole tag), \
         but as a search it matches {}: {}; to keep those, write `{suggestion}`; nothing deleted",
        plural(tags.len(), "tag"),
        examples(tags)
    )]
    KeepMatchesNothingWhole {
        /// The flag (`--keep-tags`), or the policy file and rule
        /// (`policy.json: rules[1].tags`).
        at: String,
        /// The pattern as written.
        pattern: String,
        /// The tags it matches as a search, sorted.
        tags: Vec<String>,
        /// A pattern that matches those tags whole.
        suggestion: String,
    },
    /// The policy flags cannot be used as given.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag at fault.
        flag: String,
        /// What is wrong.
        message: String,
    },
}

pub(super) fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// Up to ten names, then how many more.
pub(super) fn examples(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = names.iter().take(SHOWN).cloned().collect();
    if names.len() > SHOWN {
        text.push(format!("and {} more", names.len() - SHOWN));
    }
    text.join(", ")
}

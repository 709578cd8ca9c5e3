//! Damage found during a run. A warning never stops the run: it explains what
//! regsweep kept, and why, and it makes the exit code say "finished with
//! warnings".

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// What kind of damage or oddity was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A revision or layer link is unreadable or does not hold the digest of
    /// its path; the digest in the path is used.
    InvalidLink,
    /// A tag's `current/link` is missing, unreadable or invalid; every
    /// manifest in the tag's history is kept.
    InvalidTagLink,
    /// A manifest is missing, unreadable, too large, not valid, or of an
    /// unknown kind; everything in its repository is kept.
    UnreadableManifest,
    /// A live manifest references a blob that is not in storage (the image is
    /// already broken; nothing is deleted because of it).
    MissingBlob,
    /// Something in the tree that the registry does not write there; kept.
    UnexpectedEntry,
    /// A symbolic link; never followed, never deleted.
    Symlink,
    /// A digest algorithm other than sha256 that regsweep does not follow;
    /// what it names is kept.
    UnsupportedDigest,
    /// A retention policy would have deleted every tag of a repository; the
    /// guard kept them all (`--allow-empty-repos` allows it).
    PolicyRefused,
    /// A retention pattern (a tag regex, a repository glob, `--repos`)
    /// matches nothing in storage: that part of the policy does nothing.
    PolicyPatternUnmatched,
    /// A `--protect` reference names a repository, tag or manifest that is
    /// not in storage (nothing to protect there).
    ProtectedNotFound,
    /// An upload active within `--min-age`: the registry is taking pushes
    /// (a dry run, or a sweep with `--force`).
    UploadInProgress,
    /// A dry run found another run's lock file: the storage may be changing.
    LockHeld,
    /// The pull logs show several registry instances (`instance.id`)
    /// running at once, but over some of the time only the lines of some of
    /// them: the other replicas' logs seem missing, and their pulls unseen.
    PullLogReplicasMissing,
    /// The pull logs hold the registry's app log without a single
    /// `response completed` line (its level is `warn` or higher) beside
    /// access lines: pulls come from the access lines alone.
    PullLogAppLinesMissing,
    /// The pull logs hold the app log of registry 3.0.x, which logs no
    /// HEAD of a manifest, and no access lines: pulls by HEAD alone go
    /// unseen.
    PullLogHeadsMissing,
}

/// One warning, naming the path at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What kind of damage.
    pub kind: WarningKind,
    /// The file or directory at fault.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub path: PathBuf,
    /// The repository it belongs to, when it belongs to one.
    pub repository: Option<String>,
    /// What is wrong and what regsweep did about it.
    pub message: String,
}

impl Warning {
    /// A warning about `path`.
    pub fn new(
        kind: WarningKind,
        path: impl Into<PathBuf>,
        repository: Option<&str>,
        message: impl Into<String>,
    ) -> Warning {
        Warning {
            kind,
            path: path.into(),
            repository: repository.map(str::to_owned),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

//! `verify`: would the registry serve every image whole, does every link
//! agree with its path, and (with `--digests`) does every blob hash to its
//! name. Reads only; deletes nothing.
//!
//! The checks reuse the pipeline's first two stages:
//! - the index ([`crate::storage::fs::index::build_checking_links`]) reports links that are
//!   empty, have a newline, are not digests or disagree with their path
//!   (revision, `_layers` and tag history links), tags whose current link is
//!   invalid, and entries the registry does not write;
//! - every manifest a repository holds or reaches is loaded once
//!   ([`mark::load_all`]); then, per repository, every tag's current
//!   manifest and every manifest revision is followed through index children
//!   down to config and layers. Each manifest reached must have a revision
//!   link in the repository (the registry answers `manifest unknown`
//!   otherwise), a blob with data that parses, and every blob it references
//!   must be in storage with data (foreign layers, with `urls`, need not be).
//!   A revision link whose content names another manifest is followed to it,
//!   as the registry serves it.
//!   A problem found there names the repository, the tags that reach the
//!   manifest (the images it breaks), the manifest and the missing digest;
//! - with `--digests`, every blob's data is read in fixed-size chunks (never
//!   whole in memory), in parallel over blobs, and hashed.
//!
//! Every finding is a [`Problem`]; any problem makes the exit code 1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestMap, DigestSet};
use crate::error::Result;
use crate::gc::mark::{self, Loaded};
use crate::index::{Blob, Index, Repository};
use crate::progress::Progress;
use crate::report::{ExitStatus, human_bytes};
use crate::storage::fs::dir::{Dir, is_symlink_error};
use crate::storage::fs::lock;
use crate::storage::layout::{Layout, link_file, relative};
use crate::storage::{Storage, s3};
use crate::warning::{Warning, WarningKind};

/// Version of the JSON report's shape.
pub const VERIFY_REPORT_VERSION: u32 = 1;

/// Each hashing worker reads blob data through a buffer of this size.
pub const HASH_BUFFER_BYTES: usize = 256 * 1024;

/// What a `verify` run is asked to do.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// The storage to check.
    pub storage: Storage,
    /// Also hash every blob's data.
    pub digests: bool,
    /// Worker threads; `None` for [`crate::gc::default_threads`].
    pub threads: Option<usize>,
    /// Progress on stderr (the caller decides: only when it is a terminal).
    pub progress: bool,
}

/// Findings of `verify` that `gc` does not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyKind {
    /// A manifest a tag, revision link or index names is not in storage.
    MissingManifest,
    /// A manifest a tag or index names has no revision link in the repository.
    UnlinkedManifest,
    /// A blob's data does not hash to its name (`--digests`).
    DigestMismatch,
    /// A blob's data could not be read (`--digests`).
    UnreadableBlob,
}

/// What kind of problem: one of the damage kinds `gc` reports too, or one
/// only `verify` looks for. Serialized as its snake_case name either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum ProblemKind {
    /// Found while indexing or loading manifests, as in `gc`.
    Damage(WarningKind),
    /// Found by `verify`'s own checks.
    Verify(VerifyKind),
}

impl ProblemKind {
    /// The snake_case name, as in JSON.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One finding, naming the path at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The file or directory at fault, or the one that should be there.
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub path: PathBuf,
    /// The repository, when the problem belongs to one.
    pub repository: Option<String>,
    /// Tags of `repository` whose image this breaks, sorted.
    pub tags: Vec<String>,
    /// The manifest concerned (the one missing, unreadable, or referencing
    /// what is missing).
    pub manifest: Option<String>,
    /// The digest that is missing or does not match.
    pub digest: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    fn from_warning(warning: Warning) -> Problem {
        // A tag's current link: `tags/<tag>/current/link`.
        let tags = match warning.kind {
            WarningKind::InvalidTagLink => warning
                .path
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|t| vec![t.to_string_lossy().into_owned()])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Problem {
            kind: ProblemKind::Damage(warning.kind),
            path: warning.path,
            repository: warning.repository,
            tags,
            manifest: None,
            digest: None,
            message: warning.message,
        }
    }
}

/// What was looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Repositories.
    pub repositories: u64,
    /// Tags.
    pub tags: u64,
    /// Manifests read (revisions, tag targets and index children).
    pub manifests: u64,
    /// Blobs in `blobs/`.
    pub blobs: u64,
    /// Bytes of blob data.
    pub blob_bytes: u64,
    /// Link and data files looked at while indexing.
    pub files: u64,
}

/// The `--digests` pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DigestCheck {
    /// Blobs hashed.
    pub blobs: u64,
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Wall time of the pass.
    pub seconds: f64,
    /// Throughput, in 10^6 bytes per second.
    pub mb_per_s: f64,
    /// Blobs whose data does not hash to their name.
    pub mismatched: u64,
    /// Blobs whose data could not be read.
    pub unreadable: u64,
}

/// A tag a pull by name would fail for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct BrokenTag {
    /// Its repository.
    pub repository: String,
    /// The tag.
    pub tag: String,
}

/// The result of a `verify` run; serialized as the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// [`VERIFY_REPORT_VERSION`].
    pub regsweep_verify: u32,
    /// The storage root (the directory holding `docker/registry/v2`).
    #[serde(serialize_with = "crate::text::lossy_path")]
    pub storage_root: PathBuf,
    /// What was looked at.
    pub checked: Checked,
    /// Every problem, sorted by kind, then path.
    pub problems: Vec<Problem>,
    /// Tags whose image cannot be pulled whole, sorted.
    pub broken_tags: Vec<BrokenTag>,
    /// Manifests (per repository) that cannot be pulled whole.
    pub broken_manifests: u64,
    /// The digest pass; `None` without `--digests`.
    pub digests: Option<DigestCheck>,
    /// 0 when there is no problem, 1 otherwise.
    pub exit_code: ExitStatus,
}

/// Runs the checks in a thread pool of its own.
pub fn verify(config: &VerifyConfig) -> Result<Verification> {
    crate::gc::thread_pool(config.threads, "regsweep-verify")?.install(|| run(config))
}

fn run(config: &VerifyConfig) -> Result<Verification> {
    let storage = &config.storage;
    let layout = storage.layout();
    let progress = Progress::new(config.progress);
    let lock = match storage {
        Storage::Filesystem(layout) => lock::held_warning(layout.root(), "check"),
        Storage::S3(bucket) => s3::lock::held_warning(bucket, "check"),
    };
    let mut problems: Vec<Problem> = lock.into_iter().map(Problem::from_warning).collect();

    let task = progress.spinner("indexing", "files");
    let interrupt = crate::interrupt::Interrupt::default();
    let index = match storage {
        Storage::Filesystem(layout) => {
            crate::storage::fs::index::build_checking_links(layout, &task)?
        }
        Storage::S3(bucket) => {
            let options = s3::index::ListOptions {
                check_layer_links: true,
                check_tag_index_links: true,
                ..Default::default()
            };
            s3::index::build(bucket, options, &interrupt, &task)?.0
        }
    };
    task.finish();
    let task = progress.spinner("reading manifests", "manifests");
    let loaded = storage.load_manifests(&index, &task, &interrupt)?;
    task.finish();

    problems.extend(index.warnings.iter().cloned().map(Problem::from_warning));
    // Blobs whose data is bad, each reported once, with the images it
    // breaks when a manifest uses it.
    let (digests, bad_blobs) = if config.digests {
        let (check, found) = check_digests(storage, &index, config.progress);
        (Some(check), found)
    } else {
        (None, DigestMap::default())
    };
    let per_repo: Vec<(Vec<Problem>, DigestSet)> = index
        .repositories
        .par_iter()
        .map(|repo| check_repository(layout, &index, &loaded, &bad_blobs, repo))
        .collect();
    let mut used_bad = DigestSet::default();
    for (found, used) in per_repo {
        problems.extend(found);
        used_bad.extend(used);
    }
    problems.extend(
        bad_blobs
            .into_iter()
            .filter(|(digest, _)| !used_bad.contains(digest))
            .map(|(_, problem)| problem),
    );

    problems.sort_by(|a, b| {
        (a.kind, &a.path, &a.repository, &a.manifest).cmp(&(
            b.kind,
            &b.path,
            &b.repository,
            &b.manifest,
        ))
    });
    let broken_tags: BTreeSet<BrokenTag> = problems
        .iter()
        .flat_map(|p| {
            p.tags.iter().map(|tag| BrokenTag {
                repository: p.repository.clone().unwrap_or_default(),
                tag: tag.clone(),
            })
        })
        .collect();
    // Only the image checks name a manifest.
    let broken_manifests: BTreeSet<(&str, &str)> = problems
        .iter()
        .filter_map(|p| Some((p.repository.as_deref()?, p.manifest.as_deref()?)))
        .collect();
    let checked = Checked {
        repositories: index.repositories.len() as u64,
        tags: index.repositories.iter().map(|r| r.tags.len() as u64).sum(),
        manifests: loaded.len() as u64,
        blobs: index.blobs.len() as u64,
        blob_bytes: index.blobs.iter().map(|b| b.bytes()).sum(),
        files: index.files,
    };
    let exit_code = if problems.is_empty() {
        ExitStatus::Success
    } else {
        ExitStatus::Warnings
    };
    Ok(Verification {
        regsweep_verify: VERIFY_REPORT_VERSION,
        storage_root: storage.name(),
        checked,
        broken_manifests: broken_manifests.len() as u64,
        problems,
        broken_tags: broken_tags.into_iter().collect(),
        digests,
        exit_code,
    })
}

/// How a manifest was reached within a repository.
#[derive(Default)]
struct Reach<'a> {
    /// Tags whose current manifest is this one or reaches it.
    tags: BTreeSet<&'a str>,
    /// An index that lists it as a child (the first one found).
    parent: Option<Digest>,
}

/// Follows every tag's current manifest and every revision through index
/// children, and checks what each manifest needs. Returns the problems and
/// which of `bad_blobs` (blob data that does not hash to its name, or cannot
/// be read) the repository's manifests use: those are reported per use.
fn check_repository(
    layout: &Layout,
    index: &Index,
    loaded: &DigestMap<Loaded>,
    bad_blobs: &DigestMap<Problem>,
    repo: &Repository,
) -> (Vec<Problem>, DigestSet) {
    // A manifest a revision link names is served through that link: it
    // needs no link of its own.
    let linked: DigestSet = repo
        .revisions
        .iter()
        .filter(|r| r.linked)
        .map(|r| r.digest)
        .chain(repo.revision_link_targets.iter().map(|(_, target)| *target))
        .collect();
    let mut reach: BTreeMap<Digest, Reach> = BTreeMap::new();
    let roots = repo
        .tags
        .iter()
        .filter_map(|t| Some((t.current?, Some(t.name.as_str()))))
        .chain(linked.iter().map(|d| (*d, None)));
    for (root, tag) in roots {
        let mut seen = DigestSet::default();
        let mut stack = vec![(root, None)];
        while let Some((digest, parent)) = stack.pop() {
            if !seen.insert(digest) {
                continue;
            }
            let entry = reach.entry(digest).or_default();
            entry.tags.extend(tag);
            if entry.parent.is_none() {
                entry.parent = parent;
            }
            if let Some(Ok(refs)) = loaded.get(&digest) {
                stack.extend(refs.children.iter().map(|c| (*c, Some(digest))));
            }
            stack.extend(mark::link_targets(repo, &digest).map(|target| (target, None)));
        }
    }

    let mut problems = Vec::new();
    let mut used_bad = DigestSet::default();
    for (digest, how) in &reach {
        let problem = |kind, path: PathBuf, missing: Option<&Digest>, message: String| Problem {
            kind,
            path,
            repository: Some(repo.name.clone()),
            tags: how.tags.iter().map(|t| (*t).to_owned()).collect(),
            manifest: Some(digest.to_string()),
            digest: missing.map(Digest::to_string),
            message,
        };
        let named_by = describe_reach(&repo.name, digest, how);
        if !linked.contains(digest) {
            problems.push(problem(
                ProblemKind::Verify(VerifyKind::UnlinkedManifest),
                link_file(&layout.revision_dir(&repo.name, digest)),
                Some(digest),
                format!("{named_by}, which has no revision link in the repository: the registry answers `manifest unknown`"),
            ));
        }
        let stored = index.blob(digest).and_then(|b| b.data_size()).is_some();
        if !stored {
            problems.push(problem(
                ProblemKind::Verify(VerifyKind::MissingManifest),
                layout.blob_data(digest),
                Some(digest),
                format!("{named_by}, whose blob is not in storage"),
            ));
            continue;
        }
        match loaded.get(digest) {
            Some(Ok(refs)) => {
                let missing = refs
                    .stored
                    .iter()
                    .map(|id| &index.blobs[*id as usize])
                    .filter(|b| b.data_size().is_none())
                    .map(|b| b.digest)
                    .chain(
                        refs.absent
                            .iter()
                            .filter(|(_, foreign)| !foreign)
                            .map(|(d, _)| *d),
                    );
                for blob in missing {
                    problems.push(problem(
                        ProblemKind::Damage(WarningKind::MissingBlob),
                        layout.blob_dir(&blob),
                        Some(&blob),
                        format!("{named_by}, which references blob {blob}: it is not in storage"),
                    ));
                }
                for id in refs.stored.iter() {
                    let blob = index.blobs[*id as usize].digest;
                    if let Some(bad) = bad_blobs.get(&blob) {
                        used_bad.insert(blob);
                        problems.push(problem(
                            bad.kind,
                            bad.path.clone(),
                            Some(&blob),
                            format!("{named_by}, which references blob {blob}: {}", bad.message),
                        ));
                    }
                }
            }
            Some(Err(reason)) => problems.push(problem(
                ProblemKind::Damage(WarningKind::UnreadableManifest),
                layout.blob_data(digest),
                None,
                format!("{named_by}, which cannot be read: {reason}"),
            )),
            None => {}
        }
    }
    (problems, used_bad)
}

/// "manifest M of repository R (tags a, b; child of index P)".
fn describe_reach(repository: &str, digest: &Digest, how: &Reach) -> String {
    let mut text = format!("manifest {digest} of repository `{repository}`");
    let tags: Vec<&str> = how.tags.iter().copied().collect();
    let mut context = Vec::new();
    match tags.as_slice() {
        [] => context.push("untagged".to_owned()),
        [one] => context.push(format!("tag `{one}`")),
        many => context.push(format!("tags `{}`", many.join("`, `"))),
    }
    if let Some(parent) = &how.parent {
        context.push(format!("listed by index {parent}"));
    }
    text.push_str(&format!(" ({})", context.join("; ")));
    text
}

/// Hashes every blob with data, in parallel on the current pool. Returns the
/// pass's figures and a problem per blob whose data is bad.
fn check_digests(
    storage: &Storage,
    index: &Index,
    progress: bool,
) -> (DigestCheck, DigestMap<Problem>) {
    let layout = storage.layout();
    let total: u64 = index.blobs.iter().map(|b| b.bytes()).sum();
    let bar = byte_bar(progress, total);
    let bytes = AtomicU64::new(0);
    let read = |n: u64| {
        bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    };
    let start = Instant::now();
    let with_data: Vec<&Blob> = index
        .blobs
        .iter()
        .filter(|b| b.data_size().is_some())
        .collect();
    let outcomes: Vec<io::Result<Hashed>> = match storage {
        Storage::Filesystem(layout) => {
            let shards = layout.open_blob_shards();
            with_data
                .par_iter()
                .map_init(
                    || vec![0u8; HASH_BUFFER_BYTES],
                    |buf, blob| match &shards {
                        Some(shards) => hash_blob(shards, &blob.digest, buf, read),
                        None => Err(io::Error::other("blob storage cannot be opened")),
                    },
                )
                .collect()
        }
        Storage::S3(bucket) => {
            let digests: Vec<Digest> = with_data.iter().map(|b| b.digest).collect();
            s3::manifests::hash_blobs(bucket, &digests, read)
                .into_iter()
                .zip(&digests)
                .map(|(hashed, digest)| {
                    hashed.map(|actual| match actual == *digest {
                        true => Hashed::Matches,
                        false => Hashed::Differs(actual),
                    })
                })
                .collect()
        }
    };
    let results: Vec<(u64, Option<Problem>)> = with_data
        .par_iter()
        .zip(outcomes)
        .map(|(blob, outcome)| {
            let path = layout.blob_data(&blob.digest);
            let problem = |kind, message: String| {
                Some(Problem {
                    kind: ProblemKind::Verify(kind),
                    path: path.clone(),
                    repository: None,
                    tags: Vec::new(),
                    manifest: None,
                    digest: Some(blob.digest.to_string()),
                    message,
                })
            };
            match outcome {
                Ok(Hashed::Matches) => (1, None),
                Ok(Hashed::Differs(actual)) => (
                    1,
                    problem(
                        VerifyKind::DigestMismatch,
                        format!(
                            "blob data hashes to {actual}, not to its name {}",
                            blob.digest
                        ),
                    ),
                ),
                // Not a regular file: the index reported it already.
                Ok(Hashed::NotAFile) => (0, None),
                Err(e) => (
                    1,
                    problem(
                        VerifyKind::UnreadableBlob,
                        format!("cannot read blob data: {e}"),
                    ),
                ),
            }
        })
        .collect();
    let elapsed = start.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let bytes = bytes.into_inner();
    let mut check = DigestCheck {
        blobs: results.iter().map(|(n, _)| n).sum(),
        bytes,
        seconds: elapsed.as_secs_f64(),
        mb_per_s: mb_per_s(bytes, elapsed),
        ..DigestCheck::default()
    };
    let problems: DigestMap<Problem> = results
        .into_iter()
        .filter_map(|(_, p)| p)
        .filter_map(|p| Some((Digest::parse(p.digest.as_deref()?)?, p)))
        .collect();
    for p in problems.values() {
        match p.kind {
            ProblemKind::Verify(VerifyKind::DigestMismatch) => check.mismatched += 1,
            _ => check.unreadable += 1,
        }
    }
    (check, problems)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        bytes as f64 / 1e6 / seconds
    } else {
        0.0
    }
}

fn byte_bar(enabled: bool, total: u64) -> Option<ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message("hashing");
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

enum Hashed {
    Matches,
    Differs(Digest),
    NotAFile,
}

/// Streams the data of blob `digest` through `buf` into sha256.
fn hash_blob(
    shards: &Dir,
    digest: &Digest,
    buf: &mut [u8],
    mut read: impl FnMut(u64),
) -> io::Result<Hashed> {
    let mut file = match shards.open_file(relative::blob_data(digest)) {
        Ok(Some(file)) => file,
        Ok(None) => return Err(io::ErrorKind::NotFound.into()),
        Err(e) if is_symlink_error(&e) => return Ok(Hashed::NotAFile),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(Hashed::NotAFile);
    }
    let mut hasher = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                read(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let actual = Digest::from_bytes(hasher.finalize().into());
    Ok(if actual == *digest {
        Hashed::Matches
    } else {
        Hashed::Differs(actual)
    })
}

impl Verification {
    /// Writes the JSON report.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes one line per problem: `kind: path: message`.
    pub fn write_problems(&self, out: &mut impl Write) -> io::Result<()> {
        for p in &self.problems {
            writeln!(
                out,
                "regsweep: {}: {}: {}",
                p.kind.name(),
                p.path.display(),
                p.message
            )?;
        }
        Ok(())
    }

    /// Writes the summary for people.
    pub fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let c = &self.checked;
        writeln!(
            out,
            "Verified {}: {}, {}, {} read, {} ({}).",
            self.storage_root.display(),
            counted(c.repositories, "repository", "repositories"),
            counted(c.tags, "tag", "tags"),
            counted(c.manifests, "manifest", "manifests"),
            counted(c.blobs, "blob", "blobs"),
            human_bytes(c.blob_bytes),
        )?;
        if let Some(d) = &self.digests {
            writeln!(
                out,
                "Digests: {} hashed, {} in {:.1} s ({:.1} MB/s); {} mismatched, {} unreadable.",
                counted(d.blobs, "blob", "blobs"),
                human_bytes(d.bytes),
                d.seconds,
                d.mb_per_s,
                d.mismatched,
                d.unreadable,
            )?;
        }
        if self.problems.is_empty() {
            return writeln!(out, "No problems found.");
        }
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        for p in &self.problems {
            *by_kind.entry(p.kind.name()).or_default() += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(
            out,
            "{}: {}; {} and {} cannot be pulled whole.",
            counted(self.problems.len() as u64, "problem", "problems"),
            kinds.join(", "),
            counted(self.broken_tags.len() as u64, "tag", "tags"),
            counted(self.broken_manifests, "manifest", "manifests"),
        )?;
        for t in &self.broken_tags {
            writeln!(out, "  broken: {}:{}", t.repository, t.tag)?;
        }
        Ok(())
    }
}

fn counted(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

//! Quarantine on a bucket: `gc --trash s3://BUCKET/PREFIX` moves what it
//! would delete under PREFIX, and `restore s3://BUCKET/PREFIX` moves it back.
//! The meaning is the filesystem's (see [`crate::storage::fs::trash`]); the
//! means differ, as an object can be neither renamed nor appended to.
//!
//! ```text
//! PREFIX/<UTC time>-<pid>/journal-<NN>-<kind>.jsonl   one per kind swept, written before its copies
//! PREFIX/<UTC time>-<pid>/docker/registry/v2/...      what moved, at its key below the rootdirectory
//! PREFIX/<UTC time>-<pid>/end.json                    the run ended: keys moved, interrupted or not
//! ```
//!
//! PREFIX is in the registry's bucket (CopyObject copies within one store)
//! and outside `<rootdirectory>/docker/registry/v2/`. A move is a
//! server-side copy (one CopyObject per key) followed by the key's deletion
//! in the sweep's DeleteObjects batch: a batch's keys are deleted only once
//! every copy in it succeeded, and a key whose copy failed keeps its
//! candidate, and what depends on it, as a failed deletion does.
//!
//! Each kind's journal object is written whole (one PUT) before any of that
//! kind's copies: a header line like the filesystem journal's (its
//! `storage_root` is `s3://bucket/rootdirectory`), then one line
//! `{"op":"move","kind":…,"key":…}` per key, the key relative to the
//! rootdirectory. A run killed after a journal and before some of its copies
//! leaves journaled keys with nothing in the batch: restore skips them.
//!
//! Restore reads every journal of a batch, newest batch first, in the
//! reverse of the sweep order (blobs come back before the links and
//! manifests pointing at them). Before copying anything it lists the
//! registry's prefixes the keys go back to and refuses if one exists again;
//! then it copies each key back and, when all of a batch's copies
//! succeeded, deletes the batch's objects. Only keys below
//! `docker/registry/v2/blobs/` or `…/repositories/` are restored, and only
//! into the bucket the trash is in.
//!
//! Restore holds the registry's lock. `trash empty` holds the lock of the
//! registry a batch without `end.json` came from: a run may still be
//! writing it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use futures_util::{StreamExt, stream};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::config::{S3Target, describe_error};
use super::{DEFAULT_CONCURRENCY, DELETE_BATCH, Fetched, S3Storage};
use crate::clock;
use crate::duration::Age;
use crate::error::{Error, Result};
use crate::storage::fs::lock::host_name;
use crate::storage::fs::trash::{
    BatchListing, EmptyOutcome, Header, JOURNAL_VERSION, Listing, RestoreOutcome,
};
use crate::storage::layout::{V2_SUFFIX, names};

/// The object that closes a batch.
pub const END: &str = "end.json";
/// Journal objects are `journal-<NN>-<kind>.jsonl`.
const JOURNAL_PREFIX: &str = "journal-";
const JOURNAL_SUFFIX: &str = ".jsonl";
/// A journal object larger than this is none regsweep wrote.
const MAX_JOURNAL: u64 = 1 << 30;

/// One line of a journal object after its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Line {
    /// `key` (relative to the rootdirectory) is about to be copied into the
    /// batch, then deleted.
    Move {
        /// Candidate kind, as in the report.
        kind: String,
        /// Relative to the rootdirectory.
        key: String,
    },
}

/// What `end.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Keys moved (copied, then deleted from the registry).
    pub moved: u64,
    /// The sweep stopped early.
    pub interrupted: bool,
    /// When the run ended (RFC 3339, UTC).
    pub finished: String,
}

/// Whether `path` (a command-line TRASH or DIR) names a bucket.
pub fn is_url(path: &Path) -> bool {
    path.to_str().is_some_and(super::config::is_s3_url)
}

/// `s3://bucket/prefix` read into the bucket and the prefix (no leading or
/// trailing `/`, never empty).
fn parse_url(url: &str) -> Result<(String, String)> {
    let refuse = |reason: &str| Error::Trash {
        path: PathBuf::from(url),
        reason: reason.to_owned(),
    };
    let (bucket, prefix) =
        super::config::split_s3_url(url).ok_or_else(|| refuse("not an s3:// address"))?;
    if bucket.is_empty() || prefix.is_empty() {
        return Err(refuse(
            "expected s3://BUCKET/PREFIX: a trash needs a prefix of its own in the bucket",
        ));
    }
    if prefix
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(refuse("the prefix has an empty, `.` or `..` component"));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// The key prefix of the rootdirectory: `root/`, or nothing.
fn root_prefix(storage: &S3Storage) -> String {
    let root = super::path_str(storage.layout().root());
    if root.is_empty() {
        root
    } else {
        format!("{root}/")
    }
}

/// A trash prefix checked for a sweep of `storage`.
#[derive(Debug)]
pub struct S3Trash {
    bucket: String,
    prefix: String,
}

impl S3Trash {
    /// Checks that `url` (`s3://BUCKET/PREFIX`) can receive what the sweep
    /// of `storage` moves: the same bucket, outside the registry's
    /// `docker/registry/v2/`. Nothing is written.
    pub fn prepare(url: &Path, storage: &S3Storage) -> Result<S3Trash> {
        let text = url.to_string_lossy();
        let (bucket, prefix) = parse_url(&text)?;
        let refuse = |reason: String| Error::Trash {
            path: url.to_path_buf(),
            reason,
        };
        if bucket != storage.target().bucket {
            return Err(refuse(format!(
                "not in the registry's bucket `{}`: objects are moved by server-side copies within one bucket",
                storage.target().bucket
            )));
        }
        let v2 = super::path_str(storage.layout().v2());
        if prefix == v2 || prefix.starts_with(&format!("{v2}/")) {
            return Err(refuse(format!(
                "the trash must not be inside the registry's prefix s3://{bucket}/{v2}/"
            )));
        }
        Ok(S3Trash { bucket, prefix })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Starts a new batch for `storage`; its objects are written as the
    /// sweep goes.
    pub fn begin(&self, storage: &S3Storage) -> S3Batch {
        let now = SystemTime::now();
        let pid = std::process::id();
        let name = format!("{}-{pid}", clock::compact(now));
        S3Batch {
            bucket: self.bucket.clone(),
            prefix: format!("{}/{name}", self.prefix),
            root: root_prefix(storage),
            header: Header {
                regsweep_trash: JOURNAL_VERSION,
                batch: name.clone(),
                storage_root: PathBuf::from(storage.target().to_string()),
                started: clock::rfc3339(now),
                pid,
                host: host_name(),
            },
            name,
            steps: AtomicUsize::new(0),
            moved: AtomicU64::new(0),
        }
    }
}

/// The batch a sweep on a bucket moves into.
#[derive(Debug)]
pub struct S3Batch {
    bucket: String,
    /// `PREFIX/<name>`.
    prefix: String,
    /// The rootdirectory's key prefix (`root/` or empty).
    root: String,
    header: Header,
    name: String,
    steps: AtomicUsize,
    moved: AtomicU64,
}

impl S3Batch {
    /// The batch's name (`<UTC time>-<pid>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `s3://bucket/PREFIX/<name>/`, where its journals are.
    pub fn url(&self) -> String {
        format!("s3://{}/{}/", self.bucket, self.prefix)
    }

    /// The key relative to the rootdirectory of a registry key.
    fn relative<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.root)
    }

    /// Where the registry key `key` goes in the batch.
    pub(crate) fn destination(&self, key: &str) -> Option<String> {
        Some(format!("{}/{}", self.prefix, self.relative(key)?))
    }

    /// Counts keys moved.
    pub(crate) fn moved(&self, keys: u64) {
        self.moved.fetch_add(keys, Ordering::Relaxed);
    }

    /// Writes the journal object of the next kind step, naming every key
    /// about to be moved.
    pub(crate) async fn journal(
        &self,
        storage: &S3Storage,
        kind: &str,
        keys: &[&str],
    ) -> std::result::Result<(), String> {
        let step = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = serde_json::to_vec(&self.header).map_err(|e| e.to_string())?;
        body.push(b'\n');
        for key in keys {
            let key = self
                .relative(key)
                .ok_or_else(|| format!("{key} is outside the rootdirectory"))?;
            let line = Line::Move {
                kind: kind.to_owned(),
                key: key.to_owned(),
            };
            serde_json::to_writer(&mut body, &line).map_err(|e| e.to_string())?;
            body.push(b'\n');
        }
        let key = format!(
            "{}/{JOURNAL_PREFIX}{step:02}-{kind}{JOURNAL_SUFFIX}",
            self.prefix
        );
        self.put(storage, &key, body, "the journal ").await
    }

    /// PUTs `body` at `key` of the batch's bucket; `what` names it in an
    /// error.
    async fn put(
        &self,
        storage: &S3Storage,
        key: &str,
        body: Vec<u8>,
        what: &str,
    ) -> std::result::Result<(), String> {
        storage.requests.put.fetch_add(1, Ordering::Relaxed);
        storage
            .store()
            .put(&Key::from(key), PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "cannot write {what}s3://{}/{key}: {}",
                    self.bucket,
                    describe_error(&e)
                )
            })
    }

    /// Writes `end.json`.
    pub(crate) async fn finish(
        &self,
        storage: &S3Storage,
        interrupted: bool,
    ) -> std::result::Result<(), String> {
        let end = End {
            moved: self.moved.load(Ordering::Relaxed),
            interrupted,
            finished: clock::rfc3339(SystemTime::now()),
        };
        let body = serde_json::to_vec(&end).map_err(|e| e.to_string())?;
        let key = format!("{}/{END}", self.prefix);
        self.put(storage, &key, body, "").await
    }
}

/// A batch found under a trash prefix.
#[derive(Debug, Clone)]
struct Found {
    /// `PREFIX/<name>`.
    prefix: String,
    header: Header,
    /// Journal entries in sweep order: (journal object, kind, key).
    moves: Vec<(usize, String, String)>,
    /// Journals that could not be read: (url, why).
    problems: Vec<(PathBuf, String)>,
    /// Every object of the batch: key and size.
    objects: BTreeMap<String, u64>,
}

/// A bucket opened for the trash commands, and the trash prefix.
struct Opened {
    storage: S3Storage,
    bucket: String,
    prefix: String,
}

fn open(url: &Path) -> Result<Opened> {
    let text = url.to_string_lossy();
    let (bucket, prefix) = parse_url(&text)?;
    let target = S3Target::from_url(&format!("s3://{bucket}"), |name| std::env::var(name).ok())?;
    let storage = S3Storage::open(target, DEFAULT_CONCURRENCY)?;
    Ok(Opened {
        storage,
        bucket,
        prefix,
    })
}

impl Opened {
    fn url(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("s3://{}/{key}", self.bucket))
    }

    fn error(&self, key: &str, e: &object_store::Error) -> Error {
        Error::ObjectStore {
            path: self.url(key),
            message: describe_error(e),
        }
    }

    /// The registries of the bucket at the rootdirectory key prefixes
    /// `roots`, for their locks.
    fn registries(&self, roots: &[String]) -> Result<Vec<S3Storage>> {
        roots
            .iter()
            .map(|root| {
                let target = S3Target::from_url(
                    &format!("s3://{}/{}", self.bucket, root.trim_end_matches('/')),
                    |name| std::env::var(name).ok(),
                )?;
                S3Storage::open(target, 4)
            })
            .collect()
    }

    /// Every object under `prefix/` (a key prefix), with its size.
    async fn list_all(&self, prefix: &str) -> Result<BTreeMap<String, u64>> {
        let mut objects = BTreeMap::new();
        let mut listed = self.storage.list(Path::new(prefix));
        self.storage.requests.list.fetch_add(1, Ordering::Relaxed);
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| self.error(prefix, &e))?;
            objects.insert(meta.location.as_ref().to_owned(), meta.size);
        }
        Ok(objects)
    }

    /// Every batch of the trash, newest first.
    async fn scan(&self) -> Result<Vec<Found>> {
        let (names, _) = self.storage.list_dirs(Path::new(&self.prefix)).await?;
        let mut found = Vec::new();
        for name in names {
            let prefix = format!("{}/{name}", self.prefix);
            // Only a prefix with a journal at its top is a batch, and only
            // a batch is listed whole (a trash above the registry's prefix
            // must not list the registry).
            let (_, top) = self.storage.list_dirs(Path::new(&prefix)).await?;
            let mut journals: Vec<String> = top
                .iter()
                .map(|meta| meta.location.as_ref().to_owned())
                .filter(|k| is_journal(&prefix, k))
                .collect();
            if journals.is_empty() {
                continue;
            }
            journals.sort();
            let objects = self.list_all(&format!("{prefix}/")).await?;
            let mut header: Option<Header> = None;
            let mut moves = Vec::new();
            let mut problems = Vec::new();
            for (n, journal) in journals.iter().enumerate() {
                let url = self.url(journal);
                let text = match self.storage.get(Path::new(journal), MAX_JOURNAL).await {
                    Ok(Fetched::Bytes(bytes)) => bytes,
                    Ok(Fetched::Missing) => continue,
                    Ok(Fetched::TooLarge(size)) => {
                        problems.push((
                            url,
                            format!("the journal is {size} bytes, over {MAX_JOURNAL}; its keys stay in the batch"),
                        ));
                        continue;
                    }
                    Err(e) => {
                        problems.push((
                            url,
                            format!("cannot read the journal: {}", describe_error(&e)),
                        ));
                        continue;
                    }
                };
                let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
                let this: Header = match lines.next().map(serde_json::from_slice::<Header>) {
                    Some(Ok(h)) => h,
                    _ => {
                        problems.push((
                            url,
                            "line 1 is not a journal header; its keys stay in the batch".into(),
                        ));
                        continue;
                    }
                };
                if header
                    .as_ref()
                    .is_some_and(|h| h.storage_root != this.storage_root || h.batch != this.batch)
                {
                    problems.push((url, "its header names another batch or storage than the batch's first journal; its keys stay in the batch".into()));
                    continue;
                }
                header.get_or_insert(this);
                for (i, line) in lines.enumerate() {
                    match serde_json::from_slice::<Line>(line) {
                        Ok(Line::Move { kind, key }) => moves.push((n, kind, key)),
                        Err(e) => problems.push((
                            url.clone(),
                            format!(
                                "line {}: not a journal entry ({e}); it stays in the batch",
                                i + 2
                            ),
                        )),
                    }
                }
            }
            if let Some(header) = header {
                found.push(Found {
                    prefix,
                    header,
                    moves,
                    problems,
                    objects,
                });
            }
        }
        found.sort_by(|a, b| {
            (b.header.started.as_str(), b.header.batch.as_str())
                .cmp(&(a.header.started.as_str(), a.header.batch.as_str()))
        });
        Ok(found)
    }

    /// Deletes `keys`, 1,000 per request; the keys that could not be, with why.
    async fn delete(&self, keys: Vec<String>) -> Vec<(PathBuf, String)> {
        let mut failures = Vec::new();
        for chunk in keys.chunks(DELETE_BATCH) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let answers = self.storage.delete_keys(&chunk).await;
            for (key, failure) in chunk.iter().zip(answers) {
                if let Some(why) = failure {
                    failures.push((self.url(key), why));
                }
            }
        }
        failures
    }
}

/// Whether `key` is a journal object of the batch `prefix`.
fn is_journal(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|file| {
            file.starts_with(JOURNAL_PREFIX)
                && file.ends_with(JOURNAL_SUFFIX)
                && !file.contains('/')
        })
}

/// The components of a journaled key if it is a plain key below
/// `docker/registry/v2/blobs/` or `…/repositories/`; otherwise why not.
fn journal_key(key: &str) -> std::result::Result<Vec<&str>, String> {
    let parts: Vec<&str> = key.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err("has an empty, `.` or `..` component".into());
    }
    match parts.strip_prefix(V2_SUFFIX.as_slice()) {
        Some(below)
            if below.len() >= 2 && [names::BLOBS, names::REPOSITORIES].contains(&below[0]) =>
        {
            Ok(parts)
        }
        _ => Err(format!(
            "is not below `{0}/{1}` or `{0}/{2}`",
            V2_SUFFIX.join("/"),
            names::BLOBS,
            names::REPOSITORIES
        )),
    }
}

/// The registry prefix listed to see whether `parts` (a journaled key)
/// exists again: its blob's two-letter directory, or its repository's
/// metadata directory (`…/_manifests/`, `…/_layers/`, `…/_uploads/`).
fn listing_prefix(root: &str, parts: &[&str]) -> String {
    let end = if parts[3] == names::BLOBS {
        6.min(parts.len() - 1)
    } else {
        parts
            .iter()
            .position(|p| p.starts_with(names::METADATA_PREFIX))
            .map_or(parts.len() - 1, |i| i + 1)
    };
    format!("{root}{}/", parts[..end].join("/"))
}

/// The rootdirectory key prefix of a journal's `storage_root`, if it names
/// a root in `bucket`.
fn journal_root(header: &Header, bucket: &str) -> std::result::Result<String, String> {
    let recorded = header.storage_root.to_string_lossy();
    let (b, root) = super::config::split_s3_url(&recorded).ok_or_else(|| {
        format!("the journal's storage_root `{recorded}` is not an s3:// address")
    })?;
    if b != bucket {
        return Err(format!(
            "the journal's storage_root `{recorded}` is not in the trash's bucket `{bucket}`"
        ));
    }
    if root.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "the journal's storage_root `{recorded}` has a `.` or `..` component"
        ));
    }
    Ok(if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    })
}

/// What must exist in the registry for a restored key to mean anything.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Needs {
    /// Nothing: a blob, or a key of a repository moved whole (it comes back
    /// as a whole).
    Nothing,
    /// The repository, by its key prefix `…/repositories/<name>/`: a key
    /// under its `_manifests/` or `_layers/` (registry 2.8 lists a
    /// repository by its `_layers`, later ones by `_manifests`).
    Repository(String),
    /// The tag's `current/link` key: a tag without one lists in the tag list
    /// and does not pull.
    Tag(String),
}

/// What the journaled key `parts` of `kind` needs.
fn needs_of(kind: &str, root: &str, parts: &[&str]) -> Needs {
    if parts[3] == names::BLOBS || kind == "repository" {
        return Needs::Nothing;
    }
    let Some(meta) = parts
        .iter()
        .skip(5)
        .position(|p| p.starts_with(names::METADATA_PREFIX))
        .map(|i| i + 5)
    else {
        return Needs::Nothing;
    };
    let in_tag = parts[meta] == names::MANIFESTS
        && parts.get(meta + 1) == Some(&names::TAGS)
        && parts.len() > meta + 3;
    if kind == "tag_index_entry" && in_tag {
        return Needs::Tag(format!(
            "{root}{}/{}/{}",
            parts[..meta + 3].join("/"),
            names::CURRENT,
            names::LINK
        ));
    }
    Needs::Repository(format!("{root}{}/", parts[..meta].join("/")))
}

/// Whether what `needs` names is in `present`; if not, why the key stays.
fn check_needs(present: &BTreeSet<String>, needs: &Needs) -> std::result::Result<(), String> {
    let any_under = |prefix: &str| {
        present
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|k| k.starts_with(prefix))
    };
    match needs {
        Needs::Nothing => Ok(()),
        Needs::Repository(repo) => {
            let exists = [names::MANIFESTS, names::LAYERS]
                .iter()
                .any(|meta| any_under(&format!("{repo}{meta}/")));
            exists.then_some(()).ok_or_else(|| {
                format!(
                    "repository {repo} no longer exists (nothing under `_manifests/` or `_layers/`: deleted since the sweep?): not brought back, which would recreate part of it; it stays in the batch"
                )
            })
        }
        Needs::Tag(current) => present.contains(current).then_some(()).ok_or_else(|| {
            format!(
                "the tag's {current} no longer exists (deleted since the sweep?): its history is not brought back, which would make a tag that lists and does not pull; it stays in the batch"
            )
        }),
    }
}

/// One key to bring back.
struct Step {
    /// The journal object it was written in (keys of one are copied together).
    journal: usize,
    /// In the batch.
    from: String,
    /// In the registry.
    to: String,
    needs: Needs,
}

/// A batch checked for restoring.
struct Plan<'f> {
    found: &'f Found,
    root: String,
    steps: Vec<Step>,
    reported: Vec<(PathBuf, String)>,
}

/// Copies everything of the batches under `url` (or of the batch `only`)
/// back into the registry they came from, newest batch first, each in the
/// reverse of its journals, then deletes each fully restored batch. Refuses,
/// copying nothing, if any key to restore exists again in the registry.
pub fn restore(
    url: &Path,
    only: Option<&str>,
    quit: Option<&AtomicBool>,
) -> Result<RestoreOutcome> {
    let opened = open(url)?;
    let mut batches = opened.storage.block_on(opened.scan())?;
    if let Some(name) = only {
        batches.retain(|b| b.header.batch == name);
        if batches.is_empty() {
            return Err(Error::Trash {
                path: url.join(name),
                reason: "no such batch in the trash (see `regsweep trash list`)".into(),
            });
        }
    } else if batches.is_empty() {
        return Err(Error::Trash {
            path: url.to_path_buf(),
            reason: "no batches to restore here (a trash prefix holds one `<UTC time>-<pid>/` with journal-*.jsonl objects per `gc --trash` run; see `regsweep trash list`)".into(),
        });
    }
    let mut outcome = RestoreOutcome::default();
    let mut plans = Vec::new();
    for found in &batches {
        let root = match journal_root(&found.header, &opened.bucket) {
            Ok(root) => root,
            Err(why) => {
                outcome.failures.push((
                    opened.url(&format!("{}/", found.prefix)),
                    format!("{why}; nothing of this batch was restored"),
                ));
                continue;
            }
        };
        let mut reported = found.problems.clone();
        let mut steps = Vec::new();
        for (journal, kind, key) in found.moves.iter().rev() {
            match journal_key(key) {
                Ok(parts) => steps.push(Step {
                    journal: *journal,
                    from: format!("{}/{key}", found.prefix),
                    to: format!("{root}{key}"),
                    needs: needs_of(kind, &root, &parts),
                }),
                Err(why) => reported.push((
                    opened.url(&format!("{}/", found.prefix)),
                    format!("the journaled key `{key}` {why}: refused, nothing copied"),
                )),
            }
        }
        plans.push(Plan {
            found,
            root,
            steps,
            reported,
        });
    }

    // The registries' locks, one per rootdirectory, held to the end.
    let mut roots: Vec<String> = plans.iter().map(|p| p.root.clone()).collect();
    roots.sort();
    roots.dedup();
    let registries = opened.registries(&roots)?;
    let mut locks = Vec::new();
    for registry in &registries {
        locks.push(super::lock::S3Lock::acquire(registry, "restore", false)?);
    }
    let restored = opened
        .storage
        .block_on(copy_back(&opened, &plans, outcome, quit));
    drop(locks);
    restored
}

/// Checks that no key of `plans` exists again in the registry, then copies
/// them back and deletes each batch whose keys all came back.
async fn copy_back(
    opened: &Opened,
    plans: &[Plan<'_>],
    mut outcome: RestoreOutcome,
    quit: Option<&AtomicBool>,
) -> Result<RestoreOutcome> {
    // Check everything before copying anything.
    let mut prefixes = HashSet::new();
    for plan in plans {
        for step in &plan.steps {
            if let Some(key) = step.to.strip_prefix(&plan.root) {
                if let Ok(parts) = journal_key(key) {
                    prefixes.insert(listing_prefix(&plan.root, &parts));
                }
                if let Needs::Repository(repo) | Needs::Tag(repo) = &step.needs {
                    // The repository of a tag's `current/link` too.
                    let repo = repo
                        .find(&format!("/{}/", names::MANIFESTS))
                        .map_or(repo.as_str(), |i| &repo[..=i]);
                    for meta in [names::MANIFESTS, names::LAYERS] {
                        prefixes.insert(format!("{repo}{meta}/"));
                    }
                }
            }
        }
    }
    let listings: Vec<Result<BTreeMap<String, u64>>> = stream::iter(prefixes)
        .map(|prefix| async move { opened.list_all(&prefix).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut existing = BTreeSet::new();
    for listing in listings {
        existing.extend(listing?.into_keys());
    }
    let mut targets = HashSet::new();
    let mut in_the_way = Vec::new();
    for plan in plans {
        for step in &plan.steps {
            if !plan.found.objects.contains_key(&step.from) {
                continue;
            }
            if existing.contains(&step.to) || !targets.insert(step.to.clone()) {
                in_the_way.push(step.to.clone());
            }
        }
    }
    if let Some(first) = in_the_way.first() {
        return Err(Error::Restore {
            path: opened.url(first),
            reason: format!(
                "exists again in the registry{}; nothing was restored (delete it, or restore a single older batch with --batch)",
                if in_the_way.len() > 1 {
                    format!(" (and {} more keys)", in_the_way.len() - 1)
                } else {
                    String::new()
                }
            ),
        });
    }

    let in_flight = opened.storage.concurrency();
    for plan in plans {
        let failures_before = outcome.failures.len();
        outcome.failures.extend(plan.reported.iter().cloned());
        let mut rest = plan.steps.as_slice();
        while let Some(first) = rest.first() {
            if quit.is_some_and(|q| q.load(Ordering::Relaxed)) {
                outcome.interrupted = true;
                return Ok(outcome);
            }
            let n = rest
                .iter()
                .take_while(|s| s.journal == first.journal)
                .count();
            let (group, next) = rest.split_at(n);
            rest = next;
            let mut ready = Vec::new();
            for step in group {
                if !plan.found.objects.contains_key(&step.from) {
                    outcome.skipped += 1;
                } else if let Err(why) = check_needs(&existing, &step.needs) {
                    outcome.failures.push((opened.url(&step.to), why));
                } else {
                    ready.push(step);
                }
            }
            opened
                .storage
                .requests
                .put
                .fetch_add(ready.len() as u64, Ordering::Relaxed);
            let copied: Vec<(&Step, object_store::Result<()>)> = stream::iter(ready)
                .map(|step| async move {
                    let result = opened
                        .storage
                        .store()
                        .copy(&Key::from(step.from.as_str()), &Key::from(step.to.as_str()))
                        .await;
                    (step, result)
                })
                .buffer_unordered(in_flight)
                .collect()
                .await;
            // What came back leaves the batch, as a move: a restore run
            // again skips it.
            let mut sources = Vec::new();
            for (step, result) in copied {
                match result {
                    Ok(()) => {
                        outcome.restored += 1;
                        existing.insert(step.to.clone());
                        sources.push(step.from.clone());
                    }
                    Err(e) => outcome
                        .failures
                        .push((opened.url(&step.to), describe_error(&e))),
                }
            }
            outcome
                .failures
                .extend(opened.delete(sources).await.into_iter().map(|(path, why)| {
                    (
                        path,
                        format!("restored, but not deleted from the trash: {why}"),
                    )
                }));
        }
        if outcome.failures.len() == failures_before {
            // The journals and the end go with the batch; anything else
            // (not written by regsweep) stays.
            let own: Vec<String> = plan
                .found
                .objects
                .keys()
                .filter(|k| {
                    is_journal(&plan.found.prefix, k)
                        || k.strip_prefix(&plan.found.prefix) == Some(&format!("/{END}"))
                })
                .cloned()
                .collect();
            let failures = opened.delete(own).await;
            if failures.is_empty() {
                outcome.batches.push(plan.found.header.batch.clone());
            } else {
                outcome
                    .failures
                    .extend(failures.into_iter().map(|(path, why)| {
                        (
                            path,
                            format!("restored, but the journal was not deleted: {why}"),
                        )
                    }));
            }
        }
    }
    Ok(outcome)
}

/// The batches under `url`, newest first, measured from the listing.
/// Reads only; takes no lock.
pub fn list(url: &Path) -> Result<Listing> {
    let opened = open(url)?;
    let found = opened.storage.block_on(opened.scan())?;
    let mut listing = Listing {
        dir: url.to_path_buf(),
        ..Listing::default()
    };
    for batch in &found {
        listing.problems.extend(batch.problems.iter().cloned());
        listing.batches.push(listing_of(&opened, batch));
    }
    listing.bytes = listing.batches.iter().filter_map(|b| b.bytes).sum();
    Ok(listing)
}

fn listing_of(opened: &Opened, batch: &Found) -> BatchListing {
    BatchListing {
        batch: batch.header.batch.clone(),
        started: batch.header.started.clone(),
        storage_root: batch.header.storage_root.clone(),
        moves: batch.moves.len() as u64,
        files: Some(batch.objects.len() as u64),
        bytes: Some(batch.objects.values().sum()),
        path: opened.url(&format!("{}/", batch.prefix)),
    }
}

/// Deletes the batches under `url` started more than `older_than` ago
/// (all, when zero); with `dry_run`, says what it would delete.
pub fn empty(url: &Path, older_than: Age, dry_run: bool) -> Result<EmptyOutcome> {
    let opened = open(url)?;
    let found = opened.storage.block_on(opened.scan())?;
    let now = SystemTime::now();
    let mut outcome = EmptyOutcome {
        dry_run,
        ..EmptyOutcome::default()
    };
    let mut doomed = Vec::new();
    // Batches without their end: a run may still be writing them.
    let mut unfinished_roots = Vec::new();
    for batch in &found {
        let started = clock::parse_rfc3339(&batch.header.started);
        let old_enough = older_than.is_zero()
            || started.is_some_and(|t| clock::age(now, t) > older_than.duration());
        if !old_enough {
            outcome.kept.push(batch.header.batch.clone());
            continue;
        }
        outcome.deleted.push(batch.header.batch.clone());
        outcome.files += batch.objects.len() as u64;
        outcome.bytes += batch.objects.values().sum::<u64>();
        doomed.extend(batch.objects.keys().cloned());
        if !batch
            .objects
            .contains_key(&format!("{}/{END}", batch.prefix))
        {
            if let Ok(root) = journal_root(&batch.header, &opened.bucket) {
                unfinished_roots.push(root);
            }
        }
    }
    if dry_run {
        return Ok(outcome);
    }
    // The lock of the registry an unfinished batch came from: refused while
    // its run lives, taken over if it died.
    unfinished_roots.sort();
    unfinished_roots.dedup();
    let registries = opened.registries(&unfinished_roots)?;
    let mut locks = Vec::new();
    for registry in &registries {
        locks.push(super::lock::S3Lock::acquire(
            registry,
            "trash empty",
            false,
        )?);
    }
    outcome.problems = opened.storage.block_on(opened.delete(doomed));
    drop(locks);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trash_url_needs_a_plain_prefix() {
        assert_eq!(
            parse_url("s3://b/trash/x/").unwrap(),
            ("b".into(), "trash/x".into())
        );
        for bad in ["s3://b", "s3://b/", "s3:///t", "s3://b/a/../t", "/tmp/t"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn journaled_keys_stay_below_blobs_or_repositories() {
        assert!(journal_key("docker/registry/v2/blobs/sha256/ab/abc/data").is_ok());
        assert!(journal_key("docker/registry/v2/repositories/a/_layers/x/link").is_ok());
        for bad in [
            "docker/registry/v2/blobs",
            "docker/registry/v2/../v2/blobs/x/data",
            "docker/registry/v2/other/x",
            "regsweep.lock",
            "docker/registry/v2/blobs//x",
        ] {
            assert!(journal_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_a_restored_key_needs() {
        let needs = |kind: &str, key: &str| needs_of(kind, "r/", &journal_key(key).unwrap());
        let v2 = "docker/registry/v2";
        assert_eq!(
            needs("blob", &format!("{v2}/blobs/sha256/ab/abc/data")),
            Needs::Nothing
        );
        assert_eq!(
            needs(
                "repository",
                &format!("{v2}/repositories/a/b/_layers/x/link")
            ),
            Needs::Nothing
        );
        assert_eq!(
            needs(
                "manifest",
                &format!("{v2}/repositories/a/b/_manifests/revisions/sha256/x/link")
            ),
            Needs::Repository(format!("r/{v2}/repositories/a/b/"))
        );
        assert_eq!(
            needs(
                "tag",
                &format!("{v2}/repositories/a/_manifests/tags/t/current/link")
            ),
            Needs::Repository(format!("r/{v2}/repositories/a/"))
        );
        assert_eq!(
            needs(
                "tag_index_entry",
                &format!("{v2}/repositories/a/_manifests/tags/t/index/sha256/x/link")
            ),
            Needs::Tag(format!(
                "r/{v2}/repositories/a/_manifests/tags/t/current/link"
            ))
        );
        let present: BTreeSet<String> =
            [format!("r/{v2}/repositories/a/_layers/sha256/x/link")].into();
        assert!(
            check_needs(
                &present,
                &Needs::Repository(format!("r/{v2}/repositories/a/"))
            )
            .is_ok()
        );
        assert!(
            check_needs(
                &present,
                &Needs::Repository(format!("r/{v2}/repositories/b/"))
            )
            .is_err()
        );
        assert!(check_needs(&present, &Needs::Tag("r/x/current/link".into())).is_err());
    }
}

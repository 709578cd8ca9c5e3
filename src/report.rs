//! The report: a summary for people, a stable JSON document for programs,
//! and the verbose list of candidates.
//!
//! JSON field names are part of regsweep's interface (README, "JSON report");
//! a change to them bumps [`REPORT_VERSION`].

use std::borrow::Cow;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use std::time::SystemTime;

use crate::clock;
use crate::duration::Age;
use crate::index::Index;
use crate::interrupt::Phase;
use crate::plan::{Candidate, Counts, Plan, Reclaim, RepositoryReclaim};
use crate::policy::PolicyReport;
use crate::sweep::{Failure, SweepOutcome};
use crate::warning::Warning;

/// Serializes a path as a string, replacing what is not UTF-8 with U+FFFD:
/// a stray file name that is not UTF-8 must not stop the report from being
/// written (the human output shows the same lossy form).
pub(crate) fn lossy_path<P: AsRef<std::path::Path>, S: Serializer>(
    path: &P,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.as_ref().to_string_lossy())
}

/// [`lossy_path`] for an optional path.
pub(crate) fn lossy_optional_path<P: AsRef<std::path::Path>, S: Serializer>(
    path: &Option<P>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => lossy_path(path, s),
        None => s.serialize_none(),
    }
}

/// Version of the JSON report's shape. 2: `candidates` and `kept` are
/// listed only when asked (`-v`); `version`, `started`, `finished`,
/// `duration_seconds`, `interrupted_during` are new.
pub const REPORT_VERSION: u32 = 2;

/// How a run ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "i32")]
pub enum ExitStatus {
    /// Everything was read and everything planned was done.
    Success = 0,
    /// Finished, but something was kept because it could not be read, or
    /// something could not be deleted, or the sweep was interrupted.
    Warnings = 1,
    /// Refused or failed before deleting anything, or a sweep stopped
    /// because the registry took writes while it ran.
    Failed = 2,
}

impl From<ExitStatus> for i32 {
    fn from(status: ExitStatus) -> i32 {
        status as i32
    }
}

/// One candidate, with names instead of indices, borrowed from the index.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateRecord<'a> {
    /// `tag_index_entry`, `manifest`, `layer_link`, `blob`,
    /// `temporary_file`, `upload` or `repository`.
    pub kind: &'static str,
    /// The repository, except for blobs.
    pub repository: Option<&'a str>,
    /// The tag, for tag index entries.
    pub tag: Option<&'a str>,
    /// The digest in its path: `sha256:<hex>`, or `sha512:<hex>` for a
    /// blob linked under another algorithm; `null` for kinds without one.
    pub digest: Option<String>,
    /// Blob size, for blobs and layer links; data received, for uploads.
    pub bytes: Option<u64>,
    /// Why it is garbage (or, in `kept`, why it stays).
    pub reason: Cow<'static, str>,
    /// For uploads and temporary files: the path below the storage root.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_optional_path"
    )]
    pub path: Option<&'a std::path::Path>,
}

impl<'a> CandidateRecord<'a> {
    /// Names `candidate` using `index` and `plan`.
    pub fn new(index: &'a Index, plan: &'a Plan, candidate: &Candidate) -> CandidateRecord<'a> {
        let repo = candidate
            .repository
            .map(|r| &index.repositories[r as usize]);
        CandidateRecord {
            kind: candidate.kind.as_str(),
            repository: repo.map(|r| r.name.as_str()),
            tag: repo
                .zip(candidate.tag)
                .map(|(r, t)| r.tags[t as usize].name.as_str()),
            digest: match (repo, candidate.foreign_link) {
                _ if !candidate.kind.has_digest() => None,
                (Some(r), Some(i)) => Some(r.foreign_links[i as usize].name()),
                _ => Some(candidate.digest.to_string()),
            },
            bytes: candidate.bytes,
            reason: Cow::Borrowed(candidate.reason.describe()),
            path: candidate
                .path
                .and_then(|i| plan.paths.get(i as usize))
                .map(PathBuf::as_path),
        }
    }

    fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.kind,
            self.repository.unwrap_or("-"),
            self.tag.unwrap_or("-"),
            match (&self.digest, self.path) {
                (Some(d), _) => d.clone(),
                (None, Some(p)) => p.display().to_string(),
                (None, None) => "-".to_owned(),
            },
            self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            self.reason
        )
    }
}

/// The plan's candidates, named on the fly: a plan can list millions, and
/// the report should not hold a string copy of each.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    index: &'a Index,
    plan: &'a Plan,
    listed: bool,
}

impl<'a> Candidates<'a> {
    /// Every candidate of `plan`, in sweep order.
    pub fn iter(&self) -> impl Iterator<Item = CandidateRecord<'a>> + 'a {
        let (index, plan) = (self.index, self.plan);
        plan.candidates
            .iter()
            .map(move |c| CandidateRecord::new(index, plan, c))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.plan.candidates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.plan.candidates.is_empty()
    }

    /// Whether the JSON report leaves the list out.
    fn unlisted(&self) -> bool {
        !self.listed
    }
}

impl Serialize for Candidates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// What the plan keeps because of `--min-age`, named on the fly.
#[derive(Debug, Clone, Copy)]
pub struct KeptRecords<'a> {
    index: &'a Index,
    plan: &'a Plan,
    min_age: Age,
    listed: bool,
}

impl<'a> KeptRecords<'a> {
    /// Every kept item, in sweep order, with why it stays.
    pub fn iter(&self) -> impl Iterator<Item = CandidateRecord<'a>> + 'a {
        let (index, plan, min_age) = (self.index, self.plan, self.min_age.to_string());
        plan.kept.iter().map(move |k| CandidateRecord {
            reason: Cow::Owned(k.reason.describe(&min_age)),
            ..CandidateRecord::new(index, plan, &k.candidate)
        })
    }
}

impl KeptRecords<'_> {
    /// Whether the JSON report leaves the list out.
    fn unlisted(&self) -> bool {
        !self.listed
    }
}

impl Serialize for KeptRecords<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Where a `--trash` run moved things.
#[derive(Debug, Clone, Serialize)]
pub struct TrashRecord {
    /// The trash directory.
    #[serde(serialize_with = "lossy_path")]
    pub dir: PathBuf,
    /// The batch's name (`regsweep restore DIR --batch NAME`).
    pub batch: String,
    /// The batch's journal.
    #[serde(serialize_with = "lossy_path")]
    pub journal: PathBuf,
}

/// Facts of a run besides the plan and the sweep.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// `--min-age`.
    pub min_age: Age,
    /// Uploads active within `--min-age`.
    pub uploads_in_progress: u64,
    /// The trash batch of a `--trash` run.
    pub trash: Option<TrashRecord>,
    /// The registry's blob descriptor cache, for the closing advice.
    pub blob_cache: BlobCache,
}

/// How the registry remembers blobs between requests, from
/// `storage.cache.blobdescriptor` in its configuration: what it takes to
/// make it forget deleted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlobCache {
    /// TARGET was a directory: the configuration was not read.
    #[default]
    Unknown,
    /// No cache configured: every request reads the storage.
    Disabled,
    /// `inmemory`: lives in the registry process.
    InMemory,
    /// `redis`: lives in redis, across registry restarts.
    Redis,
    /// A value the registry does not know (it then caches nothing).
    Other(String),
}

impl BlobCache {
    /// From the configuration's value (`None`: not set).
    pub fn from_config(value: Option<&str>) -> BlobCache {
        match value {
            None | Some("") => BlobCache::Disabled,
            Some("inmemory") => BlobCache::InMemory,
            Some("redis") => BlobCache::Redis,
            Some(other) => BlobCache::Other(other.to_owned()),
        }
    }

    /// What to do after deleting blobs.
    pub fn advice(&self) -> String {
        const REDIS_KEYS: &str = "delete the registry's keys there (in the database `redis.db` names: `redis-cli -n DB --scan --pattern 'blobs::*'` and `--pattern 'repository::*'`, piped to `xargs -r redis-cli -n DB del`), then restart the registry";
        match self {
            BlobCache::Unknown => format!(
                "Restart the registry so its blob descriptor cache forgets deleted blobs (with storage.cache.blobdescriptor: redis, {REDIS_KEYS}). Give regsweep the registry's config.yml as TARGET for advice that fits its cache."
            ),
            BlobCache::InMemory => "Restart the registry: its in-memory blob descriptor cache (storage.cache.blobdescriptor: inmemory) still answers for deleted blobs until then.".into(),
            BlobCache::Redis => format!(
                "The registry's blob descriptor cache is redis: its redis cache still answers for deleted blobs after a restart: {REDIS_KEYS}."
            ),
            BlobCache::Disabled => "The registry keeps no blob descriptor cache (storage.cache.blobdescriptor is not set): it sees the deletions at once.".into(),
            BlobCache::Other(value) => format!(
                "The registry ignores storage.cache.blobdescriptor: {value:?} and caches nothing: it sees the deletions at once."
            ),
        }
    }
}

/// The whole report of a `gc` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// [`REPORT_VERSION`].
    pub regsweep_report: u32,
    /// regsweep's version.
    pub version: &'static str,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When the report was written (RFC 3339, UTC).
    pub finished: String,
    /// From `started` to `finished`.
    pub duration_seconds: f64,
    /// The storage root (the directory holding `docker/registry/v2`).
    #[serde(serialize_with = "lossy_path")]
    pub storage_root: PathBuf,
    /// Nothing was deleted on purpose.
    pub dry_run: bool,
    /// Untagged manifests were garbage.
    pub delete_untagged: bool,
    /// The registry as indexed.
    pub before: Counts,
    /// After the sweep; for a dry run, what it would be.
    pub after: Counts,
    /// What the plan reclaims.
    pub reclaimable: Reclaim,
    /// What was deleted (zero for a dry run).
    pub deleted: Reclaim,
    /// Repositories with something reclaimable, most bytes first.
    pub repositories: Vec<RepositoryReclaim>,
    /// Everything the plan deletes, in sweep order; left out of JSON
    /// unless listed ([`Report::list_items`]): a large registry has
    /// hundreds of thousands.
    #[serde(skip_serializing_if = "Candidates::unlisted")]
    pub candidates: Candidates<'a>,
    /// Damage found, and what was kept because of it.
    pub warnings: Vec<Warning>,
    /// What could not be deleted.
    pub failures: Vec<Failure>,
    /// The sweep stopped before the end of the plan, or the run stopped
    /// before it began (a signal at the prompt).
    pub interrupted: bool,
    /// What the run was doing when a signal stopped it: `prompt`, `sweep`;
    /// `null` if none did.
    pub interrupted_during: Option<Phase>,
    /// The operator answered no at the prompt: nothing was deleted.
    pub declined: bool,
    /// What changed in the tree since the index began, when that stopped
    /// the sweep (the registry is taking writes); `null` otherwise.
    pub registry_changed: Option<String>,
    /// The process exit code.
    pub exit_code: ExitStatus,
    /// `--min-age`, as given (`1h`).
    pub min_age: String,
    /// `--min-age` in seconds.
    pub min_age_seconds: u64,
    /// Totals of `kept`.
    pub kept_too_recent: Reclaim,
    /// What would be garbage but was modified within `--min-age`, or
    /// depends on something that was; listed like `candidates`.
    #[serde(skip_serializing_if = "KeptRecords::unlisted")]
    pub kept: KeptRecords<'a>,
    /// Uploads active within `--min-age`.
    pub uploads_in_progress: u64,
    /// Empty directories the sweep removed.
    pub empty_directories_removed: u64,
    /// The trash batch, for a `--trash` run.
    pub trash: Option<TrashRecord>,
    /// What the retention policy decided: per repository, the tags kept and
    /// deleted with their rules; `null` without a policy.
    pub policy: Option<&'a PolicyReport>,
    /// The registry's blob descriptor cache (not in JSON).
    #[serde(skip)]
    pub blob_cache: BlobCache,
}

impl<'a> Report<'a> {
    /// The report of a run; `outcome` is `None` for a dry run or a run that
    /// was declined.
    pub fn new(
        storage_root: PathBuf,
        delete_untagged: bool,
        index: &'a Index,
        plan: &'a Plan,
        warnings: Vec<Warning>,
        outcome: Option<SweepOutcome>,
        run: RunInfo,
    ) -> Report<'a> {
        let dry_run = outcome.is_none();
        let registry_changed = outcome
            .as_ref()
            .and_then(|o| o.changed.as_ref())
            .map(ToString::to_string);
        let (after, deleted, failures, interrupted, empty_directories_removed) = match outcome {
            Some(o) => {
                let mut deleted = o.deleted;
                deleted.temporary_files += o.temporary_files;
                (
                    plan.after(|i| o.gone[i]),
                    deleted,
                    o.failures,
                    o.interrupted,
                    o.empty_directories,
                )
            }
            None => (
                plan.after(|_| true),
                Reclaim::default(),
                Vec::new(),
                false,
                0,
            ),
        };
        let exit_code = if registry_changed.is_some() {
            ExitStatus::Failed
        } else if warnings.is_empty() && failures.is_empty() && !interrupted {
            ExitStatus::Success
        } else {
            ExitStatus::Warnings
        };
        let now = clock::rfc3339(SystemTime::now());
        Report {
            regsweep_report: REPORT_VERSION,
            version: env!("CARGO_PKG_VERSION"),
            started: now.clone(),
            finished: now,
            duration_seconds: 0.0,
            storage_root,
            dry_run,
            delete_untagged,
            before: plan.before,
            after,
            reclaimable: plan.reclaimable,
            deleted,
            repositories: plan.repositories.clone(),
            candidates: Candidates {
                index,
                plan,
                listed: true,
            },
            warnings,
            failures,
            interrupted_during: None,
            declined: false,
            interrupted,
            registry_changed,
            exit_code,
            min_age: run.min_age.to_string(),
            min_age_seconds: run.min_age.as_secs(),
            kept_too_recent: plan.kept_too_recent,
            kept: KeptRecords {
                index,
                plan,
                min_age: run.min_age,
                listed: true,
            },
            uploads_in_progress: run.uploads_in_progress,
            empty_directories_removed,
            trash: run.trash,
            blob_cache: run.blob_cache,
            policy: None,
        }
    }

    /// A sweep that a signal stopped before the end of its plan.
    pub fn stopped_by_signal(&mut self) {
        if self.interrupted && self.registry_changed.is_none() {
            self.interrupted_during = Some(Phase::Sweep);
        }
    }

    /// Whether the JSON document lists `candidates` and `kept` (it does
    /// unless told otherwise).
    pub fn list_items(&mut self, listed: bool) {
        self.candidates.listed = listed;
        self.kept.listed = listed;
    }

    /// A sweep the operator declined at the prompt: nothing deleted, and
    /// nothing to report back (the warnings were shown before the
    /// question): exit 0.
    pub fn declined(&mut self) {
        self.dry_run = false;
        self.after = self.before;
        self.declined = true;
        self.exit_code = ExitStatus::Success;
    }

    /// A run stopped by a signal during `phase`, before the sweep began (at
    /// the prompt): nothing was deleted, and it exits 1.
    pub fn stopped_before_sweep(&mut self, phase: Phase) {
        self.dry_run = false;
        self.after = self.before;
        self.interrupted = true;
        self.interrupted_during = Some(phase);
        if self.exit_code == ExitStatus::Success {
            self.exit_code = ExitStatus::Warnings;
        }
    }

    /// Stamps the run's start, and now as its end.
    pub fn timed(&mut self, started: SystemTime) {
        let finished = SystemTime::now();
        self.started = clock::rfc3339(started);
        self.finished = clock::rfc3339(finished);
        self.duration_seconds = seconds_between(started, finished);
    }

    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes one line per candidate: kind, repository, tag, digest (or
    /// path), bytes, reason; tab-separated. Then one line per item kept by
    /// `--min-age`, its reason starting with `kept:`.
    pub fn write_candidates(&self, out: &mut impl Write) -> io::Result<()> {
        for c in self.candidates.iter() {
            c.write_line(out)?;
        }
        for k in self.kept.iter() {
            k.write_line(out)?;
        }
        Ok(())
    }

    /// Writes the summary table and the largest repositories.
    pub fn write_summary(&self, out: &mut impl Write, top: usize) -> io::Result<()> {
        let mode = match (self.dry_run, self.delete_untagged) {
            (true, false) => "dry run; untagged manifests kept",
            (true, true) => "dry run; untagged manifests deleted",
            (false, false) => "untagged manifests kept",
            (false, true) => "untagged manifests deleted",
        };
        writeln!(out, "regsweep gc {} ({mode})", self.storage_root.display())?;
        writeln!(out)?;
        let third = if self.dry_run {
            "reclaimable"
        } else {
            "deleted"
        };
        writeln!(
            out,
            "{:<18}{:>14}{:>14}{:>14}",
            "", "before", "after", third
        )?;
        let (b, a) = (&self.before, &self.after);
        let changed = if self.dry_run {
            &self.reclaimable
        } else {
            &self.deleted
        };
        let n = |v: u64| v.to_string();
        let rows: [(&str, String, String, String); 9] = [
            (
                "repositories",
                n(b.repositories),
                n(a.repositories),
                String::new(),
            ),
            (
                "tags",
                n(b.tags),
                n(a.tags),
                if changed.tags > 0 {
                    n(changed.tags)
                } else {
                    String::new()
                },
            ),
            (
                "manifests",
                n(b.manifests),
                n(a.manifests),
                n(b.manifests - a.manifests),
            ),
            (
                "  tagged",
                n(b.tagged_manifests),
                n(a.tagged_manifests),
                String::new(),
            ),
            (
                "  untagged",
                n(b.untagged_manifests),
                n(a.untagged_manifests),
                n(b.untagged_manifests - a.untagged_manifests),
            ),
            (
                "layer links",
                n(b.layer_links),
                n(a.layer_links),
                n(changed.layer_links),
            ),
            ("blobs", n(b.blobs), n(a.blobs), n(changed.blobs)),
            (
                "blob bytes",
                human_bytes(b.blob_bytes),
                human_bytes(a.blob_bytes),
                human_bytes(changed.bytes),
            ),
            ("uploads", n(b.uploads), n(a.uploads), String::new()),
        ];
        for (label, before, after, delta) in rows {
            writeln!(out, "{label:<18}{before:>14}{after:>14}{delta:>14}")?;
        }
        for (label, value) in [
            ("tag history", changed.tag_index_entries.to_string()),
            ("temporary files", changed.temporary_files.to_string()),
            (
                "stale uploads",
                if changed.uploads > 0 {
                    format!(
                        "{} ({})",
                        changed.uploads,
                        human_bytes(changed.upload_bytes)
                    )
                } else {
                    String::new()
                },
            ),
            ("empty repos", changed.repositories.to_string()),
        ] {
            if !value.is_empty() && value != "0" {
                writeln!(out, "{label:<18}{value:>42}")?;
            }
        }
        if !self.repositories.is_empty() {
            writeln!(out)?;
            writeln!(out, "Reclaimable by repository (largest first):")?;
            for r in self.repositories.iter().take(top) {
                writeln!(
                    out,
                    "  {:<40} {:>14} {:>12} {:>12}",
                    r.name,
                    counted(r.manifests, "manifest", "manifests"),
                    counted(r.blobs, "blob", "blobs"),
                    human_bytes(r.bytes)
                )?;
            }
            if self.repositories.len() > top {
                writeln!(
                    out,
                    "  … and {} more (see -v or --json)",
                    self.repositories.len() - top
                )?;
            }
        }
        writeln!(out)?;
        let k = &self.kept_too_recent;
        if !k.is_empty() {
            writeln!(
                out,
                "Kept, too recent (--min-age {}): {} ({}).",
                self.min_age,
                totals(k),
                human_bytes(k.bytes)
            )?;
        }
        if self.uploads_in_progress > 0 {
            writeln!(
                out,
                "Uploads in progress: {} (the registry is taking pushes).",
                self.uploads_in_progress
            )?;
        }
        let r = &self.reclaimable;
        if self.dry_run {
            if r.is_empty() {
                writeln!(out, "Dry run: nothing to reclaim.")?;
            } else {
                writeln!(
                    out,
                    "Dry run: nothing deleted. A sweep would remove {} ({}).",
                    totals(r),
                    human_bytes(r.bytes)
                )?;
            }
        } else {
            let d = &self.deleted;
            if r.is_empty() {
                writeln!(out, "Nothing to delete.")?;
                return Ok(());
            }
            match &self.trash {
                Some(t) => {
                    writeln!(
                        out,
                        "Moved to the trash: {} ({}), batch {}.",
                        totals(d),
                        human_bytes(d.bytes),
                        t.dir.join(&t.batch).display()
                    )?;
                    writeln!(
                        out,
                        "Undo with: regsweep restore '{}' --batch {}",
                        t.dir.display(),
                        t.batch
                    )?;
                }
                None => writeln!(out, "Deleted {} ({}).", totals(d), human_bytes(d.bytes))?,
            }
            if self.empty_directories_removed > 0 {
                writeln!(
                    out,
                    "Removed {}.",
                    counted(
                        self.empty_directories_removed,
                        "empty directory",
                        "empty directories"
                    )
                )?;
            }
            if let Some(change) = &self.registry_changed {
                writeln!(
                    out,
                    "The sweep stopped: {change}, so the registry is taking writes. What was deleted leaves it consistent; make it read-only (storage.maintenance.readonly.enabled: true, then restart it) or stop it, and run regsweep again."
                )?;
            } else if self.interrupted {
                writeln!(
                    out,
                    "The sweep was interrupted; the registry is consistent, and a re-run finishes it."
                )?;
            }
            if !r.is_empty() || !d.is_empty() {
                writeln!(out, "{}", self.blob_cache.advice())?;
            }
        }
        Ok(())
    }
}

/// Seconds from `start` to `end`, in milliseconds' precision (0 if the
/// clock went back).
pub fn seconds_between(start: SystemTime, end: SystemTime) -> f64 {
    let elapsed = end.duration_since(start).unwrap_or_default();
    (elapsed.as_millis() as f64) / 1000.0
}

/// What a command that stopped without a report of its own prints with
/// `--json`: a refusal (exit 2), a failure, or an interruption before
/// anything was planned (exit 1). One object, like every report: a
/// program reads `exit_code`, and `error` and `kind` say why.
#[derive(Debug, Clone, Serialize)]
pub struct StopReport {
    /// [`REPORT_VERSION`] for `gc`; the command's own version otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regsweep_report: Option<u32>,
    /// regsweep's version.
    pub version: &'static str,
    /// `gc`, `verify`, `du`, `restore`, `trash empty`, `trash list`.
    pub command: &'static str,
    /// The storage root, or the trash directory, when known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_optional_path"
    )]
    pub target: Option<PathBuf>,
    /// A `gc --dry-run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// When this was written (RFC 3339, UTC).
    pub finished: String,
    /// From `started` to `finished`.
    pub duration_seconds: f64,
    /// The process exit code.
    pub exit_code: ExitStatus,
    /// `interrupted`, `lock_held`, `not_storage`, `uploads_in_progress`,
    /// ... (see [`crate::Error::kind`]); `errors` when there are several.
    pub kind: &'static str,
    /// What happened, and whether anything changed.
    pub error: String,
    /// Each error, when there are several (two locks held).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorRecord>,
    /// A signal stopped the run.
    pub interrupted: bool,
    /// What the run was doing when a signal stopped it.
    pub interrupted_during: Option<&'static str>,
}

/// One error of a [`StopReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRecord {
    /// As [`StopReport::kind`].
    pub kind: &'static str,
    /// The path at fault, when there is one.
    #[serde(serialize_with = "lossy_optional_path")]
    pub path: Option<PathBuf>,
    /// The message.
    pub error: String,
}

impl StopReport {
    /// Writes the JSON document, one line.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }
}

/// `1 blob`, `2 blobs`.
fn counted(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// `1 manifest, 2 tag history entries, 3 layer links and 4 blobs`, then
/// temporary files, uploads and repositories when there are any.
fn totals(r: &Reclaim) -> String {
    let mut parts = Vec::new();
    if r.tags > 0 {
        parts.push(counted(r.tags, "tag", "tags"));
    }
    parts.extend([
        counted(r.manifests, "manifest", "manifests"),
        counted(
            r.tag_index_entries,
            "tag history entry",
            "tag history entries",
        ),
        counted(r.layer_links, "layer link", "layer links"),
        counted(r.blobs, "blob", "blobs"),
    ]);
    for (n, one, many) in [
        (r.temporary_files, "temporary file", "temporary files"),
        (r.uploads, "stale upload", "stale uploads"),
        (r.repositories, "empty repository", "empty repositories"),
    ] {
        if n > 0 {
            parts.push(counted(n, one, many));
        }
    }
    let last = parts.pop().unwrap_or_default();
    format!("{} and {last}", parts.join(", "))
}

/// Bytes in IEC units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_iec_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn exit_status_serializes_as_its_code() {
        assert_eq!(serde_json::to_string(&ExitStatus::Warnings).unwrap(), "1");
    }
}
